"""The demo's Python frontend: what a voice-agent web page does, in a terminal.

It joins the room, follows the agent through :class:`lkproto.agents.AgentSession` and prints a
live transcript and a state line (``[agent: thinking]``). Its "microphone" plays
``assets/question.wav`` during a push-to-talk turn (``start_turn`` / ``end_turn`` RPCs, with the
WAV's text attached because the agent has no speech recogniser). It then receives the agent's
picture (byte stream), calls the agent's ``get_weather`` RPC and sends a chat message.

:func:`run_frontend` returns a :class:`FrontendReport` and raises :class:`DemoFailed` when
anything it expects does not happen in time.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TextIO

from lkproto import agents, rtc
from lkproto.agents.demo import (
    AGENT_IDENTITY,
    ANSWER_TEXT,
    CHAT_REPLY_TEXT,
    IMAGE_TOPIC,
    QUESTION_TEXT,
    RPC_END_TURN,
    RPC_GET_WEATHER,
    RPC_START_TURN,
)
from lkproto.agents.demo.agent import loopback_options
from lkproto.agents.demo.media import QUESTION_WAV, Clip, png_size, sha256_hex
from lkproto.errors import LkError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CHAT_TEXT", "DemoFailed", "FrontendReport", "ImageReceived", "run_frontend"]

CHAT_TEXT: Final = "Thanks!"
# Each step waits at most this long for the agent (the agent's own pauses are ~1 s).
STEP_TIMEOUT_S: Final = 20.0
# Silence after the question so that its tail is through the network before end_turn.
TAIL_SILENCE_S: Final = 0.3


class DemoFailed(LkError):
    """Something the demo expects did not happen."""


@dataclass(frozen=True, slots=True)
class ImageReceived:
    """The picture the agent sent.

    Attributes:
        name: the byte stream's name.
        mime_type: its MIME type.
        size: bytes received.
        sha256: SHA-256 of the bytes received, hex.
        sha256_ok: it equals the ``sha256`` attribute the agent attached.
        dimensions: ``(width, height)`` read from the PNG header, None if not a PNG.
    """

    name: str
    mime_type: str
    size: int
    sha256: str
    sha256_ok: bool
    dimensions: tuple[int, int] | None


@dataclass
class FrontendReport:
    """What the frontend saw.

    Attributes:
        states: agent states in the order they were shown.
        final_segments: ``(speaker, text)`` of each final transcript segment, in order.
        interim_updates: number of interim transcript updates shown.
        weather: the decoded ``get_weather`` RPC answer.
        image: the picture, once received.
    """

    states: list[str] = field(default_factory=list)
    final_segments: list[tuple[str, str]] = field(default_factory=list)
    interim_updates: int = 0
    weather: dict[str, object] | None = None
    image: ImageReceived | None = None


class _Printer:
    """Prints the transcript and state changes; on a terminal an interim line is rewritten in
    place until it is final, elsewhere (logs, CI) every update gets its own line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._open_interim: str | None = None

    def line(self, text: str) -> None:
        if self._open_interim is not None:
            self._out.write("\n")
            self._open_interim = None
        self._out.write(text + "\n")
        self._out.flush()

    def segment(self, segment_id: str, speaker: str, text: str, final: bool) -> None:
        shown = f"  {speaker + ':':<7}{text}{'' if final else ' ...'}"
        if self._tty and self._open_interim == segment_id:
            self._out.write("\r\x1b[K" + shown)
        else:
            if self._open_interim is not None:
                self._out.write("\n")
            self._out.write(shown)
        if final or not self._tty:
            self._out.write("\n")
            self._open_interim = None
        else:
            self._open_interim = segment_id
        self._out.flush()


