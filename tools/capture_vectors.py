"""Regenerate tests/vectors/: real wire messages of the official SDKs (Python ``livekit``, JS).

``--sdk python`` (the default) captures the official Python SDK (``livekit``); ``--sdk js``
captures npm ``livekit-client`` in headless Chromium (the browser harness of
``tests/interop/browser/``, set up by ``tools/setup_browser.sh``). How the messages are captured
(one scenario, one loopback livekit-server):

- **Signal frames** of the official SDK: it connects through a WebSocket proxy that relays each
  frame unchanged to the server and records it (client -> server: ``SignalRequest``, direction
  ``>``; server -> client: ``SignalResponse``, direction ``<``).
- **Data packets** the official SDK sends: they arrive, via the server (which stamps the sender's
  identity and SID, PROTOCOL-MAP §3), at an lkproto peer whose wire tap records them (``<``).
- JS only: the data packets exactly as livekit-client wrote them, before DTLS/SCTP: the page's
  ``RTCDataChannel.prototype.send`` is wrapped before the SDK connects (``>``).

Python scenario: the SDK joins, lkproto joins, the SDK sends a reliable and a lossy user packet, a
text stream, a small file (byte stream), SIP DTMF, calls an RPC method on lkproto and gets the
answer, updates its metadata, then leaves.

JS scenario (``JS_SCENARIO``): lkproto joins, livekit-client joins through the proxy, sends a
reliable and a lossy user packet, a text stream and a small file (byte stream), makes an RPC
each way with lkproto (client protocol 2: RPC v2, requests and responses as inline text streams),
then each way with a second lkproto peer that advertises client protocol 0 (RPC v1 packets), sets
its metadata, then an attribute, waits for its first ping, and leaves. Not captured, and why:

- the ``JoinRequest``: livekit-client 2.23 joins on ``/rtc/v1`` with it (publisher offer
  included), gzip-compressed, in the ``join_request`` query parameter of the WebSocket URL; it is
  not a frame and not a ``SignalRequest`` (``SignalRecorder.paths`` keeps the URL);
- ``SignalRequest.trickle``: the harness page drops every non-loopback ICE candidate before
  livekit-client signals it, and Chromium without a media permission gathers none on loopback
  (it connects peer-reflexively, ``tests/interop/browser/harness.py``), so it trickles nothing;
- media and track signalling: no track is published.

At most ``--per-type`` distinct messages are kept per type and direction (3; 4 for JS, whose
four stream headers are the text, the file and the RPC v2 request and response). Each vector
carries its provenance (SDK, SDK version, server version, scenario).

Usage: ``.venv/bin/python tools/capture_vectors.py [--sdk python|js] [--out tests/vectors]
[--per-type N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lkproto import rtc  # noqa: E402
from lkproto.testing import LocalServer, ensure_livekit_server  # noqa: E402
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION  # noqa: E402
from lkproto.wire.tap import TapRecord  # noqa: E402

SCENARIO: Final = (
    "join, user packets (reliable+lossy), text stream, file, DTMF, RPC, metadata, leave"
)
JS_SCENARIO: Final = (
    "livekit-client in headless Chromium: join (/rtc/v1), user packets (reliable+lossy), text"
    " stream, file (deflate-raw), RPC v2 each way, RPC v1 each way (with a client-protocol-0"
    " peer), metadata, attributes, ping, leave. Signal frames via a WebSocket proxy; DataPackets"
    " '<' as the server relayed them to lkproto's tap, '>' as the SDK passed them to"
    " RTCDataChannel.send. Not captured: the JoinRequest (gzip in the /rtc/v1 URL's join_request"
    " parameter, not a frame), SignalRequest.trickle (the harness drops non-loopback candidates;"
    " Chromium gathers none on loopback), media (none published)"
)
JS_SDK: Final = "livekit-client"
STEP_TIMEOUT_S: Final = 20.0
Vector = dict[str, str]


class SignalRecorder:
    """A WebSocket proxy in front of the server that records every frame it relays."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frames: list[tuple[str, bytes]] = []
        self.paths: list[str] = []
        self.port = 0

    async def __aenter__(self) -> SignalRecorder:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        assert client.request is not None
        self.paths.append(client.request.path)
        headers = {}
        if "Authorization" in client.request.headers:
            headers["Authorization"] = client.request.headers["Authorization"]
        url = f"ws://127.0.0.1:{self.upstream_port}{client.request.path}"
        async with connect(
            url, additional_headers=headers, max_size=None, compression=None, ping_interval=None
        ) as server:

            async def pipe(src: Any, dst: Any, direction: str) -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for frame in src:
                        if isinstance(frame, bytes):
                            self.frames.append((direction, frame))
                        await dst.send(frame)
                with contextlib.suppress(ConnectionClosed):
                    await dst.close()

            await asyncio.gather(pipe(client, server, ">"), pipe(server, client, "<"))


