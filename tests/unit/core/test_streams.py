"""lkproto.core.streams: the outgoing chunker, choose_form and the StreamReceiver rules (§5)."""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Callable, Sequence

import pytest

from lkproto.core.streams import (
    CLIENT_PROTOCOL_DATA_STREAM_V2,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_OPEN_STREAMS,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_STREAM_TIMEOUT_S,
    AnyStreamEvent,
    OutgoingByteStream,
    OutgoingTextStream,
    StreamChunkReceived,
    StreamClosed,
    StreamError,
    StreamErrorKind,
    StreamFailed,
    StreamForm,
    StreamHeaderTooLargeError,
    StreamOpened,
    StreamReceiver,
    choose_form,
)
from lkproto.errors import LocalProtocolError, RemoteProtocolError
from lkproto.wire import decode_data_packet, encode_data_packet, pb
from lkproto.wire.streams import DEFLATE_RAW_WBITS, deflate_raw

CAP = pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW
K = StreamErrorKind


# ------------------------------------------------------------------ helpers


def header(
    stream_id: str = "s",
    *,
    text: bool = True,
    topic: str = "t",
    total: int | None = None,
    compressed: bool = False,
    inline: bytes | None = None,
    identity: str = "alice",
    attributes: dict[str, str] | None = None,
) -> pb.DataPacket:
    h = pb.DataStream.Header(
        stream_id=stream_id,
        timestamp=1234,
        topic=topic,
        mime_type="text/plain" if text else "application/octet-stream",
        total_length=total,
        attributes=attributes or {},
        inline_content=inline,
        compression=pb.DataStream.DEFLATE_RAW if compressed else pb.DataStream.NONE,
    )
    if text:
        h.text_header.SetInParent()
    else:
        h.byte_header.name = "file.bin"
    return pb.DataPacket(participant_identity=identity, stream_header=h)


def chunk(
    stream_id: str, index: int, content: bytes, *, identity: str = "alice", version: int = 0
) -> pb.DataPacket:
    return pb.DataPacket(
        participant_identity=identity,
        stream_chunk=pb.DataStream.Chunk(
            stream_id=stream_id, chunk_index=index, content=content, version=version
        ),
    )


def trailer(
    stream_id: str, reason: str = "", attributes: dict[str, str] | None = None
) -> pb.DataPacket:
    return pb.DataPacket(
        participant_identity="alice",
        stream_trailer=pb.DataStream.Trailer(
            stream_id=stream_id, reason=reason, attributes=attributes or {}
        ),
    )


def receiver(**kwargs: object) -> StreamReceiver:
    kwargs.setdefault("handler_for", lambda topic, is_text: True)
    return StreamReceiver(**kwargs)  # type: ignore[arg-type]


def drain(rx: StreamReceiver) -> list[AnyStreamEvent]:
    events = []
    while (event := rx.next_event()) is not None:
        events.append(event)
    return events


def feed(rx: StreamReceiver, *packets: pb.DataPacket, now: float = 0.0) -> list[AnyStreamEvent]:
    for packet in packets:
        rx.receive(packet, now)
    return drain(rx)


def data_of(events: Sequence[AnyStreamEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, StreamChunkReceived))


def failure(events: Sequence[AnyStreamEvent]) -> StreamError:
    failed = [e for e in events if isinstance(e, StreamFailed)]
    assert len(failed) == 1, events
    return failed[0].error


def kinds(events: Sequence[AnyStreamEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def inflate(data: bytes) -> bytes:
    return zlib.decompress(data, DEFLATE_RAW_WBITS)


# ------------------------------------------------------------------ choose_form


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        ([], (True, True)),
        ([(2, [CAP])], (True, True)),
        ([(3, [CAP]), (2, [1, CAP])], (True, True)),
        ([(2, [])], (True, False)),
        ([(2, [CAP]), (2, [])], (True, False)),
        ([(1, [CAP])], (False, False)),
        ([(2, [CAP]), (0, [])], (False, False)),
    ],
)
def test_choose_form(recipients: list[tuple[int, list[int]]], expected: tuple[bool, bool]) -> None:
    form = choose_form(recipients)
    assert form == expected
    assert isinstance(form, StreamForm)
    assert form.inline_allowed is expected[0]
    assert form.compression_allowed is expected[1]
    assert CLIENT_PROTOCOL_DATA_STREAM_V2 == 2


# ------------------------------------------------------------------ sender: headers


def test_text_header_fields() -> None:
    s = OutgoingTextStream(
        stream_id="id1",
        timestamp_ms=1_700_000_000_000,
        topic="lk.chat",
        total_length=5,
        attributes={"a": "b"},
        destination_identities=["bob"],
        operation_type=pb.DataStream.UPDATE,
        version=3,
        reply_to_stream_id="r",
        attached_stream_ids=["x", "y"],
        generated=True,
    )
    assert not s.opened
    packet = s.open()
    assert s.opened
    assert not s.closed
    assert list(packet.destination_identities) == ["bob"]
    h = packet.stream_header
    assert h.stream_id == "id1"
    assert h.timestamp == 1_700_000_000_000
    assert h.topic == "lk.chat"
    assert h.mime_type == "text/plain"
    assert h.total_length == 5
    assert dict(h.attributes) == {"a": "b"}
    assert h.compression == pb.DataStream.NONE
    assert not h.HasField("inline_content")
    assert h.text_header.operation_type == pb.DataStream.UPDATE
    assert h.text_header.version == 3
    assert h.text_header.reply_to_stream_id == "r"
    assert list(h.text_header.attached_stream_ids) == ["x", "y"]
    assert h.text_header.generated
    assert s.stream_id == "id1"
    assert s.is_text
    assert s.topic == "lk.chat"
    assert s.destination_identities == ["bob"]
    assert s.total_length == 5
    assert not s.compression


def test_byte_header_defaults() -> None:
    s = OutgoingByteStream(stream_id="b", timestamp_ms=0)
    h = s.open().stream_header
    assert h.WhichOneof("content_header") == "byte_header"
    assert h.byte_header.name == "unknown"
    assert h.mime_type == "application/octet-stream"
    assert not h.HasField("total_length")
    assert not s.is_text
    assert s.progress is None


