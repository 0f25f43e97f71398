"""Shared fixtures: one real livekit-server per test session, and scaled timings.

Every wait in the suite goes through :func:`scaled`, so a slow machine can stretch all of them at
once with ``LKPROTO_TEST_TIME_SCALE=3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lkproto.testing import LocalServer, ensure_livekit_server, scaled, time_scale
from lkproto.testing.server import DEFAULT_READY_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from pathlib import Path

__all__ = ["livekit_server", "livekit_server_binary", "scaled", "time_scale"]


@pytest.fixture(scope="session")
def livekit_server_binary() -> Path:
    """The pinned livekit-server executable, built once into the cache if needed."""
    return ensure_livekit_server()


@pytest.fixture(scope="session")
def livekit_server(
    livekit_server_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A started loopback livekit-server shared by the whole session; use unique room names."""
    server = LocalServer(
        binary=livekit_server_binary,
        log_dir=tmp_path_factory.mktemp("livekit-server"),
        ready_timeout=scaled(DEFAULT_READY_TIMEOUT_S),
    )
    with server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the server log tail to the report of a failed test that used ``livekit_server``."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        server = funcargs.get("livekit_server")
        if isinstance(server, LocalServer):
            report.sections.append(
                (f"livekit-server log tail ({server.log_path})", server.log_tail())
            )
    return report
