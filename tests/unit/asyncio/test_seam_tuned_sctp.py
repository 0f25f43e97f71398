"""The seam's tuned SCTP association (tune_sctp), run as real aiortc associations over a link.

Each test joins two aiortc 1.16 associations with :mod:`tests._support.sctp_link` (no DTLS or
ICE), tunes one or both, and checks what the tuning promises: the same messages, exactly once and
in order, through loss, duplication and reordering, also against an untuned (stock) peer; fewer
packets (bundling, delayed SACKs); the I bit on a burst's last chunk; a WebRTC-sized RTO.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time

import aiortc
import aiortc.rtcsctptransport as sctp
import pytest

from lkproto.asyncio import _seam
from lkproto.core.sctp import RTO_INITIAL_S, RTO_MIN_S, RtoEstimator
from lkproto.errors import LkError
from lkproto.testing import scaled
from tests._support.sctp_link import Impairment, SctpPair, data_chunks, sctp_pair, until

_I_BIT = 0x08


async def _transfer(pair: SctpPair, messages: list[bytes]) -> None:
    for message in messages:
        pair.client_channel.send(message)
    await until(lambda: len(pair.received) >= len(messages), scaled(30))


def _messages(seed: int, count: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, largest)) for _ in range(count)]


@pytest.mark.parametrize(
    ("tune_client", "tune_server"), [(True, True), (True, False), (False, True)]
)
async def test_lossy_link_delivers_everything_once_in_order(
    tune_client: bool, tune_server: bool
) -> None:
    messages = _messages(7, 60, 5000)
    async with sctp_pair(seed=3, tune_client=tune_client, tune_server=tune_server) as pair:
        pair.impair(Impairment(loss=0.1, duplicate=0.05, reorder=0.05))
        await _transfer(pair, messages)
        await asyncio.sleep(0.05)  # a duplicate still in flight must not be delivered again
    assert pair.received == messages


async def test_small_messages_sent_together_share_packets() -> None:
    messages = [bytes([i]) * 100 for i in range(40)]
    async with sctp_pair() as pair:
        before = len(pair.client_link.sent)
        await _transfer(pair, messages)
        data_packets = [p for p in pair.client_link.sent[before:] if data_chunks(p)]
    assert pair.received == messages
    # 40 chunks of 116 bytes fit ten to a packet; aiortc alone sends one packet per chunk.
    assert len(data_packets) <= 10


async def test_bulk_data_is_acknowledged_about_every_second_packet() -> None:
    messages = [random.Random(i).randbytes(15_000) for i in range(20)]  # 13 chunks each
    async with sctp_pair() as pair:
        data_before = len(pair.client_link.sent)
        sacks_before = len(pair.server_link.sent)
        await _transfer(pair, messages)
        await asyncio.sleep(0.1)  # the delayed SACK of the tail
        data = sum(1 for p in pair.client_link.sent[data_before:] if data_chunks(p))
        sacks = len(pair.server_link.sent) - sacks_before
    assert pair.received == messages
    assert data >= 250
    assert sacks <= data * 0.6  # aiortc alone: one SACK per DATA packet


async def test_a_bursts_last_chunk_asks_for_an_immediate_sack() -> None:
    async with sctp_pair() as pair:
        before = len(pair.client_link.sent)
        await _transfer(pair, [b"a" * 3000])
        chunks = [c for p in pair.client_link.sent[before:] for c in data_chunks(p)]
    assert len(chunks) == 3
    assert [bool(c.flags & _I_BIT) for c in chunks] == [False, False, True]


async def test_a_lone_packet_after_an_immediate_sack_is_still_acknowledged_by_the_timer() -> None:
    # A stock sender (no I bit, one packet per message) to a tuned receiver: the first packet
    # arms the delayed-SACK timer, the second is acknowledged at once (the timer stays armed
    # for the first wait), the third must be acknowledged when its own wait ends, not only
    # after the sender's retransmission timer (aiortc's RTO: 3 s) resends it as a duplicate.
    async with sctp_pair(tune_client=False) as pair:
        await _transfer(pair, [b"warm-up"])
        await until(lambda: not pair.client._sent_queue, scaled(10))
        first_tsn = pair.client._local_tsn
        sent = pair.client_link.sent
        for message in (b"one", b"two"):  # each in its own packet, one after the other
            count = len(sent)
            pair.client_channel.send(message)
            await until(lambda count=count: len(sent) > count, scaled(5))  # type: ignore[misc]
        pair.client_channel.send(b"three")
        third = (first_tsn + 2) % (1 << 32)
        await until(lambda: pair.client._last_sacked_tsn == third, scaled(10))
        data = [p for p in pair.client_link.sent if data_chunks(p)]
        resent = [c.tsn for p in data for c in data_chunks(p)].count(third) - 1
    assert pair.received == [b"warm-up", b"one", b"two", b"three"]
    assert resent == 0


async def test_rto_starts_and_settles_at_webrtc_values() -> None:
    async with sctp_pair() as pair:
        fresh = aiortc.RTCSctpTransport(pair.client_link)  # type: ignore[arg-type]
        _seam.tune_sctp(fresh)
        assert fresh._rto == RTO_INITIAL_S
        await _transfer(pair, [b"x"] * 5)
        assert pair.client._rto == RTO_MIN_S  # a memory link's round trip is far below it
        fresh._set_state(aiortc.RTCSctpTransport.State.CLOSED)


async def test_a_lost_lone_message_is_resent_by_the_shortened_timer() -> None:
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        pair.impair(Impairment(loss=1.0))
        pair.client_channel.send(b"lost once")
        await until(lambda: pair.client._t3_handle is not None, scaled(5))
        handle = pair.client._t3_handle
        assert handle is not None
        # The retransmission timer runs on the tuned RTO, not aiortc's 1 s floor.
        assert handle.when() - asyncio.get_running_loop().time() <= RTO_MIN_S
        pair.impair(Impairment())
        await until(lambda: len(pair.received) >= 2, scaled(10))
        assert pair.client._rto >= RTO_MIN_S
    assert pair.received == [b"warm-up", b"lost once"]


async def test_unordered_channel_delivers_each_message_once() -> None:
    messages = _messages(5, 40, 3000)
    async with sctp_pair(seed=9, ordered=False) as pair:
        pair.impair(Impairment(loss=0.1, duplicate=0.1, reorder=0.1))
        await _transfer(pair, messages)
        await asyncio.sleep(0.05)
    assert sorted(pair.received) == sorted(messages)


async def test_tuning_is_per_association_and_idempotent() -> None:
    async with sctp_pair(tune_server=False) as pair:
        tuned = pair.client._handle_data
        _seam.tune_sctp(pair.client)
        assert pair.client._handle_data == tuned
        assert "_handle_data" in vars(pair.client)
        assert "_handle_data" not in vars(pair.server)
        assert pair.server._rto == sctp.SCTP_RTO_INITIAL


async def test_a_message_too_large_for_the_peer_is_refused() -> None:
    async with sctp_pair() as pair:
        pair.client._remote_max_message_size = 10
        with pytest.raises(ValueError, match="up to 10 bytes"):
            pair.client_channel.send(b"x" * 11)


def test_missing_internals_raise() -> None:
    class NotAnAssociation:
        pass

    with pytest.raises(LkError, match="tune_sctp"):
        _seam.tune_sctp(NotAnAssociation())  # type: ignore[arg-type]


async def test_a_timer_retransmission_after_dtls_closed_raises_into_no_task() -> None:
    """aiortc's T3 expiry sends from a task nobody awaits; DTLS closed under it must not leave
    "Task exception was never retrieved" behind (the 100-participant load run logged 81)."""
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        async with sctp_pair() as pair:
            await _transfer(pair, [b"warm-up"])
            pair.impair(Impairment(loss=1.0))
            pair.client_channel.send(b"never acknowledged")
            await until(lambda: pair.client._t3_handle is not None, scaled(5))
            pair.client_link.state = "closed"  # the fake DTLS now raises ConnectionError
            # Two timer expiries (tuned RTO <= RTO_MIN_S, then backed off) send again.
            await asyncio.sleep(RTO_MIN_S * 4)
            pair.client_link.state = "connected"
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c for c in unretrieved if isinstance(c.get("exception"), ConnectionError)] == []


def _slow_timer(association: aiortc.RTCSctpTransport) -> None:
    """Give ``association`` a 30 s retransmission timer: within a test's bounded wait only
    a SACK-driven (fast) retransmission can resend anything."""
    tuned = getattr(association, "_lkproto_tuned")  # noqa: B009
    tuned.rto = RtoEstimator(initial_s=30.0, min_s=30.0, max_backoff_s=30.0)
    association._rto = tuned.rto.rto


async def _send_lost(pair: SctpPair, message: bytes) -> None:
    """Send ``message`` while the client's direction drops everything."""
    sent = pair.client_link.sent
    count = len(sent)
    pair.client_link.impairment = Impairment(loss=1.0)
    pair.client_channel.send(message)
    await until(lambda: len(sent) > count, scaled(5))
    pair.client_link.impairment = Impairment()


