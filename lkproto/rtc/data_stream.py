"""Data streams, shaped like ``livekit.rtc.data_stream``: readers, writers and their infos.

Receiving: ``room.register_text_stream_handler(topic, handler)`` (or the byte variant); the
handler is called synchronously with a reader and the sender's identity and usually starts a
task: ``asyncio.create_task(reader.read_all())``. Readers queue at most
:data:`~lkproto.asyncio.streams.DEFAULT_MAX_BUFFERED_BYTES` of unread data per stream; a reader
that falls further behind gets :class:`StreamError` (see :mod:`lkproto.asyncio.streams`).

Sending: ``local_participant.send_text`` / ``send_bytes`` / ``send_file`` (one shot) or
``stream_text`` / ``stream_bytes`` (writers, also usable as ``async with``).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

from lkproto.asyncio.streams import IncomingStream, StreamSender, StreamSendError
from lkproto.core import streams as core
from lkproto.errors import StreamClosedError

__all__ = [
    "STREAM_CHUNK_SIZE",
    "BaseStreamInfo",
    "ByteStreamHandler",
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "StreamError",
    "TextStreamHandler",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
]

STREAM_CHUNK_SIZE = 15_000
"""The official SDK's constant (PROTOCOL-MAP §5 Sender rules)."""


class StreamError(core.StreamError, ConnectionError):
    """A stream failed: an incoming one ended abnormally, or an outgoing one could not be sent.

    Like the official ``StreamError`` it is a ``ConnectionError`` with a ``description``; it is
    also a :class:`lkproto.core.streams.StreamError` with a ``kind``.
    """

    def __init__(
        self,
        description: str,
        *,
        kind: core.StreamErrorKind = core.StreamErrorKind.ABNORMAL_END,
        stream_id: str = "",
    ) -> None:
        super().__init__(kind, stream_id, "")
        self.args = (description,)
        self.description = description

    def __str__(self) -> str:
        return self.description

    @classmethod
    def _from_core(cls, error: core.StreamError) -> StreamError:
        out = cls(str(error), kind=error.kind, stream_id=error.stream_id)
        out.detail = error.detail
        return out


@dataclass
class BaseStreamInfo:
    """Official shape. ``timestamp`` is in ms since the epoch; ``size`` is the announced total
    length in bytes (0 when not announced, as the official reader reports it)."""

    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    size: int | None
    attributes: dict[str, str] | None


@dataclass
class TextStreamInfo(BaseStreamInfo):
    """Official shape: the header of an incoming or outgoing text stream.

    ``attachments`` are the stream ids of byte streams sent along with this text
    (``TextHeader.attached_stream_ids``, PROTOCOL-MAP §5).
    """

    attachments: list[str]
    generated: bool = False
    """lkproto extra: the header's ``generated`` flag, set by the server on text an agent
    published on another participant's behalf (a user transcript, PROTOCOL-MAP §8)."""


@dataclass
class ByteStreamInfo(BaseStreamInfo):
    """Official shape: the header of an incoming or outgoing byte stream.

    ``name`` is the sender's name for the content, usually a file name
    (``ByteHeader.name``; ``"unknown"`` when the sender gave none).
    """

    name: str


def _text_info(info: core.StreamInfo) -> TextStreamInfo:
    return TextStreamInfo(
        stream_id=info.stream_id,
        mime_type=info.mime_type,
        topic=info.topic,
        timestamp=info.timestamp_ms,
        size=info.total_length if info.total_length is not None else 0,
        attributes=dict(info.attributes),
        attachments=list(info.attached_stream_ids),
        generated=info.generated,
    )


def _byte_info(info: core.StreamInfo) -> ByteStreamInfo:
    return ByteStreamInfo(
        stream_id=info.stream_id,
        mime_type=info.mime_type,
        topic=info.topic,
        timestamp=info.timestamp_ms,
        size=info.total_length if info.total_length is not None else 0,
        attributes=dict(info.attributes),
        name=info.name,
    )


_I = TypeVar("_I", TextStreamInfo, ByteStreamInfo)
_T = TypeVar("_T", str, bytes)


