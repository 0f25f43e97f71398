"""Participants, shaped like the official Participant, LocalParticipant and RemoteParticipant.

A participant object is a live view: the room replaces its ``ParticipantInfo`` snapshot whenever the
server sends a newer one (PROTOCOL-MAP §7 ParticipantUpdate), so properties always read the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import mimetypes
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from lkproto.core.rpc import RPC_DEFAULT_RESPONSE_TIMEOUT_S
from lkproto.errors import (
    ConnectError,
    LocalProtocolError,
    PublishDataError,
    RequestRejectedError,
)
from lkproto.rtc._deferred import DeferredModule
from lkproto.rtc._enum import ProtoEnum
from lkproto.rtc._options import warn_once
from lkproto.rtc.data_stream import (
    ByteStreamInfo,
    ByteStreamWriter,
    StreamError,
    TextStreamInfo,
    TextStreamWriter,
    _now_ms,
)
from lkproto.rtc.data_track import DataTrackInfo, LocalDataTrack, PublishDataTrackError
from lkproto.rtc.rpc_interceptor import RpcCallInfo, RpcInterceptor, chain_outgoing
from lkproto.rtc.track import (
    LocalTrack,
    RemoteTrack,
    TrackKind,
    TrackPublishOptions,
    TrackSource,
    VideoCodec,
    kind_from_wire,
)
from lkproto.wire import pb
from lkproto.wire.streams import STREAM_CHUNK_SIZE_BYTES

if TYPE_CHECKING:
    from lkproto.asyncio import streams as _st
    from lkproto.asyncio.data_track import DataTrackDriver
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.rpc import RpcDriver, RpcHandler
    from lkproto.asyncio.streams import StreamSender
    from lkproto.core import streams as cs
    from lkproto.core.publish import TrackDescription
    from lkproto.core.simulcast import SimulcastLayer
    from lkproto.rtc import events as ev
    from lkproto.rtc.transcription import Transcription
else:
    # Stream senders and their core machines are used only by a connected room: they load on
    # first use, not with ``import lkproto.rtc`` (issue 18).
    _st = DeferredModule("lkproto.asyncio.streams", globals(), "_st")
    cs = DeferredModule("lkproto.core.streams", globals(), "cs")
    ev = DeferredModule("lkproto.rtc.events", globals(), "ev")

__all__ = [
    "ConnectionQuality",
    "DisconnectReason",
    "LocalParticipant",
    "LocalTrackPublication",
    "Participant",
    "ParticipantKind",
    "ParticipantKindDetail",
    "ParticipantState",
    "ParticipantTrackPermission",
    "RemoteParticipant",
    "RemoteTrackPublication",
    "TrackPublication",
    "VideoQuality",
]


class ParticipantKind(ProtoEnum):
    """The official SDK's numbering (differs from the wire's for CONNECTOR and BRIDGE)."""

    PARTICIPANT_KIND_STANDARD = 0
    PARTICIPANT_KIND_INGRESS = 1
    PARTICIPANT_KIND_EGRESS = 2
    PARTICIPANT_KIND_SIP = 3
    PARTICIPANT_KIND_AGENT = 4
    PARTICIPANT_KIND_CONNECTOR = 5
    PARTICIPANT_KIND_BRIDGE = 6


# ParticipantInfo.Kind on the wire (PROTOCOL-MAP §7 Kind) -> the official SDK's ParticipantKind.
_KIND_FROM_WIRE: Mapping[int, ParticipantKind] = {
    pb.ParticipantInfo.STANDARD: ParticipantKind.PARTICIPANT_KIND_STANDARD,
    pb.ParticipantInfo.INGRESS: ParticipantKind.PARTICIPANT_KIND_INGRESS,
    pb.ParticipantInfo.EGRESS: ParticipantKind.PARTICIPANT_KIND_EGRESS,
    pb.ParticipantInfo.SIP: ParticipantKind.PARTICIPANT_KIND_SIP,
    pb.ParticipantInfo.AGENT: ParticipantKind.PARTICIPANT_KIND_AGENT,
    pb.ParticipantInfo.CONNECTOR: ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    pb.ParticipantInfo.BRIDGE: ParticipantKind.PARTICIPANT_KIND_BRIDGE,
}


class ParticipantKindDetail(ProtoEnum):
    """Official ``ParticipantKindDetail``; the wire's ``ParticipantInfo.KindDetail`` uses the same
    numbers (PROTOCOL-MAP §7), so ``Participant.kind_details`` holds these values."""

    PARTICIPANT_KIND_DETAIL_CLOUD_AGENT = 0
    PARTICIPANT_KIND_DETAIL_FORWARDED = 1
    PARTICIPANT_KIND_DETAIL_CONNECTOR_WHATSAPP = 2
    PARTICIPANT_KIND_DETAIL_CONNECTOR_TWILIO = 3
    PARTICIPANT_KIND_DETAIL_BRIDGE_RTSP = 4
    PARTICIPANT_KIND_DETAIL_SIMULATION = 5


class VideoQuality(ProtoEnum):
    """Official ``VideoQuality``; the same numbers as the wire's ``VideoQuality`` that
    ``UpdateTrackSettings.quality`` carries (PROTOCOL-MAP §9)."""

    VIDEO_QUALITY_LOW = 0
    VIDEO_QUALITY_MEDIUM = 1
    VIDEO_QUALITY_HIGH = 2


class ParticipantState(ProtoEnum):
    """``ParticipantInfo.State`` (same numbers in the official SDK)."""

    PARTICIPANT_STATE_JOINING = 0
    PARTICIPANT_STATE_JOINED = 1
    PARTICIPANT_STATE_ACTIVE = 2
    PARTICIPANT_STATE_DISCONNECTED = 3


class DisconnectReason(ProtoEnum):
    """Why a participant left (wire ``DisconnectReason``, same numbers in the official SDK)."""

    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    DUPLICATE_IDENTITY = 2
    SERVER_SHUTDOWN = 3
    PARTICIPANT_REMOVED = 4
    ROOM_DELETED = 5
    STATE_MISMATCH = 6
    JOIN_FAILURE = 7
    MIGRATION = 8
    SIGNAL_CLOSE = 9
    ROOM_CLOSED = 10
    USER_UNAVAILABLE = 11
    USER_REJECTED = 12
    SIP_TRUNK_FAILURE = 13
    CONNECTION_TIMEOUT = 14
    MEDIA_FAILURE = 15
    AGENT_ERROR = 16


class ConnectionQuality(ProtoEnum):
    """Official ``ConnectionQuality`` values (QUALITY_*), same order as the wire's."""

    QUALITY_UNKNOWN = -1
    QUALITY_POOR = 0
    QUALITY_GOOD = 1
    QUALITY_EXCELLENT = 2
    QUALITY_LOST = 3


