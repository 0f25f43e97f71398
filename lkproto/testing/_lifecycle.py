"""The start/stop surface shared by the test kit's process managers.

:class:`~lkproto.testing.LocalServer` and :class:`~lkproto.testing.LocalCluster` both own
child processes whose start and stop block (they poll ports and wait for exits). Each writes
only its blocking ``start()`` and ``stop()``; this mixin derives the rest from them, so the
thread hand-off and the context-manager protocol behave the same in both (STYLE.md rule 11:
one helper per rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["StartStopMixin"]


class StartStopMixin:
    """Adds ``astart``/``astop`` and the sync and async context managers to ``start``/``stop``.

    Subclasses implement :meth:`start` and :meth:`stop`; both block, so the async forms run
    them in a worker thread to keep the event loop (and the clients it drives) responsive.
    """

    def start(self) -> None:
        """Start the processes; blocks until they serve (implemented by the subclass)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the processes; idempotent (implemented by the subclass)."""
        raise NotImplementedError

    async def astart(self) -> None:
        """Run :meth:`start` in a worker thread."""
        import asyncio  # deferred: importing the test kit stays cheap for sync users

        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """Run :meth:`stop` in a worker thread."""
        import asyncio

        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()
