"""Load: N participants in one room, CPU and memory per participant, join times, the ceiling.

    sudo .venv/bin/python benchmarks/load.py [--sdk lkproto|livekit] [--participants 100]
        [--processes 4] [--duration 300] [--listeners 10]
        [--curve 20,40,60,80,100,140] [--curve-budget 1800] [--stop-on backed-up|loss]
        [--log-level INFO] [--logs DIR] [--json benchmarks/results/load.json]

Every participant broadcasts one reliable packet per second and changes an attribute every 10 s
(:mod:`lkproto.testing.loadworker`, several participants per worker process); one of them, the
agent, publishes a 440 Hz tone as a microphone track that ``--listeners`` others subscribe to (the
rest join with ``auto_subscribe=False``). The server and the workers run in a
:class:`lkproto.testing.faults.FaultLab` namespace with no impairment. ``--sdk livekit`` runs the
same crowd with the official SDK (same worker code, one FFI server per worker process).

``--curve`` runs one round per size instead, each ``--duration`` long, and stops at the first
size that *backs up* (``--stop-on loss``: at the first that loses a delivery or a join, for a
machine whose other load makes latency meaningless) or when ``--curve-budget`` seconds are
spent. A round backs up when any of: a delivery is still missing 20 s after the senders stopped,
a participant failed to join, the p99 delivery latency (``publish_data`` called to
``data_received``, same monotonic clock) is over 1 s, or a send loop fell more than 1 s behind
its schedule. Needs root and
``tools/setup_faults.sh``. The machine is shared: every round records the 1-minute load average at
its start and end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, utc_now, write_json

from lkproto.testing.faults import (
    FaultLab,
    Worker,
    _load_counts,  # the one delivery count (private helper)
    missing_requirements,
    percentile,
)
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION

DEFAULT_JSON: Final = Path(__file__).resolve().parent / "results" / "load.json"
_JOIN_GAP_S: Final = 0.1
_SETTLE_S: Final = 20.0
_SETTLE_POLL_S: Final = 1.0
_REPORT_TIMEOUT_S: Final = 120.0
_BACKED_UP_LATENCY_MS: Final = 1000.0
_BACKED_UP_BEHIND_S: Final = 1.0
_JOIN_BUCKETS_S: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CrowdResult:
    """One round of :func:`run_crowd` (times in seconds unless named otherwise)."""

    sdk: str
    participants: int
    processes: int
    duration_s: float
    joined: int
    join_failures: dict[str, str]
    join_p50_s: float | None
    join_p90_s: float | None
    join_p99_s: float | None
    join_max_s: float | None
    join_histogram: dict[str, int]
    sent: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    settle_s: float
    attributes: int
    attribute_errors: int
    publish_errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    behind_max_s: float
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    reconnects: int
    cpu_s: float
    cpu_per_participant: float
    server_cpu_cores: float | None
    rss_mib_per_participant: float
    audio: dict[str, object]
    load_average: tuple[float, float]
    backed_up: list[str]
    worker_errors: list[str]
    participants_detail: dict[str, dict[str, object]]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def _server_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" of the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _merge(histograms: Sequence[Mapping[str, int]]) -> list[float]:
    """A histogram's samples as a sorted list of millisecond keys repeated by count."""
    total: dict[int, int] = {}
    for h in histograms:
        for name, count in h.items():
            total[int(name)] = total.get(int(name), 0) + int(count)
    out: list[float] = []
    for key in sorted(total):
        out.extend([float(key)] * total[key])
    return out


def _counts(
    reports: Sequence[dict[str, object]], joined: Mapping[str, float]
) -> tuple[int, int, int, dict[str, dict[str, object]]]:
    """Expected and distinct deliveries, duplicates, and the records per identity (counted as
    the fault harness's own load run counts them)."""
    expected, delivered, duplicates, _sent_by, records = _load_counts(reports, joined)
    return expected, delivered, duplicates, records


def _snapshot(workers: Sequence[Worker]) -> list[dict[str, object]]:
    reports = []
    for worker in workers:
        index = len(worker.events("report"))
        worker.send({"cmd": "report"})
        reports.append(worker.wait_nth("report", index, _REPORT_TIMEOUT_S))
    return reports


