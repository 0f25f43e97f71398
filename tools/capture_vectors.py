"""Regenerate tests/vectors/: real wire messages of the official Python SDK (``livekit``).

How the messages are captured (one scenario, one loopback livekit-server):

- **Signal frames** of the official SDK: it connects through a WebSocket proxy that relays each
  frame unchanged to the server and records it (client -> server: ``SignalRequest``, direction
  ``>``; server -> client: ``SignalResponse``, direction ``<``).
- **Data packets** the official SDK sends: they arrive, via the server (which stamps the sender's
  identity and SID, PROTOCOL-MAP §3), at an lkproto peer whose wire tap records them (``<``).

The scenario: the SDK joins, lkproto joins, the SDK sends a reliable and a lossy user packet, a
text stream, a small file (byte stream), SIP DTMF, calls an RPC method on lkproto and gets the
answer, updates its metadata, then leaves. At most ``--per-type`` distinct messages are kept per
type. Each vector carries its provenance (SDK, SDK version, server version, scenario).

Usage: ``.venv/bin/python tools/capture_vectors.py [--out tests/vectors] [--per-type 3]``
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
STEP_TIMEOUT_S: Final = 20.0
Vector = dict[str, str]


class SignalRecorder:
    """A WebSocket proxy in front of the server that records every frame it relays."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frames: list[tuple[str, bytes]] = []
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


def _vectors(frames: list[tuple[str, bytes]], taps: list[TapRecord], per_type: int) -> list[Vector]:
    from lkproto.wire import decode_signal_request, decode_signal_response
    from lkproto.wire.tap import message_type_name

    sdk_version = metadata.version("livekit")
    out: list[Vector] = []
    seen: dict[str, int] = {}
    hexes: set[str] = set()

    def add(type_name: str, raw: bytes, direction: str) -> None:
        if raw.hex() in hexes or seen.get(type_name, 0) >= per_type:
            return
        seen[type_name] = seen.get(type_name, 0) + 1
        hexes.add(raw.hex())
        out.append(
            {
                "type": type_name,
                "hex": raw.hex(),
                "sdk": "livekit (python)",
                "sdk_version": sdk_version,
                "server_version": DEFAULT_LIVEKIT_SERVER_VERSION,
                "scenario": SCENARIO,
                "direction": direction,
            }
        )

    for direction, raw in frames:
        if direction == ">":
            add(message_type_name(decode_signal_request(raw)), raw, ">")
        else:
            add(message_type_name(decode_signal_response(raw)), raw, "<")
    for record in taps:
        if record.channel in ("_reliable", "_lossy") and record.direction == "<":
            add(record.type, record.raw, "<")
    return out


async def _capture(per_type: int) -> list[Vector]:
    server = LocalServer(binary=ensure_livekit_server())
    await server.astart()
    try:
        async with SignalRecorder(server.port) as recorder:
            taps = await _scenario(server, recorder)
        return _vectors(recorder.frames, taps, per_type)
    finally:
        await server.astop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "vectors")
    parser.add_argument("--per-type", type=int, default=3, help="vectors kept per type (3)")
    args = parser.parse_args()
    vectors = asyncio.run(_capture(args.per_type))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"python-livekit-{metadata.version('livekit')}.json"
    path.write_text(json.dumps(vectors, indent=1) + "\n", encoding="utf-8")
    kinds = sorted({v["type"] for v in vectors})
    print(f"wrote {len(vectors)} vectors ({len(kinds)} types) to {path}")
    for kind in kinds:
        print(f"  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
