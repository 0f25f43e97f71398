"""Lifecycle under churn, CI size (issue 15 item 4): 50 connect/disconnect cycles and 50 connects
cancelled at protocol points or random delays, against the session's real livekit-server.

The event loop's tasks, this process's open fds and threads must come back to their baseline, and
RSS to within ``RSS_TOLERANCE_KIB``. ``benchmarks/churn.py`` is the same code at 1,000 + 1,000
(its figures are in the failure-behaviour docs).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from lkproto.testing import LocalServer, scaled

_CYCLES = 50
_CANCELS = 50
_SEED = 15


def _churn_module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "churn.py"
    spec = importlib.util.spec_from_file_location("lkproto_benchmark_churn", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


async def test_churn_returns_tasks_fds_threads_and_rss_to_the_baseline(
    livekit_server: LocalServer, record_property: Callable[[str, object], None]
) -> None:
    churn = _churn_module()
    async with asyncio.timeout(scaled(120)):
        result = await churn.run_churn(
            livekit_server.url,
            lambda room: livekit_server.create_token(f"churn-{uuid.uuid4().hex[:6]}", room),
            cycles=_CYCLES,
            cancels=_CANCELS,
            seed=_SEED,
        )
    detail = json.dumps(result.as_dict(), indent=1)
    record_property("churn", detail)
    assert result.cycle_failures == [], detail
    # aiortc's own send tasks may fail once DTLS closed under them (see the benchmark's
    # AIORTC_CLOSED_DTLS_SEND); anything else reaching the loop's handler is a defect.
    assert result.unexpected_loop_errors() == [], detail
    assert result.cancel_outcomes["cancelled"] > _CANCELS // 2, detail
    # Every protocol point was hit at least once with this seed.
    assert set(churn.CANCEL_POINTS) <= set(result.landed), detail
    assert result.leaks() == [], detail