def _audio_summary(
    records: Mapping[str, Mapping[str, object]], listening: int
) -> dict[str, object]:
    heard = [cast("dict[str, object]", r["audio"]) for r in records.values() if "audio" in r]
    if not heard:
        return {}
    # The agent's own side: frames its source could not send (lkproto's AudioSource counters).
    tone = next((cast("dict[str, object]", r["tone"]) for r in records.values() if "tone" in r), {})
    peaks = [cast(float, a["peak_hz"]) for a in heard if a["peak_hz"] is not None]
    return {
        "listeners": len(heard),
        "listening_at_go": listening,
        "seconds_min": min(cast(float, a["seconds"]) for a in heard),
        "seconds_max": max(cast(float, a["seconds"]) for a in heard),
        "gaps_total": sum(cast(int, a["gaps"]) for a in heard),
        "longest_gap_s": max(cast(float, a["longest_gap_s"]) for a in heard),
        "silent_frames_total": sum(cast(int, a["silent_frames"]) for a in heard),
        "peak_hz_min": min(peaks, default=None),
        "peak_hz_max": max(peaks, default=None),
        "agent_silence_frames": tone.get("silence_frames"),
        "agent_dropped_frames": tone.get("dropped_frames"),
    }


def run_crowd(
    lab: FaultLab,
    *,
    sdk: str,
    participants: int,
    processes: int,
    duration_s: float,
    listeners: int,
    join_timeout_s: float = 300.0,
    log_level: str | None = None,
) -> CrowdResult:
    """Put ``participants`` participants of ``sdk`` in one room over ``processes`` workers.

    Raises:
        TimeoutError: a worker did not join or report in time.
    """
    load_start = os.getloadavg()[0]
    room = f"load-{secrets.token_hex(4)}"
    names = [f"p{i:03d}" for i in range(participants)]
    agent = names[0]
    hearing = set(names[1 : 1 + listeners])
    workers: list[Worker] = []
    for w in range(processes):
        mine = names[w::processes]
        config = {
            "url": lab.url,
            "sdk": sdk,
            "participants": [[n, lab.token(n, room, can_update_own_metadata=True)] for n in mine],
            "room_size": participants,
            "packet_interval_s": 1.0,
            "attribute_interval_s": 10.0,
            "join_gap_s": _JOIN_GAP_S * processes,
            # Every worker knows the agent: its listeners wait for its track before "joined".
            "agent": agent,
            "listeners": sorted(hearing.intersection(mine)),
            "tone_hz": 440.0,
            "log_level": log_level,
        }
        argv = [sys.executable, "-m", "lkproto.testing.loadworker", json.dumps(config)]
        workers.append(lab.spawn(argv, label=f"{sdk}-load-{w}"))
    joined: dict[str, float] = {}
    failures: dict[str, str] = {}
    listening = 0
    for worker in workers:
        message = worker.wait_event("joined", join_timeout_s)
        joined.update(cast("dict[str, float]", message["join_s"]))
        failures.update(cast("dict[str, str]", message["failed"]))
        listening += len(cast("list[str]", message.get("listening", [])))
    before = _snapshot(workers)
    server_before = _server_cpu_s(lab.server.pid)
    go_at = time.monotonic()
    for worker in workers:
        worker.send({"cmd": "go"})
    time.sleep(duration_s)
    for worker in workers:
        worker.send({"cmd": "halt"})
    halted = time.monotonic()
    # Late deliveries are not losses: poll until every packet arrived or the settle bound passed.
    for _ in range(int(_SETTLE_S / _SETTLE_POLL_S) + 1):
        time.sleep(_SETTLE_POLL_S)
        after = _snapshot(workers)
        expected, delivered, duplicates, records = _counts(after, joined)
        if delivered >= expected or time.monotonic() - halted >= _SETTLE_S:
            break
    settled = time.monotonic() - halted
    server_after = _server_cpu_s(lab.server.pid)
    for worker in workers:
        worker.send({"cmd": "stop"})
    busy_s = time.monotonic() - go_at
    cpu = sum(
        cast(float, a["cpu_s"]) - cast(float, b["cpu_s"])
        for a, b in zip(after, before, strict=True)
    )
    rss = sum(cast(int, a["rss_kib"] or 0) for a in after)
    latency = _merge([cast("dict[str, int]", a["latency_ms"]) for a in after])
    lag = _merge([cast("dict[str, int]", a["loop_lag_ms"]) for a in after])
    times = list(joined.values())
    join_histogram: dict[str, int] = {}
    low = 0.0
    for high in (*_JOIN_BUCKETS_S, float("inf")):
        join_histogram[f"<{high:g}"] = sum(1 for t in times if low <= t < high)
        low = high
    behind = max((cast(float, r.get("behind_s", 0.0)) for r in records.values()), default=0.0)
    lat_p99 = percentile(latency, 0.99)
    backed_up = []
    if expected - delivered:
        backed_up.append(f"{expected - delivered} deliveries lost")
    if failures or len(joined) < participants:
        backed_up.append(f"{participants - len(joined)} joins failed")
    if lat_p99 is not None and lat_p99 > _BACKED_UP_LATENCY_MS:
        backed_up.append(f"latency p99 {lat_p99:.0f} ms")
    if behind > _BACKED_UP_BEHIND_S:
        backed_up.append(f"a sender fell {behind:.1f} s behind")
    server_cpu = (
        None
        if server_before is None or server_after is None
        else (server_after - server_before) / busy_s
    )
    return CrowdResult(
        sdk=sdk,
        participants=participants,
        processes=processes,
        duration_s=duration_s,
        joined=len(joined),
        join_failures=failures,
        join_p50_s=percentile(times, 0.5),
        join_p90_s=percentile(times, 0.9),
        join_p99_s=percentile(times, 0.99),
        join_max_s=max(times, default=None),
        join_histogram=join_histogram,
        sent=sum(cast(int, r["sent"]) for r in records.values()),
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicates=duplicates,
        settle_s=settled,
        attributes=sum(cast(int, r["attributes"]) for r in records.values()),
        attribute_errors=sum(cast(int, r.get("attribute_failures", 0)) for r in records.values()),
        publish_errors=sum(cast(int, r.get("publish_errors", 0)) for r in records.values()),
        latency_p50_ms=percentile(latency, 0.5),
        latency_p99_ms=lat_p99,
        latency_max_ms=max(latency, default=None),
        behind_max_s=behind,
        loop_lag_p99_ms=percentile(lag, 0.99),
        loop_lag_max_ms=max(lag, default=None),
        reconnects=sum(
            [e[0] for e in cast("list[list[object]]", r["events"])].count("reconnecting")
            for r in records.values()
        ),
        cpu_s=cpu,
        cpu_per_participant=cpu / busy_s / participants,
        server_cpu_cores=server_cpu,
        rss_mib_per_participant=rss / 1024 / participants,
        audio=_audio_summary(records, listening),
        load_average=(load_start, os.getloadavg()[0]),
        backed_up=backed_up,
        worker_errors=[str(m.get("error")) for w in workers for m in w.events("error")],
        # Per participant, what explains a loss: its sends, lag, reconnects and final state.
        participants_detail={
            name: {
                key: record.get(key)
                for key in (
                    "sent",
                    "publish_errors",
                    "publish_error_texts",
                    "behind_s",
                    "attributes",
                    "attribute_errors",
                    "state",
                )
            }
            | {
                "events": [
                    [e[0], round(cast(float, e[1]) - go_at, 2)]
                    for e in cast("list[list[object]]", record["events"])
                ]
            }
            | {"missing_from": _missing_from(name, records, joined)}
            for name, record in records.items()
        },
    )


