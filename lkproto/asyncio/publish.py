"""Preparing aiortc's sender of a published track before its first frame.

The decision of *what* to announce lives in :mod:`lkproto.core.publish`; this module applies the
same :class:`~lkproto.core.publish.TrackDescription` to the media side: our Opus encoder for audio
(mono sources as mono, at the asked or default bitrate), the asked start bitrate for a video
encoder, or the keyframe hook of a pre-encoded source. The engine calls :func:`prepare_sender`
each time it attaches a track to a sender (first publish, and again after a full reconnect).
"""

from __future__ import annotations

from typing import Any

from lkproto.core.publish import TrackDescription

__all__ = ["install_opus_encoder", "install_video_encoder", "prepare_sender"]

# The media drivers are imported on first use, not at the top: the engine imports this module,
# and lkproto.asyncio.audio/video load PyAV, which a data-only client never needs (issue 18).


def install_opus_encoder(sender: Any, *, channels: int, bitrate: int) -> None:
    """:func:`lkproto.asyncio.audio.install_opus_encoder`, imported on first use."""
    from lkproto.asyncio import audio

    audio.install_opus_encoder(sender, channels=channels, bitrate=bitrate)


def install_video_encoder(sender: Any, *, mime_type: str, bitrate: int) -> None:
    """:func:`lkproto.asyncio.video.install_video_encoder`, imported on first use."""
    from lkproto.asyncio import video

    video.install_video_encoder(sender, mime_type=mime_type, bitrate=bitrate)


def _default_opus_bitrate() -> int:
    from lkproto.asyncio.audio import DEFAULT_OPUS_BITRATE

    return DEFAULT_OPUS_BITRATE


def prepare_sender(sender: Any, description: TrackDescription) -> None:
    """Set up aiortc's ``RTCRtpSender`` for ``description`` before it sends anything.

    Args:
        sender: the sender of the track's transceiver.
        description: what was announced for the track; ``max_bitrate_bps`` is the Opus bitrate
            for audio (0: :data:`~lkproto.asyncio.audio.DEFAULT_OPUS_BITRATE`) and the encoder's
            start bitrate for video (0: aiortc's own).
    """
    if description.kind == "video":
        # A pre-encoded source hears the server's keyframe requests through its sender; it has
        # no encoder to configure.
        bind_sender = getattr(getattr(sender, "track", None), "bind_sender", None)
        if bind_sender is not None:
            bind_sender(sender)
        elif description.max_bitrate_bps:
            install_video_encoder(
                sender, mime_type=description.mime_type, bitrate=description.max_bitrate_bps
            )
        return
    install_opus_encoder(
        sender,
        channels=2 if description.stereo else 1,
        bitrate=description.max_bitrate_bps or _default_opus_bitrate(),
    )
