"""Helpers for the data-packet and RPC interop tests: lkproto (``lk``) and the official SDK
(``sdk``, plus an optional official bystander ``eve``) in one room, recording what each receives.

Both SDKs share the API used here (``publish_data``, ``publish_dtmf``, ``perform_rpc``,
``register_rpc_method``, the ``data_received`` / ``sip_dtmf_received`` events), so a test is
written once against :class:`Peer` and run in both directions with :data:`DIRECTIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    connect_official,
    disconnect_all,
    make_token,
    our_options,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.asyncio.engine import TraceCallback
    from lkproto.core.reconnect import ReconnectPolicy
    from lkproto.testing import LocalServer

__all__ = [
    "DIRECTIONS",
    "EVE",
    "LK",
    "SDK",
    "Dtmf",
    "Peer",
    "Received",
    "Room",
    "data_room",
    "rpc_error_of",
    "settle",
]

LK = "lk"
SDK = "sdk"
EVE = "eve"
ACTIVE = int(rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE)

DIRECTIONS = [
    pytest.param((LK, SDK), id="lk-to-sdk"),
    pytest.param((SDK, LK), id="sdk-to-lk"),
]
"""``(sender, receiver)`` identities; parametrize a test's ``direction`` argument with it."""


@dataclass(frozen=True)
class Received:
    """A ``data_received`` event reduced to plain values (same shape for both SDKs)."""

    data: bytes
    kind: int
    sender: str | None
    topic: str | None


@dataclass(frozen=True)
class Dtmf:
    """A ``sip_dtmf_received`` event reduced to plain values."""

    code: int
    digit: str
    sender: str | None


@dataclass
class Peer:
    """One participant and everything it received.

    Attributes:
        room: ``lkproto.rtc.Room`` or ``livekit.rtc.Room``.
        identity: its identity.
        official: True for the official SDK.
        received: every ``data_received``, in order.
        dtmf: every ``sip_dtmf_received``, in order.
    """

    room: Any
    identity: str
    official: bool
    received: list[Received] = field(default_factory=list)
    dtmf: list[Dtmf] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.room.on("data_received", self._on_data)
        self.room.on("sip_dtmf_received", self._on_dtmf)

    def _on_data(self, packet: Any) -> None:
        sender = packet.participant.identity if packet.participant is not None else None
        self.received.append(Received(packet.data, int(packet.kind), sender, packet.topic))

    def _on_dtmf(self, dtmf: Any) -> None:
        sender = dtmf.participant.identity if dtmf.participant is not None else None
        self.dtmf.append(Dtmf(dtmf.code, dtmf.digit, sender))

    @property
    def local(self) -> Any:
        """Its ``LocalParticipant``."""
        return self.room.local_participant

    @property
    def rpc_error(self) -> type[lrtc.RpcError] | type[rtc.RpcError]:
        """The ``RpcError`` class of its SDK (what its ``perform_rpc`` raises)."""
        return lrtc.RpcError if self.official else rtc.RpcError

    def make_rpc_error(self, code: int, message: str, data: str) -> lrtc.RpcError | rtc.RpcError:
        """An ``RpcError`` of its SDK, for a handler to raise."""
        return self.rpc_error(code, message, data)

    def on_topic(self, topic: str) -> list[Received]:
        """What it received on ``topic`` (``None``/``""`` both mean no topic)."""
        return [r for r in self.received if (r.topic or "") == topic]

    def sees(self, identity: str) -> bool:
        """``identity`` is in its room and ACTIVE (PROTOCOL-MAP §3: the server delivers
        unsequenced or lossy packets only to ACTIVE receivers)."""
        remote = self.room.remote_participants.get(identity)
        return remote is not None and int(remote.state) == ACTIVE

    async def publish(self, payload: bytes | str, **kwargs: Any) -> None:
        """``publish_data``, bounded."""
        await asyncio.wait_for(
            self.local.publish_data(payload, **kwargs), scaled(CONNECT_TIMEOUT_S)
        )


@dataclass
class Room:
    """The participants of one test room, by identity."""

    name: str
    peers: dict[str, Peer]

    def __getitem__(self, identity: str) -> Peer:
        return self.peers[identity]

    @property
    def lk(self) -> Peer:
        return self.peers[LK]

    @property
    def sdk(self) -> Peer:
        return self.peers[SDK]

    @property
    def eve(self) -> Peer:
        return self.peers[EVE]

    def pair(self, direction: tuple[str, str]) -> tuple[Peer, Peer]:
        """``(sender, receiver)`` for a :data:`DIRECTIONS` value."""
        sender, receiver = direction
        return self.peers[sender], self.peers[receiver]


@contextlib.asynccontextmanager
async def data_room(
    server: LocalServer,
    prefix: str,
    *,
    bystander: bool = False,
    reconnect_policy: ReconnectPolicy | None = None,
    trace: TraceCallback | None = None,
    client_protocol: int | None = None,
    data_stream: rtc.DataStreamOptions | None = None,
) -> AsyncIterator[Room]:
    """A fresh room with ``lk`` (lkproto) and ``sdk`` (official), and with ``bystander`` also
    ``eve`` (official); yields once everyone sees everyone else ACTIVE, disconnects all after.

    ``trace`` is lkproto's wire tap (``RoomOptions.trace``) for ``lk``; ``client_protocol`` is
    what ``lk`` advertises (None: lkproto's default, 2); ``data_stream`` its receive limits.
    """
    name = unique_room(prefix)
    ours = rtc.Room()
    peers = {
        LK: Peer(ours, LK, official=False),
        SDK: Peer(lrtc.Room(), SDK, official=True),
    }
    if bystander:
        peers[EVE] = Peer(lrtc.Room(), EVE, official=True)
    room = Room(name, peers)
    options = dataclasses.replace(
        our_options(reconnect_policy),
        trace=trace,
        client_protocol=client_protocol,
        data_stream=data_stream,
    )
    try:
        await asyncio.wait_for(
            ours.connect(server.url, make_token(server, LK, name), options),
            scaled(CONNECT_TIMEOUT_S),
        )
        for identity, peer in peers.items():
            if peer.official:
                await connect_official(server, identity, name, room=peer.room)
        for peer in peers.values():
            for other in peers:
                if other != peer.identity:
                    await wait_for(
                        functools.partial(peer.sees, other),
                        ROSTER_TIMEOUT_S,
                        f"{peer.identity} sees {other} ACTIVE",
                    )
        yield room
    finally:
        await disconnect_all(*(p.room for p in peers.values()))


def rpc_error_of(exc: BaseException) -> lrtc.RpcError | rtc.RpcError:
    """``exc`` as the ``RpcError`` of either SDK (what ``pytest.raises(peer.rpc_error)`` caught;
    mypy joins the two classes to ``Exception`` there)."""
    assert isinstance(exc, lrtc.RpcError | rtc.RpcError)
    return exc


async def settle(seconds: float = 0.5) -> None:
    """A quiet period (scaled) to let stray packets (duplicates, misdeliveries) show up."""
    await asyncio.sleep(scaled(seconds))