async def _until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT_S
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _scenario(server: LocalServer, recorder: SignalRecorder) -> list[TapRecord]:
    from livekit import rtc as sdk

    room_name = "vectors"
    taps: list[TapRecord] = []
    ours = rtc.Room()
    text_done: list[str] = []
    file_done: list[bytes] = []

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            text_done.append(await reader.read_all())

        asyncio.get_running_loop().create_task(read())

    def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
        async def read() -> None:
            file_done.append(b"".join([chunk async for chunk in reader]))

        asyncio.get_running_loop().create_task(read())

    ours.register_text_stream_handler("chat", on_text)
    ours.register_byte_stream_handler("files", on_bytes)
    await ours.connect(
        server.url,
        server.create_token("lkproto", room_name),
        rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]), tap=taps.append
        ),
    )

    def greet(data: rtc.RpcInvocationData) -> str:
        return f"hello {data.caller_identity}"

    ours.local_participant.register_rpc_method("greet", greet)

    theirs = sdk.Room()
    token = server.create_token("official", room_name, can_update_own_metadata=True)
    await theirs.connect(f"ws://127.0.0.1:{recorder.port}", token)
    try:
        await _until(lambda: "official" in _identities(ours), "the SDK in lkproto's roster")
        lp = theirs.local_participant
        await lp.publish_data(b"reliable hello", reliable=True, topic="greetings")
        await lp.publish_data(b"lossy hello", reliable=False, topic="greetings")
        await lp.send_text("a text stream from the official SDK", topic="chat")
        with tempfile.NamedTemporaryFile("wb", suffix=".bin", delete=False) as f:
            f.write(bytes(range(256)) * 80)  # 20 480 bytes: two chunks
        try:
            await lp.send_file(f.name, topic="files")
        finally:
            os.unlink(f.name)
        await lp.publish_dtmf(code=1, digit="1")
        answer = await lp.perform_rpc(destination_identity="lkproto", method="greet", payload="hi")
        assert answer == "hello official", answer
        await lp.set_metadata("captured")
        await _until(lambda: bool(text_done and file_done), "the streams at lkproto")
        await asyncio.sleep(0.5)
    finally:
        await theirs.disconnect()
        await ours.disconnect()
    return taps


def _identities(room: rtc.Room) -> set[str]:
    return {p.identity for p in room.remote_participants.values()}


def _vectors(
    frames: list[tuple[str, bytes]],
    taps: list[TapRecord],
    per_type: int,
    provenance: dict[str, str],
    sent: list[bytes] | None = None,
) -> list[Vector]:
    """Up to ``per_type`` distinct vectors per type and direction: signal frames (both ways),
    DataPackets relayed to lkproto (``<``), then ``sent``, DataPackets the SDK wrote (``>``)."""
    from lkproto.wire import decode_signal_request, decode_signal_response
    from lkproto.wire.tap import decode_any, message_type_name

    out: list[Vector] = []
    seen: dict[tuple[str, str], int] = {}
    hexes: set[str] = set()

    def add(type_name: str, raw: bytes, direction: str) -> None:
        key = (type_name, direction)
        if raw.hex() in hexes or seen.get(key, 0) >= per_type:
            return
        seen[key] = seen.get(key, 0) + 1
        hexes.add(raw.hex())
        out.append({"type": type_name, "hex": raw.hex(), **provenance, "direction": direction})

    for direction, raw in frames:
        if direction == ">":
            add(message_type_name(decode_signal_request(raw)), raw, ">")
        else:
            add(message_type_name(decode_signal_response(raw)), raw, "<")
    for record in taps:
        if record.channel in ("_reliable", "_lossy") and record.direction == "<":
            add(record.type, record.raw, "<")
    for raw in sent or []:
        add(message_type_name(decode_any(raw, "DataPacket")[1]), raw, ">")
    return out


