"""Issue 15 floor guarantees, measured for lkproto next to the official SDK in the same run.

Each test runs one sender/receiver pair per SDK, each pair in its own room on the same server in the
same namespace, under one fault schedule (:func:`lkproto.testing.faults.run_transfer`), so both
SDKs meet the same fault at the same moment. The assertions are lkproto's guarantees; the official
SDK's figures are recorded beside them (``record_property`` and the failure message) as the
reference, not asserted.

The floor for every fault (issue 15 "Guarantees"): a reliable packet whose ``publish_data``
returned is delivered exactly once and in order, or its failure is reported; a dead transport
ends in a resume, a full reconnect or ``disconnected``, never in a room that says CONNECTED while
nothing moves. The outage and restart tests also check that the reconnects left no asyncio task,
file descriptor or thread behind in the workers
(:meth:`~lkproto.testing.faults.TransferResult.leaked`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.core.reconnect import TRANSPORT_SILENCE_S
from lkproto.testing import LocalServer, scaled
from lkproto.testing.faults import (
    FaultLab,
    Impairment,
    TransferPlan,
    TransferResult,
    outage_fault,
    restart_fault,
    run_transfer,
)
from lkproto.testing.server import DEFAULT_READY_TIMEOUT_S, free_tcp_port, free_udp_port
from tests.interop._helpers import (
    connect_official,
    connect_ours,
    disconnect_all,
    unique_room,
    wait_for,
)
from tests.interop.test_media import publish_tone, subscribed_track, tone_of

RecordProperty = Callable[[str, object], None]
"""pytest's ``record_property`` fixture."""

# Bounds on how long recovery may take after the fault ends; generous, the figures are recorded.
_RESUME_BOUND_S = 10.0
# After a full reconnect the sender holds reliable data until the receiver's new session is
# ACTIVE (core/reconnect.py RejoinHold), which livekit-server announces for a participant that
# publishes no track in its 3 s batches (pkg/rtc/room.go subscriberUpdateInterval): delivery can
# resume up to that much after the sender itself is back.
_HOLD_BATCH_S = 3.0
# A join attempt made during an outage used to hang until its connect timeout when the network
# came back between aioice's check retransmissions (at 7.5 s and 15.5 s into the attempt): both
# sides were back up to ~9 s after a 15 s outage's restore (measured), before that hold. Its
# checks are resent every second now (_seam.keep_ice_checking), and an attempt whose ICE has not
# connected 5 s after its checks began is replaced (core/reconnect.py ATTEMPT_ICE_WINDOW_S); the
# bound covers that window and the policy's next delay.
_FULL_RECONNECT_BOUND_S = _RESUME_BOUND_S + _HOLD_BATCH_S
# The slower side of the 10 % loss RPC median's knee (see the RPC latency test).
_RPC_KNEE_MS = 40.0
# When the restart schedule kills the server, relative to the senders' go.
_KILL_AFTER_S = 3.0


def _record(record_property: RecordProperty, results: dict[str, TransferResult]) -> str:
    text = json.dumps({sdk: r.as_dict() for sdk, r in results.items()}, indent=1)
    for sdk, result in results.items():
        record_property(f"faults_{sdk}", json.dumps(result.as_dict()))
    return text


def _floor_violations(result: TransferResult) -> list[str]:
    """What breaks the floor: silent loss, duplication, reordering, corruption."""
    problems = []
    if result.lost:
        problems.append(f"{result.lost} accepted packets never delivered")
    if result.duplicates:
        problems.append(f"{result.duplicates} packets delivered twice")
    if result.reordered:
        problems.append(f"{result.reordered} packets out of order")
    if result.corrupt:
        problems.append(f"{result.corrupt} corrupted payloads")
    return problems


