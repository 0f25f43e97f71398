"""Data streams without a server: the driver (lkproto.asyncio.streams), the public readers and
writers (lkproto.rtc.data_stream), the room's routing and the participant's send methods."""

from __future__ import annotations

import asyncio
import hashlib
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.asyncio.streams import IncomingStream, StreamDriver, recipients_form
from lkproto.core import streams as cs
from lkproto.errors import LocalProtocolError, StreamClosedError
from lkproto.rtc.participant import LocalParticipant
from lkproto.wire import pb

CAP = pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW


def text_packets(
    text: str, *, topic: str = "t", sender: str = "bob", stream_id: str = "s1", **kw: Any
) -> list[pb.DataPacket]:
    stream = cs.OutgoingTextStream(stream_id=stream_id, timestamp_ms=1, topic=topic, **kw)
    packets = [stream.open(), *stream.write(text), *stream.close()]
    for p in packets:
        p.participant_identity = sender
    return packets


def byte_packets(
    data: bytes, *, topic: str = "t", sender: str = "bob", stream_id: str = "b1", **kw: Any
) -> list[pb.DataPacket]:
    stream = cs.OutgoingByteStream(stream_id=stream_id, timestamp_ms=1, topic=topic, **kw)
    packets = [stream.open(), *stream.write(data), *stream.close()]
    for p in packets:
        p.participant_identity = sender
    return packets


class Opened:
    def __init__(self) -> None:
        self.streams: list[IncomingStream] = []

    def __call__(self, stream: IncomingStream) -> None:
        self.streams.append(stream)


def driver(topics: set[str] | None = None, **kw: Any) -> tuple[StreamDriver, Opened]:
    opened = Opened()
    wanted = {"t"} if topics is None else topics
    return StreamDriver(handler_for=lambda t, _text: t in wanted, on_opened=opened, **kw), opened


# -- driver + readers ------------------------------------------------------------------------


async def test_text_stream_roundtrip_through_reader() -> None:
    drv, opened = driver()
    text = "héllo 👋🏽 " * 5000
    for p in text_packets(text, attributes={"a": "1"}, total_length=len(text.encode())):
        drv.receive(p)
    reader = rtc.TextStreamReader(opened.streams[0])
    assert reader.info.topic == "t"
    assert reader.info.size == len(text.encode())
    assert reader.info.attributes == {"a": "1"}
    assert await reader.read_all() == text
    assert drv.open_streams == []


async def test_byte_stream_iteration_and_read_all() -> None:
    drv, opened = driver()
    data = os.urandom(100_000)
    for p in byte_packets(data, name="f.bin"):
        drv.receive(p)
    reader = rtc.ByteStreamReader(opened.streams[0])
    assert reader.info.name == "f.bin"
    assert reader.info.size == 0  # not announced: 0, as the official reader reports it
    chunks = [c async for c in reader]
    assert b"".join(chunks) == data
    assert all(len(c) <= 15_000 for c in chunks)


async def test_reader_waits_for_data_arriving_later() -> None:
    drv, opened = driver()
    packets = byte_packets(b"x" * 40_000)
    drv.receive(packets[0])
    reader = rtc.ByteStreamReader(opened.streams[0])
    task = asyncio.ensure_future(reader.read_all())
    await asyncio.sleep(0)
    assert not task.done()
    for p in packets[1:]:
        drv.receive(p)
        await asyncio.sleep(0)
    assert await asyncio.wait_for(task, 5) == b"x" * 40_000


async def test_trailer_attributes_merged_into_info() -> None:
    drv, opened = driver()
    stream = cs.OutgoingTextStream(stream_id="s", timestamp_ms=1, topic="t", attributes={"a": "1"})
    for p in [stream.open(), *stream.write("x"), *stream.close(attributes={"b": "2"})]:
        drv.receive(p)
    reader = rtc.TextStreamReader(opened.streams[0])
    assert await reader.read_all() == "x"
    assert reader.info.attributes == {"a": "1", "b": "2"}


