"""``Room``: the public entry point, shaped like ``livekit.rtc.Room``.

Code written for ``from livekit import rtc`` runs with ``from lkproto import rtc`` for what is
implemented: connect/disconnect, the participant model, metadata/name/attributes, room metadata,
speakers, connection quality, reconnection events and simulated failures. Every event is emitted
under the official string (``room.on("participant_connected")``) and also yielded, typed, by
``async for event in room.events()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import logging
import os
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, assert_never, cast

from lkproto.asyncio.connection_state import ConnectionState
from lkproto.asyncio.fanout import FrameFanout
from lkproto.core.durations import optional_positive_seconds, positive_seconds
from lkproto.errors import ConnectError, EventQueueOverflowError, LkError, LocalProtocolError
from lkproto.rtc._deferred import DeferredModule
from lkproto.rtc._enum import ProtoEnum
from lkproto.rtc._options import check_loop, refuse, warn_once
from lkproto.rtc.data_stream import (
    ByteStreamHandler,
    ByteStreamReader,
    TextStreamHandler,
    TextStreamReader,
)
from lkproto.rtc.data_track import DataTrackInfo, RemoteDataTrack
from lkproto.rtc.e2ee import E2EEManager, E2EEOptions, EncryptionState, EncryptionType
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.rtc.participant import (
    ConnectionQuality,
    DisconnectReason,
    LocalParticipant,
    LocalTrackPublication,
    Participant,
    RemoteParticipant,
    RemoteTrackPublication,
    disconnect_reason,
)
from lkproto.rtc.track import (
    RemoteAudioTrack,
    RemoteTrack,
    RemoteVideoTrack,
    StreamState,
    TrackKind,
)
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio import engine as en
    from lkproto.asyncio.data_track import DataTrackDriver
    from lkproto.asyncio.peer import IceServer as _PeerIceServer
    from lkproto.asyncio.rpc import RpcDriver
    from lkproto.asyncio.streams import IncomingStream, StreamDriver
    from lkproto.core import data_track as cdt
    from lkproto.core import reconnect as rc
    from lkproto.core import roster as ro
    from lkproto.core import signal as sg
    from lkproto.core.e2ee import EncryptionStateChanged, KeyProvider
    from lkproto.rtc import events as ev
    from lkproto.rtc import stats as _stats
else:
    # The engine, its drivers and the core machines are used only by a connected room: they
    # load on first use (normally Room.connect), not with ``import lkproto.rtc`` (issue 18).
    en = DeferredModule("lkproto.asyncio.engine", globals(), "en")
    cdt = DeferredModule("lkproto.core.data_track", globals(), "cdt")
    rc = DeferredModule("lkproto.core.reconnect", globals(), "rc")
    ro = DeferredModule("lkproto.core.roster", globals(), "ro")
    sg = DeferredModule("lkproto.core.signal", globals(), "sg")
    # The event classes too: the first is created when a connected room dispatches.
    ev = DeferredModule("lkproto.rtc.events", globals(), "ev")
    _stats = DeferredModule("lkproto.rtc.stats", globals(), "_stats")

__all__ = [
    "DEFAULT_EVENTS_MAX_QUEUE",
    "ChatMessage",
    "ConnectionState",
    "ContinualGatheringPolicy",
    "DataPacket",
    "DataPacketKind",
    "IceServer",
    "IceTransportType",
    "Room",
    "RoomOptions",
    "RtcConfiguration",
    "RtcStats",
    "SimulateScenarioKind",
    "SipDTMF",
    "TranscriptionSegment",
]

_log = logging.getLogger("lkproto.rtc")
_STREAM_PACKETS = frozenset({"stream_header", "stream_chunk", "stream_trailer"})

DEFAULT_EVENTS_MAX_QUEUE: Final = 1024
"""Events a ``room.events()`` reader may fall behind before it is ended (lkproto's own bound; the
official SDK has no typed stream)."""


class DataPacketKind(ProtoEnum):
    """Official ``DataPacketKind`` values."""

    KIND_LOSSY = 0
    KIND_RELIABLE = 1


class SimulateScenarioKind(ProtoEnum):
    """Official ``SimulateScenarioKind`` values (PROTOCOL-MAP §10 SimulateScenario)."""

    SIMULATE_SIGNAL_RECONNECT = 0
    SIMULATE_SPEAKER = 1
    SIMULATE_NODE_FAILURE = 2
    SIMULATE_SERVER_LEAVE = 3
    SIMULATE_MIGRATION = 4
    SIMULATE_FORCE_TCP = 5
    SIMULATE_FORCE_TLS = 6
    SIMULATE_FULL_RECONNECT = 7
    SIMULATE_DISCONNECT_SIGNAL_ON_RESUME = 8


class _IceServerLike(Protocol):
    urls: Sequence[str]
    username: str
    password: str


@dataclass
class IceServer:
    """Official ``IceServer``: a STUN/TURN server for :attr:`RtcConfiguration.ice_servers`.

    Mutable like the official protobuf message (``server.urls.append(...)`` works).
    """

    urls: list[str] = field(default_factory=list)
    username: str = ""
    password: str = ""


class IceTransportType(ProtoEnum):
    """Official ``IceTransportType`` values (``livekit.rtc``; FFI ``room.proto``)."""

    TRANSPORT_RELAY = 0
    TRANSPORT_NOHOST = 1
    TRANSPORT_ALL = 2


class ContinualGatheringPolicy(ProtoEnum):
    """Official ``ContinualGatheringPolicy`` values (``livekit.rtc``; FFI ``room.proto``)."""

    GATHER_ONCE = 0
    GATHER_CONTINUALLY = 1


@dataclass
class RtcConfiguration:
    """WebRTC options, with the official defaults. ``ice_servers`` empty = the server's list.

    Attributes:
        ice_transport_type: ``TRANSPORT_ALL`` (default) or ``TRANSPORT_RELAY`` (TURN-relayed
            candidates only, aiortc's ``RELAY`` policy). ``TRANSPORT_NOHOST`` raises
            :class:`~lkproto.errors.UnsupportedFeatureError` at ``connect()``: aioice cannot
            leave out host candidates while keeping reflexive ones.
        continual_gathering_policy: ``GATHER_ONCE`` is what aiortc does. ``GATHER_CONTINUALLY``
            (the official default) is a hint: aiortc gathers once per ICE (re)start, and a
            changed network is recovered by lkproto's reconnection instead. Asked for
            explicitly, it is accepted with one warning; left at its default, silently (the
            caller asked for nothing, and the default is the same value as the official one).
        ice_servers: STUN/TURN servers (objects with ``urls``, ``username``, ``password``).
        ice_addresses: lkproto extra: the local addresses ICE gathers on (aioice skips 127.0.0.1
            otherwise). When all are loopback, no STUN/TURN server is used at all.
    """

    ice_transport_type: int = IceTransportType.TRANSPORT_ALL
    continual_gathering_policy: int = field(
        default_factory=lambda: _DefaultGathering(ContinualGatheringPolicy.GATHER_CONTINUALLY)
    )
    ice_servers: list[Any] = field(default_factory=list)
    ice_addresses: list[str] | None = None


class _DefaultGathering(int):
    """``RtcConfiguration.continual_gathering_policy`` left at its default: the official value
    (an ``int`` equal to ``GATHER_CONTINUALLY``), marked so that only an explicit request for
    continual gathering is warned about."""

    __slots__ = ()


@dataclass
class DataStreamOptions:
    """Receive limits for text and byte streams (PROTOCOL-MAP §5 receiver rules).

    ``max_payload_byte_length`` is the official SDK's field: a stream whose announced or
    received payload exceeds it ends with :class:`StreamError` at the reader instead of being
    delivered (None = 5 GB, the upstream default). The other fields are lkproto extras; None
    keeps the default named after each.
    """

    max_payload_byte_length: int | None = None
    # lkproto extras
    max_open_streams: int | None = None
    """Concurrent chunked streams accepted (default 256); headers beyond it are refused."""
    max_decompressed_bytes: int | None = None
    """Cap on one inflated DEFLATE_RAW packet (default 16 MiB): a deflate bomb fails its stream."""
    stream_timeout: float | None = None
    """Seconds without a packet before an open stream fails (default 120); 0 disables."""
    max_buffered_bytes: int | None = None
    """Unread bytes queued per stream before it fails as a slow reader (default 64 MiB)."""


@dataclass
class RoomOptions:
    """Same fields and defaults as ``livekit.rtc.RoomOptions``, plus lkproto extras.

    Checked by :meth:`Room.connect` before anything is sent. ``encryption`` (or the deprecated
    ``e2ee``) encrypts data packets, streams, RPC and media frames end to end
    (:mod:`lkproto.rtc.e2ee`).
    ``dynacast=True`` pauses the encoders of simulcast layers no subscriber watches (the server's
    ``SubscribedQualityUpdate``). ``connect_timeout`` must be a positive number of seconds when
    set.
    """

    auto_subscribe: bool = True
    dynacast: bool = False
    e2ee: E2EEOptions | None = None
    """Deprecated, use ``encryption`` (as in the official SDK)."""
    encryption: E2EEOptions | None = None
    """End-to-end encryption (data, streams, RPC, media; see :mod:`lkproto.rtc.e2ee`)."""
    rtc_config: RtcConfiguration | None = None
    connect_timeout: float | None = None
    single_peer_connection: bool | None = None
    data_stream: DataStreamOptions | None = None
    # lkproto extras
    adaptive_stream: bool = False
    reconnect_policy: rc.ReconnectPolicy | None = None
    trace: en.TraceCallback | None = None
    """``(direction, channel, message, raw_bytes, now)`` for every signal message and packet."""
    tap: en.TapCallback | None = None
    """Wire tap: a :class:`lkproto.wire.tap.TapRecord` (time, direction, channel, type, decoded
    fields, raw bytes, identity, topic) per signal message and data packet in and out, plus RTP
    counters per track every 5 s and when it ends. Runs on the event loop: keep it quick."""
    tap_file: str | os.PathLike[str] | None = None
    """Append the same records as JSON Lines to this file (flushed on disconnect); None uses
    ``$LKPROTO_TAP`` when set. Read it with ``lkproto tap FILE``."""
    client_protocol: int | None = None
    """Client-to-client level to advertise; None = 2 (RPC v2, data streams v2 + DEFLATE_RAW).
    0 makes every peer use RPC v1 and classic streams with this client."""


@dataclass
class SipDTMF:
    """A received DTMF tone (official shape)."""

    code: int
    digit: str
    participant: RemoteParticipant | None = None


@dataclass
class TranscriptionSegment:
    """One segment of a legacy ``Transcription`` packet (official shape)."""

    id: str
    text: str
    start_time: int
    end_time: int
    language: str
    final: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """One chat message, the one type for both ways chat travels (lkproto's; JS ``ChatMessage``).

    A ``chat_message`` packet (legacy, ``RoomEvent.ChatMessage`` in JS) fills every field; an
    ``lk.chat`` text stream (:mod:`lkproto.agents.chat`, PROTOCOL-MAP §8) is one message whose
    id is the stream id and whose timestamp is the header's.

    Attributes:
        id: the message id (the stream id for ``lk.chat``).
        timestamp: sender's clock, ms since the epoch.
        message: the text.
        sender_identity: who sent it ("" when unknown, e.g. a server-sent packet).
        edit_timestamp: when it was last edited (packets only).
        deleted: the sender deleted it (packets only).
        generated: produced by an agent rather than typed (packets only).
    """

    id: str
    timestamp: int
    message: str
    sender_identity: str = ""
    edit_timestamp: int | None = None
    deleted: bool = False
    generated: bool = False


@dataclass
class DataPacket:
    """A received user packet (official shape)."""

    data: bytes
    kind: DataPacketKind
    participant: RemoteParticipant | None
    topic: str | None = None


@dataclass
class RtcStats:
    """Official ``RtcStats``: what :meth:`Room.get_rtc_stats` returns.

    Attributes:
        publisher_stats: the statistics of what we send (see :mod:`lkproto.rtc.stats`).
        subscriber_stats: the statistics of what we receive.
    """

    publisher_stats: list[_stats.RtcStats]
    subscriber_stats: list[_stats.RtcStats]


class Room(EventEmitter["ev.EventTypes"]):
    """A connection to one LiveKit room."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self._loop = loop
        self._engine: en.Engine | None = None
        self._room_info = pb.Room()
        self._local: LocalParticipant | None = None
        self._remotes: dict[str, RemoteParticipant] = {}
        self._state = ConnectionState.CONN_DISCONNECTED
        self._announce = False  # roster events are applied silently until connected
        self._subscribers: list[_EventQueue] = []
        self._sid_future: asyncio.Future[str] | None = None
        self._speakers: dict[str, float] = {}
        self._rpc: RpcDriver | None = None
        self._streams: StreamDriver | None = None
        self._data_tracks: DataTrackDriver | None = None
        self._text_stream_handlers: dict[str, TextStreamHandler] = {}
        self._byte_stream_handlers: dict[str, ByteStreamHandler] = {}
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        # Media (PROTOCOL-MAP §9 Subscribing): one fanout per aiortc remote track (sections are
        # reused, §14), and media that arrived before its publication was known.
        self._fanouts: dict[int, FrameFanout] = {}
        self._early_media: dict[str, en.MediaTrackReceived] = {}
        self._e2ee_manager = E2EEManager(None)
        self._dynacast = False
        self._encrypted_participants: set[str] = set()

    # -- properties (official names) -------------------------------------------------------

    @property
    async def sid(self) -> str:
        """The room SID (``RM_…``); waits until it is known."""
        if self._room_info.sid:
            return self._room_info.sid
        if self._sid_future is None:
            self._sid_future = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._sid_future)

    @property
    def name(self) -> str:
        return self._room_info.name

    @property
    def metadata(self) -> str:
        return self._room_info.metadata

    @property
    def num_participants(self) -> int:
        return self._room_info.num_participants

    @property
    def num_publishers(self) -> int:
        return self._room_info.num_publishers

    @property
    def is_recording(self) -> bool:
        return self._room_info.active_recording

    @property
    def departure_timeout(self) -> float:
        return float(self._room_info.departure_timeout)

    @property
    def empty_timeout(self) -> float:
        return float(self._room_info.empty_timeout)

    @property
    def creation_time(self) -> datetime.datetime:
        ms = self._room_info.creation_time_ms or self._room_info.creation_time * 1000
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    def isconnected(self) -> bool:
        """Official shape: True unless the room is disconnected (reconnecting counts as
        connected)."""
        return self._state != ConnectionState.CONN_DISCONNECTED

    @property
    def local_participant(self) -> LocalParticipant:
        if self._local is None:
            raise LocalProtocolError("cannot access local participant before connecting")
        return self._local

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        return dict(self._remotes)

    @property
    def rtt_ms(self) -> float | None:
        """Latest signalling round-trip time (lkproto extra)."""
        return self._engine.rtt_ms if self._engine else None

    @property
    def e2ee_manager(self) -> E2EEManager:
        """End-to-end encryption: keys, on/off (official name; keys only with ``encryption``)."""
        return self._e2ee_manager

    @property
    def engine(self) -> en.Engine | None:
        """The engine behind this room (lkproto extra, for tests and taps)."""
        return self._engine

    # -- lifecycle -----------------------------------------------------------------------------

    async def connect(self, url: str, token: str, options: RoomOptions | None = None) -> None:
        """Join the room.

        Raises:
            lkproto.errors.JoinRejectedError: the server refused the token or the room.
            lkproto.errors.ConnectError: unreachable, not LiveKit, timed out, ICE failed.
            lkproto.errors.LocalProtocolError: already connected.
        """
        if self.isconnected() or self._engine is not None:
            raise LocalProtocolError("already connected")
        check_loop("Room(loop=...)", self._loop)
        opts = options or RoomOptions()
        # Every option is checked (refused or warned about) before anything is created or sent.
        engine_options = _engine_options(opts)
        limits = _stream_limits(opts.data_stream)
        # The drivers load with the first connect, not with ``import lkproto.rtc`` (issue 18).
        from lkproto.asyncio.data_track import DataTrackDriver
        from lkproto.asyncio.rpc import RpcDriver
        from lkproto.asyncio.streams import StreamDriver

        manager = E2EEManager(_e2ee_options(opts))
        engine = en.Engine(self._on_engine_event)
        self._e2ee_manager = manager
        self._dynacast = opts.dynacast
        provider = manager._provider
        if provider is not None:
            # Imported here: it loads aiortc, which a room without E2EE loads at connect (issue 18).
            from lkproto.asyncio.e2ee import E2eeDriver

            driver = E2eeDriver(
                provider,
                local_identity=lambda: self._local.identity if self._local is not None else "",
                on_state=self._on_e2ee_state,
            )
            manager._bind(driver)
            engine.data_sealer = driver.seal
            engine.sender_hook = driver.prepare_sender
            engine.data_peeker = driver.peek
        rpc = RpcDriver(engine)
        # Built before the engine is kept, so a bad limit leaves the room unconnected.
        self._streams = StreamDriver(
            handler_for=self._has_stream_handler,
            on_opened=self._on_stream_opened,
            on_internal=rpc.on_stream,
            **limits,
        )
        self._engine = engine
        self._rpc = rpc
        self._announce = False
        try:
            join = await engine.connect(url, token, engine_options)
        except BaseException:
            self._engine = None
            if self._streams is not None:
                self._streams.close()
            raise
        self._set_room(join.room)
        if provider is not None:
            # Frames the SFU injects end with these bytes and are not encrypted (§11).
            provider.sif_trailer = bytes(join.sif_trailer)
        data_tracks = self._data_tracks = DataTrackDriver(
            engine, self._on_data_track_event, manager=self._data_track_manager(provider)
        )
        if self._local is not None:
            self._local._set_data_tracks(data_tracks)
        self._announce = True
        self._set_state(ConnectionState.CONN_CONNECTED)
        self._dispatch(ev.Connected())
        # The official SDK announces the data tracks already published when it connects.
        data_tracks.sync_remotes(list(engine.roster.remotes.values()))

    async def disconnect(
        self, *, reason: DisconnectReason | int = DisconnectReason.CLIENT_INITIATED
    ) -> None:
        """Leave the room (no-op when not connected)."""
        engine = self._engine
        if engine is None:
            return
        await engine.disconnect(cast("pb.DisconnectReason.ValueType", int(reason)))

    async def get_rtc_stats(self) -> RtcStats:
        """WebRTC statistics of the room's connection(s), as the official ``get_rtc_stats``.

        Raises:
            LocalProtocolError: the room is not connected (the official SDK raises
                ``RuntimeError`` there).
        """
        engine = self._engine
        if engine is None or not self.isconnected():
            raise LocalProtocolError("the room isn't connected")
        frames = {
            sid: pub.track.frames_received
            for rp in self._remotes.values()
            for sid, pub in rp.track_publications.items()
            if isinstance(pub.track, RemoteTrack)
        }
        publisher, subscriber = await _stats.session_stats(engine, frames)
        return RtcStats(publisher_stats=publisher, subscriber_stats=subscriber)

    async def simulate_scenario(self, scenario: SimulateScenarioKind | pb.SimulateScenario) -> None:
        """Trigger a failure/event for tests (PROTOCOL-MAP §10 SimulateScenario).

        ``SIMULATE_SIGNAL_RECONNECT`` drops the signal socket locally (resume);
        ``SIMULATE_FULL_RECONNECT`` forces a full reconnect locally (v1.13.5 has no server handler);
        the others are sent to the server. A raw ``pb.SimulateScenario`` is sent as is.
        """
        engine = self._engine
        if engine is None or not self.isconnected():
            raise LocalProtocolError("simulate_scenario requires a connected room")
        if isinstance(scenario, pb.SimulateScenario):
            await engine.simulate(scenario)
            return
        kind = SimulateScenarioKind(scenario)
        if kind == SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT:
            engine.simulate_signal_loss()
        elif kind == SimulateScenarioKind.SIMULATE_FULL_RECONNECT:
            engine.force_full_reconnect()
        elif kind == SimulateScenarioKind.SIMULATE_DISCONNECT_SIGNAL_ON_RESUME:
            await engine.simulate(pb.SimulateScenario(disconnect_signal_on_resume=True))
            await engine.close_signal()
        else:
            await engine.simulate(_SERVER_SCENARIOS[kind])

    # -- data streams (PROTOCOL-MAP §5) ---------------------------------------------------------

    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Call ``handler(reader, participant_identity)`` for each incoming text stream on
        ``topic``. The handler runs synchronously; start a task to read (``read_all()``).

        Raises:
            ValueError: a text handler is already registered for ``topic``, or the topic is
                reserved (``lk.rpc_request`` / ``lk.rpc_response``).
        """
        from lkproto.asyncio.streams import INTERNAL_TOPICS  # first use (issue 18)

        if topic in INTERNAL_TOPICS:
            raise ValueError(f"topic '{topic}' is reserved for RPC")
        if topic in self._text_stream_handlers:
            raise ValueError(f"text stream handler for topic '{topic}' already set")
        self._text_stream_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        """Remove ``topic``'s text handler, if any; text streams on it are then ignored."""
        self._text_stream_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """Byte-stream twin of :meth:`register_text_stream_handler`."""
        from lkproto.asyncio.streams import INTERNAL_TOPICS  # first use (issue 18)

        if topic in INTERNAL_TOPICS:
            raise ValueError(f"topic '{topic}' is reserved for RPC")
        if topic in self._byte_stream_handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self._byte_stream_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        """Remove ``topic``'s byte handler, if any; byte streams on it are then ignored."""
        self._byte_stream_handlers.pop(topic, None)

    def _has_stream_handler(self, topic: str, is_text: bool) -> bool:
        handlers = self._text_stream_handlers if is_text else self._byte_stream_handlers
        return topic in handlers

    def _on_stream_opened(self, stream: IncomingStream) -> None:
        info = stream.info
        identity = info.sender_identity
        result: object
        if info.is_text:
            text_handler = self._text_stream_handlers.get(info.topic)
            if text_handler is None:  # unregistered since the header was accepted
                stream.cancel()
                return
            result = text_handler(TextStreamReader(stream), identity)
        else:
            byte_handler = self._byte_stream_handlers.get(info.topic)
            if byte_handler is None:
                stream.cancel()
                return
            result = byte_handler(ByteStreamReader(stream), identity)
        if inspect.isawaitable(result):
            # Lenient: an ``async def`` handler is run as a task (the official SDK expects sync).
            task = asyncio.ensure_future(result)
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._handler_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("data stream handler failed", exc_info=task.exception())

    # -- typed events ------------------------------------------------------------------------

    def events(
        self, *, max_queue: int | None = DEFAULT_EVENTS_MAX_QUEUE
    ) -> AsyncIterator[ev.RoomEvent]:
        """Every room event from now on, typed, in order; the stream ends after ``Disconnected``.

        Subscribes at once (not at the first iteration), so nothing emitted in between is lost.

        Args:
            max_queue: events this reader may fall behind (default
                :data:`DEFAULT_EVENTS_MAX_QUEUE`); ``None`` = unbounded. A reader further behind
                is unsubscribed at that moment: it still yields the ``max_queue`` events it
                held, then raises :class:`~lkproto.errors.EventQueueOverflowError` (one warning
                is logged when it happens). Dropping events silently would leave the reader's
                view of the room wrong; ``room.on(...)`` callbacks are unaffected.

        Raises:
            LocalProtocolError: ``max_queue`` is not a positive int or None.
        """
        if max_queue is not None and (
            isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1
        ):
            raise LocalProtocolError(f"max_queue must be a positive int or None, got {max_queue!r}")
        queue = _EventQueue(max_queue)
        subscribers = self._subscribers
        subscribers.append(queue)

        async def stream() -> AsyncIterator[ev.RoomEvent]:
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        return
                    yield item
                    if isinstance(item, ev.Disconnected):
                        return
            finally:
                _discard(subscribers, queue)

        iterator = stream()
        # A stream that is never iterated must not keep collecting events forever.
        weakref.finalize(iterator, _discard, subscribers, queue)
        return iterator

    # -- engine events -> room model + events --------------------------------------------------

    def _dispatch(self, event: ev.RoomEvent) -> None:
        for queue in list(self._subscribers):
            if not queue.put(event):
                # That reader is max_queue behind: it ends with EventQueueOverflowError.
                _discard(self._subscribers, queue)
                _log.warning(
                    "room.events() reader fell %d events behind; its stream ends with "
                    "EventQueueOverflowError",
                    queue.max_queue,
                )
        self.emit(event.name, *event.args())  # type: ignore[arg-type]

    def _announce_event(self, event: ev.RoomEvent) -> None:
        if self._announce:
            self._dispatch(event)

    def _set_state(self, state: ConnectionState) -> None:
        if state != self._state:
            self._state = state
            if self._announce or state == ConnectionState.CONN_CONNECTED:
                self._dispatch(ev.ConnectionStateChanged(state=state))

    def _set_room(self, room: pb.Room) -> None:
        self._room_info = room
        if room.sid and self._sid_future is not None and not self._sid_future.done():
            self._sid_future.set_result(room.sid)

    def _participant(self, identity: str, local: bool) -> Participant | None:
        return self._local if local else self._remotes.get(identity)

    def _on_engine_event(self, event: en.EngineEvent) -> None:
        engine = self._engine
        if isinstance(event, ro.RosterEvent):
            # The engine's union names the roster's base class; the roster emits only the
            # concrete members of ro.AnyRosterEvent (lkproto.core.roster).
            self._on_roster_event(cast("ro.AnyRosterEvent", event))
        elif isinstance(event, en.EngineConnected):
            assert engine is not None
            local = engine.roster.local
            if local is not None and self._rpc is not None:
                self._local = LocalParticipant(local, engine, self._rpc)
                if self._e2ee_manager.options is not None:
                    self._local._set_encryption(pb.Encryption.GCM)
                self._local._set_event_sink(self._dispatch)
        elif isinstance(event, en.EngineReconnecting):
            # Streams and RPCs of the old session end after a full reconnect (issue 15).
            if self._rpc is not None and self._streams is not None:
                self._rpc.reconnecting()
                self._streams.reconnecting()
            self._set_state(ConnectionState.CONN_RECONNECTING)
            self._dispatch(ev.Reconnecting())
        elif isinstance(event, en.EngineReconnected):
            if engine is not None and engine.roster.local is not None and self._local is not None:
                self._local._update(engine.roster.local)
            if self._rpc is not None and self._streams is not None:
                self._rpc.reconnected(full=event.full)
                self._streams.reconnected(full=event.full)
            self._set_state(ConnectionState.CONN_CONNECTED)
            self._dispatch(ev.Reconnected())
            if self._data_tracks is not None and engine is not None:
                if event.full:
                    self._data_tracks.session_replaced()
                self._data_tracks.sync_remotes(list(engine.roster.remotes.values()))
        elif isinstance(event, en.EngineDisconnected):
            self._engine = None
            self._close_media()
            if self._e2ee_manager._driver is not None:
                self._e2ee_manager._driver.close()
            if self._rpc is not None:
                self._rpc.close()
            if self._streams is not None:
                self._streams.close()
            if self._data_tracks is not None:
                self._data_tracks.close()
                self._data_tracks = None
            self._speakers.clear()
            self._set_state(ConnectionState.CONN_DISCONNECTED)
            if self._sid_future is not None and not self._sid_future.done():
                self._sid_future.set_exception(
                    LocalProtocolError("room disconnected before its SID was known")
                )
            self._dispatch(ev.Disconnected(reason=disconnect_reason(event.reason)))
            for queue in self._subscribers:
                queue.end()
        elif isinstance(event, en.DataReceived):
            self._on_data(event)
        elif isinstance(event, en.SignalMessageEvent):
            self._on_signal_message(event.event)
        elif isinstance(event, en.MediaTrackReceived):
            self._on_media_received(event)
        elif isinstance(event, en.MediaTrackEnded):
            self._on_media_ended(event.sid)
        elif isinstance(event, en.LocalTrackRepublished):
            self._on_republished(event)
        elif isinstance(event, en.LocalInfoUpdated):
            if self._local is not None and self._local.sid == event.info.sid:
                self._local._update(event.info)
        else:
            assert_never(event)

    def _on_roster_event(self, event: ro.AnyRosterEvent) -> None:
        if isinstance(event, ro.ParticipantConnected):
            rp = RemoteParticipant(event.info)
            rp._bind(self._engine)
            self._remotes[event.info.identity] = rp
            self._announce_event(ev.ParticipantConnected(participant=rp))
        elif isinstance(event, ro.ParticipantDisconnected):
            gone = self._remotes.pop(event.info.identity, None)
            if self._rpc is not None:
                self._rpc.participant_disconnected(event.info.identity)
            if self._streams is not None:
                self._streams.participant_left(event.info.identity, event.reason)
            if gone is not None:
                # The official SDK reports the reason on the departed participant.
                final = pb.ParticipantInfo()
                final.CopyFrom(event.info)
                final.state = pb.ParticipantInfo.DISCONNECTED
                final.disconnect_reason = event.reason
                del final.tracks[:]
                gone._update(final)
                self._speakers.pop(gone.sid, None)
                self._announce_event(ev.ParticipantDisconnected(participant=gone))
        elif isinstance(event, ro.RoomMetadataChanged):
            self._set_room(event.room)
            self._announce_event(ev.RoomMetadataChanged(old_metadata=event.old, metadata=event.new))
        elif isinstance(event, ro.RoomRecordingStatusChanged):
            # The official SDK has no event for it (is_recording reads the room description);
            # RoomUpdated follows with the same room.
            self._set_room(event.room)
        elif isinstance(event, ro.RoomUpdated):
            self._set_room(event.room)
            self._announce_event(ev.RoomUpdated(room=event.room))
        elif isinstance(
            event,
            ro.ParticipantMetadataChanged
            | ro.ParticipantNameChanged
            | ro.ParticipantAttributesChanged
            | ro.ParticipantPermissionsChanged
            | ro.ParticipantActivated,
        ):
            self._on_participant_change(event)
        elif isinstance(
            event, ro.TrackPublished | ro.TrackUnpublished | ro.TrackMuted | ro.TrackUnmuted
        ):
            # Track events are reported for remote publishers (our own publications are kept
            # by LocalParticipant) and carry no snapshot: take the roster's latest.
            publisher = self._remotes.get(event.identity)
            if publisher is None:
                return
            engine = self._engine
            latest = engine.roster.remotes.get(event.identity) if engine is not None else None
            if latest is not None:
                publisher._replace_info(latest)
            self._on_track_change(event, publisher)
        else:
            assert_never(event)

    def _on_participant_change(self, event: _ParticipantChange) -> None:
        local = not isinstance(event, ro.ParticipantActivated) and event.local
        p = self._participant(event.identity, local)
        if p is None:
            return
        p._update(event.info)
        if isinstance(event, ro.ParticipantMetadataChanged):
            self._announce_event(
                ev.ParticipantMetadataChanged(
                    participant=p, old_metadata=event.old, metadata=event.new
                )
            )
        elif isinstance(event, ro.ParticipantNameChanged):
            self._announce_event(
                ev.ParticipantNameChanged(participant=p, old_name=event.old, new_name=event.new)
            )
        elif isinstance(event, ro.ParticipantAttributesChanged):
            self._announce_event(
                ev.ParticipantAttributesChanged(
                    changed_attributes=dict(event.changed), participant=p
                )
            )
        elif isinstance(event, ro.ParticipantPermissionsChanged):
            self._announce_event(
                ev.ParticipantPermissionsChanged(
                    participant=p, old_permissions=event.old, permissions=event.new
                )
            )
        elif isinstance(event, ro.ParticipantActivated):
            self._announce_event(ev.ParticipantActive(participant=p))
        else:
            assert_never(event)

    def _on_track_change(self, event: _TrackChange, p: RemoteParticipant) -> None:
        track = event.track
        # One publication object per track SID from track_published to track_unpublished.
        if isinstance(event, ro.TrackUnpublished):
            pub = p._track_unpublished(track)
        else:
            pub = p._track_published(track)
        if not isinstance(pub, RemoteTrackPublication):
            return  # a remote participant only makes remote publications
        if isinstance(event, ro.TrackPublished | ro.TrackUnpublished):
            self._check_encryption_status(p)
        if isinstance(event, ro.TrackPublished):
            self._announce_event(ev.TrackPublished(publication=pub, participant=p))
            early = self._early_media.pop(track.sid, None)
            if early is not None:
                self._subscribe_media(early, pub, p)
        elif isinstance(event, ro.TrackUnpublished):
            # Official order: track_unsubscribed, then track_unpublished.
            self._unsubscribe_media(pub, p)
            self._announce_event(ev.TrackUnpublished(publication=pub, participant=p))
        elif isinstance(event, ro.TrackMuted):
            if pub.track is not None:
                pub.track._apply_muted(pub.muted)
            self._announce_event(ev.TrackMuted(participant=p, publication=pub))
        elif isinstance(event, ro.TrackUnmuted):
            if pub.track is not None:
                pub.track._apply_muted(pub.muted)
            self._announce_event(ev.TrackUnmuted(participant=p, publication=pub))
        else:
            assert_never(event)

    def _check_encryption_status(self, p: RemoteParticipant) -> None:
        """Emit ``participant_encryption_status_changed`` when "every published track of ``p``
        is end-to-end encrypted" flips (the official rule: no tracks counts as not encrypted)."""
        pubs = list(p.track_publications.values())
        encrypted = bool(pubs) and all(pub.encryption_type != EncryptionType.NONE for pub in pubs)
        if encrypted == (p.identity in self._encrypted_participants):
            return
        if encrypted:
            self._encrypted_participants.add(p.identity)
        else:
            self._encrypted_participants.discard(p.identity)
        self._announce_event(
            ev.ParticipantEncryptionStatusChanged(participant=p, is_encrypted=encrypted)
        )

    # -- media -------------------------------------------------------------------------------

    def _remote_publication(
        self, sid: str
    ) -> tuple[RemoteTrackPublication, RemoteParticipant] | None:
        for rp in self._remotes.values():
            pub = rp._publication(sid)
            if isinstance(pub, RemoteTrackPublication):
                return pub, rp
        return None

    def _on_media_received(self, event: en.MediaTrackReceived) -> None:
        found = self._remote_publication(event.sid)
        if found is None:
            # RTP can be mapped before the ParticipantUpdate naming the track (§9): hold it.
            self._early_media[event.sid] = event
            self._fanout(event.track)
            return
        self._subscribe_media(event, *found)

    def _fanout(self, media: Any) -> FrameFanout:
        fanout = self._fanouts.get(id(media))
        if fanout is None or fanout.closed:
            # Tracks of a closed connection end their fanouts: forget those (full reconnects).
            self._fanouts = {k: f for k, f in self._fanouts.items() if not f.closed}
            fanout = self._fanouts[id(media)] = FrameFanout(media)
        return fanout

    def _subscribe_media(
        self, event: en.MediaTrackReceived, pub: RemoteTrackPublication, rp: RemoteParticipant
    ) -> None:
        if pub.track is not None:
            self._unsubscribe_media(pub, rp)
        encrypted = pub._info.encryption != pb.Encryption.NONE
        if not self._attach_decryption(event, pub, rp, encrypted) and encrypted:
            # Ciphertext is not handed to the decoder as if it were media: the failure is
            # reported instead (no key in this room, or a codec lkproto cannot decrypt).
            self._dispatch(
                ev.TrackSubscriptionFailed(
                    participant=rp,
                    track_sid=event.sid,
                    error="end-to-end encrypted media lkproto cannot decrypt (connect with "
                    "RoomOptions.encryption; VP8, VP9, H.264 or Opus)",
                )
            )
            self._announce_event(
                ev.E2eeStateChanged(participant=rp, state=EncryptionState.INTERNAL_ERROR)
            )
            return
        kind = TrackKind.KIND_VIDEO if event.kind == "video" else TrackKind.KIND_AUDIO
        cls = RemoteVideoTrack if kind == TrackKind.KIND_VIDEO else RemoteAudioTrack
        receiver = event.pc.receivers().get(event.mid) if event.pc is not None else None
        if receiver is not None:
            _stats.watch_receiver(receiver)
            if kind == TrackKind.KIND_AUDIO:
                # Imported here, like the E2EE driver: it loads PyAV (issue 18, import time).
                from lkproto.asyncio._seam import tolerate_audio_loss
                from lkproto.asyncio.audio import decode_on_batch_worker

                # Play on past a lost packet instead of stalling until 16 more arrive (issue 15).
                tolerate_audio_loss(receiver)
                # One shared decode thread, frames batched per loop turn (issue 18, media CPU).
                decode_on_batch_worker(receiver)
        track: RemoteTrack = cls(
            sid=event.sid, name=pub.name, kind=kind, fanout=self._fanout(event.track)
        )
        if event.pc is not None and receiver is not None:
            track._bind_stats(event.pc, receiver)
        pub._attach(track)
        self._dispatch(ev.TrackSubscribed(track=track, publication=pub, participant=rp))

    def _attach_decryption(
        self,
        event: en.MediaTrackReceived,
        pub: RemoteTrackPublication,
        rp: RemoteParticipant,
        encrypted: bool,
    ) -> bool:
        """Put the E2EE frame cryptor before the track's decoder; False if it cannot be."""
        driver = self._e2ee_manager._driver
        receiver = event.pc.receivers().get(event.mid) if event.pc is not None else None
        if driver is None or receiver is None:
            return False
        try:
            driver.attach_receiver(
                receiver,
                identity=rp.identity,
                track_sid=event.sid,
                mime_type=pub.mime_type or f"{event.kind}/opus",
                encrypted=encrypted,
            )
        except (ValueError, LkError) as exc:
            _log.warning("= cannot decrypt track %s: %s", event.sid, exc)
            return False
        return True

    def _unsubscribe_media(self, pub: RemoteTrackPublication, rp: RemoteParticipant) -> None:
        track = pub._detach()
        if track is not None:
            self._dispatch(ev.TrackUnsubscribed(track=track, publication=pub, participant=rp))

    def _on_media_ended(self, sid: str) -> None:
        self._early_media.pop(sid, None)
        found = self._remote_publication(sid)
        if found is not None:
            self._unsubscribe_media(*found)

    def _on_republished(self, event: en.LocalTrackRepublished) -> None:
        local = self._local
        if local is None:
            return
        old = local._remove_publication(event.old_sid)
        if not isinstance(old, LocalTrackPublication) or old.track is None:
            return
        pub = LocalTrackPublication(event.info, old.track)
        old.track._republished(event.info, event.media)
        local._add_publication(pub)
        self._dispatch(ev.LocalTrackRepublished(publication=pub, previous_sid=event.old_sid))

    def _close_media(self) -> None:
        for rp in self._remotes.values():
            for pub in rp.track_publications.values():
                self._unsubscribe_media(pub, rp)
        fanouts, self._fanouts = self._fanouts, {}
        self._early_media.clear()
        for fanout in fanouts.values():
            fanout.close()

    def _on_track_message(self, event: sg.MessageReceived) -> None:
        """Server messages about tracks (PROTOCOL-MAP §9)."""
        message = event.message
        local = self._local
        if event.kind == "track_subscribed" and local is not None:
            pub = local._publication(message.track_subscribed.track_sid)
            if isinstance(pub, LocalTrackPublication) and pub.track is not None:
                pub._first_subscriber()
                self._dispatch(ev.LocalTrackSubscribed(track=pub.track))
        elif event.kind == "subscription_response":
            response = message.subscription_response
            if response.err != pb.SE_UNKNOWN or response.track_sid:
                found = self._remote_publication(response.track_sid)
                self._dispatch(
                    ev.TrackSubscriptionFailed(
                        participant=found[1] if found else None,
                        track_sid=response.track_sid,
                        error=pb.SubscriptionError.Name(response.err),
                    )
                )
        elif event.kind == "subscribed_quality_update" and local is not None and self._dynacast:
            # Dynacast (PROTOCOL-MAP §9 VideoLayer): encode only the layers someone watches.
            update = message.subscribed_quality_update
            pub = local._publication(update.track_sid)
            engine = self._engine
            if isinstance(pub, LocalTrackPublication) and pub.track is not None and engine:
                from lkproto.asyncio.publish import simulcast_of
                from lkproto.core.simulcast import wanted_rids

                simulcast = simulcast_of(engine.published_sender(pub.track.cid))
                if simulcast is not None:
                    simulcast.set_wanted(
                        wanted_rids(update, simulcast.description.mime_type, simulcast.layers)
                    )
        elif event.kind == "mute" and local is not None:
            # The server (an admin) asks us to mute/unmute one of our tracks.
            pub = local._publication(message.mute.sid)
            if isinstance(pub, LocalTrackPublication) and pub.track is not None:
                pub.track._set_muted(message.mute.muted)
        elif event.kind == "track_unpublished" and local is not None:
            # The server ended one of our publications (e.g. publish permission revoked, §9):
            # stop sending its section too, as if the user had unpublished it.
            pub = local._remove_publication(message.track_unpublished.track_sid)
            if isinstance(pub, LocalTrackPublication):
                if pub.track is not None:
                    task = asyncio.ensure_future(self._stop_sending(pub.track.cid))
                    self._handler_tasks.add(task)
                    task.add_done_callback(self._handler_done)
                    pub.track._unpublished()
                self._dispatch(ev.LocalTrackUnpublished(publication=pub))
        elif event.kind == "stream_state_update":
            for state in message.stream_state_update.stream_states:
                found = self._remote_publication(state.track_sid)
                if found is not None and found[0].track is not None:
                    paused = state.state == pb.PAUSED
                    found[0].track._apply_stream_state(
                        StreamState.STATE_PAUSED if paused else StreamState.STATE_ACTIVE
                    )

    async def _stop_sending(self, cid: str) -> None:
        engine = self._engine
        if engine is None:
            return
        with contextlib.suppress(LocalProtocolError, ConnectError):
            await engine.unpublish_track(cid)

    def _by_sid(self, sid: str) -> Participant | None:
        if self._local is not None and self._local.sid == sid:
            return self._local
        return next((p for p in self._remotes.values() if p.sid == sid), None)

    def _on_signal_message(self, signal_event: sg.SignalEvent) -> None:
        # The engine passes the session's events through as the base class; the session emits
        # only the concrete members of sg.AnySignalEvent (lkproto.core.signal).
        event = cast("sg.AnySignalEvent", signal_event)
        data_tracks = self._data_tracks
        if data_tracks is not None:
            data_tracks.on_signal(event)
            if isinstance(event, sg.ParticipantsUpdated) and self._engine is not None:
                # PROTOCOL-MAP §12: remote data tracks are ParticipantInfo.data_tracks.
                data_tracks.sync_remotes(list(self._engine.roster.remotes.values()))
        if isinstance(event, sg.MessageReceived):
            self._on_track_message(event)
        elif isinstance(event, sg.SpeakersChanged):
            # Deltas since protocol 3 (PROTOCOL-MAP §9): active ones set their level, others leave.
            for speaker in event.speakers:
                if speaker.active:
                    self._speakers[speaker.sid] = speaker.level
                else:
                    self._speakers.pop(speaker.sid, None)
            ordered = sorted(self._speakers.items(), key=lambda kv: -kv[1])
            speakers = [p for sid, _ in ordered if (p := self._by_sid(sid)) is not None]
            self._announce_event(ev.ActiveSpeakersChanged(speakers=speakers))
        elif isinstance(event, sg.ConnectionQualityChanged):
            for update in event.updates:
                p = self._by_sid(update.participant_sid)
                if p is not None:
                    quality = (
                        ConnectionQuality(update.quality)
                        if update.quality in range(4)
                        else (ConnectionQuality.QUALITY_POOR)
                    )
                    p._set_connection_quality(quality)
                    self._announce_event(
                        ev.ConnectionQualityChanged(participant=p, quality=quality)
                    )
        elif isinstance(event, sg.TokenRefreshed):
            self._announce_event(ev.TokenRefreshed(token=event.token))
        elif isinstance(
            event,
            # Signal events the engine consumes itself; listed so the chain stays exhaustive.
            # Spelled out here, not in a module-level tuple: core.signal loads at connect.
            (
                sg.Joined,
                sg.Resumed,
                sg.JoinTimedOut,
                sg.SignalLost,
                sg.LeaveReceived,
                sg.PongReceived,
                sg.RequestAnswered,
                sg.RequestTimedOut,
                sg.RequestDropped,
                sg.OfferReceived,
                sg.AnswerReceived,
                sg.TrickleReceived,
                sg.ParticipantsUpdated,
                sg.RoomUpdated,
                sg.MediaSectionsRequired,
                sg.ProtocolViolated,
            ),
        ):
            pass  # the engine acts on these (session, negotiation, roster); nothing for the room
        else:
            assert_never(event)

    def _data_track_manager(self, provider: KeyProvider | None) -> cdt.DataTrackManager:
        # With E2EE on, data tracks are published encrypted and encrypted ones can be read,
        # with the same keys as data packets (RS:livekit/src/room/e2ee/data_track.rs).
        if provider is None:
            return cdt.DataTrackManager()
        cipher = cdt.DataTrackCipher(
            provider,
            local_identity=lambda: self._local.identity if self._local is not None else "",
            random_bytes=os.urandom,
        )
        return cdt.DataTrackManager(cipher=cipher)

    def _on_data_track_event(self, event: cdt.AnyDataTrackEvent) -> None:
        driver = self._data_tracks
        match event:
            case cdt.RemoteDataTrackPublished(publisher_identity=identity, info=info):
                if driver is None:
                    return
                public = DataTrackInfo(
                    sid=info.sid, name=info.name, uses_e2ee=info.encryption != pb.Encryption.NONE
                )
                track = RemoteDataTrack(public, identity, driver)
                self._announce_event(ev.DataTrackPublished(track=track))
            case cdt.RemoteDataTrackUnpublished(sid=sid):
                self._announce_event(ev.DataTrackUnpublished(sid=sid))
            case (
                cdt.LocalDataTrackUnpublished()
                | cdt.LocalDataTrackRepublished()
                | cdt.RemoteDataTrackRepublished()  # the same RemoteDataTrack goes on (§12)
                | cdt.PublishAccepted()
                | cdt.PublishRefused()
                | cdt.FrameReceived()
            ):
                pass  # LocalDataTrack.is_published() reads the machine; the rest are internal
            case _:
                assert_never(event)

    def _on_data(self, event: en.DataReceived) -> None:
        driver = self._e2ee_manager._driver
        if driver is not None:
            # Opened in arrival order, off the loop when a key must be derived first.
            reliable = event.reliable
            driver.receive(
                event.packet,
                lambda packet, encrypted: self._on_opened_data(packet, encrypted, reliable),
            )
        elif event.packet.WhichOneof("value") == "encrypted_packet":
            self._open_encrypted(event.packet)  # warns, never delivers
        else:
            self._on_opened_data(event.packet, False, event.reliable)

    def _on_opened_data(self, packet: pb.DataPacket, encrypted: bool, reliable: bool) -> None:
        engine = self._engine
        # Clear packets passed the engine's nonce filter on arrival; an encrypted user packet
        # shows its nonce only now (core/reliable.py "Nonces").
        if encrypted and engine is not None and not engine.accept_decrypted(packet):
            return
        kind = packet.WhichOneof("value")
        if self._rpc is not None and self._rpc.on_packet(packet):
            return
        if kind in _STREAM_PACKETS:
            if self._streams is not None:
                self._streams.receive(packet, encrypted=encrypted)
            return
        sender = self._remotes.get(packet.participant_identity)
        if kind == "sip_dtmf":
            self._announce_event(
                ev.SipDTMFReceived(
                    dtmf=SipDTMF(
                        code=packet.sip_dtmf.code, digit=packet.sip_dtmf.digit, participant=sender
                    )
                )
            )
            return
        if kind == "transcription":
            self._on_transcription(packet.transcription)
            return
        if kind == "chat_message":
            msg = packet.chat_message
            self._announce_event(
                ev.ChatMessageReceived(
                    message=ChatMessage(
                        id=msg.id,
                        timestamp=msg.timestamp,
                        message=msg.message,
                        sender_identity=packet.participant_identity,
                        edit_timestamp=msg.edit_timestamp
                        if msg.HasField("edit_timestamp")
                        else None,
                        deleted=msg.deleted,
                        generated=msg.generated,
                    ),
                    participant=sender,
                )
            )
            return
        if kind != "user":
            # metrics, unknown: not for apps
            return
        user = packet.user
        self._announce_event(
            ev.DataReceived(
                packet=DataPacket(
                    data=user.payload,
                    kind=DataPacketKind.KIND_RELIABLE if reliable else DataPacketKind.KIND_LOSSY,
                    participant=sender,
                    # "" when the packet has no topic, as the official SDK reports it
                    topic=user.topic,
                )
            )
        )

    def _open_encrypted(self, packet: pb.DataPacket) -> pb.DataPacket | None:
        """The decrypted packet, or None (reported) when it cannot or may not be opened."""
        driver = self._e2ee_manager._driver
        if driver is None:
            # Never handed on as garbage; the official SDK without E2EE drops these too.
            warn_once(
                "encrypted data",
                f"{packet.participant_identity!r} sends end-to-end encrypted data; connect with "
                "RoomOptions(encryption=...) and its key to read it",
            )
            return None
        return driver.open(packet)

    def _on_e2ee_state(self, event: EncryptionStateChanged) -> None:
        identity = event.participant_identity
        local = self._local
        participant: Participant | None = (
            local
            if local is not None and identity == local.identity
            else self._remotes.get(identity)
        )
        if participant is not None:
            self._announce_event(ev.E2eeStateChanged(participant=participant, state=event.state))

    def _on_transcription(self, transcription: pb.Transcription) -> None:
        identity = transcription.transcribed_participant_identity
        participant: Participant | None = self._remotes.get(identity)
        if participant is None and self._local is not None and self._local.identity == identity:
            participant = self._local
        publication = (
            participant.track_publications.get(transcription.track_id) if participant else None
        )
        segments = [
            TranscriptionSegment(
                id=s.id,
                text=s.text,
                start_time=s.start_time,
                end_time=s.end_time,
                language=s.language,
                final=s.final,
            )
            for s in transcription.segments
        ]
        self._announce_event(
            ev.TranscriptionReceived(
                segments=segments, participant=participant, publication=publication
            )
        )

    def __repr__(self) -> str:
        return f"<Room name={self.name!r} state={self._state.name}>"


_SERVER_SCENARIOS: dict[SimulateScenarioKind, pb.SimulateScenario] = {
    SimulateScenarioKind.SIMULATE_SPEAKER: pb.SimulateScenario(speaker_update=3),
    SimulateScenarioKind.SIMULATE_NODE_FAILURE: pb.SimulateScenario(node_failure=True),
    SimulateScenarioKind.SIMULATE_SERVER_LEAVE: pb.SimulateScenario(server_leave=True),
    SimulateScenarioKind.SIMULATE_MIGRATION: pb.SimulateScenario(migration=True),
    SimulateScenarioKind.SIMULATE_FORCE_TCP: pb.SimulateScenario(switch_candidate_protocol=pb.TCP),
    SimulateScenarioKind.SIMULATE_FORCE_TLS: pb.SimulateScenario(switch_candidate_protocol=pb.TLS),
}


class _EventQueue:
    """One ``room.events()`` reader's bounded queue, ended by ``None`` or by overflowing."""

    __slots__ = ("_ended", "_items", "_overflowed", "_waiter", "max_queue")

    def __init__(self, max_queue: int | None) -> None:
        self.max_queue = max_queue
        self._items: deque[ev.RoomEvent] = deque()
        self._ended = False
        self._overflowed = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: ev.RoomEvent) -> bool:
        """Queue ``event``; False (and the queue is ended by overflow) when it is full."""
        if self._ended:
            return True
        if self.max_queue is not None and len(self._items) >= self.max_queue:
            self._overflowed = self._ended = True
        else:
            self._items.append(event)
        self._wake()
        return not self._overflowed

    def end(self) -> None:
        """No more events: the reader finishes after those it holds."""
        self._ended = True
        self._wake()

    async def get(self) -> ev.RoomEvent | None:
        """The next event; None at the end.

        Raises:
            EventQueueOverflowError: the queue overflowed and its held events are all read.
        """
        while not self._items:
            if self._overflowed:
                assert self.max_queue is not None
                raise EventQueueOverflowError(self.max_queue)
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