def test_ten_percent_loss_reliable_packets(lab: FaultLab, record_property: RecordProperty) -> None:
    lab.set_impairment(Impairment(loss_up=0.1, loss_down=0.1))
    plan = TransferPlan(packets=800, size=1024, interval_s=0.01, drain_s=scaled(20))
    results = run_transfer(lab, plan)
    detail = _record(record_property, results)
    ours = results["lkproto"]
    assert _floor_violations(ours) == [], detail
    assert ours.accepted == plan.packets, detail
    assert ours.final_state == "CONN_CONNECTED", detail


def test_ten_percent_loss_rpc_latency_within_twice_official(
    lab: FaultLab, record_property: RecordProperty
) -> None:
    lab.set_impairment(Impairment(loss_up=0.1, loss_down=0.1))
    plan = TransferPlan(packets=0, rpcs=40, rpc_timeout_s=10.0, drain_s=1.0)
    results = run_transfer(lab, plan)
    detail = _record(record_property, results)
    ours, theirs = results["lkproto"], results["livekit"]
    assert ours.rpc_outcomes == {"ok": plan.rpcs}, detail
    assert ours.rpc_p50_ms is not None, detail
    assert theirs.rpc_p50_ms is not None, detail
    # At 10 % loss both ways an RPC v2 exchange (request and response streams, their acks) is
    # about eight SCTP packets, so about half the calls see a loss and the median lands on either
    # side of that knee: a loss-free round trip (~5 ms here) or a fast retransmission (~30 ms).
    # Measured across runs: lkproto 4.2, 8.8, 18.5 and 33.8 ms, the official SDK 5.4, 6.4, 8.1 and
    # 34.0 ms. The floor of 40 ms keeps the check that matters (before the SCTP timer fix lkproto's
    # p50 was 209 ms against 4.8, aiortc's 1 s minimum RTO) without failing on that coin flip.
    assert ours.rpc_p50_ms <= 2 * max(theirs.rpc_p50_ms, _RPC_KNEE_MS), detail


def test_five_second_udp_outage(lab: FaultLab, record_property: RecordProperty) -> None:
    plan = TransferPlan(packets=500, interval_s=0.02, drain_s=scaled(20))
    results = run_transfer(lab, plan, outage_fault("udp", after_s=2.0, for_s=5.0))
    detail = _record(record_property, results)
    ours = results["lkproto"]
    assert _floor_violations(ours) == [], detail
    assert ours.accepted == plan.packets, detail
    assert ours.resumed_after_s is not None, detail
    assert ours.resumed_after_s <= scaled(_RESUME_BOUND_S), detail
    assert ours.final_state == "CONN_CONNECTED", detail


@pytest.mark.parametrize("seconds", [3, 15])
def test_udp_outage_mid_transfer(
    lab: FaultLab, record_property: RecordProperty, seconds: int
) -> None:
    # Issue 15: outages of 3 s and 15 s in the middle of a paced transfer (60 s: only in
    # benchmarks/faults.py). A 3 s outage is a stall the transport rides out; 15 s is past the
    # dead-transport silence, so both sides make a full reconnect, and the sender resends what
    # was not delivered once the receiver is back (core/reconnect.py RejoinHold).
    plan = TransferPlan(
        packets=int((3 + seconds + 7) / 0.05),
        interval_s=0.05,
        publish_timeout_s=20.0,
        drain_s=scaled(15),
    )
    results = run_transfer(lab, plan, outage_fault("udp", after_s=3.0, for_s=float(seconds)))
    detail = _record(record_property, results)
    ours = results["lkproto"]
    assert _floor_violations(ours) == [], detail
    assert ours.accepted == plan.packets, detail
    assert ours.final_state == "CONN_CONNECTED", detail
    assert ours.resumed_after_s is not None, detail
    bound = _RESUME_BOUND_S if seconds < TRANSPORT_SILENCE_S else _FULL_RECONNECT_BOUND_S
    assert ours.resumed_after_s <= scaled(bound), detail
    # Whatever the reconnect replaced was closed: no task, fd or thread left behind.
    assert ours.leaked() == {}, detail


