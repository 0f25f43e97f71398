"""Public API shaped like the official ``livekit.rtc``: ``from lkproto import rtc``.

Requires the ``rtc`` extra (aiortc, PyAV, websockets).

Importing this module loads no WebRTC stack: aiortc, aioice, pyOpenSSL, cryptography and
websockets load when :meth:`Room.connect` first runs (:func:`lkproto.asyncio.peer.load_webrtc`).
Media names (frames, sources, streams, the mixer and resampler) are imported on first use (PEP
562 module ``__getattr__``), so a client that only joins and exchanges data never loads PyAV or
numpy (issue 18). The engine, its drivers and the core protocol machines are imported by the
first :meth:`Room.connect` too (``RpcInvocationData`` on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from lkproto import __version__
from lkproto.core.rpc import RpcError
from lkproto.errors import ConnectError, PublishDataError
from lkproto.rtc.data_stream import (
    ByteStreamHandler,
    ByteStreamInfo,
    ByteStreamReader,
    ByteStreamWriter,
    StreamError,
    TextStreamHandler,
    TextStreamInfo,
    TextStreamReader,
    TextStreamWriter,
)
from lkproto.rtc.data_track import (
    DataTrackFrame,
    DataTrackInfo,
    DataTrackStream,
    LocalDataTrack,
    PushFrameError,
    RemoteDataTrack,
    SubscribeDataTrackError,
)
from lkproto.rtc.e2ee import (
    E2EEManager,
    E2EEOptions,
    EncryptionState,
    EncryptionType,
    FrameCryptor,
    KeyDerivationFunction,
    KeyProvider,
    KeyProviderOptions,
)
from lkproto.rtc.encoded import (
    DegradationPreference,
    EncodedFrameType,
    EncodedRateControl,
    EncodedVideoFrame,
    EncodedVideoSourceFeedback,
    FrameMetadata,
    FrameMetadataFeature,
    VideoEncoderBackend,
)
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.rtc.frame_processor import FrameProcessor
from lkproto.rtc.native import (
    AudioDeviceInfo,
    AudioFilter,
    AudioProcessingModule,
    MediaDevices,
    NoiseCancellationOptions,
    PlatformAudio,
    PlatformAudioError,
    PlatformAudioOptions,
    PlatformAudioSource,
)
from lkproto.rtc.participant import (
    ConnectionQuality,
    DisconnectReason,
    LocalParticipant,
    LocalTrackPublication,
    Participant,
    ParticipantKind,
    ParticipantKindDetail,
    ParticipantState,
    ParticipantTrackPermission,
    RemoteParticipant,
    RemoteTrackPublication,
    TrackPublication,
    VideoQuality,
)
from lkproto.rtc.room import (
    ChatMessage,
    ConnectionState,
    ContinualGatheringPolicy,
    DataPacket,
    DataPacketKind,
    DataStreamOptions,
    IceServer,
    IceTransportType,
    Room,
    RoomOptions,
    RtcConfiguration,
    RtcStats,
    SimulateScenarioKind,
    SipDTMF,
    TranscriptionSegment,
)
from lkproto.rtc.rpc_interceptor import RpcCallInfo, RpcInterceptor
from lkproto.rtc.track import (
    AudioEncoding,
    AudioTrack,
    LocalAudioTrack,
    LocalTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteTrack,
    RemoteVideoTrack,
    StreamState,
    Track,
    TrackKind,
    TrackPublishOptions,
    TrackSource,
    VideoCodec,
    VideoEncoding,
    VideoTrack,
)
from lkproto.rtc.transcription import Transcription

if TYPE_CHECKING:
    from lkproto.asyncio.rpc import RpcInvocationData
    from lkproto.rtc import events, stats
    from lkproto.rtc.audio_frame import AudioFrame
    from lkproto.rtc.audio_mixer import AudioMixer
    from lkproto.rtc.audio_resampler import AudioResampler, AudioResamplerQuality
    from lkproto.rtc.audio_source import AudioSource
    from lkproto.rtc.audio_stream import AudioFrameEvent, AudioStream
    from lkproto.rtc.av_sync import AVSynchronizer
    from lkproto.rtc.utils import combine_audio_frames
    from lkproto.rtc.video_frame import VideoBufferType, VideoFrame, VideoRotation
    from lkproto.rtc.video_source import EncodedVideoSource, VideoSource
    from lkproto.rtc.video_stream import VideoFrameEvent, VideoStream

__all__ = [
    "AVSynchronizer",
    "AudioDeviceInfo",
    "AudioEncoding",
    "AudioFilter",
    "AudioFrame",
    "AudioFrameEvent",
    "AudioMixer",
    "AudioProcessingModule",
    "AudioResampler",
    "AudioResamplerQuality",
    "AudioSource",
    "AudioStream",
    "AudioTrack",
    "ByteStreamHandler",
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "ChatMessage",
    "ConnectError",
    "ConnectionQuality",
    "ConnectionState",
    "ContinualGatheringPolicy",
    "DataPacket",
    "DataPacketKind",
    "DataStreamOptions",
    "DataTrackFrame",
    "DataTrackInfo",
    "DataTrackStream",
    "DegradationPreference",
    "DisconnectReason",
    "E2EEManager",
    "E2EEOptions",
    "EncodedFrameType",
    "EncodedRateControl",
    "EncodedVideoFrame",
    "EncodedVideoSource",
    "EncodedVideoSourceFeedback",
    "EncryptionState",
    "EncryptionType",
    "EventEmitter",
    "FrameCryptor",
    "FrameMetadata",
    "FrameMetadataFeature",
    "FrameProcessor",
    "IceServer",
    "IceTransportType",
    "KeyDerivationFunction",
    "KeyProvider",
    "KeyProviderOptions",
    "LocalAudioTrack",
    "LocalDataTrack",
    "LocalParticipant",
    "LocalTrack",
    "LocalTrackPublication",
    "LocalVideoTrack",
    "MediaDevices",
    "NoiseCancellationOptions",
    "Participant",
    "ParticipantKind",
    "ParticipantKindDetail",
    "ParticipantState",
    "ParticipantTrackPermission",
    "PlatformAudio",
    "PlatformAudioError",
    "PlatformAudioOptions",
    "PlatformAudioSource",
    "PublishDataError",
    "PushFrameError",
    "RemoteAudioTrack",
    "RemoteDataTrack",
    "RemoteParticipant",
    "RemoteTrack",
    "RemoteTrackPublication",
    "RemoteVideoTrack",
    "Room",
    "RoomOptions",
    "RpcCallInfo",
    "RpcError",
    "RpcInterceptor",
    "RpcInvocationData",
    "RtcConfiguration",
    "RtcStats",
    "SimulateScenarioKind",
    "SipDTMF",
    "StreamError",
    "StreamState",
    "SubscribeDataTrackError",
    "TextStreamHandler",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
    "Track",
    "TrackKind",
    "TrackPublication",
    "TrackPublishOptions",
    "TrackSource",
    "Transcription",
    "TranscriptionSegment",
    "VideoBufferType",
    "VideoCodec",
    "VideoEncoderBackend",
    "VideoEncoding",
    "VideoFrame",
    "VideoFrameEvent",
    "VideoQuality",
    "VideoRotation",
    "VideoSource",
    "VideoStream",
    "VideoTrack",
    "__version__",
    "combine_audio_frames",
    "events",
    "stats",
]


# Name -> defining module, for the names imported on first use (see the module docstring).
_LAZY: Final[dict[str, str]] = {
    "AudioFrame": "lkproto.rtc.audio_frame",
    "AudioFrameEvent": "lkproto.rtc.audio_stream",
    "AudioMixer": "lkproto.rtc.audio_mixer",
    "AudioResampler": "lkproto.rtc.audio_resampler",
    "AudioResamplerQuality": "lkproto.rtc.audio_resampler",
    "AudioSource": "lkproto.rtc.audio_source",
    "AudioStream": "lkproto.rtc.audio_stream",
    "AVSynchronizer": "lkproto.rtc.av_sync",
    "EncodedVideoSource": "lkproto.rtc.video_source",
    "VideoBufferType": "lkproto.rtc.video_frame",
    "VideoFrame": "lkproto.rtc.video_frame",
    "VideoFrameEvent": "lkproto.rtc.video_stream",
    "VideoRotation": "lkproto.rtc.video_frame",
    "VideoSource": "lkproto.rtc.video_source",
    "VideoStream": "lkproto.rtc.video_stream",
    "combine_audio_frames": "lkproto.rtc.utils",
    # The RPC driver and the stream machines it uses load with the first connect (issue 18).
    "RpcInvocationData": "lkproto.asyncio.rpc",
}


# Submodules imported on first use: ``rtc.events`` (the typed event classes) and ``rtc.stats``
# load when a room first dispatches or reads statistics, or when the caller names them (issue 18).
_LAZY_SUBMODULES: Final = frozenset({"events", "stats"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _LAZY_SUBMODULES)