# Strings: the roster loads at connect (issue 18); only type checkers read these aliases.
_ParticipantChange: TypeAlias = (
    "ro.ParticipantMetadataChanged | ro.ParticipantNameChanged | ro.ParticipantAttributesChanged"
    " | ro.ParticipantPermissionsChanged | ro.ParticipantActivated"
)
_TrackChange: TypeAlias = (
    "ro.TrackPublished | ro.TrackUnpublished | ro.TrackMuted | ro.TrackUnmuted"
)


def _discard(subscribers: list[_EventQueue], queue: _EventQueue) -> None:
    with contextlib.suppress(ValueError):
        subscribers.remove(queue)


def _ice_server(server: _IceServerLike) -> _PeerIceServer:
    from lkproto.asyncio.peer import IceServer as _PeerIceServer  # at connect (issue 18)

    return _PeerIceServer(
        urls=tuple(server.urls),
        username=getattr(server, "username", "") or "",
        credential=getattr(server, "password", "") or getattr(server, "credential", "") or "",
    )


def _stream_limits(options: DataStreamOptions | None) -> dict[str, Any]:
    """StreamDriver keyword arguments for the limits set in ``options`` (unset: defaults)."""
    if options is None:
        return {}
    if not isinstance(options, DataStreamOptions):
        raise LocalProtocolError(
            f"RoomOptions.data_stream must be a DataStreamOptions, got {type(options).__name__}"
        )
    limits: dict[str, Any] = {}
    pairs = (
        ("max_stream_bytes", options.max_payload_byte_length),
        ("max_open_streams", options.max_open_streams),
        ("max_decompressed_bytes", options.max_decompressed_bytes),
        ("max_buffered_bytes", options.max_buffered_bytes),
    )
    for name, value in pairs:
        if value is not None:
            limits[name] = value
    if options.stream_timeout is not None:
        # 0 disables the timer (lkproto extra); anything else is a duration.
        limits["stream_timeout_s"] = (
            None
            if options.stream_timeout == 0 and not isinstance(options.stream_timeout, bool)
            else positive_seconds("DataStreamOptions.stream_timeout", options.stream_timeout)
        )
    return limits


