"""Participants, shaped like the official Participant, LocalParticipant and RemoteParticipant.

A participant object is a live view: the room replaces its ``ParticipantInfo`` snapshot whenever the
server sends a newer one (PROTOCOL-MAP §7 ParticipantUpdate), so properties always read the latest.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from lkproto.core.rpc import RPC_DEFAULT_RESPONSE_TIMEOUT_S
from lkproto.errors import LocalProtocolError, PublishDataError
from lkproto.wire import pb

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
        from lkproto.errors import ConnectError

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