def test_compressed_header_flag() -> None:
    s = OutgoingByteStream(stream_id="b", timestamp_ms=0, compression=True)
    assert s.open().stream_header.compression == pb.DataStream.DEFLATE_RAW


def test_header_too_large() -> None:
    with pytest.raises(StreamHeaderTooLargeError) as info:
        OutgoingTextStream(stream_id="s", timestamp_ms=0, attributes={"k": "v" * 15_000})
    assert info.value.max_bytes == 15_000
    assert info.value.size > 15_000
    assert isinstance(info.value, LocalProtocolError)
    # Destinations count too: they ride on the header packet.
    with pytest.raises(StreamHeaderTooLargeError):
        OutgoingByteStream(
            stream_id="s", timestamp_ms=0, destination_identities=[f"p{i:05}" for i in range(2000)]
        )
    OutgoingTextStream(stream_id="s", timestamp_ms=0, attributes={"k": "v" * 14_900})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream_id": ""},
        {"stream_id": 5},
        {"timestamp_ms": 2**63},
        {"timestamp_ms": 1.5},
        {"total_length": -1},
        {"total_length": 2**64},
        {"attributes": {"a": 1}},
        {"attributes": [("a", "b")]},
        {"destination_identities": "bob"},
        {"destination_identities": [1]},
        {"chunk_size_bytes": 3},
        {"chunk_size_bytes": 15_001},
        {"topic": None},
        {"version": 2**31},
        {"operation_type": -1},
        {"reply_to_stream_id": None},
        {"attached_stream_ids": [None]},
        {"topic": "\ud800"},
    ],
)
def test_text_stream_validation(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"stream_id": "s", "timestamp_ms": 0, **kwargs}
    with pytest.raises(LocalProtocolError):
        OutgoingTextStream(**args)  # type: ignore[arg-type]


def test_byte_stream_validation() -> None:
    with pytest.raises(LocalProtocolError):
        OutgoingByteStream(stream_id="s", timestamp_ms=0, name=None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        OutgoingByteStream(stream_id="s", timestamp_ms=0, chunk_size_bytes=0)
    OutgoingByteStream(stream_id="s", timestamp_ms=0, chunk_size_bytes=1)


# ------------------------------------------------------------------ sender: lifecycle


def test_lifecycle_misuse() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    with pytest.raises(LocalProtocolError, match="not opened"):
        s.write(b"x")
    with pytest.raises(LocalProtocolError):
        s.close()
    with pytest.raises(LocalProtocolError):
        s.flush()
    s.open()
    with pytest.raises(LocalProtocolError, match="already open"):
        s.open()
    with pytest.raises(LocalProtocolError):
        s.single_packet(b"x")
    s.close()
    assert s.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        s.write(b"x")
    with pytest.raises(LocalProtocolError):
        s.close()


def test_byte_chunks_at_most_15000_contiguous() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, destination_identities=["bob"])
    s.open()
    packets = s.write(bytes(40_000)) + s.write(b"x")
    assert [len(p.stream_chunk.content) for p in packets] == [15_000, 15_000, 10_000, 1]
    assert [p.stream_chunk.chunk_index for p in packets] == [0, 1, 2, 3]
    assert all(p.stream_chunk.stream_id == "s" for p in packets)
    assert all(list(p.destination_identities) == ["bob"] for p in packets)
    assert all(len(encode_data_packet(p)) < 16_000 for p in packets)
    assert s.next_chunk_index == 4
    assert s.write(b"") == []
    (end,) = s.close()
    assert end.stream_trailer.stream_id == "s"
    assert end.stream_trailer.reason == ""
    assert list(end.destination_identities) == ["bob"]


def test_byte_write_accepts_bytes_like_only() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, chunk_size_bytes=2)
    s.open()
    assert [p.stream_chunk.content for p in s.write(bytearray(b"abc"))] == [b"ab", b"c"]
    assert [p.stream_chunk.content for p in s.write(memoryview(b"de"))] == [b"de"]
    with pytest.raises(LocalProtocolError):
        s.write("text")
    assert s.bytes_sent == 5


def test_text_chunks_are_valid_utf8_each() -> None:
    text = "😀é" * 5001
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0)
    s.open()
    packets = s.write(text)
    assert all(len(p.stream_chunk.content) <= 15_000 for p in packets)
    assert "".join(p.stream_chunk.content.decode() for p in packets) == text
    assert len(packets) == 3


def test_text_bytes_write_holds_partial_character() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0, chunk_size_bytes=4)
    s.open()
    emoji = "😀".encode()
    assert [p.stream_chunk.content for p in s.write(b"ab" + emoji[:1])] == [b"ab"]
    assert s.bytes_sent == 3
    assert s.write(emoji[1:3]) == []
    with pytest.raises(LocalProtocolError, match="inside a UTF-8 character"):
        s.close()
    with pytest.raises(LocalProtocolError):
        s.write("x")  # a str cannot complete the held character
    with pytest.raises(LocalProtocolError):
        s.write(b"\xff")
    assert s.bytes_sent == 5  # refused writes changed nothing
    packets = s.write(emoji[3:] + b"c")
    assert [p.stream_chunk.content for p in packets] == [emoji, b"c"]
    assert [p.stream_chunk.chunk_index for p in packets] == [1, 2]
    (last, end) = s.write(b"!") + s.close()
    assert last.stream_chunk.content == b"!"
    assert end.HasField("stream_trailer")


def test_text_rejects_bad_input() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0)
    s.open()
    with pytest.raises(LocalProtocolError, match="Unicode"):
        s.write("\ud800")
    with pytest.raises(LocalProtocolError, match="UTF-8"):
        s.write(b"\xc3\x28")
    with pytest.raises(LocalProtocolError):
        s.write(123)  # type: ignore[arg-type]
    assert s.bytes_sent == 0


def test_total_length_enforced_by_sender() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, total_length=4)
    s.open()
    assert s.progress == 0.0
    s.write(b"abc")
    assert s.progress == 0.75
    with pytest.raises(LocalProtocolError, match="exceeds total_length"):
        s.write(b"de")
    assert s.bytes_sent == 3
    with pytest.raises(LocalProtocolError, match="only 3 of"):
        s.close()
    s.write(b"d")
    assert s.progress == 1.0
    s.close()


