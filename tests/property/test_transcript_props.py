"""TranscriptMerger properties under any interleaving of several streams' operations.

Each stream is opened, gets its chunks in order and ends (cleanly, cleanly with a final trailer,
or with an error); the operations of different streams interleave arbitrarily. Several streams may
share a ``lk.segment_id`` (interim → final updates), some have none.

(a) All streams ending cleanly, no bounds hit: one segment per segment key, whose text is the
    concatenation of the chunks of the key's *last opened* stream (a newer stream replaces the
    text; components-js ``textStream.ts``), with that stream's closing attributes.
(b) Always: a segment's text is a prefix of the concatenation of its ``stream_id``'s chunks, and
    that stream belongs to the segment; text fits ``max_text_bytes`` (``truncated`` exactly when
    cut); at most ``max_segments`` segments; the order only ever drops segments or appends new
    ones; replaying the events rebuilds ``segments()`` in order; finalized segments are final.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto.core.agent import ATTR_SEGMENT_ID, ATTR_TRANSCRIPTION_FINAL
from lkproto.core.transcript import (
    AnyTranscriptEvent,
    Segment,
    SegmentDropped,
    SegmentFinalized,
    SegmentUpdated,
    TranscriptMerger,
)

ENDS = ("clean", "final", "error")


@dataclass(frozen=True)
class Plan:
    stream_id: str
    segment: str | None
    chunks: tuple[str, ...]
    end: str

    @property
    def key(self) -> str:
        return f"seg:{self.segment}" if self.segment else f"stream:{self.stream_id}"

    @property
    def header(self) -> dict[str, str]:
        out = {ATTR_TRANSCRIPTION_FINAL: "false", "n": self.stream_id}
        if self.segment is not None:
            out[ATTR_SEGMENT_ID] = self.segment
        return out

    @property
    def closing(self) -> dict[str, str]:
        if self.end == "final":
            return {**self.header, ATTR_TRANSCRIPTION_FINAL: "true"}
        return self.header


@st.composite
def scenarios(draw: st.DrawFn, ends: tuple[str, ...] = ENDS) -> tuple[list[Plan], list[int]]:
    count = draw(st.integers(1, 6))
    plans = [
        Plan(
            stream_id=f"st{i}",
            segment=draw(st.sampled_from([None, "SG_a", "SG_b", "SG_c"])),
            chunks=tuple(draw(st.lists(st.text(max_size=4), max_size=4))),
            end=draw(st.sampled_from(ends)),
        )
        for i in range(count)
    ]
    tokens = [i for i, plan in enumerate(plans) for _ in range(len(plan.chunks) + 2)]
    order = draw(st.permutations(tokens))
    return plans, list(order)


def key_of(segment: Segment) -> str:
    # Test stream ids ("st…") never equal test segment ids ("SG_…").
    return f"stream:{segment.id}" if segment.id.startswith("st") else f"seg:{segment.id}"


def run(
    plans: list[Plan], order: list[int], merger: TranscriptMerger
) -> tuple[list[Plan], list[AnyTranscriptEvent]]:
    """Apply the interleaving, checking the step invariants; returns plans in opening order."""
    step = [0] * len(plans)
    opened: list[Plan] = []
    replay: dict[str, Segment] = {}
    all_events: list[AnyTranscriptEvent] = []
    previous_order: list[str] = []
    for now, index in enumerate(order):
        plan = plans[index]
        k = step[index]
        step[index] += 1
        if k == 0:
            merger.stream_opened(plan.stream_id, "p", plan.header, 0, float(now))
            opened.append(plan)
        elif k <= len(plan.chunks):
            merger.text_received(plan.stream_id, plan.chunks[k - 1], float(now))
        else:
            error = "boom" if plan.end == "error" else None
            merger.stream_closed(plan.stream_id, error, float(now), attributes=plan.closing)
        while (event := merger.next_event()) is not None:
            all_events.append(event)
            if isinstance(event, SegmentUpdated):
                replay[key_of(event.segment)] = event.segment
            elif isinstance(event, SegmentDropped):
                del replay[key_of(event.segment)]
            else:
                assert isinstance(event, SegmentFinalized)
                assert event.segment.final
                assert k == len(plan.chunks) + 1
        segments = merger.segments()
        keys = [key_of(s) for s in segments]
        # Events replay to the same list, in the same order.
        assert list(replay) == keys
        assert list(replay.values()) == segments
        # Stable order: survivors keep their relative order, newcomers come last.
        survivors = [key for key in previous_order if key in keys]
        assert keys[: len(survivors)] == survivors
        previous_order = keys
    return opened, all_events


def check_always(
    plans: list[Plan], merger: TranscriptMerger, max_segments: int, max_bytes: int
) -> None:
    by_id = {plan.stream_id: plan for plan in plans}
    segments = merger.segments()
    assert len(segments) <= max_segments
    assert len({key_of(s) for s in segments}) == len(segments)
    for segment in segments:
        source = by_id[segment.stream_id]
        assert source.key == key_of(segment)
        full = "".join(source.chunks)
        assert full.startswith(segment.text)
        size = len(segment.text.encode())
        assert size <= max_bytes
        if segment.truncated:
            assert len(full.encode()) > max_bytes
        assert segment.attributes in (source.header, source.closing)
        assert segment.last_received_ms >= segment.first_received_ms


@settings(max_examples=300, deadline=None)
@given(scenarios(ends=("clean", "final")))
def test_clean_streams_show_the_last_opened_stream_of_each_segment(
    scenario: tuple[list[Plan], list[int]],
) -> None:
    plans, order = scenario
    merger = TranscriptMerger()
    opened, all_events = run(plans, order, merger)
    check_always(plans, merger, 1000, 64 * 1024)
    last: dict[str, Plan] = {}
    for plan in opened:
        last[plan.key] = plan
    got = {key_of(s): s for s in merger.segments()}
    assert set(got) == set(last)
    for key, plan in last.items():
        segment = got[key]
        assert segment.stream_id == plan.stream_id
        assert segment.text == "".join(plan.chunks)
        assert segment.attributes == plan.closing
        assert segment.final is (plan.end == "final")
        assert not segment.truncated
    assert merger.open_stream_ids == frozenset()
    finalized = [e.segment.stream_id for e in all_events if isinstance(e, SegmentFinalized)]
    # Only streams closing final finalize, each at most once; the last ones exactly once.
    assert all(by_id_end(plans, stream_id) == "final" for stream_id in finalized)
    assert len(finalized) == len(set(finalized))
    for plan in last.values():
        assert (plan.stream_id in finalized) is (plan.end == "final")


def by_id_end(plans: list[Plan], stream_id: str) -> str:
    return next(plan.end for plan in plans if plan.stream_id == stream_id)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(1, 3), st.integers(1, 12))
def test_invariants_hold_with_errors_and_tight_bounds(
    scenario: tuple[list[Plan], list[int]], max_segments: int, max_bytes: int
) -> None:
    plans, order = scenario
    merger = TranscriptMerger(max_segments=max_segments, max_text_bytes=max_bytes)
    run(plans, order, merger)
    check_always(plans, merger, max_segments, max_bytes)
    assert merger.open_stream_ids == frozenset()