async def _three_in_flight_and_lost(pair: SctpPair) -> list[sctp.DataChunk]:
    """Send a, b and c while both directions drop everything (slow timer): the three chunks of
    the client's sent queue, in order, none acknowledged."""
    _slow_timer(pair.client)
    pair.impair(Impairment(loss=1.0))
    for message in (b"a", b"b", b"c"):
        pair.client_channel.send(message)
    await until(lambda: len(pair.client._sent_queue) == 3, scaled(5))
    return list(pair.client._sent_queue)


async def test_early_retransmit_resends_a_lost_chunk_with_one_later_chunk_acknowledged() -> None:
    # Two chunks outstanding, the first lost: the SACK of the second is the only miss
    # indication there will ever be, so RFC 4960's three never come; Early Retransmit
    # (RFC 5827) resends on that one. The 30 s timer cannot fire within the wait.
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        _slow_timer(pair.client)
        await _send_lost(pair, b"lost")
        pair.client_channel.send(b"after")
        await until(lambda: len(pair.received) >= 3, scaled(10))
    assert pair.received == [b"warm-up", b"lost", b"after"]


async def test_a_timer_resend_lost_again_is_resent_once_later_data_is_acknowledged() -> None:
    # After a T3 expiry the resent chunk is a retransmission, which aiortc's TSN-ordered
    # strikes cannot judge; the chunk sent after it and acknowledged shows it was lost.
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        _slow_timer(pair.client)
        pair.client_link.impairment = Impairment(loss=1.0)
        pair.client_channel.send(b"lost twice")
        await until(lambda: len(pair.client._sent_queue) == 1, scaled(5))
        lost = pair.client._sent_queue[0]
        pair.client._t3_cancel()
        pair.client._t3_expired()  # the timer's resend, dropped too
        await until(lambda: lost._sent_count == 2, scaled(5))
        pair.client_link.impairment = Impairment()
        pair.client_channel.send(b"after")
        await until(lambda: len(pair.received) >= 3, scaled(10))
        assert lost._sent_count == 3
    assert pair.received == [b"warm-up", b"lost twice", b"after"]


