"""Tracks and publish options, shaped like the official ``livekit.rtc`` (PROTOCOL-MAP §9).

Local tracks wrap a source (:class:`~lkproto.rtc.audio_source.AudioSource`,
:class:`~lkproto.rtc.video_source.VideoSource`, or a pre-encoded video source) whose aiortc track
is what the peer connection sends. Remote tracks wrap the aiortc track of the section they arrive
on through a :class:`~lkproto.asyncio.fanout.FrameFanout`, so any number of
:class:`~lkproto.rtc.audio_stream.AudioStream` / :class:`~lkproto.rtc.video_stream.VideoStream`
readers can share one subscription.

Enum values are the official SDK's (``TrackKind`` differs from the wire ``TrackType``: the
official ``KIND_AUDIO`` is 1 where the wire's ``AUDIO`` is 0; :func:`kind_from_wire` converts).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from lkproto.errors import LocalProtocolError
from lkproto.rtc._enum import ProtoEnum
from lkproto.rtc._options import refuse, warn_once
from lkproto.rtc.encoded import DegradationPreference, VideoEncoderBackend
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.fanout import FrameFanout
    from lkproto.asyncio.peer import PeerConnection
    from lkproto.rtc.stats import RtcStats

__all__ = [
    "AudioEncoding",
    "AudioTrack",
    "LocalAudioTrack",
    "LocalTrack",
    "LocalVideoTrack",
    "RemoteAudioTrack",
    "RemoteTrack",
    "RemoteVideoTrack",
    "StreamState",
    "Track",
    "TrackKind",
    "TrackPublishOptions",
    "TrackSource",
    "VideoCodec",
    "VideoEncoding",
    "VideoTrack",
    "kind_from_wire",
]

_log = logging.getLogger("lkproto.media")


class TrackKind(ProtoEnum):
    """Official ``TrackKind`` values."""

    KIND_UNKNOWN = 0
    KIND_AUDIO = 1
    KIND_VIDEO = 2


class TrackSource(ProtoEnum):
    """Official ``TrackSource`` values (the same numbers as the wire's, PROTOCOL-MAP §9)."""

    SOURCE_UNKNOWN = 0
    SOURCE_CAMERA = 1
    SOURCE_MICROPHONE = 2
    SOURCE_SCREENSHARE = 3
    SOURCE_SCREENSHARE_AUDIO = 4


class StreamState(ProtoEnum):
    """Official ``StreamState`` values (wire ``StreamState`` ACTIVE 0 / PAUSED 1 maps to 1 / 2)."""

    STATE_UNKNOWN = 0
    STATE_ACTIVE = 1
    STATE_PAUSED = 2


class VideoCodec(ProtoEnum):
    """Official ``VideoCodec`` values; aiortc can send VP8 and H264 only (PROTOCOL-MAP §14)."""

    VP8 = 0
    H264 = 1
    AV1 = 2
    VP9 = 3
    H265 = 4


def kind_from_wire(track_type: int) -> TrackKind:
    """Wire ``TrackType`` (AUDIO 0, VIDEO 1, DATA 2) → official :class:`TrackKind`."""
    if track_type == pb.AUDIO:
        return TrackKind.KIND_AUDIO
    if track_type == pb.VIDEO:
        return TrackKind.KIND_VIDEO
    return TrackKind.KIND_UNKNOWN


def _check_bitrate(feature: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LocalProtocolError(f"{feature} must be an int >= 0 (bits per second), got {value!r}")


@dataclass
class VideoEncoding:
    """Official ``VideoEncoding``: bits per second and frames per second caps.

    ``max_bitrate`` is honoured: it starts aiortc's VP8/H.264 encoder at that rate and is the
    announced layer's bitrate. ``max_framerate`` is a cap libwebrtc's encoder may apply; lkproto
    sends every captured frame, so a non-zero value is accepted with one warning (capture at the
    rate you want instead). Checked on every assignment.
    """

    max_bitrate: int = 0
    max_framerate: float = 0.0

    def __setattr__(self, name: str, value: object) -> None:
        if name == "max_bitrate":
            _check_bitrate("VideoEncoding.max_bitrate", value)
        elif name == "max_framerate":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise LocalProtocolError(
                    f"VideoEncoding.max_framerate must be a number >= 0, got {value!r}"
                )
            if value:
                warn_once(
                    "VideoEncoding.max_framerate",
                    "every frame given to the VideoSource is encoded and sent; "
                    "capture at the rate you want",
                )
        super().__setattr__(name, value)


@dataclass
class AudioEncoding:
    """Official ``AudioEncoding``: the Opus bitrate in bits per second (honoured: it is the rate
    lkproto's Opus encoder runs at; 0 = the default). Checked on every assignment."""

    max_bitrate: int = 0

    def __setattr__(self, name: str, value: object) -> None:
        if name == "max_bitrate":
            _check_bitrate("AudioEncoding.max_bitrate", value)
        super().__setattr__(name, value)


# Scalability modes that mean one spatial and one temporal layer: what aiortc sends anyway.
_SINGLE_LAYER_MODES: Final = frozenset({"", "L1T1"})


@dataclass
class TrackPublishOptions:
    """Official ``TrackPublishOptions`` fields (keyword arguments), with lkproto's defaults.

    Each field is checked when it is set (constructor or assignment), so a publication never
    quietly differs from what was asked:

    - honoured: ``video_encoding``, ``audio_encoding`` (see those classes), ``video_codec`` VP8
      (default) or H264, ``source``, ``stream``, ``preconnect_buffer`` (announced as
      ``TF_PRECONNECT_BUFFER``; the buffer itself is :class:`lkproto.agents.PreconnectBuffer`),
      ``simulcast`` (the official layers ``q``/``h``/``f`` for a source of at least 480 pixels,
      see :mod:`lkproto.core.simulcast`; each layer end-to-end encrypted when the room is; a
      hint for a pre-encoded source, which sends its frames as they come, in one layer);
    - refused with :class:`~lkproto.errors.UnsupportedFeatureError`: ``video_codec`` AV1, VP9,
      H265 (aiortc encodes VP8 and H.264 only), any ``frame_metadata_features`` (no frame
      metadata trailer), a ``scalability_mode`` other than single-layer ``L1T1``, a hardware
      ``video_encoder`` (aiortc encodes in software; ``ENCODER_BACKEND_PRE_ENCODED`` is what
      an ``EncodedVideoSource`` publishes, whatever this says);
    - hints accepted with one warning each (the official SDK requests them and libwebrtc may
      not apply them; receivers get the same media either way): ``red``, ``dtx`` (aiortc has
      neither, PROTOCOL-MAP §14, so the announcement always says ``disable_red`` and
      ``TF_NO_DTX``), a ``degradation_preference`` other than ``BALANCED``.

    ``simulcast`` defaults to True as in the official SDK (whose unset field means True): a
    source of at least 480 pixels is sent in two or three layers, a smaller one single-layer, and
    each layer costs an encoder in this process (dynacast pauses the unwatched ones). The official
    unset ``red``/``dtx`` mean True; here they default to False, which is what is sent.
    ``video_encoding`` and ``audio_encoding`` start as zero
    encodings (the default rates), so ``opts.video_encoding.max_bitrate = N`` works as with the
    official protobuf message.
    """

    # Present by default (zero = the encoder's default rate) so that the official protobuf
    # mutation style, ``opts.video_encoding.max_bitrate = N``, works and is checked on assignment.
    video_encoding: VideoEncoding = field(default_factory=VideoEncoding)
    audio_encoding: AudioEncoding = field(default_factory=AudioEncoding)
    video_codec: int = VideoCodec.VP8
    dtx: bool = False
    red: bool = False
    simulcast: bool = True
    source: int = TrackSource.SOURCE_UNKNOWN
    stream: str = ""
    preconnect_buffer: bool = False
    frame_metadata_features: list[int] = field(default_factory=list)
    scalability_mode: str = ""
    video_encoder: int = VideoEncoderBackend.ENCODER_BACKEND_AUTO
    degradation_preference: int = DegradationPreference.BALANCED

    def __setattr__(self, name: str, value: object) -> None:
        # As with the official protobuf message, None leaves a message field at its default
        # (``TrackPublishOptions(video_encoding=None).video_encoding`` is a zero encoding).
        if value is None and name == "video_encoding":
            value = VideoEncoding()
        elif value is None and name == "audio_encoding":
            value = AudioEncoding()
        _check_publish_option(name, value)
        super().__setattr__(name, value)


def _check_publish_option(name: str, value: object) -> None:
    feature = f"TrackPublishOptions.{name}"
    if name == "video_codec":
        try:
            codec = VideoCodec(value)  # type: ignore[arg-type]
        except ValueError:
            raise LocalProtocolError(f"{feature}: unknown codec {value!r}") from None
        if codec not in (VideoCodec.VP8, VideoCodec.H264):
            refuse(feature, f"aiortc can publish VP8 or H264 only, not {codec.name}")
    elif name == "frame_metadata_features":
        if value:
            refuse(feature, "lkproto sends no frame metadata (user timestamp, frame id)")
    elif name == "scalability_mode":
        if value not in _SINGLE_LAYER_MODES:
            refuse(feature, f"aiortc sends a single layer (L1T1), not {value!r}")
    elif name == "video_encoder":
        _check_encoder(feature, value)
    elif name == "degradation_preference":
        try:
            preference = DegradationPreference(value)  # type: ignore[arg-type]
        except ValueError:
            raise LocalProtocolError(f"{feature}: unknown preference {value!r}") from None
        if preference is not DegradationPreference.BALANCED:
            warn_once(feature, _HINTS[name])
    elif name in ("red", "dtx"):
        if value:
            warn_once(feature, _HINTS[name])
    elif name == "video_encoding":
        if value is not None and not isinstance(value, VideoEncoding):
            raise LocalProtocolError(f"{feature} must be a VideoEncoding, got {value!r}")
    elif name == "audio_encoding" and value is not None and not isinstance(value, AudioEncoding):
        raise LocalProtocolError(f"{feature} must be an AudioEncoding, got {value!r}")


# What aiortc encodes with (PROTOCOL-MAP §14): software encoders, or nothing for pre-encoded
# frames.
_SOFTWARE_BACKENDS: Final = frozenset(
    {
        VideoEncoderBackend.ENCODER_BACKEND_AUTO,
        VideoEncoderBackend.ENCODER_BACKEND_SOFTWARE,
        VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED,
    }
)


def _check_encoder(feature: str, value: object) -> None:
    try:
        backend = VideoEncoderBackend(value)  # type: ignore[arg-type]
    except ValueError:
        raise LocalProtocolError(f"{feature}: unknown encoder backend {value!r}") from None
    if backend not in _SOFTWARE_BACKENDS:
        refuse(feature, f"aiortc encodes in software (libvpx, libx264), not {backend.name}")


_HINTS: Final = {
    "degradation_preference": "aiortc's encoders neither drop frames nor scale to hold a bitrate",
    "red": "aiortc has no RED (redundant audio); announced with disable_red",
    "dtx": "aiortc's Opus sends continuously; announced with TF_NO_DTX",
}


class _MediaSource(Protocol):
    def _media_track(self) -> Any: ...


class Track:
    """What every track has: SID, name, kind, muted state."""

    def __init__(self, *, sid: str, name: str, kind: TrackKind) -> None:
        self._sid = sid
        self._name = name
        self._kind = kind
        self._muted = False
        self._stream_state = StreamState.STATE_ACTIVE

    @property
    def sid(self) -> str:
        return self._sid

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> TrackKind:
        return self._kind

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def stream_state(self) -> StreamState:
        return self._stream_state

    async def get_stats(self) -> list[RtcStats]:
        """WebRTC statistics of this track's RTP stream, as the official ``Track.get_stats``.

        A published track reports ``outbound_rtp``, ``remote_inbound_rtp`` (once the server sent
        a receiver report), ``codec`` and ``transport``; a subscribed one ``inbound_rtp``,
        ``remote_outbound_rtp``, ``codec`` and ``transport``. A track that carries no media (not
        published, unsubscribed) reports nothing. See :mod:`lkproto.rtc.stats`.
        """
        return await self._collect_stats()

    async def _collect_stats(self) -> list[RtcStats]:
        return []

    def _apply_muted(self, muted: bool) -> None:
        """Record the publication's muted state (the server's word, nothing is sent)."""
        self._muted = muted

    def _apply_stream_state(self, state: StreamState) -> None:
        self._stream_state = state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self._sid} name={self._name!r} muted={self._muted}>"


class LocalTrack(Track):
    """A track fed by a local source; gets its SID when published."""

    def __init__(self, *, name: str, kind: TrackKind, source: _MediaSource) -> None:
        super().__init__(sid="", name=name, kind=kind)
        self.source = source
        self._media = source._media_track()
        self._engine: Engine | None = None

    @property
    def cid(self) -> str:
        """The client track id: the msid track id in our SDP and ``AddTrackRequest.cid``."""
        return str(self._media.id)

    def mute(self) -> None:
        """Stop sending media and tell the server (``MuteTrackRequest``, PROTOCOL-MAP §9)."""
        self._set_muted(True)

    def unmute(self) -> None:
        """Resume sending media and tell the server (``MuteTrackRequest``, PROTOCOL-MAP §9)."""
        self._set_muted(False)

    def _set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self._engine is not None:
            try:
                self._engine.set_track_muted(self.cid, muted)
            except Exception as exc:  # not published any more: keep the local flag only
                _log.debug("= mute of an unpublished track: %s", exc)

    async def _collect_stats(self) -> list[RtcStats]:
        engine = self._engine
        sender = engine.published_sender(self.cid) if engine is not None else None
        publisher = engine.peer_connections()[0] if engine is not None else None
        if sender is None or publisher is None:
            return []
        from lkproto.rtc.stats import sender_stats  # first use, not at import (issue 18)

        return await sender_stats(publisher, sender)

    def _published(self, engine: Engine, info: pb.TrackInfo) -> None:
        self._engine = engine
        self._sid = info.sid

    def _unpublished(self) -> None:
        self._engine = None

    def _republished(self, info: pb.TrackInfo, media: Any) -> None:
        """A full reconnect published this track again under a new SID and aiortc track."""
        self._sid = info.sid
        self._media = media


class LocalAudioTrack(LocalTrack):
    """Official shape: ``LocalAudioTrack.create_audio_track(name, source)``."""

    @staticmethod
    def create_audio_track(name: str, source: _MediaSource) -> LocalAudioTrack:
        """A track named ``name`` carrying ``source``'s audio; publish it to send it."""
        return LocalAudioTrack(name=name, kind=TrackKind.KIND_AUDIO, source=source)


class LocalVideoTrack(LocalTrack):
    """Official shape: ``LocalVideoTrack.create_video_track(name, source)``."""

    @staticmethod
    def create_video_track(name: str, source: _MediaSource) -> LocalVideoTrack:
        """A track named ``name`` carrying ``source``'s video; publish it to send it."""
        return LocalVideoTrack(name=name, kind=TrackKind.KIND_VIDEO, source=source)


class RemoteTrack(Track):
    """A subscribed track; its decoded frames are read with AudioStream / VideoStream."""

    def __init__(self, *, sid: str, name: str, kind: TrackKind, fanout: FrameFanout) -> None:
        super().__init__(sid=sid, name=name, kind=kind)
        self._fanout = fanout
        # (peer connection, aiortc receiver) of the section it arrives on; set by the room.
        self._stats_source: tuple[PeerConnection, Any] | None = None

    def _bind_stats(self, pc: PeerConnection, receiver: Any) -> None:
        """Where :meth:`get_stats` reads from: the connection and aiortc receiver of the
        section this track arrives on (the room knows them from the subscription)."""
        self._stats_source = (pc, receiver)

    async def _collect_stats(self) -> list[RtcStats]:
        source = self._stats_source
        if source is None or self._fanout.closed:
            return []
        pc, receiver = source
        from lkproto.rtc.stats import receiver_stats  # first use, not at import (issue 18)

        return await receiver_stats(
            pc, receiver, track_sid=self.sid, frames_decoded=self._fanout.received
        )

    @property
    def frames_received(self) -> int:
        """Decoded frames received on this track's section so far (lkproto extra)."""
        return self._fanout.received


class RemoteAudioTrack(RemoteTrack):
    """Official shape: a subscribed audio track; read its frames with ``AudioStream``."""


class RemoteVideoTrack(RemoteTrack):
    """Official shape: a subscribed video track; read its frames with ``VideoStream``."""


AudioTrack: TypeAlias = LocalAudioTrack | RemoteAudioTrack
"""Official alias: any audio track, local or remote."""
VideoTrack: TypeAlias = LocalVideoTrack | RemoteVideoTrack
"""Official alias: any video track, local or remote."""
