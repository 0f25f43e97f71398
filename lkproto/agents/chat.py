"""Chat with an agent over ``lk.chat`` text streams, and the text-stream fan-out the package shares.

PROTOCOL-MAP §8 "Topics and stream attributes": typed user input to agents, and chat, travel as
text streams on ``lk.chat`` (``AG:livekit-agents/livekit/agents/types.py (TOPIC_CHAT)``; the
framework's ``RoomIO._on_chat_text_stream`` reads each stream whole and takes the sender identity
from the stream). A :class:`ChatMessage` is one such stream: its id is the stream id, its time the
header timestamp, as components-js shows it. :class:`ChatMessage` is ``lkproto.rtc.ChatMessage``
(one type for chat packets and chat streams), re-exported here.

A room takes one text handler per topic (registering a second raises ``ValueError``, PROTOCOL-MAP
§5 Receiver rules), but an :class:`~lkproto.agents.AgentSession`, :func:`on_chat` and an
application may all want ``lk.chat`` or ``lk.transcription`` on the same room. :func:`listen_text`
therefore registers one handler per (room, topic) and fans every stream out, chunk by chunk, to
any number of listeners; the handler is unregistered when the last listener leaves. A topic that
already has a foreign handler cannot be shared: :func:`listen_text` raises the room's
``ValueError``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Protocol

from lkproto.core.agent import TOPIC_CHAT
from lkproto.rtc.data_stream import StreamError, TextStreamInfo, TextStreamReader
from lkproto.rtc.room import ChatMessage, Room

__all__ = ["ChatMessage", "TextListener", "listen_text", "on_chat", "send_chat"]

_log = logging.getLogger("lkproto.agents")


class TextListener(Protocol):
    """What :func:`listen_text` calls for each stream on its topic, in order."""

    def stream_opened(self, info: TextStreamInfo, sender_identity: str) -> None:
        """A stream started (header attributes in ``info.attributes``)."""

    def stream_text(self, stream_id: str, text: str) -> None:
        """A chunk of text (whole characters) of an opened stream."""

    def stream_closed(
        self, stream_id: str, error: StreamError | None, attributes: dict[str, str]
    ) -> None:
        """The stream ended: ``error`` None for a clean end; ``attributes`` are the header's
        overlaid with the trailer's."""


class _TopicFanout:
    """The one handler of a (room, topic): reads each stream and feeds every listener."""

    def __init__(self, room: Room, topic: str) -> None:
        self._room = room
        self._topic = topic
        self.listeners: list[TextListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        room.register_text_stream_handler(topic, self._on_stream)

    def close(self) -> None:
        self._room.unregister_text_stream_handler(self._topic)
        for task in self._tasks:
            task.cancel()

    def _on_stream(self, reader: TextStreamReader, sender_identity: str) -> None:
        listeners = list(self.listeners)
        for listener in listeners:
            _call(listener.stream_opened, reader.info, sender_identity)
        task = asyncio.ensure_future(self._read(reader, listeners))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: TextStreamReader, listeners: list[TextListener]) -> None:
        stream_id = reader.info.stream_id
        error: StreamError | None = None
        try:
            async for chunk in reader:
                for listener in listeners:
                    _call(listener.stream_text, stream_id, chunk)
        except StreamError as exc:
            error = exc
        except asyncio.CancelledError:
            reader.close()
            detached = StreamError("listener detached", stream_id=stream_id)
            for listener in listeners:
                _call(listener.stream_closed, stream_id, detached, {})
            raise
        attributes = dict(reader.info.attributes or {})
        for listener in listeners:
            _call(listener.stream_closed, stream_id, error, attributes)


def _call(fn: Callable[..., object], *args: object) -> None:
    # A failing listener must not starve the others (the rtc EventEmitter rule).
    try:
        fn(*args)
    except Exception:
        _log.exception("text stream listener %r failed", fn)


_fanouts: weakref.WeakKeyDictionary[Room, dict[str, _TopicFanout]] = weakref.WeakKeyDictionary()


def listen_text(room: Room, topic: str, listener: TextListener) -> Callable[[], None]:
    """Feed ``listener`` every text stream on ``topic``, sharing the room's handler.

    Returns:
        A function that detaches the listener (idempotent); the room's handler is removed with
        the last listener.

    Raises:
        ValueError: ``topic`` already has a handler not registered through this function, or
            is reserved for RPC.
    """
    per_room = _fanouts.setdefault(room, {})
    fanout = per_room.get(topic)
    if fanout is None:
        fanout = per_room[topic] = _TopicFanout(room, topic)
    fanout.listeners.append(listener)

    def detach() -> None:
        if listener not in fanout.listeners:
            return
        fanout.listeners.remove(listener)
        if not fanout.listeners and per_room.get(topic) is fanout:
            del per_room[topic]
            fanout.close()

    return detach


class _ChatCollector:
    """Accumulates whole ``lk.chat`` streams into :class:`ChatMessage` values."""

    def __init__(self, handler: Callable[[ChatMessage], object]) -> None:
        self._handler = handler
        self._open: dict[str, tuple[TextStreamInfo, str, list[str]]] = {}

    def stream_opened(self, info: TextStreamInfo, sender_identity: str) -> None:
        self._open[info.stream_id] = (info, sender_identity, [])

    def stream_text(self, stream_id: str, text: str) -> None:
        entry = self._open.get(stream_id)
        if entry is not None:
            entry[2].append(text)

    def stream_closed(
        self, stream_id: str, error: StreamError | None, attributes: dict[str, str]
    ) -> None:
        entry = self._open.pop(stream_id, None)
        if entry is None:
            return
        info, sender, parts = entry
        if error is not None:
            _log.debug("< chat stream %s from %s failed: %s", stream_id, sender, error)
            return
        self._handler(
            ChatMessage(
                id=stream_id,
                message="".join(parts),
                sender_identity=sender,
                timestamp=info.timestamp,
            )
        )


def on_chat(room: Room, handler: Callable[[ChatMessage], object]) -> Callable[[], None]:
    """Call ``handler(message)`` for every complete ``lk.chat`` stream received.

    Failed streams (sender aborted or left) are dropped. The handler runs synchronously; start a
    task for async work.

    Returns:
        A function that stops the delivery.

    Raises:
        ValueError: ``lk.chat`` already has a handler registered directly on the room.
    """
    return listen_text(room, TOPIC_CHAT, _ChatCollector(handler))


async def send_chat(
    room: Room, text: str, *, destination_identities: list[str] | None = None
) -> ChatMessage:
    """Send ``text`` as one ``lk.chat`` text stream.

    Args:
        room: a connected room.
        text: the message.
        destination_identities: recipients; None or empty for everyone.

    Returns:
        The message as receivers will see it.

    Raises:
        lkproto.rtc.StreamError: not connected, or sending failed.
    """
    info = await room.local_participant.send_text(
        text, topic=TOPIC_CHAT, destination_identities=destination_identities
    )
    return ChatMessage(
        id=info.stream_id,
        message=text,
        sender_identity=room.local_participant.identity,
        timestamp=info.timestamp,
    )