def test_five_second_signal_outage(lab: FaultLab, record_property: RecordProperty) -> None:
    plan = TransferPlan(packets=500, interval_s=0.02, drain_s=scaled(20))
    results = run_transfer(lab, plan, outage_fault("signal", after_s=2.0, for_s=5.0))
    detail = _record(record_property, results)
    ours = results["lkproto"]
    assert _floor_violations(ours) == [], detail
    assert ours.accepted == plan.packets, detail
    assert ours.final_state == "CONN_CONNECTED", detail


def test_server_kill_and_restart(lab: FaultLab, record_property: RecordProperty) -> None:
    plan = TransferPlan(packets=500, interval_s=0.02, drain_s=scaled(10))
    results = run_transfer(lab, plan, restart_fault(after_s=_KILL_AFTER_S))
    detail = _record(record_property, results)
    ours, theirs = results["lkproto"], results["livekit"]
    # Accepted packets: delivered, or failed with an error the caller saw - never silently lost.
    assert _floor_violations(ours) == [], detail
    assert ours.final_state == "CONN_CONNECTED", detail
    assert ours.resumed_after_s is not None, detail
    assert theirs.resumed_after_s is not None, detail
    # Recovery within 2x the official SDK's (issue 15), with a floor for scheduling noise: the
    # room is back (``reconnected``) that fast; reliable delivery resumes once the receiver's
    # new session is known to be up, which can take the server's update batch longer (the
    # official SDK does not wait, and loses what it sends before the receiver is back).
    ours_back, theirs_back = _first_event(ours, "reconnected"), _first_event(theirs, "reconnected")
    assert ours_back is not None, detail
    assert theirs_back is not None, detail
    assert ours_back - _KILL_AFTER_S <= 2 * max(theirs_back - _KILL_AFTER_S, 0.5), detail
    assert ours.resumed_after_s <= 2 * max(theirs.resumed_after_s, 0.5) + _HOLD_BATCH_S, detail
    assert ours.leaked() == {}, detail


def _first_event(result: TransferResult, name: str) -> float | None:
    """When the sender first had the event ``name``, in seconds since it was told to go."""
    return next((t for role, ev, t in result.events if role == "tx" and ev == name), None)


def _attempt_lines(lab: FaultLab, label: str) -> list[str]:
    """The recovery-attempt lines of an lkproto worker's log (``= reconnect attempt N ...`` and
    ``= closed the failed attempt's session ...``, lkproto.asyncio.engine)."""
    worker = next(w for w in lab.workers if w.label == label)
    text = worker.log_path.read_text(errors="replace")
    marks = ("= reconnect attempt", "= closed the failed attempt")
    return [line for line in text.splitlines() if any(m in line for m in marks)]


def test_twenty_second_udp_outage(lab: FaultLab, record_property: RecordProperty) -> None:
    plan = TransferPlan(
        packets=700,
        interval_s=0.05,
        publish_timeout_s=20.0,
        drain_s=scaled(10),
        log_level="INFO",  # the engine's recovery-attempt lines, read below
    )
    results = run_transfer(lab, plan, outage_fault("udp", after_s=3.0, for_s=20.0))
    detail = _record(record_property, results)
    ours = results["lkproto"]
    # Nothing accepted and then dropped without the caller hearing of it.
    assert _floor_violations(ours) == [], detail
    # Never CONNECTED while nothing moves: a room that ends CONNECTED delivers again after the
    # restore and accepts what is sent then.
    if ours.final_state == "CONN_CONNECTED":
        assert ours.resumed_after_s is not None, detail
        assert ours.failures_after_restore == 0, detail
        assert ours.leaked() == {}, detail
    # Join attempts made during the outage (briefs s6_outage, s6_outage2): both sides' first
    # full reconnect starts ~9 s into the outage, 11 s before the restore. Its checks are resent
    # every second (_seam.keep_ice_checking), and an attempt whose ICE has not connected 5 s
    # after its checks began is abandoned (core/reconnect.py ATTEMPT_ICE_WINDOW_S): in some runs
    # the attempt running at the restore got no answer to any check and hung for its whole 15 s
    # connect timeout (docs/reference/failure-behaviour.md). So every attempt that fails here
    # fails by that window, none by the connect timeout, and is closed at once, after a leave
    # when the server took its join, rather than staying listed, JOINED, until the next attempt
    # replaces it. Before the window, a hung attempt failed by its timeout (this fails on it);
    # before the leave, a failed attempt was closed only by the next one. Recorded.
    for label in ("lkproto-tx", "lkproto-rx"):
        attempts = _attempt_lines(lab, label)
        record_property(f"attempts_{label}", json.dumps(attempts))
        assert any(" succeeded" in line for line in attempts), (label, attempts, detail)
        for index, line in enumerate(attempts):
            if "= reconnect attempt" in line and " failed" in line:
                assert "its ICE did not connect within" in line, (label, attempts, detail)
                follower = attempts[index + 1] if index + 1 < len(attempts) else ""
                assert "= closed the failed attempt" in follower, (label, attempts, detail)


