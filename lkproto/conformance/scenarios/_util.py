"""Helpers shared by the scenario modules."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lkproto.conformance._registry import Unsupported
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.conformance.adapters import Client, PeerClient

__all__ = [
    "WireTap",
    "advertised",
    "capability_reason",
    "check",
    "level_reason",
    "require_level",
    "require_resumable",
    "server_has_rtc_v1",
]


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


def level_reason(got: int, level: int) -> str:
    """Why a scenario needing ``client_protocol >= level`` is unsupported.

    The peer only knows what the server mirrors into ``ParticipantInfo`` (§1): releases before
    ``client_protocol`` (field 20) or ``capabilities`` (field 21) existed announce 0 / none
    whatever the client sent (seen on v1.9.11 for both, on v1.11.0 for capabilities).
    """
    return (
        f"server announces client_protocol={got} for the client (< {level}): the client does "
        "not advertise it, or this server release does not relay ParticipantInfo.client_protocol"
    )


def capability_reason(name: str) -> str:
    """Why a scenario needing capability ``name`` is unsupported (see :func:`level_reason`)."""
    return (
        f"server announces no {name} for the client: the client does not advertise it, or "
        "this server release does not relay ParticipantInfo.capabilities"
    )


def require_level(peer: PeerClient, identity: str, level: int, capability: int = 0) -> None:
    """:class:`Unsupported` unless ``identity`` advertises ``client_protocol >= level`` (and
    ``capability`` when non-zero)."""
    got, caps = advertised(peer, identity)
    if got < level:
        raise Unsupported(level_reason(got, level))
    if capability and capability not in caps:
        raise Unsupported(capability_reason(f"capability {capability}"))


async def server_has_rtc_v1(signal_url: str) -> bool:
    """Whether the server at ``signal_url`` serves the single-PC ``/rtc/v1`` path.

    Probes ``/rtc/v1/validate`` without a token: a release that has the path refuses the request
    (401), one that does not answers its HTTP mux's 404 (PROTOCOL-MAP §1 URLs; livekit-server
    v1.7.2 registers only ``/rtc``, v1.9.11 both).
    """
    base = signal_url.rstrip("/").replace("ws://", "http://", 1).replace("wss://", "https://", 1)

    # No proxy from the environment: the server is addressed directly, as the clients do.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def probe() -> bool:
        try:
            with opener.open(f"{base}/rtc/v1/validate", timeout=5):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code != 404

    return await asyncio.to_thread(probe)


async def require_resumable(client: Client, signal_url: str) -> None:
    """:class:`Unsupported` when the client under test is lkproto and the server has no
    ``/rtc/v1``: lkproto resumes only a single-PC session.

    On ``/rtc`` (two PCs) the server answers every resume with an ICE restart of the subscriber PC
    (livekit-server pkg/rtc/room.go ResumeParticipant -> ParticipantImpl.ICERestart), and aiortc
    cannot ICE-restart (PROTOCOL-MAP §14), so lkproto recovers with a full reconnect there: a new
    SID and a fresh reliable sequence, which is not what a resume scenario grades.
    """
    if client.adapter != "lkproto" or await server_has_rtc_v1(signal_url):
        return
    raise Unsupported(
        "needs a server with /rtc/v1: lkproto resumes only single-PC sessions, and on /rtc the "
        "server's resume ICE-restarts the subscriber PC, which aiortc cannot do (PROTOCOL-MAP "
        "§14); this release has no /rtc/v1 (v1.7.2), so lkproto does a full reconnect instead"
    )
