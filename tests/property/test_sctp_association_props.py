"""Property: lkproto's tuned SCTP association delivers every message exactly once, in order.

Two real aiortc associations (one or both tuned by :func:`lkproto.asyncio._seam.tune_sctp`) over
the in-memory link of :mod:`tests._support.sctp_link`, with hypothesis choosing the messages
(sizes across the fragment and bundling edges), the link's loss, duplication and reordering, and
the seed of its random generator. Whatever the impairment, the receiver gets the sent list; under
20-30 % loss, no T3 expiry marks a chunk the latest SACK acknowledges in a gap block.
"""

from __future__ import annotations

import asyncio

import aiortc.rtcsctptransport as sctp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.asyncio import _seam
from lkproto.testing import scaled
from tests._support.sctp_link import Impairment, sctp_pair, until

_CHUNK = sctp.USERDATA_MAX_LENGTH
# Sizes on both sides of the one-chunk and two-chunk edges, tiny ones that bundle, and large.
sizes = st.one_of(
    st.integers(min_value=1, max_value=200),
    st.sampled_from([_CHUNK - 1, _CHUNK, _CHUNK + 1, 2 * _CHUNK, 2 * _CHUNK + 1]),
    st.integers(min_value=1, max_value=20_000),
)
impairments = st.builds(
    Impairment,
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.1]),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lengths=st.lists(sizes, min_size=1, max_size=25),
    impairment=impairments,
    seed=st.integers(min_value=0, max_value=2**16),
    tune_server=st.booleans(),
)
def test_any_impairment_delivers_the_sent_messages_once_in_order(
    lengths: list[int], impairment: Impairment, seed: int, tune_server: bool
) -> None:
    messages = [bytes([i % 251]) * n for i, n in enumerate(lengths)]

    async def run() -> list[bytes]:
        async with sctp_pair(seed=seed, tune_server=tune_server) as pair:
            pair.impair(impairment)
            for message in messages:
                pair.client_channel.send(message)
            await until(lambda: len(pair.received) >= len(messages), scaled(60))
            await asyncio.sleep(0.02)  # a late duplicate must not be delivered again
            return list(pair.received)

    # A private loop, not asyncio.run: that would leave the thread without a current loop.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(run()) == messages
    finally:
        loop.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    count=st.integers(min_value=5, max_value=40),
    loss=st.sampled_from([0.2, 0.3]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_heavy_loss_timer_never_resends_what_the_latest_sack_acknowledges(
    count: int, loss: float, seed: int
) -> None:
    # 20-30 % loss both ways (brief s6_soak20): everything still arrives once and in order, and
    # no T3 expiry marks a chunk the latest SACK reports in a gap block (aiortc marked them all).
    messages = [bytes([i % 251]) * 1000 for i in range(count)]
    wrongly_marked: list[int] = []
    expiries = 0

    async def run() -> list[bytes]:
        nonlocal expiries
        async with sctp_pair(seed=seed) as pair:
            tuned = getattr(pair.client, "_lkproto_tuned")  # noqa: B009
            expire = pair.client._t3_expired

            def checked_expiry() -> None:
                nonlocal expiries
                expiries += 1
                expire()
                cumulative, gaps = tuned._last_sack
                wrongly_marked.extend(
                    c.tsn
                    for c in pair.client._sent_queue
                    if c._retransmit and _seam._in_gap_blocks(c.tsn, cumulative, gaps)
                )

            pair.client._t3_expired = checked_expiry  # type: ignore[method-assign]
            pair.impair(Impairment(loss=loss))
            for message in messages:
                pair.client_channel.send(message)
            await until(lambda: len(pair.received) >= len(messages), scaled(60))
            await asyncio.sleep(0.02)
            return list(pair.received)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(run()) == messages
    finally:
        loop.close()
    assert wrongly_marked == [], (expiries, wrongly_marked)
