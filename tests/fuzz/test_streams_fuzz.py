"""Fuzz: StreamReceiver accepts any packet sequence without raising and keeps its lifecycle sound;
deflate bombs are refused without producing (allocating) their output.

Invariant of the random runs: ``receive``, ``participant_left``, ``handle_timer`` and ``fail_all``
never raise; per stream id the events follow ``StreamOpened StreamChunkReceived* (StreamClosed |
StreamFailed)`` (ids may be reused after the end), chunk events are non-empty with indices 0, 1,
2, ..., and :attr:`StreamReceiver.open_stream_ids` is exactly the set of ids whose lifecycle is
still open.
"""

from __future__ import annotations

import contextlib
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto import errors
from lkproto.core.streams import (
    AnyStreamEvent,
    StreamChunkReceived,
    StreamClosed,
    StreamErrorKind,
    StreamFailed,
    StreamOpened,
    StreamReceiver,
)
from lkproto.wire import decode_data_packet, pb
from lkproto.wire.streams import DEFLATE_RAW_WBITS, deflate_raw, iter_chunks

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_IDS = ["a", "b", "c"]
_PEOPLE = ["x", "y", ""]
_DEFLATED = deflate_raw("héllo wörld 😀 ".encode() * 20) or b""
_contents = st.one_of(
    st.binary(max_size=40),
    st.integers(0, len(_DEFLATED)).flatmap(
        lambda start: st.integers(start, len(_DEFLATED)).map(lambda end: _DEFLATED[start:end])
    ),
    st.just(_DEFLATED),
)


@st.composite
def headers(draw: st.DrawFn) -> pb.DataPacket:
    h = pb.DataStream.Header(
        stream_id=draw(st.sampled_from(_IDS)),
        topic=draw(st.sampled_from(["t", "t", "u"])),
        timestamp=draw(st.integers(-(2**63), 2**63 - 1)),
        total_length=draw(st.none() | st.integers(0, 60) | st.just(2**64 - 1)),
        compression=draw(st.sampled_from([0, 1, 1, 2])),  # type: ignore[arg-type]
        inline_content=draw(st.none() | _contents),
        attributes=draw(st.dictionaries(st.sampled_from("kl"), st.sampled_from("vw"), max_size=2)),
    )
    content = draw(st.sampled_from(["text", "text", "byte", None]))
    if content == "text":
        h.text_header.version = draw(st.integers(-(2**31), 2**31 - 1))
        h.text_header.attached_stream_ids.extend(draw(st.lists(st.sampled_from(_IDS), max_size=2)))
    elif content == "byte":
        h.byte_header.name = draw(st.sampled_from(["", "f"]))
    return pb.DataPacket(participant_identity=draw(st.sampled_from(_PEOPLE)), stream_header=h)


@st.composite
def chunks(draw: st.DrawFn) -> pb.DataPacket:
    c = pb.DataStream.Chunk(
        stream_id=draw(st.sampled_from(_IDS)),
        chunk_index=draw(st.integers(0, 4) | st.just(2**64 - 1)),
        content=draw(_contents),
        version=draw(st.integers(-1, 2)),
    )
    return pb.DataPacket(participant_identity=draw(st.sampled_from(_PEOPLE)), stream_chunk=c)


@st.composite
def trailers(draw: st.DrawFn) -> pb.DataPacket:
    t = pb.DataStream.Trailer(
        stream_id=draw(st.sampled_from(_IDS)),
        reason=draw(st.sampled_from(["", "", "stop"])),
        attributes=draw(st.dictionaries(st.sampled_from("km"), st.sampled_from("z"), max_size=2)),
    )
    return pb.DataPacket(participant_identity=draw(st.sampled_from(_PEOPLE)), stream_trailer=t)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("packet"), headers() | chunks() | chunks() | trailers(), st.booleans()),
        st.tuples(st.just("left"), st.sampled_from(_PEOPLE), st.just(False)),
        st.tuples(st.just("timer"), st.just(None), st.just(False)),
        st.tuples(st.just("fail_all"), st.just(None), st.just(False)),
        st.tuples(st.just("other"), st.just(pb.DataPacket(user=pb.UserPacket())), st.just(False)),
    ),
    max_size=40,
)


