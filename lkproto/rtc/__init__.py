"""Public API shaped like the official ``livekit.rtc``: ``from lkproto import rtc``.

Requires the ``rtc`` extra (aiortc, PyAV, websockets).
"""

from __future__ import annotations

from lkproto.rtc import events
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.rtc.participant import (
    ConnectionQuality,
    DisconnectReason,
    LocalParticipant,
    Participant,
    ParticipantKind,
    ParticipantState,
    RemoteParticipant,
    TrackPublication,
)
from lkproto.rtc.room import (
    ConnectionState,
    DataPacket,
    DataPacketKind,
    Room,
    RoomOptions,
    RtcConfiguration,
    SimulateScenarioKind,
)

__all__ = [
    "ConnectionQuality",
    "ConnectionState",
    "DataPacket",
    "DataPacketKind",
    "DisconnectReason",
    "EventEmitter",
    "LocalParticipant",
    "Participant",
    "ParticipantKind",
    "ParticipantState",
    "RemoteParticipant",
    "Room",
    "RoomOptions",
    "RtcConfiguration",
    "SimulateScenarioKind",
    "TrackPublication",
    "events",
]