async def _capture(per_type: int) -> list[Vector]:
    server = LocalServer(binary=ensure_livekit_server())
    await server.astart()
    try:
        async with SignalRecorder(server.port) as recorder:
            taps = await _scenario(server, recorder)
        provenance = {
            "sdk": "livekit (python)",
            "sdk_version": metadata.version("livekit"),
            "server_version": DEFAULT_LIVEKIT_SERVER_VERSION,
            "scenario": SCENARIO,
        }
        return _vectors(recorder.frames, taps, per_type, provenance)
    finally:
        await server.astop()


# -- livekit-client (JS) ------------------------------------------------------------------------

# Installed in the page before the SDK connects: keeps a copy of every binary message handed to
# an RTCDataChannel (livekit-client's DataPackets on "_reliable" / "_lossy", before DTLS/SCTP).
_JS_HOOK_SEND: Final = """
if (!window.__vectorSent) {
  window.__vectorSent = [];
  const nativeSend = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    let bytes = null;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    if (bytes) {
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) {
        s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      }
      window.__vectorSent.push({ label: this.label, b64: btoa(s) });
    }
    return nativeSend.call(this, data);
  };
}
return true;
"""
_JS_SENT: Final = "return window.__vectorSent ?? [];"


async def _lkproto_peer(
    server: LocalServer, room_name: str, identity: str, taps: list[TapRecord], **options: Any
) -> rtc.Room:
    """An lkproto peer with ICE pinned to 127.0.0.1 that taps into ``taps`` and answers the
    RPC method ``greet`` with ``hello <caller>``."""
    room = rtc.Room()
    await room.connect(
        server.url,
        server.create_token(identity, room_name),
        rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
            tap=taps.append,
            **options,
        ),
    )

    def greet(data: rtc.RpcInvocationData) -> str:
        return f"hello {data.caller_identity}"

    room.local_participant.register_rpc_method("greet", greet)
    return room


async def _browser_sees(browser: Any, identity: str) -> None:
    # livekit-client emits ParticipantConnected only for later joiners: poll its roster.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT_S
    while not any(p.get("identity") == identity for p in (await browser.info())["remote"]):
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {identity} in livekit-client's roster")
        await asyncio.sleep(0.2)