def test_zero_total_length_progress() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0, total_length=0)
    s.open()
    assert s.progress == 0.0
    s.close()
    assert s.progress == 1.0


def test_abort_with_reason() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0, total_length=100)
    s.open()
    s.write(b"ab\xc3")
    (end,) = s.close("cancelled", {"k": "v"})
    assert end.stream_trailer.reason == "cancelled"
    assert dict(end.stream_trailer.attributes) == {"k": "v"}
    assert s.closed


def test_close_validation() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    s.open()
    with pytest.raises(LocalProtocolError):
        s.close(reason=None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        s.close(attributes={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(LocalProtocolError, match="trailer packet"):
        s.close(attributes={"k": "v" * 15_000})
    with pytest.raises(LocalProtocolError, match="cannot build"):
        s.close(reason="\ud800")
    assert not s.closed
    s.close()


def test_flush_uncompressed_is_noop() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    s.open()
    assert s.flush() == []


def test_compressed_chunks_are_one_deflate_stream() -> None:
    payload = bytes(range(256)) * 300  # 76 800 bytes, compressible
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, compression=True, chunk_size_bytes=100)
    s.open()
    packets = []
    for start in range(0, len(payload), 1000):
        packets += s.write(payload[start : start + 1000])
    assert all(len(p.stream_chunk.content) == 100 for p in packets)  # only full chunks
    packets += s.close()
    *chunks, end = packets
    assert end.HasField("stream_trailer")
    assert [p.stream_chunk.chunk_index for p in chunks] == list(range(len(chunks)))
    assert inflate(b"".join(p.stream_chunk.content for p in chunks)) == payload
    assert s.bytes_sent == len(payload)


def test_compressed_flush_makes_data_decodable() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0, compression=True)
    s.open()
    assert s.write("hello " * 10) == []
    flushed = s.flush()
    assert len(flushed) == 1
    partial = zlib.decompressobj(DEFLATE_RAW_WBITS).decompress(flushed[0].stream_chunk.content)
    assert partial == b"hello " * 10
    rest = s.close()
    content = b"".join(p.stream_chunk.content for p in flushed + rest[:-1])
    assert inflate(content) == b"hello " * 10


def test_compressed_abort_sends_no_more_data() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, compression=True)
    s.open()
    s.write(b"abc" * 100)
    assert [p.WhichOneof("value") for p in s.close("stop")] == ["stream_trailer"]


# ------------------------------------------------------------------ sender: single packet


def test_single_packet_plain() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=9, topic="t", destination_identities=["b"])
    packet = s.single_packet("hé")
    assert packet is not None
    h = packet.stream_header
    assert h.inline_content == "hé".encode()
    assert h.total_length == 3
    assert h.compression == pb.DataStream.NONE
    assert list(packet.destination_identities) == ["b"]
    assert s.closed
    assert s.bytes_sent == 3
    with pytest.raises(LocalProtocolError):
        s.open()


def test_single_packet_empty_payload() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, compression=True)
    packet = s.single_packet(b"")
    assert packet is not None
    assert packet.stream_header.HasField("inline_content")
    assert packet.stream_header.inline_content == b""
    assert packet.stream_header.total_length == 0
    assert packet.stream_header.compression == pb.DataStream.NONE


def test_single_packet_compresses_only_when_smaller() -> None:
    tiny = OutgoingTextStream(stream_id="s", timestamp_ms=0, compression=True)
    packet = tiny.single_packet("hi")
    assert packet is not None
    assert packet.stream_header.compression == pb.DataStream.NONE
    big = OutgoingTextStream(stream_id="s", timestamp_ms=0, compression=True)
    packet = big.single_packet("a" * 100_000)  # does not fit raw, fits compressed
    assert packet is not None
    h = packet.stream_header
    assert h.compression == pb.DataStream.DEFLATE_RAW
    assert h.total_length == 100_000
    assert inflate(h.inline_content) == b"a" * 100_000
    assert packet.ByteSize() <= 15_000


def test_single_packet_does_not_fit() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0, compression=True)
    noise = random.Random(1).randbytes(20_000)
    assert s.single_packet(noise) is None
    assert not s.opened  # fall back to the chunked form with the same stream
    assert s.open().stream_header.compression == pb.DataStream.DEFLATE_RAW
    plain = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    assert plain.single_packet(b"x" * 15_000) is None  # header overhead pushes it over
    assert plain.single_packet(b"x" * 14_900) is not None


def test_single_packet_budget_parameter() -> None:
    s = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    assert s.single_packet(b"x" * 100, max_packet_bytes=100) is None
    assert s.single_packet(b"x" * 10, max_packet_bytes=100) is not None


def test_single_packet_validation() -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=0, total_length=3)
    with pytest.raises(LocalProtocolError, match="differs from total_length"):
        s.single_packet("ab")
    with pytest.raises(LocalProtocolError, match="UTF-8"):
        s.single_packet(b"\xff\xfe\xfd")
    with pytest.raises(LocalProtocolError, match="Unicode"):
        s.single_packet("\ud800")
    b = OutgoingByteStream(stream_id="s", timestamp_ms=0)
    with pytest.raises(LocalProtocolError):
        b.single_packet("text")
    assert s.single_packet(b"abc") is not None


# ------------------------------------------------------------------ receiver: basics


def test_receiver_defaults_and_validation() -> None:
    assert DEFAULT_MAX_OPEN_STREAMS == 256
    assert DEFAULT_MAX_STREAM_BYTES == 5_000_000_000
    assert DEFAULT_MAX_DECOMPRESSED_BYTES == 16 * 1024 * 1024
    assert DEFAULT_STREAM_TIMEOUT_S == 120.0
    for bad in (
        {"handler_for": None},
        {"max_open_streams": 0},
        {"max_stream_bytes": -1},
        {"max_decompressed_bytes": 0},
        {"stream_timeout_s": 0},
        {"stream_timeout_s": float("inf")},
        {"stream_timeout_s": True},
        {"stream_timeout_s": "1"},
    ):
        with pytest.raises(LocalProtocolError):
            receiver(**bad)
    receiver(stream_timeout_s=None)


