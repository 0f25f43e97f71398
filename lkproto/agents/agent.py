"""The agent side of the agent conventions: presence state and ``lk.transcription`` streams.

PROTOCOL-MAP §8. An agent announces its conversational state in its own ``lk.agent.state``
attribute (:class:`AgentPresence`; a patch through ``UpdateParticipantMetadata``, acknowledged by
the server, §7) and publishes transcripts as text streams on ``lk.transcription``
(:class:`TranscriptionPublisher`), as the framework's
``_ParticipantStreamTranscriptionOutput`` does
(``AG:livekit-agents/livekit/agents/voice/room_io/_output.py``):

* every stream carries ``lk.segment_id`` (one id per utterance, ``SG_`` + random, shared by the
  interim and final streams of the segment), ``lk.transcription_final`` (``"true"``/``"false"``)
  and, when the transcribed participant has a microphone track, ``lk.transcribed_track_id``
  (upstream ``find_micro_track_id``: the first publication with source microphone);
* one-shot mode (:meth:`TranscriptionPublisher.publish`): one whole stream per interim or final
  version of the segment (upstream's non-delta mode);
* streaming mode (:meth:`TranscriptionPublisher.stream`): one stream whose chunks are the deltas,
  opened with ``lk.transcription_final = "false"`` and closed with a trailer carrying
  ``lk.transcription_final = "true"`` (and the track id) (upstream's delta mode);
* user transcripts are published *on behalf of* the user: the stream packets name the user's
  identity (``stream_text(sender_identity=...)``, as upstream), and the server keeps it for a
  participant of kind ``AGENT`` and marks the text header ``generated`` (PROTOCOL-MAP §3 inbound
  rules, §5). A participant that is not an agent gets its own identity back from the server.
"""

from __future__ import annotations

import secrets
import string
from types import TracebackType
from typing import Self

from lkproto.core.agent import (
    ATTR_AGENT_STATE,
    ATTR_SEGMENT_ID,
    ATTR_TRANSCRIBED_TRACK_ID,
    ATTR_TRANSCRIPTION_FINAL,
    SDK_STATES,
    TOPIC_TRANSCRIPTION,
    AgentState,
)
from lkproto.errors import LocalProtocolError
from lkproto.rtc.data_stream import TextStreamInfo, TextStreamWriter
from lkproto.rtc.participant import Participant
from lkproto.rtc.room import Room
from lkproto.rtc.track import TrackSource

__all__ = [
    "AgentPresence",
    "TranscriptionPublisher",
    "TranscriptionWriter",
    "find_microphone_track_sid",
    "new_segment_id",
]

# AG:livekit-agents/livekit/agents/voice/transcription/_utils.py (segment_uuid): "SG_" + shortuuid.
_SEGMENT_PREFIX = "SG_"
_SHORTUUID_ALPHABET = string.ascii_letters + string.digits
_SHORTUUID_LENGTH = 12


def new_segment_id() -> str:
    """A fresh ``lk.segment_id`` in the framework's shape (``SG_`` + 12 random characters)."""
    suffix = "".join(secrets.choice(_SHORTUUID_ALPHABET) for _ in range(_SHORTUUID_LENGTH))
    return _SEGMENT_PREFIX + suffix


def find_microphone_track_sid(room: Room, identity: str) -> str | None:
    """SID of the first microphone publication of ``identity`` (local or remote), or None.

    The framework's ``find_micro_track_id``: the transcribed track of a participant.
    """
    participant: Participant | None = room.remote_participants.get(identity)
    if identity == room.local_participant.identity:
        participant = room.local_participant
    if participant is None:
        return None
    for publication in participant.track_publications.values():
        if publication.source == TrackSource.SOURCE_MICROPHONE:
            return publication.sid
    return None


class AgentPresence:
    """Publishes this agent's ``lk.agent.state`` attribute.

    Args:
        room: the agent's room (connected before :meth:`set_state`).
    """

    def __init__(self, room: Room) -> None:
        self._room = room
        self._state: AgentState | None = None

    @property
    def state(self) -> AgentState | None:
        """The last state the server accepted, None before the first."""
        return self._state

    async def set_state(self, state: AgentState | str) -> None:
        """Set ``lk.agent.state``; returns once the server acknowledged it.

        Args:
            state: ``initializing``, ``idle``, ``listening``, ``thinking`` or ``speaking``.

        Raises:
            LocalProtocolError: not one of those values (frontend-only states such as
                ``connecting`` or ``failed`` are never published by an agent).
            lkproto.errors.RequestRejectedError: the server refused (the token lacks
                ``canUpdateOwnMetadata``) or did not answer.
        """
        try:
            value = AgentState(state)
        except ValueError:
            value = None
        if value is None or value not in SDK_STATES:
            allowed = ", ".join(sorted(SDK_STATES))
            raise LocalProtocolError(f"agent state must be one of {allowed}; got {state!r}")
        await self._room.local_participant.set_attributes({ATTR_AGENT_STATE: value.value})
        self._state = value


