"""Participants, shaped like the official Participant, LocalParticipant and RemoteParticipant.

A participant object is a live view: the room replaces its ``ParticipantInfo`` snapshot whenever the
server sends a newer one (PROTOCOL-MAP §7 ParticipantUpdate), so properties always read the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import mimetypes
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from lkproto.asyncio.streams import StreamSender, StreamSendError, recipients_form
from lkproto.core import streams as cs
from lkproto.core.rpc import RPC_DEFAULT_RESPONSE_TIMEOUT_S
from lkproto.errors import ConnectError, LocalProtocolError, PublishDataError
from lkproto.rtc.data_stream import (
    ByteStreamInfo,
    ByteStreamWriter,
    StreamError,
    TextStreamInfo,
    TextStreamWriter,
    _now_ms,
)
from lkproto.wire import pb
from lkproto.wire.streams import STREAM_CHUNK_SIZE_BYTES

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.rpc import RpcDriver, RpcHandler

__all__ = [
    "ConnectionQuality",
    "DisconnectReason",
    "LocalParticipant",
    "Participant",
    "ParticipantKind",
    "ParticipantState",
    "RemoteParticipant",
    "TrackPublication",
]


class ParticipantKind(enum.IntEnum):
    """The official SDK's numbering (differs from the wire's for CONNECTOR and BRIDGE)."""

    PARTICIPANT_KIND_STANDARD = 0
    PARTICIPANT_KIND_INGRESS = 1
    PARTICIPANT_KIND_EGRESS = 2
    PARTICIPANT_KIND_SIP = 3
    PARTICIPANT_KIND_AGENT = 4
    PARTICIPANT_KIND_CONNECTOR = 5
    PARTICIPANT_KIND_BRIDGE = 6


# ParticipantInfo.Kind on the wire (PROTOCOL-MAP §7 Kind) -> the official SDK's ParticipantKind.
_KIND_FROM_WIRE: Mapping[int, ParticipantKind] = {
    pb.ParticipantInfo.STANDARD: ParticipantKind.PARTICIPANT_KIND_STANDARD,
    pb.ParticipantInfo.INGRESS: ParticipantKind.PARTICIPANT_KIND_INGRESS,
    pb.ParticipantInfo.EGRESS: ParticipantKind.PARTICIPANT_KIND_EGRESS,
    pb.ParticipantInfo.SIP: ParticipantKind.PARTICIPANT_KIND_SIP,
    pb.ParticipantInfo.AGENT: ParticipantKind.PARTICIPANT_KIND_AGENT,
    pb.ParticipantInfo.CONNECTOR: ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    pb.ParticipantInfo.BRIDGE: ParticipantKind.PARTICIPANT_KIND_BRIDGE,
}


class ParticipantState(enum.IntEnum):
    """``ParticipantInfo.State`` (same numbers in the official SDK)."""

    PARTICIPANT_STATE_JOINING = 0
    PARTICIPANT_STATE_JOINED = 1
    PARTICIPANT_STATE_ACTIVE = 2
    PARTICIPANT_STATE_DISCONNECTED = 3


class DisconnectReason(enum.IntEnum):
    """Why a participant left (wire ``DisconnectReason``, same numbers in the official SDK)."""

    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    DUPLICATE_IDENTITY = 2
    SERVER_SHUTDOWN = 3
    PARTICIPANT_REMOVED = 4
    ROOM_DELETED = 5
    STATE_MISMATCH = 6
    JOIN_FAILURE = 7
    MIGRATION = 8
    SIGNAL_CLOSE = 9
    ROOM_CLOSED = 10
    USER_UNAVAILABLE = 11
    USER_REJECTED = 12
    SIP_TRUNK_FAILURE = 13
    CONNECTION_TIMEOUT = 14
    MEDIA_FAILURE = 15
    AGENT_ERROR = 16


class ConnectionQuality(enum.IntEnum):
    """Official ``ConnectionQuality`` values (QUALITY_*), same order as the wire's."""

    QUALITY_UNKNOWN = -1
    QUALITY_POOR = 0
    QUALITY_GOOD = 1
    QUALITY_EXCELLENT = 2
    QUALITY_LOST = 3


