"""Larger SCTP packets toward a real livekit-server (issue 18, third round; the seam's "SCTP
packet size" section).

lkproto's peer connections send SCTP packets of up to 1,392 bytes when the path is known; the
server on loopback is such a path. One lkproto sender, one lkproto and one official receiver in a
room: the sender's association uses the larger size, its datagrams are on average larger than
aiortc's default size allows, and a 3 MiB byte stream reaches both receivers byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.asyncio import _seam
from lkproto.testing import scaled
from tests.interop._helpers import (
    connect_official,
    connect_ours,
    disconnect_all,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.asyncio.peer import PeerConnection
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

TOPIC = "mtu"
STREAM_BYTES = 3 * 1024 * 1024
STREAM_TIMEOUT_S = 60.0
# aiortc's 1,189-byte packet plus the largest DTLS record overhead (65) bounds the average
# datagram of a default-size association; AES-GCM records add 37.
DEFAULT_DATAGRAM_MAX = _seam.SCTP_DEFAULT_PACKET_BYTES + _seam.DTLS_RECORD_OVERHEAD_MAX_BYTES


def _dtls_sent(pc: PeerConnection) -> tuple[int, int]:
    """(packets, bytes) the DTLS transport under ``pc``'s data channels has sent."""
    sctp = pc._pc.sctp
    assert sctp is not None
    for stats in sctp.transport._get_stats().values():
        return int(stats.packetsSent), int(stats.bytesSent)
    raise AssertionError("no transport stats")


async def test_larger_packets_reach_lkproto_and_official_receivers(
    livekit_server: LocalServer,
) -> None:
    name = unique_room("mtu")
    results: dict[str, asyncio.Task[bytes]] = {}

    def handler_for(label: str) -> Any:
        def handler(reader: Any, identity: str) -> None:
            async def read() -> bytes:
                return b"".join([chunk async for chunk in reader])

            results[label] = asyncio.ensure_future(read())

        return handler

    ours_rx = rtc.Room()
    ours_rx.register_byte_stream_handler(TOPIC, handler_for("lkproto"))
    official_rx = lrtc.Room()
    official_rx.register_byte_stream_handler(TOPIC, handler_for("official"))
    tx: rtc.Room | None = None
    try:
        await connect_ours(livekit_server, "rx-lk", name, room=ours_rx)
        await connect_official(livekit_server, "rx-sdk", name, room=official_rx)
        tx = await connect_ours(livekit_server, "tx", name)
        sender = tx
        await wait_for(
            lambda: (
                {"rx-lk", "rx-sdk"} <= {p.identity for p in sender.remote_participants.values()}
            ),
            10.0,
            "tx sees both receivers",
        )
        assert tx.engine is not None
        publisher, _ = tx.engine.peer_connections()
        assert publisher is not None
        assert publisher._pc.sctp is not None
        assert _seam.sctp_packet_bytes_of(publisher._pc.sctp) == _seam.SCTP_MAX_PACKET_BYTES

        packets0, bytes0 = _dtls_sent(publisher)
        data = os.urandom(STREAM_BYTES)
        writer = await tx.local_participant.stream_bytes("blob.bin", topic=TOPIC)
        for offset in range(0, len(data), 64 * 1024):
            await writer.write(data[offset : offset + 64 * 1024])
        await writer.aclose()
        async with asyncio.timeout(scaled(STREAM_TIMEOUT_S)):
            while len(results) < 2:  # noqa: ASYNC110 (the handlers run in the SDKs' callbacks)
                await asyncio.sleep(0.02)
            received = {label: await task for label, task in results.items()}
        packets1, bytes1 = _dtls_sent(publisher)

        digest = hashlib.sha256(data).hexdigest()
        assert {label: hashlib.sha256(b).hexdigest() for label, b in received.items()} == {
            "lkproto": digest,
            "official": digest,
        }
        # Mostly full DATA packets (plus SACKs and control): on average larger than any
        # datagram of a default-size association can be.
        average = (bytes1 - bytes0) / (packets1 - packets0)
        print(f"\n{packets1 - packets0} datagrams sent, {average:.0f} bytes on average")
        assert average > DEFAULT_DATAGRAM_MAX, average
    finally:
        await disconnect_all(tx, ours_rx, official_rx)
