"""The frontend's agent session: agent state, transcript, chat and pre-connect audio on a Room.

:class:`AgentSession` is the asyncio driver of two sans-I/O machines:

* :class:`~lkproto.core.agent.AgentTracker` (who the agent is, its derived state, the join
  deadline). Room facts are fed from the room's events — ``connection_state_changed``,
  ``participant_connected`` / ``_disconnected``, ``participant_attributes_changed``,
  ``local_track_published`` / ``_unpublished`` (a microphone publication) — with the loop's clock
  as ``now``; its deadline is kept armed by a :class:`~lkproto.asyncio._timer.DeadlineTimer`
  re-armed after every input, and the tracker's
  events become ``state_changed`` / ``agent_joined`` / ``agent_left`` / ``failed`` emissions. The
  room applies the participants already present at join silently, so on connecting the session
  feeds every remote participant itself.
* :class:`~lkproto.core.transcript.TranscriptMerger` fed by ``lk.transcription`` text streams
  (through :func:`lkproto.agents.chat.listen_text`, so an application and other helpers can listen
  to the same topic); its updates become ``transcript_updated`` emissions of
  :class:`TranscriptSegment`. The transcript is cleared when the room disconnects, as
  components-js does.

Chat goes over ``lk.chat`` (:mod:`lkproto.agents.chat`), the pre-connect buffer over
``lk.agent.pre-connect-audio-buffer`` (:mod:`lkproto.agents.preconnect`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, assert_never

from lkproto.agents.chat import ChatMessage, listen_text, on_chat, send_chat
from lkproto.agents.preconnect import PRECONNECT_MAX_S, PreconnectBuffer
from lkproto.asyncio._timer import DeadlineTimer
from lkproto.core.agent import (
    DEFAULT_AGENT_CONNECT_TIMEOUT_S,
    TOPIC_TRANSCRIPTION,
    AgentFailed,
    AgentJoined,
    AgentLeft,
    AgentState,
    AgentStateChanged,
    AgentTracker,
    AnyAgentEvent,
)
from lkproto.core.transcript import (
    Segment,
    SegmentDropped,
    SegmentFinalized,
    SegmentUpdated,
    TranscriptMerger,
)
from lkproto.errors import LkError
from lkproto.rtc.data_stream import StreamError, TextStreamInfo
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.rtc.participant import (
    LocalTrackPublication,
    Participant,
    ParticipantKind,
    RemoteParticipant,
)
from lkproto.rtc.room import ConnectionState, Room
from lkproto.rtc.track import LocalAudioTrack, TrackSource

__all__ = [
    "AgentSession",
    "AgentSessionClosedError",
    "AgentSessionError",
    "AgentSessionEvent",
    "AgentSessionFailedError",
    "TranscriptSegment",
]

AgentSessionEvent = Literal[
    "state_changed",
    "agent_joined",
    "agent_left",
    "failed",
    "transcript_updated",
    "chat_received",
]
"""The names :class:`AgentSession` emits; each one's handler arguments are listed on the class."""


class AgentSessionError(LkError):
    """Base of the errors :meth:`AgentSession.wait_for` raises besides ``TimeoutError``."""


class AgentSessionFailedError(AgentSessionError):
    """The session became ``failed`` while waiting.

    Attributes:
        reasons: the failure reasons (texts as in useAgent.ts).
    """

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("; ".join(reasons) or "agent session failed")
        self.reasons = reasons