async def test_inline_compressed_stream() -> None:
    drv, opened = driver()
    data = b"abc" * 10_000
    stream = cs.OutgoingByteStream(stream_id="s", timestamp_ms=1, topic="t", compression=True)
    packet = stream.single_packet(data)
    assert packet is not None
    assert packet.stream_header.compression == pb.DataStream.DEFLATE_RAW
    drv.receive(packet)
    assert await rtc.ByteStreamReader(opened.streams[0]).read_all() == data


async def test_abnormal_trailer_raises_stream_error_after_data() -> None:
    drv, opened = driver()
    stream = cs.OutgoingTextStream(stream_id="s", timestamp_ms=1, topic="t")
    drv.receive(stream.open())
    for p in stream.write("partial"):
        drv.receive(p)
    for p in stream.close("cancelled"):
        drv.receive(p)
    reader = rtc.TextStreamReader(opened.streams[0])
    assert await reader.__anext__() == "partial"
    with pytest.raises(rtc.StreamError) as info:
        await reader.__anext__()
    assert isinstance(info.value, ConnectionError)
    assert info.value.kind is cs.StreamErrorKind.ABNORMAL_END
    assert "cancelled" in info.value.description
    with pytest.raises(StopAsyncIteration):
        await reader.__anext__()


async def test_sender_left_and_room_close_fail_readers() -> None:
    drv, opened = driver()
    drv.receive(text_packets("a", sender="bob", stream_id="s1")[0])
    drv.receive(text_packets("a", sender="eve", stream_id="s2")[0])
    drv.participant_left("bob")
    bob, eve = (rtc.TextStreamReader(s) for s in opened.streams)
    with pytest.raises(rtc.StreamError) as info:
        await bob.read_all()
    assert info.value.kind is cs.StreamErrorKind.SENDER_LEFT
    assert [s.info.stream_id for s in drv.open_streams] == ["s2"]
    drv.close()
    with pytest.raises(rtc.StreamError) as info:
        await eve.read_all()
    assert info.value.kind is cs.StreamErrorKind.ABNORMAL_END
    drv.receive(text_packets("a", stream_id="s3")[0])  # ignored once closed
    assert len(opened.streams) == 2


async def test_memory_cap_fails_only_the_slow_stream() -> None:
    drv, opened = driver(max_buffered_bytes=50_000)
    slow = byte_packets(b"s" * 100_000, stream_id="slow")
    fast = byte_packets(b"f" * 100_000, stream_id="fast")
    drv.receive(slow[0])
    drv.receive(fast[0])
    fast_reader = rtc.ByteStreamReader(opened.streams[1])
    fast_task = asyncio.ensure_future(fast_reader.read_all())
    for a, b in zip(slow[1:], fast[1:], strict=True):
        drv.receive(a)
        drv.receive(b)
        await asyncio.sleep(0)
    assert await fast_task == b"f" * 100_000
    slow_reader = rtc.ByteStreamReader(opened.streams[0])
    got = b""
    with pytest.raises(rtc.StreamError) as info:  # noqa: PT012 - data first, then the error
        async for chunk in slow_reader:
            got += chunk
    assert 0 < len(got) <= 50_000
    assert "behind" in str(info.value)
    assert drv.open_streams == []


async def test_reader_close_drops_the_rest() -> None:
    drv, opened = driver()
    packets = byte_packets(b"z" * 60_000)
    drv.receive(packets[0])
    reader = rtc.ByteStreamReader(opened.streams[0])
    reader.close()
    for p in packets[1:]:
        drv.receive(p)
    assert opened.streams[0].buffered_bytes == 0
    assert [c async for c in reader] == []


