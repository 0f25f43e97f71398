"""Helpers shared by the scenario modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lkproto.conformance._registry import Unsupported
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.conformance.adapters import PeerClient

__all__ = ["WireTap", "advertised", "check", "require_level"]


def check(condition: object, message: str) -> None:
    """Fail the scenario with ``message`` unless ``condition`` holds (survives ``python -O``)."""
    if not condition:
        raise AssertionError(message)


@dataclass
class WireTap:
    """The data packets the lkproto peer received (its ``RoomOptions.trace``), raw."""

    packets: list[pb.DataPacket] = field(default_factory=list)
    sent: list[pb.DataPacket] = field(default_factory=list)
    """What the peer itself sent."""

    def __call__(
        self, direction: str, channel: str, message: object, raw: bytes, now: float
    ) -> None:
        if isinstance(message, pb.DataPacket):
            (self.packets if direction == "<" else self.sent).append(message)

    def of(self, kind: str) -> list[pb.DataPacket]:
        """Received packets whose payload oneof is ``kind`` (``stream_header``, ...)."""
        return [p for p in self.packets if p.WhichOneof("value") == kind]


def advertised(peer: PeerClient, identity: str) -> tuple[int, set[int]]:
    """``(client_protocol, capabilities)`` the server announced for ``identity`` (§1, §15)."""
    remote = peer.room.remote_participants.get(identity)
    if remote is None:
        raise AssertionError(f"{peer.identity} does not see {identity}")
    info = remote.info
    return int(info.client_protocol), {int(c) for c in info.capabilities}


def require_level(peer: PeerClient, identity: str, level: int, capability: int = 0) -> None:
    """:class:`Unsupported` unless ``identity`` advertises ``client_protocol >= level`` (and
    ``capability`` when non-zero)."""
    got, caps = advertised(peer, identity)
    if got < level:
        raise Unsupported(f"client advertises client_protocol={got} (< {level})")
    if capability and capability not in caps:
        raise Unsupported(f"client does not advertise capability {capability}")