class AgentSessionClosedError(AgentSessionError):
    """The room disconnected (or the session was closed) while waiting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptSegment:
    """One transcript segment as a frontend shows it.

    Attributes:
        id: ``lk.segment_id`` (or the stream id for a stream without one).
        participant_identity: the transcribed participant (the user, or the agent).
        text: the segment's current text (interim versions are replaced, not appended).
        final: the segment is final.
        track_id: ``lk.transcribed_track_id``, None for text-only replies.
        is_agent: the transcribed participant is of kind ``AGENT``.
        first_received_ms: wall clock (ms since the epoch) when the segment first had text.
        last_received_ms: wall clock of its latest change.
    """

    id: str
    participant_identity: str
    text: str
    final: bool
    track_id: str | None
    is_agent: bool
    first_received_ms: float
    last_received_ms: float


class _TranscriptFeed:
    """Text-stream listener that feeds the session's merger (wall clock as ``now``)."""

    def __init__(self, session: AgentSession) -> None:
        self._session = session

    def stream_opened(self, info: TextStreamInfo, sender_identity: str) -> None:
        merger = self._session._merger
        merger.stream_opened(
            info.stream_id,
            sender_identity,
            dict(info.attributes or {}),
            info.timestamp,
            time.time(),
        )
        self._session._drain_transcript()

    def stream_text(self, stream_id: str, text: str) -> None:
        self._session._merger.text_received(stream_id, text, time.time())
        self._session._drain_transcript()

    def stream_closed(
        self, stream_id: str, error: StreamError | None, attributes: dict[str, str]
    ) -> None:
        reason = None if error is None else str(error) or "failed"
        self._session._merger.stream_closed(
            stream_id, reason, time.time(), attributes=attributes if error is None else None
        )
        self._session._drain_transcript()


