"""The official pre-encoded video names (``livekit.rtc`` ``encoded_video.py``) on lkproto.

:class:`~lkproto.rtc.EncodedVideoSource` takes the official call shape as well as its own:
``EncodedVideoSource(width, height)``, then ``capture_frame(EncodedVideoFrame(...))`` and
``take_feedback()``. What aiortc can honour is honoured, the rest refused:

- frames (VP8, or H.264 as Annex B) are sent without re-encoding; the first frame's codec, or
  the publication's ``video_codec``, fixes the source's codec; another codec is refused;
- ``take_feedback().keyframe_requested`` reports every keyframe request since the last call:
  the server's PLI/FIR, a new subscriber's sender, and lkproto's own (after an overflow);
- ``take_feedback().rate_control`` is always None: aiortc computes no send-side bandwidth
  estimate (no transport-wide congestion control), so there is no target to forward;
- :class:`FrameMetadata` on a frame is refused (lkproto sends no frame metadata trailer), as
  is any :class:`FrameMetadataFeature` in ``TrackPublishOptions``.

The enums have the official names and numbers (protobuf enum values there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from lkproto.errors import UnsupportedFeatureError
from lkproto.rtc._enum import ProtoEnum

__all__ = [
    "DegradationPreference",
    "EncodedFrameType",
    "EncodedRateControl",
    "EncodedVideoFrame",
    "EncodedVideoSourceFeedback",
    "FrameMetadata",
    "FrameMetadataFeature",
    "VideoEncoderBackend",
    "codec_name",
]


class EncodedFrameType(ProtoEnum):
    """Whether an encoded frame decodes on its own (official ``EncodedFrameType``)."""

    ENCODED_FRAME_KEY = 0
    ENCODED_FRAME_DELTA = 1


class VideoEncoderBackend(ProtoEnum):
    """The official encoder choice (``TrackPublishOptions.video_encoder``).

    aiortc encodes in software (libvpx, libx264 through PyAV): ``AUTO`` and ``SOFTWARE`` both
    mean that, ``PRE_ENCODED`` is what an :class:`~lkproto.rtc.EncodedVideoSource` publishes,
    and the hardware backends are refused.
    """

    ENCODER_BACKEND_AUTO = 0
    ENCODER_BACKEND_SOFTWARE = 1
    ENCODER_BACKEND_HARDWARE = 2
    ENCODER_BACKEND_NVENC = 3
    ENCODER_BACKEND_VAAPI = 4
    ENCODER_BACKEND_VIDEOTOOLBOX = 5
    ENCODER_BACKEND_PRE_ENCODED = 6


class DegradationPreference(enum.IntEnum):
    """The official encoder degradation choice (a Python ``IntEnum`` there too).

    A hint here: aiortc's encoders neither drop frames nor scale down to hold a bitrate.
    """

    BALANCED = 0
    MAINTAIN_FRAMERATE = 1
    MAINTAIN_RESOLUTION = 2
    MAINTAIN_FRAMERATE_AND_RESOLUTION = 4


class FrameMetadataFeature(ProtoEnum):
    """Official per-frame metadata kinds; lkproto sends none (refused where asked for)."""

    FMF_USER_TIMESTAMP = 0
    FMF_FRAME_ID = 1
    FMF_USER_DATA = 2


@dataclass(frozen=True, kw_only=True)
class FrameMetadata:
    """Official per-frame metadata (a protobuf message there); refused by ``capture_frame``.

    Attributes:
        user_timestamp: the producer's timestamp.
        frame_id: the producer's frame number.
        user_data: opaque bytes.
    """

    user_timestamp: int = 0
    frame_id: int = 0
    user_data: bytes = b""


# Official VideoCodec numbers (VP8 0, H264 1) -> lkproto's codec names; aiortc packetizes these
# two only (PROTOCOL-MAP §14).
_CODEC_NAMES: Final[dict[int, str]] = {0: "vp8", 1: "h264"}


def codec_name(codec: int) -> str:
    """lkproto's name (``"vp8"``/``"h264"``) of an official ``VideoCodec`` number.

    Raises:
        UnsupportedFeatureError: a codec aiortc cannot packetize (AV1, VP9, H265).
    """
    name = _CODEC_NAMES.get(int(codec))
    if name is None:
        raise UnsupportedFeatureError(
            "EncodedVideoFrame.codec", f"aiortc sends VP8 or H264 only, not codec {codec}"
        )
    return name


@dataclass(frozen=True)
class EncodedVideoFrame:
    """One complete encoded frame (one access unit), the official shape.

    Attributes:
        data: the frame: VP8, or H.264 as an Annex-B byte stream (no container, no RTP).
        width: its width in pixels.
        height: its height in pixels.
        codec: an official ``VideoCodec`` number (``rtc.VideoCodec.VP8`` or ``H264``).
        frame_type: :class:`EncodedFrameType`.
        timestamp_us: its capture time in microseconds, increasing along the stream.
        metadata: must be None (lkproto sends no frame metadata).

    Raises:
        TypeError: ``data`` is not ``bytes``.
        ValueError: empty ``data`` or a size that is not positive.
    """

    data: bytes
    width: int
    height: int
    codec: int
    frame_type: int
    timestamp_us: int
    metadata: FrameMetadata | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise TypeError("encoded frame data must be bytes")
        if not self.data:
            raise ValueError("encoded frame data must not be empty")
        if self.width <= 0 or self.height <= 0:
            raise ValueError("encoded frame dimensions must be positive")


@dataclass(frozen=True)
class EncodedRateControl:
    """A bitrate and frame-rate target for the upstream encoder (never produced by lkproto).

    Attributes:
        target_bitrate_bps: bits per second.
        framerate_fps: frames per second.
    """

    target_bitrate_bps: int
    framerate_fps: float


@dataclass(frozen=True)
class EncodedVideoSourceFeedback:
    """What ``EncodedVideoSource.take_feedback`` returns.

    Attributes:
        keyframe_requested: a keyframe was asked for since the previous call: send one soon.
        rate_control: always None here (no send-side bandwidth estimate in aiortc).
    """

    keyframe_requested: bool
    rate_control: EncodedRateControl | None