def disconnect_reason(value: int) -> DisconnectReason | int:
    """The enum member, or the raw number for reasons newer than this SDK."""
    try:
        return DisconnectReason(value)
    except ValueError:
        return value


class TrackPublication:
    """A published track as the server describes it (``TrackInfo``)."""

    def __init__(self, info: pb.TrackInfo) -> None:
        self._info = info

    def _update(self, info: pb.TrackInfo) -> None:
        self._info = info

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def kind(self) -> int:
        """``TrackType``-like: 0 unknown... (wire TrackType: AUDIO 0, VIDEO 1, DATA 2)."""
        return self._info.type

    @property
    def source(self) -> int:
        return self._info.source

    @property
    def mime_type(self) -> str:
        return self._info.mime_type

    @property
    def muted(self) -> bool:
        return self._info.muted

    @property
    def width(self) -> int:
        return self._info.width

    @property
    def height(self) -> int:
        return self._info.height

    @property
    def info(self) -> pb.TrackInfo:
        """The raw ``TrackInfo`` (for conformance users)."""
        return self._info

    def __repr__(self) -> str:
        return f"<TrackPublication sid={self.sid} name={self.name!r} muted={self.muted}>"


class Participant:
    """Common view of a participant."""

    def __init__(self, info: pb.ParticipantInfo) -> None:
        self._info = info
        self._publications: dict[str, TrackPublication] = {}
        self._connection_quality = ConnectionQuality.QUALITY_UNKNOWN
        self._sync_publications()

    def _update(self, info: pb.ParticipantInfo) -> None:
        self._info = info
        self._sync_publications()

    def _sync_publications(self) -> None:
        current = {t.sid: t for t in self._info.tracks}
        for sid in list(self._publications):
            if sid not in current:
                del self._publications[sid]
        for sid, track in current.items():
            pub = self._publications.get(sid)
            if pub is None:
                self._publications[sid] = TrackPublication(track)
            else:
                pub._update(track)

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def identity(self) -> str:
        return self._info.identity

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._info.attributes)

    @property
    def kind(self) -> ParticipantKind:
        return _KIND_FROM_WIRE.get(self._info.kind, ParticipantKind.PARTICIPANT_KIND_STANDARD)

    @property
    def kind_details(self) -> list[int]:
        return list(self._info.kind_details)

    @property
    def state(self) -> int:
        return self._info.state

    @property
    def joined_at(self) -> datetime.datetime | None:
        ms = self._info.joined_at_ms or self._info.joined_at * 1000
        if not ms:
            return None
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)

    @property
    def permissions(self) -> pb.ParticipantPermission:
        return self._info.permission

    @property
    def connection_quality(self) -> ConnectionQuality:
        return self._connection_quality

    @property
    def disconnect_reason(self) -> DisconnectReason | int | None:
        if self._info.state != pb.ParticipantInfo.DISCONNECTED:
            return None
        return disconnect_reason(self._info.disconnect_reason)

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        return dict(self._publications)

    @property
    def info(self) -> pb.ParticipantInfo:
        """The latest raw ``ParticipantInfo`` snapshot (for conformance users)."""
        return self._info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self.sid} identity={self.identity!r}>"


class RemoteParticipant(Participant):
    """Another participant in the room."""


_F = TypeVar("_F", bound="RpcHandler")


