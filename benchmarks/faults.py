"""Failure behaviour, lkproto next to the official SDK: loss, outages, a server restart.

    sudo .venv/bin/python benchmarks/faults.py [--quick] [--only loss-10,udp-20]
                                               [--json benchmarks/results/faults.json]

Each scenario gets a fresh :class:`lkproto.testing.faults.FaultLab` (a network namespace with its
own livekit-server) and runs one sender/receiver pair per SDK at the same time, each pair in its
own room, under the same fault (:func:`lkproto.testing.faults.run_transfer`). Needs root and
``tools/setup_faults.sh``. Prints a Markdown table and writes JSON with the machine it ran on.

Scenarios:

- ``loss-5``, ``loss-10``, ``loss-20``: random loss both ways on the ICE UDP port; unpaced reliable
  1 KB packets (throughput), then sequential RPCs (latency measured alone).
- ``udp-3``, ``udp-15``, ``udp-20``, ``udp-60``: every UDP packet to/from the server dropped for N s
  from 3 s into a paced transfer (20 packets/s), which goes on for 25 s after the restore.
- ``signal-5``: the server's WebSocket TCP port dropped for 5 s.
- ``restart``: the server SIGKILLed 3 s in and restarted at once on the same ports and keys.
- ``soak-5``, ``soak-20``: 5 % / 20 % random loss both ways for the whole run; 10,000 reliable
  1 KB packets paced over 60 s, then 500 sequential RPCs (``--quick``: 1,000 packets over 10 s and
  50 RPCs, what a CI-sized run would do). The full soak's RPC phase is bounded to 5 minutes
  (the RPC column then counts the calls that started).
- ``soak-20-short``: the 20 % soak's rate cut short for diagnosis: 2,000 packets paced over
  12 s, then 10 RPCs, 60 s drain (about 4 minutes; docs/reference/failure-behaviour.md,
  "20 % loss").
- ``soak-stream-5``, ``soak-stream-20``: the same loss; one 10 MB byte stream per SDK pair
  (``--quick``: 1 MB), bounded to 5 minutes, while the sender publishes a 440 Hz tone its peer
  subscribes to: bytes delivered and intact, throughput, the tone's frequency and its gaps.

Every scenario records the load average (``os.getloadavg``) at its start and end, next to its
figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, utc_now, write_json

from lkproto.errors import LkError
from lkproto.testing.faults import (
    SDKS,
    Fault,
    FaultLab,
    Impairment,
    TransferPlan,
    TransferResult,
    Worker,
    missing_requirements,
    outage_fault,
    restart_fault,
    run_transfer,
)
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION

DEFAULT_JSON: Final = Path(__file__).resolve().parent / "results" / "faults.json"
_PACED_INTERVAL_S: Final = 0.05
_AFTER_RESTORE_S: Final = 25.0
_SOAK_RPC_PHASE_S: Final = 300.0
_STREAM_BYTES: Final = 10 * 1024 * 1024
_STREAM_TIMEOUT_S: Final = 300.0
_STREAM_DRAIN_S: Final = 30.0
_READY_TIMEOUT_S: Final = 60.0
_TONE_HZ: Final = 440.0


def scenarios(quick: bool) -> dict[str, tuple[Impairment, TransferPlan, Fault | None]]:
    """Every scenario: the impairment for the whole run, the plan, the fault schedule."""
    loss_packets = 500 if quick else 2000
    rpcs = 20 if quick else 50
    table: dict[str, tuple[Impairment, TransferPlan, Fault | None]] = {}
    for pct in (5, 10, 20):
        # At 20 % lkproto moves ~130 kbit/s and an RPC can take seconds: fewer of each there.
        heavy = pct >= 20
        table[f"loss-{pct}"] = (
            Impairment(loss_up=pct / 100, loss_down=pct / 100),
            TransferPlan(
                packets=loss_packets // 2 if heavy else loss_packets,
                interval_s=0.0,
                rpcs=rpcs * 3 // 5 if heavy else rpcs,
                rpc_timeout_s=10.0,
                drain_s=30.0,
                run_timeout_s=900.0,
            ),
            None,
        )
    for seconds in (3, 15, 20, 60):
        total_s = 3 + seconds + _AFTER_RESTORE_S
        table[f"udp-{seconds}"] = (
            Impairment(),
            TransferPlan(
                packets=int(total_s / _PACED_INTERVAL_S),
                interval_s=_PACED_INTERVAL_S,
                publish_timeout_s=30.0,
                drain_s=20.0,
            ),
            outage_fault("udp", after_s=3.0, for_s=float(seconds)),
        )
    table["signal-5"] = (
        Impairment(),
        TransferPlan(packets=int(33 / _PACED_INTERVAL_S), interval_s=_PACED_INTERVAL_S),
        outage_fault("signal", after_s=3.0, for_s=5.0),
    )
    table["restart"] = (
        Impairment(),
        TransferPlan(packets=int(30 / _PACED_INTERVAL_S), interval_s=_PACED_INTERVAL_S),
        restart_fault(after_s=3.0),
    )
    soak_packets, soak_s, soak_rpcs = (1000, 10.0, 50) if quick else (10_000, 60.0, 500)
    # At 20 % loss a failing RPC takes ~7 s (quick run: 444 s for 50 calls), so 500 would take
    # about an hour: the full soak stops starting calls after 5 minutes and says how many ran.
    soak_rpc_phase_s = None if quick else _SOAK_RPC_PHASE_S
    for pct in (5, 20):
        table[f"soak-{pct}"] = (
            Impairment(loss_up=pct / 100, loss_down=pct / 100),
            TransferPlan(
                packets=soak_packets,
                interval_s=soak_s / soak_packets,
                rpcs=soak_rpcs,
                rpc_timeout_s=15.0,
                publish_timeout_s=60.0,
                drain_s=60.0,
                run_timeout_s=3600.0,
                rpc_phase_s=soak_rpc_phase_s,
            ),
            None,
        )
    # The soak's 20 % case cut short for diagnosis (brief s6_soak20): the soak's rate (2,000
    # packets paced over 12 s) and RPC timeout, a 60 s drain, minutes instead of an hour.
    table["soak-20-short"] = (
        Impairment(loss_up=0.2, loss_down=0.2),
        TransferPlan(
            packets=2000,
            interval_s=12.0 / 2000,
            rpcs=10,
            rpc_timeout_s=15.0,
            publish_timeout_s=60.0,
            drain_s=60.0,
            run_timeout_s=900.0,
        ),
        None,
    )
    return table


def stream_scenarios(quick: bool) -> dict[str, tuple[Impairment, int]]:
    """The byte-stream soaks: the impairment and the stream's size."""
    size = _STREAM_BYTES // 10 if quick else _STREAM_BYTES
    return {
        f"soak-stream-{pct}": (Impairment(loss_up=pct / 100, loss_down=pct / 100), size)
        for pct in (5, 20)
    }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StreamResult:
    """One SDK pair's byte stream and tone under loss (see :func:`run_stream`)."""

    sdk: str
    size: int
    outcome: str
    written: int
    received: int
    intact: bool | None
    receiver_error: str | None
    seconds: float | None
    throughput_kbps: float | None
    audio: dict[str, object] | None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def run_stream(lab: FaultLab, size: int) -> dict[str, StreamResult]:
    """One sender/receiver pair per SDK, each in its own room, at the same time: a byte stream of
    ``size`` bytes and a tone (``lkproto.testing.faultworker``'s ``stream_bytes`` and ``tone_hz``).

    Raises:
        TimeoutError: a worker did not get ready or finish in time.
    """
    seed = secrets.randbits(32)
    pairs: dict[str, tuple[Worker, Worker]] = {}
    for sdk in SDKS:
        room = f"{sdk}-stream-{secrets.token_hex(4)}"
        common: dict[str, object] = {"sdk": sdk, "stream_bytes": size, "stream_seed": seed}
        rx = lab.spawn_worker(
            {**common, "role": "receiver", "token": lab.token("rx", room), "listen": True},
            label=f"{sdk}-stream-rx",
        )
        tx = lab.spawn_worker(
            {
                **common,
                "role": "sender",
                "token": lab.token("tx", room),
                "peer": "rx",
                "packets": 0,
                "stream_timeout_s": _STREAM_TIMEOUT_S,
                "tone_hz": _TONE_HZ,
            },
            label=f"{sdk}-stream-tx",
        )
        pairs[sdk] = (tx, rx)
    for tx, rx in pairs.values():
        rx.wait_event("ready", _READY_TIMEOUT_S)
        tx.wait_event("ready", _READY_TIMEOUT_S)
    for tx, _rx in pairs.values():
        tx.send({"cmd": "go"})
    done = {
        sdk: tx.wait_event("done", _STREAM_TIMEOUT_S + _READY_TIMEOUT_S)
        for sdk, (tx, _rx) in pairs.items()
    }
    results: dict[str, StreamResult] = {}
    for sdk, (_tx, rx) in pairs.items():
        sent = done[sdk]["stream"]
        assert isinstance(sent, list)
        t0, outcome, written = float(sent[0]), str(sent[2]), int(sent[3])
        deadline = time.monotonic() + _STREAM_DRAIN_S
        audio: dict[str, object] | None = None
        while True:  # bounded by the drain deadline
            index = len(rx.events("report"))
            rx.send({"cmd": "report"})
            report = rx.wait_nth("report", index, 30.0)
            audio = audio or report.get("audio")  # type: ignore[assignment]
            stream = report.get("stream") or {}
            assert isinstance(stream, dict)
            if stream.get("done_t") or stream.get("error") or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        received = int(stream.get("bytes", 0))
        done_t = stream.get("done_t")
        seconds = None if done_t is None else float(done_t) - t0
        results[sdk] = StreamResult(
            sdk=sdk,
            size=size,
            outcome=outcome,
            written=written,
            received=received,
            intact=stream.get("intact"),
            receiver_error=stream.get("error"),
            seconds=seconds,
            throughput_kbps=None if not seconds else received * 8 / 1000 / seconds,
            audio=audio,
        )
    for tx, rx in pairs.values():
        tx.send({"cmd": "stop"})
        rx.send({"cmd": "stop"})
    return results