def _e2ee_options(opts: RoomOptions) -> E2EEOptions | None:
    """The encryption to use (``encryption`` wins over the deprecated ``e2ee``, as official).

    Raises:
        lkproto.errors.UnsupportedFeatureError: an encryption type other than GCM.
        LocalProtocolError: not an ``E2EEOptions``.
    """
    if opts.e2ee is not None:
        warnings.warn(
            "RoomOptions.e2ee is deprecated, use RoomOptions.encryption instead",
            DeprecationWarning,
            stacklevel=4,
        )
    chosen = opts.encryption or opts.e2ee
    if chosen is None:
        return None
    if not isinstance(chosen, E2EEOptions):
        raise LocalProtocolError("RoomOptions.encryption must be an rtc.E2EEOptions")
    if chosen.encryption_type != EncryptionType.GCM:
        refuse(
            "E2EEOptions.encryption_type",
            "only GCM is implemented (the type every LiveKit SDK uses); CUSTOM has no "
            "specification and NONE would connect unencrypted",
        )
    return chosen


def _engine_options(opts: RoomOptions) -> en.EngineOptions:
    """The engine's options for ``opts``; refuses or warns about what lkproto cannot apply.

    Raises:
        lkproto.errors.UnsupportedFeatureError: ``TRANSPORT_NOHOST``.
        LocalProtocolError: a bad ``connect_timeout`` or an unknown enum value.
    """
    rtc = opts.rtc_config if opts.rtc_config is not None else RtcConfiguration()
    relay_only = _relay_only(rtc) if opts.rtc_config is not None else False
    connect_timeout = optional_positive_seconds("RoomOptions.connect_timeout", opts.connect_timeout)
    kwargs: dict[str, Any] = {}
    if opts.reconnect_policy is not None:
        kwargs["reconnect_policy"] = opts.reconnect_policy
    if opts.client_protocol is not None:
        kwargs["client_protocol"] = opts.client_protocol
    return en.EngineOptions(
        auto_subscribe=opts.auto_subscribe,
        adaptive_stream=opts.adaptive_stream,
        connect_timeout_s=connect_timeout or en.DEFAULT_CONNECT_TIMEOUT_S,
        single_peer_connection=opts.single_peer_connection,
        ice_addresses=tuple(rtc.ice_addresses) if rtc.ice_addresses else None,
        ice_servers=tuple(_ice_server(s) for s in rtc.ice_servers) if rtc.ice_servers else None,
        relay_only=relay_only,
        trace=opts.trace,
        tap=opts.tap,
        tap_file=os.fspath(opts.tap_file) if opts.tap_file is not None else None,
        **kwargs,
    )


