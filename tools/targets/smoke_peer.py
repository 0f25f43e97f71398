"""One side of the target smoke (issue 14): a participant that exercises a peer through a server.

The same script runs on both sides, which is itself a drop-in check: ``--sdk lkproto`` imports
``lkproto.rtc`` (inside the target userland), ``--sdk livekit`` imports the official
``livekit.rtc`` (on the host). Both join one room of a livekit-server on the host's loopback and
run the steps below in lock step; each side writes its own verdicts to ``--out`` as JSON.

Steps: join; 200 reliable packets each way (all arrive, in order); a text stream and a 1 MB byte
stream each way (SHA-256 carried in the stream attributes); an RPC each way; a tone each way (the
``lkproto`` side publishes 440 Hz, the ``livekit`` side 1 kHz; the receiver measures the pitch);
on the lkproto side, ``lkproto tap`` and ``lkproto decode`` on the tap file the run recorded.

Only the standard library besides the SDK: the target may have no numpy. Every wait is bounded
(``--time-scale`` stretches them for emulated targets).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import hashlib
import importlib
import json
import math
import platform
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "measure_pitch"]

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 480  # 10 ms
AMPLITUDE = 0.3  # of full scale
TONE_HZ = {"lkproto": 440.0, "livekit": 1000.0}
PACKETS = 200
BYTE_STREAM_SIZE = 1_000_000
PITCH_TOLERANCE_HZ = 5.0
CONTROL_TOPIC = "smoke.ctl"


def measure_pitch(samples: array.array[int]) -> float:
    """Pitch of a clean tone from its rising zero crossings, located to a fraction of a sample.

    Counting crossings between the first and the last one (not over the whole window) avoids the
    up-to-one-period error of a plain count; for a single sine through Opus this is well inside a
    hertz, without numpy.
    """
    rising: list[float] = []
    for i in range(1, len(samples)):
        a, b = samples[i - 1], samples[i]
        if a < 0 <= b:
            rising.append(i - 1 + (-a) / (b - a))
    if len(rising) < 2:
        return 0.0
    return (len(rising) - 1) * SAMPLE_RATE / (rising[-1] - rising[0])


def rms_dbfs(samples: array.array[int]) -> float:
    if not samples:
        return -math.inf
    mean_square = sum(v * v for v in samples) / len(samples)
    return 10 * math.log10(max(mean_square, 1e-9) / 32767**2)


class Smoke:
    """The steps, written once against the API both SDKs share."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.side: str = args.sdk
        self.rtc: Any = importlib.import_module(
            "lkproto.rtc" if args.sdk == "lkproto" else "livekit.rtc"
        )
        self.room: Any = self.rtc.Room()
        self.scale: float = args.time_scale
        self.steps: list[dict[str, Any]] = []
        self.control: set[str] = set()
        self.seq: list[int] = []
        self.texts: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.blobs: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        seed = 1 if self.side == "lkproto" else 2
        self.rng = random.Random(seed)

    # -- plumbing --------------------------------------------------------------------------

    async def step(self, name: str, body: Callable[[], Awaitable[str]], within: float) -> bool:
        """Run one step, bounded; record ok/detail/seconds. Returns whether it passed."""
        start = time.monotonic()
        try:
            detail = await asyncio.wait_for(body(), within * self.scale)
            ok = True
        except Exception as exc:  # a failed step is a result, not a crash
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        seconds = round(time.monotonic() - start, 3)
        self.steps.append({"step": name, "ok": ok, "detail": detail, "seconds": seconds})
        print(
            f"[{self.side}] {name}: {'ok' if ok else 'FAILED'} ({seconds} s) {detail}", flush=True
        )
        return ok

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        # Polling on purpose: the state lives in SDK objects that signal nothing we can await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def barrier(self, name: str) -> str:
        """Both sides reach ``name``: send it until the peer's arrives, then once more.

        Packets sent before the peer joined are not delivered, hence the repetition; the last
        send reaches a peer we just heard from, so neither side can wait forever for the other.
        """
        while name not in self.control:
            await self.room.local_participant.publish_data(name, topic=CONTROL_TOPIC)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_until(lambda: name in self.control), 0.5)
        await self.room.local_participant.publish_data(name, topic=CONTROL_TOPIC)
        return "peer reached it"

    async def linger(self) -> str:
        """The last barrier's final packet may be lost if its sender disconnects at once (nothing
        acknowledges it), so the lkproto side keeps repeating it until the official side, which
        leaves as soon as it passed, is gone."""
        if self.side == "livekit":
            return "leaving first"
        last = self.steps[-1]["step"].removeprefix("sync_after_")
        while self.args.peer in {p.identity for p in self.room.remote_participants.values()}:
            await self.room.local_participant.publish_data(last, topic=CONTROL_TOPIC)
            await asyncio.sleep(0.5)
        return "peer left"

    def keep(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- handlers (registered before anything is sent) -------------------------------------

    def on_data(self, packet: Any) -> None:
        payload = bytes(packet.data).decode()
        if packet.topic == CONTROL_TOPIC:
            self.control.add(payload)
        elif packet.topic == "smoke.seq":
            self.seq.append(int(payload))

    def on_text(self, reader: Any, _identity: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            await self.texts.put((text, reader.info.attributes.get("sha256", "")))

        self.keep(read())

    def on_bytes(self, reader: Any, _identity: str) -> None:
        async def read() -> None:
            chunks = [bytes(chunk) async for chunk in reader]
            await self.blobs.put((b"".join(chunks), reader.info.attributes.get("sha256", "")))

        self.keep(read())

    # -- steps ----------------------------------------------------------------------------

    async def join(self) -> str:
        if self.side == "lkproto":
            options = self.rtc.RoomOptions(
                rtc_config=self.rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
                tap_file=self.args.tap,
            )
        else:
            # ice_servers=[] takes the server's list, which LocalServer points at loopback.
            options = self.rtc.RoomOptions(rtc_config=self.rtc.RtcConfiguration(ice_servers=[]))
        self.room.on("data_received", self.on_data)
        self.room.register_text_stream_handler("smoke.text", self.on_text)
        self.room.register_byte_stream_handler("smoke.bytes", self.on_bytes)
        await self.room.connect(self.args.url, self.args.token, options)
        self.room.local_participant.register_rpc_method("smoke.reverse", self.reverse)
        return f"joined room {self.room.name} as {self.room.local_participant.identity}"

    @staticmethod
    async def reverse(data: Any) -> str:
        return str(data.payload)[::-1]

    async def packets(self) -> str:
        for i in range(PACKETS):
            await self.room.local_participant.publish_data(str(i), topic="smoke.seq")
        await self.wait_until(lambda: len(self.seq) >= PACKETS)
        if self.seq != list(range(PACKETS)):
            raise AssertionError(f"received out of order or duplicated: {self.seq[:20]}...")
        return f"sent {PACKETS}, received {PACKETS} in order"

    async def text_stream(self) -> str:
        text = "".join(self.rng.choice("abcdé✓ 語\n") for _ in range(20_000))
        digest = hashlib.sha256(text.encode()).hexdigest()
        await self.room.local_participant.send_text(
            text, topic="smoke.text", attributes={"sha256": digest}
        )
        got, announced = await self.texts.get()
        mine = hashlib.sha256(got.encode()).hexdigest()
        if mine != announced:
            raise AssertionError(f"received text sha256 {mine} != announced {announced}")
        return f"sent {len(text.encode())} B, received {len(got.encode())} B sha256 ok"

    async def byte_stream(self) -> str:
        data = self.rng.randbytes(BYTE_STREAM_SIZE)
        digest = hashlib.sha256(data).hexdigest()
        writer = await self.room.local_participant.stream_bytes(
            "smoke.bin", total_size=len(data), topic="smoke.bytes", attributes={"sha256": digest}
        )
        for offset in range(0, len(data), 64_000):
            await writer.write(data[offset : offset + 64_000])
        await writer.aclose()
        got, announced = await self.blobs.get()
        mine = hashlib.sha256(got).hexdigest()
        if mine != announced or len(got) != BYTE_STREAM_SIZE:
            raise AssertionError(f"received {len(got)} B sha256 {mine} != announced {announced}")
        return f"sent and received {BYTE_STREAM_SIZE} B, sha256 ok"

    async def rpc(self) -> str:
        payload = f"from-{self.side}-{self.rng.random()}"
        answer = await self.room.local_participant.perform_rpc(
            destination_identity=self.args.peer, method="smoke.reverse", payload=payload
        )
        if answer != payload[::-1]:
            raise AssertionError(f"rpc answered {answer!r}")
        return "peer reversed our payload"

    async def publish_tone(self) -> str:
        freq = TONE_HZ[self.side]
        source = self.rtc.AudioSource(SAMPLE_RATE, 1)
        track = self.rtc.LocalAudioTrack.create_audio_track("tone", source)
        options = self.rtc.TrackPublishOptions(source=self.rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        step = 2 * math.pi * freq / SAMPLE_RATE
        scale = AMPLITUDE * 32767

        async def feed() -> None:
            n = 0
            while True:
                frame = array.array(
                    "h", (int(scale * math.sin(step * (n + i))) for i in range(FRAME_SAMPLES))
                )
                n += FRAME_SAMPLES
                # capture_frame waits while the source's queue is full: that paces the loop.
                await source.capture_frame(
                    self.rtc.AudioFrame(frame.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)
                )

        self.keep(feed())
        return f"publishing {freq:g} Hz"

    async def hear_tone(self) -> str:
        expected = TONE_HZ["livekit" if self.side == "lkproto" else "lkproto"]
        found: list[Any] = []

        def look() -> bool:
            for participant in self.room.remote_participants.values():
                for pub in participant.track_publications.values():
                    if pub.track is not None and pub.kind == self.rtc.TrackKind.KIND_AUDIO:
                        found.append(pub.track)
                        return True
            return False

        await self.wait_until(look)
        stream = self.rtc.AudioStream(found[0], sample_rate=SAMPLE_RATE, num_channels=1)
        pcm: array.array[int] = array.array("h")
        settle = SAMPLE_RATE // 2
        try:
            async for event in stream:
                chunk = array.array("h", bytes(event.frame.data))
                if not pcm and settle == SAMPLE_RATE // 2 and rms_dbfs(chunk) < -40:
                    continue  # silence before the first audible frame
                if settle > 0:
                    settle -= len(chunk)
                    continue
                pcm.extend(chunk)
                if len(pcm) >= SAMPLE_RATE:
                    break
        finally:
            await stream.aclose()
        pitch = measure_pitch(pcm)
        level = rms_dbfs(pcm)
        detail = f"heard {pitch:.2f} Hz at {level:.1f} dBFS (expected {expected:g} Hz)"
        if abs(pitch - expected) > PITCH_TOLERANCE_HZ:
            raise AssertionError(detail)
        return detail

    def tap_and_decode(self) -> str:
        """``lkproto tap`` and ``lkproto decode`` on the file this run recorded."""
        cli = [sys.executable, "-m", "lkproto"]
        listing = subprocess.run(
            [*cli, "tap", self.args.tap, "--json", "--topic", "smoke.seq"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120 * self.scale,
        )
        records = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
        sent = [r for r in records if r["direction"] == ">"]
        received = [r for r in records if r["direction"] == "<"]
        if len(sent) < PACKETS or len(received) < PACKETS:
            raise AssertionError(f"tap shows {len(sent)} sent, {len(received)} received")
        decoded = subprocess.run(
            [*cli, "decode", received[0]["raw"]],
            capture_output=True,
            text=True,
            check=True,
            timeout=60 * self.scale,
        )
        message = json.loads(decoded.stdout)
        if message["type"] != "DataPacket.user":
            raise AssertionError(f"decode guessed {message['type']}")
        payload = message["fields"]["user"]["payload"]
        return (
            f"tap: {len(sent)} sent / {len(received)} received smoke.seq packets; "
            f"decode: {message['type']} payload {payload}"
        )

    async def run(self) -> bool:
        s = self.scale
        passed = await self.step("join", self.join, 60)
        try:
            passed = passed and await self.step("ready", lambda: self.barrier("ready"), 60)
            if passed:
                for name, body, within in (
                    ("packets_200_reliable", self.packets, 60),
                    ("text_stream_sha256", self.text_stream, 60),
                    ("byte_stream_1MB_sha256", self.byte_stream, 120),
                    ("rpc", self.rpc, 30),
                    ("publish_tone", self.publish_tone, 30),
                    ("hear_tone", self.hear_tone, 60),
                ):
                    passed = await self.step(name, body, within) and passed
                    await self.step(f"sync_after_{name}", lambda n=name: self.barrier(n), 60)
                await self.step("peer_left", self.linger, 30)
        finally:
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.room.disconnect(), 20 * s)
        if self.side == "lkproto" and self.args.tap:

            async def tap() -> str:
                return await asyncio.to_thread(self.tap_and_decode)

            passed = await self.step("tap_and_decode", tap, 240) and passed
        return passed


def versions() -> dict[str, str]:
    from importlib import metadata

    return {
        dist.metadata["Name"]: dist.version
        for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())
    }


async def amain(args: argparse.Namespace) -> int:
    smoke = Smoke(args)
    start = time.monotonic()
    passed = await smoke.run()
    result = {
        "side": args.sdk,
        "passed": passed,
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "wall_seconds": round(time.monotonic() - start, 2),
        "steps": smoke.steps,
        "distributions": versions(),
    }
    text = json.dumps(result, indent=2) + "\n"
    await asyncio.to_thread(Path(args.out).write_text, text)
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", choices=["lkproto", "livekit"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--peer", required=True, help="the other side's identity")
    parser.add_argument("--out", required=True, help="JSON result file")
    parser.add_argument("--tap", default=None, help="lkproto side: tap file to record and read")
    parser.add_argument("--time-scale", type=float, default=1.0)
    return asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
