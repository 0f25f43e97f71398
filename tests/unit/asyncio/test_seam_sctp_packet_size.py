"""The seam's SCTP packet size (issue 18, third round): the rule and larger packets on the wire.

The rule (:func:`_seam.sctp_packet_bytes`) is checked on its own; the size itself runs on real
aiortc associations joined by :mod:`tests._support.sctp_link` (no DTLS or ICE), so every packet
can be measured: messages fragment into larger chunks, reassemble byte for byte at a stock or a
tuned peer through loss and reordering, and a size raised mid-transfer never cuts a chunk.
"""

from __future__ import annotations

import random

import aiortc.rtcsctptransport as sctp
import pytest

from lkproto.asyncio import _seam
from lkproto.errors import LkError, LocalProtocolError
from lkproto.testing import scaled
from tests._support.sctp_link import Impairment, SctpPair, data_chunks, sctp_pair, until

_LARGE = _seam.SCTP_MAX_PACKET_BYTES
_LARGE_CHUNK = _LARGE - 12 - 16  # common header, DATA chunk header


def _messages(seed: int, count: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, largest)) for _ in range(count)]


async def _transfer(pair: SctpPair, messages: list[bytes]) -> None:
    for message in messages:
        pair.client_channel.send(message)
    await until(lambda: len(pair.received) >= len(messages), scaled(30))


def test_largest_packet_fits_every_livekit_server_datagram() -> None:
    assert _LARGE == 1392
    assert _LARGE % 4 == 0
    assert _LARGE + _seam.DTLS_RECORD_OVERHEAD_MAX_BYTES <= _seam.SERVER_DATAGRAM_MAX_BYTES
    assert _seam.SCTP_DEFAULT_PACKET_BYTES == sctp.SCTP_MAX_PACKET_LENGTH


@pytest.mark.parametrize(
    ("path_mtu", "remote", "relayed", "expected"),
    [
        (None, "192.0.2.7", False, 1189),  # unknown path: aiortc's size
        (None, "2001:db8::7", False, 1189),
        (None, "127.0.0.1", False, 1392),  # the server on this host: loopback interface
        (None, "::1", False, 1392),
        (1500, "192.0.2.7", False, 1392),  # 1500 - 28 - 65 = 1407, capped by the server
        (1500, "2001:db8::7", False, 1384),  # 1500 - 48 - 65 = 1387, whole words
        (1400, "192.0.2.7", False, 1304),  # 1400 - 28 - 65 = 1307
        (1280, "2001:db8::7", False, 1189),  # never below aiortc's own size
        (9000, "192.0.2.7", False, 1392),
        (1500, "192.0.2.7", True, 1189),  # TURN framing adds to the datagram
        (None, "127.0.0.1", True, 1189),
        (1500, "abcd.local", False, 1189),  # mDNS name: nothing known
    ],
)
def test_packet_size_rule(path_mtu: int | None, remote: str, relayed: bool, expected: int) -> None:
    assert _seam.sctp_packet_bytes(path_mtu, remote_address=remote, relayed=relayed) == expected


async def test_set_packet_bytes_checks_range_and_tuning() -> None:
    async with sctp_pair(tune_server=False) as pair:
        with pytest.raises(LocalProtocolError, match="tune_sctp"):
            _seam.set_sctp_packet_bytes(pair.server, _LARGE)
        assert _seam.sctp_packet_bytes_of(pair.server) == sctp.SCTP_MAX_PACKET_LENGTH
        for bad in (_seam.SCTP_DEFAULT_PACKET_BYTES - 1, _LARGE + 1):
            with pytest.raises(LocalProtocolError, match="outside"):
                _seam.set_sctp_packet_bytes(pair.client, bad)
        assert _seam.sctp_packet_bytes_of(pair.client) == _seam.SCTP_DEFAULT_PACKET_BYTES
        _seam.set_sctp_packet_bytes(pair.client, _LARGE)
        assert _seam.sctp_packet_bytes_of(pair.client) == _LARGE