class Lifecycle:
    """Checks the event grammar per stream id."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}  # id -> next chunk event index
        self.live: set[str] = set()  # chunked streams still open after the current step

    def check(self, event: AnyStreamEvent) -> None:
        sid = event.stream_id
        if isinstance(event, StreamOpened):
            assert sid not in self.open, f"{sid} opened twice"
            assert event.info.stream_id == sid
            self.open[sid] = 0
        elif isinstance(event, StreamChunkReceived):
            assert sid in self.open, f"chunk for {sid} outside its lifecycle"
            assert event.data
            assert event.index == self.open[sid]
            self.open[sid] += 1
        else:
            assert isinstance(event, StreamClosed | StreamFailed)
            assert sid in self.open, f"end of {sid} outside its lifecycle"
            del self.open[sid]


def _drain(rx: StreamReceiver, lifecycle: Lifecycle) -> None:
    while (event := rx.next_event()) is not None:
        lifecycle.check(event)


@SETTINGS
@given(ops=_ops, max_open=st.integers(1, 3), timeout=st.none() | st.just(5.0))
def test_receiver_never_raises_and_lifecycle_holds(
    ops: list[tuple[str, object, bool]], max_open: int, timeout: float | None
) -> None:
    rx = StreamReceiver(
        handler_for=lambda topic, is_text: topic == "t",
        max_open_streams=max_open,
        max_stream_bytes=200,
        max_decompressed_bytes=150,
        stream_timeout_s=timeout,
    )
    lifecycle = Lifecycle()
    now = 0.0
    for op, arg, encrypted in ops:
        now += 1.0
        if op in ("packet", "other"):
            assert isinstance(arg, pb.DataPacket)
            rx.receive(arg, now, encrypted=encrypted)
        elif op == "left":
            assert isinstance(arg, str)
            rx.participant_left(arg, now)
        elif op == "timer":
            rx.handle_timer(now + 3.0)
        else:
            rx.fail_all(StreamErrorKind.ABNORMAL_END)
        _drain(rx, lifecycle)
        assert set(rx.open_stream_ids) == set(lifecycle.open)
        assert len(rx.open_stream_ids) <= max_open
        timer = rx.get_timer()
        if timeout is None or not rx.open_stream_ids:
            assert timer is None
        else:
            assert timer is not None


def _mutations() -> st.SearchStrategy[bytes]:
    seeds = [
        pb.DataPacket(
            participant_identity="x",
            stream_header=pb.DataStream.Header(
                stream_id="a",
                topic="t",
                total_length=5,
                inline_content=_DEFLATED[:30],
                compression=pb.DataStream.DEFLATE_RAW,
                text_header=pb.DataStream.TextHeader(version=1),
            ),
        ).SerializeToString(),
        pb.DataPacket(
            stream_chunk=pb.DataStream.Chunk(stream_id="a", chunk_index=0, content=_DEFLATED)
        ).SerializeToString(),
        pb.DataPacket(
            stream_trailer=pb.DataStream.Trailer(stream_id="a", attributes={"k": "v"})
        ).SerializeToString(),
    ]

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 6))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut])

    return mutate()


@SETTINGS
@given(frames=st.lists(st.binary(max_size=200) | _mutations(), max_size=12))
def test_decoded_garbage_never_raises(frames: list[bytes]) -> None:
    rx = StreamReceiver(handler_for=lambda topic, is_text: True)
    lifecycle = Lifecycle()
    for i, frame in enumerate(frames):
        with contextlib.suppress(errors.DecodeError):
            rx.receive(decode_data_packet(frame), float(i))
        _drain(rx, lifecycle)


# ------------------------------------------------------------------ deflate bombs

_GIB_ZEROS = 1_000_000_000
_STEP = 1 << 20


def _bomb() -> bytes:
    """1 GB of zeros, raw-deflated (about 1 MB), built without holding the 1 GB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, DEFLATE_RAW_WBITS)
    zeros = bytes(_STEP)
    out = bytearray()
    remaining = _GIB_ZEROS
    while remaining:
        step = min(remaining, _STEP)
        out += compressor.compress(zeros[:step] if step < _STEP else zeros)
        remaining -= step
    out += compressor.flush()
    return bytes(out)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb()


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    tracemalloc.start()
    result: list[int] = []
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def _header(**fields: object) -> pb.DataPacket:
    header = pb.DataStream.Header(
        stream_id="bomb",
        topic="t",
        compression=pb.DataStream.DEFLATE_RAW,
        byte_header=pb.DataStream.ByteHeader(name="zeros"),
        **fields,  # type: ignore[arg-type]
    )
    return pb.DataPacket(participant_identity="evil", stream_header=header)


