"""Drives :mod:`lkproto.core.data_track` for one room: signalling, packets and frame queues.

The core machine decides everything (handles, routing, reassembly); this module only awaits the
server's answer to a publish request, hands packets to the engine's ``_data_track`` channel and
feeds received frames to the readers of each subscribed track (PROTOCOL-MAP §12).

Readers get a bounded :class:`FrameQueue`: when a reader falls ``buffer_size`` frames behind, its
oldest frame is dropped. A data track is lossy by contract, and a slow reader must neither grow
memory nor hold up the other readers (the Rust SDK's broadcast channel behaves the same way).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, assert_never

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.core import data_track as cd
from lkproto.core import signal as sg
from lkproto.errors import ConnectError, LocalProtocolError, RequestRejectedError
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

__all__ = [
    "DATA_TRACK_PUBLISH_TIMEOUT_S",
    "DEFAULT_FRAME_BUFFER",
    "DataTrackDriver",
    "FrameQueue",
]

_log = logging.getLogger("lkproto.data_track")

DATA_TRACK_PUBLISH_TIMEOUT_S: Final = 10.0
"""How long :meth:`DataTrackDriver.publish` waits for the server's answer (the official SDK
reports a ``TIMEOUT`` publish error; the same bound as a media publication)."""

DEFAULT_FRAME_BUFFER: Final = 16
"""Frames a reader may fall behind before its oldest is dropped, when it names no size."""

_SIGNAL_KINDS: Final = frozenset(
    {
        "publish_data_track_response",
        "unpublish_data_track_response",
        "data_track_subscriber_handles",
    }
)


class FrameQueue:
    """The frames of one subscription, bounded; ends when the track or the room goes away.

    Args:
        buffer_size: frames held before the oldest is dropped (values below 1 count as 1).
        on_close: called once when the reader closes it.
    """

    __slots__ = ("_closed", "_error", "_frames", "_on_close", "_wakeup", "dropped")

    def __init__(self, buffer_size: int, on_close: Callable[[FrameQueue], None]) -> None:
        self._frames: collections.deque[cd.FrameReceived] = collections.deque(
            maxlen=max(1, buffer_size)
        )
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: str | None = None
        self._on_close = on_close
        self.dropped = 0
        """Frames dropped because this reader was ``buffer_size`` frames behind."""

    def put(self, frame: cd.FrameReceived) -> None:
        """Add a frame (dropping the oldest when full)."""
        if self._closed or self._error is not None:
            return
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._wakeup.set()

    def end(self, error: str | None = None) -> None:
        """No more frames will come; ``error`` explains why, if it was not a normal end."""
        if self._error is None:
            self._error = error or ""
        self._wakeup.set()

    @property
    def error(self) -> str | None:
        """Why the queue ended abnormally, or ``None`` (still open, or ended normally)."""
        return self._error or None

    async def get(self) -> cd.FrameReceived | None:
        """The next frame; ``None`` once the queue ended (see :attr:`error`) or was closed."""
        while True:
            if self._frames:
                return self._frames.popleft()
            if self._closed or self._error is not None:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Stop reading: frames held are discarded and the subscription is released."""
        if not self._closed:
            self._closed = True
            self._frames.clear()
            self._wakeup.set()
            self._on_close(self)


