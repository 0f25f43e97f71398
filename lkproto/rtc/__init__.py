"""Public API shaped like the official ``livekit.rtc``: ``from lkproto import rtc``.

Requires the ``rtc`` extra (aiortc, PyAV, websockets).
"""

from __future__ import annotations

from lkproto.asyncio.rpc import RpcInvocationData
from lkproto.core.rpc import RpcError
from lkproto.errors import PublishDataError
from lkproto.rtc import events
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
    ChatMessage,
    ConnectionState,
    DataPacket,
    DataPacketKind,
    DataStreamOptions,
    Room,
    RoomOptions,
    RtcConfiguration,
    SimulateScenarioKind,
    SipDTMF,
    TranscriptionSegment,
)

__all__ = [
    "ByteStreamHandler",
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "ChatMessage",
    "ConnectionQuality",
    "ConnectionState",
    "DataPacket",
    "DataPacketKind",
    "DataStreamOptions",
    "DisconnectReason",
    "EventEmitter",
    "LocalParticipant",
    "Participant",
    "ParticipantKind",
    "ParticipantState",
    "PublishDataError",
    "RemoteParticipant",
    "Room",
    "RoomOptions",
    "RpcError",
    "RpcInvocationData",
    "RtcConfiguration",
    "SimulateScenarioKind",
    "SipDTMF",
    "StreamError",
    "TextStreamHandler",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
    "TrackPublication",
    "TranscriptionSegment",
    "events",
]
