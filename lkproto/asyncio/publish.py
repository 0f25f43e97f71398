"""Preparing aiortc's sender of a published track before its first frame.

The decision of *what* to announce lives in :mod:`lkproto.core.publish`; this module applies the
same :class:`~lkproto.core.publish.TrackDescription` to the media side: our Opus encoder for audio
(mono sources as mono, at the asked or default bitrate), the asked start bitrate for a video
encoder, or the keyframe hook of a pre-encoded source. The engine calls :func:`prepare_sender`
each time it attaches a track to a sender (first publish, and again after a full reconnect).
"""

from __future__ import annotations

from typing import Any

from lkproto.asyncio.audio import DEFAULT_OPUS_BITRATE, install_opus_encoder
from lkproto.asyncio.video import install_video_encoder
from lkproto.core.publish import TrackDescription

__all__ = ["prepare_sender"]


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
        bitrate=description.max_bitrate_bps or DEFAULT_OPUS_BITRATE,
    )
