"""Drives :mod:`lkproto.core.streams`: feeds the receiver, arms its timer, queues data for readers,
and sends the packets of outgoing streams with the engine's ``send_data``.

Receiving
---------
:class:`StreamDriver` owns one :class:`~lkproto.core.streams.StreamReceiver` per room. The room
hands it every ``stream_header`` / ``stream_chunk`` / ``stream_trailer`` packet
(:meth:`StreamDriver.receive`), departures (:meth:`StreamDriver.participant_left`, with the
departed session's disconnect reason), its own recoveries (:meth:`StreamDriver.reconnecting`,
:meth:`StreamDriver.reconnected`) and the end of the room (:meth:`StreamDriver.close`). Streams
that straddle a full reconnect are proven whole or fail with ``RECONNECTED``
(:mod:`lkproto.core.streams`, "Full reconnect"). For every stream the room has a handler for,
the driver creates an :class:`IncomingStream` and passes it to ``on_opened``; the stream's data
is queued in it until the application reads it.

**Memory bound instead of back-pressure.** All streams share the one ordered ``_reliable``
channel, so a slow reader cannot slow its sender without stalling every other stream and every
other packet of the room. Instead each :class:`IncomingStream` queues at most
``max_buffered_bytes`` (default :data:`DEFAULT_MAX_BUFFERED_BYTES`) of unread data: a chunk that
would take it over the cap fails *that* stream with :class:`StreamOverflowError` (the reader
raises it after the data it already queued) and the rest of the stream is dropped. A reader that
keeps up (``async for`` / ``read_all`` running in a task, as the official examples do) never
comes close to the cap; an application that never reads a stream loses that stream, not memory.
A reader that stops reading should call :meth:`IncomingStream.cancel` (the readers' ``close``):
the rest of that stream is then dropped at once.

Sending
-------
:class:`StreamSender` sends the packets of one :class:`~lkproto.core.streams.OutgoingStream` in
order. ``send_data`` waits while the reliable channel is above its high-water mark, so a writer
is paced by the transport and its memory stays bounded by one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, assert_never

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.core import streams as core
from lkproto.errors import ConnectError, LkError, LocalProtocolError
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

__all__ = [
    "DEFAULT_MAX_BUFFERED_BYTES",
    "INTERNAL_TOPICS",
    "IncomingStream",
    "StreamDriver",
    "StreamOverflowError",
    "StreamSendError",
    "StreamSender",
    "recipients_form",
]

_log = logging.getLogger("lkproto.streams")

DEFAULT_MAX_BUFFERED_BYTES: Final = 64 * 1024 * 1024
"""Unread bytes one incoming stream may queue before it is failed (STYLE: limits are config)."""

INTERNAL_TOPICS: Final = frozenset({"lk.rpc_request", "lk.rpc_response"})
"""Topics the SDKs reserve for RPC v2 (PROTOCOL-MAP §6); never handed to applications."""


class StreamOverflowError(core.StreamError):
    """An incoming stream queued more unread data than ``max_buffered_bytes``; it was dropped."""


class StreamSendError(LkError):
    """An outgoing stream could not be sent (not connected, packet refused)."""


def recipients_form(
    remotes: Iterable[pb.ParticipantInfo], destination_identities: Iterable[str]
) -> core.StreamForm:
    """:func:`~lkproto.core.streams.choose_form` for a send: the named destinations, or every
    remote participant when broadcasting. A destination not in the room counts as classic."""
    by_identity = {info.identity: info for info in remotes}
    destinations = list(destination_identities)
    if destinations:
        infos = [by_identity.get(identity) for identity in destinations]
        if any(info is None for info in infos):
            return core.StreamForm(inline_allowed=False, compression_allowed=False)
        chosen = [info for info in infos if info is not None]
    else:
        chosen = list(by_identity.values())
    return core.choose_form((info.client_protocol, list(info.capabilities)) for info in chosen)


# --------------------------------------------------------------------------------------------
# Receiving


class IncomingStream:
    """One incoming stream's data, queued for its reader (see the module docstring).

    Attributes:
        info: what the header said.
        attributes: the header's attributes, overlaid with the trailer's once closed.
    """

    def __init__(self, info: core.StreamInfo, max_buffered_bytes: int) -> None:
        self.info = info
        self.attributes: dict[str, str] = dict(info.attributes)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._max_buffered = max_buffered_bytes
        self._ended = False
        self._cancelled = False
        self._error: core.StreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def buffered_bytes(self) -> int:
        """Unread bytes queued now."""
        return self._buffered

    @property
    def ended(self) -> bool:
        """The stream closed, failed or was cancelled (queued data may remain)."""
        return self._ended

    async def read(self) -> bytes | None:
        """The next data (never empty), or None at the normal end.

        Raises:
            lkproto.core.streams.StreamError: the stream failed (after its queued data).
        """
        while not self._chunks:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return None
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        return data

    def cancel(self) -> None:
        """The reader stops: drop queued data and everything still to come."""
        self._chunks.clear()
        self._buffered = 0
        self._cancelled = True
        self._end(None)

    # -- driver side ---------------------------------------------------------------------

    def _push(self, data: bytes) -> bool:
        """Queue data; False (and the stream failed) when over the memory cap."""
        if self._ended:
            return True
        if self._buffered + len(data) > self._max_buffered:
            self._end(
                StreamOverflowError(
                    core.StreamErrorKind.TOO_LARGE,
                    self.info.stream_id,
                    f"reader fell more than {self._max_buffered} bytes behind; stream dropped",
                )
            )
            return False
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()
        return True

    def _close(self, attributes: dict[str, str]) -> None:
        if not self._ended:
            self.attributes = dict(attributes)
        self._end(None)

    def _end(self, error: core.StreamError | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamDriver:
    """Incoming data streams of one room.

    Args:
        handler_for: ``(topic, is_text) -> bool``: is there a handler? Internal RPC topics are
            refused before it is asked.
        on_opened: called synchronously with each new :class:`IncomingStream`.
        on_internal: called synchronously, instead of ``on_opened``, with each new text stream on
            an internal RPC topic (:data:`INTERNAL_TOPICS`); without it those are dropped.
        max_buffered_bytes: unread bytes one stream may queue (see the module docstring).
        stream_timeout_s, max_open_streams, max_stream_bytes, max_decompressed_bytes,
            reconnect_grace_s: the receive limits of
            :class:`~lkproto.core.streams.StreamReceiver` (same defaults).

    Raises:
        LocalProtocolError: a limit of the wrong type or range.
    """

    def __init__(
        self,
        *,
        handler_for: Callable[[str, bool], bool],
        on_opened: Callable[[IncomingStream], None],
        on_internal: Callable[[IncomingStream], None] | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        stream_timeout_s: float | None = core.DEFAULT_STREAM_TIMEOUT_S,
        max_open_streams: int = core.DEFAULT_MAX_OPEN_STREAMS,
        max_stream_bytes: int = core.DEFAULT_MAX_STREAM_BYTES,
        max_decompressed_bytes: int = core.DEFAULT_MAX_DECOMPRESSED_BYTES,
        reconnect_grace_s: float = core.DEFAULT_RECONNECT_GRACE_S,
    ) -> None:
        if max_buffered_bytes < 1:
            raise LocalProtocolError("max_buffered_bytes must be positive")
        self._loop = asyncio.get_running_loop()
        self._handler_for = handler_for
        self._on_opened = on_opened
        self._on_internal = on_internal
        self._max_buffered = max_buffered_bytes
        self._receiver = core.StreamReceiver(
            handler_for=self._wants,
            stream_timeout_s=stream_timeout_s,
            max_open_streams=max_open_streams,
            max_stream_bytes=max_stream_bytes,
            max_decompressed_bytes=max_decompressed_bytes,
            reconnect_grace_s=reconnect_grace_s,
        )
        self._streams: dict[str, IncomingStream] = {}
        self._timer = DeadlineTimer(self._loop, self._receiver.get_timer, self._on_timer)
        self._closed = False

    @property
    def open_streams(self) -> list[IncomingStream]:
        """Streams still receiving, oldest first."""
        return list(self._streams.values())

    def _wants(self, topic: str, is_text: bool) -> bool:
        if topic in INTERNAL_TOPICS:
            return is_text and self._on_internal is not None
        return self._handler_for(topic, is_text)

    # -- inputs --------------------------------------------------------------------------

    def receive(self, packet: pb.DataPacket, *, encrypted: bool = False) -> None:
        """Feed a ``stream_header`` / ``stream_chunk`` / ``stream_trailer`` packet."""
        if self._closed:
            return
        self._receiver.receive(packet, self._loop.time(), encrypted=encrypted)
        self._pump()

    def participant_left(
        self, identity: str, reason: pb.DisconnectReason.ValueType = pb.UNKNOWN_REASON
    ) -> None:
        """A session of ``identity`` ended: fail the streams it was sending (``SENDER_LEFT``),
        unless ``reason`` is ``DUPLICATE_IDENTITY`` (a full reconnect of the sender: they
        continue or fail with ``RECONNECTED``)."""
        if self._closed:
            return
        self._receiver.participant_left(identity, self._loop.time(), reason=reason)
        self._pump()

    def reconnecting(self) -> None:
        """The room began recovering (``reconnecting``; resume or full reconnect)."""
        if self._closed:
            return
        self._receiver.reconnecting(self._loop.time())
        self._pump()

    def reconnected(self, *, full: bool) -> None:
        """The room recovered (``reconnected``); ``full`` when it was a full reconnect."""
        if self._closed:
            return
        self._receiver.reconnected(self._loop.time(), full=full)
        self._pump()

    def close(self, detail: str = "room disconnected") -> None:
        """Fail every open stream (``ABNORMAL_END``) and stop."""
        if self._closed:
            return
        self._receiver.fail_all(core.StreamErrorKind.ABNORMAL_END, detail)
        self._pump()
        self._closed = True
        for stream in list(self._streams.values()):
            stream._end(core.StreamError(core.StreamErrorKind.ABNORMAL_END, stream.info.stream_id))
        self._streams.clear()
        self._timer.close()

    # -- internals -----------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        if self._closed:
            return
        self._receiver.handle_timer(now)
        self._pump()

    def _pump(self) -> None:
        while (event := self._receiver.next_event()) is not None:
            if isinstance(event, core.StreamOpened):
                stream = IncomingStream(event.info, self._max_buffered)
                self._streams[event.stream_id] = stream
                callback = self._on_opened
                if event.info.topic in INTERNAL_TOPICS and self._on_internal is not None:
                    callback = self._on_internal
                try:
                    callback(stream)
                except Exception:
                    _log.exception("data stream handler raised")
            elif isinstance(event, core.StreamChunkReceived):
                stream_or_none = self._streams.get(event.stream_id)
                if stream_or_none is not None and not stream_or_none._push(event.data):
                    # Over the cap (or cancelled): forget it; later events are dropped.
                    del self._streams[event.stream_id]
                elif stream_or_none is not None and stream_or_none._cancelled:
                    del self._streams[event.stream_id]
            elif isinstance(event, core.StreamClosed):
                done = self._streams.pop(event.stream_id, None)
                if done is not None:
                    done._close(event.attributes)
            elif isinstance(event, core.StreamFailed):
                failed = self._streams.pop(event.stream_id, None)
                if failed is not None:
                    failed._end(event.error)
            else:
                assert_never(event)
        self._timer.rearm()


# --------------------------------------------------------------------------------------------
# Sending


class StreamSender:
    """Sends the packets of one outgoing stream, in order, on ``_reliable``.

    Args:
        engine: the room's engine.
        stream: the stream (new).
        sender_identity: name another participant in every packet (``participant_identity``):
            an agent publishing a user's transcript on the user's behalf; the server keeps it
            only for senders of kind AGENT and marks the header ``generated`` (PROTOCOL-MAP §3
            inbound rules, §8 topics).
    """

    def __init__(
        self, engine: Engine, stream: core.OutgoingStream, *, sender_identity: str = ""
    ) -> None:
        self._engine = engine
        self.stream = stream
        self._lock = asyncio.Lock()
        self._sender_identity = sender_identity

    async def _send(self, packets: Iterable[pb.DataPacket]) -> None:
        for packet in packets:
            if self._sender_identity:
                packet.participant_identity = self._sender_identity
            try:
                await self._engine.send_data(packet, reliable=True)
            except (LocalProtocolError, ConnectError) as exc:
                raise StreamSendError(
                    f"data stream {self.stream.stream_id!r}: cannot send: {exc}"
                ) from exc

    async def send_single(self, payload: bytes | str) -> bool:
        """Data streams v2: send it all in the header if it fits; False otherwise (unchanged)."""
        async with self._lock:
            packet = self.stream.single_packet(payload)
            if packet is None:
                return False
            await self._send([packet])
            return True

    async def send_whole(self, payload: bytes | str, form: core.StreamForm) -> None:
        """Send a payload known in full: the one inline-or-chunked rule (PROTOCOL-MAP §5).

        A single packet (data streams v2) when ``form`` allows it for every recipient and the
        payload fits in the header; otherwise the classic header, chunks and trailer.
        """
        if form.inline_allowed and await self.send_single(payload):
            return
        await self.open()
        await self.write(payload)
        await self.close()

    async def open(self) -> None:
        """Send the header."""
        async with self._lock:
            await self._send([self.stream.open()])

    async def write(self, data: bytes | str) -> None:
        """Send the chunks ``data`` completes (large data is split into 15 000-byte chunks)."""
        async with self._lock:
            await self._send(self.stream.write(data))

    async def close(self, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        """Send the remaining chunks and the trailer."""
        async with self._lock:
            await self._send(self.stream.close(reason, attributes))

    async def abort(self, reason: str) -> None:
        """Best effort: tell receivers the stream ended abnormally (errors are ignored)."""
        if self.stream.closed or not self.stream.opened:
            return
        with contextlib.suppress(StreamSendError, LocalProtocolError):
            await self.close(reason)