def disconnect_reason(value: int) -> DisconnectReason | int:
    """The enum member, or the raw number for reasons newer than this SDK."""
    try:
        return DisconnectReason(value)
    except ValueError:
        return value


class TrackPublication:
    """A published track as the server describes it (``TrackInfo``)."""

    def __init__(self, info: pb.TrackInfo) -> None:
        self._info = info

    def _update(self, info: pb.TrackInfo) -> None:
        self._info = info

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def kind(self) -> TrackKind:
        """Official ``TrackKind`` (KIND_AUDIO 1, KIND_VIDEO 2; the wire's type is ``info.type``)."""
        return kind_from_wire(self._info.type)

    @property
    def source(self) -> TrackSource | int:
        try:
            return TrackSource(self._info.source)
        except ValueError:
            return self._info.source

    @property
    def simulcasted(self) -> bool:
        return len(self._info.layers) > 1

    @property
    def encryption_type(self) -> int:
        """How the track's frames are encrypted (``EncryptionType`` value; official name)."""
        return int(self._info.encryption)

    @property
    def audio_features(self) -> list[int]:
        """The publisher's announced ``AudioTrackFeature`` values (``TrackInfo.audio_features``;
        the official enum has the same numbers: TF_STEREO 0 ... TF_PRECONNECT_BUFFER 6)."""
        return list(self._info.audio_features)

    @property
    def frame_metadata_features(self) -> list[int]:
        """The publisher's announced frame metadata (``TrackInfo.packet_trailer_features``; the
        official ``FrameMetadataFeature`` has the same numbers). lkproto reads no trailer."""
        return list(self._info.packet_trailer_features)

    @property
    def mime_type(self) -> str:
        return self._info.mime_type

    @property
    def muted(self) -> bool:
        return self._info.muted

    @property
    def width(self) -> int:
        return self._info.width

    @property
    def height(self) -> int:
        return self._info.height

    @property
    def info(self) -> pb.TrackInfo:
        """The raw ``TrackInfo`` (for conformance users)."""
        return self._info

    @property
    def track(self) -> LocalTrack | RemoteTrack | None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self.sid} name={self.name!r} muted={self.muted}>"


class LocalTrackPublication(TrackPublication):
    """One of our published tracks."""

    def __init__(self, info: pb.TrackInfo, track: LocalTrack | None = None) -> None:
        super().__init__(info)
        self._track = track
        self._subscribed: asyncio.Future[None] | None = None

    @property
    def track(self) -> LocalTrack | None:
        return self._track

    async def wait_for_subscription(self) -> None:
        """Until some participant subscribes (the server's ``track_subscribed``, §9)."""
        if self._subscribed is None:
            self._subscribed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._subscribed)

    def _first_subscriber(self) -> None:
        if self._subscribed is None:
            self._subscribed = asyncio.get_running_loop().create_future()
        if not self._subscribed.done():
            self._subscribed.set_result(None)


