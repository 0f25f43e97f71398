"""Official ``Transcription``: what :meth:`LocalParticipant.publish_transcription` sends.

The segments are :class:`~lkproto.rtc.room.TranscriptionSegment`, the type the
``transcription_received`` event already carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lkproto.rtc.room import TranscriptionSegment

__all__ = ["Transcription"]


@dataclass
class Transcription:
    """A legacy transcription packet (``DataPacket.transcription``, PROTOCOL-MAP §4).

    Attributes:
        participant_identity: whose speech the text transcribes.
        track_sid: the transcribed track's sid.
        segments: the text, in segments with ids (a receiver replaces a segment by id).
    """

    participant_identity: str
    track_sid: str
    segments: list[TranscriptionSegment]