def test_text_stream_round_trip_events() -> None:
    rx = receiver()
    events = feed(
        rx,
        header("s", total=11, attributes={"a": "1", "b": "2"}),
        chunk("s", 0, b"hello "),
        chunk("s", 1, b"world"),
        trailer("s", attributes={"b": "3", "c": "4"}),
    )
    assert kinds(events) == [
        "StreamOpened",
        "StreamChunkReceived",
        "StreamChunkReceived",
        "StreamClosed",
    ]
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    info = opened.info
    assert info.stream_id == "s"
    assert info.topic == "t"
    assert info.mime_type == "text/plain"
    assert info.timestamp_ms == 1234
    assert info.total_length == 11
    assert info.attributes == {"a": "1", "b": "2"}
    assert info.sender_identity == "alice"
    assert info.is_text
    assert not info.compressed
    assert not info.inline
    assert not info.encrypted
    assert opened.message.stream_id == "s"
    c0, c1 = events[1], events[2]
    assert isinstance(c0, StreamChunkReceived)
    assert isinstance(c1, StreamChunkReceived)
    assert (c0.data, c0.index, c1.data, c1.index) == (b"hello ", 0, b"world", 1)
    assert c0.message is not None
    assert c0.message.chunk_index == 0
    closed = events[3]
    assert isinstance(closed, StreamClosed)
    assert closed.attributes == {"a": "1", "b": "3", "c": "4"}
    assert closed.reason == ""
    assert closed.message is not None
    assert rx.open_stream_ids == []
    assert rx.ignored_packets == 0


def test_text_header_fields_in_info() -> None:
    s = OutgoingTextStream(
        stream_id="s",
        timestamp_ms=5,
        operation_type=pb.DataStream.REACTION,
        version=7,
        reply_to_stream_id="r",
        attached_stream_ids=["a"],
        generated=True,
    )
    packet = s.open()
    packet.participant_identity = "agent"
    (opened,) = feed(receiver(), packet)
    assert isinstance(opened, StreamOpened)
    info = opened.info
    assert info.operation_type == pb.DataStream.REACTION
    assert (info.version, info.reply_to_stream_id, info.attached_stream_ids) == (7, "r", ("a",))
    assert info.generated
    assert info.name == ""
    assert info.sender_identity == "agent"


def test_byte_stream_info_and_data_passthrough() -> None:
    rx = receiver()
    events = feed(rx, header("b", text=False), chunk("b", 0, b"\xff\x00"), trailer("b"))
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert not opened.info.is_text
    assert opened.info.name == "file.bin"
    assert opened.info.total_length is None
    assert data_of(events) == b"\xff\x00"  # bytes are never re-coded
    assert isinstance(events[-1], StreamClosed)


def test_handler_decides_and_unhandled_is_silent() -> None:
    asked: list[tuple[str, bool]] = []

    def handler_for(topic: str, is_text: bool) -> bool:
        asked.append((topic, is_text))
        return topic == "yes"

    rx = StreamReceiver(handler_for=handler_for)
    events = feed(
        rx,
        header("a", topic="no"),
        chunk("a", 0, b"x"),
        trailer("a"),
        header("b", topic="yes", text=False),
        chunk("b", 0, b"y"),
        trailer("b"),
    )
    assert asked == [("no", True), ("yes", False)]
    assert [e.stream_id for e in events] == ["b", "b", "b"]
    assert rx.ignored_packets == 3


def test_unusable_headers_are_ignored() -> None:
    rx = receiver()
    no_content = pb.DataPacket(stream_header=pb.DataStream.Header(stream_id="a"))
    future = header("b")
    future.stream_header.compression = 7  # type: ignore[assignment]
    assert feed(rx, no_content, future, chunk("b", 0, b"x"), trailer("b")) == []
    assert rx.ignored_packets == 4


def test_other_packets_are_not_counted() -> None:
    rx = receiver()
    rx.receive(pb.DataPacket(user=pb.UserPacket(payload=b"x")), 0.0)
    rx.receive(pb.DataPacket(), 0.0)
    assert drain(rx) == []
    assert rx.ignored_packets == 0


def test_empty_chunks_keep_the_index_but_emit_nothing() -> None:
    events = feed(receiver(), header("s"), chunk("s", 0, b""), chunk("s", 1, b"a"), trailer("s"))
    assert kinds(events) == ["StreamOpened", "StreamChunkReceived", "StreamClosed"]
    c = events[1]
    assert isinstance(c, StreamChunkReceived)
    assert c.index == 0
    assert c.message is not None
    assert c.message.chunk_index == 1


def test_empty_stream() -> None:
    events = feed(receiver(), header("s", total=0), trailer("s"))
    assert kinds(events) == ["StreamOpened", "StreamClosed"]


# ------------------------------------------------------------------ receiver: order


@pytest.mark.parametrize(
    ("indices", "kind"),
    [
        ([1], K.GAP),
        ([0, 2], K.GAP),
        ([0, 0], K.DUPLICATE),
        ([0, 1, 1], K.DUPLICATE),
        ([0, 1, 0], K.REORDER),
        ([0, 1, 2, 0], K.REORDER),
    ],
)
def test_chunk_order_violations(indices: list[int], kind: StreamErrorKind) -> None:
    rx = receiver()
    events = feed(rx, header("s"), *[chunk("s", i, b"x") for i in indices], trailer("s"))
    error = failure(events)
    assert error.kind is kind
    assert isinstance(events[-1], StreamFailed)
    assert rx.open_stream_ids == []
    assert rx.ignored_packets == 1  # the trailer, for a stream already gone


def test_higher_version_of_a_delivered_chunk_still_fails() -> None:
    events = feed(receiver(), header("s"), chunk("s", 0, b"a"), chunk("s", 0, b"b", version=1))
    assert failure(events).kind is K.DUPLICATE
    assert data_of(events) == b"a"


def test_first_chunk_version_is_irrelevant() -> None:
    events = feed(receiver(), header("s"), chunk("s", 0, b"a", version=5), trailer("s"))
    assert isinstance(events[-1], StreamClosed)


