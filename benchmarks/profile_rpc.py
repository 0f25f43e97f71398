"""Profile lkproto's RPC caller alone in its process (the fair shape of ``data_rpc.py``).

Run from the repository root::

    .venv/bin/python benchmarks/profile_rpc.py [--callee official|lkproto] [--calls 500]
        [--profile]

Starts a LocalServer, runs the callee (an echo method, as in ``data_rpc.py``) in a child process
of its own (``data_rpc.py --serve-rpc``), joins an lkproto caller in this process, makes 50
untimed calls and then ``--calls`` timed sequential calls of a 16-byte payload. It prints the
p50 round trip, the event-loop turns per call (``BaseEventLoop._run_once`` iterations, idle ones
included), the tasks created per call by coroutine name, and this process's CPU per call
(``time.process_time``). With ``--profile`` the timed calls run under cProfile, which slows
Python down severalfold: compare shares, quote the unprofiled figures.

To measure a change without touching the checkout, put a copy of ``lkproto`` first on
``PYTHONPATH``; the first line printed says which one was imported (the callee's child process
inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import sys
import time
import uuid
from collections.abc import Coroutine, Generator, Sequence
from typing import Any, Final

import data_rpc
from data_rpc import ChildRpcPeer, join, wait_for_identities

import lkproto
from lkproto.testing import LocalServer

WARMUP_CALLS: Final = 50
LIMIT_S: Final = 30.0


async def profile(callee_sdk: str, calls: int, with_profiler: bool) -> None:
    async with LocalServer(log_level="warn") as server:
        room_name = f"profile-rpc-{uuid.uuid4().hex[:8]}"
        callee = f"callee-{callee_sdk}"
        peer = await ChildRpcPeer.start(server, callee_sdk, callee, room_name, LIMIT_S)
        room = await join(server, "lkproto", "caller-lkproto", room_name, LIMIT_S)
        try:
            await peer.see(["caller-lkproto"])
            await wait_for_identities({"caller": room}, [callee], LIMIT_S)
            for _ in range(WARMUP_CALLS):
                await data_rpc._call(room, callee, LIMIT_S)
            loop = asyncio.get_running_loop()
            turns = 0
            run_once = loop._run_once  # type: ignore[attr-defined]

            def counting_run_once() -> None:
                nonlocal turns
                turns += 1
                run_once()

            tasks: collections.Counter[str] = collections.Counter()

            def factory(
                loop: asyncio.AbstractEventLoop,
                coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
                **kwargs: Any,
            ) -> asyncio.Task[Any]:
                tasks[getattr(coro, "__qualname__", type(coro).__name__)] += 1
                return asyncio.Task(coro, loop=loop, **kwargs)

            profiler = cProfile.Profile()
            samples: list[float] = []
            loop._run_once = counting_run_once  # type: ignore[attr-defined]
            loop.set_task_factory(factory)
            cpu0 = time.process_time()
            if with_profiler:
                profiler.enable()
            try:
                for _ in range(calls):
                    samples.append(await data_rpc._call(room, callee, LIMIT_S))
            finally:
                if with_profiler:
                    profiler.disable()
                cpu_s = time.process_time() - cpu0
                loop._run_once = run_once  # type: ignore[attr-defined]
                loop.set_task_factory(None)
            samples.sort()
            note = " (profiled)" if with_profiler else ""
            print(
                f"callee {callee_sdk}: {calls} calls, p50 {samples[len(samples) // 2]:.2f} ms, "
                f"{turns / calls:.1f} loop turns per call, "
                f"{cpu_s * 1000 / calls:.2f} CPU ms per call{note}"
            )
            print(
                "tasks per call:",
                ", ".join(f"{name} {n / calls:.2f}" for name, n in tasks.most_common()),
            )
            if with_profiler:
                stats = pstats.Stats(profiler, stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(30)
                stats.sort_stats("cumulative").print_stats(40)
        finally:
            await room.disconnect()
            await peer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--callee", choices=("official", "lkproto"), default="official")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="run the timed calls in cProfile")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be >= 1")
    print(f"lkproto from {lkproto.__file__}")
    asyncio.run(profile(args.callee, args.calls, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
