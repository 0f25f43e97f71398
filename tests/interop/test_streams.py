"""Data streams (text and byte) between lkproto and the official SDK, both directions
(PROTOCOL-MAP §5).

lkproto advertises ``client_protocol`` 0, so the official SDK sends it classic streams (header,
chunks, trailer); lkproto sends the official SDK, which advertises data streams v2, single-packet
and compressed streams where the form allows (``choose_form``). Both SDKs share the API used
here (``send_text``, ``stream_text``, ``stream_bytes``, ``send_file``,
``register_*_stream_handler``), so each test is written once against both.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.core.streams import StreamErrorKind
from lkproto.errors import LocalProtocolError
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop._data_helpers import DIRECTIONS, Peer, data_room
from tests.interop._helpers import our_options

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

CAP = pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW

STREAM_TIMEOUT_S = 30.0
BIG_TIMEOUT_S = 120.0
EMOJI_TEXT = "héllo wörld 👋🏽 🇫🇷 👩‍👩‍👧‍👦 ✓ " * 3
# Large enough to cross many chunk boundaries inside multi-byte characters.
LONG_TEXT = "日本語のテキスト🎉" * 4000


@dataclass
class Got:
    """One incoming stream as seen by a handler."""

    sender: str
    info: Any
    task: asyncio.Task[Any]


def collect(peer: Peer, topic: str, *, text: bool) -> list[Got]:
    """Register a handler on ``peer`` for ``topic`` that reads each stream whole in a task."""
    got: list[Got] = []

    def handler(reader: Any, identity: str) -> None:
        if text:
            task = asyncio.ensure_future(reader.read_all())
        else:

            async def read_bytes() -> bytes:
                parts = [chunk async for chunk in reader]
                return b"".join(parts)

            task = asyncio.ensure_future(read_bytes())
        got.append(Got(identity, reader.info, task))

    if text:
        peer.room.register_text_stream_handler(topic, handler)
    else:
        peer.room.register_byte_stream_handler(topic, handler)
    return got


async def first(got: list[Got], within: float = STREAM_TIMEOUT_S) -> Got:
    async def wait() -> Got:
        while not got:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return got[0]

    return await asyncio.wait_for(wait(), scaled(within))


async def result(item: Got, within: float = STREAM_TIMEOUT_S) -> Any:
    return await asyncio.wait_for(asyncio.shield(item.task), scaled(within))


def stream_error(peer: Peer) -> type[Exception]:
    return lrtc.StreamError if peer.official else rtc.StreamError


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_send_text_attributes_and_emoji(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "ds-text") as room:
        sender, receiver = room.pair(direction)
        got = collect(receiver, "chat", text=True)
        attributes = {"k": "v ✓", "emoji": "🚀"}
        info = await asyncio.wait_for(
            sender.local.send_text(EMOJI_TEXT, topic="chat", attributes=attributes),
            scaled(STREAM_TIMEOUT_S),
        )
        item = await first(got)
        assert await result(item) == EMOJI_TEXT
        assert item.sender == sender.identity
        assert item.info.stream_id == info.stream_id
        assert item.info.topic == "chat"
        assert item.info.mime_type == "text/plain"
        assert item.info.attributes == attributes
        # A long text crosses chunk boundaries inside characters.
        await asyncio.wait_for(
            sender.local.send_text(LONG_TEXT, topic="chat"), scaled(STREAM_TIMEOUT_S)
        )
        await asyncio.wait_for(_until(lambda: len(got) == 2), scaled(STREAM_TIMEOUT_S))
        assert await result(got[1]) == LONG_TEXT


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_stream_text_writer(livekit_server: LocalServer, direction: tuple[str, str]) -> None:
    async with data_room(livekit_server, "ds-writer") as room:
        sender, receiver = room.pair(direction)
        got = collect(receiver, "tokens", text=True)
        writer = await sender.local.stream_text(topic="tokens", attributes={"a": "1"})
        pieces = ["Hi ", "👋🏽", " there", "—", "✓"]
        for piece in pieces:
            await writer.write(piece)
        await writer.aclose(attributes={"b": "2"})
        item = await first(got)
        assert await result(item) == "".join(pieces)
        assert item.info.attributes == {"a": "1", "b": "2"}


async def _until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def _send_bytes_writer(sender: Peer, data: bytes, topic: str) -> float:
    start = time.monotonic()
    writer = await sender.local.stream_bytes("blob.bin", total_size=len(data), topic=topic)
    step = 64 * 1024
    for offset in range(0, len(data), step):
        await writer.write(data[offset : offset + step])
    await writer.aclose()
    return time.monotonic() - start


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_byte_stream_2mb_sha256(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "ds-bytes") as room:
        sender, receiver = room.pair(direction)
        got = collect(receiver, "blob", text=False)
        data = os.urandom(2 * 1024 * 1024)
        start = time.monotonic()
        await asyncio.wait_for(_send_bytes_writer(sender, data, "blob"), scaled(BIG_TIMEOUT_S))
        item = await first(got)
        received = await result(item, BIG_TIMEOUT_S)
        elapsed = time.monotonic() - start
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()
        assert item.info.name == "blob.bin"
        assert item.info.size == len(data)
        print(f"\n{direction}: 2 MiB byte stream in {elapsed:.2f} s = {2 / elapsed:.1f} MiB/s")


@pytest.mark.parametrize("size_mib", [2, 20])
@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_send_file_sha256(
    livekit_server: LocalServer, direction: tuple[str, str], size_mib: int, tmp_path: Path
) -> None:
    async with data_room(livekit_server, "ds-file") as room:
        sender, receiver = room.pair(direction)
        got = collect(receiver, "files", text=False)
        path = tmp_path / "payload.dat"
        # Mixed content: random (incompressible) and zeros (compressible, for the v2 path).
        block = os.urandom(512 * 1024) + bytes(512 * 1024)
        path.write_bytes(block * size_mib)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        start = time.monotonic()
        info = await asyncio.wait_for(
            sender.local.send_file(str(path), topic="files"), scaled(BIG_TIMEOUT_S)
        )
        item = await first(got)
        received = await result(item, BIG_TIMEOUT_S)
        elapsed = time.monotonic() - start
        assert hashlib.sha256(received).hexdigest() == digest
        assert item.info.name == "payload.dat"
        assert item.info.stream_id == info.stream_id
        print(
            f"\n{direction}: send_file {size_mib} MiB in {elapsed:.2f} s "
            f"= {size_mib / elapsed:.1f} MiB/s"
        )


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_concurrent_streams_three_topics(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "ds-concurrent") as room:
        sender, receiver = room.pair(direction)
        topics = ["t1", "t2", "t3"]
        text_got = {t: collect(receiver, t, text=True) for t in topics}
        byte_got = {t: collect(receiver, t, text=False) for t in topics}
        payloads = {t: (f"{t}:" + "✓ü" * 20_000, os.urandom(300_000)) for t in topics}

        async def send_topic(topic: str) -> None:
            text, data = payloads[topic]
            writer = await sender.local.stream_text(topic=topic)
            for offset in range(0, len(text), 7_000):
                await writer.write(text[offset : offset + 7_000])
                await asyncio.sleep(0)
            await writer.aclose()
            await _send_bytes_writer(sender, data, topic)

        await asyncio.wait_for(
            asyncio.gather(*(send_topic(t) for t in topics)), scaled(BIG_TIMEOUT_S)
        )
        for topic in topics:
            text, data = payloads[topic]
            assert await result(await first(text_got[topic])) == text
            assert await result(await first(byte_got[topic])) == data
            assert len(text_got[topic]) == 1
            assert len(byte_got[topic]) == 1


async def test_sender_disconnect_mid_stream_fails_our_reader(
    livekit_server: LocalServer,
) -> None:
    async with data_room(livekit_server, "ds-abort") as room:
        sender, receiver = room.sdk, room.lk
        got = collect(receiver, "partial", text=False)
        writer = await sender.local.stream_bytes(
            "partial.bin", total_size=10_000_000, topic="partial"
        )
        await writer.write(os.urandom(100_000))
        item = await first(got)
        await asyncio.sleep(scaled(0.5))
        await asyncio.wait_for(sender.room.disconnect(), scaled(STREAM_TIMEOUT_S))
        with pytest.raises(rtc.StreamError) as info:
            await result(item)
        assert isinstance(info.value, ConnectionError)
        assert info.value.kind is StreamErrorKind.SENDER_LEFT


async def test_our_writer_abort_reaches_official_reader(livekit_server: LocalServer) -> None:
    async with data_room(livekit_server, "ds-abort-ours") as room:
        sender, receiver = room.lk, room.sdk
        got = collect(receiver, "partial", text=True)

        class Boom(Exception):
            pass

        with pytest.raises(Boom):  # noqa: PT012 - the context manager's exit is under test
            async with await sender.local.stream_text(topic="partial") as writer:
                await writer.write("some text")
                raise Boom
        item = await first(got)
        with pytest.raises(stream_error(receiver)):
            await result(item)


async def test_internal_rpc_topics_are_reserved(livekit_server: LocalServer) -> None:
    async with data_room(livekit_server, "ds-reserved") as room:
        with pytest.raises(ValueError, match="reserved"):
            room.lk.room.register_text_stream_handler("lk.rpc_request", lambda r, i: None)
        room.lk.room.register_text_stream_handler("x", lambda r, i: None)
        with pytest.raises(ValueError, match="already set"):
            room.lk.room.register_text_stream_handler("x", lambda r, i: None)


async def test_form_follows_official_peer_capabilities(livekit_server: LocalServer) -> None:
    """What we send the official SDK follows its advertised client_protocol/capabilities."""
    sent: list[Any] = []

    def trace(direction: str, channel: str, message: Any, raw: bytes, now: float) -> None:
        if (
            direction == ">"
            and isinstance(message, pb.DataPacket)
            and str(message.WhichOneof("value")).startswith("stream_")
        ):
            sent.append(message)

    async with data_room(livekit_server, "ds-form", trace=trace) as room:
        sdk_info = room.lk.room.remote_participants["sdk"].info
        got = collect(room.sdk, "f", text=True)
        text = "squeeze " * 1000
        await asyncio.wait_for(room.lk.local.send_text(text, topic="f"), scaled(STREAM_TIMEOUT_S))
        assert await result(await first(got)) == text
        kinds = [m.WhichOneof("value") for m in sent]
        print(
            f"\nofficial peer: client_protocol={sdk_info.client_protocol} "
            f"capabilities={list(sdk_info.capabilities)}; we sent {kinds}"
        )
        if sdk_info.client_protocol >= 2:
            assert kinds == ["stream_header"]
            if CAP in sdk_info.capabilities:
                assert sent[0].stream_header.compression == pb.DataStream.DEFLATE_RAW
        else:
            assert kinds[0] == "stream_header"
            assert kinds[-1] == "stream_trailer"


# -- receive limits through RoomOptions.data_stream (official DataStreamOptions + extras) -----


async def test_max_payload_byte_length_refuses_announced_oversize(
    livekit_server: LocalServer,
) -> None:
    """The official field: a text stream announcing 50 000 bytes fails at once for a 1 000 cap."""
    limits = rtc.DataStreamOptions(max_payload_byte_length=1_000)
    async with data_room(livekit_server, "ds-cap", data_stream=limits) as room:
        got = collect(room.lk, "capped", text=True)
        small = collect(room.lk, "small", text=True)
        await room.sdk.local.send_text("x" * 50_000, topic="capped")
        with pytest.raises(rtc.StreamError) as info:
            await result(await first(got))
        assert info.value.kind is StreamErrorKind.TOO_LARGE
        # The cap is per stream: a payload under it still arrives whole afterwards.
        await room.sdk.local.send_text("y" * 900, topic="small")
        assert await result(await first(small)) == "y" * 900


async def test_max_payload_byte_length_stops_unannounced_stream(
    livekit_server: LocalServer,
) -> None:
    """A byte stream without total_size is cut off once it passes the cap, not buffered."""
    limits = rtc.DataStreamOptions(max_payload_byte_length=40_000)
    async with data_room(livekit_server, "ds-cap-open", data_stream=limits) as room:
        got = collect(room.lk, "open", text=False)
        writer = await room.sdk.local.stream_bytes("open.bin", topic="open")
        for _ in range(5):
            await writer.write(os.urandom(15_000))
        await writer.aclose()
        item = await first(got)
        assert item.info.size == 0  # no total_length announced (official: size 0)
        with pytest.raises(rtc.StreamError) as info:
            await result(item)
        assert info.value.kind is StreamErrorKind.TOO_LARGE


async def test_stream_timeout_fails_a_stalled_official_stream(
    livekit_server: LocalServer,
) -> None:
    """A header and one chunk, then silence: the reader fails with TIMEOUT, the sender's
    connection is unaffected, and a stream that keeps sending within the timeout completes."""
    limits = rtc.DataStreamOptions(stream_timeout=scaled(1.5))
    async with data_room(livekit_server, "ds-stall", data_stream=limits) as room:
        stalled = collect(room.lk, "stalled", text=False)
        steady = collect(room.lk, "steady", text=False)
        writer = await room.sdk.local.stream_bytes("s.bin", total_size=30_000, topic="stalled")
        await writer.write(b"a" * 15_000)
        with pytest.raises(rtc.StreamError) as info:
            await result(await first(stalled))
        assert info.value.kind is StreamErrorKind.TIMEOUT

        slow = await room.sdk.local.stream_bytes("t.bin", total_size=5 * 1_000, topic="steady")
        for _ in range(5):
            await slow.write(b"b" * 1_000)
            await asyncio.sleep(scaled(0.5))
        await slow.aclose()
        assert await result(await first(steady)) == b"b" * 5_000
        await writer.aclose()


async def test_bad_data_stream_options_leave_room_unconnected(
    livekit_server: LocalServer,
) -> None:
    room = rtc.Room()
    token = livekit_server.create_token("bad-limits", "ds-bad-limits")
    bad = rtc.RoomOptions(data_stream=rtc.DataStreamOptions(max_open_streams=0))
    with pytest.raises(LocalProtocolError, match="max_open_streams"):
        await room.connect(livekit_server.url, token, bad)
    assert not room.isconnected()
    # The same Room object can still connect once the options are fixed.
    await asyncio.wait_for(
        room.connect(livekit_server.url, token, our_options()), scaled(STREAM_TIMEOUT_S)
    )
    try:
        assert room.isconnected()
    finally:
        await room.disconnect()
