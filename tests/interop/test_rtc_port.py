"""Port test for ``livekit.rtc`` (issue 17): official-style programs, only the import switched.

Each program in ``tests/interop/port/`` is written in the official Python SDK's documented style
(``from livekit import rtc`` / ``from livekit import api``, credentials from ``LIVEKIT_*``,
``await room.connect(url, token)`` without extra options). The test runs it twice against the
same livekit-server: once as written with the official packages, once with only those import
lines switched to ``from lkproto import ...`` by text substitution. The counterpart each
program talks to is the same in both runs (the official SDK, or an lkproto example), and both
runs must show the same observable outcome: what the program printed (normalised only where the
order of two independent events is a race) and what the counterpart saw.

The two programs of the server API (a room admin script and a token server with agent dispatch)
are in ``tests/interop/test_api_port.py``.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as lrtc

from tests.examples._process import ROOT, ServerProgram, run_program
from tests.interop._helpers import connect_official, disconnect_all, unique_room, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.testing import LocalServer

__all__: list[str] = []

pytestmark = pytest.mark.interop

PORT_DIR = ROOT / "tests" / "interop" / "port"
IMPORT_SWITCHES = (("from livekit import api, rtc", "from lkproto import api, rtc"),)


def program_source(name: str, tmp_path: Path, *, ours: bool) -> Path:
    """The program ``name`` as written, or with only its imports switched to lkproto."""
    text = (PORT_DIR / name).read_text()
    assert not re.search(r"^(from|import) lkproto", text, re.M), "written for the official SDK"
    if ours:
        for official, switched in IMPORT_SWITCHES:
            assert official in text
            text = text.replace(official, switched)
        assert not re.search(r"^(from|import) livekit", text, re.M), "an import was not switched"
    target = tmp_path / ("lkproto" if ours else "official") / name
    target.parent.mkdir(exist_ok=True)
    target.write_text(text)
    return target


def assert_exited_cleanly(program: ServerProgram) -> None:
    """Status 0, or the official SDK's abort at interpreter exit after the program's last line.

    The official SDK's native library sometimes panics in a tokio worker while the process exits
    ("panic in a function that cannot unwind", SIGABRT) after the program has disconnected and
    printed everything; seen in about 1 of 5 runs of the frontend here. That is not part of the
    outcome compared, and never happens with lkproto (whose runs must exit 0).
    """
    if program.status == 0:
        return
    official_exit_abort = (
        program.status == -signal.SIGABRT
        and "panicked" in program.stderr
        and program.lines[-1:] == ["disconnected"]
        and "lkproto" not in str(program.script)
    )
    assert official_exit_abort, program.output


# ---------------------------------------------------------------------------- data bot


async def _data_bot_run(server: LocalServer, script: Path) -> tuple[list[str], list[str]]:
    """Run the bot; an official-SDK user sends it an RPC, a chat stream and a packet."""
    room_name = unique_room("port-bot")
    seen: list[str] = []
    user = lrtc.Room()
    tasks: set[asyncio.Task[None]] = set()

    async def read_reply(reader: lrtc.TextStreamReader, identity: str) -> None:
        seen.append(f"stream from {identity}: {await reader.read_all()}")

    user.register_text_stream_handler(
        "lk.chat", lambda r, i: tasks.add(asyncio.ensure_future(read_reply(r, i)))
    )

    @user.on("data_received")
    def on_data(packet: lrtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant else None
        seen.append(f"packet from {sender}: {packet.data.decode()} topic {packet.topic}")

    async with ServerProgram(server, script, room_name) as bot:
        await bot.wait_line(r"^connected to ")
        await connect_official(server, "user", room_name, room=user)
        try:
            await bot.wait_line(r"^participant connected: user$")
            reply = await user.local_participant.perform_rpc(
                destination_identity="bot", method="reverse", payload="hello"
            )
            seen.append(f"rpc reply: {reply}")
            await user.local_participant.send_text("hi there", topic="lk.chat")
            await wait_for(lambda: len(seen) == 2, what="the chat reply")
            await user.local_participant.publish_data(b"ping", topic="chat")
            await wait_for(lambda: len(seen) == 3, what="the packet reply")
        finally:
            await disconnect_all(user)
        await bot.finish()
    assert_exited_cleanly(bot)
    return [line.replace(room_name, "<room>") for line in bot.lines], seen


async def test_data_bot_runs_unchanged(livekit_server: LocalServer, tmp_path: Path) -> None:
    official = await _data_bot_run(
        livekit_server, program_source("data_bot.py", tmp_path, ours=False)
    )
    ours = await _data_bot_run(livekit_server, program_source("data_bot.py", tmp_path, ours=True))
    assert ours == official
    printed, seen = official
    assert printed == [
        "connected to <room> as bot",
        "participant connected: user",
        "rpc: reverse(hello) from user",
        "stream: hi there from user on lk.chat",
        "packet: ping from user kind 1",
        "participant disconnected: user",
        "disconnected",
    ]
    assert seen == [
        "rpc reply: olleh",
        "stream from bot: echo: hi there",
        "packet from bot: pong topic chat",
    ]


# ---------------------------------------------------------------------------- agent frontend


async def _frontend_run(server: LocalServer, script: Path) -> list[str]:
    """Run the frontend against examples/transcript_agent.py (lkproto) in a fresh room."""
    room_name = unique_room("port-agent")
    agent_script = ROOT / "examples" / "transcript_agent.py"
    async with ServerProgram(server, agent_script, "--room", room_name, "--once") as agent:
        await agent.wait_line(r"^agent: listening in room ")
        frontend = await run_program(server, script, room_name)
        agent_status = await agent.finish()
    assert_exited_cleanly(frontend)
    assert agent_status == 0, agent.output
    # The RPC reply and the transcript race the state changes the agent makes meanwhile, so the
    # outcome is: the states in order, then the other lines in order.
    states = [line for line in frontend.lines if line.startswith("agent ")]
    others = [line for line in frontend.lines if not line.startswith("agent ")]
    return states + others


async def test_agent_frontend_runs_unchanged(livekit_server: LocalServer, tmp_path: Path) -> None:
    official = await _frontend_run(
        livekit_server, program_source("agent_frontend.py", tmp_path, ours=False)
    )
    ours = await _frontend_run(
        livekit_server, program_source("agent_frontend.py", tmp_path, ours=True)
    )
    assert ours == official
    answer = "You asked: what time is it? I am an example agent, so I can only repeat it."
    assert official == [
        "agent example-agent is listening",
        "agent example-agent is thinking",
        "agent example-agent is speaking",
        "agent example-agent is listening",
        "published microphone (2)",
        f'rpc reply: {{"answer": "{answer}"}}',
        f"transcript from example-agent: {answer!r} final=true",
        "disconnected",
    ]


# ---------------------------------------------------------------------------- video publisher


async def _video_run(server: LocalServer, script: Path) -> tuple[list[str], list[object]]:
    """Run the publisher; an official-SDK viewer records the publication and frame sizes."""
    room_name = unique_room("port-video")
    viewer = lrtc.Room()
    seen: list[object] = []
    sizes: list[tuple[int, int]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def watch(track: lrtc.Track) -> None:
        stream = lrtc.VideoStream(track)
        try:
            async for event in stream:
                sizes.append((event.frame.width, event.frame.height))
        finally:
            await stream.aclose()

    @viewer.on("track_subscribed")
    def on_track(
        track: lrtc.Track, pub: lrtc.RemoteTrackPublication, participant: lrtc.RemoteParticipant
    ) -> None:
        seen.append((participant.identity, pub.name, pub.kind, pub.source, pub.mime_type))
        tasks.add(asyncio.ensure_future(watch(track)))

    await connect_official(server, "viewer", room_name, room=viewer)
    try:
        publisher = await run_program(server, script, room_name)
        await wait_for(lambda: len(sizes) >= 10, what="ten frames at the official viewer")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await disconnect_all(viewer)
    assert_exited_cleanly(publisher)
    # The official viewer may first decode a tiny placeholder frame (8x8 was seen with both
    # publishers); the outcome is the size the video settles at.
    seen.append(max(sizes))
    return publisher.lines, seen


async def test_video_publisher_runs_unchanged(livekit_server: LocalServer, tmp_path: Path) -> None:
    official = await _video_run(
        livekit_server, program_source("video_publisher.py", tmp_path, ours=False)
    )
    ours = await _video_run(
        livekit_server, program_source("video_publisher.py", tmp_path, ours=True)
    )
    assert ours == official
    printed, seen = official
    assert printed == [
        "connected as camera",
        "published 2 track 'bar' source 1",
        "captured 45 frames",
        "disconnected",
    ]
    assert seen[0][:4] == ("camera", "bar", lrtc.TrackKind.KIND_VIDEO, 1)  # type: ignore[index]
    assert re.fullmatch(r"video/\w+", seen[0][4])  # type: ignore[index]
    assert seen[1] == (320, 240)
