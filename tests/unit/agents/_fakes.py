"""A fake Room for the asyncio glue of lkproto.agents: events, participants and text streams
driven by hand, no server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from lkproto.errors import LocalProtocolError
from lkproto.rtc import ConnectionState, RemoteParticipant, Room, TextStreamInfo
from lkproto.rtc.data_stream import StreamError
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.wire import pb


def remote(identity: str, *, agent: bool = False, **attributes: str) -> RemoteParticipant:
    kind = pb.ParticipantInfo.AGENT if agent else pb.ParticipantInfo.STANDARD
    info = pb.ParticipantInfo(
        sid=f"PA_{identity}",
        identity=identity,
        kind=kind,
        state=pb.ParticipantInfo.ACTIVE,
        attributes=attributes,
    )
    return RemoteParticipant(info)


def set_attributes(participant: RemoteParticipant, **attributes: str) -> None:
    info = pb.ParticipantInfo()
    info.CopyFrom(participant.info)
    info.attributes.clear()
    info.attributes.update(attributes)
    participant._update(info)


class FakeReader:
    """Enough of TextStreamReader for the fan-out: info, async iteration, close."""

    def __init__(
        self,
        stream_id: str,
        chunks: list[str],
        attributes: dict[str, str] | None = None,
        *,
        trailer: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        self.info = TextStreamInfo(
            stream_id=stream_id,
            mime_type="text/plain",
            topic="",
            timestamp=1234,
            size=0,
            attributes=dict(attributes or {}),
            attachments=[],
        )
        self._chunks = list(chunks)
        self._trailer = trailer or {}
        self._error = error
        self.gate: asyncio.Event | None = None
        self.closed = False

    def __aiter__(self) -> FakeReader:
        return self

    async def __anext__(self) -> str:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self._chunks:
            return self._chunks.pop(0)
        if self._error is not None:
            raise StreamError(self._error, stream_id=self.info.stream_id)
        assert self.info.attributes is not None
        self.info.attributes.update(self._trailer)
        raise StopAsyncIteration

    def close(self) -> None:
        self.closed = True


class FakeLocal:
    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.attributes: dict[str, str] = {}
        self.track_publications: dict[str, Any] = {}
        self.attribute_calls: list[dict[str, str]] = []
        self.sent: list[tuple[str, str]] = []

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attribute_calls.append(dict(attributes))

    async def send_text(self, text: str, *, topic: str = "", **_: Any) -> TextStreamInfo:
        self.sent.append((topic, text))
        return TextStreamInfo(
            stream_id="ST_sent",
            mime_type="text/plain",
            topic=topic,
            timestamp=99,
            size=len(text),
            attributes={},
            attachments=[],
        )


class FakeRoom(EventEmitter[Any]):
    def __init__(self, identity: str = "me") -> None:
        super().__init__()
        self.connection_state = ConnectionState.CONN_DISCONNECTED
        self.remote_participants: dict[str, RemoteParticipant] = {}
        self._local = FakeLocal(identity)
        self.text_handlers: dict[str, Any] = {}
        self.byte_handlers: dict[str, Any] = {}
        self.metadata = "room-meta"
        self.engine = None

    @property
    def local_participant(self) -> FakeLocal:
        if self.connection_state == ConnectionState.CONN_DISCONNECTED:
            raise LocalProtocolError("not connected")
        return self._local

    def as_room(self) -> Room:
        return cast("Room", self)

    # -- driving ----------------------------------------------------------------------------

    def connect(self) -> None:
        self.connection_state = ConnectionState.CONN_CONNECTED
        self.emit("connection_state_changed", ConnectionState.CONN_CONNECTED)
        self.emit("connected")

    def disconnect(self) -> None:
        self.connection_state = ConnectionState.CONN_DISCONNECTED
        self.remote_participants.clear()
        self.emit("connection_state_changed", ConnectionState.CONN_DISCONNECTED)
        self.emit("disconnected", 0)

    def join(self, participant: RemoteParticipant) -> None:
        self.remote_participants[participant.identity] = participant
        self.emit("participant_connected", participant)

    def leave(self, identity: str) -> None:
        participant = self.remote_participants.pop(identity)
        self.emit("participant_disconnected", participant)

    def change_attributes(self, participant: RemoteParticipant, **attributes: str) -> None:
        before = dict(participant.attributes)
        set_attributes(participant, **attributes)
        changed = {k: v for k, v in attributes.items() if before.get(k) != v}
        changed.update({k: "" for k in before if k not in attributes})
        self.emit("participant_attributes_changed", changed, participant)

    def stream(self, topic: str, reader: FakeReader, identity: str) -> None:
        self.text_handlers[topic](reader, identity)

    # -- Room API used by lkproto.agents -----------------------------------------------------

    def register_text_stream_handler(self, topic: str, handler: Any) -> None:
        if topic in self.text_handlers:
            raise ValueError(f"text stream handler for topic '{topic}' already set")
        self.text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self.text_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: Any) -> None:
        if topic in self.byte_handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self.byte_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self.byte_handlers.pop(topic, None)


async def settle(rounds: int = 20) -> None:
    """Let reader tasks run to completion (each chunk yields once)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
