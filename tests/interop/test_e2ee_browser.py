"""End-to-end encryption between lkproto and livekit-client 2.23.0 in headless Chromium.

Data (user packets, text streams, 1 MiB byte streams, RPC) both ways, and media both ways:
Chromium's E2EE worker encrypts a WebAudio 1 kHz tone and a canvas VP8 video that lkproto
decrypts and decodes, and it decrypts lkproto's 440 Hz tone and VP8 colour (the media JS and
helpers of ``test_browser_media.py``).

livekit-client encrypts data packets and streams when its Room has ``encryption`` (not the
deprecated ``e2ee``) options; its key provider derives a string key with PBKDF2 as lkproto does
(PROTOCOL-MAP §11). The page's E2EE worker is livekit-client's own
``livekit-client.e2ee.worker.js``, loaded from a Blob (the test page serves only ``dist/``); the
Room is created by ``eval`` with the key provider and the worker, then connected by the harness.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop.browser.harness import BrowserPeer, generated_bytes, started_browser
from tests.interop.test_browser_media import (
    ATTACH_JS,
    PIXEL_JS,
    PUBLISH_JS,
    SPECTRUM_JS,
    centre_pixels,
    near,
    peak_of,
    publish_colour,
    publish_tone,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

KEY = "browser-shared-key"
TIMEOUT_S = 30.0
ONE_MIB = 1024 * 1024
# Values that must never be on the wire in clear text in an encrypted room (PROTOCOL-MAP §11).
CLEAR_KINDS = frozenset(
    {
        "user",
        "stream_header",
        "stream_chunk",
        "stream_trailer",
        "rpc_request",
        "rpc_ack",
        "rpc_response",
    }
)
WORKER = (
    Path(__file__).parent
    / "browser"
    / "node_modules"
    / "livekit-client"
    / "dist"
    / "livekit-client.e2ee.worker.js"
)

_SETUP_JS = """
const [workerSource, key] = args;
const url = URL.createObjectURL(new Blob([workerSource], { type: 'text/javascript' }));
const keyProvider = new LK.ExternalE2EEKeyProvider();
await keyProvider.setKey(key);
const created = new LK.Room({ encryption: { keyProvider, worker: new Worker(url) } });
window.e2eeGot = [];
window.e2eeTexts = [];
created.on(LK.RoomEvent.DataReceived, (payload, participant, kind, topic, encryptionType) => {
  window.e2eeGot.push({
    text: new TextDecoder().decode(payload), topic: topic ?? '', encryptionType,
  });
});
created.registerTextStreamHandler('txt', async (reader, info) => {
  window.e2eeTexts.push({ text: await reader.readAll(), from: info.identity });
});
await created.setE2EEEnabled(true);
lk.state.room = created;
return true;
"""


async def _until(predicate: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(scaled(TIMEOUT_S)):
        while not predicate():  # noqa: ASYNC110 (state filled by other tasks)
            await asyncio.sleep(0.1)
    assert predicate(), what


async def _until_async(probe: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(scaled(TIMEOUT_S)):
        while not (value := await probe()):  # noqa: ASYNC110 (polling the page)
            await asyncio.sleep(0.2)
    assert value, what
    return value


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    async with started_browser() as peer:  # BrowserSetupError names the fix if not set up
        yield peer


async def test_data_and_text_streams_both_ways_with_livekit_client(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    room_name = f"lk-web-e2ee-{uuid.uuid4().hex[:10]}"
    wire: list[tuple[str, str]] = []

    def trace(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        if isinstance(message, pb.DataPacket):
            wire.append((direction, message.WhichOneof("value") or ""))

    ours = rtc.Room()
    got: list[tuple[bytes, str]] = []
    texts: list[str] = []
    ours.on("data_received", lambda p: got.append((p.data, p.topic or "")))

    async def read_text(reader: Any, identity: str) -> None:
        texts.append(await reader.read_all())

    tasks: set[asyncio.Task[None]] = set()
    ours.register_text_stream_handler(
        "txt",
        lambda reader, identity: tasks.add(asyncio.ensure_future(read_text(reader, identity))),
    )
    try:
        await ours.connect(
            livekit_server.url,
            livekit_server.create_token("lk", room_name),
            rtc.RoomOptions(
                rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
                trace=trace,
                encryption=rtc.E2EEOptions(
                    key_provider_options=rtc.KeyProviderOptions(shared_key=KEY.encode())
                ),
            ),
        )
        assert await browser.eval(_SETUP_JS, WORKER.read_text(encoding="utf-8"), KEY)
        await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
        await _until(lambda: "web" in ours.remote_participants, "lkproto sees web")
        await asyncio.sleep(scaled(1.0))  # both ACTIVE before lossy-free reliable data

        await ours.local_participant.publish_data(b"from lkproto", topic="t")
        await ours.local_participant.send_text("text from lkproto", topic="txt")
        received = await _until_async(
            lambda: browser.eval("return window.e2eeGot;"), "browser decrypts our packet"
        )
        assert received[0]["text"] == "from lkproto"
        assert received[0]["topic"] == "t"
        assert received[0]["encryptionType"] == int(rtc.EncryptionType.GCM)
        browser_texts = await _until_async(
            lambda: browser.eval("return window.e2eeTexts;"), "browser reads our text stream"
        )
        assert browser_texts[0] == {"text": "text from lkproto", "from": "lk"}

        await browser.eval(
            "await room.localParticipant.publishData(new TextEncoder().encode('from the browser'),"
            " { reliable: true, topic: 't' });"
            "await room.localParticipant.sendText('text from the browser', { topic: 'txt' });"
        )
        await _until(lambda: (b"from the browser", "t") in got, "we decrypt the browser's")
        await _until(lambda: texts == ["text from the browser"], "we read the browser's text")

        kinds = {kind for _, kind in wire}
        assert "encrypted_packet" in kinds
        assert not kinds & {"user", "stream_header", "stream_chunk", "stream_trailer"}, wire
    finally:
        await ours.disconnect()


async def test_byte_streams_and_rpc_both_ways_with_livekit_client(
    livekit_server: LocalServer, browser: BrowserPeer, tmp_path: Path
) -> None:
    # Issue 16 proof with livekit-client: 1 MiB byte streams and RPC, both ways, with only
    # encrypted packets on the wire.
    room_name = f"lk-web-e2ee-bytes-{uuid.uuid4().hex[:10]}"
    wire: list[tuple[str, str]] = []

    def trace(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        if isinstance(message, pb.DataPacket):
            wire.append((direction, message.WhichOneof("value") or ""))

    ours = rtc.Room()
    digests: list[asyncio.Task[tuple[int, str]]] = []

    async def digest(reader: rtc.ByteStreamReader) -> tuple[int, str]:
        h = hashlib.sha256()
        size = 0
        async for chunk in reader:
            h.update(chunk)
            size += len(chunk)
        return size, h.hexdigest()

    ours.register_byte_stream_handler(
        "bytes.to.lk",
        lambda reader, identity: digests.append(asyncio.ensure_future(digest(reader))),
    )
    try:
        await ours.connect(
            livekit_server.url, livekit_server.create_token("lk", room_name), _options(trace)
        )

        async def upper(data: rtc.RpcInvocationData) -> str:
            return data.payload.upper()

        ours.local_participant.register_rpc_method("upper", upper)
        assert await browser.eval(_SETUP_JS, WORKER.read_text(encoding="utf-8"), KEY)
        await browser.register_byte_stream_digest("bytes.to.web")
        await browser.register_rpc("echo", mode="echo")
        await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
        await _until(lambda: "web" in ours.remote_participants, "lkproto sees web")
        await _until_async(
            lambda: browser.eval("return room.remoteParticipants.has('lk');"), "web sees lkproto"
        )

        data = generated_bytes(ONE_MIB, "random", seed=5)
        path = tmp_path / "one.bin"
        path.write_bytes(data)
        await asyncio.wait_for(
            ours.local_participant.send_file(str(path), topic="bytes.to.web"), scaled(TIMEOUT_S)
        )
        got = await browser.wait_event(
            "ByteStreamDigest", lambda e: e["topic"] == "bytes.to.web", TIMEOUT_S
        )
        assert (got["size"], got["sha256"]) == (ONE_MIB, hashlib.sha256(data).hexdigest())

        sent = await browser.send_generated_bytes(
            ONE_MIB, method="streamBytes", kind="random", seed=6, topic="bytes.to.lk", name="b"
        )
        expected = hashlib.sha256(generated_bytes(ONE_MIB, "random", seed=6)).hexdigest()
        assert sent["sha256"] == expected
        await _until(lambda: digests, "lkproto gets the browser's byte stream")
        assert await asyncio.wait_for(digests[0], scaled(TIMEOUT_S)) == (ONE_MIB, expected)

        answer = ours.local_participant.perform_rpc(
            destination_identity="web", method="echo", payload="é from lkproto"
        )
        assert await asyncio.wait_for(answer, scaled(TIMEOUT_S)) == "é from lkproto"
        assert await browser.perform_rpc("lk", "upper", "from the browser") == "FROM THE BROWSER"

        kinds = {(direction, kind) for direction, kind in wire}
        assert (">", "encrypted_packet") in kinds
        assert ("<", "encrypted_packet") in kinds
        assert not {kind for _, kind in kinds} & CLEAR_KINDS, sorted(kinds)
    finally:
        await ours.disconnect()


def _options(trace: Any = None) -> rtc.RoomOptions:
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        trace=trace,
        encryption=rtc.E2EEOptions(
            key_provider_options=rtc.KeyProviderOptions(shared_key=KEY.encode())
        ),
    )


async def _join(livekit_server: LocalServer, browser: BrowserPeer, ours: rtc.Room) -> None:
    room_name = f"lk-web-e2ee-media-{uuid.uuid4().hex[:10]}"
    await ours.connect(livekit_server.url, livekit_server.create_token("lk", room_name), _options())
    assert await browser.eval(_SETUP_JS, WORKER.read_text(encoding="utf-8"), KEY)
    await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
    await _until(lambda: "web" in ours.remote_participants, "lkproto sees web")


async def test_lkproto_decrypts_chromium_audio_and_vp8(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    ours = rtc.Room()
    subscribed: dict[str, Any] = {}
    ours.on("track_subscribed", lambda track, pub, p: subscribed.__setitem__(pub.sid, track))
    try:
        await _join(livekit_server, browser, ours)
        published = await browser.eval(
            PUBLISH_JS, {"freq": 1000.0, "width": 320, "height": 240, "colour": [70, 130, 200]}
        )
        sids = {published["audio_sid"], published["video_sid"]}
        await _until(lambda: sids <= set(subscribed), "both browser tracks subscribed")
        (peak, facts), pixels = await asyncio.gather(
            peak_of(subscribed[published["audio_sid"]]),
            centre_pixels(subscribed[published["video_sid"]]),
        )
        assert abs(peak - 1000.0) <= 5, (peak, facts)
        assert all(near(rgb, (70, 130, 200)) for _, _, rgb in pixels), pixels
        pubs = ours.remote_participants["web"].track_publications
        assert {pubs[sid].encryption_type for sid in sids} == {int(rtc.EncryptionType.GCM)}
    finally:
        await ours.disconnect()


async def test_chromium_decrypts_lkproto_audio_and_vp8(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    ours = rtc.Room()
    feeders = []
    try:
        await _join(livekit_server, browser, ours)
        feeders.append(await publish_tone(ours, 440.0))
        feeders.append(await publish_colour(ours, (200, 40, 120), 640, 480))
        audio_sid = feeders[0].publication.sid
        video_sid = feeders[1].publication.sid

        async def attached() -> Any:
            out = await browser.eval(
                "const p = room.remoteParticipants.get('lk');"
                "return p ? [...p.trackPublications.values()].filter((t) => t.track).length : 0;"
            )
            return out == 2

        await _until_async(attached, "browser subscribed to both tracks")
        await browser.eval(ATTACH_JS, "lk")

        async def pixel() -> Any:
            got = await browser.eval(PIXEL_JS, video_sid)
            return got if got is not None and near(got["rgb"], (200, 40, 120)) else None

        seen = await _until_async(pixel, "the browser renders lkproto's colour")
        assert (seen["width"], seen["height"]) == (640, 480), seen
        spectrum = await browser.eval(SPECTRUM_JS, audio_sid)
        assert abs(spectrum["peak_hz"] - 440.0) <= 5, spectrum
    finally:
        for feeder in feeders:
            await feeder.stop()
        await ours.disconnect()
