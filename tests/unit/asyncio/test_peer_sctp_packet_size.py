"""PeerConnection's datagram path: SCTP packet size (PeerOptions.sctp_path_mtu) and socket
receive buffers, two peers over 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest

from lkproto import errors
from lkproto.asyncio import _seam
from lkproto.asyncio.peer import RELIABLE_LABEL, PeerConnection, PeerOptions
from tests.conftest import scaled

# Two aiortc peers: an aiortc answerer cannot take a max-bundle offer (PeerOptions.max_bundle).
LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_path_mtu_below_the_ipv6_minimum_is_refused() -> None:
    with pytest.raises(errors.LocalProtocolError, match="sctp_path_mtu"):
        PeerConnection(PeerOptions(sctp_path_mtu=1279))


async def test_loopback_pair_sends_the_largest_packets_and_delivers() -> None:
    received: list[bytes] = []
    got = asyncio.Event()

    def on_data(label: str, data: bytes) -> None:
        received.append(data)
        got.set()

    a = PeerConnection(LOOPBACK)
    b = PeerConnection(LOOPBACK, on_data=on_data)
    try:
        await a.create_data_channels()
        sctp = a._pc.sctp  # the association under test
        assert sctp is not None
        # before connecting: aiortc's size
        assert _seam.sctp_packet_bytes_of(sctp) == _seam.SCTP_DEFAULT_PACKET_BYTES
        offer = await asyncio.wait_for(a.create_offer(), scaled(10))
        answer = await asyncio.wait_for(b.apply_offer(offer), scaled(10))
        await asyncio.wait_for(a.apply_answer(answer), scaled(10))
        for pc in (a, b):
            await pc.wait_connected(scaled(10))
            await pc.wait_channels_open(scaled(10))
        # the server on this host: the path is the loopback interface
        assert _seam.sctp_packet_bytes_of(sctp) == _seam.SCTP_MAX_PACKET_BYTES
        # Linux grants at most rmem_max and reports twice what it granted (socket(7))
        granted = min(_seam.UDP_RECEIVE_BUFFER_BYTES, _rmem_max())
        for protocol in sctp.transport.transport._connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * granted
        message = random.Random(1).randbytes(60_000)
        a.send(RELIABLE_LABEL, message)
        async with asyncio.timeout(scaled(10)):
            await got.wait()
        assert received == [message]
    finally:
        await a.close()
        await b.close()
