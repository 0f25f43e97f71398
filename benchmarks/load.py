"""Load: N lkproto participants in one room, CPU and memory per participant, join times.

    sudo .venv/bin/python benchmarks/load.py [--participants 100] [--processes 4]
        [--duration 300] [--curve 10,20,40] [--json benchmarks/results/load.json]

Every participant broadcasts one reliable packet per second and changes an attribute every 10 s
(:func:`lkproto.testing.faults.run_load`); the server and the worker processes run in a
:class:`lkproto.testing.faults.FaultLab` namespace with no impairment. ``--curve`` runs one short
round per size instead and prints the curve (CPU per participant and loss against the size), for
finding the ceiling. Needs root and ``tools/setup_faults.sh``. The official SDK is not measured
here (its per-process FFI server makes a crowd of it a different experiment).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, utc_now, write_json

from lkproto.testing.faults import FaultLab, LoadResult, missing_requirements, run_load
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION

DEFAULT_JSON: Final = Path(__file__).resolve().parent / "results" / "load.json"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(results: Sequence[LoadResult]) -> str:
    """One row per run."""
    lines = [
        "| participants | processes | seconds | joined | join p50 / p90 / max (s) | packets sent "
        "| deliveries expected | lost | dup | CPU per participant (cores) | RSS per participant "
        "(MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.participants} | {r.processes} | {r.duration_s:g} | {r.joined} "
            f"| {_fmt(r.join_p50_s)} / {_fmt(r.join_p90_s)} / {_fmt(r.join_max_s)} | {r.sent} "
            f"| {r.expected} | {r.lost} | {r.duplicates} | {r.cpu_per_participant:.4f} "
            f"| {r.rss_kib_per_participant / 1024:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=300.0, help="sending time, s")
    parser.add_argument("--curve", default="", help="comma-separated sizes: one round each")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason is not None:
        print(f"load benchmark cannot run: {reason}", file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.curve.split(",") if n] or [args.participants]
    started = utc_now()
    results: list[LoadResult] = []
    for size in sizes:
        with FaultLab() as lab:
            results.append(
                run_load(
                    lab,
                    participants=size,
                    processes=min(args.processes, size),
                    duration_s=args.duration,
                )
            )
        print(f"{size} participants done", file=sys.stderr, flush=True)
    text = markdown_table(results)
    machine = machine_info({"livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION})
    print(text)
    print()
    print(
        f"{machine['cpu_model']}, {machine['cpu_count']} CPU, {machine['uname']}; "
        f"Python {machine['python']}, livekit-server {DEFAULT_LIVEKIT_SERVER_VERSION}"
    )
    write_json(
        args.json,
        {
            "benchmark": "load",
            "started": started,
            "finished": utc_now(),
            "config": vars(args) | {"json": str(args.json)},
            "results": [r.as_dict() for r in results],
            "table": text,
            "machine": machine,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