class _Frontend:
    def __init__(self, out: TextIO) -> None:
        self.room = rtc.Room()
        self.report = FrontendReport()
        self.print = _Printer(out)
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.session = agents.AgentSession(self.room, agent_connect_timeout=STEP_TIMEOUT_S)
        self.session.on("state_changed", self._on_state)
        self.session.on("transcript_updated", self._on_segment)
        self.room.register_byte_stream_handler(IMAGE_TOPIC, self._on_image)

    def _on_state(self, old: agents.AgentState, new: agents.AgentState) -> None:
        del old
        self.report.states.append(new.value)
        self.print.line(f"[agent: {new.value}]")
        self._changed.set()

    def _speaker(self, segment: agents.TranscriptSegment) -> str:
        if segment.participant_identity == self.room.local_participant.identity:
            return "you"
        return "agent" if segment.is_agent else segment.participant_identity

    def _on_segment(self, segment: agents.TranscriptSegment) -> None:
        speaker = self._speaker(segment)
        self.print.segment(segment.id, speaker, segment.text, segment.final)
        if segment.final:
            self.report.final_segments.append((speaker, segment.text))
        else:
            self.report.interim_updates += 1
        self._changed.set()

    def _on_image(self, reader: rtc.ByteStreamReader, sender_identity: str) -> None:
        task = asyncio.ensure_future(self._read_image(reader, sender_identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_image(self, reader: rtc.ByteStreamReader, sender_identity: str) -> None:
        data = bytearray()
        async for chunk in reader:
            data += chunk
        info = reader.info
        digest = sha256_hex(bytes(data))
        image = ImageReceived(
            name=info.name,
            mime_type=info.mime_type,
            size=len(data),
            sha256=digest,
            sha256_ok=digest == (info.attributes or {}).get("sha256"),
            dimensions=png_size(bytes(data)),
        )
        self.report.image = image
        size = "x".join(map(str, image.dimensions)) if image.dimensions else "not a PNG"
        check = "matches" if image.sha256_ok else "DOES NOT MATCH"
        self.print.line(
            f"image from {sender_identity}: {image.name} ({image.mime_type}, {size}), "
            f"{image.size} bytes, sha256 {digest[:16]}... ({check} the agent's)"
        )
        self._changed.set()

    async def until(self, what: str, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking after every state/transcript/image."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise DemoFailed(f"timed out after {STEP_TIMEOUT_S:g} s waiting for {what}") from None

    def has_final(self, speaker: str, text: str) -> bool:
        return (speaker, text) in self.report.final_segments

    def states_since(self, mark: int) -> list[str]:
        return self.report.states[mark:]

    async def rpc(self, method: str, payload: dict[str, object]) -> str:
        return await self.room.local_participant.perform_rpc(
            destination_identity=AGENT_IDENTITY, method=method, payload=json.dumps(payload)
        )


async def _talk(front: _Frontend, source: rtc.AudioSource, clip: Clip) -> None:
    """One push-to-talk turn: start_turn (with the WAV's text), the WAV, end_turn."""
    front.print.line(f'frontend: push-to-talk: saying "{QUESTION_TEXT}" ({clip.duration:.1f} s)')
    await front.rpc(RPC_START_TURN, {"transcript": QUESTION_TEXT})
    for pcm in clip.frames():
        await source.capture_frame(rtc.AudioFrame(pcm, clip.sample_rate, 1, clip.frame_samples))
    await source.wait_for_playout()
    await asyncio.sleep(TAIL_SILENCE_S)
    await front.rpc(RPC_END_TURN, {})


async def run_frontend(
    url: str,
    token: str,
    *,
    out: TextIO | None = None,
    on_joined: Callable[[], object] | None = None,
) -> FrontendReport:
    """Join as a user, hold one spoken turn with the agent, then the RPC and chat; leave.

    Args:
        url: the server's WebSocket URL.
        token: a join token for the user.
        out: where the transcript goes (default ``sys.stdout``).
        on_joined: called once the user is in the room (the console demo dispatches the agent
            then, as LiveKit's agent dispatch would).

    Raises:
        DemoFailed: the agent did not do what the demo expects in time.
    """
    front = _Frontend(out or sys.stdout)
    room = front.room
    clip = Clip.load(QUESTION_WAV)
    source = rtc.AudioSource(clip.sample_rate, 1)
    try:
        await room.connect(url, token, loopback_options())
        front.print.line(
            f"frontend: joined room {room.name!r} as {room.local_participant.identity}"
        )
        if on_joined is not None:
            on_joined()
        try:
            await front.session.wait_for(agents.AgentState.LISTENING, timeout=STEP_TIMEOUT_S)
        except TimeoutError:
            raise DemoFailed(f"the agent was not listening within {STEP_TIMEOUT_S:g} s") from None
        # Published on the first push-to-talk, as the web page does (publishing it earlier would
        # show "pre-connect-buffering" until the agent is there, PROTOCOL-MAP §8).
        mic = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        await room.local_participant.publish_track(
            mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

        mark = len(front.report.states)
        await _talk(front, source, clip)
        await front.until(
            "the agent's spoken answer",
            lambda: (
                front.has_final("agent", ANSWER_TEXT)
                and front.report.image is not None
                and front.states_since(mark)[-1:] == ["listening"]
            ),
        )
        # back-ends can read the same facts programmatically
        answer = await front.rpc(RPC_GET_WEATHER, {"location": "moon"})
        front.print.line(f'rpc {RPC_GET_WEATHER}({{"location": "moon"}}) -> {answer}')
        front.report.weather = json.loads(answer)

        front.print.line(f'frontend: chat: "{CHAT_TEXT}"')
        await front.session.send_chat(CHAT_TEXT)
        await front.until(
            "the agent's chat answer",
            lambda: (
                front.has_final("agent", CHAT_REPLY_TEXT) and front.session.state == "listening"
            ),
        )
        return front.report
    finally:
        await source.aclose()
        await front.session.aclose()
        await room.disconnect()
