"""Every program in ``examples/`` runs against a real livekit-server and does what it says.

Each example runs as a user would run it (``python examples/<name>.py ...``, server from the
``LIVEKIT_*`` variables) in a subprocess with a bounded time, against the session's
:class:`~lkproto.testing.LocalServer`; the test then checks the example's own output and, where
there is one, what the other side saw (a reply, identical bytes, decoded frames, a removal).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import pytest

from lkproto import rtc
from lkproto.testing import scaled
from tests.examples._process import LINE_TIMEOUT_S, ROOT, ServerProgram, run_program
from tests.interop._helpers import connect_ours, disconnect_all, unique_room, wait_for

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

__all__: list[str] = []

pytestmark = pytest.mark.interop

EXAMPLES = ROOT / "examples"


def example(server: LocalServer, name: str, *args: str) -> ServerProgram:
    """``python examples/<name> args...`` against ``server``."""
    return ServerProgram(server, EXAMPLES / name, *args)


async def run_example(server: LocalServer, name: str, *args: str) -> tuple[int, list[str]]:
    """Run an example to the end: exit status and stdout lines."""
    program = await run_program(server, EXAMPLES / name, *args)
    assert program.status is not None
    return program.status, program.lines


def _index(lines: list[str], pattern: str, start: int = 0) -> int:
    for i in range(start, len(lines)):
        if re.search(pattern, lines[i]):
            return i
    raise AssertionError(f"no line matching {pattern!r} after line {start}:\n" + "\n".join(lines))


async def test_data_bot_answers_a_text_stream_and_a_packet(livekit_server: LocalServer) -> None:
    room_name = unique_room("ex-bot")
    replies: list[tuple[str, str]] = []
    user = rtc.Room()

    async def on_reply(reader: rtc.TextStreamReader, sender: str) -> None:
        replies.append(("stream", await reader.read_all()))

    tasks: set[asyncio.Task[None]] = set()
    user.register_text_stream_handler(
        "lk.chat", lambda reader, sender: tasks.add(asyncio.create_task(on_reply(reader, sender)))
    )
    user.on(
        "data_received",
        lambda p: replies.append(("packet", p.data.decode())) if p.topic == "chat" else None,
    )
    async with example(livekit_server, "data_bot.py", "--room", room_name, "--answers", "2") as bot:
        await bot.wait_line(r"^data-bot: ready in room ")
        await connect_ours(livekit_server, "alice", room_name, room=user)
        try:
            await user.local_participant.send_text("hello bot", topic="lk.chat")
            await wait_for(lambda: replies, what="the reply to the text stream")
            # so that the bot knows whom the packet came from (see reply_to_packet)
            await bot.wait_line(r"^joined: alice$")
            await user.local_participant.publish_data(b"ping", topic="chat")
            await wait_for(lambda: len(replies) == 2, what="the reply to the packet")
        finally:
            await disconnect_all(user)
        status = await bot.finish()  # the bot leaves once alice has
    assert status == 0, bot.output
    assert replies == [("stream", "echo: hello bot"), ("packet", "echo: ping")]
    _index(bot.lines, r"^stream from alice: 'hello bot' -> 'echo: hello bot'$")
    _index(bot.lines, r"^packet from alice: 'ping' -> 'echo: ping'$")
    assert bot.lines[-1] == "data-bot: left", bot.output


async def test_agent_answers_the_frontends_rpc_with_a_streamed_transcript(
    livekit_server: LocalServer,
) -> None:
    room_name = unique_room("ex-agent")
    async with example(
        livekit_server, "transcript_agent.py", "--room", room_name, "--once"
    ) as agent:
        await agent.wait_line(r"^agent: listening in room ")
        status, lines = await run_example(
            livekit_server,
            "agent_frontend.py",
            "--room",
            room_name,
            "--ask",
            "what is lkproto?",
            "--once",
        )
        agent_status = await agent.finish()
    output = "\n".join(lines)
    assert status == 0, output
    answer = "You asked: what is lkproto? I am an example agent, so I can only repeat it."
    listening = _index(lines, r"^\[agent: listening\]$")
    rpc = _index(lines, r"^rpc ask -> ", listening)
    assert json.loads(lines[rpc].removeprefix("rpc ask -> ")) == {"answer": answer}
    thinking = _index(lines, r"^\[agent: thinking\]$", listening)
    speaking = _index(lines, r"^\[agent: speaking\]$", thinking)
    final = lines.index(f"agent: {answer}")
    interim = [line for line in lines[speaking:final] if line.endswith(" ...")]
    assert len(interim) >= 2, output  # the segment grew word by word before it was final
    assert all(answer.startswith(line[len("agent: ") : -len(" ...")]) for line in interim)
    assert lines[-1] == "frontend: left", output
    assert agent_status == 0, agent.output
    _index(agent.lines, r"^agent: rpc ask\('what is lkproto\?'\) from frontend-user$")
    _index(agent.lines, r"^agent: said ")


async def test_file_sender_delivers_identical_bytes(
    livekit_server: LocalServer, tmp_path: Path
) -> None:
    room_name = unique_room("ex-file")
    payload = os.urandom(200_000)  # 14 chunks of 15 kB
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    out_dir = tmp_path / "received"
    async with example(
        livekit_server,
        "file_sender.py",
        "receive",
        "--room",
        room_name,
        "--out",
        str(out_dir),
        "--once",
    ) as receiver:
        await receiver.wait_line(r"^receiver: ready in room ")
        status, lines = await run_example(
            livekit_server, "file_sender.py", "send", "--room", room_name, str(source)
        )
        receiver_status = await receiver.finish()
    output = "\n".join(lines)
    assert status == 0, output
    assert receiver_status == 0, receiver.output
    assert (out_dir / "payload.bin").read_bytes() == payload
    progress = [line for line in lines if line.startswith("sent ") and line.endswith("%)")]
    assert progress[-1] == "sent 200000/200000 bytes (100%)", output
    assert len(progress) >= 3, output
    _index(lines, r"^confirmed by file-receiver: 200000 bytes, sha256 ok$")
    _index(receiver.lines, r"^saved .*payload\.bin: 200000 bytes, sha256 ok$")


def _make_clip(path: Path, width: int, height: int, frames: int) -> None:
    """A short MPEG-4 clip of solid colours, written with PyAV."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(15))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(width, height, "rgb24")
            frame.planes[0].update(bytes(((i * 16) % 256, 120, 40)) * (width * height))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.parametrize("from_file", [True, False], ids=["file", "pattern"])