def stream_table(
    results: dict[str, dict[str, StreamResult]], loads: dict[str, tuple[float, float]]
) -> str:
    """One row per byte-stream scenario and SDK."""
    lines = [
        "| scenario | SDK | MB written / received | intact | sender outcome | seconds | kbit/s "
        "| tone heard / span (s) | peak Hz | arrival gaps > 100 ms (longest s) | silent frames "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_sdk in results.items():
        start_load, end_load = loads.get(name, (None, None))
        for sdk, r in by_sdk.items():
            audio = r.audio or {}
            lines.append(
                f"| {name} | {sdk} | {r.written / 1e6:.1f} / {r.received / 1e6:.1f} "
                f"| {'-' if r.intact is None else ('yes' if r.intact else 'NO')} "
                f"| {r.outcome[:60]} | {_fmt(r.seconds, 1)} | {_fmt(r.throughput_kbps, 0)} "
                f"| {_fmt(audio.get('seconds'), 1)} / {_fmt(audio.get('span_s'), 1)} "  # type: ignore[arg-type]
                f"| {_fmt(audio.get('peak_hz'), 0)} "  # type: ignore[arg-type]
                f"| {audio.get('gaps', '-')} ({_fmt(audio.get('longest_gap_s'))}) "  # type: ignore[arg-type]
                f"| {audio.get('silent_frames', '-')} "
                f"| {_fmt(start_load)} → {_fmt(end_load)} |"
            )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _events(result: TransferResult) -> str:
    # The sender's recovery events, in seconds since it started.
    marks = [f"{name[:7]}@{at:.1f}" for role, name, at in result.events if role == "tx"]
    return " ".join(marks) or "-"


def _leaked(result: TransferResult) -> str:
    leaked = result.leaked()
    if not leaked:
        return "0"
    return " ".join(f"{role}:{'/'.join(map(str, n)) or '?'}" for role, n in leaked.items())


def markdown_table(
    results: dict[str, dict[str, TransferResult]],
    loads: dict[str, tuple[float, float]] | None = None,
) -> str:
    """One row per scenario and SDK; ``loads``: 1-minute load average at start and end."""
    lines = [
        "| scenario | SDK | accepted / sent | failed (raised) | accepted, never delivered "
        "| dup / reord "
        "| delivery resumed after restore (s) | longest gap (s) | kbit/s | RPC ok | RPC p50 / p99 "
        "(ms) | final state | sender events (s) | leaked tasks/fds/threads | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_sdk in results.items():
        start_load, end_load = (loads or {}).get(name, (None, None))
        load = f"{_fmt(start_load)} → {_fmt(end_load)}"
        for sdk, r in by_sdk.items():
            failed = sum(r.failures.values())
            rpc_total = sum(r.rpc_outcomes.values())
            rpc = f"{r.rpc_outcomes.get('ok', 0)}/{rpc_total}" if rpc_total else "-"
            state = (r.final_state or "?").removeprefix("CONN_")
            lines.append(
                f"| {name} | {sdk} | {r.accepted}/{r.attempted} | {failed} | {r.lost} "
                f"| {r.duplicates} / {r.reordered} | {_fmt(r.resumed_after_s)} "
                f"| {_fmt(r.longest_gap_s)} | {r.throughput_kbps:.0f} | {rpc} "
                f"| {_fmt(r.rpc_p50_ms, 0)} / {_fmt(r.rpc_p99_ms, 0)} | {state} | {_events(r)} "
                f"| {_leaked(r) if sdk == 'lkproto' else '-'} "
                f"| {load} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer packets and RPCs")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    parser.add_argument("--logs", type=Path, default=None, help="keep worker/server logs here")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason is not None:
        print(f"faults benchmark cannot run: {reason}", file=sys.stderr)
        return 2
    table = scenarios(args.quick)
    streams = stream_scenarios(args.quick)
    chosen = [n for n in args.only.split(",") if n] or [*table, *streams]
    unknown = [n for n in chosen if n not in table and n not in streams]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {[*table, *streams]}")

    started = utc_now()
    results: dict[str, dict[str, TransferResult]] = {}
    stream_results: dict[str, dict[str, StreamResult]] = {}
    timings: dict[str, float] = {}
    loads: dict[str, tuple[float, float]] = {}
    errors: dict[str, str] = {}
    for name in chosen:
        began = time.monotonic()
        load_at_start = os.getloadavg()[0]
        logs = args.logs / name if args.logs is not None else None
        options: dict[str, object] = {"log_dir": logs} if logs is not None else {}
        try:
            with FaultLab(server_options=options, log_dir=logs) as lab:
                if name in streams:
                    lab.set_impairment(streams[name][0])
                    stream_results[name] = run_stream(lab, streams[name][1])
                else:
                    impairment, plan, fault = table[name]
                    lab.set_impairment(impairment)
                    results[name] = run_transfer(lab, plan, fault, sdks=SDKS)
        except (TimeoutError, LkError) as exc:  # one broken scenario must not lose the others
            errors[name] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            print(f"{name}: FAILED {errors[name]}", file=sys.stderr, flush=True)
        timings[name] = time.monotonic() - began
        loads[name] = (load_at_start, os.getloadavg()[0])
        print(f"{name}: done in {timings[name]:.0f} s", file=sys.stderr, flush=True)

    tables = [markdown_table(results, loads)] if results else []
    if stream_results:
        tables.append(stream_table(stream_results, loads))
    text = "\n\n".join(tables)
    machine = machine_info({"livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION})
    print(text)
    for name, error in errors.items():
        print(f"\n{name}: no result ({error.splitlines()[0]})")
    print()
    packages = machine["packages"]
    assert isinstance(packages, dict)
    print(
        f"{machine['cpu_model']}, {machine['cpu_count']} CPU, {machine['uname']}; Python "
        f"{machine['python']}, aiortc {packages['aiortc']}, livekit {packages['livekit']}, "
        f"livekit-server {DEFAULT_LIVEKIT_SERVER_VERSION}; quick={args.quick}"
    )
    write_json(
        args.json,
        {
            "benchmark": "faults",
            "started": started,
            "finished": utc_now(),
            "config": {
                "quick": args.quick,
                "scenarios": {
                    n: {
                        "impairment": repr(table[n][0] if n in table else streams[n][0]),
                        "plan": repr(
                            table[n][1] if n in table else {"stream_bytes": streams[n][1]}
                        ),
                        "seconds": timings[n],
                        "load_average_1m": loads[n],
                    }
                    for n in chosen
                },
            },
            "results": {
                n: {sdk: r.as_dict() for sdk, r in by_sdk.items()} for n, by_sdk in results.items()
            },
            "streams": {
                n: {sdk: r.as_dict() for sdk, r in by_sdk.items()}
                for n, by_sdk in stream_results.items()
            },
            "errors": errors,
            "table": text,
            "machine": machine,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