async def test_four_outstanding_chunks_keep_the_rfc_threshold_of_three_misses() -> None:
    # With four chunks outstanding the threshold is RFC 4960's three: one chunk lost and two
    # later ones acknowledged (two miss indications) is not enough for a fast retransmission.
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        _slow_timer(pair.client)
        pair.client._cwnd = 10 * sctp.USERDATA_MAX_LENGTH  # let all four go at once
        pair.server_link.impairment = Impairment(loss=1.0)  # no SACK back yet
        await _send_lost(pair, b"lost")
        pair.server_link.impairment = Impairment(loss=1.0)
        for message in (b"one", b"two", b"three"):
            pair.client_channel.send(message)
        await until(lambda: len(pair.client._sent_queue) == 4, scaled(5))
        lost = pair.client._sent_queue[0]
        # Two SACKs reach the client: two miss indications, no retransmission.
        for gaps in ([(1, 1)], [(1, 2)]):
            sack = sctp.SackChunk()
            sack.cumulative_tsn = (lost.tsn - 1) % (1 << 32)
            sack.advertised_rwnd = 1 << 20
            sack.gaps = gaps
            await pair.client._receive_sack_chunk(sack)
        assert not lost._retransmit
        assert lost._sent_count == 1
        pair.server_link.impairment = Impairment()


async def test_timer_expiry_resends_only_chunks_the_latest_sack_does_not_acknowledge() -> None:
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        a, b, c = await _three_in_flight_and_lost(pair)
        # The peer says it holds b and c (it never got them: from here on it has reneged).
        sack = sctp.SackChunk()
        sack.cumulative_tsn = (a.tsn - 1) % (1 << 32)
        sack.advertised_rwnd = 1 << 20
        sack.gaps = [(2, 3)]
        await pair.client._receive_sack_chunk(sack)
        assert (a._retransmit, b._acked, c._acked) == (False, True, True)  # 1 miss < 2
        pair.client._t3_cancel()
        pair.client._t3_expired()
        # aiortc would resend all three; b and c are acknowledged, so only a is due.
        assert (a._retransmit, b._retransmit, c._retransmit) == (True, False, False)
        # The peer's next SACKs leave b and c out: the next expiry resends them.
        tuned = getattr(pair.client, "_lkproto_tuned")  # noqa: B009
        tuned.rto = RtoEstimator(initial_s=RTO_MIN_S)
        pair.client._rto = RTO_MIN_S
        pair.impair(Impairment())
        await until(lambda: len(pair.received) >= 4, scaled(15))
    assert pair.received == [b"warm-up", b"a", b"b", b"c"]


