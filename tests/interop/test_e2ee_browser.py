"""End-to-end encrypted data between lkproto and livekit-client 2.23.0 in headless Chromium.

livekit-client encrypts data packets and streams when its Room has ``encryption`` (not the
deprecated ``e2ee``) options; its key provider derives a string key with PBKDF2 as lkproto does
(PROTOCOL-MAP §11). The page's E2EE worker is livekit-client's own
``livekit-client.e2ee.worker.js``, loaded from a Blob (the test page serves only ``dist/``); the
Room is created by ``eval`` with the key provider and the worker, then connected by the harness.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop.browser.harness import BrowserPeer, check_browser_setup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

KEY = "browser-shared-key"
TIMEOUT_S = 30.0
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
    check_browser_setup()  # raises BrowserSetupError with the fix in its message
    peer = BrowserPeer(name="web")
    await peer.start()
    try:
        yield peer
    finally:
        await peer.close()


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
