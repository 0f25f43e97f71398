"""lkproto <-> livekit-client in headless Chromium: data streams (text, 5 MB files, compression).

The browser side is npm ``livekit-client`` driven through ``tests/interop/browser/harness.py``.
Large payloads never cross the JSON pipe: the page generates them deterministically
(``sendGeneratedBytes``, reproducible with :func:`generated_bytes`) and reports the SHA-256 of what
it receives (``registerByteStreamDigest``, ``crypto.subtle.digest``).

livekit-client compresses (deflate-raw) only for recipients whose ``ParticipantInfo`` advertises
``client_protocol >= 2`` and ``CAP_COMPRESSION_DEFLATE_RAW``; the compressed-stream test watches
lkproto's packet trace to prove the browser really compressed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from lkproto.wire import join, pb
from tests.interop.browser.harness import BrowserPeer, generated_bytes, started_browser

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

ROSTER_TIMEOUT_S = 15.0
STREAM_TIMEOUT_S = 30.0
BIG_TIMEOUT_S = 120.0
FIVE_MB = 5 * 1024 * 1024
EMOJI_TEXT = "héllo wörld 👋🏽 🇫🇷 👩‍👩‍👧‍👦 ✓ " * 3
LONG_TEXT = "日本語のテキスト🎉 " * 4000  # crosses chunk boundaries inside characters
ATTRIBUTES = {"k": "v ✓", "emoji": "🚀"}
DEFLATE_RAW = pb.DataStream.DEFLATE_RAW


@dataclass
class Lk:
    """The lkproto side: its room and every stream header it received (from the packet trace)."""

    room: rtc.Room
    headers: list[pb.DataStream.Header] = field(default_factory=list)

    def trace(self, direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        if (
            direction == "<"
            and isinstance(message, pb.DataPacket)
            and message.WhichOneof("value") == "stream_header"
        ):
            header = pb.DataStream.Header()
            header.CopyFrom(message.stream_header)
            self.headers.append(header)


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    async with started_browser() as peer:  # BrowserSetupError names the fix if not set up
        yield peer


async def _until(predicate: Callable[[], bool], what: str, limit_s: float) -> None:
    async with asyncio.timeout(scaled(limit_s)):
        while not predicate():  # noqa: ASYNC110 (polling state another task fills)
            await asyncio.sleep(0.05)
    assert predicate(), what


@pytest.fixture
async def lk(livekit_server: LocalServer, browser: BrowserPeer) -> AsyncIterator[Lk]:
    room_name = f"lk-web-ds-{uuid.uuid4().hex[:10]}"
    side = Lk(rtc.Room())
    try:
        await side.room.connect(
            livekit_server.url,
            livekit_server.create_token("lk", room_name),
            rtc.RoomOptions(
                rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]), trace=side.trace
            ),
        )
        await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
        await _until(
            lambda: "web" in side.room.remote_participants, "lkproto sees web", ROSTER_TIMEOUT_S
        )
        await browser.wait_for_remote("lk", ROSTER_TIMEOUT_S)
        yield side
    finally:
        await side.room.disconnect()


@dataclass
class Incoming:
    identity: str
    info: Any
    task: asyncio.Task[Any]


def collect_text(room: rtc.Room, topic: str) -> list[Incoming]:
    got: list[Incoming] = []

    def handler(reader: rtc.TextStreamReader, identity: str) -> None:
        got.append(Incoming(identity, reader.info, asyncio.ensure_future(reader.read_all())))

    room.register_text_stream_handler(topic, handler)
    return got


def collect_digests(room: rtc.Room, topic: str) -> list[Incoming]:
    """Each byte stream on ``topic`` -> task returning ``(size, sha256 hex, chunk count)``."""
    got: list[Incoming] = []

    async def digest(reader: rtc.ByteStreamReader) -> tuple[int, str, int]:
        h = hashlib.sha256()
        size = chunks = 0
        async for chunk in reader:
            h.update(chunk)
            size += len(chunk)
            chunks += 1
        return size, h.hexdigest(), chunks

    def handler(reader: rtc.ByteStreamReader, identity: str) -> None:
        got.append(Incoming(identity, reader.info, asyncio.ensure_future(digest(reader))))

    room.register_byte_stream_handler(topic, handler)
    return got


async def _nth(got: list[Incoming], n: int, within: float = STREAM_TIMEOUT_S) -> Incoming:
    await _until(lambda: len(got) > n, f"stream #{n + 1} arrived", within)
    return got[n]


async def _result(item: Incoming, within: float = STREAM_TIMEOUT_S) -> Any:
    return await asyncio.wait_for(asyncio.shield(item.task), scaled(within))


async def test_text_stream_each_way(browser: BrowserPeer, lk: Lk) -> None:
    room = lk.room
    # lkproto -> browser
    await browser.register_text_stream("to.web")
    info = await room.local_participant.send_text(EMOJI_TEXT, topic="to.web", attributes=ATTRIBUTES)
    ev = await browser.wait_event("TextStreamReceived", lambda e: e["topic"] == "to.web")
    assert ev["text"] == EMOJI_TEXT
    assert ev["identity"] == "lk"
    assert ev["info"]["id"] == info.stream_id
    assert ev["info"]["attributes"] == ATTRIBUTES
    assert ev["info"]["mimeType"] == "text/plain"
    seen = browser.last_seq
    await room.local_participant.send_text(LONG_TEXT, topic="to.web")
    ev = await browser.wait_event(
        "TextStreamReceived", lambda e: e["topic"] == "to.web", STREAM_TIMEOUT_S, since=seen
    )
    assert ev["text"] == LONG_TEXT

    # browser -> lkproto
    got = collect_text(room, "to.lk")
    sent = await browser.send_text(EMOJI_TEXT, topic="to.lk", attributes=ATTRIBUTES)
    item = await _nth(got, 0)
    assert await _result(item) == EMOJI_TEXT
    assert item.identity == "web"
    assert item.info.stream_id == sent["id"]
    assert item.info.topic == "to.lk"
    assert item.info.mime_type == "text/plain"
    assert item.info.attributes == ATTRIBUTES
    await browser.send_text(LONG_TEXT, topic="to.lk")
    assert await _result(await _nth(got, 1)) == LONG_TEXT


async def test_5mb_file_lkproto_to_browser(browser: BrowserPeer, lk: Lk, tmp_path: Path) -> None:
    await browser.register_byte_stream_digest("file.to.web")
    data = generated_bytes(FIVE_MB, "random", seed=7)
    path = tmp_path / "five.bin"
    path.write_bytes(data)
    info = await asyncio.wait_for(
        lk.room.local_participant.send_file(
            str(path), topic="file.to.web", attributes={"sha": "✓"}
        ),
        scaled(BIG_TIMEOUT_S),
    )
    ev = await browser.wait_event(
        "ByteStreamDigest", lambda e: e["topic"] == "file.to.web", BIG_TIMEOUT_S
    )
    assert ev["identity"] == "lk"
    assert ev["size"] == FIVE_MB
    assert ev["sha256"] == hashlib.sha256(data).hexdigest()
    assert ev["info"]["id"] == info.stream_id
    assert ev["info"]["name"] == "five.bin"
    assert ev["info"]["attributes"] == {"sha": "✓"}


@pytest.mark.parametrize("method", ["sendFile", "streamBytes"])
async def test_5mb_bytes_browser_to_lkproto(browser: BrowserPeer, lk: Lk, method: str) -> None:
    got = collect_digests(lk.room, "file.to.lk")
    sent = await browser.send_generated_bytes(
        FIVE_MB, method=method, kind="random", seed=11, topic="file.to.lk", name="five.bin"
    )
    expected = hashlib.sha256(generated_bytes(FIVE_MB, "random", seed=11)).hexdigest()
    assert sent["sha256"] == expected  # the page generated what Python expects
    item = await _nth(got, 0, BIG_TIMEOUT_S)
    size, digest, chunks = await _result(item, BIG_TIMEOUT_S)
    assert (size, digest) == (FIVE_MB, expected)
    assert chunks > 1
    assert item.identity == "web"
    assert item.info.name == "five.bin"
    assert item.info.topic == "file.to.lk"


async def test_compressed_streams_from_browser(browser: BrowserPeer, lk: Lk) -> None:
    # Needs lkproto to advertise client_protocol >= 2 and CAP_COMPRESSION_DEFLATE_RAW
    # (lkproto/wire/join.py); with client_protocol 0 livekit-client never compresses to it.
    assert join.CLIENT_PROTOCOL >= 2
    # What lkproto advertises, as livekit-client sees it.
    seen = await browser.eval(
        "const p = room.remoteParticipants.get('lk');return {protocol: p?.clientProtocol ?? null};"
    )
    texts = collect_text(lk.room, "z.text")
    files = collect_digests(lk.room, "z.file")
    # A compressible file (chunked, deflate-raw) and a long compressible text (chunked).
    sent = await browser.send_generated_bytes(
        1024 * 1024, method="sendFile", kind="pattern", seed=3, topic="z.file", name="p.bin"
    )
    big_text = "compress me please 🗜️ " * 5000
    await browser.send_text(big_text, topic="z.text")

    size, digest, _ = await _result(await _nth(files, 0), BIG_TIMEOUT_S)
    assert (size, digest) == (1024 * 1024, sent["sha256"])
    assert await _result(await _nth(texts, 0)) == big_text

    by_topic = {h.topic: h for h in lk.headers}
    assert set(by_topic) >= {"z.text", "z.file"}
    compression = {t: pb.DataStream.CompressionType.Name(by_topic[t].compression) for t in by_topic}
    assert by_topic["z.file"].compression == DEFLATE_RAW, (compression, seen)
    assert by_topic["z.text"].compression == DEFLATE_RAW, (compression, seen)
