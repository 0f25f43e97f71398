"""A small scenario subset run for one child-process adapter (Go or Node), with its expected
outcome per scenario: the adapters' interop tests share it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from lkproto.conformance import REGISTRY, Result, ServerTarget, run_catalogue
from lkproto.conformance._registry import Unsupported
from lkproto.testing import LocalServer

__all__ = ["run_subset"]


async def run_subset(
    server: LocalServer,
    client: str,
    expected: Mapping[str, str],
    prepare: Callable[[], object],
) -> list[Result]:
    """Run ``expected``'s scenarios for ``client`` and check each outcome.

    ``prepare`` builds or installs the adapter (skips the test with its reason when the
    toolchain is missing, so a machine without Go or Node reports why).
    """
    try:
        prepare()
    except Unsupported as exc:
        pytest.skip(f"{client} adapter unavailable: {exc}")
    target = ServerTarget(server.url, server.api_key, server.api_secret)
    results = await run_catalogue(target, [REGISTRY[name] for name in expected], [client])
    got = {r.scenario: r for r in results}
    wrong = [
        f"{name}: {got[name].result} ({got[name].reason}), expected {outcome}"
        for name, outcome in expected.items()
        if got[name].result != outcome
    ]
    assert not wrong, "\n".join(wrong)
    return results
