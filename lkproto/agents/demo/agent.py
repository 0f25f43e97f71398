"""The demo's voice agent: a participant of kind ``AGENT`` built on :mod:`lkproto.agents`.

It has no speech recogniser, language model or speech synthesiser: what it does with media is
measure and play back. It hears *how much* speech a turn holds (10 ms frames louder than
:data:`SPEECH_RMS`), takes the words of the user's turn from the text the frontend attached to
``start_turn`` (or writes ``[speech 2.4 s]``), and always answers with ``assets/answer.wav``.
Everything around that is what a real LiveKit agent does on the wire: ``lk.agent.state``,
``lk.transcription`` streams for the user (on their behalf) and for itself, RPC methods, a byte
stream, a published voice track and ``lk.chat``.

Turns are push-to-talk, as in the LiveKit Agents push-to-talk example: the frontend calls
``start_turn`` (JSON payload, optional ``{"transcript": "..."}``), sends audio on its
microphone track, then calls ``end_turn``. ``start_turn`` while the agent speaks interrupts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from lkproto import agents, rtc
from lkproto.agents.demo import (
    AGENT_IDENTITY,
    AGENT_NAME,
    ANSWER_TEXT,
    CHAT_REPLY_TEXT,
    IMAGE_NAME,
    IMAGE_TOPIC,
    NO_SPEECH_TEXT,
    RPC_END_TURN,
    RPC_GET_WEATHER,
    RPC_START_TURN,
)
from lkproto.agents.demo.media import ANSWER_WAV, Clip, moon_png, png_size, rms, sha256_hex

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = [
    "SPEECH_RMS",
    "MoonAgent",
    "agent_token",
    "get_weather",
    "loopback_options",
]

_log = logging.getLogger("lkproto.agents.demo.agent")

# A 10 ms frame louder than this (RMS, fraction of full scale; about -40 dBFS) counts as speech.
SPEECH_RMS: Final = 0.01
# A turn with less speech than this gets NO_SPEECH_TEXT instead of the answer.
MIN_SPEECH_S: Final = 0.3
# How often the interim user transcript ("[speech 1.2 s]") is refreshed while a turn is open.
INTERIM_EVERY_S: Final = 0.5
# After end_turn: audio still in flight (jitter buffer, decoder) may arrive this late.
END_OF_TURN_GRACE_S: Final = 0.3
# Stand-in for a language model's latency, so that "thinking" is visible.
THINK_S: Final = 0.8
# Waiting for the first frontend to subscribe to the agent's voice before saying "listening".
SUBSCRIBED_TIMEOUT_S: Final = 15.0
# Leave if no user shows up (e.g. a web page fetched a token and never connected).
NO_USER_TIMEOUT_S: Final = 120.0
SAMPLE_RATE: Final = 16_000


def loopback_options() -> rtc.RoomOptions:
    """Room options for the local server: ICE on 127.0.0.1 only (PROTOCOL-MAP §17)."""
    return rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))


def agent_token(api_key: str, api_secret: str, room: str) -> str:
    """A join token for the agent: kind ``agent``, ``initializing`` from the first moment.

    The state rides in the token's attributes so that the very first ``ParticipantInfo`` the
    frontends see already says ``initializing``.
    """
    from lkproto.api import AccessToken, VideoGrants

    return (
        AccessToken(api_key, api_secret)
        .with_identity(AGENT_IDENTITY)
        .with_name("Moon weather agent")
        .with_kind("agent")
        .with_attributes(
            {
                "lk.agent.state": agents.AgentState.INITIALIZING.value,
                "lk.agent.name": AGENT_NAME,
            }
        )
        .with_grants(VideoGrants(room_join=True, room=room, can_update_own_metadata=True))
        .to_jwt()
    )


def get_weather(location: str) -> dict[str, object]:
    """The agent's one "tool": the weather, for the only place it knows."""
    place = location.strip().lower() or "moon"
    if place in {"moon", "the moon"}:
        return {
            "location": "moon",
            "condition": "sunny",
            "clouds": "none",
            "temperature_c": {"day": 120, "night": -170},
        }
    return {"location": place, "condition": "unknown", "note": "this agent only knows the moon"}


@dataclass
class _Turn:
    identity: str
    transcript_hint: str | None
    segment_id: str = field(default_factory=agents.new_segment_id)
    speech_s: float = 0.0
    audio_s: float = 0.0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    interim: asyncio.Task[None] | None = None