async def test_video_publisher_sends_frames(
    livekit_server: LocalServer, tmp_path: Path, from_file: bool
) -> None:
    room_name = unique_room("ex-video")
    clip = tmp_path / "clip.mp4"
    if from_file:
        _make_clip(clip, 176, 144, 15)
        source_args = ["--file", str(clip)]
        size, what = (176, 144), r"clip\.mp4"
    else:
        source_args = []
        size, what = (320, 240), "test pattern"
    viewer = rtc.Room()
    sizes: list[tuple[int, int]] = []

    async def watch(track: rtc.RemoteTrack) -> None:
        stream = rtc.VideoStream(track)
        try:
            async for event in stream:
                sizes.append((event.frame.width, event.frame.height))
                if len(sizes) >= 5:
                    return
        finally:
            await stream.aclose()

    tasks: set[asyncio.Task[None]] = set()
    viewer.on(
        "track_subscribed",
        lambda track, pub, participant: tasks.add(asyncio.create_task(watch(track))),
    )
    await connect_ours(livekit_server, "viewer", room_name, room=viewer)
    try:
        status, lines = await run_example(
            livekit_server,
            "video_publisher.py",
            "--room",
            room_name,
            *source_args,
            "--duration",
            str(scaled(4.0)),
        )
        await wait_for(lambda: len(sizes) >= 5, what="five decoded frames")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await disconnect_all(viewer)
    output = "\n".join(lines)
    assert status == 0, output
    pattern = rf"publishing {what}: track TR_\w+, {size[0]}x{size[1]} at 15 fps"
    assert re.fullmatch(pattern, lines[0]), output
    sent = int(re.fullmatch(r"sent (\d+) frames", lines[-1]).group(1))  # type: ignore[union-attr]
    assert sent >= 15, output  # the 1 s clip looped at least once
    assert set(sizes) == {size}


