"""Lifecycle under churn (issue 15 item 4): connect/disconnect cycles and cancelled connects.

Usage::

    .venv/bin/python benchmarks/churn.py [--cycles 1000] [--cancels 1000] [--seed 15]

Against a real livekit-server on loopback (:class:`lkproto.testing.LocalServer`), one process:

``cycles``
    ``Room.connect`` then ``Room.disconnect``, one after the other.
``cancels``
    ``Room.connect`` cancelled part-way. The point is drawn from a seeded generator: one of the
    protocol points (:data:`CANCEL_POINTS`, recognised from the room's ``trace`` callback, so the
    cancel lands exactly when that frame goes out or comes in) or a random delay from start.
    Each cancel is tallied by the phase it actually landed in (the last signal frame seen).

Before the first cycle (after a few untimed warm-up rounds, which load modules and start the
default executor's threads) and after the last, it records the event loop's tasks, this
process's open file descriptors (``/proc/self/fd``), threads and RSS. The "after" figures are
read once everything that was still closing has had up to :data:`SETTLE_S` to finish (polled,
not slept), after a ``gc.collect()``. Tasks, fds and threads must come back to the baseline
exactly (threads other than the default executor's idle workers, which the pool keeps and bounds
by :data:`DEFAULT_EXECUTOR_WORKERS`); RSS within :data:`RSS_TOLERANCE_KIB`.

The official SDK is not part of this run: its FFI keeps its own threads and sockets in a Rust
runtime that ``/proc/self`` counts cannot separate from ours, so there is no like-for-like figure.

The churn itself (:func:`run_churn`) imports only lkproto, so ``tests/faults/test_churn.py`` runs a
short version of the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lkproto import rtc
from lkproto.errors import LkError

__all__ = [
    "AIORTC_CLOSED_DTLS_SEND",
    "CANCEL_POINTS",
    "DEFAULT_EXECUTOR_WORKERS",
    "RSS_TOLERANCE_KIB",
    "SETTLE_S",
    "ChurnResult",
    "Resources",
    "main",
    "resources_now",
    "run_churn",
]

CANCEL_POINTS: Final = ("before_join", "join", "offer", "answer", "connected")
"""Where a connect is cancelled: ``before_join`` as soon as the connect task has started (the
signal socket is opening; no JoinResponse yet), ``join`` when the JoinResponse arrives, ``offer``
when the client's first offer goes out (negotiation), ``answer`` when the answer arrives (ICE and
DTLS under way), ``connected`` from the room's ``connected`` event (the join completed; the
cancel hits the last step of ``connect``, or the disconnect that follows it). ``random`` draws a
delay instead."""

DEFAULT_EXECUTOR_WORKERS: Final = min(32, (os.cpu_count() or 1) + 4)
"""The default executor's documented bound (``concurrent.futures.ThreadPoolExecutor``): its
idle workers may stay, more than this would be a leak."""

AIORTC_CLOSED_DTLS_SEND: Final = "Cannot send encrypted data, not connected"
"""aiortc 1.16.0's fire-and-forget SCTP send tasks (``asyncio.ensure_future(self._send_chunk(...))``
and ``_data_channel_flush`` in ``aiortc/rtcsctptransport.py``) end with this ``ConnectionError``
when DTLS closed under them; tasks and fds still came back to the baseline. Seen 8 times in one
1,000 + 1,000 run at load 9.8-13.9 and in none of three others, so it is reported but not counted
as a failure."""

RSS_TOLERANCE_KIB: Final = 16 * 1024
"""RSS may end this much above the baseline: allocator arenas and interned strings do not shrink."""

SETTLE_S: Final = 10.0
"""How long the "after" reading waits for closing sockets, peers and tasks to finish."""

_WARMUP_ROUNDS: Final = 3
_ROUND_TIMEOUT_S: Final = 30.0
_RANDOM_DELAY_SPAN: Final = 1.5
"""Random cancel delays are drawn up to this many times the median connect of the cycles, so
most land inside the connect and a few after it."""
_DEFAULT_CONNECT_S: Final = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """What one process holds at one moment."""

    tasks: int
    fds: int
    threads: int
    executor_threads: int
    """Of ``threads``, the loop's default executor workers (``asyncio_N``): ``getaddrinfo`` and
    friends run there, and the pool keeps an idle worker once it started one."""
    rss_kib: int

    def as_dict(self) -> dict[str, int]:
        return {
            "tasks": self.tasks,
            "fds": self.fds,
            "threads": self.threads,
            "executor_threads": self.executor_threads,
            "rss_kib": self.rss_kib,
        }


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def resources_now() -> Resources:
    """The running loop's tasks (this one included), open fds, threads and RSS."""
    return Resources(
        tasks=len(asyncio.all_tasks()),
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        executor_threads=sum(t.name.startswith("asyncio_") for t in threading.enumerate()),
        rss_kib=_rss_kib(),
    )


