"""Fixtures of the fault tests: a :class:`~lkproto.testing.faults.FaultLab` per test.

The tests need root, ``ip``, ``nft`` and ``tc`` (``tools/setup_faults.sh``); without them every test
here is skipped with the reason, so a plain developer run stays green.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lkproto.testing import scaled
from lkproto.testing.faults import FaultLab, missing_requirements
from lkproto.testing.server import DEFAULT_READY_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["lab"]

_REASON = missing_requirements()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/faults ``faults`` and skip them where the harness cannot run."""
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
            if _REASON is not None:
                item.add_marker(pytest.mark.skip(reason=_REASON))


@pytest.fixture
def lab(livekit_server_binary: Path, tmp_path: Path) -> Iterator[FaultLab]:
    """A started lab (namespace + livekit-server) for one test, released even when it fails."""
    with FaultLab(
        server_options={
            "binary": livekit_server_binary,
            "log_dir": tmp_path / "server",
            "ready_timeout": scaled(DEFAULT_READY_TIMEOUT_S),
        },
        log_dir=tmp_path / "workers",
    ) as started:
        yield started
