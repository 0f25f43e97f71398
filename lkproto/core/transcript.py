"""Transcript segments from ``lk.transcription`` text streams, as a pure state machine.

Theory of operation
-------------------
PROTOCOL-MAP §8 "Topics and stream attributes". An agent publishes transcripts as text streams on
``lk.transcription``: agent speech under its own identity, user speech under the user's identity.
A *segment* (one utterance) may be sent as several streams sharing ``lk.segment_id``: the Python
framework sends each interim result as its own stream and a last one with
``lk.transcription_final = "true"`` (non-delta mode), or streams agent speech as deltas in one
stream and puts ``lk.transcription_final = "true"`` in the trailer (delta mode)
(``AG:livekit-agents/livekit/agents/voice/room_io/_output.py``).

:class:`TranscriptMerger` folds stream openings, text chunks and closings into
:class:`Segment` values the way components-js does (``CJS:packages/core/src/components/
textStream.ts (setupTextStream)``):

1. **Segment key.** A stream's segment is its ``lk.segment_id``; a stream without one (or with an
   empty one, upstream tests it for truthiness) is a segment of its own, whose id is the stream id.
2. **Replace, not append.** Within one stream chunks append. A *newer* stream of the same segment
   replaces the segment's text and attributes with its own (upstream overwrites the entry with the
   new stream's accumulated text and its ``streamInfo``). The segment keeps the identity of its
   first stream and its place in the list.
3. **Adoption.** A stream takes over its segment on its first chunk, or when it closes cleanly
   without any chunk (then with empty text). Until then the segment shows the previous stream's
   text (upstream only touches its list when a chunk arrives).
4. **Newest wins.** The newest stream of a segment is the one *opened* last (arrival order, i.e.
   send order on the reliable channel). Opening it supersedes any older open stream of that
   segment: their later chunks and closings are ignored. (Upstream lets whichever stream delivered
   the last chunk win, so a late interim chunk could overwrite a final text; agents never send
   overlapping streams of a segment, so this only matters for misbehaving senders.)
5. **Closing.** A clean close applies the closing attributes (header overlaid with trailer, as
   :class:`~lkproto.core.streams.StreamClosed` carries them: the delta-mode final flag is in the
   trailer). If the segment is then final, :class:`SegmentFinalized` follows. A failed stream is
   forgotten: the segment keeps the text it had, unfinalized.
6. **Order.** :meth:`TranscriptMerger.segments` lists segments by first adoption (first chunk),
   stable: updates never move a segment. ``useSessionMessages`` likewise orders by the first time
   a message was seen.

Bounds (configuration, as websockets' ``max_size``):

* ``max_segments`` (default 1000): adopting a segment beyond it drops the oldest one
  (:class:`SegmentDropped`); its open stream, if any, is forgotten as well.
* ``max_text_bytes`` (default 64 KiB, UTF-8): a stream's text is cut at the last whole character
  that fits and the rest of the stream is ignored; the segment's ``truncated`` is True. A newer
  stream of the segment starts from zero again.

Events: :class:`SegmentUpdated` whenever a segment's content (text, attributes, identity) changes,
including its creation; :class:`SegmentFinalized` after a clean close leaves the segment final;
:class:`SegmentDropped` for evictions. :meth:`TranscriptMerger.clear` forgets everything silently
(upstream empties its list when the room disconnects).

Deliberate differences from components-js: rule 3's adoption of a chunkless clean stream
(upstream never shows a stream without chunks, so an empty final stream would leave the segment
interim forever); rule 4; rule 5's trailer attributes (upstream reads them only because the
trailer mutates the ``streamInfo`` object it already holds, without notifying); the bounds.
Segment ids and stream ids live in separate namespaces: a segment-less stream whose id equals
another stream's ``lk.segment_id`` does not merge with it (as upstream), so two segments can carry
the same :attr:`Segment.id`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from lkproto.core.agent import ATTR_SEGMENT_ID, ATTR_TRANSCRIBED_TRACK_ID, ATTR_TRANSCRIPTION_FINAL
from lkproto.errors import LocalProtocolError

__all__ = [
    "DEFAULT_MAX_SEGMENTS",
    "DEFAULT_MAX_TEXT_BYTES",
    "AnyTranscriptEvent",
    "Segment",
    "SegmentDropped",
    "SegmentFinalized",
    "SegmentUpdated",
    "TranscriptEvent",
    "TranscriptMerger",
]

# Module docstring, bounds. A long agent monologue is a few KiB; 1000 segments is a long session.
DEFAULT_MAX_SEGMENTS: Final = 1000
DEFAULT_MAX_TEXT_BYTES: Final = 64 * 1024
"""Default ``max_text_bytes``: UTF-8 bytes of text kept per segment (64 KiB)."""

# Internal segment key: ("segment", lk.segment_id) or ("stream", stream id) (rule 1).
_Key: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One transcript segment: the current text of its newest stream.

    Attributes:
        id: ``lk.segment_id``, or the stream id for a stream without one.
        participant_identity: the transcribed participant (header identity of the segment's first
            stream): the user for user speech, the agent for agent speech.
        text: the newest adopted stream's text so far.
        final: ``lk.transcription_final == "true"`` in the latest attributes.
        track_id: ``lk.transcribed_track_id`` in the latest attributes; None when absent or
            empty (text-only agent replies).
        first_received_ms: ``now`` (in ms, caller's clock) when the segment was first adopted.
        last_received_ms: ``now`` (in ms) of the latest content change.
        stream_id: the newest adopted stream (components-js uses it as the message id).
        timestamp_ms: that stream's header timestamp (sender's clock, ms since the epoch).
        attributes: that stream's latest attributes (read-only by convention).
        truncated: that stream's text was cut at ``max_text_bytes``.
    """

    id: str
    participant_identity: str
    text: str
    final: bool
    track_id: str | None
    first_received_ms: float
    last_received_ms: float
    stream_id: str
    timestamp_ms: int
    attributes: dict[str, str] = field(default_factory=dict)
    truncated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptEvent:
    """Base class of every event :class:`TranscriptMerger` emits.

    Attributes:
        segment: the segment as it is after the change.
    """

    segment: Segment


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentUpdated(TranscriptEvent):
    """A segment was created or its text/attributes changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentFinalized(TranscriptEvent):
    """A stream of the segment closed cleanly and the segment is final (rule 5)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentDropped(TranscriptEvent):
    """The oldest segment was evicted to respect ``max_segments``."""