def test_compressed_duplicate_fails_too() -> None:
    compressed = deflate_raw(b"abc" * 100)
    assert compressed is not None
    events = feed(
        receiver(),
        header("s", compressed=True),
        chunk("s", 0, compressed[:10]),
        chunk("s", 0, compressed[:10]),
    )
    assert failure(events).kind is K.DUPLICATE


def test_chunks_are_routed_by_stream_id_only() -> None:
    rx = receiver()
    events = feed(
        rx,
        header("s", identity="user"),  # agent speaking on the user's behalf
        chunk("s", 0, b"hi", identity="agent"),
        trailer("s"),
    )
    assert data_of(events) == b"hi"
    assert isinstance(events[-1], StreamClosed)


def test_interleaved_streams() -> None:
    rx = receiver()
    events = feed(
        rx,
        header("a"),
        header("b", text=False),
        chunk("b", 0, b"1"),
        chunk("a", 0, b"x"),
        chunk("a", 1, b"y"),
        trailer("a"),
        chunk("b", 1, b"2"),
        trailer("b"),
    )
    assert data_of([e for e in events if e.stream_id == "a"]) == b"xy"
    assert data_of([e for e in events if e.stream_id == "b"]) == b"12"


def test_second_header_fails_the_open_stream() -> None:
    rx = receiver()
    events = feed(rx, header("s"), header("s"), chunk("s", 0, b"x"))
    assert kinds(events) == ["StreamOpened", "StreamFailed"]
    assert failure(events).kind is K.DUPLICATE
    assert rx.ignored_packets == 2  # the second header and the orphan chunk


# ------------------------------------------------------------------ receiver: length and end


def test_length_exceeded_fails_before_delivering() -> None:
    events = feed(receiver(), header("s", total=3), chunk("s", 0, b"ab"), chunk("s", 1, b"cd"))
    assert failure(events).kind is K.LENGTH_EXCEEDED
    assert data_of(events) == b"ab"


def test_zero_total_length_is_enforced() -> None:
    events = feed(receiver(), header("s", total=0), chunk("s", 0, b"a"))
    assert failure(events).kind is K.LENGTH_EXCEEDED


def test_incomplete() -> None:
    events = feed(receiver(), header("s", total=5), chunk("s", 0, b"abc"), trailer("s"))
    error = failure(events)
    assert error.kind is K.INCOMPLETE
    assert "3 of 5" in error.detail


def test_abnormal_end() -> None:
    events = feed(receiver(), header("s", total=5), chunk("s", 0, b"abc"), trailer("s", "boom"))
    error = failure(events)
    assert error.kind is K.ABNORMAL_END
    assert error.detail == "boom"


def test_text_character_split_across_chunks_is_delivered_whole() -> None:
    e = "😀".encode()
    events = feed(
        receiver(),
        header("s"),
        chunk("s", 0, b"a" + e[:2]),
        chunk("s", 1, e[2:] + b"b"),
        trailer("s"),
    )
    datas = [x.data for x in events if isinstance(x, StreamChunkReceived)]
    assert datas == [b"a", e + b"b"]
    assert all(d.decode() for d in datas)


def test_text_invalid_utf8_is_replaced() -> None:
    events = feed(receiver(), header("s"), chunk("s", 0, b"a\xffb"), trailer("s"))
    assert data_of(events) == "a\ufffdb".encode()


def test_text_truncated_character_at_end_is_replaced() -> None:
    events = feed(receiver(), header("s"), chunk("s", 0, b"a\xf0\x9f"), trailer("s"))
    assert kinds(events) == [
        "StreamOpened",
        "StreamChunkReceived",
        "StreamChunkReceived",
        "StreamClosed",
    ]
    last = events[2]
    assert isinstance(last, StreamChunkReceived)
    assert last.data == "\ufffd".encode()
    assert last.message is None
    assert last.index == 1


def test_byte_streams_are_not_recoded() -> None:
    events = feed(receiver(), header("s", text=False), chunk("s", 0, b"a\xf0\x9f"), trailer("s"))
    assert data_of(events) == b"a\xf0\x9f"


# ------------------------------------------------------------------ receiver: encryption


@pytest.mark.parametrize("header_encrypted", [False, True])
@pytest.mark.parametrize("which", ["chunk", "trailer"])
def test_encryption_mismatch(header_encrypted: bool, which: str) -> None:
    rx = receiver()
    rx.receive(header("s"), 0.0, encrypted=header_encrypted)
    packet = chunk("s", 0, b"a") if which == "chunk" else trailer("s")
    rx.receive(packet, 0.0, encrypted=not header_encrypted)
    events = drain(rx)
    assert failure(events).kind is K.ENCRYPTION_MISMATCH
    assert rx.open_stream_ids == []


def test_encrypted_stream_consistent() -> None:
    rx = receiver()
    for packet in (header("s"), chunk("s", 0, b"a"), trailer("s")):
        rx.receive(packet, 0.0, encrypted=True)
    events = drain(rx)
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.info.encrypted
    assert isinstance(events[-1], StreamClosed)


# ------------------------------------------------------------------ receiver: sender left, timer


def test_participant_left() -> None:
    rx = receiver()
    feed(
        rx,
        header("a", identity="alice"),
        header("b", identity="bob"),
        header("c", identity="user"),
        chunk("c", 0, b"x", identity="agent"),
    )
    rx.participant_left("alice", 1.0)
    rx.participant_left("agent", 1.0)
    rx.participant_left("nobody", 1.0)
    events = drain(rx)
    assert [(e.stream_id, failure([e]).kind) for e in events] == [
        ("a", K.SENDER_LEFT),
        ("c", K.SENDER_LEFT),
    ]
    assert rx.open_stream_ids == ["b"]


