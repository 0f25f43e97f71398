"""TranscriptMerger: lk.transcription streams merged into segments (PROTOCOL-MAP §8).

Time is a plain float passed in; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses

import pytest

from lkproto.core.agent import ATTR_SEGMENT_ID, ATTR_TRANSCRIBED_TRACK_ID, ATTR_TRANSCRIPTION_FINAL
from lkproto.core.transcript import (
    DEFAULT_MAX_SEGMENTS,
    DEFAULT_MAX_TEXT_BYTES,
    AnyTranscriptEvent,
    Segment,
    SegmentDropped,
    SegmentFinalized,
    SegmentUpdated,
    TranscriptMerger,
)
from lkproto.errors import LocalProtocolError

T0 = 100.0
AGENT = "agent-1"
USER = "user-1"
TRACK = "TR_user_mic"


def events(merger: TranscriptMerger) -> list[AnyTranscriptEvent]:
    out: list[AnyTranscriptEvent] = []
    while (event := merger.next_event()) is not None:
        out.append(event)
    return out


def attrs(
    segment: str | None = None, final: str | None = None, track: str | None = None
) -> dict[str, str]:
    out: dict[str, str] = {}
    if segment is not None:
        out[ATTR_SEGMENT_ID] = segment
    if final is not None:
        out[ATTR_TRANSCRIPTION_FINAL] = final
    if track is not None:
        out[ATTR_TRANSCRIBED_TRACK_ID] = track
    return out


def send(
    merger: TranscriptMerger,
    stream_id: str,
    identity: str,
    attributes: dict[str, str],
    *chunks: str,
    now: float = T0,
    close: bool = True,
) -> None:
    """One whole stream at ``now`` (the non-delta mode of the agents framework)."""
    merger.stream_opened(stream_id, identity, attributes, 1_700_000_000_000, now)
    for chunk in chunks:
        merger.text_received(stream_id, chunk, now)
    if close:
        merger.stream_closed(stream_id, None, now)


def texts(merger: TranscriptMerger) -> list[tuple[str, str]]:
    return [(s.id, s.text) for s in merger.segments()]


def test_defaults_and_validation() -> None:
    assert DEFAULT_MAX_SEGMENTS == 1000
    assert DEFAULT_MAX_TEXT_BYTES == 64 * 1024
    for bad in (0, -1, True, 1.5):
        with pytest.raises(LocalProtocolError):
            TranscriptMerger(max_segments=bad)  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            TranscriptMerger(max_text_bytes=bad)  # type: ignore[arg-type]


def test_events_are_frozen_and_slotted() -> None:
    segment = Segment(
        id="s",
        participant_identity=USER,
        text="",
        final=False,
        track_id=None,
        first_received_ms=0,
        last_received_ms=0,
        stream_id="x",
        timestamp_ms=0,
    )
    event = SegmentUpdated(segment=segment)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.segment = segment  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


# --------------------------------------------------------------------------------------------
# One stream


def test_chunks_of_one_stream_append() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("st1", AGENT, {}, 1234, T0)
    assert merger.segments() == []  # nothing shown before the first chunk (upstream)
    merger.text_received("st1", "Hello", T0 + 0.1)
    merger.text_received("st1", ", world", T0 + 0.2)
    merger.stream_closed("st1", None, T0 + 0.3)
    [segment] = merger.segments()
    assert segment.id == "st1"  # no lk.segment_id: the stream id
    assert segment.text == "Hello, world"
    assert segment.participant_identity == AGENT
    assert segment.final is False
    assert segment.track_id is None
    assert segment.timestamp_ms == 1234
    assert segment.first_received_ms == pytest.approx((T0 + 0.1) * 1000)
    assert segment.last_received_ms == pytest.approx((T0 + 0.2) * 1000)
    assert [type(e) for e in events(merger)] == [SegmentUpdated, SegmentUpdated]
    assert merger.open_stream_ids == frozenset()


def test_delta_stream_finalized_by_trailer_attributes() -> None:
    # AG _output.py delta mode: one stream, final flag in the trailer.
    merger = TranscriptMerger()
    header = attrs("SG_1", "false", TRACK)
    merger.stream_opened("st1", AGENT, header, 0, T0)
    merger.text_received("st1", "Hi ", T0)
    merger.text_received("st1", "there", T0)
    events(merger)
    merger.stream_closed(
        "st1", None, T0 + 1, attributes={**header, ATTR_TRANSCRIPTION_FINAL: "true"}
    )
    [updated, finalized] = events(merger)
    assert isinstance(updated, SegmentUpdated)
    assert isinstance(finalized, SegmentFinalized)
    assert finalized.segment == updated.segment
    assert finalized.segment.text == "Hi there"
    assert finalized.segment.final is True
    assert finalized.segment.track_id == TRACK


def test_final_header_and_clean_close_finalizes_without_update() -> None:
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_1", "true"), "done")
    assert [type(e) for e in events(merger)] == [SegmentUpdated, SegmentFinalized]


@pytest.mark.parametrize(
    ("value", "final"), [("true", True), ("TRUE", True), ("false", False), ("1", False)]
)
def test_final_flag_parsing(value: str, final: bool) -> None:
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_1", value), "x")
    assert merger.segments()[0].final is final


def test_failed_stream_keeps_text_unfinalized() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("st1", AGENT, attrs("SG_1", "true"), 0, T0)
    merger.text_received("st1", "partial", T0)
    events(merger)
    merger.stream_closed("st1", "abnormal end", T0 + 1)
    assert events(merger) == []
    assert texts(merger) == [("SG_1", "partial")]
    merger.text_received("st1", "more", T0 + 2)  # forgotten
    assert texts(merger) == [("SG_1", "partial")]


def test_chunkless_streams() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("st1", AGENT, attrs("SG_1"), 0, T0)
    merger.stream_closed("st1", "lost", T0)
    assert merger.segments() == []
    merger.stream_opened("st2", AGENT, attrs("SG_2", "true"), 0, T0)
    merger.stream_closed("st2", None, T0)
    # A clean chunkless stream is adopted (documented difference from components-js).
    assert texts(merger) == [("SG_2", "")]
    assert [type(e) for e in events(merger)] == [SegmentUpdated, SegmentFinalized]


def test_empty_chunk_on_adopted_stream_is_no_change() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("st1", AGENT, {}, 0, T0)
    merger.text_received("st1", "a", T0)
    events(merger)
    merger.text_received("st1", "", T0 + 5)
    assert events(merger) == []
    assert merger.segments()[0].last_received_ms == T0 * 1000


def test_unknown_streams_are_ignored() -> None:
    merger = TranscriptMerger()
    merger.text_received("nope", "x", T0)
    merger.stream_closed("nope", None, T0)
    assert merger.segments() == []
    assert events(merger) == []


def test_duplicate_open_is_misuse_but_reuse_after_close_is_fine() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("st1", AGENT, {}, 0, T0)
    with pytest.raises(LocalProtocolError):
        merger.stream_opened("st1", AGENT, {}, 0, T0)
    merger.stream_closed("st1", None, T0)
    merger.stream_opened("st1", AGENT, {}, 0, T0)


# --------------------------------------------------------------------------------------------
# Several streams per segment


def test_interim_to_final_replaces_by_segment_id() -> None:
    # AG _output.py non-delta mode: one stream per interim result, then a final one.
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_u", "false", TRACK), "hel", now=T0)
    send(merger, "st2", USER, attrs("SG_u", "false", TRACK), "hello wor", now=T0 + 1)
    send(merger, "st3", USER, attrs("SG_u", "true", TRACK), "Hello world.", now=T0 + 2)
    [segment] = merger.segments()
    assert segment.id == "SG_u"
    assert segment.text == "Hello world."  # replaced, not appended
    assert segment.final is True
    assert segment.stream_id == "st3"
    assert segment.first_received_ms == T0 * 1000
    assert segment.last_received_ms == (T0 + 2) * 1000
    got = events(merger)
    assert [type(e) for e in got] == [SegmentUpdated] * 3 + [SegmentFinalized]
    assert [e.segment.text for e in got] == ["hel", "hello wor", "Hello world.", "Hello world."]


def test_latest_attributes_win_identity_stays_first() -> None:
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_1", "false", "TR_a") | {"x": "1"}, "a")
    send(merger, "st2", "someone-else", attrs("SG_1", "false") | {"y": "2"}, "b")
    [segment] = merger.segments()
    assert segment.track_id is None  # st2 has none
    assert segment.attributes == attrs("SG_1", "false") | {"y": "2"}
    assert segment.participant_identity == USER  # components-js keeps the first participantInfo


def test_empty_track_id_is_none() -> None:
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_1", track=""), "a")
    assert merger.segments()[0].track_id is None


def test_newer_stream_shows_after_its_first_chunk_and_supersedes_older() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("old", USER, attrs("SG_1"), 0, T0)
    merger.text_received("old", "interim", T0)
    merger.stream_opened("new", USER, attrs("SG_1", "true"), 0, T0 + 1)
    assert merger.open_stream_ids == frozenset({"new"})
    assert texts(merger) == [("SG_1", "interim")]  # not yet replaced
    merger.text_received("old", " late", T0 + 1)  # superseded: ignored
    merger.stream_closed("old", None, T0 + 1)  # ignored too
    assert texts(merger) == [("SG_1", "interim")]
    merger.text_received("new", "Final", T0 + 2)
    assert texts(merger) == [("SG_1", "Final")]
    merger.stream_closed("new", None, T0 + 2)
    assert [type(e) for e in events(merger)] == [SegmentUpdated, SegmentUpdated, SegmentFinalized]


def test_segmentless_stream_does_not_merge_with_same_named_segment() -> None:
    merger = TranscriptMerger()
    send(merger, "X", AGENT, {}, "by stream id")
    send(merger, "st2", AGENT, attrs("X"), "by segment id")
    assert texts(merger) == [("X", "by stream id"), ("X", "by segment id")]


# --------------------------------------------------------------------------------------------
# Order, user vs agent


def test_order_is_first_arrival_and_stable() -> None:
    merger = TranscriptMerger()
    merger.stream_opened("u1", USER, attrs("SG_u1", "false", TRACK), 0, T0)
    merger.stream_opened("a1", AGENT, attrs("SG_a1", "false"), 0, T0)
    merger.text_received("a1", "Hi! ", T0 + 1)  # the agent's first chunk arrives first
    merger.text_received("u1", "hello", T0 + 2)
    merger.text_received("a1", "How can I help?", T0 + 3)
    merger.stream_closed("u1", None, T0 + 3)
    send(merger, "u1b", USER, attrs("SG_u1", "true", TRACK), "Hello.", now=T0 + 4)
    merger.stream_closed("a1", None, T0 + 5, attributes=attrs("SG_a1", "true"))
    send(merger, "u2", USER, attrs("SG_u2", "false", TRACK), "and", now=T0 + 6)
    assert [(s.id, s.participant_identity, s.text, s.final) for s in merger.segments()] == [
        ("SG_a1", AGENT, "Hi! How can I help?", True),
        ("SG_u1", USER, "Hello.", True),
        ("SG_u2", USER, "and", False),
    ]
    finalized = [e.segment.id for e in events(merger) if isinstance(e, SegmentFinalized)]
    assert finalized == ["SG_u1", "SG_a1"]


def test_clear_forgets_silently() -> None:
    merger = TranscriptMerger()
    send(merger, "st1", USER, attrs("SG_1"), "a")
    merger.stream_opened("st2", USER, attrs("SG_2"), 0, T0)
    events(merger)
    merger.clear()
    assert merger.segments() == []
    assert merger.open_stream_ids == frozenset()
    merger.text_received("st2", "b", T0)
    assert events(merger) == []


# --------------------------------------------------------------------------------------------
# Bounds


def test_max_segments_drops_the_oldest() -> None:
    merger = TranscriptMerger(max_segments=2)
    merger.stream_opened("st1", AGENT, attrs("SG_1"), 0, T0)
    merger.text_received("st1", "one", T0)  # still open when dropped
    send(merger, "st2", AGENT, attrs("SG_2"), "two")
    events(merger)
    send(merger, "st3", AGENT, attrs("SG_3"), "three")
    got = events(merger)
    assert isinstance(got[0], SegmentDropped)
    assert got[0].segment.id == "SG_1"
    assert isinstance(got[1], SegmentUpdated)
    assert texts(merger) == [("SG_2", "two"), ("SG_3", "three")]
    assert "st1" not in merger.open_stream_ids
    merger.text_received("st1", " more", T0)  # its stream was forgotten with it
    merger.stream_closed("st1", None, T0)
    assert texts(merger) == [("SG_2", "two"), ("SG_3", "three")]
    send(merger, "st4", AGENT, attrs("SG_1"), "again")  # a new stream brings it back, last
    assert texts(merger) == [("SG_3", "three"), ("SG_1", "again")]


def test_max_text_bytes_cuts_at_a_character_boundary() -> None:
    merger = TranscriptMerger(max_text_bytes=10)
    merger.stream_opened("st1", USER, attrs("SG_1"), 0, T0)
    merger.text_received("st1", "héllo", T0)  # 6 bytes
    merger.text_received("st1", "wörld", T0)  # 6 bytes, 4 fit: "wör"
    segment = merger.segments()[0]
    assert segment.text == "héllowör"
    assert len(segment.text.encode()) == 10
    assert segment.truncated is True
    events(merger)
    merger.text_received("st1", "!", T0)
    assert events(merger) == []
    # A newer stream of the segment starts from zero.
    send(merger, "st2", USER, attrs("SG_1", "true"), "short")
    segment = merger.segments()[0]
    assert (segment.text, segment.truncated, segment.final) == ("short", False, True)


def test_max_text_bytes_never_splits_a_character() -> None:
    merger = TranscriptMerger(max_text_bytes=3)
    send(merger, "st1", USER, {}, "ab", "😀c")
    segment = merger.segments()[0]
    assert (segment.text, segment.truncated) == ("ab", True)
