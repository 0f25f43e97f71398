"""Pure parts of the fault harness: the nftables script, impairment checks, the metrics."""

from __future__ import annotations

import dataclasses

import pytest

from lkproto.errors import LocalProtocolError
from lkproto.testing.faults import Impairment, nft_ruleset, percentile, summarise
from lkproto.testing.faultworker import payload_for, seq_of


def _rules(impairment: Impairment) -> list[str]:
    script = nft_ruleset(impairment, udp_ports=[5000], tcp_ports=[7880])
    return [line.strip() for line in script.splitlines() if "drop" in line]


def test_no_impairment_no_drop_rule() -> None:
    script = nft_ruleset(Impairment(), udp_ports=[5000], tcp_ports=[7880])
    assert _rules(Impairment()) == []
    # Replaced atomically: declared, deleted and defined again in one script.
    assert script.splitlines()[:2] == ["table inet lkfault", "delete table inet lkfault"]
    assert "hook input" in script  # never output: a drop there fails sendto with EPERM


def test_loss_per_direction() -> None:
    rules = _rules(Impairment(loss_up=0.1, loss_down=0.055))
    assert rules == [
        "udp dport { 5000 } numgen random mod 10000 < 1000 counter drop",
        "udp sport { 5000 } numgen random mod 10000 < 550 counter drop",
    ]


def test_outages() -> None:
    assert _rules(Impairment(udp_blocked=True)) == [
        "udp dport { 5000 } counter drop",
        "udp sport { 5000 } counter drop",
    ]
    assert _rules(Impairment(signal_blocked=True)) == [
        "tcp dport { 7880 } counter drop",
        "tcp sport { 7880 } counter drop",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"loss_up": -0.1}, {"loss_down": 1.5}, {"loss_up": True}, {"rate_kbit": 0}],
)
def test_bad_impairment_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Impairment(**kwargs)  # type: ignore[arg-type]


def test_payload_round_trip_and_corruption() -> None:
    payload = payload_for(42, 64)
    assert len(payload) == 64
    assert seq_of(payload, 64) == 42
    assert seq_of(payload[:-1] + b"\x00", 64) is None
    assert seq_of(b"not a number", 64) is None


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_summarise_counts_losses_duplicates_reordering() -> None:
    sends = [
        [0, 10.0, 10.1, "ok"],
        [1, 10.1, 10.2, "ok"],
        [2, 10.2, 10.3, "ok"],  # accepted, never arrives: a silent loss
        [3, 12.5, 12.6, "PublishDataError"],  # failed after the restore at 12.0
        [4, 12.6, 12.7, "ok"],
    ]
    arrivals = [[1, 10.3], [0, 10.4], [0, 10.5], [4, 13.0]]
    result = summarise(
        "lkproto",
        sends=sends,
        rpcs=[[1.0, 1.1, "ok"], [2.0, 2.3, "ok"], [3.0, 3.5, "RpcError"]],
        arrivals=arrivals,
        corrupt=0,
        size=1000,
        go_at=9.0,
        restored_at=12.0,
        final_state="CONN_CONNECTED",
        events=[("tx", "reconnected", 3.5)],
    )
    assert (result.attempted, result.accepted, result.received) == (5, 4, 3)
    assert result.lost == 1
    assert result.duplicates == 1
    assert result.reordered == 2  # 0 after 1, and the duplicate 0 after 1
    assert result.failures == {"PublishDataError": 1}
    assert result.failures_after_restore == 1
    assert result.resumed_after_s == pytest.approx(1.0)
    assert result.longest_gap_s == pytest.approx(2.5)
    assert result.rpc_outcomes == {"ok": 2, "RpcError": 1}
    assert result.rpc_p50_ms == pytest.approx(100.0)
    assert result.rpc_p99_ms == pytest.approx(300.0)


def test_leaked_compares_the_counts_of_each_role() -> None:
    base = summarise(
        "lkproto",
        sends=[],
        rpcs=[],
        arrivals=[],
        corrupt=0,
        size=10,
        go_at=0.0,
        restored_at=None,
        final_state=None,
        events=[],
    )
    same = {"before": [8, 9, 1], "after": [8, 9, 1]}
    fewer = {"before": [8, 9, 1], "after": [7, 9, 1]}
    grown = {"before": [8, 9, 1], "after": [9, 11, 1]}
    assert dataclasses.replace(base, resources={"tx": same, "rx": fewer}).leaked() == {}
    assert dataclasses.replace(base, resources={"tx": grown, "rx": same}).leaked() == {
        "tx": [1, 2, 0]
    }
    # Counts that were never taken cannot pass as "nothing leaked".
    assert base.leaked() == {"tx": [], "rx": []}