def test_timeout() -> None:
    rx = receiver(stream_timeout_s=10.0)
    assert rx.get_timer() is None
    feed(rx, header("a"), now=0.0)
    feed(rx, header("b"), now=3.0)
    assert rx.get_timer() == 10.0
    feed(rx, chunk("a", 0, b"x"), now=5.0)  # any packet of the stream re-arms it
    assert rx.get_timer() == 13.0
    rx.handle_timer(12.9)
    assert drain(rx) == []
    rx.handle_timer(20.0)
    events = drain(rx)
    assert [(e.stream_id, failure([e]).kind) for e in events] == [
        ("b", K.TIMEOUT),
        ("a", K.TIMEOUT),
    ]
    assert rx.get_timer() is None


def test_no_timeout_configured() -> None:
    rx = receiver(stream_timeout_s=None)
    feed(rx, header("a"))
    assert rx.get_timer() is None
    rx.handle_timer(1e12)
    assert drain(rx) == []
    assert rx.open_stream_ids == ["a"]


def test_fail_all() -> None:
    rx = receiver()
    feed(rx, header("a"), header("b"))
    rx.fail_all(K.ABNORMAL_END, "room closed")
    events = drain(rx)
    assert [e.stream_id for e in events] == ["a", "b"]
    assert all(failure([e]).detail == "room closed" for e in events)


# ------------------------------------------------------------------ receiver: limits


def test_too_many_streams() -> None:
    rx = receiver(max_open_streams=2)
    events = feed(rx, header("a"), header("b"), header("c"), chunk("c", 0, b"x"))
    assert kinds(events) == ["StreamOpened", "StreamOpened", "StreamOpened", "StreamFailed"]
    assert failure(events).kind is K.TOO_MANY_STREAMS
    assert rx.open_stream_ids == ["a", "b"]
    # Inline streams never hold a slot.
    events = feed(rx, header("d", inline=b"hi"))
    assert kinds(events) == ["StreamOpened", "StreamChunkReceived", "StreamClosed"]


def test_too_large_announced() -> None:
    rx = receiver(max_stream_bytes=10)
    events = feed(rx, header("s", total=11), chunk("s", 0, b"x"))
    assert kinds(events) == ["StreamOpened", "StreamFailed"]
    assert failure(events).kind is K.TOO_LARGE
    assert rx.open_stream_ids == []


def test_too_large_uncompressed() -> None:
    events = feed(
        receiver(max_stream_bytes=10), header("s"), chunk("s", 0, b"x" * 6), chunk("s", 1, b"y" * 5)
    )
    assert failure(events).kind is K.TOO_LARGE
    assert data_of(events) == b"x" * 6


def test_too_large_compressed() -> None:
    compressed = deflate_raw(b"\0" * 1000)
    assert compressed is not None
    events = feed(
        receiver(max_stream_bytes=999), header("s", compressed=True), chunk("s", 0, compressed)
    )
    assert failure(events).kind is K.TOO_LARGE


def test_length_exceeded_compressed_binds_first() -> None:
    compressed = deflate_raw(b"\0" * 1000)
    assert compressed is not None
    events = feed(
        receiver(max_stream_bytes=999),
        header("s", compressed=True, total=500),
        chunk("s", 0, compressed),
    )
    assert failure(events).kind is K.LENGTH_EXCEEDED


def test_packet_inflation_cap() -> None:
    payload = random.Random(2).randbytes(10_000)
    compressed = deflate_raw(payload)
    assert compressed is not None
    rx = receiver(max_decompressed_bytes=9_999)
    events = feed(rx, header("s", compressed=True, text=False), chunk("s", 0, compressed))
    error = failure(events)
    assert error.kind is K.DECOMPRESSION
    assert "inflates beyond" in error.detail
    # The cap is per packet: the same data in two packets passes.
    rx = receiver(max_decompressed_bytes=9_999)
    half = len(compressed) // 2
    events = feed(
        rx,
        header("s", compressed=True, text=False),
        chunk("s", 0, compressed[:half]),
        chunk("s", 1, compressed[half:]),
        trailer("s"),
    )
    assert data_of(events) == payload


# ------------------------------------------------------------------ receiver: compression


def test_compressed_text_stream_reframes_characters() -> None:
    text = "é😀" * 3000
    compressed = deflate_raw(text.encode())
    assert compressed is not None
    pieces = [compressed[i : i + 7] for i in range(0, len(compressed), 7)]
    rx = receiver()
    events = feed(
        rx,
        header("s", compressed=True, total=len(text.encode())),
        *[chunk("s", i, p) for i, p in enumerate(pieces)],
        trailer("s"),
    )
    datas = [e.data for e in events if isinstance(e, StreamChunkReceived)]
    assert "".join(d.decode("utf-8") for d in datas) == text
    assert [e.index for e in events if isinstance(e, StreamChunkReceived)] == list(
        range(len(datas))
    )
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.info.compressed
    assert isinstance(events[-1], StreamClosed)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: [b"\xff\xff\xff"],  # corrupt
        lambda c: [c[:-2]],  # truncated at the trailer
        lambda c: [c, b"junk"],  # data after the end
        lambda c: [c + b"junk"],
    ],
)
def test_decompression_errors(mangle: Callable[[bytes], list[bytes]]) -> None:
    compressed = deflate_raw(b"hello world " * 20)
    assert compressed is not None
    pieces = mangle(compressed)
    events = feed(
        receiver(),
        header("s", compressed=True),
        *[chunk("s", i, p) for i, p in enumerate(pieces)],
        trailer("s"),
    )
    assert failure(events).kind is K.DECOMPRESSION
    assert isinstance(events[-1], StreamFailed)


def test_incomplete_reported_before_truncation() -> None:
    compressed = deflate_raw(b"x" * 1000)
    assert compressed is not None
    events = feed(
        receiver(),
        header("s", compressed=True, total=1000),
        chunk("s", 0, compressed[:-2]),
        trailer("s"),
    )
    assert failure(events).kind in (K.INCOMPLETE, K.DECOMPRESSION)


# ------------------------------------------------------------------ receiver: inline


def test_inline_text() -> None:
    rx = receiver()
    events = feed(rx, header("s", inline="hé".encode(), total=3, attributes={"k": "v"}))
    assert kinds(events) == ["StreamOpened", "StreamChunkReceived", "StreamClosed"]
    opened, c, closed = events
    assert isinstance(opened, StreamOpened)
    assert opened.info.inline
    assert isinstance(c, StreamChunkReceived)
    assert (c.data, c.index, c.message) == ("hé".encode(), 0, None)
    assert isinstance(closed, StreamClosed)
    assert closed.attributes == {"k": "v"}
    assert closed.message is None
    assert rx.open_stream_ids == []