async def test_internal_topics_never_dispatched() -> None:
    drv, opened = driver(topics={"lk.rpc_request", "lk.rpc_response", "t"})
    for p in text_packets("x", topic="lk.rpc_request"):
        drv.receive(p)
    for p in text_packets("x", topic="lk.rpc_response", stream_id="s2"):
        drv.receive(p)
    assert opened.streams == []


async def test_timeout_fails_stalled_stream() -> None:
    drv, opened = driver(stream_timeout_s=0.05)
    drv.receive(text_packets("x")[0])
    reader = rtc.TextStreamReader(opened.streams[0])
    with pytest.raises(rtc.StreamError) as info:
        await asyncio.wait_for(reader.read_all(), 5)
    assert info.value.kind is cs.StreamErrorKind.TIMEOUT


# -- form choice -----------------------------------------------------------------------------


def pinfo(
    identity: str, protocol: int = 0, caps: tuple[pb.ClientInfo.Capability.ValueType, ...] = ()
) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(identity=identity, client_protocol=protocol, capabilities=caps)


def test_recipients_form() -> None:
    v0, v2, v2c = pinfo("a"), pinfo("b", 2), pinfo("c", 2, (CAP,))
    assert recipients_form([], []) == (True, True)
    assert recipients_form([v0, v2c], []) == (False, False)
    assert recipients_form([v0, v2c], ["c"]) == (True, True)
    assert recipients_form([v2, v2c], []) == (True, False)
    assert recipients_form([v2c], ["c", "missing"]) == (False, False)


# -- room routing ----------------------------------------------------------------------------


def room_with_driver() -> rtc.Room:
    room = rtc.Room()
    room._streams = StreamDriver(
        handler_for=room._has_stream_handler, on_opened=room._on_stream_opened
    )
    return room


def feed(room: rtc.Room, packets: list[pb.DataPacket]) -> None:
    for p in packets:
        room._on_data(en.DataReceived(packet=p, reliable=True))


async def test_room_routes_streams_to_handlers_by_kind_and_topic() -> None:
    room = room_with_driver()
    texts: list[tuple[asyncio.Task[str], str]] = []
    blobs: list[asyncio.Task[bytes]] = []
    room.register_text_stream_handler(
        "chat", lambda r, who: texts.append((asyncio.ensure_future(r.read_all()), who))
    )
    room.register_byte_stream_handler(
        "chat", lambda r, who: blobs.append(asyncio.ensure_future(r.read_all()))
    )
    feed(room, text_packets("hi", topic="chat", sender="bob"))
    feed(room, byte_packets(b"\x00\x01", topic="chat"))
    feed(room, text_packets("nobody", topic="other", stream_id="x"))
    feed(room, text_packets("rpc", topic="lk.rpc_request", stream_id="y"))
    assert await texts[0][0] == "hi"
    assert texts[0][1] == "bob"
    assert await blobs[0] == b"\x00\x01"
    assert len(texts) == 1
    assert len(blobs) == 1


async def test_room_async_handler_is_run() -> None:
    room = room_with_driver()
    done: list[str] = []

    async def handler(reader: rtc.TextStreamReader, who: str) -> None:
        done.append(await reader.read_all())

    room.register_text_stream_handler("t", handler)  # type: ignore[arg-type]
    feed(room, text_packets("x"))
    await asyncio.sleep(0.01)
    assert done == ["x"]


def test_register_rules() -> None:
    room = rtc.Room()
    room.register_text_stream_handler("a", lambda r, i: None)
    with pytest.raises(ValueError, match="already set"):
        room.register_text_stream_handler("a", lambda r, i: None)
    room.register_byte_stream_handler("a", lambda r, i: None)  # other kind: fine
    with pytest.raises(ValueError, match="already set"):
        room.register_byte_stream_handler("a", lambda r, i: None)
    room.unregister_text_stream_handler("a")
    room.unregister_text_stream_handler("a")  # no-op
    room.register_text_stream_handler("a", lambda r, i: None)
    for topic in ("lk.rpc_request", "lk.rpc_response"):
        with pytest.raises(ValueError, match="reserved"):
            room.register_text_stream_handler(topic, lambda r, i: None)
        with pytest.raises(ValueError, match="reserved"):
            room.register_byte_stream_handler(topic, lambda r, i: None)


