"""Unit tests of lkproto.core.sctp: RTO estimator, SACK scheduler, fast-retransmit threshold."""

from __future__ import annotations

import math

import pytest

from lkproto.core.sctp import (
    FAST_RETRANSMIT_MISSES,
    RTO_INITIAL_S,
    RTO_MAX_BACKOFF_S,
    RTO_MIN_S,
    SACK_DELAY_S,
    RtoEstimator,
    SackScheduler,
    fast_retransmit_misses,
)
from lkproto.errors import LocalProtocolError


def test_rto_starts_at_the_webrtc_initial_value_not_the_rfc_three_seconds() -> None:
    estimator = RtoEstimator()
    assert estimator.rto == RTO_INITIAL_S == 0.5
    assert estimator.srtt is None


def test_first_sample_sets_srtt_and_half_rttvar() -> None:
    estimator = RtoEstimator(min_s=0.001)
    # RFC 4960 §6.3.1 C2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 * RTTVAR
    assert estimator.on_rtt(0.1) == pytest.approx(0.3)
    assert estimator.srtt == pytest.approx(0.1)


def test_later_samples_smooth_with_alpha_and_beta() -> None:
    estimator = RtoEstimator(min_s=0.001)
    estimator.on_rtt(0.1)
    # C3: RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; SRTT = 7/8 * 0.1 + 1/8 * 0.2
    rto = estimator.on_rtt(0.2)
    rttvar = 0.75 * 0.05 + 0.25 * 0.1
    srtt = 0.875 * 0.1 + 0.125 * 0.2
    assert rto == pytest.approx(srtt + 4 * rttvar)
    assert estimator.srtt == pytest.approx(srtt)


def test_a_loopback_round_trip_gives_the_floor_not_aiortcs_one_second() -> None:
    estimator = RtoEstimator()
    for _ in range(20):
        estimator.on_rtt(0.001)
    assert estimator.rto == RTO_MIN_S
    assert RTO_MIN_S < 1.0


def test_timeouts_double_up_to_the_backoff_ceiling_and_a_sample_ends_the_back_off() -> None:
    estimator = RtoEstimator()
    estimator.on_rtt(0.001)
    assert estimator.on_timeout() == 2 * RTO_MIN_S
    assert estimator.on_timeout() == 4 * RTO_MIN_S
    for _ in range(20):
        estimator.on_timeout()
    assert estimator.rto == RTO_MAX_BACKOFF_S == 3.0  # libwebrtc's cap, not RTO.max's 60 s
    assert estimator.on_rtt(0.001) < 1.0


def test_a_slow_path_keeps_an_rto_above_the_backoff_ceiling() -> None:
    estimator = RtoEstimator()
    rto = estimator.on_rtt(2.0)  # 2 + 4 * 1 = 6 s
    assert rto > RTO_MAX_BACKOFF_S
    assert estimator.on_timeout() == rto
    assert RtoEstimator(max_s=10.0, max_backoff_s=100.0, min_s=4.0).on_timeout() == 8.0
    assert RtoEstimator(max_s=10.0, max_backoff_s=100.0, min_s=6.0).on_timeout() == 10.0


def test_a_negative_sample_counts_as_zero() -> None:
    estimator = RtoEstimator(min_s=0.001)
    estimator.on_rtt(-5.0)
    assert estimator.srtt == 0.0
    assert estimator.rto == 0.001


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_s": 0},
        {"max_s": -1.0},
        {"initial_s": math.nan},
        {"min_s": 2.0, "max_s": 1.0},
        {"initial_s": True},
        {"max_backoff_s": 0.0},
    ],
)
def test_bad_bounds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        RtoEstimator(**kwargs)


def test_initial_value_is_clamped_into_the_bounds() -> None:
    assert RtoEstimator(initial_s=10.0, max_s=2.0).rto == 2.0
    assert RtoEstimator(initial_s=0.01, min_s=0.2).rto == 0.2


def test_every_second_packet_is_acknowledged() -> None:
    sacks = SackScheduler()
    assert sacks.on_packet(0.0, immediate=False) is False
    assert sacks.pending
    assert sacks.get_timer() == SACK_DELAY_S
    assert sacks.on_packet(0.001, immediate=False) is True
    sacks.on_sack_sent()
    assert not sacks.pending
    assert sacks.get_timer() is None


def test_a_gap_duplicate_or_i_bit_is_acknowledged_at_once() -> None:
    sacks = SackScheduler()
    assert sacks.on_packet(0.0, immediate=True) is True


def test_a_lone_packet_is_acknowledged_when_the_delay_passes() -> None:
    sacks = SackScheduler(delay_s=0.2)
    assert sacks.on_packet(10.0, immediate=False) is False
    assert sacks.get_timer() == pytest.approx(10.2)
    assert sacks.handle_timer(10.1) is False
    assert sacks.handle_timer(10.2) is True
    sacks.on_sack_sent()
    assert sacks.handle_timer(11.0) is False


def test_the_delay_runs_from_the_first_unacknowledged_packet() -> None:
    sacks = SackScheduler(delay_s=0.2, every_packets=3)
    sacks.on_packet(1.0, immediate=False)
    sacks.on_packet(1.15, immediate=False)
    assert sacks.get_timer() == pytest.approx(1.2)  # RFC 4960 §6.2: at most 200 ms late


def test_a_sack_bundled_with_data_ends_the_wait() -> None:
    sacks = SackScheduler()
    sacks.on_packet(0.0, immediate=False)
    sacks.on_sack_sent()
    assert sacks.on_packet(0.01, immediate=False) is False  # counting starts again


@pytest.mark.parametrize("kwargs", [{"delay_s": 0}, {"every_packets": 0}, {"every_packets": True}])
def test_bad_scheduler_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        SackScheduler(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outstanding", "misses"), [(0, 1), (1, 1), (2, 1), (3, 2), (4, 3), (5, 3), (1000, 3)]
)
def test_early_retransmit_lowers_the_threshold_below_four_outstanding(
    outstanding: int, misses: int
) -> None:
    # RFC 5827 §3.2: outstanding - 1 below four; RFC 4960 §7.2.4's three from four on.
    assert fast_retransmit_misses(outstanding) == misses
    assert 1 <= misses <= FAST_RETRANSMIT_MISSES