@dataclass(slots=True, kw_only=True)
class ChurnResult:
    """Figures of one :func:`run_churn`."""

    cycles: int = 0
    cancels: int = 0
    cycle_failures: list[str] = field(default_factory=list)
    """Connect/disconnect cycles that raised (type and message)."""
    loop_errors: list[str] = field(default_factory=list)
    """What reached the event loop's exception handler (a callback or task that raised)."""

    def unexpected_loop_errors(self) -> list[str]:
        """:attr:`loop_errors` other than :data:`AIORTC_CLOSED_DTLS_SEND`."""
        return [e for e in self.loop_errors if AIORTC_CLOSED_DTLS_SEND not in e]

    cancel_outcomes: Counter[str] = field(default_factory=Counter)
    """How each cancelled connect ended: ``cancelled``, ``connected`` (it finished first) or the
    exception type."""
    landed: Counter[str] = field(default_factory=Counter)
    """Phase each cancel landed in (the last signal frame seen when it was requested)."""
    baseline: Resources | None = None
    after: Resources | None = None
    settle_s: float = 0.0
    elapsed_s: float = 0.0
    connect_median_s: float = 0.0
    """Median ``connect`` of the cycles (random cancel delays scale with it)."""

    def leaks(self, rss_tolerance_kib: int = RSS_TOLERANCE_KIB) -> list[str]:
        """What did not come back to the baseline (empty: nothing leaked)."""
        if self.baseline is None or self.after is None:
            return ["not measured"]
        found = [
            f"{name}: {getattr(self.baseline, name)} -> {getattr(self.after, name)}"
            for name in ("tasks", "fds")
            if getattr(self.after, name) > getattr(self.baseline, name)
        ]
        own_before = self.baseline.threads - self.baseline.executor_threads
        own_after = self.after.threads - self.after.executor_threads
        if own_after > own_before:
            found.append(f"threads outside the default executor: {own_before} -> {own_after}")
        if self.after.executor_threads > DEFAULT_EXECUTOR_WORKERS:
            found.append(f"default executor threads: {self.after.executor_threads}")
        if self.after.rss_kib - self.baseline.rss_kib > rss_tolerance_kib:
            found.append(f"rss_kib: {self.baseline.rss_kib} -> {self.after.rss_kib}")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "cancels": self.cancels,
            "cycle_failures": self.cycle_failures,
            "loop_errors": self.loop_errors,
            "cancel_outcomes": dict(self.cancel_outcomes),
            "landed": dict(self.landed),
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "after": self.after.as_dict() if self.after else None,
            "rss_tolerance_kib": RSS_TOLERANCE_KIB,
            "settle_s": round(self.settle_s, 3),
            "connect_median_s": round(self.connect_median_s, 4),
            "elapsed_s": round(self.elapsed_s, 1),
            "leaks": self.leaks(),
        }


def _phase(kind: str, direction: str) -> str | None:
    """The churn phase a traced signal frame starts (None: it starts none)."""
    if direction == "<" and kind == "join":
        return "join"
    if direction == ">" and kind == "offer":
        return "offer"
    if direction == "<" and kind == "answer":
        return "answer"
    return None


class _Attempt:
    """One cancelled connect: watches the trace and cancels the task at the chosen point."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.phase = "before_join"
        self.task: asyncio.Task[None] | None = None
        self.cancel_phase: str | None = None

    def trace(self, direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        del raw, now
        if channel != "signal":
            return
        which = getattr(message, "WhichOneof", None)
        kind = which("message") if callable(which) else None
        if not isinstance(kind, str):
            return
        phase = _phase(kind, direction)
        if phase is None:
            return
        self.phase = phase
        if phase == self.point:
            self.cancel()

    def on_connected(self) -> None:
        self.phase = "connected"
        if self.point == "connected":
            self.cancel()

    def cancel(self) -> None:
        if self.task is not None and self.cancel_phase is None and not self.task.done():
            self.cancel_phase = self.phase
            self.task.cancel()


async def _cancelled_connect(
    url: str, token: str, point: str, delay_s: float, result: ChurnResult
) -> None:
    attempt = _Attempt(point)
    room = rtc.Room()
    room.on("connected", attempt.on_connected)
    options = rtc.RoomOptions(trace=attempt.trace)
    task = asyncio.get_running_loop().create_task(room.connect(url, token, options))
    attempt.task = task
    if point == "before_join":
        await asyncio.sleep(0)
        attempt.cancel()
    elif point == "random":
        done, _ = await asyncio.wait({task}, timeout=delay_s)
        if not done:
            attempt.cancel()
    try:
        async with asyncio.timeout(_ROUND_TIMEOUT_S):
            await task
        outcome = "connected"
    except asyncio.CancelledError:
        if attempt.cancel_phase is None:
            raise
        outcome = "cancelled"
    except LkError as exc:
        outcome = type(exc).__name__
    result.cancel_outcomes[outcome] += 1
    result.landed[attempt.cancel_phase or "not cancelled"] += 1
    # A connect that won the race is an ordinary connected room: leave it.
    async with asyncio.timeout(_ROUND_TIMEOUT_S):
        await room.disconnect()


async def _cycle(url: str, token: str) -> float:
    """One connect/disconnect; returns how long the connect took."""
    room = rtc.Room()
    async with asyncio.timeout(_ROUND_TIMEOUT_S):
        start = time.perf_counter()
        await room.connect(url, token)
        took = time.perf_counter() - start
        await room.disconnect()
    return took


async def _settled(baseline: Resources, settle_s: float) -> tuple[Resources, float]:
    """Poll until tasks, fds and threads are back at the baseline or ``settle_s`` passed."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        gc.collect()
        now = resources_now()
        waited = loop.time() - start
        if (
            now.tasks <= baseline.tasks
            and now.fds <= baseline.fds
            and now.threads - now.executor_threads <= baseline.threads - baseline.executor_threads
        ) or waited >= settle_s:
            return now, waited
        await asyncio.sleep(0.1)