class _Reader(Generic[_I, _T]):
    def __init__(self, stream: IncomingStream, info: _I) -> None:
        self._stream = stream
        self._info: _I = info
        self._done = False

    @property
    def info(self) -> _I:
        return self._info

    @property
    def sender_identity(self) -> str:
        """lkproto extra: the header packet's ``participant_identity``."""
        return self._stream.info.sender_identity

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._stream.read()
        except core.StreamError as exc:
            self._done = True
            raise StreamError._from_core(exc) from exc
        if data is None:
            self._done = True
            if self._info.attributes is None:
                self._info.attributes = {}
            self._info.attributes.update(self._stream.attributes)
            raise StopAsyncIteration
        return self._convert(data)

    def _convert(self, data: bytes) -> _T:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading: the rest of the stream is dropped."""
        if not self._done:
            self._done = True
            self._stream.cancel()

    async def aclose(self) -> None:
        self.close()


class TextStreamReader(_Reader[TextStreamInfo, str]):
    """An incoming text stream: ``async for chunk in reader`` (str) or ``await read_all()``.

    Raises :class:`StreamError` instead of ending normally when the stream fails (the sender
    aborted or left, part of it was lost in a full reconnect (``kind`` ``RECONNECTED``), the
    room disconnected, the reader fell too far behind).
    """

    def __init__(self, stream: IncomingStream) -> None:
        super().__init__(stream, _text_info(stream.info))

    def _convert(self, data: bytes) -> str:
        # The receiver hands out whole characters (invalid UTF-8 already replaced).
        return data.decode("utf-8", errors="replace")

    async def read_all(self) -> str:
        """Wait for the end of the stream and return its whole text.

        Raises:
            StreamError: the stream did not end normally (its ``kind`` says how: aborted by
                the sender, incomplete, lost in a full reconnect, over a receiver limit...).
        """
        parts = [chunk async for chunk in self]
        return "".join(parts)


class ByteStreamReader(_Reader[ByteStreamInfo, bytes]):
    """An incoming byte stream: ``async for chunk in reader`` (bytes) or ``await read_all()``."""

    def __init__(self, stream: IncomingStream) -> None:
        super().__init__(stream, _byte_info(stream.info))

    def _convert(self, data: bytes) -> bytes:
        return data

    async def read_all(self) -> bytes:
        """lkproto extra (the official byte reader has only iteration)."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)


class _Writer(Generic[_I, _T]):
    def __init__(self, sender: StreamSender, info: _I) -> None:
        self._sender = sender
        self._info: _I = info
        self._closed = False

    @property
    def info(self) -> _I:
        return self._info

    @property
    def bytes_sent(self) -> int:
        """lkproto extra: payload bytes written so far (before compression)."""
        return self._sender.stream.bytes_sent

    @property
    def total(self) -> int | None:
        """lkproto extra: the announced total size in bytes, if any."""
        return self._sender.stream.total_length

    @property
    def progress(self) -> float | None:
        """lkproto extra: ``bytes_sent / total`` (None without a total)."""
        return self._sender.stream.progress

    async def write(self, data: _T) -> None:
        """Send ``data`` (split into chunks of at most 15 000 bytes).

        Raises:
            lkproto.errors.StreamClosedError: the writer was closed (a ``RuntimeError`` too).
            LocalProtocolError: more bytes than the announced total.
            StreamError: sending failed (not connected, packet refused).
        """
        if self._closed:
            raise StreamClosedError("Cannot write after stream is closed")
        try:
            await self._sender.write(data)
        except StreamSendError as exc:
            raise StreamError(str(exc), stream_id=self._info.stream_id) from exc

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        """End the stream; a non-empty ``reason`` tells receivers it was aborted.

        Raises:
            lkproto.errors.StreamClosedError: already closed (a ``RuntimeError`` too).
            LocalProtocolError: fewer bytes than the announced total, or bad attributes.
            StreamError: sending failed.
        """
        if self._closed:
            raise StreamClosedError("Stream already closed")
        self._closed = True
        try:
            await self._sender.close(reason, attributes)
        except StreamSendError as exc:
            raise StreamError(str(exc), stream_id=self._info.stream_id) from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        if exc is None:
            await self.aclose()
            return
        # Aborted: receivers fail the stream (AbnormalEnd); never mask the original exception.
        self._closed = True
        reason = f"{type(exc).__name__}: {exc}"[:1000] or "aborted"
        await asyncio.shield(self._sender.abort(reason))


class TextStreamWriter(_Writer[TextStreamInfo, str]):
    """An outgoing text stream from ``stream_text``: ``await write(text)``, ``await aclose()``."""

    async def write(self, text: str) -> None:
        """Send ``text``; the parameter is called ``text`` as in the official writer, so
        ``write(text=...)`` works. Same behaviour and errors as the byte writer's ``write``."""
        await super().write(text)


class ByteStreamWriter(_Writer[ByteStreamInfo, bytes]):
    """An outgoing byte stream from ``stream_bytes``: ``await write(data)``, ``await aclose()``."""


def _now_ms() -> int:
    return int(datetime.datetime.now(tz=datetime.UTC).timestamp() * 1000)


TextStreamHandler = Callable[[TextStreamReader, str], None]
"""Official shape: called with ``(reader, sender_identity)`` for each incoming text stream on a
registered topic (:meth:`~lkproto.rtc.Room.register_text_stream_handler`)."""
ByteStreamHandler = Callable[[ByteStreamReader, str], None]
"""Official shape: called with ``(reader, sender_identity)`` for each incoming byte stream on a
registered topic (:meth:`~lkproto.rtc.Room.register_byte_stream_handler`)."""
