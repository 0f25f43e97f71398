"""The wire tap through a whole session against a real server.

``RoomOptions(tap=..., tap_file=...)``: one :class:`~lkproto.wire.tap.TapRecord` per signal
message and data packet, both ways, every one decoded; the JSON Lines file holds the same
records and round-trips through ``lkproto tap FILE --type ... --json``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from lkproto import rtc
from lkproto.wire import decode_data_packet, decode_signal_request, decode_signal_response
from lkproto.wire.tap import TapRecord
from tests.conftest import scaled

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

TIMEOUT_S = 15.0
SAMPLE_RATE = 48_000
FRAME_SAMPLES = 480  # 10 ms


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(TIMEOUT_S)
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _options(**kwargs: object) -> rtc.RoomOptions:
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        **kwargs,  # type: ignore[arg-type]
    )


async def _publish_tone(room: rtc.Room, frames: int) -> str:
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    for _ in range(frames):
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES))
    return publication.sid


def _check_raw(record: TapRecord) -> None:
    """The decoded fields came from exactly the raw bytes on the record."""
    if record.channel == "signal":
        decode = decode_signal_request if record.direction == ">" else decode_signal_response
        message: object = decode(record.raw)
    elif record.channel in ("_reliable", "_lossy"):
        message = decode_data_packet(record.raw)
    else:
        return
    from lkproto.wire.tap import message_fields

    assert message_fields(message) == record.fields  # type: ignore[arg-type]


async def test_tap_records_a_full_session(livekit_server: LocalServer, tmp_path: Path) -> None:
    room_name = _unique("tap")
    tap_file = tmp_path / "session.jsonl"
    records: list[TapRecord] = []
    legacy: list[tuple[str, str]] = []

    def trace(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        legacy.append((direction, channel))

    alice = rtc.Room()
    bob = rtc.Room()
    got_data: list[rtc.DataPacket] = []
    got_text: list[str] = []
    bob.on("data_received", got_data.append)
    alice.on("data_received", got_data.append)

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            got_text.append(await reader.read_all())

        asyncio.get_running_loop().create_task(read())

    bob.register_text_stream_handler("notes", on_text)
    await alice.connect(
        livekit_server.url,
        livekit_server.create_token("alice", room_name),
        _options(tap=records.append, tap_file=str(tap_file), trace=trace),
    )
    try:
        await bob.connect(
            livekit_server.url, livekit_server.create_token("bob", room_name), _options()
        )
        try:

            def echo(data: rtc.RpcInvocationData) -> str:
                return data.payload.upper()

            bob.local_participant.register_rpc_method("echo", echo)

            await _until(
                lambda: "bob" in {p.identity for p in alice.remote_participants.values()}, "bob"
            )
            await alice.local_participant.publish_data(b"to bob", topic="chat")
            await _until(lambda: len(got_data) >= 1, "alice's packet at bob")
            await bob.local_participant.publish_data(b"to alice", topic="chat")
            await _until(lambda: len(got_data) >= 2, "bob's packet at alice")
            await alice.local_participant.send_text("hello notes", topic="notes")
            await _until(lambda: got_text == ["hello notes"], "the text stream")
            answer = await alice.local_participant.perform_rpc(
                destination_identity="bob", method="echo", payload="ping"
            )
            assert answer == "PING"
            track_sid = await _publish_tone(alice, frames=50)
            await asyncio.sleep(scaled(1.0))  # let the queued half second of audio go out
            await alice.local_participant.unpublish_track(track_sid)
        finally:
            await bob.disconnect()
    finally:
        await alice.disconnect()

    # Every message on the wire is decoded, from exactly its raw bytes.
    undecoded = [r for r in records if not r.decoded]
    assert undecoded == []
    for record in records:
        _check_raw(record)
    types = {r.type for r in records}
    expected = {
        "SignalRequest.offer",
        "SignalRequest.add_track",
        "SignalRequest.leave",
        "SignalResponse.join",
        "SignalResponse.answer",
        "SignalResponse.track_published",
        "DataPacket.user",
        "DataPacket.stream_header",
    }
    assert expected <= types, expected - types
    user = [r for r in records if r.type == "DataPacket.user"]
    assert {(r.direction, r.topic) for r in user} == {(">", "chat"), ("<", "chat")}
    assert [r.participant for r in user if r.direction == "<"] == ["bob"]
    # RPC v2 travels as a stream on lk.rpc_request / lk.rpc_response (PROTOCOL-MAP §6).
    assert {r.topic for r in records if r.type == "DataPacket.stream_header"} >= {"notes"}
    rtp = [r for r in records if r.channel == "rtp"]
    assert rtp
    final = [
        r.fields
        for r in rtp
        if r.fields and r.fields["final"] and r.fields["track_sid"] == track_sid
    ]
    assert final
    sent = final[0]["packets_sent"]
    assert isinstance(sent, int)
    assert sent > 0
    # The legacy callback saw the same wire messages (it never gets RTP samples).
    assert legacy == [(r.direction, r.channel) for r in records if r.channel != "rtp"]

    # The file holds the same records, and `lkproto tap` filters them.
    lines = tap_file.read_text(encoding="utf-8").splitlines()
    assert [TapRecord.from_json(json.loads(line)) for line in lines] == records
    out = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "lkproto",
            "tap",
            str(tap_file),
            "--type",
            "DataPacket.user",
            "--direction",
            "in",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=scaled(60),
    )
    filtered = [TapRecord.from_json(json.loads(line)) for line in out.stdout.splitlines()]
    assert filtered == [r for r in user if r.direction == "<"]
    pretty = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lkproto", "tap", str(tap_file), "--type", "SignalResponse.*"],
        capture_output=True,
        text=True,
        check=True,
        timeout=scaled(60),
    )
    lines_out = pretty.stdout.splitlines()
    assert len(lines_out) == sum(r.type.startswith("SignalResponse.") for r in records)
    assert all(" < signal " in line for line in lines_out)


async def test_tap_env_var_and_shared_file(
    livekit_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LKPROTO_TAP`` taps rooms without options; two rooms share one file by whole lines."""
    tap_file = tmp_path / "env.jsonl"
    monkeypatch.setenv("LKPROTO_TAP", str(tap_file))
    room_name = _unique("tap-env")
    rooms = [rtc.Room(), rtc.Room()]
    for i, room in enumerate(rooms):
        await room.connect(
            livekit_server.url, livekit_server.create_token(f"p{i}", room_name), _options()
        )
    for room in rooms:
        await room.disconnect()
    records = [TapRecord.from_json(json.loads(x)) for x in tap_file.read_text().splitlines()]
    joins = [r for r in records if r.type == "SignalResponse.join"]
    assert sorted(r.participant or "" for r in joins) == ["p0", "p1"]
    assert all(r.decoded for r in records)