class AgentSession(EventEmitter[AgentSessionEvent]):
    """A frontend's view of the agent in a room (PROTOCOL-MAP §8).

    Attach it to a :class:`~lkproto.rtc.Room` before or after connecting.

    Events (``session.on(name, handler)``):

    * ``"state_changed"``: ``(old: AgentState, new: AgentState)``;
    * ``"agent_joined"``: ``(participant: RemoteParticipant)``;
    * ``"agent_left"``: ``(identity: str, expected: bool)``;
    * ``"failed"``: ``(reasons: tuple[str, ...])``;
    * ``"transcript_updated"``: ``(segment: TranscriptSegment)``;
    * ``"chat_received"``: ``(message: ChatMessage)``.

    Args:
        room: the room.
        agent_connect_timeout: seconds after connecting within which the agent must be
            listening/thinking/speaking, else the state becomes ``failed`` (useAgent's 20 s).

    Raises:
        lkproto.errors.LocalProtocolError: a bad timeout.
        ValueError: ``lk.transcription`` or ``lk.chat`` already has a handler registered directly
            on the room.
    """

    def __init__(
        self, room: Room, *, agent_connect_timeout: float = DEFAULT_AGENT_CONNECT_TIMEOUT_S
    ) -> None:
        super().__init__()
        self._room = room
        self._loop = asyncio.get_running_loop()
        self._tracker = AgentTracker(agent_connect_timeout_s=agent_connect_timeout)
        self._merger = TranscriptMerger()
        self._agent_kinds: set[str] = set()  # identities seen with kind AGENT
        self._timer = DeadlineTimer(self._loop, self._tracker.get_timer, self._on_timer)
        self._closed = False
        self._preconnect: PreconnectBuffer | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._handlers: list[tuple[str, Callable[..., object]]] = [
            ("connection_state_changed", self._on_connection_state),
            ("participant_connected", self._on_participant_connected),
            ("participant_disconnected", self._on_participant_disconnected),
            ("participant_attributes_changed", self._on_attributes_changed),
            ("local_track_published", self._on_local_track_changed),
            ("local_track_unpublished", self._on_local_track_changed),
        ]
        self._detach_transcript = listen_text(room, TOPIC_TRANSCRIPTION, _TranscriptFeed(self))
        try:
            self._detach_chat = on_chat(room, self._on_chat)
        except ValueError:
            self._detach_transcript()
            raise
        for name, handler in self._handlers:
            room.on(name, handler)  # type: ignore[arg-type]
        if room.connection_state != ConnectionState.CONN_DISCONNECTED:
            self._sync_room()

    # ---------------------------------------------------------------- state (read-only)

    @property
    def room(self) -> Room:
        """The room."""
        return self._room

    @property
    def state(self) -> AgentState:
        """The derived agent state."""
        return self._tracker.state

    @property
    def failure_reasons(self) -> tuple[str, ...]:
        """Why the state is ``failed``; empty otherwise."""
        return self._tracker.failure_reasons

    @property
    def can_listen(self) -> bool:
        """``canListen``: pre-connect-buffering, listening, thinking or speaking."""
        return self._tracker.can_listen

    @property
    def is_finished(self) -> bool:
        """``isFinished``: disconnected or failed."""
        return self._tracker.is_finished

    @property
    def is_connected(self) -> bool:
        """``isConnected``: listening, thinking or speaking."""
        return self._tracker.is_connected

    @property
    def is_pending(self) -> bool:
        """``isPending``: connecting, initializing or idle."""
        return self._tracker.is_pending

    @property
    def agent(self) -> RemoteParticipant | None:
        """The agent participant, None when there is none."""
        identity = self._tracker.agent_identity
        return self._room.remote_participants.get(identity) if identity is not None else None

    @property
    def transcript(self) -> list[TranscriptSegment]:
        """The merged transcript, in first-seen order."""
        return [self._segment(s) for s in self._merger.segments()]

    @property
    def preconnect_buffer(self) -> PreconnectBuffer | None:
        """The buffer started by :meth:`start_preconnect_buffer`, if any."""
        return self._preconnect

    # ---------------------------------------------------------------- actions

    async def wait_for(
        self,
        state: AgentState | str,
        timeout: float | None = None,  # noqa: ASYNC109  (the agreed API; asyncio.timeout works too)
    ) -> None:
        """Return once the state is ``state`` (at once if it already is).

        Args:
            state: the state to wait for.
            timeout: seconds; None waits without a bound.

        Raises:
            TimeoutError: ``timeout`` passed first.
            AgentSessionFailedError: the state became ``failed`` first (unless waiting for it).
            AgentSessionClosedError: the room disconnected, or the session was closed, first
                (unless waiting for ``disconnected``).
            ValueError: ``state`` is not an agent state.
        """
        target = AgentState(state)
        if self._tracker.state == target:
            return
        self._check_waitable(target)
        done: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(done)

        def on_change(old: AgentState, new: AgentState) -> None:
            del old
            if done.done():
                return
            if new == target:
                done.set_result(None)
            elif new == AgentState.FAILED:
                done.set_exception(AgentSessionFailedError(self._tracker.failure_reasons))
            elif new == AgentState.DISCONNECTED:
                done.set_exception(AgentSessionClosedError("the room disconnected"))

        self.on("state_changed", on_change)
        try:
            await asyncio.wait_for(done, timeout)
        finally:
            self._waiters.discard(done)
            self.off("state_changed", on_change)

    def _check_waitable(self, target: AgentState) -> None:
        if self._closed:
            raise AgentSessionClosedError("the agent session is closed")
        if self._tracker.state == AgentState.FAILED and target != AgentState.FAILED:
            raise AgentSessionFailedError(self._tracker.failure_reasons)

    async def send_chat(
        self, text: str, *, destination_identities: list[str] | None = None
    ) -> ChatMessage:
        """Send a chat message (``lk.chat`` text stream) to everyone, or to the listed
        identities.

        Raises:
            lkproto.rtc.StreamError: not connected, or sending failed.
        """
        return await send_chat(self._room, text, destination_identities=destination_identities)

    async def start_preconnect_buffer(
        self, track: LocalAudioTrack, *, max_seconds: float = PRECONNECT_MAX_S
    ) -> PreconnectBuffer:
        """Record ``track``'s source now and deliver it to the first active agent.

        If the room is connected (or once it is) and the track is not published yet, it is
        published as the microphone with ``TF_PRECONNECT_BUFFER``; the state shows
        ``pre-connect-buffering`` until the agent reports its own. See
        :mod:`lkproto.agents.preconnect`.

        Args:
            track: a local track made from an :class:`~lkproto.rtc.AudioSource`.
            max_seconds: recording stops after this long at the latest.

        Returns:
            The running buffer; ``await buffer.wait()`` for the delivery.

        Raises:
            lkproto.errors.LocalProtocolError: a buffer is already running, or a bad track.
            lkproto.agents.PreconnectBufferError: publishing failed (room connected).
        """
        if self._preconnect is not None and self._preconnect.recording:
            raise AgentSessionError("a pre-connect buffer is already recording")
        buffer = PreconnectBuffer(self._room, track, max_seconds=max_seconds)
        self._preconnect = buffer
        buffer.start()
        if self._room.connection_state == ConnectionState.CONN_CONNECTED:
            await buffer.wait_published()
        return buffer

    async def aclose(self) -> None:
        """Detach from the room (idempotent); a running pre-connect buffer is abandoned."""
        if self._closed:
            return
        self._closed = True
        for name, handler in self._handlers:
            self._room.off(name, handler)  # type: ignore[arg-type]
        self._detach_transcript()
        self._detach_chat()
        self._timer.close()
        if self._preconnect is not None:
            await self._preconnect.aclose()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(AgentSessionClosedError("the agent session was closed"))

    # ---------------------------------------------------------------- room events

    def _sync_room(self) -> None:
        now = self._loop.time()
        self._tracker.room_state_changed(True, now)
        for participant in self._room.remote_participants.values():
            self._joined(participant, now)
        self._tracker.microphone_published(self._has_microphone(), now)
        self._flush()

    def _on_connection_state(self, state: ConnectionState) -> None:
        if state == ConnectionState.CONN_DISCONNECTED:
            self._tracker.room_state_changed(False, self._loop.time())
            self._merger.clear()
            self._flush()
        elif state == ConnectionState.CONN_CONNECTED:
            self._sync_room()

    def _joined(self, participant: RemoteParticipant, now: float) -> None:
        is_agent = participant.kind == ParticipantKind.PARTICIPANT_KIND_AGENT
        if is_agent:
            self._agent_kinds.add(participant.identity)
        self._tracker.participant_joined(
            participant.identity, is_agent, dict(participant.attributes), now
        )

    def _on_participant_connected(self, participant: RemoteParticipant) -> None:
        self._joined(participant, self._loop.time())
        self._flush()

    def _on_participant_disconnected(self, participant: RemoteParticipant) -> None:
        self._tracker.participant_left(participant.identity, self._loop.time())
        self._flush()

    def _on_attributes_changed(self, changed: dict[str, str], participant: Participant) -> None:
        del changed
        if isinstance(participant, RemoteParticipant):
            self._tracker.attributes_changed(
                participant.identity, dict(participant.attributes), self._loop.time()
            )
            self._flush()

    def _on_local_track_changed(self, publication: LocalTrackPublication) -> None:
        del publication
        self._tracker.microphone_published(self._has_microphone(), self._loop.time())
        self._flush()

    def _has_microphone(self) -> bool:
        try:
            publications = self._room.local_participant.track_publications
        except LkError:
            return False
        return any(p.source == TrackSource.SOURCE_MICROPHONE for p in publications.values())

    def _on_chat(self, message: ChatMessage) -> None:
        self.emit("chat_received", message)

    # ---------------------------------------------------------------- machine outputs

    def _flush(self) -> None:
        if self._closed:
            return
        while (event := self._tracker.next_event()) is not None:
            self._emit_agent_event(event)
        self._timer.rearm()

    def _emit_agent_event(self, event: AnyAgentEvent) -> None:
        if isinstance(event, AgentStateChanged):
            self.emit("state_changed", event.old, event.new)
        elif isinstance(event, AgentJoined):
            participant = self._room.remote_participants.get(event.identity)
            self.emit("agent_joined", participant)
        elif isinstance(event, AgentLeft):
            self.emit("agent_left", event.identity, event.expected)
        elif isinstance(event, AgentFailed):
            self.emit("failed", event.reasons)
        else:
            assert_never(event)

    def _on_timer(self, now: float) -> None:
        self._tracker.handle_timer(now)
        self._flush()

    def _drain_transcript(self) -> None:
        while (event := self._merger.next_event()) is not None:
            if isinstance(event, SegmentUpdated):
                self.emit("transcript_updated", self._segment(event.segment))
            elif isinstance(event, SegmentFinalized | SegmentDropped):
                pass  # the update before it carried the content
            else:
                assert_never(event)

    def _segment(self, segment: Segment) -> TranscriptSegment:
        identity = segment.participant_identity
        return TranscriptSegment(
            id=segment.id,
            participant_identity=identity,
            text=segment.text,
            final=segment.final,
            track_id=segment.track_id,
            is_agent=identity in self._agent_kinds or self._is_agent_kind(identity),
            first_received_ms=segment.first_received_ms,
            last_received_ms=segment.last_received_ms,
        )

    def _is_agent_kind(self, identity: str) -> bool:
        participant = self._room.remote_participants.get(identity)
        return (
            participant is not None and participant.kind == ParticipantKind.PARTICIPANT_KIND_AGENT
        )
