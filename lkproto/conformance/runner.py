"""Run scenarios x clients against one server and report (Markdown table, JSON rows)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from lkproto.conformance._context import ClusterTarget, Context, ServerTarget
from lkproto.conformance._registry import Result, Scenario, Unsupported
from lkproto.conformance.adapters import ADAPTERS, SERIAL_ADAPTERS, BrowserPool, ClientFactory
from lkproto.testing import scaled

__all__ = ["DEFAULT_BROWSERS", "DEFAULT_PARALLEL", "markdown_table", "run_catalogue", "run_one"]

DEFAULT_PARALLEL: Final = 6
"""Scenario runs at once (each in its own room) for the in-process adapters.

Chosen by measurement on a 2-vCPU VM (lkproto + livekit-python + livekit-js, 71 scenarios, other
work on the machine): 4 runs and one browser page took 246 s, 4 and 2 pages 130 s, 6 and 3
pages 98 s with the same results. Most of a run is waiting, not CPU: livekit-server batches
roster updates about non-publishers every 3 s (``subscriberUpdateInterval``, a constant in
``pkg/rtc/room.go``, not a config key), so overlapping runs is what shortens the whole."""

DEFAULT_BROWSERS: Final = 3
"""Chromium pages of the browser adapter, i.e. its runs at once (a lane beside the gate)."""

_REASON_CELL_CHARS: Final = 90

_log = logging.getLogger("lkproto.conformance")


async def run_one(
    scenario: Scenario,
    client_name: str,
    factory: ClientFactory,
    server: ServerTarget,
    *,
    no_autocreate: ServerTarget | None = None,
    cluster: ClusterTarget | None = None,
) -> Result:
    """Run one scenario for one client; never raises (every outcome is a :class:`Result`).

    With ``cluster``, the client under test joins through ``cluster.relay`` (``server`` is
    ignored), the lkproto peers through ``cluster.host``, and the run's room is pinned to the
    host node first.
    """
    start = time.monotonic()
    ctx = Context(
        server=cluster.relay if cluster is not None else server,
        client_name=client_name,
        factory=factory,
        scenario=scenario.name,
        no_autocreate=no_autocreate,
        cluster=cluster,
    )

    def result(outcome: str, reason: str) -> Result:
        return Result(
            scenario=scenario.name,
            client=client_name,
            result=outcome,  # type: ignore[arg-type]
            reason=reason,
            seconds=time.monotonic() - start,
        )

    try:
        probe = factory("probe")
        missing = sorted(scenario.needs - probe.capabilities)
        if missing:
            return result("unsupported", f"{client_name} adapter lacks {', '.join(missing)}")

        async def pinned_run() -> None:
            await ctx.pin_room()
            await scenario.fn(ctx)

        await asyncio.wait_for(pinned_run(), scaled(scenario.timeout_s))
        return result("pass", "")
    except Unsupported as exc:
        return result("unsupported", str(exc))
    except AssertionError as exc:
        return result("fail", str(exc) or "assertion failed")
    except TimeoutError:
        return result("fail", f"timed out after {scaled(scenario.timeout_s):g} s at: {ctx.step}")
    except Exception as exc:
        return result("fail", f"{type(exc).__name__} at {ctx.step}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await ctx.close()


async def run_catalogue(
    server: ServerTarget,
    scenarios: Sequence[Scenario],
    clients: Sequence[str],
    *,
    parallel: int = DEFAULT_PARALLEL,
    browsers: int = DEFAULT_BROWSERS,
    no_autocreate: ServerTarget | None = None,
    on_result: Callable[[Result], None] | None = None,
    server_version: str = "",
    cluster: ClusterTarget | None = None,
) -> list[Result]:
    """Run every scenario for every client; results in catalogue order, then client order.

    Args:
        server: the server every scenario joins (each run gets a fresh room).
        scenarios: what to run.
        clients: adapter names (keys of :data:`~lkproto.conformance.adapters.ADAPTERS`).
        parallel: runs at once of the in-process adapters (lkproto, livekit-python).
        browsers: Chromium pages for ``livekit-js``, i.e. its runs at once, beside ``parallel``.
        no_autocreate: a server with ``room.auto_create: false`` (for ``join.reject.*``).
        on_result: called with each result as it is produced (progress output).
        server_version: the server release, recorded in every result (``Result.server``).
        cluster: the cluster lane's nodes (see :func:`run_one`), or ``None``.

    Raises:
        ValueError: an unknown client name.
    """
    unknown = [c for c in clients if c not in ADAPTERS]
    if unknown:
        raise ValueError(f"unknown client(s) {unknown}; known: {sorted(ADAPTERS)}")
    pool = BrowserPool(browsers)
    factories = {name: ADAPTERS[name](pool) for name in clients}
    gate = asyncio.Semaphore(max(1, parallel))
    serial = {name: asyncio.Semaphore(pool.size) for name in clients if name in SERIAL_ADAPTERS}
    origin = time.monotonic()

    async def job(scenario: Scenario, client: str) -> Result:
        async with contextlib.AsyncExitStack() as stack:
            # The browser adapter has its own lane (one run per page) beside the shared gate,
            # so that it progresses while the others run instead of queueing behind them.
            await stack.enter_async_context(serial.get(client) or gate)
            started = time.monotonic() - origin
            result = await run_one(
                scenario,
                client,
                factories[client],
                server,
                no_autocreate=no_autocreate,
                cluster=cluster,
            )
        result = dataclasses.replace(result, server=server_version, started=started)
        _log.info("%s %s: %s %s", scenario.name, client, result.result, result.reason)
        if on_result is not None:
            on_result(result)
        return result

    try:
        return list(await asyncio.gather(*(job(s, c) for s in scenarios for c in clients)))
    finally:
        await pool.close()


def _cell(result: Result | None) -> str:
    if result is None:
        return "-"
    if result.result == "pass":
        return "pass"
    if result.result == "unsupported":
        return "unsupported"
    reason = " ".join(result.reason.split())
    if len(reason) > _REASON_CELL_CHARS:
        reason = reason[: _REASON_CELL_CHARS - 1] + "…"
    return "FAIL: " + reason.replace("|", "\\|")


def markdown_table(results: Sequence[Result], clients: Sequence[str]) -> str:
    """A Markdown table, one row per scenario, one column per client."""
    by_key = {(r.scenario, r.client): r for r in results}
    names = list(dict.fromkeys(r.scenario for r in results))
    lines = [
        "| scenario | " + " | ".join(clients) + " |",
        "|---|" + "---|" * len(clients),
    ]
    for name in names:
        cells = [_cell(by_key.get((name, c))) for c in clients]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    totals = []
    for c in clients:
        mine = [r for r in results if r.client == c]
        passed = sum(r.result == "pass" for r in mine)
        failed = sum(r.result == "fail" for r in mine)
        unsupported = sum(r.result == "unsupported" for r in mine)
        totals.append(f"{passed} pass / {failed} fail / {unsupported} unsupported")
    lines.append("| **total** | " + " | ".join(totals) + " |")
    return "\n".join(lines)
