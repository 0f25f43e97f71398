"""Agent conventions over :mod:`lkproto.rtc`: ``from lkproto import agents``.

PROTOCOL-MAP §8. The frontend side follows an agent through :class:`AgentSession` (derived
:class:`AgentState`, merged ``lk.transcription`` transcript, ``lk.chat`` chat, pre-connect audio
buffer); the agent side announces itself with :class:`AgentPresence`, publishes transcripts with
:class:`TranscriptionPublisher` and reads chat and pre-connect audio with :func:`on_chat` and
:func:`on_preconnect_audio`. :class:`SharedState` keeps JSON key-value state in participant
attributes. The rules live in the sans-I/O machines :mod:`lkproto.core.agent` and
:mod:`lkproto.core.transcript`; this package is their asyncio driver.

Exceptions (all :class:`~lkproto.errors.LkError`)::

    AgentSessionError           AgentSession.wait_for / start_preconnect_buffer misuse
    ├── AgentSessionFailedError     the state became ``failed`` (``.reasons``)
    └── AgentSessionClosedError     the room disconnected or the session was closed
    PreconnectBufferError       the pre-connect buffer could not be delivered
"""

from __future__ import annotations

from lkproto.agents.agent import (
    AgentPresence,
    TranscriptionPublisher,
    TranscriptionWriter,
    find_microphone_track_sid,
    new_segment_id,
)
from lkproto.agents.chat import ChatMessage, TextListener, listen_text, on_chat, send_chat
from lkproto.agents.preconnect import (
    PreconnectBuffer,
    PreconnectBufferError,
    PreconnectFrames,
    decode_preconnect_audio,
    on_preconnect_audio,
)
from lkproto.agents.session import (
    AgentSession,
    AgentSessionClosedError,
    AgentSessionError,
    AgentSessionFailedError,
    TranscriptSegment,
)
from lkproto.agents.state import JsonValue, SharedState
from lkproto.core.agent import (
    ATTR_AGENT_NAME,
    ATTR_AGENT_STATE,
    ATTR_PUBLISH_ON_BEHALF,
    ATTR_SEGMENT_ID,
    ATTR_TRANSCRIBED_TRACK_ID,
    ATTR_TRANSCRIPTION_FINAL,
    DEFAULT_AGENT_CONNECT_TIMEOUT_S,
    TOPIC_CHAT,
    TOPIC_PRECONNECT_AUDIO,
    TOPIC_TRANSCRIPTION,
    AgentState,
)

__all__ = [
    "ATTR_AGENT_NAME",
    "ATTR_AGENT_STATE",
    "ATTR_PUBLISH_ON_BEHALF",
    "ATTR_SEGMENT_ID",
    "ATTR_TRANSCRIBED_TRACK_ID",
    "ATTR_TRANSCRIPTION_FINAL",
    "DEFAULT_AGENT_CONNECT_TIMEOUT_S",
    "TOPIC_CHAT",
    "TOPIC_PRECONNECT_AUDIO",
    "TOPIC_TRANSCRIPTION",
    "AgentPresence",
    "AgentSession",
    "AgentSessionClosedError",
    "AgentSessionError",
    "AgentSessionFailedError",
    "AgentState",
    "ChatMessage",
    "JsonValue",
    "PreconnectBuffer",
    "PreconnectBufferError",
    "PreconnectFrames",
    "SharedState",
    "TextListener",
    "TranscriptSegment",
    "TranscriptionPublisher",
    "TranscriptionWriter",
    "decode_preconnect_audio",
    "find_microphone_track_sid",
    "listen_text",
    "new_segment_id",
    "on_chat",
    "on_preconnect_audio",
    "send_chat",
]