async def test_server_restart_republishes_the_track_and_the_tone_returns(
    livekit_server_binary: Path, tmp_path: Path, record_property: RecordProperty
) -> None:
    # Issue 15: a published track comes back after the server is SIGKILLed and restarted (a
    # full reconnect: ``local_track_republished`` with a new SID) and its tone is heard again at
    # its frequency by the official SDK. On the host's own addresses, not in a lab namespace:
    # the official SDK's media needs a non-loopback interface, and only the server is faulted.
    server = LocalServer(
        binary=livekit_server_binary,
        log_dir=tmp_path / "server",
        ready_timeout=scaled(DEFAULT_READY_TIMEOUT_S),
        # Fixed ports: the restarted server must be where the clients reconnect to.
        port=free_tcp_port(),
        udp_port=free_udp_port(),
    )
    await server.astart()
    ours = theirs = None
    feeder = None
    try:
        name = unique_room("restart-media")
        republished: list[tuple[Any, str]] = []
        ours = rtc.Room()
        ours.on("local_track_republished", lambda pub, old: republished.append((pub, old)))
        ours = await connect_ours(server, "lk", name, room=ours)
        theirs = await connect_official(server, "official", name)
        feeder = await publish_tone(rtc, ours, 440)
        first_sid = feeder.publication.sid
        track = await subscribed_track(theirs, "audio")
        peak, _ = await tone_of(lrtc, track, seconds=1.0)
        assert abs(peak - 440) <= 5, peak

        killed = time.monotonic()
        await asyncio.to_thread(_kill_and_restart, server)
        await wait_for(lambda: republished, 30, "local_track_republished")
        republished_after = time.monotonic() - killed
        pub, previous = republished[0]
        assert (previous, pub.sid != first_sid) == (first_sid, True)
        assert list(ours.local_participant.track_publications) == [pub.sid]
        assert ours.connection_state == rtc.ConnectionState.CONN_CONNECTED

        def new_track() -> Any:
            remote = theirs.remote_participants.get("lk") if theirs is not None else None
            found = remote.track_publications.get(pub.sid) if remote else None
            return found.track if found is not None else None

        await wait_for(new_track, 30, "the official SDK subscribed to the republished track")
        peak, _ = await tone_of(lrtc, new_track(), seconds=1.0)
        heard_after = time.monotonic() - killed
        record_property(
            "restart_media", json.dumps({"republished_s": republished_after, "tone_s": heard_after})
        )
        print(
            f"\nserver restart: track republished {republished_after:.2f} s after the kill, "
            f"440 Hz heard again by {heard_after:.2f} s (peak {peak:.1f} Hz)"
        )
        assert abs(peak - 440) <= 5, peak
    finally:
        if feeder is not None:
            await feeder.stop()
        await disconnect_all(ours, theirs)
        await server.astop()


def _kill_and_restart(server: LocalServer) -> None:
    """SIGKILL the server (no leave for anyone) and start it again on the same ports and keys."""
    pid = server.pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    server.stop()
    server.start()
