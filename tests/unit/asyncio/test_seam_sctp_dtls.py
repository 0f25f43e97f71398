"""The DTLS receive loop that ``tune_sctp`` installs under a tuned association (issue 18).

Two real ``RTCPeerConnection`` objects in this process, joined over loopback as aiortc does it
(ICE, DTLS, SCTP), both tuned the way lkproto's own connections are. The checks: data still flows
both ways, byte for byte; after the handshake a datagram of application data no longer makes
the transport ask OpenSSL for output (aiortc's ``_write_ssl``); a remote close still closes the
transport; and the record scan that decides
it reads DTLS framing (RFC 6347 §4.1) right.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiortc
import pytest

from lkproto.asyncio import _seam
from lkproto.testing import scaled

# Name-mangled counters and flag of aiortc 1.16.0's RTCDtlsTransport.__init__.
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_HANDSHAKE_DONE = "_RTCDtlsTransport__handshake_done"


def _record(content_type: int, body: bytes) -> bytes:
    """One DTLS 1.2 record: type, version 1.2, epoch 1, sequence 7, length, then ``body``."""
    return (
        bytes([content_type, 0xFE, 0xFD, 0, 1])
        + (7).to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (_record(23, b"x" * 40), True),
        (_record(23, b"x" * 40) + _record(23, b"y" * 3), True),
        (_record(23, b""), True),
        (_record(23, b"x" * 40) + _record(21, b"\x01\x00"), False),  # then an alert
        (_record(21, b"\x01\x00"), False),  # close_notify
        (_record(22, b"\x00" * 12), False),  # handshake
        (_record(20, b"\x01"), False),  # ChangeCipherSpec
        (_record(23, b"x" * 40)[:-1], False),  # truncated body
        (_record(23, b"x" * 40)[:10], False),  # truncated header
    ],
)
def test_application_data_only_reads_every_record_header(datagram: bytes, expected: bool) -> None:
    assert _seam._application_data_only(datagram) is expected


@dataclass(slots=True)
class _Pair:
    offer: aiortc.RTCPeerConnection
    answer: aiortc.RTCPeerConnection
    sent: aiortc.RTCDataChannel
    received: list[bytes]
    echoed: list[bytes]


@pytest.fixture
async def pair() -> AsyncIterator[_Pair]:
    offer, answer = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
    channel = offer.createDataChannel("x")
    received: list[bytes] = []
    echoed: list[bytes] = []
    channel.on("message", echoed.append)

    @answer.on("datachannel")
    def on_channel(remote: aiortc.RTCDataChannel) -> None:
        @remote.on("message")
        def on_message(data: bytes) -> None:
            received.append(data)
            remote.send(data[:10])

    opened = asyncio.Event()
    channel.on("open", opened.set)
    try:
        assert offer.sctp is not None
        _seam.tune_sctp(offer.sctp)
        await offer.setLocalDescription(await offer.createOffer())
        await answer.setRemoteDescription(offer.localDescription)
        assert answer.sctp is not None
        _seam.tune_sctp(answer.sctp)
        await answer.setLocalDescription(await answer.createAnswer())
        await offer.setRemoteDescription(answer.localDescription)
        async with asyncio.timeout(scaled(20)):
            await opened.wait()
        yield _Pair(offer, answer, channel, received, echoed)
    finally:
        await offer.close()
        await answer.close()
        await _seam.after_close()


async def _until(condition: object, timeout_s: float) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (aiortc state has no event to await)
            await asyncio.sleep(0.005)


def _count_ssl_reads_beyond_sends(dtls: aiortc.RTCDtlsTransport) -> list[int]:
    """Count ``_write_ssl`` calls (reads of OpenSSL's output) not made by ``_send_data``, which
    reads once per record it sends."""
    calls = [0]
    original_write, original_send = dtls._write_ssl, dtls._send_data

    async def counting_write() -> None:
        calls[0] += 1
        await original_write()

    async def counting_send(data: bytes) -> None:
        calls[0] -= 1
        await original_send(data)

    dtls._write_ssl = counting_write  # type: ignore[method-assign]
    dtls._send_data = counting_send  # type: ignore[method-assign]
    return calls


async def test_data_flows_both_ways_without_asking_openssl_per_datagram(pair: _Pair) -> None:
    assert pair.answer.sctp is not None
    dtls = pair.answer.sctp.transport
    assert getattr(dtls, "_lkproto_lean_receive", False)
    rng = random.Random(5)
    messages = [rng.randbytes(rng.randint(1, 40_000)) for _ in range(40)]
    await _until(lambda: getattr(dtls, _HANDSHAKE_DONE, False), scaled(10))
    writes = _count_ssl_reads_beyond_sends(dtls)
    received_before = getattr(dtls, _RX_PACKETS)
    for message in messages:
        pair.sent.send(message)
    await _until(lambda: len(pair.echoed) >= len(messages), scaled(30))
    assert pair.received[-len(messages) :] == messages
    assert pair.echoed[-len(messages) :] == [m[:10] for m in messages]
    # Hundreds of DATA and SACK datagrams came in (counted as aiortc counts them, for its
    # stats); none of them made the transport read OpenSSL's output (aiortc: one read each).
    assert getattr(dtls, _RX_PACKETS) - received_before > 100
    assert writes[0] == 0


async def test_a_remote_close_still_closes_the_transport(pair: _Pair) -> None:
    assert pair.answer.sctp is not None
    dtls = pair.answer.sctp.transport
    await _until(lambda: getattr(dtls, _HANDSHAKE_DONE, False), scaled(10))
    # From here on the replacement receives: the close_notify alert must end the transport.
    assert pair.offer.sctp is not None
    await pair.offer.sctp.transport.stop()  # sends close_notify
    await _until(lambda: dtls.state == "closed", scaled(10))