async def run_churn(
    url: str,
    make_token: Callable[[str], str],
    *,
    cycles: int,
    cancels: int,
    seed: int,
    settle_s: float = SETTLE_S,
    progress: Callable[[str], None] | None = None,
) -> ChurnResult:
    """Run the churn and return its figures (see the module docstring).

    Args:
        url: the server's WebSocket URL.
        make_token: a join token for a room name (one room per round, so rounds never meet).
        cycles: connect/disconnect cycles.
        cancels: cancelled connects.
        seed: seeds the cancel points and delays.
        settle_s: longest wait for the "after" reading.
        progress: called with a line every 100 rounds.
    """
    rng = random.Random(seed)
    result = ChurnResult()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: result.loop_errors.append(
            f"{context.get('message')}: {context.get('exception')!r}"
            f" in {str(context.get('future') or context.get('handle'))[:300]}"
        )
    )
    try:
        await _churn(
            url,
            make_token,
            cycles=cycles,
            cancels=cancels,
            rng=rng,
            settle_s=settle_s,
            progress=progress,
            result=result,
        )
    finally:
        loop.set_exception_handler(previous)
    return result


async def _churn(
    url: str,
    make_token: Callable[[str], str],
    *,
    cycles: int,
    cancels: int,
    rng: random.Random,
    settle_s: float,
    progress: Callable[[str], None] | None,
    result: ChurnResult,
) -> None:
    started = time.perf_counter()
    for _ in range(_WARMUP_ROUNDS):
        await _cycle(url, make_token(f"churn-warm-{uuid.uuid4().hex[:8]}"))
    result.baseline, _ = await _settled(resources_now(), settle_s)
    connects: list[float] = []
    for index in range(cycles):
        try:
            connects.append(await _cycle(url, make_token(f"churn-{uuid.uuid4().hex[:8]}")))
        except (LkError, TimeoutError) as exc:
            result.cycle_failures.append(f"{type(exc).__name__}: {exc}")
        result.cycles += 1
        if progress is not None and (index + 1) % 100 == 0:
            progress(f"cycles {index + 1}/{cycles}: {resources_now()}")
    result.connect_median_s = statistics.median(connects) if connects else _DEFAULT_CONNECT_S
    choices = (*CANCEL_POINTS, "random")
    for index in range(cancels):
        point = rng.choice(choices)
        delay = rng.uniform(0.0, _RANDOM_DELAY_SPAN * result.connect_median_s)
        await _cancelled_connect(
            url, make_token(f"churn-c-{uuid.uuid4().hex[:8]}"), point, delay, result
        )
        result.cancels += 1
        if progress is not None and (index + 1) % 100 == 0:
            progress(f"cancels {index + 1}/{cancels}: {resources_now()}")
    result.after, result.settle_s = await _settled(result.baseline, settle_s)
    result.elapsed_s = time.perf_counter() - started


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the churn against a fresh LocalServer, print the table and write the JSON file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine_info, utc_now, write_json

    from lkproto.testing import LocalServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--cancels", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "churn.json"
    )
    args = parser.parse_args(argv)
    load_before = _load()

    async def go(server: LocalServer) -> ChurnResult:
        return await run_churn(
            server.url,
            lambda room: server.create_token(f"churn-{uuid.uuid4().hex[:6]}", room),
            cycles=args.cycles,
            cancels=args.cancels,
            seed=args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )

    with LocalServer() as server:
        result = asyncio.run(go(server))
    load_after = _load()
    base, after = result.baseline, result.after
    print(f"churn: {result.cycles} cycles + {result.cancels} cancelled connects")
    print(f"load average before {load_before}, after {load_after}")
    print("| resource | baseline | after |")
    print("|---|---|---|")
    if base is not None and after is not None:
        for name, value in base.as_dict().items():
            print(f"| {name} | {value} | {after.as_dict()[name]} |")
    print(f"cancel outcomes {dict(result.cancel_outcomes)}, landed {dict(result.landed)}")
    print(f"leaks: {result.leaks() or 'none'}; loop errors: {len(result.loop_errors)}")
    payload = {
        "benchmark": "churn",
        "when": utc_now(),
        "machine": machine_info({"load_before": load_before, "load_after": load_after}),
        "seed": args.seed,
        "result": result.as_dict(),
    }
    print(f"wrote {write_json(args.json, payload)}")
    print(json.dumps(result.as_dict()["leaks"]))
    failed = result.leaks() or result.cycle_failures or result.unexpected_loop_errors()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
