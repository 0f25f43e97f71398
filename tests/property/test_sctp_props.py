"""Property tests of lkproto.core.sctp: RTO bounds and the SACK scheduler's promises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lkproto.core.sctp import RtoEstimator, SackScheduler

seconds = st.floats(min_value=-1.0, max_value=100.0, allow_nan=False)
events = st.lists(st.one_of(seconds.map(lambda r: ("rtt", r)), st.just(("timeout", 0.0))))


@given(
    min_s=st.floats(min_value=0.001, max_value=5.0),
    spread=st.floats(min_value=0.0, max_value=100.0),
    initial_s=st.floats(min_value=0.001, max_value=200.0),
    backoff_s=st.floats(min_value=0.001, max_value=100.0),
    script=events,
)
def test_rto_stays_within_its_bounds(
    min_s: float,
    spread: float,
    initial_s: float,
    backoff_s: float,
    script: list[tuple[str, float]],
) -> None:
    estimator = RtoEstimator(
        initial_s=initial_s, min_s=min_s, max_s=min_s + spread, max_backoff_s=backoff_s
    )
    assert min_s <= estimator.rto <= min_s + spread
    for kind, value in script:
        before = estimator.rto
        rto = estimator.on_rtt(value) if kind == "rtt" else estimator.on_timeout()
        assert rto == estimator.rto
        assert min_s <= rto <= min_s + spread
        if kind == "timeout":
            assert rto >= before  # a back-off never shortens the timer
            assert rto <= max(before, backoff_s)  # nor lengthens it past the ceiling


@given(
    samples=st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1),
)
def test_srtt_stays_within_the_samples(samples: list[float]) -> None:
    estimator = RtoEstimator()
    for sample in samples:
        estimator.on_rtt(sample)
    assert estimator.srtt is not None
    assert min(samples) - 1e-9 <= estimator.srtt <= max(samples) + 1e-9


@given(
    every=st.integers(min_value=1, max_value=5),
    delay=st.floats(min_value=0.001, max_value=0.5),
    packets=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.3), st.booleans()), max_size=60
    ),
)
def test_no_data_waits_longer_than_the_delay_or_the_packet_count(
    every: int, delay: float, packets: list[tuple[float, bool]]
) -> None:
    """Whatever the arrivals, a SACK goes out by the every-th packet or by the deadline, and
    an immediate packet is always acknowledged at once (RFC 4960 §6.2, §6.7)."""
    sacks = SackScheduler(delay_s=delay, every_packets=every)
    now = 0.0
    first_unacked: float | None = None
    unacked = 0
    for gap, immediate in packets:
        now += gap
        deadline = sacks.get_timer()
        if deadline is not None and now >= deadline:
            assert sacks.handle_timer(now)
            assert first_unacked is not None
            assert deadline <= first_unacked + delay + 1e-9
            sacks.on_sack_sent()
            first_unacked, unacked = None, 0
        if first_unacked is None:
            first_unacked = now
        unacked += 1
        send = sacks.on_packet(now, immediate=immediate)
        if immediate or unacked >= every:
            assert send
        if send:
            sacks.on_sack_sent()
            first_unacked, unacked = None, 0
            assert not sacks.pending
            assert sacks.get_timer() is None
        else:
            assert sacks.pending
            assert unacked < every
            timer = sacks.get_timer()
            assert timer is not None
            assert timer <= first_unacked + delay + 1e-9
