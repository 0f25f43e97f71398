"""Record the wire captures the protocol pages of the documentation draw.

Each capture is one real session against :class:`lkproto.testing.LocalServer` (livekit-server
v1.13.5 on loopback) between two lkproto participants, ``alice`` and ``bob``; alice's wire tap
(``RoomOptions(tap_file=...)``) is written to ``docs/captures/<name>.jsonl``. The docs build
(``docs/_hooks/lkproto_docs.py``) renders each with :mod:`lkproto.wire.explorer` into the page
the protocol notes embed, and ``tests/docs/test_site.py`` checks every capture still renders.

Captures (PROTOCOL-MAP sections in brackets):

* ``join``: alice joins on ``/rtc/v1`` with one peer connection, bob arrives, alice leaves (§1, §2);
* ``publish``: alice publishes a microphone track (Opus) and unpublishes it (§9);
* ``resume``: alice's signal socket is dropped by ``SIMULATE_SIGNAL_RECONNECT``, she resumes and
  the reliable sequence goes on (§3, §10);
* ``rpc``: an RPC v2 call from alice to bob: request and response as text streams, the ack as a
  packet (§6);
* ``streams``: a compressible text from alice to bob in one DEFLATE_RAW-compressed packet (§5);
* ``e2ee``: both rooms share a key; alice and bob exchange user packets that travel as
  ``encrypted_packet`` and the tap shows what each decrypts to (§11).

Run after a change that should show in the pictures (the captures are checked in, so the
pictures only change when someone re-records them)::

    .venv/bin/python tools/capture_docs.py             # all captures
    .venv/bin/python tools/capture_docs.py rpc e2ee    # some
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from lkproto import rtc
from lkproto.testing import LocalServer

__all__ = ["CAPTURES", "main"]

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "captures"
STEP_TIMEOUT_S = 20.0
SHARED_KEY = b"lkproto documentation capture key"

Capture = Callable[[LocalServer, Path], Awaitable[None]]


def _options(tap_file: Path | None = None, *, e2ee: bool = False) -> rtc.RoomOptions:
    encryption = (
        rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key=SHARED_KEY))
        if e2ee
        else None
    )
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        tap_file=str(tap_file) if tap_file is not None else None,
        encryption=encryption,
    )


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (state the rooms update from their own events) for a bounded time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT_S
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _pair(
    server: LocalServer, tap_file: Path, *, e2ee: bool = False
) -> AsyncIterator[tuple[rtc.Room, rtc.Room]]:
    """Alice (tapped) and bob in a fresh room, both connected and seeing each other."""
    room_name = f"docs-{uuid.uuid4().hex[:8]}"
    alice, bob = rtc.Room(), rtc.Room()
    await bob.connect(server.url, server.create_token("bob", room_name), _options(e2ee=e2ee))
    try:
        await alice.connect(
            server.url, server.create_token("alice", room_name), _options(tap_file, e2ee=e2ee)
        )
        try:
            await _until(
                lambda: "bob" in {p.identity for p in alice.remote_participants.values()}, "bob"
            )
            await _until(
                lambda: "alice" in {p.identity for p in bob.remote_participants.values()}, "alice"
            )
            yield alice, bob
        finally:
            await alice.disconnect()
    finally:
        await bob.disconnect()


async def capture_join(server: LocalServer, tap_file: Path) -> None:
    """Alice joins on /rtc/v1, sees bob arrive, sends him one packet, leaves."""
    room_name = f"docs-{uuid.uuid4().hex[:8]}"
    alice, bob = rtc.Room(), rtc.Room()
    got: list[rtc.DataPacket] = []
    bob.on("data_received", got.append)
    await alice.connect(server.url, server.create_token("alice", room_name), _options(tap_file))
    try:
        await bob.connect(server.url, server.create_token("bob", room_name), _options())
        try:
            await _until(
                lambda: "bob" in {p.identity for p in alice.remote_participants.values()}, "bob"
            )
            await alice.local_participant.publish_data(b"hello bob", topic="chat")
            await _until(lambda: len(got) == 1, "the packet at bob")
        finally:
            await bob.disconnect()
    finally:
        await alice.disconnect()


def _tone(frame: int, samples: int = 480, rate: int = 48000, hz: float = 440.0) -> bytes:
    start = frame * samples
    return struct.pack(
        f"<{samples}h",
        *(int(8000 * math.sin(2 * math.pi * hz * (start + i) / rate)) for i in range(samples)),
    )


async def capture_publish(server: LocalServer, tap_file: Path) -> None:
    """Alice publishes an Opus microphone track bob subscribes to, then unpublishes it."""
    async with _pair(server, tap_file) as (alice, bob):
        subscribed = asyncio.Event()
        bob.on("track_subscribed", lambda *_: subscribed.set())
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await alice.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        for frame in range(100):  # one second of a 440 Hz tone
            await source.capture_frame(rtc.AudioFrame(_tone(frame), 48000, 1, 480))
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await subscribed.wait()
        await alice.local_participant.unpublish_track(publication.sid)
        await asyncio.sleep(0.5)  # the re-offer that makes the section inactive


async def capture_resume(server: LocalServer, tap_file: Path) -> None:
    """Alice's signal socket drops; she resumes and her next packet goes on the sequence."""
    async with _pair(server, tap_file) as (alice, bob):
        got: list[rtc.DataPacket] = []
        bob.on("data_received", got.append)
        reconnected = asyncio.Event()
        alice.on("reconnected", reconnected.set)
        await alice.local_participant.publish_data(b"before", topic="chat")
        await _until(lambda: len(got) == 1, "the first packet")
        await alice.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await reconnected.wait()
        await alice.local_participant.publish_data(b"after", topic="chat")
        await _until(lambda: len(got) == 2, "the packet after the resume")