def _missing_from(
    sender: str, records: Mapping[str, Mapping[str, object]], joined: Mapping[str, float]
) -> dict[str, int]:
    """Per receiver, how many of ``sender``'s packets it lacks (only receivers that lack some)."""
    count = cast(int, records[sender]["sent"])
    out: dict[str, int] = {}
    for receiver, record in records.items():
        if receiver == sender or receiver not in joined:
            continue
        distinct = cast("dict[str, list[int]]", record["recv"]).get(sender, [0, 0])[0]
        if distinct < count:
            out[receiver] = count - distinct
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results: Sequence[CrowdResult]) -> str:
    """One row per round."""
    lines = [
        "| SDK | participants | processes | s | joined | join p50 / p90 / max (s) | sent "
        "| deliveries expected | lost | dup | publish raised | reconnects "
        "| latency p50 / p99 / max (ms) | CPU per participant (cores) | server CPU (cores) "
        "| RSS per participant (MiB) | backed up | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.sdk} | {r.participants} | {r.processes} | {r.duration_s:g} | {r.joined} "
            f"| {_fmt(r.join_p50_s)} / {_fmt(r.join_p90_s)} / {_fmt(r.join_max_s)} | {r.sent} "
            f"| {r.expected} | {r.lost} | {r.duplicates} | {r.publish_errors} | {r.reconnects} "
            f"| {_fmt(r.latency_p50_ms, 0)} / {_fmt(r.latency_p99_ms, 0)} "
            f"/ {_fmt(r.latency_max_ms, 0)} | {r.cpu_per_participant:.4f} "
            f"| {_fmt(r.server_cpu_cores)} | {r.rss_mib_per_participant:.1f} "
            f"| {'; '.join(r.backed_up) or 'no'} "
            f"| {r.load_average[0]:.1f} → {r.load_average[1]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sdk", choices=("lkproto", "livekit"), default="lkproto")
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=300.0, help="sending time, s")
    parser.add_argument("--listeners", type=int, default=10, help="subscribers of the agent")
    parser.add_argument("--curve", default="", help="comma-separated sizes: one round each")
    parser.add_argument("--curve-budget", type=float, default=1800.0, help="bound on a curve, s")
    parser.add_argument(
        "--stop-on",
        choices=("backed-up", "loss"),
        default="backed-up",
        help="end the curve at the first round that backs up, or only at one that loses",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    parser.add_argument("--logs", type=Path, default=None, help="keep worker/server logs here")
    parser.add_argument("--log-level", default=None, help="workers log their SDK at this level")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason is not None:
        print(f"load benchmark cannot run: {reason}", file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.curve.split(",") if n] or [args.participants]
    if min(sizes) < 2 + args.listeners:
        parser.error("every size needs the agent, its listeners and at least one more")
    started = utc_now()
    began = time.monotonic()
    results: list[CrowdResult] = []
    errors: dict[int, str] = {}
    for size in sizes:
        if args.curve and time.monotonic() - began > args.curve_budget:
            print(f"curve budget spent before {size}", file=sys.stderr, flush=True)
            break
        logs = args.logs / f"{args.sdk}-{size}" if args.logs is not None else None
        try:
            options: dict[str, object] = {"log_dir": logs} if logs is not None else {}
            with FaultLab(server_options=options, log_dir=logs) as lab:
                result = run_crowd(
                    lab,
                    sdk=args.sdk,
                    participants=size,
                    processes=min(args.processes, size),
                    duration_s=args.duration,
                    listeners=args.listeners,
                    log_level=args.log_level,
                )
        except TimeoutError as exc:  # a round that cannot even join is the ceiling too
            errors[size] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            print(f"{size}: FAILED {errors[size]}", file=sys.stderr, flush=True)
            break
        results.append(result)
        print(
            f"{size} participants done: {'; '.join(result.backed_up) or 'not backed up'}",
            file=sys.stderr,
            flush=True,
        )
        lost = result.lost or result.joined < result.participants
        if args.curve and (lost if args.stop_on == "loss" else result.backed_up):
            break
    text = markdown_table(results)
    machine = machine_info({"livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION})
    print(text)
    for r in results:
        print(f"\n{r.sdk} {r.participants}: joins {r.join_histogram}; audio {r.audio}")
    for size, error in errors.items():
        print(f"\n{size}: no result ({error.splitlines()[0]})")
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
            "config": vars(args) | {"json": str(args.json), "logs": str(args.logs)},
            "results": [r.as_dict() for r in results],
            "errors": errors,
            "table": text,
            "machine": machine,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