class MoonAgent:
    """One agent session in one room.

    Args:
        say: called with a short line for each notable thing the agent does (default: log it).
    """

    def __init__(self, *, say: Callable[[str], None] | None = None) -> None:
        self._say = say or _log.info
        self._room = rtc.Room()
        self._presence = agents.AgentPresence(self._room)
        self._tx = agents.TranscriptionPublisher(self._room)
        self._source = rtc.AudioSource(SAMPLE_RATE, 1)
        self._answer = Clip.load(ANSWER_WAV)
        self._image = moon_png()
        self._turn: _Turn | None = None
        self._reply: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._users: set[str] = set()
        self._user_seen = asyncio.Event()
        self._done = asyncio.Event()
        self._room.on("track_subscribed", self._on_track_subscribed)
        self._room.on("participant_connected", self._on_participant_connected)
        self._room.on("participant_disconnected", self._on_participant_disconnected)
        self._room.on("disconnected", lambda *_: self._done.set())

    @property
    def room(self) -> rtc.Room:
        """The agent's room."""
        return self._room

    async def run(self, url: str, token: str) -> None:
        """Join, serve the room until the last user leaves, then disconnect."""
        await self._room.connect(url, token, loopback_options())
        try:
            for participant in self._room.remote_participants.values():
                self._on_participant_connected(participant)
            await self._start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._user_seen.wait(), NO_USER_TIMEOUT_S)
            if self._user_seen.is_set():
                await self._done.wait()
            self._say("the last user left; leaving")
        finally:
            await self._stop()

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        self._say("joined; initializing")
        lp = self._room.local_participant
        lp.register_rpc_method(RPC_START_TURN, self._rpc_start_turn)
        lp.register_rpc_method(RPC_END_TURN, self._rpc_end_turn)
        lp.register_rpc_method(RPC_GET_WEATHER, self._rpc_get_weather)
        agents.on_chat(self._room, self._on_chat)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", self._source)
        publication = await lp.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        # "listening" only once someone can hear the answer.
        try:
            await asyncio.wait_for(publication.wait_for_subscription(), SUBSCRIBED_TIMEOUT_S)
        except TimeoutError:
            self._say("nobody subscribed to the agent's voice yet; listening anyway")
        await self._set_state(agents.AgentState.LISTENING)

    async def _stop(self) -> None:
        if self._turn is not None:
            self._turn.ended.set()
        interim = self._turn.interim if self._turn is not None else None
        tasks = [t for t in (*self._tasks, self._reply, interim) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._source.aclose()
        with contextlib.suppress(Exception):
            await self._room.disconnect()

    async def _set_state(self, state: agents.AgentState) -> None:
        await self._presence.set_state(state)
        _log.debug("state: %s", state.value)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("agent task %s failed", task.get_name(), exc_info=exc)

    # -- room events -------------------------------------------------------------------------

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return
        self._users.add(participant.identity)
        self._user_seen.set()

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self._users.discard(participant.identity)
        if self._turn is not None and self._turn.identity == participant.identity:
            self._turn.ended.set()
            self._turn = None
        if not self._users:
            self._done.set()

    def _on_track_subscribed(
        self,
        track: rtc.RemoteTrack,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._spawn(self._listen(track, participant.identity), f"listen-{participant.identity}")

    async def _listen(self, track: rtc.RemoteTrack, identity: str) -> None:
        """Measure the speech in ``identity``'s audio while that user holds a turn."""
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                turn = self._turn
                if turn is None or turn.identity != identity:
                    continue
                frame = event.frame
                turn.audio_s += frame.duration
                if rms(frame.data) >= SPEECH_RMS:
                    turn.speech_s += frame.duration
        finally:
            await stream.aclose()

    # -- RPC ---------------------------------------------------------------------------------

    async def _rpc_start_turn(self, data: rtc.RpcInvocationData) -> str:
        hint: str | None = None
        if data.payload:
            try:
                request = json.loads(data.payload)
            except json.JSONDecodeError as exc:
                raise rtc.RpcError(1, "start_turn payload must be JSON") from exc
            if isinstance(request, dict) and isinstance(request.get("transcript"), str):
                hint = request["transcript"]
        if self._reply is not None and not self._reply.done():
            self._say("interrupted")
            self._reply.cancel()
            self._source.clear_queue()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply
            await self._set_state(agents.AgentState.LISTENING)
        if self._turn is not None:
            self._turn.ended.set()
        turn = _Turn(identity=data.caller_identity, transcript_hint=hint)
        self._turn = turn
        self._say(f"{data.caller_identity} started a turn")
        turn.interim = asyncio.ensure_future(self._interim_user_transcript(turn))
        return json.dumps({"segment_id": turn.segment_id})

    async def _rpc_end_turn(self, data: rtc.RpcInvocationData) -> str:
        turn = self._turn
        if turn is None or turn.identity != data.caller_identity:
            raise rtc.RpcError(2, "no open turn", "call start_turn first")
        self._reply = asyncio.ensure_future(self._respond(turn))
        self._reply.add_done_callback(self._task_done)
        return json.dumps({"segment_id": turn.segment_id})

    async def _rpc_get_weather(self, data: rtc.RpcInvocationData) -> str:
        location = "moon"
        if data.payload:
            with contextlib.suppress(json.JSONDecodeError):
                request = json.loads(data.payload)
                if isinstance(request, dict) and isinstance(request.get("location"), str):
                    location = request["location"]
        answer = get_weather(location)
        self._say(f"rpc {RPC_GET_WEATHER}({location!r}) from {data.caller_identity}")
        return json.dumps(answer)

    # -- the conversation ---------------------------------------------------------------------

    async def _interim_user_transcript(self, turn: _Turn) -> None:
        published = -1.0
        while not turn.ended.is_set():
            heard = round(turn.speech_s, 1)
            if heard > 0 and heard != published:
                await self._tx.publish(
                    f"[speech {heard:.1f} s]",
                    participant_identity=turn.identity,
                    segment_id=turn.segment_id,
                    final=False,
                )
                published = heard
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.ended.wait(), INTERIM_EVERY_S)

    async def _respond(self, turn: _Turn) -> None:
        await asyncio.sleep(END_OF_TURN_GRACE_S)
        if self._turn is turn:
            self._turn = None
        # the last interim version must be out before the final one (the latest stream wins)
        turn.ended.set()
        if turn.interim is not None:
            await asyncio.gather(turn.interim, return_exceptions=True)
        heard = turn.speech_s
        self._say(f"heard {heard:.1f} s of speech in {turn.audio_s:.1f} s of audio")
        text = turn.transcript_hint or f"[speech {heard:.1f} s]"
        if heard < MIN_SPEECH_S:
            text = "[no speech]"
        await self._tx.publish(
            text, participant_identity=turn.identity, segment_id=turn.segment_id, final=True
        )
        await self._set_state(agents.AgentState.THINKING)
        if heard < MIN_SPEECH_S:
            await self._tx.publish(NO_SPEECH_TEXT, track_sid="")
            await self._set_state(agents.AgentState.LISTENING)
            return
        weather = get_weather("moon")
        _log.debug("tool get_weather -> %s", weather)
        await asyncio.sleep(THINK_S)
        await self._set_state(agents.AgentState.SPEAKING)
        try:
            await self._speak(turn.identity)
        finally:
            if not self._done.is_set():
                await self._set_state(agents.AgentState.LISTENING)

    async def _speak(self, user: str) -> None:
        """Play the answer while revealing its words in step with the audio, and send the
        picture when the words say so."""
        words = ANSWER_TEXT.split(" ")
        total_chars = len(ANSWER_TEXT)
        # word i is revealed once playback has reached the end of its characters
        reveal_at: list[float] = []
        chars = 0
        for word in words:
            chars += len(word) + 1
            reveal_at.append(self._answer.duration * min(chars, total_chars) / total_chars)
        picture_word = words.index("Here")
        image_task: asyncio.Task[None] | None = None
        writer = await self._tx.stream()
        revealed = 0
        fed_s = 0.0

        async def reveal() -> None:
            nonlocal revealed, image_task
            played = fed_s - self._source.queued_duration
            while revealed < len(words) and reveal_at[revealed] <= played + 1e-6:
                if revealed == picture_word and image_task is None:
                    image_task = asyncio.ensure_future(self._send_picture(user))
                await writer.write(("" if revealed == 0 else " ") + words[revealed])
                revealed += 1

        try:
            frame_samples = self._answer.frame_samples
            for pcm in self._answer.frames():
                await self._source.capture_frame(rtc.AudioFrame(pcm, SAMPLE_RATE, 1, frame_samples))
                fed_s += frame_samples / SAMPLE_RATE
                await reveal()
            while self._source.queued_duration > 0:
                await asyncio.sleep(0.05)
                await reveal()
            fed_s += 1.0  # playout finished: reveal whatever is left
            await reveal()
            if image_task is None:
                image_task = asyncio.ensure_future(self._send_picture(user))
            await image_task
        finally:
            if image_task is not None and not image_task.done():
                image_task.cancel()
            await writer.close()

    async def _send_picture(self, user: str) -> None:
        width, height = png_size(self._image) or (0, 0)
        info = await self._room.local_participant.send_bytes(
            self._image,
            topic=IMAGE_TOPIC,
            name=IMAGE_NAME,
            mime_type="image/png",
            destination_identities=[user],
            attributes={
                "sha256": sha256_hex(self._image),
                "width": str(width),
                "height": str(height),
            },
        )
        self._say(f"sent {info.name} ({len(self._image)} bytes) to {user}")

    def _on_chat(self, message: agents.ChatMessage) -> None:
        if message.sender_identity == self._room.local_participant.identity:
            return
        self._say(f"chat from {message.sender_identity}: {message.message!r}")
        self._spawn(self._answer_chat(), "chat")

    async def _answer_chat(self) -> None:
        await self._set_state(agents.AgentState.THINKING)
        await asyncio.sleep(THINK_S / 2)
        # a text-only reply: no lk.transcribed_track_id (PROTOCOL-MAP §8)
        await self._tx.publish(CHAT_REPLY_TEXT, track_sid="")
        await self._set_state(agents.AgentState.LISTENING)