AnyTranscriptEvent: TypeAlias = SegmentUpdated | SegmentFinalized | SegmentDropped
"""Every concrete transcript event, for exhaustive ``match`` with ``assert_never``."""


@dataclass(slots=True)
class _Stream:
    key: _Key
    segment_id: str
    identity: str
    attributes: dict[str, str]
    timestamp_ms: int
    parts: list[str] = field(default_factory=list)
    size: int = 0
    truncated: bool = False


def _utf8_size(text: str) -> int:
    # surrogatepass: a lone surrogate (never produced by the stream layer) must not raise here.
    return len(text.encode("utf-8", "surrogatepass"))


def _cut_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    # Only the last character can be split; "ignore" drops its leading bytes.
    return data[:max_bytes].decode("utf-8", "ignore")


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LocalProtocolError(f"{name} must be a positive int, got {value!r}")
    return value


class TranscriptMerger:
    """Merges ``lk.transcription`` text streams into ordered :class:`Segment` values.

    See the module docstring for the rules. Inputs: :meth:`stream_opened`,
    :meth:`text_received`, :meth:`stream_closed`, :meth:`clear`. Outputs: :meth:`segments`,
    :meth:`next_event`.

    Args:
        max_segments: segments kept; the oldest is dropped beyond it.
        max_text_bytes: UTF-8 bytes of text kept per segment; the rest is ignored.

    Raises:
        LocalProtocolError: a limit is not a positive int.
    """

    def __init__(
        self,
        *,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    ) -> None:
        self._max_segments = _positive_int("max_segments", max_segments)
        self._max_text_bytes = _positive_int("max_text_bytes", max_text_bytes)
        self._segments: dict[_Key, Segment] = {}
        self._streams: dict[str, _Stream] = {}  # open, not superseded
        self._newest: dict[_Key, str] = {}  # key -> its open newest stream id
        self._events: deque[AnyTranscriptEvent] = deque()

    # ---------------------------------------------------------------- state (read-only)

    def segments(self) -> list[Segment]:
        """All kept segments, by first adoption (module docstring, rule 6)."""
        return list(self._segments.values())

    @property
    def open_stream_ids(self) -> frozenset[str]:
        """Streams still being followed (open and not superseded)."""
        return frozenset(self._streams)

    # ---------------------------------------------------------------- inputs

    def stream_opened(
        self,
        stream_id: str,
        participant_identity: str,
        attributes: Mapping[str, str],
        timestamp_ms: int,
        now: float,
    ) -> None:
        """A ``lk.transcription`` text stream started.

        Args:
            stream_id: its id.
            participant_identity: the header's sender identity (the transcribed participant).
            attributes: the header's attributes.
            timestamp_ms: the header's timestamp.
            now: the current time in seconds (unused until the stream adopts its segment).

        Raises:
            LocalProtocolError: ``stream_id`` is already open.
        """
        del now
        if stream_id in self._streams:
            raise LocalProtocolError(f"stream {stream_id!r} is already open")
        segment_id = attributes.get(ATTR_SEGMENT_ID, "")
        key: _Key = ("segment", segment_id) if segment_id else ("stream", stream_id)
        # Rule 4: the newest stream of a segment supersedes the older open one.
        older = self._newest.get(key)
        if older is not None:
            del self._streams[older]
        self._newest[key] = stream_id
        self._streams[stream_id] = _Stream(
            key=key,
            segment_id=segment_id or stream_id,
            identity=participant_identity,
            attributes=dict(attributes),
            timestamp_ms=timestamp_ms,
        )

    def text_received(self, stream_id: str, text: str, now: float) -> None:
        """A chunk of text of an open stream (unknown or superseded streams are ignored)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.truncated:
            return
        size = _utf8_size(text)
        room = self._max_text_bytes - stream.size
        if size > room:
            text = _cut_utf8(text, room)
            size = _utf8_size(text)
            stream.truncated = True
        stream.parts.append(text)
        stream.size += size
        self._publish(stream_id, stream, now)

    def stream_closed(
        self,
        stream_id: str,
        error: str | None,
        now: float,
        *,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """An open stream ended (unknown or superseded streams are ignored).

        Args:
            stream_id: its id.
            error: None for a clean end, else why it failed (rule 5: the segment keeps its text).
            now: the current time in seconds.
            attributes: clean end only: the final attributes, the header's overlaid with the
                trailer's (:attr:`StreamClosed.attributes <lkproto.core.streams.StreamClosed>`);
                None keeps the header's.
        """
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        del self._newest[stream.key]
        if error is not None:
            return
        if attributes is not None:
            stream.attributes = dict(attributes)
        segment = self._publish(stream_id, stream, now)
        if segment.final:
            self._events.append(SegmentFinalized(segment=segment))

    def clear(self) -> None:
        """Forget every segment and stream, without events (the room disconnected)."""
        self._segments.clear()
        self._streams.clear()
        self._newest.clear()

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyTranscriptEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- internals

    def _publish(self, stream_id: str, stream: _Stream, now: float) -> Segment:
        """Adopt or refresh the stream's segment (rules 2, 3); the segment as it now is."""
        now_ms = now * 1000.0
        held = self._segments.get(stream.key)
        if held is None:
            if len(self._segments) >= self._max_segments:
                self._drop_oldest()
            first_ms, identity = now_ms, stream.identity
        else:
            first_ms, identity = held.first_received_ms, held.participant_identity
        attributes = stream.attributes
        segment = Segment(
            id=stream.segment_id,
            participant_identity=identity,
            text="".join(stream.parts),
            final=attributes.get(ATTR_TRANSCRIPTION_FINAL, "").lower() == "true",
            track_id=attributes.get(ATTR_TRANSCRIBED_TRACK_ID) or None,
            first_received_ms=first_ms,
            last_received_ms=now_ms,
            stream_id=stream_id,
            timestamp_ms=stream.timestamp_ms,
            attributes=dict(attributes),
            truncated=stream.truncated,
        )
        if held is not None and _same_content(held, segment):
            return held
        self._segments[stream.key] = segment
        self._events.append(SegmentUpdated(segment=segment))
        return segment

    def _drop_oldest(self) -> None:
        key = next(iter(self._segments))
        segment = self._segments.pop(key)
        open_id = self._newest.pop(key, None)
        if open_id is not None:
            del self._streams[open_id]
        self._events.append(SegmentDropped(segment=segment))


def _same_content(a: Segment, b: Segment) -> bool:
    return (
        a.text == b.text
        and a.attributes == b.attributes
        and a.stream_id == b.stream_id
        and a.timestamp_ms == b.timestamp_ms
        and a.truncated == b.truncated
    )