def test_inline_empty() -> None:
    events = feed(receiver(), header("s", inline=b"", text=False))
    assert kinds(events) == ["StreamOpened", "StreamClosed"]


def test_inline_compressed() -> None:
    compressed = deflate_raw(b"z" * 5000)
    assert compressed is not None
    events = feed(
        receiver(), header("s", text=False, inline=compressed, compressed=True, total=5000)
    )
    assert data_of(events) == b"z" * 5000
    assert isinstance(events[-1], StreamClosed)


@pytest.mark.parametrize(("total", "kind"), [(2, K.LENGTH_EXCEEDED), (4, K.INCOMPLETE)])
def test_inline_length_checked(total: int, kind: StreamErrorKind) -> None:
    events = feed(receiver(), header("s", inline=b"abc", total=total))
    assert kinds(events) == ["StreamOpened", "StreamFailed"]
    assert failure(events).kind is kind


def test_inline_bad_deflate() -> None:
    events = feed(receiver(), header("s", inline=b"\xff\xff", compressed=True))
    assert failure(events).kind is K.DECOMPRESSION
    compressed = deflate_raw(b"abc" * 100)
    assert compressed is not None
    events = feed(receiver(), header("s", inline=compressed[:-3], compressed=True))
    assert failure(events).kind is K.DECOMPRESSION


def test_inline_too_large() -> None:
    events = feed(receiver(max_stream_bytes=2), header("s", inline=b"abc"))
    assert failure(events).kind is K.TOO_LARGE


# ------------------------------------------------------------------ sender → wire → receiver


@pytest.mark.parametrize("compression", [False, True])
@pytest.mark.parametrize("is_text", [False, True])
def test_round_trip_through_the_wire(compression: bool, is_text: bool) -> None:
    payload = ("héllo wörld 😀 " * 3000).encode()
    stream: OutgoingTextStream | OutgoingByteStream
    if is_text:
        stream = OutgoingTextStream(
            stream_id="s", timestamp_ms=1, total_length=len(payload), compression=compression
        )
    else:
        stream = OutgoingByteStream(
            stream_id="s", timestamp_ms=1, total_length=len(payload), compression=compression
        )
    packets = [stream.open()]
    for start in range(0, len(payload), 10_001):
        packets += stream.write(payload[start : start + 10_001])
    packets += stream.close()
    rx = receiver()
    for packet in packets:
        rx.receive(decode_data_packet(encode_data_packet(packet)), 0.0)
    events = drain(rx)
    assert data_of(events) == payload
    assert isinstance(events[-1], StreamClosed)


@pytest.mark.parametrize("compression", [False, True])
def test_single_packet_round_trip(compression: bool) -> None:
    s = OutgoingTextStream(stream_id="s", timestamp_ms=1, compression=compression)
    packet = s.single_packet("abc " * 1000)
    assert packet is not None
    events = feed(receiver(), decode_data_packet(encode_data_packet(packet)))
    assert data_of(events) == b"abc " * 1000
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.info.compressed is compression


# ------------------------------------------------------------------ events and errors


def test_stream_error() -> None:
    error = StreamError(K.GAP, "s", "expected 1")
    assert isinstance(error, RemoteProtocolError)
    assert error.kind is K.GAP
    assert error.stream_id == "s"
    assert "gap" in str(error)
    assert "expected 1" in str(error)
    assert repr(error) == "StreamError(GAP, 's', 'expected 1')"
    assert str(StreamError(K.TIMEOUT, "x")) == "data stream 'x' failed: timeout"


