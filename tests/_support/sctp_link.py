"""Two real aiortc SCTP associations joined by an in-memory, impairable link (no DTLS, no ICE).

Stands in for the DTLS transport under :class:`aiortc.RTCSctpTransport` (what it calls:
``state``, ``_role``, ``_register_data_receiver``, ``_unregister_data_receiver`` and
``_send_data``), so tests can run aiortc's association, with or without
:func:`lkproto.asyncio._seam.tune_sctp`, over a link that loses, duplicates and reorders packets
by a seeded random generator, and count and inspect every packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiortc
import aiortc.rtcsctptransport as sctp

from lkproto.asyncio import _seam

__all__ = ["Impairment", "LinkEnd", "SctpPair", "data_chunks", "sctp_pair", "until"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Impairment:
    """What the link does to each packet, independently, with these probabilities."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # hold the packet back until the next one has gone


@dataclass(slots=True)
class LinkEnd:
    """One side's fake DTLS transport: everything it sends goes to ``peer``'s association."""

    role: str
    rng: random.Random
    impairment: Impairment = field(default_factory=Impairment)
    state: str = "connected"
    receiver: Any = None
    peer: LinkEnd | None = None
    sent: list[bytes] = field(default_factory=list)
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    _held: bytes | None = None

    @property
    def _role(self) -> str:
        return self.role

    def _register_data_receiver(self, receiver: Any) -> None:
        self.receiver = receiver

    def _unregister_data_receiver(self, receiver: Any) -> None:
        if self.receiver is receiver:
            self.receiver = None

    async def _send_data(self, data: bytes) -> None:
        if self.state != "connected":
            raise ConnectionError("link closed")
        self.sent.append(data)
        assert self.peer is not None
        imp = self.impairment
        if self.rng.random() < imp.loss:
            return
        copies = 2 if self.rng.random() < imp.duplicate else 1
        if self._held is None and self.rng.random() < imp.reorder:
            self._held = data
            return
        for _ in range(copies):
            self.peer.queue.put_nowait(data)
        if self._held is not None:
            self.peer.queue.put_nowait(self._held)
            self._held = None

    async def deliver(self) -> None:
        """Feed this side's association what the peer sent, one packet at a time."""
        while True:
            data = await self.queue.get()
            if self.receiver is not None:
                await self.receiver._handle_data(data)


@dataclass(slots=True)
class SctpPair:
    """A started client/server association pair and one negotiated channel on each."""

    client: aiortc.RTCSctpTransport
    server: aiortc.RTCSctpTransport
    client_link: LinkEnd
    server_link: LinkEnd
    client_channel: aiortc.RTCDataChannel
    server_channel: aiortc.RTCDataChannel
    received: list[bytes]

    def impair(self, impairment: Impairment) -> None:
        """Impair both directions from now on."""
        self.client_link.impairment = impairment
        self.server_link.impairment = impairment


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``condition`` every loop turn or so until it holds, at most ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (aiortc state has no event to await)
            await asyncio.sleep(0.002)


def data_chunks(packet: bytes) -> list[sctp.DataChunk]:
    """The DATA chunks of one SCTP packet."""
    return [c for c in sctp.parse_packet(packet)[3] if isinstance(c, sctp.DataChunk)]


@contextlib.asynccontextmanager
async def sctp_pair(
    *, seed: int = 0, tune_client: bool = True, tune_server: bool = True, ordered: bool = True
) -> AsyncIterator[SctpPair]:
    """Start two associations over a fresh link; close everything on exit."""
    rng = random.Random(seed)
    client_link = LinkEnd("client", rng)
    server_link = LinkEnd("server", rng)
    client_link.peer, server_link.peer = server_link, client_link
    client = aiortc.RTCSctpTransport(client_link)  # type: ignore[arg-type]
    server = aiortc.RTCSctpTransport(server_link)  # type: ignore[arg-type]
    if tune_client:
        _seam.tune_sctp(client)
    if tune_server:
        _seam.tune_sctp(server)
    params = aiortc.RTCDataChannelParameters(label="x", negotiated=True, id=1, ordered=ordered)
    client_channel = aiortc.RTCDataChannel(client, params)
    server_channel = aiortc.RTCDataChannel(server, params)
    received: list[bytes] = []
    server_channel.on("message", received.append)
    tasks = [
        asyncio.ensure_future(client_link.deliver()),
        asyncio.ensure_future(server_link.deliver()),
    ]
    try:
        await client.start(server.getCapabilities(), server.port)
        await server.start(client.getCapabilities(), client.port)
        await until(lambda: client_channel.readyState == server_channel.readyState == "open", 10.0)
        yield SctpPair(
            client, server, client_link, server_link, client_channel, server_channel, received
        )
    finally:
        client_link.state = server_link.state = "closed"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for association in (client, server):
            association._set_state(aiortc.RTCSctpTransport.State.CLOSED)