def _relay_only(rtc: RtcConfiguration) -> bool:
    """Whether ``rtc`` asks for relayed candidates only; refuses what aiortc cannot do."""
    try:
        transport = IceTransportType(rtc.ice_transport_type)
        gathering = ContinualGatheringPolicy(rtc.continual_gathering_policy)
    except ValueError as exc:
        raise LocalProtocolError(f"RtcConfiguration: {exc}") from exc
    if transport == IceTransportType.TRANSPORT_NOHOST:
        refuse(
            "RtcConfiguration.ice_transport_type",
            "TRANSPORT_NOHOST: aioice cannot leave out host candidates while keeping reflexive "
            "ones; use TRANSPORT_ALL or TRANSPORT_RELAY",
        )
    explicit = not isinstance(rtc.continual_gathering_policy, _DefaultGathering)
    if gathering == ContinualGatheringPolicy.GATHER_CONTINUALLY and explicit:
        # libwebrtc keeps gathering as interfaces come and go; aioice gathers once per ICE
        # (re)start. A changed network is recovered by lkproto's resume/full reconnect.
        warn_once(
            "RtcConfiguration.continual_gathering_policy",
            "GATHER_CONTINUALLY: aiortc gathers candidates once per ICE (re)start; a changed "
            "network is recovered by reconnecting",
        )
    return transport == IceTransportType.TRANSPORT_RELAY
