"""The pre-connect audio buffer: microphone audio captured before the agent is there.

PROTOCOL-MAP §8 "Topics and stream attributes". Sender rules (``JS:src/room/participant/
LocalParticipant.ts (publishTrack, waitUntilActiveAgentPresent)``, ``JS:src/room/track/
LocalTrack.ts (startPreConnectBuffer)``, ``JS:src/room/Room.ts`` (``setActiveAgent`` on
``ParticipantEvent.Active`` of a participant of kind ``AGENT``)):

1. recording starts before (or while) the microphone is published, and the publication carries
   ``AudioTrackFeature.TF_PRECONNECT_BUFFER``;
2. recording stops when some participant subscribes to that track (``local_track_subscribed``),
   or after :data:`PRECONNECT_MAX_S` (JS ``PRE_CONNECT_BUFFER_TIMEOUT``);
3. the buffer goes to the *first active agent* (a remote participant of kind ``AGENT`` in state
   ``ACTIVE``), waited for at most :data:`AGENT_ACTIVE_TIMEOUT_S` after publishing, as one byte
   stream on ``lk.agent.pre-connect-audio-buffer`` named ``preconnect-buffer``, addressed to that
   agent only, with attributes ``trackId`` (the publication SID), ``sampleRate`` and ``channels``;
   the stream stays open and follows the recording until it stops.

JS records WebM/Opus with a ``MediaRecorder``; lkproto sends the source's frames as they were
captured: raw interleaved signed 16-bit little-endian PCM, mime type :data:`PCM_MIME_TYPE`, at the
:class:`~lkproto.rtc.AudioSource`'s rate and channel count. The agents framework decodes anything
whose mime type is not Opus as exactly that. Deliberate difference from JS: an ``AGENT``
participant carrying ``lk.publish_on_behalf`` (an avatar worker) is never taken for the agent
(PROTOCOL-MAP §8 Frontend-derived state); it does not read the buffer.

Receiver rules (``AG:livekit-agents/livekit/agents/voice/room_io/_pre_connect_audio.py
(PreConnectAudioHandler)``): a stream without ``trackId`` is ignored; ``sampleRate`` and
``channels`` are required; ``audio/opus`` or a mime type containing ``codecs=opus`` is decoded,
anything else is taken as raw PCM; the audio is handed over as :class:`~lkproto.rtc.AudioFrame`
values of 100 ms (the framework's ``AudioByteStream`` default; the last one shorter); the whole
stream must arrive within a timeout (:data:`DEFAULT_RECEIVE_TIMEOUT_S`, the framework's
``pre_connect_audio_timeout``), else it is dropped. :func:`on_preconnect_audio` therefore calls
``handler(frames, sender_identity)`` with ``frames`` a :class:`PreconnectFrames` — a plain list of
frames that also carries the track id, rate and channel count.

Taking the frames. lkproto's :class:`~lkproto.rtc.AudioSource` has no observer hook, so
:class:`PreconnectBuffer` wraps the source's ``capture_frame`` on that instance while it records
and restores it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable
from typing import Final

from lkproto.core.agent import ATTR_PUBLISH_ON_BEHALF, TOPIC_PRECONNECT_AUDIO
from lkproto.core.durations import positive_seconds
from lkproto.errors import LkError, LocalProtocolError
from lkproto.rtc.audio_frame import AudioFrame
from lkproto.rtc.data_stream import ByteStreamReader, StreamError
from lkproto.rtc.participant import (
    LocalTrackPublication,
    Participant,
    ParticipantKind,
    ParticipantState,
    RemoteParticipant,
)
from lkproto.rtc.room import ConnectionState, Room
from lkproto.rtc.track import LocalAudioTrack, LocalTrack, TrackPublishOptions, TrackSource

# PyAV (Opus decoding) and AudioSource (which loads the media drivers: PyAV, numpy, aiortc) are
# imported where they are used, so an agent frontend that only chats or follows the agent's state
# does not load them (issue 18).

__all__ = [
    "AGENT_ACTIVE_TIMEOUT_S",
    "ATTR_CHANNELS",
    "ATTR_SAMPLE_RATE",
    "ATTR_TRACK_ID",
    "DEFAULT_RECEIVE_TIMEOUT_S",
    "PCM_MIME_TYPE",
    "PRECONNECT_MAX_S",
    "PRECONNECT_STREAM_NAME",
    "PreconnectBuffer",
    "PreconnectBufferError",
    "PreconnectFrames",
    "decode_preconnect_audio",
    "is_active_agent",
    "on_preconnect_audio",
]

_log = logging.getLogger("lkproto.agents")

#: Byte stream attribute: SID of the microphone publication the audio belongs to.
ATTR_TRACK_ID: Final = "trackId"
#: Byte stream attribute: sample rate in Hz (decimal string).
ATTR_SAMPLE_RATE: Final = "sampleRate"
#: Byte stream attribute: channel count (decimal string).
ATTR_CHANNELS: Final = "channels"
#: Byte stream name (JS ``streamBytes({name: 'preconnect-buffer'})``).
PRECONNECT_STREAM_NAME: Final = "preconnect-buffer"
#: What lkproto sends: interleaved s16le PCM (any non-Opus type is PCM to the framework).
PCM_MIME_TYPE: Final = "audio/pcm"
# JS LocalTrack.ts PRE_CONNECT_BUFFER_TIMEOUT = 10_000 ms: recording stops by itself.
PRECONNECT_MAX_S: Final = 10.0
# JS LocalParticipant.ts publishTrack: "agent not active within 10 seconds".
AGENT_ACTIVE_TIMEOUT_S: Final = 10.0
# AG room_io/types.py pre_connect_audio_timeout = 3.0.
DEFAULT_RECEIVE_TIMEOUT_S: Final = 3.0
# AG utils.audio.AudioByteStream default samples_per_channel = sample_rate // 10.
_FRAMES_PER_SECOND: Final = 10
_SAMPLE_BYTES: Final = 2


class PreconnectBufferError(LkError):
    """The pre-connect buffer could not be delivered (no active agent in time, the room
    disconnected, publishing or sending failed)."""


class PreconnectFrames(list[AudioFrame]):
    """The decoded buffer: a list of :class:`~lkproto.rtc.AudioFrame` plus where it came from.

    Attributes:
        track_id: the ``trackId`` attribute (the sender's microphone publication SID).
        sample_rate: Hz, from ``sampleRate``.
        num_channels: from ``channels``.
    """

    def __init__(
        self, frames: list[AudioFrame], *, track_id: str, sample_rate: int, num_channels: int
    ) -> None:
        super().__init__(frames)
        self.track_id = track_id
        self.sample_rate = sample_rate
        self.num_channels = num_channels

    @property
    def duration(self) -> float:
        """Total length in seconds."""
        return sum(frame.duration for frame in self)


# --------------------------------------------------------------------------------------------
# Receiving (agent side)


def _pcm_frames(data: bytes, sample_rate: int, num_channels: int) -> list[AudioFrame]:
    frame_bytes = max(sample_rate // _FRAMES_PER_SECOND, 1) * num_channels * _SAMPLE_BYTES
    whole = len(data) - len(data) % (num_channels * _SAMPLE_BYTES)  # drop a torn sample
    frames = []
    for start in range(0, whole, frame_bytes):
        block = bytearray(data[start : min(start + frame_bytes, whole)])
        samples = len(block) // (num_channels * _SAMPLE_BYTES)
        frames.append(AudioFrame(block, sample_rate, num_channels, samples))
    return frames


def _decode_opus(data: bytes, sample_rate: int, num_channels: int) -> bytes:
    import av

    layout = "mono" if num_channels == 1 else "stereo" if num_channels == 2 else f"{num_channels}c"
    resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
    pcm = bytearray()
    frame_bytes = num_channels * _SAMPLE_BYTES
    with av.open(io.BytesIO(data), mode="r") as container:
        for decoded in container.decode(audio=0):
            for part in resampler.resample(decoded):
                pcm += memoryview(part.planes[0])[: part.samples * frame_bytes]
    for part in resampler.resample(None):
        pcm += memoryview(part.planes[0])[: part.samples * frame_bytes]
    return bytes(pcm)


def _is_opus(mime_type: str) -> bool:
    # AG _pre_connect_audio.py: JS may send "audio/opus" or "audio/webm;codecs=opus".
    return mime_type == "audio/opus" or "codecs=opus" in mime_type


async def decode_preconnect_audio(
    data: bytes, *, mime_type: str, sample_rate: int, num_channels: int
) -> list[AudioFrame]:
    """Turn a received buffer into 100 ms frames (module docstring, receiver rules).

    Raises:
        ValueError: a non-positive rate or channel count, or Opus data PyAV cannot decode.
    """
    if sample_rate <= 0 or num_channels <= 0:
        raise ValueError(f"bad pre-connect audio format: {sample_rate} Hz x {num_channels}")
    if _is_opus(mime_type):
        import av

        try:
            data = await asyncio.to_thread(_decode_opus, data, sample_rate, num_channels)
        except av.FFmpegError as exc:
            raise ValueError(f"cannot decode pre-connect audio ({mime_type}): {exc}") from exc
    return _pcm_frames(data, sample_rate, num_channels)


def on_preconnect_audio(
    room: Room,
    handler: Callable[[PreconnectFrames, str], object],
    *,
    timeout: float = DEFAULT_RECEIVE_TIMEOUT_S,
) -> Callable[[], None]:
    """Call ``handler(frames, sender_identity)`` for each pre-connect buffer received.

    Register it before connecting: the buffer is sent as soon as the agent is active.

    Args:
        room: the agent's room.
        handler: a plain function; ``frames`` is a :class:`PreconnectFrames` (100 ms
            :class:`~lkproto.rtc.AudioFrame` values, ``track_id``, ``sample_rate``,
            ``num_channels``, ``duration``).
        timeout: seconds from the stream's header to its end; a slower stream is dropped.

    Returns:
        A function that unregisters the handler and drops buffers still arriving.

    Raises:
        ValueError: the room already has a byte handler for ``lk.agent.pre-connect-audio-buffer``.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def read(reader: ByteStreamReader, sender: str) -> None:
        attributes = reader.info.attributes or {}
        track_id = attributes.get(ATTR_TRACK_ID, "")
        if not track_id:
            _log.warning("< pre-connect audio from %s without %s: ignored", sender, ATTR_TRACK_ID)
            reader.close()
            return
        try:
            sample_rate = int(attributes[ATTR_SAMPLE_RATE])
            num_channels = int(attributes[ATTR_CHANNELS])
            data = await asyncio.wait_for(reader.read_all(), timeout)
            frames = await decode_preconnect_audio(
                data,
                mime_type=reader.info.mime_type,
                sample_rate=sample_rate,
                num_channels=num_channels,
            )
        except TimeoutError:
            _log.warning("< pre-connect audio from %s not complete in %g s", sender, timeout)
            reader.close()
            return
        except (KeyError, ValueError, StreamError) as exc:
            _log.warning("< pre-connect audio from %s unusable: %r", sender, exc)
            reader.close()
            return
        result = PreconnectFrames(
            frames, track_id=track_id, sample_rate=sample_rate, num_channels=num_channels
        )
        _log.debug("< pre-connect audio from %s: %.3f s", sender, result.duration)
        handler(result, sender)

    def on_stream(reader: ByteStreamReader, sender: str) -> None:
        task = asyncio.ensure_future(read(reader, sender))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_byte_stream_handler(TOPIC_PRECONNECT_AUDIO, on_stream)

    def detach() -> None:
        room.unregister_byte_stream_handler(TOPIC_PRECONNECT_AUDIO)
        for task in tasks:
            task.cancel()

    return detach


# --------------------------------------------------------------------------------------------
# Sending (frontend side)


def is_active_agent(participant: Participant) -> bool:
    """A participant that may receive the buffer: kind ``AGENT``, state ``ACTIVE``, and not an
    avatar worker (module docstring)."""
    return (
        participant.kind == ParticipantKind.PARTICIPANT_KIND_AGENT
        and participant.state == ParticipantState.PARTICIPANT_STATE_ACTIVE
        and ATTR_PUBLISH_ON_BEHALF not in participant.attributes
    )


class PreconnectBuffer:
    """Records a microphone source and delivers it to the first active agent.

    Made by :meth:`lkproto.agents.AgentSession.start_preconnect_buffer`; see the module docstring
    for the rules. Recording starts at construction. :meth:`start` runs the rest in a task:
    wait for the room, publish the track (source microphone, ``preconnect_buffer=True``) unless it
    is published already, wait for the agent, stream the audio.

    Args:
        room: the frontend's room (connected or not yet).
        track: a local audio track made from an :class:`~lkproto.rtc.AudioSource`.
        max_seconds: recording stops after this long (wall clock), or once this much audio was
            captured.
        agent_timeout_s: how long after publishing to wait for an active agent.

    Raises:
        LocalProtocolError: the track's source is not an :class:`~lkproto.rtc.AudioSource`, it is
            already being recorded, or ``max_seconds`` / ``agent_timeout_s`` is not a positive
            number of seconds.
    """

    def __init__(
        self,
        room: Room,
        track: LocalAudioTrack,
        *,
        max_seconds: float = PRECONNECT_MAX_S,
        agent_timeout_s: float = AGENT_ACTIVE_TIMEOUT_S,
    ) -> None:
        from lkproto.rtc.audio_source import AudioSource

        source = track.source
        if not isinstance(source, AudioSource):
            raise LocalProtocolError("the pre-connect buffer needs a track made from AudioSource")
        max_seconds = positive_seconds("max_seconds", max_seconds)
        agent_timeout_s = positive_seconds("agent_timeout_s", agent_timeout_s)
        if "capture_frame" in vars(source):
            raise LocalProtocolError("this audio source is already being recorded")
        self._room = room
        self._track = track
        self._source = source
        self._agent_timeout_s = agent_timeout_s
        self._sample_rate = source.sample_rate
        self._num_channels = source.num_channels
        self._max_bytes = int(max_seconds * self._sample_rate) * self._num_channels * _SAMPLE_BYTES
        self._data = bytearray()
        self._changed = asyncio.Event()
        self._recording = True
        self._publication: LocalTrackPublication | None = None
        self._agent: str | None = None
        self._task: asyncio.Task[str] | None = None
        loop = asyncio.get_running_loop()
        self._published: asyncio.Future[LocalTrackPublication] = loop.create_future()
        self._stop_timer = loop.call_later(max_seconds, self.stop_recording)
        original = source.capture_frame

        async def capture_frame(frame: AudioFrame) -> None:
            self._record(frame)
            await original(frame)

        # AudioSource has no frame observer (module docstring): shadow the method on the instance.
        setattr(source, "capture_frame", capture_frame)  # noqa: B010

    # ---------------------------------------------------------------- state

    @property
    def recording(self) -> bool:
        """Frames are still being recorded."""
        return self._recording

    @property
    def recorded_seconds(self) -> float:
        """Audio recorded so far, in seconds."""
        return len(self._data) / (self._sample_rate * self._num_channels * _SAMPLE_BYTES)

    @property
    def sample_rate(self) -> int:
        """Rate of the recorded audio, Hz."""
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        """Channels of the recorded audio."""
        return self._num_channels

    @property
    def publication(self) -> LocalTrackPublication | None:
        """The microphone publication, once published."""
        return self._publication

    @property
    def agent_identity(self) -> str | None:
        """The agent the buffer is (being) sent to."""
        return self._agent

    # ---------------------------------------------------------------- control

    def stop_recording(self) -> None:
        """Stop recording (idempotent); what was recorded is still sent."""
        if not self._recording:
            return
        self._recording = False
        self._stop_timer.cancel()
        if vars(self._source).get("capture_frame") is not None:
            delattr(self._source, "capture_frame")
        self._changed.set()

    def start(self) -> None:
        """Start the delivery task (idempotent)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.add_done_callback(_log_failure)

    async def wait_published(self) -> LocalTrackPublication:
        """Wait until the track is published (by this buffer or before it).

        Raises:
            PreconnectBufferError: delivery failed before the track was published.
        """
        self.start()
        return await asyncio.shield(self._published)

    async def wait(self) -> str:
        """Wait until the buffer was delivered; returns the agent's identity.

        Raises:
            PreconnectBufferError: it could not be delivered.
        """
        self.start()
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """Stop recording and abandon delivery."""
        self.stop_recording()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, PreconnectBufferError):
                await self._task

    # ---------------------------------------------------------------- internals

    def _record(self, frame: AudioFrame) -> None:
        if not self._recording:
            return
        if frame.sample_rate != self._sample_rate or frame.num_channels != self._num_channels:
            return  # the source rejects it anyway
        room_left = self._max_bytes - len(self._data)
        self._data += frame.data.cast("B")[:room_left]
        self._changed.set()
        if len(self._data) >= self._max_bytes:
            self.stop_recording()

    def _on_local_track_subscribed(self, track: LocalTrack) -> None:
        if track is self._track:
            self.stop_recording()

    async def _run(self) -> str:
        room = self._room
        room.on("local_track_subscribed", self._on_local_track_subscribed)
        try:
            await self._wait_connected()
            self._publication = await self._publish()
            if not self._published.done():
                self._published.set_result(self._publication)
            agent = await self._wait_agent()
            self._agent = agent.identity
            await self._send(agent.identity, self._publication.sid)
            return agent.identity
        except PreconnectBufferError as exc:
            self._fail_published(exc)
            raise
        except (LkError, StreamError) as exc:
            error = PreconnectBufferError(f"pre-connect buffer not sent: {exc}")
            self._fail_published(error)
            raise error from exc
        except asyncio.CancelledError:
            self._fail_published(PreconnectBufferError("pre-connect buffer abandoned"))
            raise
        finally:
            self.stop_recording()
            room.off("local_track_subscribed", self._on_local_track_subscribed)

    def _fail_published(self, error: PreconnectBufferError) -> None:
        if not self._published.done():
            self._published.set_exception(error)
            self._published.exception()  # retrieved: nobody may be waiting for it

    async def _wait_connected(self) -> None:
        room = self._room
        if room.connection_state == ConnectionState.CONN_CONNECTED:
            return
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_connected() -> None:
            if not connected.done():
                connected.set_result(None)

        room.on("connected", on_connected)
        try:
            await connected
        finally:
            room.off("connected", on_connected)

    async def _publish(self) -> LocalTrackPublication:
        local = self._room.local_participant
        if self._track.sid:
            publication = local.track_publications.get(self._track.sid)
            if publication is not None:
                return publication
        options = TrackPublishOptions(source=TrackSource.SOURCE_MICROPHONE, preconnect_buffer=True)
        return await local.publish_track(self._track, options)

    async def _wait_agent(self) -> RemoteParticipant:
        room = self._room
        for participant in room.remote_participants.values():
            if is_active_agent(participant):
                return participant
        found: asyncio.Future[RemoteParticipant] = asyncio.get_running_loop().create_future()

        def check(participant: Participant) -> None:
            if (
                not found.done()
                and isinstance(participant, RemoteParticipant)
                and is_active_agent(participant)
            ):
                found.set_result(participant)

        def on_disconnected() -> None:
            if not found.done():
                found.set_exception(PreconnectBufferError("room disconnected before an agent"))

        room.on("participant_active", check)
        room.on("participant_connected", check)
        room.on("disconnected", on_disconnected)
        try:
            return await asyncio.wait_for(found, self._agent_timeout_s)
        except TimeoutError:
            raise PreconnectBufferError(
                f"no active agent within {self._agent_timeout_s:g} s"
            ) from None
        finally:
            room.off("participant_active", check)
            room.off("participant_connected", check)
            room.off("disconnected", on_disconnected)

    async def _send(self, agent_identity: str, track_sid: str) -> None:
        writer = await self._room.local_participant.stream_bytes(
            PRECONNECT_STREAM_NAME,
            mime_type=PCM_MIME_TYPE,
            topic=TOPIC_PRECONNECT_AUDIO,
            destination_identities=[agent_identity],
            attributes={
                ATTR_TRACK_ID: track_sid,
                ATTR_SAMPLE_RATE: str(self._sample_rate),
                ATTR_CHANNELS: str(self._num_channels),
            },
        )
        started = time.monotonic()
        async with writer:
            sent = 0
            while True:
                self._changed.clear()
                if sent < len(self._data):
                    block = bytes(self._data[sent:])
                    sent += len(block)
                    await writer.write(block)
                    continue
                if not self._recording:
                    break
                await self._changed.wait()
        _log.debug(
            "> pre-connect buffer to %s: %d bytes, %.3f s of audio, stream open %.3f s",
            agent_identity,
            sent,
            self.recorded_seconds,
            time.monotonic() - started,
        )


def _log_failure(task: asyncio.Task[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("pre-connect buffer: %s", task.exception())