# -- sending ---------------------------------------------------------------------------------


class FakeRoster:
    def __init__(self, remotes: Mapping[str, pb.ParticipantInfo]) -> None:
        self.remotes = remotes


class FakeEngine:
    def __init__(self, *remotes: pb.ParticipantInfo, fail_after: int | None = None) -> None:
        self.roster = FakeRoster({r.identity: r for r in remotes})
        self.sent: list[pb.DataPacket] = []
        self.fail_after = fail_after

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        assert reliable
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            from lkproto.errors import ConnectError

            raise ConnectError("not connected")
        await asyncio.sleep(0)
        copy = pb.DataPacket()
        copy.CopyFrom(packet)
        self.sent.append(copy)


def local(engine: FakeEngine) -> LocalParticipant:
    return LocalParticipant(
        pb.ParticipantInfo(identity="me"), cast("Any", engine), cast("Any", None)
    )


def kinds(packets: list[pb.DataPacket]) -> list[str]:
    return [str(p.WhichOneof("value")) for p in packets]


async def reassemble(packets: list[pb.DataPacket], *, text: bool) -> Any:
    drv, opened = driver(topics={"", "t"})
    for p in packets:
        drv.receive(p)
    if text:
        return await rtc.TextStreamReader(opened.streams[0]).read_all()
    return await rtc.ByteStreamReader(opened.streams[0]).read_all()


async def test_send_text_classic_to_v0_peer() -> None:
    engine = FakeEngine(pinfo("old"))
    info = await local(engine).send_text("héllo", topic="t", attributes={"a": "b"})
    assert kinds(engine.sent) == ["stream_header", "stream_chunk", "stream_trailer"]
    header = engine.sent[0].stream_header
    assert header.total_length == len("héllo".encode())
    assert header.attributes == {"a": "b"}
    assert info.stream_id == header.stream_id
    assert info.size == 6
    assert await reassemble(engine.sent, text=True) == "héllo"


async def test_send_text_inline_and_compressed_to_v2_peers() -> None:
    engine = FakeEngine(pinfo("new", 2, (CAP,)))
    text = "compress me " * 500
    await local(engine).send_text(text, topic="t")
    assert kinds(engine.sent) == ["stream_header"]
    header = engine.sent[0].stream_header
    assert header.compression == pb.DataStream.DEFLATE_RAW
    assert zlib.decompress(header.inline_content, -15).decode() == text
    assert await reassemble(engine.sent, text=True) == text
    # compress=False: inline but not compressed
    engine.sent.clear()
    await local(engine).send_text("x" * 100, topic="t", compress=False)
    assert engine.sent[0].stream_header.compression == pb.DataStream.NONE
    assert engine.sent[0].stream_header.inline_content == b"x" * 100


async def test_send_text_mixed_room_uses_classic_even_if_destination_is_v2() -> None:
    engine = FakeEngine(pinfo("old"), pinfo("new", 2, (CAP,)))
    await local(engine).send_text("x", topic="t")
    assert kinds(engine.sent)[0] == "stream_header"
    assert len(engine.sent) == 3
    engine.sent.clear()
    await local(engine).send_text("x", topic="t", destination_identities=["new"])
    assert len(engine.sent) == 1
    assert list(engine.sent[0].destination_identities) == ["new"]


