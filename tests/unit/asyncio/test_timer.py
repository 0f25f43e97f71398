"""DeadlineTimer: one call_at handle following a machine's get_timer() (lkproto.asyncio._timer)."""

from __future__ import annotations

import asyncio

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.testing import scaled


class Machine:
    """A stand-in sans-I/O machine: a settable deadline and a record of handle_timer calls."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.fired: list[float] = []

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadline = None


def make() -> tuple[Machine, DeadlineTimer, asyncio.Event]:
    loop = asyncio.get_running_loop()
    machine = Machine()
    due = asyncio.Event()

    def on_due(now: float) -> None:
        machine.handle_timer(now)
        timer.rearm()
        due.set()

    timer = DeadlineTimer(loop, machine.get_timer, on_due)
    return machine, timer, due


async def test_nothing_armed_without_a_deadline() -> None:
    _, timer, _ = make()
    timer.rearm()
    assert timer.when is None


async def test_fires_at_the_deadline_with_the_loop_time() -> None:
    machine, timer, due = make()
    loop = asyncio.get_running_loop()
    machine.deadline = loop.time() + 0.01
    timer.rearm()
    assert timer.when == machine.deadline
    deadline = machine.deadline
    await asyncio.wait_for(due.wait(), scaled(2))
    assert len(machine.fired) == 1
    assert machine.fired[0] >= deadline
    assert timer.when is None  # the machine had nothing more; nothing stays armed


async def test_unchanged_deadline_keeps_the_same_handle() -> None:
    machine, timer, _ = make()
    machine.deadline = asyncio.get_running_loop().time() + 60
    timer.rearm()
    handle = timer._handle
    timer.rearm()
    assert timer._handle is handle
    timer.close()


async def test_moved_deadline_replaces_the_handle_and_cancels_the_old_one() -> None:
    machine, timer, _ = make()
    now = asyncio.get_running_loop().time()
    machine.deadline = now + 60
    timer.rearm()
    old = timer._handle
    assert old is not None
    machine.deadline = now + 30
    timer.rearm()
    assert timer.when == now + 30
    assert old.cancelled()
    machine.deadline = None
    timer.rearm()
    assert timer.when is None
    assert timer._handle is None


async def test_close_cancels_and_never_arms_again() -> None:
    machine, timer, due = make()
    loop = asyncio.get_running_loop()
    machine.deadline = loop.time() - 1  # already due: an armed handle runs on the next turn
    timer.rearm()
    timer.close()
    assert timer.when is None
    timer.rearm()
    assert timer.when is None
    for _ in range(3):
        await asyncio.sleep(0)
    assert not due.is_set()
    assert machine.fired == []