class DataTrackDriver:
    """One room's data tracks over its engine.

    Args:
        engine: the room's engine; the driver installs itself as its ``data_track_sink``.
        on_event: receives the machine's remote-track events (published / unpublished) and
            :class:`~lkproto.core.data_track.LocalDataTrackUnpublished`.
        manager: the machine to drive (default: a new one).
    """

    def __init__(
        self,
        engine: Engine,
        on_event: Callable[[cd.AnyDataTrackEvent], None],
        *,
        manager: cd.DataTrackManager | None = None,
    ) -> None:
        self._engine = engine
        self._on_event = on_event
        self._core = manager if manager is not None else cd.DataTrackManager()
        self._loop = asyncio.get_running_loop()
        self._publishing: dict[int, asyncio.Future[pb.DataTrackInfo]] = {}
        self._readers: dict[str, list[FrameQueue]] = {}
        # Ratchet derivations running off the loop, by (identity, key index).
        self._deriving: dict[tuple[str, int], asyncio.Task[None]] = {}
        # Identities whose old session left with DUPLICATE_IDENTITY (full reconnect), seen in
        # the signal's snapshots and handed to the next sync_remotes.
        self._replaced: set[str] = set()
        self._timer = DeadlineTimer(self._loop, self._core.get_timer, self._on_timer)
        self._closed = False
        engine.data_track_sink = self._on_packet

    @property
    def manager(self) -> cd.DataTrackManager:
        """The machine this driver feeds (for counters and tests)."""
        return self._core

    # -- publishing ----------------------------------------------------------------------------

    async def publish(
        self, name: str, *, timeout_s: float = DATA_TRACK_PUBLISH_TIMEOUT_S
    ) -> tuple[int, pb.DataTrackInfo]:
        """Publish a data track and wait for the server to accept it.

        Returns:
            The track's handle and its info (SID).

        Raises:
            LocalProtocolError: an invalid name.
            ConnectError: the room is (or becomes) disconnected.
            RequestRejectedError: the server refused it (``reason`` is the ``RequestResponse``
                reason name: ``DUPLICATE_NAME``, ``NOT_ALLOWED``, ...) or did not answer in time
                (``TIMEOUT``).
        """
        if self._closed:
            raise ConnectError("the room is not connected")
        handle, request = self._core.publish(name)
        future: asyncio.Future[pb.DataTrackInfo] = self._loop.create_future()
        self._publishing[handle] = future
        try:
            self._engine.send_signal(request)
            async with asyncio.timeout(timeout_s):
                return handle, await future
        except TimeoutError:
            raise RequestRejectedError("TIMEOUT", "no answer from the server") from None
        finally:
            self._publishing.pop(handle, None)
            if not future.done() or future.cancelled():
                self._core.abandon(handle)

    def unpublish(self, handle: int) -> None:
        """Stop sending on ``handle`` and ask the server to unpublish it (no-op if unpublished)."""
        request = self._core.unpublish(handle)
        if request is not None and not self._closed:
            self._engine.send_signal(request)

    def is_published(self, handle: int) -> bool:
        """Whether frames may still be pushed on ``handle``."""
        return not self._closed and self._core.is_published(handle)

    def local_sid(self, handle: int) -> str | None:
        """The current SID of our track ``handle`` (a full reconnect gives it a new one)."""
        return self._core.local_sid(handle)

    def push(self, handle: int, payload: bytes, user_timestamp: int | None) -> bool:
        """Send one frame now; returns False when it was dropped (channel full or down).

        Raises:
            LocalProtocolError: ``handle`` is not published, or ``user_timestamp`` is not a u64.
        """
        if self._closed:
            raise LocalProtocolError("the room is not connected")
        packets = self._core.packetize(handle, payload, user_timestamp, self._loop.time())
        return self._engine.send_data_track(packets)

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, sid: str, *, buffer_size: int = DEFAULT_FRAME_BUFFER) -> FrameQueue:
        """Start reading remote track ``sid``; the first reader sends the subscription.

        A track that is gone (or a room that is closed) gives a queue that ends at once with
        an error.
        """
        queue = FrameQueue(buffer_size, self._release)
        info = None if self._closed else self._core.remote_info(sid)
        if info is None:
            queue.end("the data track is not published")
            return queue
        if info.encryption != pb.Encryption.NONE and self._core.cipher is None:
            # Without keys the frames could only be handed out as ciphertext (which the official
            # SDK does); refusing says what is wrong.
            queue.end("the data track is end-to-end encrypted and the room has no E2EE options")
            return queue
        request = self._core.subscribe(sid)
        self._readers.setdefault(sid, []).append(queue)
        if request is not None:
            self._engine.send_signal(request)
        return queue

    def _release(self, queue: FrameQueue) -> None:
        # Looked up, not remembered: a republished track moves its readers to its new SID.
        sid = next((s for s, queues in self._readers.items() if queue in queues), None)
        if sid is None:
            return
        readers = self._readers[sid]
        readers.remove(queue)
        if not readers:
            del self._readers[sid]
        request = self._core.unsubscribe(sid)
        if request is not None and not self._closed:
            self._engine.send_signal(request)

    def set_max_partial_frames(self, sid: str, value: int) -> None:
        """Set the reassembly tolerance of remote track ``sid`` (incomplete frames kept)."""
        self._core.set_max_partial_frames(sid, value)

    def resolve_remote_sid(self, sid: str) -> str:
        """The current SID of the remote track first announced as ``sid``."""
        return self._core.resolve_sid(sid)

    def is_remote_published(self, sid: str) -> bool:
        """Whether remote track ``sid`` is still published."""
        return not self._closed and self._core.is_remote_published(sid)

    # -- inputs from the room ------------------------------------------------------------------

    def on_signal(self, event: sg.SignalEvent) -> None:
        """Take a signal event the engine passed through; the data-track ones matter here."""
        if isinstance(event, sg.MessageReceived) and event.kind in _SIGNAL_KINDS:
            self._apply(self._core.receive_signal(event.message))
        elif isinstance(event, sg.ParticipantsUpdated):
            # The reason only travels in the DISCONNECTED snapshot, which the roster consumes.
            self._replaced.update(
                p.identity
                for p in event.participants
                if p.state == pb.ParticipantInfo.DISCONNECTED
                and p.disconnect_reason == pb.DUPLICATE_IDENTITY
            )
        elif isinstance(event, sg.RequestAnswered):
            self._apply(self._core.receive_request_response(event.message))

    def sync_remotes(self, participants: list[pb.ParticipantInfo]) -> None:
        """Diff the roster's remote participants (after a join or an update)."""
        replaced, self._replaced = self._replaced, set()
        if not self._closed:
            events = self._core.sync_remotes(participants, now=self._loop.time(), replaced=replaced)
            self._apply(events)
            self._timer.rearm()

    def _on_timer(self, now: float) -> None:
        if not self._closed:
            self._apply(self._core.handle_timer(now))
            self._timer.rearm()

    def session_replaced(self) -> None:
        """A full reconnect replaced the session, whose server knew our tracks and
        subscriptions: our tracks are published again (same handles and names; new SIDs when
        accepted) and subscriptions are sent again. Publishes still waiting fail: the old
        session will not answer them (the official SDK fails them as disconnected)."""
        for future in self._publishing.values():
            if not future.done():
                future.set_exception(ConnectError("the session was replaced by a full reconnect"))
        events, requests = self._core.republish_requests()
        self._apply(events)
        for request in requests + self._core.resubscribe_requests():
            self._engine.send_signal(request)

    def close(self) -> None:
        """The room disconnected: pending publishes fail, every reader's queue ends."""
        if self._closed:
            return
        self._closed = True
        self._timer.close()
        if self._engine.data_track_sink == self._on_packet:
            self._engine.data_track_sink = None
        for future in self._publishing.values():
            if not future.done():
                future.set_exception(ConnectError("the room disconnected"))
        self._apply(self._core.reset_session())
        for readers in self._readers.values():
            for queue in readers:
                queue.end("the room disconnected")
        self._readers.clear()

    def _on_packet(self, data: bytes) -> None:
        frame = self._core.receive_packet(data)
        if frame is not None:
            for queue in self._readers.get(frame.track_sid, ()):
                queue.put(frame)
        cipher = self._core.cipher
        if cipher is not None:
            for wanted in cipher.take_derivations():
                if wanted not in self._deriving:
                    self._deriving[wanted] = self._loop.create_task(self._derive(cipher, wanted))

    async def _derive(self, cipher: cd.DataTrackCipher, wanted: tuple[str, int]) -> None:
        # Up to 32 key derivations (about 0.7 s with the official defaults): off the event loop,
        # as lkproto.asyncio.e2ee does for data packets. Frames arriving meanwhile are dropped.
        try:
            await self._loop.run_in_executor(None, cipher.derive, *wanted)
        finally:
            self._deriving.pop(wanted, None)

    def _apply(self, events: list[cd.AnyDataTrackEvent]) -> None:
        for event in events:
            match event:
                case cd.PublishAccepted(handle=handle, info=info):
                    future = self._publishing.get(handle)
                    if future is not None and not future.done():
                        future.set_result(info)
                    elif future is None:
                        # Answered after we gave up waiting: take it back at once.
                        self.unpublish(handle)
                case cd.PublishRefused(handle=handle, reason=reason, message=message):
                    future = self._publishing.get(handle)
                    if future is not None and not future.done():
                        future.set_exception(RequestRejectedError(reason, message))
                case cd.RemoteDataTrackUnpublished(sid=sid):
                    for queue in self._readers.pop(sid, ()):
                        queue.end()
                    self._on_event(event)
                case cd.RemoteDataTrackRepublished(previous_sid=previous, info=info):
                    # Same streams, new SID: route its frames to them and subscribe again.
                    moved = self._readers.pop(previous, None)
                    if moved is not None:
                        self._readers[info.sid] = moved
                    request = self._core.resubscribe_request(info.sid)
                    if request is not None and not self._closed:
                        self._engine.send_signal(request)
                    self._on_event(event)
                case (
                    cd.LocalDataTrackUnpublished()
                    | cd.LocalDataTrackRepublished()
                    | cd.RemoteDataTrackPublished()
                ):
                    self._on_event(event)
                case cd.FrameReceived():
                    pass  # frames come from receive_packet, never from signalling
                case _:
                    assert_never(event)
