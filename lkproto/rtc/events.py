"""Typed room events for ``async for event in room.events()``.

Each class carries the official event string in ``name`` and the positional arguments the official
SDK passes to ``room.on(name)`` handlers in :meth:`RoomEvent.args`, so the string-keyed emitter and
the typed stream are fed from the same objects and cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from lkproto.rtc.data_track import RemoteDataTrack
    from lkproto.rtc.e2ee import EncryptionState
    from lkproto.rtc.participant import (
        ConnectionQuality,
        DisconnectReason,
        LocalTrackPublication,
        Participant,
        RemoteParticipant,
        RemoteTrackPublication,
        TrackPublication,
    )
    from lkproto.rtc.room import (
        ChatMessage,
        ConnectionState,
        DataPacket,
        SipDTMF,
        TranscriptionSegment,
    )
    from lkproto.rtc.track import LocalTrack, RemoteTrack
    from lkproto.wire import pb

__all__ = [
    "ActiveSpeakersChanged",
    "ChatMessageReceived",
    "Connected",
    "ConnectionQualityChanged",
    "ConnectionStateChanged",
    "DataReceived",
    "DataTrackPublished",
    "DataTrackUnpublished",
    "Disconnected",
    "E2eeStateChanged",
    "EventTypes",
    "LocalTrackPublished",
    "LocalTrackRepublished",
    "LocalTrackSubscribed",
    "LocalTrackUnpublished",
    "ParticipantActive",
    "ParticipantAttributesChanged",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "ParticipantEncryptionStatusChanged",
    "ParticipantMetadataChanged",
    "ParticipantNameChanged",
    "ParticipantPermissionsChanged",
    "Reconnected",
    "Reconnecting",
    "RoomEvent",
    "RoomMetadataChanged",
    "RoomUpdated",
    "SipDTMFReceived",
    "TokenRefreshed",
    "TrackMuted",
    "TrackPublished",
    "TrackSubscribed",
    "TrackSubscriptionFailed",
    "TrackUnmuted",
    "TrackUnpublished",
    "TrackUnsubscribed",
    "TranscriptionReceived",
]

EventTypes = Literal[
    "participant_connected",
    "participant_disconnected",
    "participant_active",
    "local_track_published",
    "local_track_unpublished",
    "local_track_subscribed",
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "track_subscription_failed",
    "track_muted",
    "track_unmuted",
    "active_speakers_changed",
    "room_metadata_changed",
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
    "connection_quality_changed",
    "participant_permissions_changed",
    "data_received",
    "sip_dtmf_received",
    "transcription_received",
    "connection_state_changed",
    "connected",
    "disconnected",
    "reconnecting",
    "reconnected",
    "room_updated",
    "token_refreshed",
    # lkproto extra: legacy ChatMessage packets (JS emits RoomEvent.ChatMessage)
    "chat_message",
    "participant_encryption_status_changed",
    "e2ee_state_changed",
    "data_track_published",
    "data_track_unpublished",
    # listed for drop-in typing; lkproto does not emit these yet
    "local_track_republished",
    "moved",
]
"""Official shape: the event names :class:`~lkproto.rtc.Room` emits (``room.on(name, handler)``);
each has a typed twin in this module, named in the past tense (see :class:`RoomEvent`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEvent:
    """Base of all typed room events."""

    name: ClassVar[str]

    def args(self) -> tuple[object, ...]:
        """Positional arguments of the official ``room.on(name)`` callback."""
        return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantConnected(RoomEvent):
    """A remote participant joined the room (``participant_connected``)."""

    name: ClassVar[str] = "participant_connected"
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.participant,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDisconnected(RoomEvent):
    """A remote participant left the room (``participant_disconnected``)."""

    name: ClassVar[str] = "participant_disconnected"
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.participant,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantActive(RoomEvent):
    """A participant's media connection came up, so it is fully in the room
    (``participant_active``)."""

    name: ClassVar[str] = "participant_active"
    participant: Participant

    def args(self) -> tuple[object, ...]:
        return (self.participant,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(RoomEvent):
    """The room finished joining and is connected (``connected``)."""

    name: ClassVar[str] = "connected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected(RoomEvent):
    """The room is disconnected for good (``disconnected``); ``reason`` says why."""

    name: ClassVar[str] = "disconnected"
    reason: DisconnectReason | int

    def args(self) -> tuple[object, ...]:
        return (self.reason,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting(RoomEvent):
    """The connection was lost and lkproto is resuming or rejoining (``reconnecting``)."""

    name: ClassVar[str] = "reconnecting"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected(RoomEvent):
    """A resume or full reconnect succeeded (``reconnected``)."""

    name: ClassVar[str] = "reconnected"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionStateChanged(RoomEvent):
    """The room's connection state changed (``connection_state_changed``)."""

    name: ClassVar[str] = "connection_state_changed"
    state: ConnectionState

    def args(self) -> tuple[object, ...]:
        return (self.state,)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomMetadataChanged(RoomEvent):
    """The room's metadata changed (``room_metadata_changed``): old and new value."""

    name: ClassVar[str] = "room_metadata_changed"
    old_metadata: str
    metadata: str

    def args(self) -> tuple[object, ...]:
        return (self.old_metadata, self.metadata)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomUpdated(RoomEvent):
    """The server sent new room information (``room_updated``), e.g. counts or settings."""

    name: ClassVar[str] = "room_updated"
    room: pb.Room


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantMetadataChanged(RoomEvent):
    """A participant's metadata changed (``participant_metadata_changed``): old and new."""

    name: ClassVar[str] = "participant_metadata_changed"
    participant: Participant
    old_metadata: str
    metadata: str

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.old_metadata, self.metadata)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantNameChanged(RoomEvent):
    """A participant's display name changed (``participant_name_changed``): old and new."""

    name: ClassVar[str] = "participant_name_changed"
    participant: Participant
    old_name: str
    new_name: str

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.old_name, self.new_name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantAttributesChanged(RoomEvent):
    """Some of a participant's attributes changed (``participant_attributes_changed``)."""

    name: ClassVar[str] = "participant_attributes_changed"
    changed_attributes: dict[str, str]
    participant: Participant

    def args(self) -> tuple[object, ...]:
        return (self.changed_attributes, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantPermissionsChanged(RoomEvent):
    """A participant's permissions changed (``participant_permissions_changed``)."""

    name: ClassVar[str] = "participant_permissions_changed"
    participant: Participant
    old_permissions: pb.ParticipantPermission | None
    permissions: pb.ParticipantPermission

    def args(self) -> tuple[object, ...]:
        # The official SDK passes (participant, permissions); the old value is typed-stream only.
        return (self.participant, self.permissions)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveSpeakersChanged(RoomEvent):
    """The set of participants currently speaking changed (``active_speakers_changed``)."""

    name: ClassVar[str] = "active_speakers_changed"
    speakers: list[Participant]

    def args(self) -> tuple[object, ...]:
        return (self.speakers,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionQualityChanged(RoomEvent):
    """A participant's connection quality changed (``connection_quality_changed``)."""

    name: ClassVar[str] = "connection_quality_changed"
    participant: Participant
    quality: ConnectionQuality

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.quality)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefreshed(RoomEvent):
    """The server sent a fresh access token (``token_refreshed``), used for later resumes."""

    name: ClassVar[str] = "token_refreshed"
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished(RoomEvent):
    """A remote participant published a track (``track_published``)."""

    name: ClassVar[str] = "track_published"
    publication: TrackPublication
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.publication, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnpublished(RoomEvent):
    """A remote participant unpublished a track (``track_unpublished``)."""

    name: ClassVar[str] = "track_unpublished"
    publication: TrackPublication
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.publication, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackSubscribed(RoomEvent):
    """Media of a remote track now arrives: read it with AudioStream / VideoStream."""

    name: ClassVar[str] = "track_subscribed"
    track: RemoteTrack
    publication: RemoteTrackPublication
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.track, self.publication, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnsubscribed(RoomEvent):
    """Media of a remote track stopped arriving for us (``track_unsubscribed``)."""

    name: ClassVar[str] = "track_unsubscribed"
    track: RemoteTrack
    publication: RemoteTrackPublication
    participant: RemoteParticipant

    def args(self) -> tuple[object, ...]:
        return (self.track, self.publication, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackSubscriptionFailed(RoomEvent):
    """The server could not subscribe us (``SubscriptionResponse.err``, PROTOCOL-MAP §9)."""

    name: ClassVar[str] = "track_subscription_failed"
    participant: RemoteParticipant | None
    track_sid: str
    error: str

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.track_sid, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackPublished(RoomEvent):
    """One of our tracks is published: the server acknowledged it (``local_track_published``)."""

    name: ClassVar[str] = "local_track_published"
    publication: LocalTrackPublication
    track: LocalTrack

    def args(self) -> tuple[object, ...]:
        return (self.publication, self.track)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackUnpublished(RoomEvent):
    """One of our tracks was unpublished (``local_track_unpublished``)."""

    name: ClassVar[str] = "local_track_unpublished"
    publication: LocalTrackPublication

    def args(self) -> tuple[object, ...]:
        return (self.publication,)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackSubscribed(RoomEvent):
    """Some participant subscribed to our track (the server's ``track_subscribed``)."""

    name: ClassVar[str] = "local_track_subscribed"
    track: LocalTrack

    def args(self) -> tuple[object, ...]:
        return (self.track,)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackRepublished(RoomEvent):
    """After a full reconnect our track was published again under a new SID."""

    name: ClassVar[str] = "local_track_republished"
    publication: LocalTrackPublication
    previous_sid: str

    def args(self) -> tuple[object, ...]:
        return (self.publication, self.previous_sid)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackMuted(RoomEvent):
    """A participant muted a published track (``track_muted``)."""

    name: ClassVar[str] = "track_muted"
    participant: Participant
    publication: TrackPublication

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.publication)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnmuted(RoomEvent):
    """A participant unmuted a published track (``track_unmuted``)."""

    name: ClassVar[str] = "track_unmuted"
    participant: Participant
    publication: TrackPublication

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.publication)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(RoomEvent):
    """A data packet arrived (``data_received``): payload, topic, sender and kind."""

    name: ClassVar[str] = "data_received"
    packet: DataPacket

    def args(self) -> tuple[object, ...]:
        return (self.packet,)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipDTMFReceived(RoomEvent):
    """A SIP participant sent a DTMF tone (``sip_dtmf_received``)."""

    name: ClassVar[str] = "sip_dtmf_received"
    dtmf: SipDTMF

    def args(self) -> tuple[object, ...]:
        return (self.dtmf,)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionReceived(RoomEvent):
    """A legacy transcription packet arrived (``transcription_received``)."""

    name: ClassVar[str] = "transcription_received"
    segments: list[TranscriptionSegment]
    participant: Participant | None
    publication: TrackPublication | None

    def args(self) -> tuple[object, ...]:
        return (self.segments, self.participant, self.publication)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessageReceived(RoomEvent):
    """A legacy chat-message packet arrived (``chat_message``)."""

    name: ClassVar[str] = "chat_message"
    message: ChatMessage
    participant: RemoteParticipant | None

    def args(self) -> tuple[object, ...]:
        return (self.message, self.participant)


@dataclass(frozen=True, slots=True, kw_only=True)
class E2eeStateChanged(RoomEvent):
    """A participant's encryption state changed (official ``e2ee_state_changed``).

    For the local participant it is the state of sending; for a remote one, of what arrives from
    it (``MISSING_KEY``, ``DECRYPTION_FAILED``, ``OK`` again once the right key is set).
    """

    name: ClassVar[str] = "e2ee_state_changed"
    participant: Participant
    state: EncryptionState

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.state)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantEncryptionStatusChanged(RoomEvent):
    """Whether a participant's published tracks are all encrypted changed (official event)."""

    name: ClassVar[str] = "participant_encryption_status_changed"
    participant: Participant
    is_encrypted: bool

    def args(self) -> tuple[object, ...]:
        return (self.participant, self.is_encrypted)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackPublished(RoomEvent):
    """A remote participant published a data track (``data_track_published``); also sent once
    for every data track already published when the room connects."""

    name: ClassVar[str] = "data_track_published"
    track: RemoteDataTrack

    def args(self) -> tuple[object, ...]:
        return (self.track,)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackUnpublished(RoomEvent):
    """A remote data track went away (``data_track_unpublished``): unpublished, or its
    publisher left. The official callback receives the track's SID."""

    name: ClassVar[str] = "data_track_unpublished"
    sid: str

    def args(self) -> tuple[object, ...]:
        return (self.sid,)