class LocalParticipant(Participant):
    """This client's participant."""

    def __init__(self, info: pb.ParticipantInfo, engine: Engine, rpc: RpcDriver) -> None:
        super().__init__(info)
        self._engine = engine
        self._rpc = rpc

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: Sequence[str] = (),
        topic: str = "",
    ) -> None:
        """Send a user packet to everyone else, or only to ``destination_identities``.

        Reliable packets are ordered, sequenced and resent across a signal resume; lossy ones may
        be dropped (also locally, when the lossy queue is full). Waits while the reliable queue is
        full or a reconnect is in progress.

        Raises:
            PublishDataError: the packet would exceed 64 000 bytes (PROTOCOL-MAP §3), or the room
                is not connected.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        user = pb.UserPacket(payload=data)
        if topic:
            user.topic = topic
        packet = pb.DataPacket(
            kind=pb.DataPacket.RELIABLE if reliable else pb.DataPacket.LOSSY,
            user=user,
            destination_identities=list(destination_identities),
        )
        await self._publish(packet, reliable=reliable)

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        """Send a SIP DTMF tone (reliable), as the official SDK does."""
        await self._publish(
            pb.DataPacket(sip_dtmf=pb.SipDTMF(code=code, digit=digit)), reliable=True
        )

    async def _publish(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        try:
            await self._engine.send_data(packet, reliable=reliable)
        except PublishDataError:
            raise
        except LocalProtocolError as exc:
            raise PublishDataError(str(exc)) from exc
        except ConnectError as exc:
            raise PublishDataError(f"cannot publish data: {exc}") from exc

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
    ) -> str:
        """Call ``method`` on another participant and return its response (RPC v1).

        Raises:
            RpcError: with the built-in codes (1400-1505) or the callee's own error.
        """
        timeout = RPC_DEFAULT_RESPONSE_TIMEOUT_S if response_timeout is None else response_timeout
        return await self._rpc.perform(destination_identity, method, payload, timeout)

    def register_rpc_method(
        self, method_name: str, handler: RpcHandler | None = None
    ) -> Callable[[_F], _F] | None:
        """Register a method handler, directly or as a decorator (``@lp.register_rpc_method("m")``).

        The handler gets an ``RpcInvocationData`` and returns the response string (sync or async).
        Raising ``RpcError`` sends that error; any other exception becomes APPLICATION_ERROR.
        """
        if handler is not None:
            self._rpc.register(method_name, handler)
            return None

        def decorator(func: _F) -> _F:
            self._rpc.register(method_name, func)
            return func

        return decorator

    def unregister_rpc_method(self, method: str) -> None:
        """Remove a method handler."""
        self._rpc.unregister(method)

    async def set_metadata(self, metadata: str) -> None:
        """Change own metadata; returns once the server accepted it.

        Needs the ``canUpdateOwnMetadata`` grant (PROTOCOL-MAP §7).

        Raises:
            RequestRejectedError: refused (e.g. ``NOT_ALLOWED``) or not answered in time.
        """
        await self._engine.update_metadata(metadata=metadata)

    async def set_name(self, name: str) -> None:
        """Change own display name (same rules as :meth:`set_metadata`)."""
        await self._engine.update_metadata(name=name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set, change or (with ``""``) delete attributes; keys not given stay as they are."""
        await self._engine.update_metadata(attributes=attributes)

    # -- data streams (PROTOCOL-MAP §5) --------------------------------------------------------

    def _form(self, destination_identities: Sequence[str] | None, compress: bool) -> cs.StreamForm:
        form = recipients_form(self._engine.roster.remotes.values(), destination_identities or ())
        return cs.StreamForm(form.inline_allowed, form.compression_allowed and compress)

    async def _run(self, sender: StreamSender, coro_label: str, send: _SendFn) -> None:
        try:
            await send(sender)
        except BaseException as exc:
            # Tell receivers the stream is over (best effort, bounded), then report.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.shield(
                    asyncio.wait_for(sender.abort(f"{type(exc).__name__}"), _ABORT_TIMEOUT_S)
                )
            if isinstance(exc, StreamSendError | LocalProtocolError):
                raise StreamError(
                    f"{coro_label}: {exc}", stream_id=sender.stream.stream_id
                ) from exc
            raise

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        reply_to_id: str | None = None,
        compress: bool = True,
        stream_id: str | None = None,
        attachments: Sequence[str] = (),
    ) -> TextStreamInfo:
        """Send ``text`` as one text stream (single packet / compressed where every recipient
        supports it, PROTOCOL-MAP §5 data streams v2).

        Raises:
            StreamError: not connected, the header is too large, or sending failed.
        """
        data = text.encode("utf-8")
        form = self._form(destination_identities, compress)
        try:
            stream = cs.OutgoingTextStream(
                stream_id=stream_id or str(uuid.uuid4()),
                timestamp_ms=(ts := _now_ms()),
                topic=topic,
                total_length=len(data),
                attributes=attributes,
                destination_identities=destination_identities or (),
                compression=form.compression_allowed,
                reply_to_stream_id=reply_to_id or "",
                attached_stream_ids=attachments,
            )
        except LocalProtocolError as exc:
            raise StreamError(str(exc)) from exc
        sender = StreamSender(self._engine, stream)

        async def send(s: StreamSender) -> None:
            if form.inline_allowed and await s.send_single(data):
                return
            await s.open()
            await s.write(data)
            await s.close()

        await self._run(sender, "send_text", send)
        return TextStreamInfo(
            stream_id=stream.stream_id,
            mime_type=cs.DEFAULT_TEXT_MIME_TYPE,
            topic=topic,
            timestamp=ts,
            size=len(data),
            attributes=dict(attributes or {}),
            attachments=list(attachments),
        )

    async def stream_text(
        self,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        sender_identity: str | None = None,
    ) -> TextStreamWriter:
        """Open a text stream and return its writer (classic chunked form, never compressed).

        ``sender_identity`` is accepted for signature compatibility; the server stamps the
        packets with this participant's identity.
        """
        del sender_identity
        try:
            stream = cs.OutgoingTextStream(
                stream_id=stream_id or str(uuid.uuid4()),
                timestamp_ms=(ts := _now_ms()),
                topic=topic,
                total_length=total_size,
                attributes=attributes,
                destination_identities=destination_identities or (),
                reply_to_stream_id=reply_to_id or "",
            )
        except LocalProtocolError as exc:
            raise StreamError(str(exc)) from exc
        sender = StreamSender(self._engine, stream)
        await self._run(sender, "stream_text", _open)
        info = TextStreamInfo(
            stream_id=stream.stream_id,
            mime_type=cs.DEFAULT_TEXT_MIME_TYPE,
            topic=topic,
            timestamp=ts,
            size=total_size,
            attributes=dict(attributes or {}),
            attachments=[],
        )
        return TextStreamWriter(sender, info)

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = cs.DEFAULT_BYTE_MIME_TYPE,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> ByteStreamWriter:
        """Open a byte stream and return its writer (classic chunked form, never compressed).

        With ``total_size``, receivers enforce it and ``writer.progress`` reports the fraction
        sent.
        """
        stream = self._byte_stream(
            name=name,
            total_size=total_size,
            mime_type=mime_type,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=False,
            timestamp_ms=(ts := _now_ms()),
        )
        sender = StreamSender(self._engine, stream)
        await self._run(sender, "stream_bytes", _open)
        return ByteStreamWriter(
            sender,
            _byte_info(
                stream,
                timestamp=ts,
                name=name,
                mime_type=mime_type,
                topic=topic,
                attributes=attributes,
            ),
        )

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
    ) -> ByteStreamInfo:
        """Send an in-memory buffer as one byte stream (single packet / compressed where every
        recipient supports it)."""
        payload = bytes(data)
        form = self._form(destination_identities, compress)
        name = cs.DEFAULT_BYTE_STREAM_NAME if name is None else name
        mime = cs.DEFAULT_BYTE_MIME_TYPE if mime_type is None else mime_type
        stream = self._byte_stream(
            name=name,
            total_size=len(payload),
            mime_type=mime,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=form.compression_allowed,
            timestamp_ms=(ts := _now_ms()),
        )

        async def send(s: StreamSender) -> None:
            if form.inline_allowed and await s.send_single(payload):
                return
            await s.open()
            await s.write(payload)
            await s.close()

        await self._run(StreamSender(self._engine, stream), "send_bytes", send)
        return _byte_info(
            stream, timestamp=ts, name=name, mime_type=mime, topic=topic, attributes=attributes
        )

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
        mime_type: str | None = None,
        name: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> ByteStreamInfo:
        """Send a file as one byte stream, read from disk 15 000 bytes at a time (never loaded
        whole). ``name`` defaults to the file's base name, ``mime_type`` to a guess from it.

        lkproto extras: ``mime_type``, ``name`` and ``on_progress(bytes_sent, total)``.

        Raises:
            OSError: the file cannot be read.
            StreamError: sending failed (receivers then see the stream aborted).
        """
        name = os.path.basename(file_path) if name is None else name
        if mime_type is None:
            mime_type = mimetypes.guess_type(file_path)[0] or cs.DEFAULT_BYTE_MIME_TYPE
        size = await asyncio.to_thread(os.path.getsize, file_path)
        form = self._form(destination_identities, compress)
        stream = self._byte_stream(
            name=name,
            total_size=size,
            mime_type=mime_type,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
            compression=form.compression_allowed,
            timestamp_ms=(ts := _now_ms()),
        )
        handle = await asyncio.to_thread(open, file_path, "rb")

        async def send(s: StreamSender) -> None:
            if form.inline_allowed and size <= STREAM_CHUNK_SIZE_BYTES:
                small = await asyncio.to_thread(handle.read, size + 1)
                if len(small) != size:
                    raise LocalProtocolError(f"{file_path} changed size while being sent")
                if await s.send_single(small):
                    return
                await s.open()
                await s.write(small)
                await s.close()
                return
            await s.open()
            while True:
                block = await asyncio.to_thread(handle.read, _FILE_READ_BYTES)
                if not block:
                    break
                await s.write(block)
                if on_progress is not None:
                    on_progress(s.stream.bytes_sent, size)
            await s.close()

        try:
            await self._run(StreamSender(self._engine, stream), "send_file", send)
        finally:
            handle.close()
        return _byte_info(
            stream, timestamp=ts, name=name, mime_type=mime_type, topic=topic, attributes=attributes
        )

    def _byte_stream(
        self,
        *,
        name: str,
        total_size: int | None,
        mime_type: str,
        attributes: dict[str, str] | None,
        stream_id: str | None,
        destination_identities: list[str] | None,
        topic: str,
        compression: bool,
        timestamp_ms: int,
    ) -> cs.OutgoingByteStream:
        try:
            return cs.OutgoingByteStream(
                stream_id=stream_id or str(uuid.uuid4()),
                timestamp_ms=timestamp_ms,
                topic=topic,
                mime_type=mime_type,
                name=name,
                total_length=total_size,
                attributes=attributes,
                destination_identities=destination_identities or (),
                compression=compression,
            )
        except LocalProtocolError as exc:
            raise StreamError(str(exc)) from exc


_ABORT_TIMEOUT_S = 5.0
"""How long a failed send waits to tell receivers (trailer with a reason) before giving up."""

_FILE_READ_BYTES = STREAM_CHUNK_SIZE_BYTES
"""send_file reads this much at a time: one chunk, so memory stays at one chunk per send."""

_SendFn = Callable[[StreamSender], Awaitable[None]]


async def _open(sender: StreamSender) -> None:
    await sender.open()


def _byte_info(
    stream: cs.OutgoingByteStream,
    *,
    timestamp: int,
    name: str,
    mime_type: str,
    topic: str,
    attributes: dict[str, str] | None,
) -> ByteStreamInfo:
    return ByteStreamInfo(
        stream_id=stream.stream_id,
        mime_type=mime_type,
        topic=topic,
        timestamp=timestamp,
        size=stream.total_length,
        attributes=dict(attributes or {}),
        name=name,
    )