def _run_chunks(rx: StreamReceiver, data: bytes, size: int) -> list[AnyStreamEvent]:
    """Feed ``data`` as chunks, dropping delivered data at once (as a streaming reader would)."""
    ends: list[AnyStreamEvent] = []
    for index, piece in enumerate(iter_chunks(data, size)):
        chunk = pb.DataStream.Chunk(stream_id="bomb", chunk_index=index, content=piece)
        rx.receive(pb.DataPacket(participant_identity="evil", stream_chunk=chunk), 0.0)
        while (event := rx.next_event()) is not None:
            if isinstance(event, StreamFailed | StreamClosed):
                ends.append(event)
        if ends:
            break
    return ends


def test_bomb_fixture_is_a_gigabyte(bomb: bytes) -> None:
    assert len(bomb) < 1_100_000
    inflater = zlib.decompressobj(DEFLATE_RAW_WBITS)
    produced = 0
    data = bomb
    while data:
        produced += len(inflater.decompress(data, 64 << 20))
        data = inflater.unconsumed_tail
    assert produced == _GIB_ZEROS


def test_bomb_in_one_packet_is_refused_by_the_packet_cap(bomb: bytes) -> None:
    # 60 000 bytes of the bomb (a chunk as large as the wire allows) would inflate to ~60 MB;
    # with a 1 MiB cap at most 1 MiB + 1 byte is ever produced.
    rx = StreamReceiver(handler_for=lambda topic, is_text: True, max_decompressed_bytes=1 << 20)
    rx.receive(_header(), 0.0)
    rx.next_event()
    chunk = pb.DataStream.Chunk(stream_id="bomb", chunk_index=0, content=bomb[:60_000])
    packet = pb.DataPacket(participant_identity="evil", stream_chunk=chunk)
    with peak_memory() as peak:
        rx.receive(packet, 0.0)
        end = rx.next_event()
    assert isinstance(end, StreamFailed)
    assert end.error.kind is StreamErrorKind.DECOMPRESSION
    assert peak[0] < (1 << 20) + (768 << 10), peak


def test_inline_bomb_is_refused_with_defaults(bomb: bytes) -> None:
    # The largest packet the wire carries (64 000 bytes) inflates to ~66 MB: over the 16 MiB
    # default, refused after producing at most 16 MiB + 1 byte.
    rx = StreamReceiver(handler_for=lambda topic, is_text: True)
    packet = _header(inline_content=bomb[:63_000])
    with peak_memory() as peak:
        rx.receive(packet, 0.0)
        events = [rx.next_event(), rx.next_event(), rx.next_event()]
    assert isinstance(events[0], StreamOpened)
    assert isinstance(events[1], StreamFailed)
    assert events[1].error.kind is StreamErrorKind.DECOMPRESSION
    assert events[2] is None
    assert peak[0] < (16 << 20) + (1 << 20), peak


def test_chunked_bomb_is_refused_by_the_stream_cap(bomb: bytes) -> None:
    rx = StreamReceiver(handler_for=lambda topic, is_text: True, max_stream_bytes=10 << 20)
    rx.receive(_header(), 0.0)
    rx.next_event()
    with peak_memory() as peak:
        ends = _run_chunks(rx, bomb, 15_000)
    (end,) = ends
    assert isinstance(end, StreamFailed)
    assert end.error.kind is StreamErrorKind.TOO_LARGE
    assert peak[0] < 40 << 20, peak


def test_chunked_bomb_is_refused_by_total_length(bomb: bytes) -> None:
    rx = StreamReceiver(handler_for=lambda topic, is_text: True)
    rx.receive(_header(total_length=1000), 0.0)
    rx.next_event()
    with peak_memory() as peak:
        ends = _run_chunks(rx, bomb, 15_000)
    (end,) = ends
    assert isinstance(end, StreamFailed)
    assert end.error.kind is StreamErrorKind.LENGTH_EXCEEDED
    assert peak[0] < 1 << 20, peak


def test_announced_bomb_is_refused_at_the_header() -> None:
    rx = StreamReceiver(handler_for=lambda topic, is_text: True, max_stream_bytes=1 << 20)
    rx.receive(_header(total_length=_GIB_ZEROS), 0.0)
    assert isinstance(rx.next_event(), StreamOpened)
    end = rx.next_event()
    assert isinstance(end, StreamFailed)
    assert end.error.kind is StreamErrorKind.TOO_LARGE