async def test_a_chunk_marked_by_an_expiry_and_acknowledged_since_is_not_resent() -> None:
    # Hypothesis found it (test_sctp_association_props, 30 % loss, seed 329): an expiry marks
    # a, b and c; the one-MTU window lets c wait; a SACK then acknowledges c in a gap block
    # (its first copy did arrive: the earlier SACK saying so was lost). The next expiry must
    # not leave c marked: the peer has it.
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        _slow_timer(pair.client)
        pair.client._cwnd = 10 * sctp.USERDATA_MAX_LENGTH  # let all three go at once
        pair.impair(Impairment(loss=1.0))
        messages = [bytes([n]) * 1000 for n in b"abc"]  # a chunk each, one per one-MTU window
        for message in messages:
            pair.client_channel.send(message)
        await until(lambda: len(pair.client._sent_queue) == 3, scaled(5))
        a, _b, c = pair.client._sent_queue
        pair.client._t3_cancel()
        pair.client._t3_expired()
        await until(lambda: a._sent_count == 2, scaled(5))
        assert (c._retransmit, c._sent_count) == (True, 1)  # waiting for the window
        sack = sctp.SackChunk()
        sack.cumulative_tsn = (a.tsn - 1) % (1 << 32)
        sack.advertised_rwnd = 1 << 20
        sack.gaps = [(3, 3)]
        await pair.client._receive_sack_chunk(sack)
        assert c._acked
        pair.client._t3_cancel()
        pair.client._t3_expired()
        assert (a._retransmit, c._retransmit) == (True, False)
        pair.client._t3_cancel()
        tuned = getattr(pair.client, "_lkproto_tuned")  # noqa: B009
        tuned.rto = RtoEstimator(initial_s=RTO_MIN_S)
        pair.client._rto = RTO_MIN_S
        pair.impair(Impairment())
        # The peer never had c (this SACK was made up): its next SACKs leave c out, so a later
        # expiry marks it as reneged on and everything still arrives.
        await until(lambda: len(pair.received) >= 4, scaled(15))
    assert pair.received == [b"warm-up", *messages]


async def test_the_round_trip_sample_skips_chunks_acknowledged_earlier_or_sent_twice() -> None:
    async with sctp_pair() as pair:
        await _transfer(pair, [b"warm-up"])
        a, b, c = await _three_in_flight_and_lost(pair)
        now = time.time()
        a._sent_count, a._sent_time = 2, now - 100.0  # retransmitted: Karn
        b._acked, b._sent_time = True, now - 100.0  # a gap block acknowledged it long ago
        c._sent_time = now  # the chunk whose arrival the SACK answers
        sack = sctp.SackChunk()
        sack.cumulative_tsn = c.tsn
        tuned = getattr(pair.client, "_lkproto_tuned")  # noqa: B009
        sample = tuned._rtt_sample(sack)
        assert sample is not None
        assert 0.0 <= sample < 50.0  # c's round trip, not a's or b's hundred seconds
        # A retransmission sent after c: this SACK may answer it, after c's SACKs were lost.
        tuned._last_retransmission = getattr(c, "_lkproto_sent_order") + 1  # noqa: B009
        assert tuned._rtt_sample(sack) is None
        tuned._last_retransmission = 0
        c._sent_count = 2
        assert tuned._rtt_sample(sack) is None  # nothing sent once and newly acknowledged
        pair.impair(Impairment())


async def test_a_packet_that_fills_a_gap_is_acknowledged_at_once() -> None:
    # A stock sender: no I bit asks for the SACK, only the gap it fills does.
    async with sctp_pair(tune_client=False) as pair:
        await _transfer(pair, [b"warm-up"])
        await until(lambda: not pair.client._sent_queue, scaled(10))
        pair.client_link.impairment = Impairment(loss=1.0)
        sent = pair.client_link.sent
        packets = []
        for message in (b"a", b"b"):  # one packet each, both dropped by the link
            count = len(sent)
            pair.client_channel.send(message)
            await until(lambda count=count: len(sent) > count, scaled(5))  # type: ignore[misc]
            packets.append(sent[-1])
        first, second = (data_chunks(p)[0].tsn for p in packets)
        sacks = pair.server_link.sent
        await pair.server._handle_data(packets[1])  # b: a gap, acknowledged at once anyway
        before = len(sacks)
        await pair.server._handle_data(packets[0])  # a fills it
        # Not after the delayed-SACK timer: before _handle_data returned.
        assert len(sacks) == before + 1
        sack = next(c for c in sctp.parse_packet(sacks[-1])[3] if isinstance(c, sctp.SackChunk))
        assert sack.cumulative_tsn == second != first
        assert sack.gaps == []
        pair.client_link.impairment = Impairment()
