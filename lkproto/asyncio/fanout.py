"""Fan one received media track out to any number of bounded readers.

aiortc's ``RemoteStreamTrack.recv()`` is a single-consumer queue with no bound: if nobody reads
it, decoded frames pile up in memory. A :class:`FrameFanout` reads it from the moment the track
is subscribed, in one task, and hands every frame to each :class:`FrameQueue` that wants it.
Queues are bounded: when a reader falls behind, its oldest frame is dropped and counted, so a
slow reader costs it freshness, never the process memory, and never stalls the other readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Protocol

__all__ = ["DEFAULT_QUEUE_FRAMES", "FrameFanout", "FrameQueue", "FrameSource"]

_log = logging.getLogger("lkproto.media")

DEFAULT_QUEUE_FRAMES = 50
"""Frames one reader may have pending when it asks for no particular capacity (1 s of 20 ms
audio; ~1.7 s of 30 fps video)."""


class FrameSource(Protocol):
    """What the fanout reads: an aiortc ``MediaStreamTrack`` (or a test double)."""

    kind: str

    async def recv(self) -> Any: ...


class FrameQueue:
    """One reader's bounded queue of frames (PyAV ``AudioFrame``/``VideoFrame`` objects).

    ``await get()`` returns the next frame, or None once the fanout has ended (the track ended
    or was unsubscribed) and nothing is left. ``dropped`` counts frames this reader lost because
    it fell more than ``capacity`` frames behind.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0
        self.delivered = 0
        self._frames: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: Any) -> None:
        if self._ended:
            return
        if len(self._frames) >= self.capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    async def get(self) -> Any | None:
        while not self._frames:
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.delivered += 1
        return self._frames.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class FrameFanout:
    """Reads ``source`` in a task and copies each frame reference to every open queue.

    Frames are shared, not copied: readers must treat them as read-only.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.kind = source.kind
        self.received = 0
        self._queues: list[FrameQueue] = []
        self._closed = False
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._run(), name=f"lkproto-fanout-{source.kind}"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def readers(self) -> int:
        return len(self._queues)

    def subscribe(self, capacity: int = DEFAULT_QUEUE_FRAMES) -> FrameQueue:
        """A new queue that receives every frame from now on (an ended queue if closed)."""
        queue = FrameQueue(capacity)
        if self._closed:
            queue.end()
        else:
            self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: FrameQueue) -> None:
        """Stop feeding ``queue`` and end it (idempotent)."""
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)
        queue.end()

    async def aclose(self) -> None:
        """Stop reading and end every queue (idempotent)."""
        self._finish()
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def close(self) -> None:
        """:meth:`aclose` without waiting for the reading task to unwind."""
        self._finish()
        if not self._task.done():
            self._task.cancel()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        queues, self._queues = self._queues, []
        for queue in queues:
            queue.end()

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.source.recv()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # aiortc raises MediaStreamError when the track ends
                    _log.debug("= %s track ended: %r", self.kind, exc)
                    return
                self.received += 1
                for queue in self._queues:
                    queue.put(frame)
        finally:
            self._finish()