async def test_room_admin_lists_mutes_and_removes(livekit_server: LocalServer) -> None:
    room_name = unique_room("ex-admin")
    status, lines = await run_example(
        livekit_server, "room_admin.py", "create", room_name, "--max-participants", "5"
    )
    assert status == 0, lines
    assert re.fullmatch(
        rf"created {room_name} \(RM_\w+\), empty timeout 300 s, max participants 5", lines[0]
    )
    status, lines = await run_example(livekit_server, "room_admin.py", "list")
    assert status == 0, lines
    assert f"{room_name}: 0 participants, 0 publishing" in lines

    guest, host = rtc.Room(), rtc.Room()
    guest_left, host_left = asyncio.Event(), asyncio.Event()
    guest.on("disconnected", lambda reason: guest_left.set())
    host.on("disconnected", lambda reason: host_left.set())
    source = rtc.AudioSource(48_000, 1)
    try:
        await connect_ours(livekit_server, "host", room_name, room=host)
        await connect_ours(livekit_server, "guest", room_name, room=guest)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await guest.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        status, lines = await run_example(
            livekit_server, "room_admin.py", "participants", room_name
        )
        assert status == 0, lines
        assert lines == [
            f"guest: 1 tracks: {publication.sid} mic",
            "host: 0 tracks",
            "2 participants",
        ]

        status, lines = await run_example(
            livekit_server, "room_admin.py", "mute", room_name, "guest"
        )
        assert (status, lines) == (0, [f"muted {publication.sid} of guest"])
        await wait_for(lambda: publication.muted, what="the guest's track muted by the server")

        status, lines = await run_example(
            livekit_server, "room_admin.py", "mute", room_name, "nobody"
        )
        assert status == 1, lines
        assert lines[-1].startswith("server error: not_found (404)"), lines

        status, lines = await run_example(
            livekit_server, "room_admin.py", "remove", room_name, "guest"
        )
        assert (status, lines) == (0, [f"removed guest from {room_name}"])
        async with asyncio.timeout(scaled(LINE_TIMEOUT_S)):
            await guest_left.wait()
        assert not host_left.is_set()

        status, lines = await run_example(livekit_server, "room_admin.py", "delete", room_name)
        assert (status, lines) == (0, [f"deleted {room_name}"])
        async with asyncio.timeout(scaled(LINE_TIMEOUT_S)):
            await host_left.wait()
    finally:
        await source.aclose()
        await disconnect_all(guest, host)
    status, lines = await run_example(livekit_server, "room_admin.py", "list")
    assert status == 0, lines
    assert not [line for line in lines if line.startswith(f"{room_name}:")], lines


async def test_conformance_run_passes_its_sample(livekit_server: LocalServer) -> None:
    status, lines = await run_example(livekit_server, "conformance_run.py")
    output = "\n".join(lines)
    assert status == 0, output
    assert lines[0].startswith("running 4 scenarios for lkproto against ws://127.0.0.1:"), output
    results = [line for line in lines if re.fullmatch(r"\S+ \[lkproto\] \w+.*", line)]
    assert len(results) == 4, output
    assert all(" [lkproto] pass " in line for line in results), output
    assert lines[-1] == "| **total** | 4 pass / 0 fail / 0 unsupported |", output


def test_every_example_is_tested_and_documented() -> None:
    """A new example gets a test here, and each says how to run it."""
    tested = {
        "agent_frontend.py",
        "conformance_run.py",
        "data_bot.py",
        "file_sender.py",
        "room_admin.py",
        "transcript_agent.py",
        "video_publisher.py",
    }
    programs = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert programs == tested
    for name in programs:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""'), name
        assert f"python examples/{name}" in text, name
