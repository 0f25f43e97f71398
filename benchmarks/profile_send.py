"""Profile one reliable-data burst (the ``data`` section of ``data_rpc.py``): where does time go?

Run from the repository root::

    .venv/bin/python benchmarks/profile_send.py [--sender lkproto] [--receiver lkproto]
        [--receiver-process] [--packets 10000] [--rounds 3] [--profiler cprofile|pyinstrument|none]

Joins one sender and one receiver on a fresh LocalServer, sends a warm-up burst, then ``--rounds``
timed bursts. After each burst it prints the CPU seconds per 1,000 packets of this process (user
and system), of livekit-server and of the receiver's process (``--receiver-process``: the receiver
runs in a child, so this process holds the send path alone), and, for an lkproto sender, aiortc's
congestion state. With a profiler, the last burst runs under it: ``cprofile`` prints the own time
summed per component (lkproto, aiortc SCTP / DTLS / data channel, aioice, the official SDK's
Python side, asyncio, ...) and the functions with the most own time; ``pyinstrument`` (not a
dependency: ``pip install --target /tmp/pyi pyinstrument`` and put that directory on
``PYTHONPATH``) prints sampled self time per component and function, then its call tree. Both
profilers slow Python down several times, so compare shares, not absolute times; the CPU lines of
the unprofiled rounds are the numbers to quote.

To measure a change to lkproto without touching the checkout, copy the repository and put the copy
first on ``PYTHONPATH``: ``PYTHONPATH=/tmp/copy .venv/bin/python benchmarks/profile_send.py``; the
first line printed says which ``lkproto`` was imported.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from data_rpc import (
    BurstResult,
    ChildReceiver,
    Receiver,
    ReceiverLike,
    burst,
    join,
    leave,
    wait_for_identities,
    wait_for_peers,
)

import lkproto
from lkproto.testing import LocalServer

# Own time is attributed to the first component whose marker occurs in the code's file path.
COMPONENTS: Final = (
    ("lkproto", "/lkproto/"),
    ("aiortc sctp", "aiortc/rtcsctptransport.py"),
    ("aiortc dtls", "aiortc/rtcdtlstransport.py"),
    ("aiortc datachannel", "aiortc/rtcdatachannel.py"),
    ("aiortc other", "/aiortc/"),
    ("aioice", "/aioice/"),
    ("official sdk (python)", "/livekit/"),
    ("protobuf", "/google/protobuf/"),
    ("pyee", "/pyee/"),
    ("cryptography/openssl", "/cryptography/"),
    ("asyncio", "/asyncio/"),
    ("benchmark", "/benchmarks/"),
)


def component(filename: str) -> str:
    for name, marker in COMPONENTS:
        if marker in filename:
            return name
    if filename == "~idle":
        return "idle"
    if filename == "~":
        return "builtins (C)"
    return "other python"


def by_component(stats: pstats.Stats) -> list[tuple[str, float]]:
    totals: dict[str, float] = defaultdict(float)
    raw: Any = stats.stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, callers) in raw.items():
        if filename == "~":
            # A builtin's own time goes to the component that called it the most.
            best = max(callers.items(), key=lambda kv: kv[1][2], default=None)
            key = f"{component(best[0][0])} (C calls)" if best else "builtins (C)"
            if "select" in name or "epoll" in name:
                key = "idle: epoll/select"
            totals[key] += tottime
        else:
            totals[component(filename)] += tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


async def run(args: argparse.Namespace) -> list[BurstResult]:
    results: list[BurstResult] = []
    async with LocalServer(log_level="warn") as server:
        room_name = f"bench-profile-{uuid.uuid4().hex[:8]}"
        rooms: dict[str, Any] = {}
        receiver: ReceiverLike
        child: ChildReceiver | None = None
        try:
            if args.receiver_process:
                receiver = child = await ChildReceiver.start(
                    server, args.receiver, "rx", room_name, 30.0
                )
                rooms["tx"] = await join(server, args.sender, "tx", room_name, 30.0)
                await wait_for_identities(rooms, ["rx"], 30.0)
            else:
                receiver = local = Receiver()
                rooms["rx"] = await join(server, args.receiver, "rx", room_name, 30.0)
                rooms["tx"] = await join(server, args.sender, "tx", room_name, 30.0)
                rooms["rx"].on("data_received", local.on_data)
                await wait_for_peers(rooms, 30.0)
            await burst(rooms["tx"], "rx", receiver, args.warmup)
            for i in range(args.rounds):
                last = i == args.rounds - 1
                profiler: Any = None
                if last and args.profiler == "cprofile":
                    profiler = cProfile.Profile()
                    profiler.enable()
                elif last and args.profiler == "pyinstrument":
                    from pyinstrument import Profiler  # type: ignore[import-not-found]

                    profiler = Profiler(interval=0.0005, async_mode="disabled")
                    profiler.start()
                child_pid = child.pid if child is not None else -1
                cpu0 = cpus(server.pid, child_pid)
                t0 = os.times()
                result = await burst(rooms["tx"], "rx", receiver, args.packets)
                cpu1 = cpus(server.pid, child_pid)
                if profiler is not None:
                    if args.profiler == "cprofile":
                        profiler.disable()
                        report_cprofile(profiler, args.top, args.dump)
                    else:
                        profiler.stop()
                        report_pyinstrument(profiler, args.top)
                results.append(result)
                print_round(i, result, profiled=profiler is not None, cpu=(t0, cpu0, cpu1))
                if args.sender == "lkproto":
                    print(f"         sender SCTP: {sctp_state(rooms['tx'])}")
                await asyncio.sleep(0.5)
        finally:
            if child is not None:
                await child.close()
            await leave(rooms, 30.0)
    return results


def print_round(
    i: int,
    result: BurstResult,
    *,
    profiled: bool,
    cpu: tuple[os.times_result, tuple[float, float, float], tuple[float, float, float]],
) -> None:
    t0, before, after = cpu
    t1 = os.times()
    per_k = 1000 / result.packets
    used = [(b - a) * per_k for a, b in zip(before, after, strict=True)]
    print(
        f"round {i}: {result.packets_per_s:,.0f} packets/s, send loop "
        f"{result.send_loop_s:.2f} s, total {result.total_s:.2f} s, lost "
        f"{result.lost}, dup {result.duplicates}, out of order {result.out_of_order}"
        + (" (profiled)" if profiled else "")
    )
    print(
        f"         this process: user {(t1.user - t0.user) * per_k:.3f} s, system "
        f"{(t1.system - t0.system) * per_k:.3f} s per 1000 packets"
    )
    child = f", receiver process {used[2]:.3f} s" if after[2] else ""
    print(
        f"         CPU per 1000 packets: this process {used[0]:.3f} s, livekit-server "
        f"{used[1]:.3f} s{child}; wall {result.total_s * per_k:.3f} s; load average "
        f"{os.getloadavg()[0]:.2f}"
    )


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far; this process if None."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def sctp_state(room: Any) -> str:
    """aiortc's congestion state of the sender's association (private attributes; diagnostics)."""
    try:
        sctp = room.engine._link.publisher._pc.sctp
        return (
            f"cwnd {sctp._cwnd} B, ssthresh {sctp._ssthresh} B, flight {sctp._flight_size} B, "
            f"sent queue {len(sctp._sent_queue)}, outbound queue {len(sctp._outbound_queue)}, "
            f"rto {sctp._rto:.3f} s"
        )
    except AttributeError as exc:
        return f"n/a ({exc})"


def cpus(server_pid: int | None, child_pid: int) -> tuple[float, float, float]:
    return (
        process_cpu_s(None),
        process_cpu_s(server_pid),
        process_cpu_s(child_pid) if child_pid > 0 else 0.0,
    )


def report_cprofile(profiler: cProfile.Profile, top: int, dump: Path | None) -> None:
    if dump is not None:
        profiler.dump_stats(dump)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"own time by component (cProfile, total {total:.2f} s):")
    for name, seconds in by_component(stats):
        print(f"  {name:<34} {seconds:7.2f} s {100 * seconds / total:5.1f} %")
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def report_pyinstrument(profiler: Any, top: int) -> None:
    """Self time (time sampled in a frame and not in a Python callee) per component and function.

    Time in C (syscalls, OpenSSL, protobuf's upb) counts for the Python function that called it.
    """
    root = profiler.last_session.root_frame()
    per_component: dict[str, float] = defaultdict(float)
    per_function: dict[tuple[str, str], float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        children = list(frame.children)
        stack.extend(children)
        own = frame.time - sum(child.time for child in children)
        # pyinstrument 5 books a frame's own time on a synthetic "[self]" child.
        real = frame.parent if frame.is_synthetic and frame.parent is not None else frame
        path = real.file_path or "~"
        where = f"{real.function} {real.file_path_short}:{real.line_no}"
        if frame.function == "[await]" or "select" in real.function:
            path, where = "~idle", "waiting for I/O (epoll) or an awaited future"
        per_component[component(path)] += own
        per_function[(component(path), where)] += own
    total = root.time
    print(f"self time by component (pyinstrument, {total:.2f} s sampled):")
    for name, seconds in sorted(per_component.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<34} {seconds:7.2f} s {100 * seconds / total:5.1f} %")
    print("functions with the most self time:")
    for (name, where), seconds in sorted(per_function.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds:6.3f} s {100 * seconds / total:5.1f} %  [{name}] {where}")
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sender", choices=("lkproto", "official"), default="lkproto")
    parser.add_argument("--receiver", choices=("lkproto", "official"), default="lkproto")
    parser.add_argument(
        "--receiver-process",
        action="store_true",
        help="run the receiver in a child process (profiles then show the send path alone)",
    )
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profiler", choices=("cprofile", "pyinstrument", "none"), default="cprofile"
    )
    parser.add_argument("--top", type=int, default=35, help="functions to list")
    parser.add_argument("--dump", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    print(f"lkproto from {Path(lkproto.__file__).parent}")
    results = asyncio.run(run(args))
    rates = [r.packets_per_s for r in results]
    unprofiled = rates[:-1] if args.profiler != "none" and len(rates) > 1 else rates
    where = " (receiver in its own process)" if args.receiver_process else ""
    print(
        f"{args.sender} -> {args.receiver}{where}: {args.packets} x 1 KB, median of "
        f"{len(unprofiled)} unprofiled rounds {statistics.median(unprofiled):,.0f} packets/s "
        f"(all: {', '.join(f'{r:,.0f}' for r in rates)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
