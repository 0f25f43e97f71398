"""The browser page pool of the livekit-js adapter, with a fake harness (no Chromium)."""

from __future__ import annotations

import asyncio
import types
from typing import ClassVar

import pytest

from lkproto.conformance import Unsupported, adapters
from lkproto.conformance.adapters import BrowserPool


class FakePeer:
    started: ClassVar[list[FakePeer]] = []
    fail_start: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.driver_pid: int | None = None
        self._dead: str | None = None
        self.closed = False

    async def start(self) -> None:
        if FakePeer.fail_start:
            raise RuntimeError("no chromium")
        self.driver_pid = 1
        FakePeer.started.append(self)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    FakePeer.started = []
    FakePeer.fail_start = False
    module = types.SimpleNamespace(BrowserPeer=FakePeer)
    monkeypatch.setattr(adapters, "_load_harness", lambda: module)


async def test_pages_are_never_shared_and_are_reused() -> None:
    pool = BrowserPool(2)
    first, second = await pool.acquire(), await pool.acquire()
    assert first is not second
    third = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    assert not third.done()  # both pages are borrowed
    pool.release(second)
    assert await asyncio.wait_for(third, 1) is second
    assert len(FakePeer.started) == 2
    await pool.close()
    assert first.closed
    assert second.closed


async def test_a_dead_page_is_replaced() -> None:
    pool = BrowserPool(1)
    page = await pool.acquire()
    page._dead = "driver exited"
    pool.release(page)
    fresh = await pool.acquire()
    assert fresh is not page
    assert page.closed
    pool.release(fresh)
    await pool.close()


async def test_start_failure_is_remembered_and_frees_the_slot() -> None:
    FakePeer.fail_start = True
    pool = BrowserPool(1)
    with pytest.raises(Unsupported, match="did not start: no chromium"):
        await pool.acquire()
    FakePeer.fail_start = False
    # Remembered: the other scenarios report it at once instead of waiting for a slot.
    with pytest.raises(Unsupported, match="no chromium"):
        await asyncio.wait_for(pool.acquire(), 1)
    await pool.close()
