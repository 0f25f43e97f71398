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
  (the RPC column then counts the calls that started). The 10 MB byte stream of issue 15 is not
  part of it yet (the fault worker sends packets and RPCs only).

Every scenario records the load average (``os.getloadavg``) at its start and end, next to its
figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
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
    return table


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
    chosen = [n for n in args.only.split(",") if n] or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(table)}")

    started = utc_now()
    results: dict[str, dict[str, TransferResult]] = {}
    timings: dict[str, float] = {}
    loads: dict[str, tuple[float, float]] = {}
    errors: dict[str, str] = {}
    for name in chosen:
        impairment, plan, fault = table[name]
        began = time.monotonic()
        load_at_start = os.getloadavg()[0]
        logs = args.logs / name if args.logs is not None else None
        options: dict[str, object] = {"log_dir": logs} if logs is not None else {}
        try:
            with FaultLab(server_options=options, log_dir=logs) as lab:
                lab.set_impairment(impairment)
                results[name] = run_transfer(lab, plan, fault, sdks=SDKS)
        except (TimeoutError, LkError) as exc:  # one broken scenario must not lose the others
            errors[name] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            print(f"{name}: FAILED {errors[name]}", file=sys.stderr, flush=True)
        timings[name] = time.monotonic() - began
        loads[name] = (load_at_start, os.getloadavg()[0])
        print(f"{name}: done in {timings[name]:.0f} s", file=sys.stderr, flush=True)

    text = markdown_table(results, loads)
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
                        "impairment": repr(table[n][0]),
                        "plan": repr(table[n][1]),
                        "seconds": timings[n],
                        "load_average_1m": loads[n],
                    }
                    for n in chosen
                },
            },
            "results": {
                n: {sdk: r.as_dict() for sdk, r in by_sdk.items()} for n, by_sdk in results.items()
            },
            "errors": errors,
            "table": text,
            "machine": machine,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