class RemoteTrackPublication(TrackPublication):
    """Another participant's track; ``track`` is set while we are subscribed and media flows."""

    def __init__(self, info: pb.TrackInfo, participant: RemoteParticipant | None = None) -> None:
        super().__init__(info)
        self._track: RemoteTrack | None = None
        self._participant = participant
        self._wanted = True

    @property
    def track(self) -> RemoteTrack | None:
        return self._track

    @property
    def subscribed(self) -> bool:
        return self._track is not None

    def _attach(self, track: RemoteTrack) -> None:
        """Media for this publication arrived (the room's subscription bookkeeping)."""
        track._apply_muted(self.muted)
        self._track = track
        if self._participant is not None:
            self._participant._tracks_changed()

    def _detach(self) -> RemoteTrack | None:
        """Forget the subscribed track; returns it (None when there was none)."""
        track, self._track = self._track, None
        if self._participant is not None:
            self._participant._tracks_changed()
        return track

    def set_subscribed(self, subscribed: bool) -> None:
        """Ask the server to (un)subscribe us (``UpdateSubscription``, PROTOCOL-MAP §9); the
        result arrives as ``track_subscribed`` / ``track_unsubscribed``."""
        self._wanted = subscribed
        engine = self._participant._engine if self._participant is not None else None
        if engine is None:
            raise LocalProtocolError("the room is not connected")
        engine.update_subscription([self.sid], subscribed)

    def set_enabled(self, enabled: bool) -> None:
        """Pause/resume delivery without unsubscribing (``UpdateTrackSettings.disabled``)."""
        self._send_settings(disabled=not enabled)

    def set_video_dimensions(self, width: int, height: int) -> None:
        """Tell the server the size we render at (it picks the layer; lkproto extra)."""
        self._send_settings(width=width, height=height)

    def set_video_quality(self, quality: VideoQuality | int) -> None:
        """Ask the server for a simulcast layer (``UpdateTrackSettings.quality``).

        Args:
            quality: a :class:`VideoQuality` (or its number: LOW 0, MEDIUM 1, HIGH 2).

        Raises:
            LocalProtocolError: not a ``VideoQuality`` number, or the room is not connected.
        """
        try:
            value = VideoQuality(quality)
        except ValueError:
            raise LocalProtocolError(f"not a VideoQuality: {quality!r}") from None
        self._send_settings(quality=int(value))

    def _send_settings(self, **fields: int | bool) -> None:
        engine = self._participant._engine if self._participant is not None else None
        if engine is None:
            raise LocalProtocolError("the room is not connected")
        settings = pb.UpdateTrackSettings(track_sids=[self.sid], **fields)  # type: ignore[arg-type]
        engine.update_track_settings(settings)


class Participant:
    """Common view of a participant."""

    def __init__(self, info: pb.ParticipantInfo) -> None:
        self._info = info
        self._publications: dict[str, TrackPublication] = {}
        self._engine: Engine | None = None
        self._connection_quality = ConnectionQuality.QUALITY_UNKNOWN
        self._sync_publications()

    def _update(self, info: pb.ParticipantInfo) -> None:
        self._info = info
        self._sync_publications()

    def _replace_info(self, info: pb.ParticipantInfo) -> None:
        """Take a newer snapshot without touching the publications (the room applies the track
        event that came with it itself, keeping one publication object per track SID)."""
        self._info = info

    def _set_connection_quality(self, quality: ConnectionQuality) -> None:
        self._connection_quality = quality

    def _publication(self, sid: str) -> TrackPublication | None:
        return self._publications.get(sid)

    def _add_publication(self, pub: TrackPublication) -> None:
        self._publications[pub.sid] = pub

    def _remove_publication(self, sid: str) -> TrackPublication | None:
        return self._publications.pop(sid, None)

    def _track_published(self, info: pb.TrackInfo) -> TrackPublication:
        """The publication for ``info`` (created on first sight, else updated in place)."""
        pub = self._publications.get(info.sid)
        if pub is None:
            pub = self._publications[info.sid] = self._new_publication(info)
        else:
            pub._update(info)
        return pub

    def _track_unpublished(self, info: pb.TrackInfo) -> TrackPublication:
        """Remove and return the publication of ``info`` (a fresh one if it was never seen)."""
        return self._publications.pop(info.sid, None) or self._new_publication(info)

    def _sync_publications(self) -> None:
        current = {t.sid: t for t in self._info.tracks}
        for sid in list(self._publications):
            if sid not in current:
                del self._publications[sid]
        for sid, track in current.items():
            pub = self._publications.get(sid)
            if pub is None:
                self._publications[sid] = self._new_publication(track)
            else:
                pub._update(track)

    def _new_publication(self, info: pb.TrackInfo) -> TrackPublication:
        return TrackPublication(info)

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def identity(self) -> str:
        return self._info.identity

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._info.attributes)

    @property
    def kind(self) -> ParticipantKind:
        return _KIND_FROM_WIRE.get(self._info.kind, ParticipantKind.PARTICIPANT_KIND_STANDARD)

    @property
    def kind_details(self) -> list[int]:
        return list(self._info.kind_details)

    @property
    def state(self) -> int:
        return self._info.state

    @property
    def joined_at(self) -> datetime.datetime | None:
        ms = self._info.joined_at_ms or self._info.joined_at * 1000
        if not ms:
            return None
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)

    @property
    def permissions(self) -> pb.ParticipantPermission:
        return self._info.permission

    @property
    def connection_quality(self) -> ConnectionQuality:
        return self._connection_quality

    @property
    def disconnect_reason(self) -> DisconnectReason | int | None:
        if self._info.state != pb.ParticipantInfo.DISCONNECTED:
            return None
        return disconnect_reason(self._info.disconnect_reason)

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        return dict(self._publications)

    @property
    def info(self) -> pb.ParticipantInfo:
        """The latest raw ``ParticipantInfo`` snapshot (for conformance users)."""
        return self._info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self.sid} identity={self.identity!r}>"