async def _js_scenario(
    server: LocalServer, recorder: SignalRecorder, browser: Any
) -> tuple[list[TapRecord], list[bytes]]:
    """Run the JS scenario; return the lkproto peers' tap records and the page's DataPackets.

    ``lkproto`` advertises client protocol 2, so livekit-client uses RPC v2 (requests and
    responses as inline text streams) and compresses the file (DEFLATE_RAW) for it;
    ``lkproto-v1`` advertises 0 and joins after the streams, so the RPCs with it use the v1
    packets (``rpc_request`` / ``rpc_ack`` / ``rpc_response``).
    """
    import base64

    from lkproto.wire.tap import message_type_name

    room_name = "vectors-js"
    taps: list[TapRecord] = []
    text_done: list[str] = []
    file_done: list[bytes] = []

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            text_done.append(await reader.read_all())

        asyncio.get_running_loop().create_task(read())

    def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
        async def read() -> None:
            file_done.append(b"".join([chunk async for chunk in reader]))

        asyncio.get_running_loop().create_task(read())

    def pinged() -> bool:
        from lkproto.wire import decode_signal_request

        return any(
            direction == ">" and message_type_name(decode_signal_request(raw)).endswith("ping_req")
            for direction, raw in recorder.frames
        )

    ours = await _lkproto_peer(server, room_name, "lkproto", taps)
    ours.register_text_stream_handler("chat", on_text)
    ours.register_byte_stream_handler("files", on_bytes)
    v1: rtc.Room | None = None
    await browser.eval(_JS_HOOK_SEND)
    await browser.register_rpc("echo", mode="echo")
    token = server.create_token("js", room_name, can_update_own_metadata=True)
    await browser.connect(f"ws://127.0.0.1:{recorder.port}", token)
    try:
        await _until(lambda: "js" in _identities(ours), "livekit-client in lkproto's roster")
        await _browser_sees(browser, "lkproto")
        await browser.publish_data(b"reliable hello", reliable=True, topic="greetings")
        await browser.publish_data(b"lossy hello", reliable=False, topic="greetings")
        await browser.send_text("a text stream from livekit-client", topic="chat")
        await browser.send_generated_bytes(
            16384, method="sendFile", kind="random", topic="files", name="vectors.bin"
        )
        await _until(lambda: bool(text_done and file_done), "the streams at lkproto")
        # RPC v2 each way with lkproto, then v1 each way with lkproto-v1.
        answer = await browser.perform_rpc("lkproto", "greet", "hi")
        assert answer == "hello js", answer
        echoed = await ours.local_participant.perform_rpc(
            destination_identity="js", method="echo", payload="echo me"
        )
        assert echoed == "echo me", echoed
        v1 = await _lkproto_peer(server, room_name, "lkproto-v1", taps, client_protocol=0)
        await _browser_sees(browser, "lkproto-v1")
        answer = await browser.perform_rpc("lkproto-v1", "greet", "hi v1")
        assert answer == "hello js", answer
        echoed = await v1.local_participant.perform_rpc(
            destination_identity="js", method="echo", payload="echo me v1"
        )
        assert echoed == "echo me v1", echoed
        await browser.set_metadata("captured")
        await browser.set_attributes({"color": "blue"})
        await _until(pinged, "a ping from livekit-client")
        await asyncio.sleep(0.5)
        sent = [
            base64.b64decode(item["b64"])
            for item in await browser.eval(_JS_SENT)
            if item["label"] in ("_reliable", "_lossy")
        ]
    finally:
        await browser.disconnect()
        if v1 is not None:
            await v1.disconnect()
        await ours.disconnect()
    return taps, sent


async def _capture_js(per_type: int) -> tuple[list[Vector], str]:
    from lkproto.testing import server_version
    from tests.interop.browser.harness import BrowserPeer

    binary = ensure_livekit_server()
    found = server_version(binary)
    server = LocalServer(binary=binary)
    await server.astart()
    try:
        async with SignalRecorder(server.port) as recorder, BrowserPeer(name="vectors") as browser:
            sdk_version = str((await browser.versions())["livekit_client"])
            taps, sent = await _js_scenario(server, recorder, browser)
        provenance = {
            "sdk": JS_SDK,
            "sdk_version": sdk_version,
            "server_version": f"v{found}" if found else DEFAULT_LIVEKIT_SERVER_VERSION,
            "scenario": JS_SCENARIO,
        }
        for path in recorder.paths:
            print(f"join URL path (not a vector): {path.split('?', 1)[0]}")
        return _vectors(recorder.frames, taps, per_type, provenance, sent), sdk_version
    finally:
        await server.astop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "vectors")
    parser.add_argument(
        "--per-type",
        type=int,
        default=None,
        help="vectors kept per type and direction (3; 4 for js: its four stream headers)",
    )
    parser.add_argument(
        "--sdk", choices=("python", "js"), default="python", help="SDK to capture (python)"
    )
    args = parser.parse_args()
    if args.sdk == "js":
        vectors, js_version = asyncio.run(_capture_js(args.per_type or 4))
        name = f"js-livekit-client-{js_version}.json"
    else:
        vectors = asyncio.run(_capture(args.per_type or 3))
        name = f"python-livekit-{metadata.version('livekit')}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / name
    path.write_text(json.dumps(vectors, indent=1) + "\n", encoding="utf-8")
    kinds = sorted({v["type"] for v in vectors})
    print(f"wrote {len(vectors)} vectors ({len(kinds)} types) to {path}")
    for kind in kinds:
        print(f"  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
