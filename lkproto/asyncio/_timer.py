"""The one way a driver keeps a sans-I/O machine's deadline armed on the event loop.

Every ``core`` machine reports its next deadline with ``get_timer()`` (a loop-clock time or
``None``) and fires what is due with ``handle_timer(now)``. A driver owns one
:class:`DeadlineTimer` per machine and calls :meth:`DeadlineTimer.rearm` after every input it
feeds; the timer keeps at most one ``loop.call_at`` handle, replaces it only when the deadline
moved, and calls back ``on_due(now)`` when it expires (the driver then calls ``handle_timer`` and
flushes, which re-arms through the same method).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """One ``loop.call_at`` handle that follows a machine's ``get_timer()``.

    Args:
        loop: the event loop whose clock the machine's deadlines use.
        get_deadline: the machine's ``get_timer`` (or any callable giving the next deadline).
        on_due: called with the loop time when the deadline passes; it should call the machine's
            ``handle_timer(now)`` and flush its outputs (then :meth:`rearm`).
    """

    __slots__ = ("_closed", "_get_deadline", "_handle", "_loop", "_on_due")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        get_deadline: Callable[[], float | None],
        on_due: Callable[[float], None],
    ) -> None:
        self._loop = loop
        self._get_deadline = get_deadline
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def when(self) -> float | None:
        """The armed deadline, or ``None`` when nothing is armed."""
        return None if self._handle is None else self._handle.when()

    def rearm(self) -> None:
        """Arm the timer at the machine's current deadline (no-op when unchanged or closed)."""
        deadline = None if self._closed else self._get_deadline()
        if self._handle is not None:
            if deadline is not None and self._handle.when() == deadline:
                return
            self._handle.cancel()
            self._handle = None
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._fire)

    def close(self) -> None:
        """Cancel the pending call and never arm again."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._on_due(self._loop.time())