class RemoteParticipant(Participant):
    """Another participant in the room."""

    def __init__(self, info: pb.ParticipantInfo) -> None:
        super().__init__(info)
        self._track_watchers: list[Callable[[], None]] = []

    def _bind(self, engine: Engine | None) -> None:
        """The engine its publications send subscription requests through."""
        self._engine = engine

    def _new_publication(self, info: pb.TrackInfo) -> TrackPublication:
        return RemoteTrackPublication(info, self)

    def _watch_tracks(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change`` whenever one of its publications gains or loses its track (what
        ``AudioStream.from_participant`` follows); returns the function that stops it."""
        self._track_watchers.append(on_change)

        def unwatch() -> None:
            if on_change in self._track_watchers:
                self._track_watchers.remove(on_change)

        return unwatch

    def _tracks_changed(self) -> None:
        for on_change in list(self._track_watchers):
            on_change()

    @property
    def track_publications(self) -> Mapping[str, RemoteTrackPublication]:
        return {
            sid: pub
            for sid, pub in self._publications.items()
            if isinstance(pub, RemoteTrackPublication)
        }


_F = TypeVar("_F", bound="RpcHandler")


@dataclasses.dataclass
class ParticipantTrackPermission:
    """Official ``ParticipantTrackPermission``: which of our tracks one participant may subscribe.

    Attributes:
        participant_identity: the participant it applies to.
        allow_all: may subscribe to all our tracks (then ``allowed_track_sids`` is ignored).
        allowed_track_sids: the tracks it may subscribe to otherwise.
    """

    participant_identity: str = ""
    allow_all: bool = False
    allowed_track_sids: list[str] = dataclasses.field(default_factory=list)


class LocalParticipant(Participant):
    """This client's participant."""

    _encryption: int = pb.Encryption.NONE
    """What the frames of published tracks are encrypted with (GCM in an encrypted room)."""

    def _set_encryption(self, encryption: int) -> None:
        """Announce published tracks as encrypted with ``encryption``."""
        self._encryption = encryption

    def __init__(self, info: pb.ParticipantInfo, engine: Engine, rpc: RpcDriver) -> None:
        super().__init__(info)
        self._engine: Engine = engine
        self._rpc = rpc
        self._rpc_interceptors: list[RpcInterceptor] = []
        # Set by the room (_set_event_sink): where local_track_published / _unpublished go.
        self._emit_event: Callable[[Any], None] = lambda event: None

    def _set_event_sink(self, emit: Callable[[Any], None]) -> None:
        self._emit_event = emit

    _data_tracks: DataTrackDriver | None = None
    """Set by the room once connected (PROTOCOL-MAP §12)."""

    def _set_data_tracks(self, driver: DataTrackDriver) -> None:
        self._data_tracks = driver

    async def publish_data_track(self, *, name: str) -> LocalDataTrack:
        """Publish a data track (PROTOCOL-MAP §12), as the official ``publish_data_track``.

        Args:
            name: how other participants find the track; not empty, at most 256 characters,
                unique among this participant's data tracks.

        Returns:
            The published track; send frames with :meth:`LocalDataTrack.try_push`.

        Raises:
            PublishDataTrackError: the name is invalid or already used (``reason``
                ``INVALID_NAME`` / ``DUPLICATE_NAME``), publishing data is not allowed
                (``NOT_ALLOWED``), the server did not answer in time (``TIMEOUT``), or the room
                is not connected (``DISCONNECTED``).
        """
        driver = self._data_tracks
        if driver is None:
            raise PublishDataTrackError("the room is not connected", reason="DISCONNECTED")
        try:
            handle, info = await driver.publish(name)
        except RequestRejectedError as exc:
            raise PublishDataTrackError(exc.message or exc.reason, reason=exc.reason) from exc
        except ConnectError as exc:
            raise PublishDataTrackError(str(exc), reason="DISCONNECTED") from exc
        except LocalProtocolError as exc:
            raise PublishDataTrackError(str(exc), reason="INVALID_NAME") from exc
        public = DataTrackInfo(
            sid=info.sid, name=info.name, uses_e2ee=info.encryption != pb.Encryption.NONE
        )
        return LocalDataTrack(public, handle, driver)

    def _new_publication(self, info: pb.TrackInfo) -> TrackPublication:
        return LocalTrackPublication(info)

    def _sync_publications(self) -> None:
        # Our own publications live from publish_track to unpublish_track: a snapshot that
        # raced the AddTrack (and so lacks the track) must not drop them.
        owned = {
            sid: pub
            for sid, pub in self._publications.items()
            if isinstance(pub, LocalTrackPublication) and pub.track is not None
        }
        super()._sync_publications()
        for sid, pub in owned.items():
            self._publications.setdefault(sid, pub)

    @property
    def track_publications(self) -> Mapping[str, LocalTrackPublication]:
        return {
            sid: pub
            for sid, pub in self._publications.items()
            if isinstance(pub, LocalTrackPublication)
        }

    # -- media (PROTOCOL-MAP §9 Publishing, §16) --------------------------------------------

    async def publish_track(
        self, track: LocalTrack, options: TrackPublishOptions | None = None
    ) -> LocalTrackPublication:
        """Publish a local audio or video track (official shape).

        Opus for audio (mono sources encoded as mono), VP8 or H.264 for video per
        ``options.video_codec``, in simulcast layers when ``options.simulcast`` (see
        :mod:`lkproto.core.simulcast`). The announcement matches what is sent: no RED, no DTX
        (PROTOCOL-MAP §14).

        Raises:
            lkproto.errors.RequestRejectedError: the server refused (e.g. ``NOT_ALLOWED`` when
                the token may not publish this source) or did not answer in 10 s.
            LocalProtocolError: the track is already published, or an unsupported codec.
        """
        opts = options or TrackPublishOptions()
        if track._engine is not None:
            raise LocalProtocolError(f"{track!r} is already published")
        description = dataclasses.replace(
            _track_description(track, opts), encryption=self._encryption
        )
        info = await self._engine.publish_track(
            description, track._media, media_factory=track.source._media_track
        )
        track._published(self._engine, info)
        # A snapshot of ourselves may already name the codec (it raced the negotiation).
        latest = next((t for t in self._info.tracks if t.sid == info.sid), info)
        pub = LocalTrackPublication(latest, track)
        self._publications[info.sid] = pub
        self._emit_event(ev.LocalTrackPublished(publication=pub, track=track))
        return pub

    async def unpublish_track(self, track_sid: str) -> None:
        """Stop publishing (official shape: by track SID)."""
        pub = self._publications.get(track_sid)
        if not isinstance(pub, LocalTrackPublication) or pub.track is None:
            raise LocalProtocolError(f"no local track with SID {track_sid!r}")
        track = pub.track
        await self._engine.unpublish_track(track.cid)
        track._unpublished()
        self._publications.pop(track_sid, None)
        self._emit_event(ev.LocalTrackUnpublished(publication=pub))

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: Sequence[str] = (),
        topic: str = "",
    ) -> None:
        """Send a user packet to everyone else, or only to ``destination_identities``.

        Reliable packets are ordered, sequenced and resent across a signal resume; lossy ones may
        be dropped (also locally, when the lossy queue is full). Waits while the reliable queue is
        full or a reconnect is in progress. A reliable packet carries a random
        ``UserPacket.nonce``, so the resend after a full reconnect is not delivered twice
        (lkproto.core.reliable "Nonces").

        Raises:
            PublishDataError: the packet would exceed 64 000 bytes (PROTOCOL-MAP §3), or the room
                is not connected.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        user = pb.UserPacket(payload=data)
        if topic:
            user.topic = topic
        packet = pb.DataPacket(
            kind=pb.DataPacket.RELIABLE if reliable else pb.DataPacket.LOSSY,
            user=user,
            destination_identities=list(destination_identities),
        )
        await self._publish(packet, reliable=reliable)

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        """Send a SIP DTMF tone (reliable), as the official SDK does."""
        await self._publish(
            pb.DataPacket(sip_dtmf=pb.SipDTMF(code=code, digit=digit)), reliable=True
        )

    async def publish_transcription(self, transcription: Transcription) -> None:
        """Send a legacy transcription packet (reliable ``DataPacket.transcription``).

        Receivers get it as ``transcription_received``, as the official SDK sends it.
        livekit-server forwards these packets only from agent participants (PROTOCOL-MAP §3);
        from others they are dropped there, for both SDKs. Newer agents send transcriptions as
        text streams on ``lk.transcription`` instead.

        Raises:
            PublishDataError: the room is not connected, or the packet is too large.
        """
        segments = [
            pb.TranscriptionSegment(
                id=s.id,
                text=s.text,
                start_time=s.start_time,
                end_time=s.end_time,
                final=s.final,
                language=s.language,
            )
            for s in transcription.segments
        ]
        message = pb.Transcription(
            transcribed_participant_identity=transcription.participant_identity,
            track_id=transcription.track_sid,
            segments=segments,
        )
        await self._publish(pb.DataPacket(transcription=message), reliable=True)

    def set_track_subscription_permissions(
        self,
        *,
        allow_all_participants: bool,
        participant_permissions: Sequence[ParticipantTrackPermission] | None = None,
    ) -> None:
        """Restrict who may subscribe to our tracks (``SubscriptionPermission``, PROTOCOL-MAP §9).

        The server enforces it: a participant not allowed a track is not subscribed (it is told
        so with ``SubscriptionPermissionUpdate{allowed=false}``) and is subscribed as soon as a
        later call allows it.

        Args:
            allow_all_participants: everyone may subscribe (the default state); the list is then
                sent but the server ignores it, as with the official SDK.
            participant_permissions: per-participant grants, by identity.

        Raises:
            LocalProtocolError: the room is not connected, or an entry is not a
                :class:`ParticipantTrackPermission`.
        """
        permissions = list(participant_permissions or ())
        for entry in permissions:
            if not isinstance(entry, ParticipantTrackPermission):
                raise LocalProtocolError(
                    f"participant_permissions takes ParticipantTrackPermission, got {entry!r}"
                )
        message = pb.SubscriptionPermission(
            all_participants=allow_all_participants,
            track_permissions=[
                pb.TrackPermission(
                    participant_identity=entry.participant_identity,
                    all_tracks=entry.allow_all,
                    track_sids=list(entry.allowed_track_sids),
                )
                for entry in permissions
            ],
        )
        self._engine.send_signal(pb.SignalRequest(subscription_permission=message))

    async def _publish(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        try:
            await self._engine.send_data(packet, reliable=reliable)
        except PublishDataError:
            raise
        except LocalProtocolError as exc:
            raise PublishDataError(str(exc)) from exc
        except ConnectError as exc:
            raise PublishDataError(f"cannot publish data: {exc}") from exc

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
        max_round_trip_latency: float | None = None,
    ) -> str:
        """Call ``method`` on another participant and return its response.

        RPC v2 (request and response as text streams, PROTOCOL-MAP §6) when the callee advertises
        it, else RPC v1 packets, as the official SDKs choose.

        Args:
            destination_identity: the callee.
            method: the method name.
            payload: the request payload.
            response_timeout: seconds to wait for the response (default 15).
            max_round_trip_latency: seconds to wait for the callee's ack (default 7, as the
                official SDK); the callee is told ``max(response_timeout, this + 1 s)``.

        Raises:
            RpcError: with the built-in codes (1400-1505) or the callee's own error.
            LocalProtocolError: a timeout that is not a positive number.
        """
        call = RpcCallInfo(
            destination_identity=destination_identity,
            method=method,
            payload=payload,
            response_timeout=response_timeout,
            max_round_trip_latency=max_round_trip_latency,
        )
        # A copy: adding or removing an interceptor does not change calls already started.
        return await chain_outgoing(list(self._rpc_interceptors), self._perform_rpc)(call)

    async def _perform_rpc(self, call: RpcCallInfo) -> str:
        timeout = call.response_timeout
        return await self._rpc.perform(
            call.destination_identity,
            call.method,
            call.payload,
            RPC_DEFAULT_RESPONSE_TIMEOUT_S if timeout is None else timeout,
            call.max_round_trip_latency,
        )

    def add_rpc_interceptor(self, interceptor: RpcInterceptor) -> None:
        """Wrap every RPC this participant performs or handles with ``interceptor``.

        Interceptors run in the order added, the first outermost; adding the same object twice
        does nothing (identity, as the official SDK: two equal interceptors may coexist). See
        :class:`~lkproto.rtc.RpcInterceptor`.
        """
        if not any(existing is interceptor for existing in self._rpc_interceptors):
            self._rpc_interceptors.append(interceptor)
            self._rpc.incoming_interceptors = tuple(self._rpc_interceptors)

    def remove_rpc_interceptor(self, interceptor: RpcInterceptor) -> None:
        """Stop using ``interceptor`` (no error if absent); calls in flight keep their chain."""
        self._rpc_interceptors = [i for i in self._rpc_interceptors if i is not interceptor]
        self._rpc.incoming_interceptors = tuple(self._rpc_interceptors)

    @overload
    def register_rpc_method(self, method_name: str, handler: None = None) -> Callable[[_F], _F]: ...

    @overload
    def register_rpc_method(self, method_name: str, handler: RpcHandler) -> None: ...

    def register_rpc_method(
        self, method_name: str, handler: RpcHandler | None = None
    ) -> Callable[[_F], _F] | None:
        """Register a method handler, directly or as a decorator (``@lp.register_rpc_method("m")``).

        The handler gets an ``RpcInvocationData`` and returns the response string (sync or async).
        Raising ``RpcError`` sends that error; any other exception becomes APPLICATION_ERROR.
        """
        if handler is not None:
            self._rpc.register(method_name, handler)
            return None

        def decorator(func: _F) -> _F:
            self._rpc.register(method_name, func)
            return func

        return decorator

    def unregister_rpc_method(self, method: str) -> None:
        """Remove a method handler."""
        self._rpc.unregister(method)

    async def set_metadata(self, metadata: str) -> None:
        """Change own metadata; returns once the server accepted it.

        Needs the ``canUpdateOwnMetadata`` grant (PROTOCOL-MAP §7).

        Raises:
            RequestRejectedError: refused (e.g. ``NOT_ALLOWED``) or not answered in time.
        """
        await self._engine.update_metadata(metadata=metadata)

    async def set_name(self, name: str) -> None:
        """Change own display name (same rules as :meth:`set_metadata`)."""
        await self._engine.update_metadata(name=name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set, change or (with ``""``) delete attributes; keys not given stay as they are."""
        await self._engine.update_metadata(attributes=attributes)

    # -- data streams (PROTOCOL-MAP §5) --------------------------------------------------------

    def _form(self, destination_identities: Sequence[str] | None, compress: bool) -> cs.StreamForm:
        form = _st.recipients_form(
            self._engine.roster.remotes.values(), destination_identities or ()
        )
        return cs.StreamForm(form.inline_allowed, form.compression_allowed and compress)

    async def _run(self, sender: StreamSender, coro_label: str, send: _SendFn) -> None:
        try:
            await send(sender)
        except BaseException as exc:
            # Tell receivers the stream is over (best effort, bounded), then report.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.shield(
                    asyncio.wait_for(sender.abort(f"{type(exc).__name__}"), _ABORT_TIMEOUT_S)
                )
            # Local misuse (bad arguments, a header too large, more bytes than announced)
            # stays a LocalProtocolError; StreamError is for the stream failing (§5).
            if isinstance(exc, _st.StreamSendError):
                raise StreamError(
                    f"{coro_label}: {exc}", stream_id=sender.stream.stream_id
                ) from exc
            raise

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        reply_to_id: str | None = None,
        compress: bool = True,
        stream_id: str | None = None,
        attachments: Sequence[str] = (),
    ) -> TextStreamInfo:
        """Send ``text`` as one text stream (single packet / compressed where every recipient
        supports it, PROTOCOL-MAP §5 data streams v2).

        Raises:
            LocalProtocolError: bad arguments (e.g. attributes making the header too large).
            StreamError: not connected, or sending failed.
        """
        data = text.encode("utf-8")
        form = self._form(destination_identities, compress)
        stream = cs.OutgoingTextStream(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=(ts := _now_ms()),
            topic=topic,
            total_length=len(data),
            attributes=attributes,
            destination_identities=destination_identities or (),
            compression=form.compression_allowed,
            reply_to_stream_id=reply_to_id or "",
            attached_stream_ids=attachments,
        )
        sender = _st.StreamSender(self._engine, stream)

        async def send(s: StreamSender) -> None:
            await s.send_whole(data, form)

        await self._run(sender, "send_text", send)
        return TextStreamInfo(
            stream_id=stream.stream_id,
            mime_type=cs.DEFAULT_TEXT_MIME_TYPE,
            topic=topic,
            timestamp=ts,
            size=len(data),
            attributes=dict(attributes or {}),
            attachments=list(attachments),
        )

    async def stream_text(
        self,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        sender_identity: str | None = None,
    ) -> TextStreamWriter:
        """Open a text stream and return its writer (classic chunked form, never compressed).

        ``sender_identity`` publishes on another participant's behalf (an agent sending a
        user's transcript); the server honours it for senders of kind AGENT only.

        Raises:
            LocalProtocolError: bad arguments (e.g. attributes making the header too large).
            StreamError: not connected, or sending the header failed.
        """
        stream = cs.OutgoingTextStream(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=(ts := _now_ms()),
            topic=topic,
            total_length=total_size,
            attributes=attributes,
            destination_identities=destination_identities or (),
            reply_to_stream_id=reply_to_id or "",
        )
        sender = _st.StreamSender(self._engine, stream, sender_identity=sender_identity or "")
        await self._run(sender, "stream_text", _open)
        info = TextStreamInfo(
            stream_id=stream.stream_id,
            mime_type=cs.DEFAULT_TEXT_MIME_TYPE,
            topic=topic,
            timestamp=ts,
            size=total_size,
            attributes=dict(attributes or {}),
            attachments=[],
        )
        return TextStreamWriter(sender, info)

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        # lkproto.core.streams.DEFAULT_BYTE_MIME_TYPE, spelled out: a default is evaluated at
        # import, and the stream machines load on first use (issue 18).
        mime_type: str = "application/octet-stream",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> ByteStreamWriter:
        """Open a byte stream and return its writer (classic chunked form, never compressed).

        With ``total_size``, receivers enforce it and ``writer.progress`` reports the fraction
        sent.
        """
        stream = self._byte_stream(
            name=name,
            total_size=total_size,
            mime_type=mime_type,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=False,
            timestamp_ms=(ts := _now_ms()),
        )
        sender = _st.StreamSender(self._engine, stream)
        await self._run(sender, "stream_bytes", _open)
        return ByteStreamWriter(
            sender,
            _byte_info(
                stream,
                timestamp=ts,
                name=name,
                mime_type=mime_type,
                topic=topic,
                attributes=attributes,
            ),
        )

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Send an in-memory buffer as one byte stream (single packet / compressed where every
        recipient supports it)."""
        payload = bytes(data)
        form = self._form(destination_identities, compress)
        name = cs.DEFAULT_BYTE_STREAM_NAME if name is None else name
        mime = cs.DEFAULT_BYTE_MIME_TYPE if mime_type is None else mime_type
        stream = self._byte_stream(
            name=name,
            total_size=len(payload),
            mime_type=mime,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=form.compression_allowed,
            timestamp_ms=(ts := _now_ms()),
        )

        async def send(s: StreamSender) -> None:
            await s.send_whole(payload, form)

        await self._run(_st.StreamSender(self._engine, stream), "send_bytes", send)
        return _byte_info(
            stream, timestamp=ts, name=name, mime_type=mime, topic=topic, attributes=attributes
        )

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
        mime_type: str | None = None,
        name: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> ByteStreamInfo:
        """Send a file as one byte stream, read from disk 15 000 bytes at a time (never loaded
        whole). ``name`` defaults to the file's base name, ``mime_type`` to a guess from it.

        lkproto extras: ``mime_type``, ``name`` and ``on_progress(bytes_sent, total)``.

        Raises:
            OSError: the file cannot be read.
            LocalProtocolError: bad arguments, or the file changed size while being sent.
            StreamError: sending failed (receivers then see the stream aborted).
        """
        name = os.path.basename(file_path) if name is None else name
        if mime_type is None:
            mime_type = mimetypes.guess_type(file_path)[0] or cs.DEFAULT_BYTE_MIME_TYPE
        size = await asyncio.to_thread(os.path.getsize, file_path)
        form = self._form(destination_identities, compress)
        stream = self._byte_stream(
            name=name,
            total_size=size,
            mime_type=mime_type,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=form.compression_allowed,
            timestamp_ms=(ts := _now_ms()),
        )
        handle = await asyncio.to_thread(open, file_path, "rb")

        async def send(s: StreamSender) -> None:
            if form.inline_allowed and size <= STREAM_CHUNK_SIZE_BYTES:
                # Small enough to be one packet: read it whole and let the one rule choose.
                small = await asyncio.to_thread(handle.read, size + 1)
                if len(small) != size:
                    raise LocalProtocolError(f"{file_path} changed size while being sent")
                await s.send_whole(small, form)
                return
            await s.open()
            while True:
                block = await asyncio.to_thread(handle.read, _FILE_READ_BYTES)
                if not block:
                    break
                await s.write(block)
                if on_progress is not None:
                    on_progress(s.stream.bytes_sent, size)
            await s.close()

        try:
            await self._run(_st.StreamSender(self._engine, stream), "send_file", send)
        finally:
            handle.close()
        return _byte_info(
            stream, timestamp=ts, name=name, mime_type=mime_type, topic=topic, attributes=attributes
        )

    def _byte_stream(
        self,
        *,
        name: str,
        total_size: int | None,
        mime_type: str,
        attributes: dict[str, str] | None,
        stream_id: str | None,
        destination_identities: list[str] | None,
        topic: str,
        compression: bool,
        timestamp_ms: int,
    ) -> cs.OutgoingByteStream:
        return cs.OutgoingByteStream(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=timestamp_ms,
            topic=topic,
            mime_type=mime_type,
            name=name,
            total_length=total_size,
            attributes=attributes,
            destination_identities=destination_identities or (),
            compression=compression,
        )


_ABORT_TIMEOUT_S = 5.0
"""How long a failed send waits to tell receivers (trailer with a reason) before giving up."""

_FILE_READ_BYTES = STREAM_CHUNK_SIZE_BYTES
"""send_file reads this much at a time: one chunk, so memory stays at one chunk per send."""

_SendFn: TypeAlias = "Callable[[StreamSender], Awaitable[None]]"


async def _open(sender: StreamSender) -> None:
    await sender.open()


def _byte_info(
    stream: cs.OutgoingByteStream,
    *,
    timestamp: int,
    name: str,
    mime_type: str,
    topic: str,
    attributes: dict[str, str] | None,
) -> ByteStreamInfo:
    return ByteStreamInfo(
        stream_id=stream.stream_id,
        mime_type=mime_type,
        topic=topic,
        timestamp=timestamp,
        size=stream.total_length,
        attributes=dict(attributes or {}),
        name=name,
    )


# -- publishing helpers ----------------------------------------------------------------------

# PROTOCOL-MAP §9 Codecs: the MIME names aiortc knows for the official VideoCodec values.
_VIDEO_MIME = {VideoCodec.VP8: "video/VP8", VideoCodec.H264: "video/H264"}


def _track_description(track: LocalTrack, opts: TrackPublishOptions) -> TrackDescription:
    from lkproto.core.publish import TrackDescription  # at publish (issue 18)
    from lkproto.core.simulcast import plan_layers

    """The public publish options as the plain description lkproto.core.publish announces (and
    lkproto.asyncio.publish prepares the sender from). ``red``/``dtx`` were already warned about
    once when the options were set (lkproto.rtc.track); ``simulcast`` plans the layers (one
    layer for a source smaller than 480 pixels, as the official SDKs)."""
    if track.kind != TrackKind.KIND_VIDEO:
        channels = int(getattr(track.source, "num_channels", 1))
        return TrackDescription(
            cid=track.cid,
            name=track.name,
            kind="audio",
            source=int(opts.source),
            mime_type="audio/opus",
            muted=track.muted,
            stream=opts.stream or "",
            max_bitrate_bps=opts.audio_encoding.max_bitrate,
            stereo=channels == 2,
            preconnect_buffer=bool(opts.preconnect_buffer),
        )
    encoded = getattr(track.source, "codec", None)
    if encoded is None and getattr(track.source, "pre_encoded", False):
        # The official EncodedVideoSource(width, height) has no codec until a frame or the
        # publication gives it one; here it is the publication's (VP8 or H264, checked by
        # TrackPublishOptions).
        source: Any = track.source
        encoded = source._bind_codec("vp8" if opts.video_codec == VideoCodec.VP8 else "h264")
    if isinstance(encoded, str):
        # A pre-encoded source decides the codec: the section must negotiate exactly it.
        mime = f"video/{'VP8' if encoded == 'vp8' else 'H264'}"
    elif opts.video_codec in (VideoCodec.VP8, VideoCodec.H264):
        mime = _VIDEO_MIME[VideoCodec(opts.video_codec)]
    else:
        raise LocalProtocolError(
            f"aiortc can publish VP8 or H264 only, not {VideoCodec(opts.video_codec).name}"
        )
    width = int(getattr(track.source, "width", 0))
    height = int(getattr(track.source, "height", 0))
    bitrate = opts.video_encoding.max_bitrate
    layers: tuple[SimulcastLayer, ...] = ()
    if opts.simulcast and width > 0 and height > 0:
        layers = plan_layers(width, height, bitrate)
        if isinstance(encoded, str):
            # Nothing here can encode other sizes of frames encoded by the application; the
            # official SDK asks for simulcast=False with an EncodedVideoSource. With simulcast on
            # by default, that is a hint (one warning), not a refusal.
            if len(layers) > 1:
                warn_once("TrackPublishOptions.simulcast", "a pre-encoded source sends one layer")
            layers = ()
    return TrackDescription(
        cid=track.cid,
        name=track.name,
        kind="video",
        source=int(opts.source),
        mime_type=mime,
        muted=track.muted,
        stream=opts.stream or "",
        width=width,
        height=height,
        max_bitrate_bps=bitrate,
        simulcast_layers=layers,
    )