def test_events_are_frozen() -> None:
    event = StreamChunkReceived(stream_id="s", data=b"x", index=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.index = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        StreamChunkReceived("s", b"x", 0)  # type: ignore[call-arg]


def test_decompressed_output_comes_in_bounded_pieces() -> None:
    payload = b"\0" * 1_000_000
    compressed = deflate_raw(payload)
    assert compressed is not None
    events = feed(
        receiver(),
        header("s", text=False, compressed=True, total=len(payload)),
        chunk("s", 0, compressed),
        trailer("s"),
    )
    pieces = [e for e in events if isinstance(e, StreamChunkReceived)]
    assert len(pieces) == 4
    assert all(len(e.data) <= 256 * 1024 for e in pieces)
    assert [e.index for e in pieces] == [0, 1, 2, 3]
    assert all(e.message is not None and e.message.chunk_index == 0 for e in pieces)
    assert data_of(events) == payload
    inline = feed(receiver(), header("i", text=False, compressed=True, inline=compressed))
    assert data_of(inline) == payload
    assert isinstance(inline[-1], StreamClosed)


# ------------------------------------------------------------------ receiver: full reconnects

REPLACED = pb.DUPLICATE_IDENTITY


def test_sender_replaced_stream_continues_and_drops_the_resend_replay() -> None:
    """The sender's old session is replaced (its full reconnect): the stream stays open, the
    chunks its resend repeats are dropped, and the rest completes it."""
    rx = receiver(reconnect_grace_s=10.0)
    feed(rx, header("a", total=6), chunk("a", 0, b"ab"), chunk("a", 1, b"cd"))
    rx.participant_left("alice", 5.0, reason=REPLACED)
    assert drain(rx) == []
    assert rx.get_timer() == 15.0
    ignored = rx.ignored_packets
    events = feed(rx, chunk("a", 1, b"cd"), chunk("a", 2, b"ef"), trailer("a"), now=7.0)
    assert kinds(events) == ["StreamChunkReceived", "StreamClosed"]
    assert data_of(events) == b"ef"
    assert rx.ignored_packets == ignored + 1


def test_sender_replaced_then_gap_fails_with_reconnected() -> None:
    rx = receiver()
    feed(rx, header("a"), chunk("a", 0, b"ab"))
    rx.participant_left("alice", 1.0, reason=REPLACED)
    events = feed(rx, chunk("a", 2, b"ef"), now=2.0)
    assert failure(events).kind is K.RECONNECTED
    assert rx.open_stream_ids == []


def test_sender_replaced_then_short_trailer_fails_with_reconnected() -> None:
    rx = receiver()
    feed(rx, header("a", total=6), chunk("a", 0, b"ab"))
    rx.participant_left("alice", 1.0, reason=REPLACED)
    events = feed(rx, trailer("a"), now=2.0)
    assert failure(events).kind is K.RECONNECTED


def test_sender_replaced_and_silent_fails_after_the_grace_not_the_timeout() -> None:
    rx = receiver(stream_timeout_s=120.0, reconnect_grace_s=10.0)
    feed(rx, header("a"), header("b"), now=0.0)
    rx.participant_left("alice", 50.0, reason=REPLACED)
    assert rx.get_timer() == 60.0
    rx.handle_timer(59.9)
    assert drain(rx) == []
    rx.handle_timer(60.0)
    events = drain(rx)
    assert [(e.stream_id, failure([e]).kind) for e in events] == [
        ("a", K.RECONNECTED),
        ("b", K.RECONNECTED),
    ]


def test_a_packet_after_the_replacement_restores_the_normal_timeout() -> None:
    rx = receiver(stream_timeout_s=120.0, reconnect_grace_s=10.0)
    feed(rx, header("a"), chunk("a", 0, b"x"), now=0.0)
    rx.participant_left("alice", 50.0, reason=REPLACED)
    feed(rx, chunk("a", 1, b"y"), now=55.0)
    assert rx.get_timer() == 175.0
    rx.handle_timer(175.0)
    assert failure(drain(rx)).kind is K.TIMEOUT


@pytest.mark.parametrize("reason", [pb.CLIENT_INITIATED, pb.UNKNOWN_REASON, pb.ROOM_DELETED])
def test_other_departures_are_sender_left(reason: pb.DisconnectReason.ValueType) -> None:
    rx = receiver()
    feed(rx, header("a"))
    rx.participant_left("alice", 1.0, reason=reason)
    assert failure(drain(rx)).kind is K.SENDER_LEFT


def test_without_the_replacement_a_repeated_chunk_is_still_a_duplicate() -> None:
    rx = receiver()
    events = feed(rx, header("a"), chunk("a", 0, b"x"), chunk("a", 0, b"x"))
    assert failure(events).kind is K.DUPLICATE


def test_our_full_reconnect_loses_a_chunk_reconnected() -> None:
    """A chunk skipped while our reconnect runs (the new session's first chunk) is RECONNECTED."""
    rx = receiver()
    feed(rx, header("a"), chunk("a", 0, b"x"))
    rx.reconnecting(1.0)
    events = feed(rx, chunk("a", 3, b"w"), now=2.0)
    assert failure(events).kind is K.RECONNECTED


def test_our_full_reconnect_fails_a_silent_stream_after_the_grace() -> None:
    rx = receiver(reconnect_grace_s=10.0)
    feed(rx, header("a"), chunk("a", 0, b"x"))
    rx.reconnecting(1.0)
    rx.reconnected(3.0, full=True)
    assert rx.get_timer() == 13.0
    rx.handle_timer(13.0)
    error = failure(drain(rx))
    assert error.kind is K.RECONNECTED
    assert "full reconnect" in error.detail


def test_our_full_reconnect_and_nothing_lost_completes() -> None:
    rx = receiver()
    feed(rx, header("a", total=2), chunk("a", 0, b"x"))
    rx.reconnecting(1.0)
    rx.reconnected(2.0, full=True)
    events = feed(rx, chunk("a", 1, b"y"), trailer("a"), now=3.0)
    assert kinds(events) == ["StreamChunkReceived", "StreamClosed"]


def test_a_resume_changes_nothing() -> None:
    rx = receiver(stream_timeout_s=120.0)
    feed(rx, header("a"), chunk("a", 0, b"x"), now=0.0)
    rx.reconnecting(1.0)
    rx.reconnected(2.0, full=False)
    assert rx.get_timer() == 120.0
    assert failure(feed(rx, chunk("a", 2, b"z"))).kind is K.GAP


def test_streams_opened_during_the_reconnect_are_not_marked() -> None:
    rx = receiver()
    rx.reconnecting(1.0)
    feed(rx, header("a"), chunk("a", 0, b"x"))
    rx.reconnected(2.0, full=True)
    assert failure(feed(rx, chunk("a", 2, b"z"))).kind is K.GAP


def test_trailer_without_total_is_held_during_our_reconnect() -> None:
    """No total_length: a trailer that comes while our reconnect runs cannot prove that the last
    chunk was not lost; it closes the stream after a resume, fails it after a full reconnect."""
    for full, expected in ((False, "StreamClosed"), (True, "StreamFailed")):
        rx = receiver()
        feed(rx, header("a"), chunk("a", 0, b"x"))
        rx.reconnecting(1.0)
        assert feed(rx, trailer("a"), chunk("a", 1, b"late"), now=2.0) == []
        rx.reconnected(3.0, full=full)
        events = drain(rx)
        assert kinds(events) == [expected]
        if full:
            assert failure(events).kind is K.RECONNECTED
        assert rx.open_stream_ids == []


def test_trailer_with_total_during_our_reconnect_is_judged_at_once() -> None:
    rx = receiver()
    feed(rx, header("a", total=2), header("b", total=2), chunk("a", 0, b"x"), chunk("b", 0, b"x"))
    rx.reconnecting(1.0)
    events = feed(rx, chunk("a", 1, b"y"), trailer("a"), trailer("b"), now=2.0)
    assert kinds(events) == ["StreamChunkReceived", "StreamClosed", "StreamFailed"]
    assert failure(events).kind is K.RECONNECTED


def test_an_abort_trailer_stays_abnormal_end_across_a_reconnect() -> None:
    rx = receiver()
    feed(rx, header("a"))
    rx.participant_left("alice", 1.0, reason=REPLACED)
    assert failure(feed(rx, trailer("a", reason="cancelled"))).kind is K.ABNORMAL_END


def test_reconnect_grace_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        receiver(reconnect_grace_s=0.0)