async def capture_rpc(server: LocalServer, tap_file: Path) -> None:
    """Alice calls bob's ``greet`` method over RPC v2."""
    async with _pair(server, tap_file) as (alice, bob):
        bob.local_participant.register_rpc_method(
            "greet", lambda data: f"hello {data.caller_identity}"
        )
        answer = await alice.local_participant.perform_rpc(
            destination_identity="bob", method="greet", payload='{"lang":"en"}'
        )
        assert answer == "hello alice", answer


async def capture_streams(server: LocalServer, tap_file: Path) -> None:
    """Alice sends bob a compressible text: one DEFLATE_RAW packet, not header, chunks, trailer."""
    async with _pair(server, tap_file) as (alice, bob):
        got: list[str] = []

        def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
            async def read() -> None:
                got.append(await reader.read_all())

            asyncio.get_running_loop().create_task(read())

        bob.register_text_stream_handler("notes", on_text)
        text = "the quick brown fox jumps over the lazy dog. " * 40
        await alice.local_participant.send_text(text, topic="notes")
        await _until(lambda: got == [text], "the text at bob")


async def capture_e2ee(server: LocalServer, tap_file: Path) -> None:
    """With a shared key, user packets travel encrypted; the tap shows what they decrypt to."""
    async with _pair(server, tap_file, e2ee=True) as (alice, bob):
        got_bob: list[rtc.DataPacket] = []
        got_alice: list[rtc.DataPacket] = []
        bob.on("data_received", got_bob.append)
        alice.on("data_received", got_alice.append)
        await alice.local_participant.publish_data(b"secret for bob", topic="chat")
        await _until(lambda: len(got_bob) == 1, "alice's packet at bob")
        await bob.local_participant.publish_data(b"secret for alice", topic="chat")
        await _until(lambda: len(got_alice) == 1, "bob's packet at alice")


CAPTURES: dict[str, Capture] = {
    "join": capture_join,
    "publish": capture_publish,
    "resume": capture_resume,
    "rpc": capture_rpc,
    "streams": capture_streams,
    "e2ee": capture_e2ee,
}


async def _record(names: list[str]) -> None:
    async with LocalServer() as server:
        for name in names:
            with tempfile.TemporaryDirectory() as tmp:
                tap_file = Path(tmp) / f"{name}.jsonl"
                await asyncio.wait_for(CAPTURES[name](server, tap_file), 4 * STEP_TIMEOUT_S)
                OUT_DIR.mkdir(parents=True, exist_ok=True)
                target = OUT_DIR / f"{name}.jsonl"
                target.write_bytes(tap_file.read_bytes())
                lines = target.read_text(encoding="utf-8").count("\n")
                print(f"{target.relative_to(ROOT)}: {lines} records")


def main(argv: list[str] | None = None) -> int:
    """Record the named captures (all by default) into docs/captures/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(CAPTURES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(CAPTURES))
    if unknown:
        parser.error(f"unknown capture(s): {', '.join(unknown)}")
    asyncio.run(_record(args.names or list(CAPTURES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