@pytest.mark.parametrize("tune_server", [True, False], ids=["tuned-peer", "stock-peer"])
async def test_large_packets_fragment_and_reassemble(tune_server: bool) -> None:
    messages = [*_messages(5, 30, 40_000), bytes(_LARGE_CHUNK), bytes(_LARGE_CHUNK + 1)]
    async with sctp_pair(seed=2, tune_server=tune_server) as pair:
        _seam.set_sctp_packet_bytes(pair.client, _LARGE)
        before = len(pair.client_link.sent)
        await _transfer(pair, messages)
        sent = pair.client_link.sent[before:]
    assert pair.received == messages
    assert max(len(p) for p in sent) == _LARGE
    sizes = [len(c.user_data) for p in sent for c in data_chunks(p)]
    assert max(sizes) == _LARGE_CHUNK
    # every fragment but a message's last is full-sized
    full = sum(len(m) // _LARGE_CHUNK for m in messages)
    assert sizes.count(_LARGE_CHUNK) >= full


async def test_fewer_packets_than_the_default_size() -> None:
    messages = [bytes([i]) * 15_000 for i in range(40)]
    counts: list[int] = []
    for size in (_seam.SCTP_DEFAULT_PACKET_BYTES, _LARGE):
        async with sctp_pair(seed=4) as pair:
            _seam.set_sctp_packet_bytes(pair.client, size)
            before = len(pair.client_link.sent)
            await _transfer(pair, messages)
            counts.append(sum(1 for p in pair.client_link.sent[before:] if data_chunks(p)))
        assert pair.received == messages
    default, large = counts
    # 15,000 bytes: 13 chunks of 1,160 or 11 of 1,364
    assert large <= default * 11 / 13 + 2


@pytest.mark.parametrize("tune_server", [True, False], ids=["tuned-peer", "stock-peer"])
async def test_lossy_link_with_large_packets_delivers_everything_once_in_order(
    tune_server: bool,
) -> None:
    messages = _messages(9, 60, 6000)
    async with sctp_pair(seed=6, tune_server=tune_server) as pair:
        _seam.set_sctp_packet_bytes(pair.client, _LARGE)
        pair.impair(Impairment(loss=0.1, duplicate=0.05, reorder=0.05))
        await _transfer(pair, messages)
    assert pair.received == messages
    assert max(len(p) for p in pair.client_link.sent) <= _LARGE


async def test_size_raised_mid_transfer_keeps_queued_chunks_whole() -> None:
    early = _messages(11, 10, 20_000)
    late = _messages(12, 10, 20_000)
    async with sctp_pair(seed=8) as pair:
        pair.impair(Impairment(loss=0.05))
        for message in early:
            pair.client_channel.send(message)
        # a flush cuts the first messages into aiortc-sized chunks, some of them still unsent
        await until(lambda: len(pair.client._outbound_queue) > 0, scaled(5))
        _seam.set_sctp_packet_bytes(pair.client, _LARGE)
        await _transfer(pair, late)
        await until(lambda: len(pair.received) == len(early) + len(late), scaled(30))
        sent = pair.client_link.sent
    assert pair.received == early + late
    assert max(len(p) for p in sent) <= _LARGE
    sizes = {len(c.user_data) for p in sent for c in data_chunks(p)}
    assert sctp.USERDATA_MAX_LENGTH in sizes  # early messages: aiortc's chunks
    assert _LARGE_CHUNK in sizes  # late ones: the larger chunks


async def test_default_size_both_ways_is_aiortc_size() -> None:
    messages = _messages(13, 20, 10_000)
    async with sctp_pair(seed=10) as pair:
        await _transfer(pair, messages)
        sent = pair.client_link.sent
    assert pair.received == messages
    assert max(len(p) for p in sent) <= sctp.SCTP_MAX_PACKET_LENGTH


def test_receive_buffers_need_aioice_protocols() -> None:
    class NoConnection:
        _connection = None

    with pytest.raises(LkError, match="_protocols"):
        _seam.enlarge_receive_buffers(NoConnection())  # type: ignore[arg-type]