class TranscriptionWriter:
    """One ``lk.transcription`` stream in streaming (delta) mode, from
    :meth:`TranscriptionPublisher.stream`.

    ``await write(delta)`` appends text; ``await close()`` ends the stream with
    ``lk.transcription_final = "true"`` in the trailer. As an async context manager it closes on a
    clean exit and aborts the stream (receivers see it fail) on an exception.
    """

    def __init__(self, writer: TextStreamWriter, segment_id: str, track_sid: str | None) -> None:
        self._writer = writer
        self._segment_id = segment_id
        self._track_sid = track_sid

    @property
    def segment_id(self) -> str:
        """The segment's ``lk.segment_id``."""
        return self._segment_id

    @property
    def info(self) -> TextStreamInfo:
        """The stream's info (id, header attributes)."""
        return self._writer.info

    async def write(self, text: str) -> None:
        """Append ``text`` to the segment.

        Raises:
            lkproto.rtc.StreamError: sending failed.
            RuntimeError: the writer is closed.
        """
        await self._writer.write(text)

    async def close(self) -> None:
        """Mark the segment final (trailer attributes) and end the stream.

        Raises:
            lkproto.rtc.StreamError: sending failed.
            RuntimeError: already closed.
        """
        trailer = {ATTR_TRANSCRIPTION_FINAL: "true"}
        if self._track_sid:
            trailer[ATTR_TRANSCRIBED_TRACK_ID] = self._track_sid
        await self._writer.aclose(attributes=trailer)

    aclose = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
        else:
            await self._writer.__aexit__(exc_type, exc, tb)


class TranscriptionPublisher:
    """Publishes ``lk.transcription`` text streams for the agent or on behalf of a user.

    Args:
        room: the agent's room (connected before publishing).
    """

    def __init__(self, room: Room) -> None:
        self._room = room

    def _attributes(
        self, identity: str, track_sid: str | None, segment_id: str, final: bool
    ) -> tuple[dict[str, str], str | None]:
        track = (
            track_sid if track_sid is not None else find_microphone_track_sid(self._room, identity)
        )
        attributes = {
            ATTR_SEGMENT_ID: segment_id,
            ATTR_TRANSCRIPTION_FINAL: "true" if final else "false",
        }
        if track:
            attributes[ATTR_TRANSCRIBED_TRACK_ID] = track
        return attributes, track

    async def _open(
        self, identity: str, attributes: dict[str, str], total_length: int | None
    ) -> TextStreamWriter:
        local = self._room.local_participant
        return await local.stream_text(
            topic=TOPIC_TRANSCRIPTION,
            attributes=attributes,
            total_size=total_length,
            sender_identity=None if identity == local.identity else identity,
        )

    async def publish(
        self,
        text: str,
        *,
        participant_identity: str | None = None,
        track_sid: str | None = None,
        final: bool = True,
        segment_id: str | None = None,
    ) -> str:
        """Publish one version of a segment as one whole stream.

        Send interim versions with ``final=False`` and the same ``segment_id``, then the final
        one; receivers replace the segment's text with each newer stream.

        Args:
            text: the segment's full text so far (not a delta).
            participant_identity: the transcribed participant; None for this agent.
            track_sid: ``lk.transcribed_track_id``; None looks up the participant's microphone
                track (omitted when there is none).
            final: ``lk.transcription_final``.
            segment_id: ``lk.segment_id``; None starts a new segment.

        Returns:
            The segment id (pass it back for the next version of the segment).

        Raises:
            lkproto.rtc.StreamError: not connected, or sending failed.
        """
        identity = participant_identity or self._room.local_participant.identity
        segment = segment_id or new_segment_id()
        attributes, _ = self._attributes(identity, track_sid, segment, final)
        writer = await self._open(identity, attributes, len(text.encode("utf-8")))
        async with writer:
            if text:
                await writer.write(text)
        return segment

    async def stream(
        self,
        *,
        participant_identity: str | None = None,
        track_sid: str | None = None,
        segment_id: str | None = None,
    ) -> TranscriptionWriter:
        """Open one segment in streaming mode: write deltas, then close to mark it final.

        Args:
            participant_identity: the transcribed participant; None for this agent.
            track_sid: as in :meth:`publish`.
            segment_id: ``lk.segment_id``; None starts a new segment.

        Raises:
            lkproto.rtc.StreamError: not connected, or the header could not be sent.
        """
        identity = participant_identity or self._room.local_participant.identity
        segment = segment_id or new_segment_id()
        attributes, track = self._attributes(identity, track_sid, segment, final=False)
        writer = await self._open(identity, attributes, None)
        return TranscriptionWriter(writer, segment, track)