async def test_stream_text_writer_progress_and_context_manager() -> None:
    engine = FakeEngine(pinfo("new", 2, (CAP,)))
    writer = await local(engine).stream_text(topic="t", total_size=8)
    assert isinstance(writer, rtc.TextStreamWriter)
    async with writer:
        await writer.write("abcd")
        assert (writer.bytes_sent, writer.total, writer.progress) == (4, 8, 0.5)
        await writer.write("efgh")
    # never compressed, classic form even to v2 peers
    assert kinds(engine.sent) == ["stream_header", "stream_chunk", "stream_chunk", "stream_trailer"]
    assert engine.sent[0].stream_header.compression == pb.DataStream.NONE
    assert await reassemble(engine.sent, text=True) == "abcdefgh"
    with pytest.raises(RuntimeError):
        await writer.write("more")
    with pytest.raises(RuntimeError):
        await writer.aclose()


async def test_writer_context_exception_aborts() -> None:
    engine = FakeEngine()
    with pytest.raises(KeyError):  # noqa: PT012 - the context manager's exit is under test
        async with await local(engine).stream_bytes("n", topic="t") as writer:
            await writer.write(b"abc")
            raise KeyError("boom")
    trailer = engine.sent[-1].stream_trailer
    assert "KeyError" in trailer.reason


async def test_send_file_streams_from_disk(tmp_path: Path) -> None:
    engine = FakeEngine(pinfo("old"))
    path = tmp_path / "photo.png"
    data = os.urandom(100_000)
    path.write_bytes(data)
    progress: list[tuple[int, int]] = []
    info = await local(engine).send_file(
        str(path), topic="t", on_progress=lambda s, t: progress.append((s, t))
    )
    assert info.name == "photo.png"
    assert info.mime_type == "image/png"
    assert info.size == 100_000
    header = engine.sent[0].stream_header
    assert (header.byte_header.name, header.total_length) == ("photo.png", 100_000)
    assert all(len(p.stream_chunk.content) <= 15_000 for p in engine.sent[1:-1])
    assert progress[-1] == (100_000, 100_000)
    got = await reassemble(engine.sent, text=False)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


async def test_send_file_compressed_to_v2_peer(tmp_path: Path) -> None:
    engine = FakeEngine(pinfo("new", 2, (CAP,)))
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(200_000))
    await local(engine).send_file(str(path), topic="t")
    assert engine.sent[0].stream_header.compression == pb.DataStream.DEFLATE_RAW
    assert len(engine.sent) < 10
    assert await reassemble(engine.sent, text=False) == bytes(200_000)


async def test_send_bytes_small_inline() -> None:
    engine = FakeEngine(pinfo("new", 2))
    info = await local(engine).send_bytes(b"\x01\x02", topic="t", name="n")
    assert kinds(engine.sent) == ["stream_header"]
    assert (info.name, info.size, info.mime_type) == ("n", 2, "application/octet-stream")


async def test_send_failure_raises_stream_error() -> None:
    engine = FakeEngine(fail_after=2)
    with pytest.raises(rtc.StreamError) as info:
        await local(engine).send_bytes(os.urandom(100_000), topic="t")
    assert isinstance(info.value, ConnectionError)
    assert "not connected" in info.value.description


async def test_local_misuse_is_local_protocol_error_not_stream_error() -> None:
    engine = FakeEngine()
    participant = local(engine)
    with pytest.raises(LocalProtocolError) as info:
        await participant.send_text("x", attributes={"k": "v" * 20_000})
    assert not isinstance(info.value, rtc.StreamError)
    with pytest.raises(LocalProtocolError):
        await participant.send_bytes(b"x", topic=7)  # type: ignore[arg-type]
    assert engine.sent == []
    writer = await participant.stream_bytes("n", total_size=2, topic="t")
    with pytest.raises(LocalProtocolError, match="exceeds total_length"):
        await writer.write(b"abc")
    await writer.write(b"ab")
    await writer.aclose()
    # A closed writer: lkproto's local-misuse error, and the official SDK's RuntimeError.
    for call in (writer.write(b"z"), writer.aclose()):
        with pytest.raises(StreamClosedError) as closed:
            await call
        assert isinstance(closed.value, LocalProtocolError)
        assert isinstance(closed.value, RuntimeError)
