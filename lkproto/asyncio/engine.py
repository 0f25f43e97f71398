"""One engine per room: drives the sans-I/O machines over a WebSocket and aiortc.

The engine makes no protocol decisions of its own. It feeds frames and timer ticks into
:class:`lkproto.core.signal.SignalSession`, writes out what the session wants sent, hands
participant snapshots to :class:`lkproto.core.roster.Roster`, applies SDP and ICE to
:class:`lkproto.asyncio.peer.PeerConnection`, and asks :mod:`lkproto.core.reconnect` what to do
when something breaks. What comes out is a stream of :data:`EngineEvent` for ``lkproto.rtc``.

Tasks per connection: a reader (frames in, also the timer) and a writer (frames out). A
supervisor task runs only while a recovery (resume or full reconnect) is in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from lkproto.asyncio.peer import IceServer, PeerConnection, PeerOptions, PeerState
from lkproto.asyncio.signal import SignalClosed, SignalTransport, is_missing_v1_route
from lkproto.core import reconnect as rc
from lkproto.core import reliable as rl
from lkproto.core import roster as ro
from lkproto.core import signal as sg
from lkproto.errors import (
    ConnectError,
    DecodeError,
    JoinRejectedError,
    LkError,
    LocalProtocolError,
    RequestRejectedError,
)
from lkproto.wire import (
    CLIENT_CAPABILITIES,
    CLIENT_PROTOCOL,
    client_info,
    decode_data_packet,
    decode_signal_response,
    describe,
    encode_data_packet,
    join_request,
    pb,
    signal_url_v0,
    signal_url_v1,
    wrap_join_request,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "ConnectionState",
    "DataReceived",
    "Engine",
    "EngineConnected",
    "EngineDisconnected",
    "EngineEvent",
    "EngineOptions",
    "EngineReconnected",
    "EngineReconnecting",
    "SignalMessageEvent",
    "TraceCallback",
]

_log = logging.getLogger("lkproto.signal")
_data_log = logging.getLogger("lkproto.data")

# The official Python SDK's default per signal attempt is 5 s; joining also waits for ICE, DTLS
# and both data channels, so the whole connect gets more.
DEFAULT_CONNECT_TIMEOUT_S: Final = 15.0
# PROTOCOL-MAP §3: both labels must be open on the primary PC before the server delivers sequenced
# reliable packets to us.
RELIABLE_LABEL: Final = "_reliable"
LOSSY_LABEL: Final = "_lossy"
# PROTOCOL-MAP §3 Buffered-amount thresholds (JS values): a reliable send waits while more than
# the high-water mark is queued, until the queue is below the low-water mark; lossy packets are
# dropped when their channel's queue is full.
RELIABLE_HIGH_WATER_BYTES: Final = 1 << 20
RELIABLE_LOW_WATER_BYTES: Final = 64 << 10
LOSSY_HIGH_WATER_BYTES: Final = 256 << 10

Direction = Literal["<", ">"]
DisconnectReasonValue: TypeAlias = "pb.DisconnectReason.ValueType"
TraceCallback: TypeAlias = Callable[[Direction, str, object, bytes, float], None]
"""``(direction, channel, message, raw_bytes, now)``; channel is ``signal``, ``_reliable``..."""


class ConnectionState(enum.IntEnum):
    """Same values as the official SDK's ``ConnectionState`` (CONN_*)."""

    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """Connection options (``lkproto.rtc.RoomOptions`` maps onto these)."""

    auto_subscribe: bool = True
    adaptive_stream: bool = False
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    single_peer_connection: bool | None = None
    """True: /rtc/v1 only; False: /rtc (v0, two PCs) only; None: v1, falling back to v0 on 404."""
    ice_addresses: tuple[str, ...] | None = None
    ice_servers: tuple[IceServer, ...] | None = None
    """None: the servers from JoinResponse (skipped when ice_addresses are all loopback)."""
    reconnect_policy: rc.ReconnectPolicy = field(default_factory=rc.ReconnectPolicy)
    trace: TraceCallback | None = None
    rng: Callable[[], float] = random.random
    client_protocol: int = CLIENT_PROTOCOL
    """Client-to-client level to advertise (PROTOCOL-MAP §15): 2 = RPC v2 + data streams v2 (with
    the DEFLATE_RAW capability); 0 makes peers use RPC v1 and classic streams with us."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConnected:
    join: pb.JoinResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineReconnecting:
    full: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineReconnected:
    full: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineDisconnected:
    reason: DisconnectReasonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    packet: pb.DataPacket
    reliable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalMessageEvent:
    """A signal event the engine passes through untouched (speakers, quality, tokens, ...)."""

    event: sg.SignalEvent


EngineEvent: TypeAlias = (
    EngineConnected
    | EngineReconnecting
    | EngineReconnected
    | EngineDisconnected
    | DataReceived
    | SignalMessageEvent
    | ro.RosterEvent
)


class _Link:
    """Everything that belongs to one signalling connection + its peer connection(s)."""

    def __init__(self, session: sg.SignalSession, single_pc: bool) -> None:
        self.session = session
        self.single_pc = single_pc
        self.transport: SignalTransport | None = None
        self.publisher: PeerConnection | None = None
        self.subscriber: PeerConnection | None = None  # v0 only
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.joined: asyncio.Future[pb.JoinResponse] = asyncio.get_running_loop().create_future()
        self.resumed: asyncio.Future[pb.ReconnectResponse] | None = None
        self.answers: dict[int, asyncio.Future[str]] = {}
        self.offer_id = 0
        self.last_local_offer: pb.SessionDescription | None = None
        self.last_remote_answer: pb.SessionDescription | None = None
        self.last_remote_offer: pb.SessionDescription | None = None
        self.last_local_answer: pb.SessionDescription | None = None
        self.mid_to_track_id: dict[str, str] = {}
        self.negotiating = False
        self.renegotiate = False
        self.outbox: asyncio.Queue[bytes | None] | None = None

    @property
    def primary(self) -> PeerConnection | None:
        return self.publisher if self.single_pc else self.subscriber


class Engine:
    """Connects one participant to one room and keeps it connected.

    Args:
        on_event: called synchronously, in order, for every :data:`EngineEvent`.
    """

    def __init__(self, on_event: Callable[[EngineEvent], None]) -> None:
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._opts = EngineOptions()
        self._url = ""
        self._token = ""
        self._link: _Link | None = None
        self._roster = ro.Roster()
        self._state = ConnectionState.CONN_DISCONNECTED
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._pending_requests: dict[int, asyncio.Future[None]] = {}
        self._recovery_hint: rc.Recovery | None = None
        self._sender = rl.ReliableSender()
        self._receiver = rl.ReliableReceiver()
        self._connected = asyncio.Event()
        self.lossy_dropped = 0
        self._leave_reason: DisconnectReasonValue = pb.UNKNOWN_REASON

    # -- public ----------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def roster(self) -> ro.Roster:
        return self._roster

    @property
    def join_response(self) -> pb.JoinResponse | None:
        link = self._link
        return link.session.join_response if link else None

    @property
    def refresh_token(self) -> str:
        link = self._link
        return (link.session.refresh_token if link else None) or self._token

    @property
    def rtt_ms(self) -> float | None:
        return self._link.session.rtt_ms if self._link else None

    @property
    def mid_to_track_id(self) -> Mapping[str, str]:
        return dict(self._link.mid_to_track_id) if self._link else {}

    async def connect(self, url: str, token: str, options: EngineOptions) -> pb.JoinResponse:
        """Join: signal connection, JoinResponse, PC negotiated, data channels open.

        Raises:
            JoinRejectedError: the server refused the token/room (401, 404, ...).
            ConnectError: unreachable, not LiveKit, no JoinResponse, ICE/DTLS failed, timeout.
            LocalProtocolError: already connected.

        Cancelling leaves nothing behind: sockets, peer connections and tasks are closed.
        """
        if self._state != ConnectionState.CONN_DISCONNECTED or self._link is not None:
            raise LocalProtocolError("already connected or connecting")
        self._opts, self._url, self._token = options, url, token
        self._closing = False
        try:
            async with asyncio.timeout(options.connect_timeout_s):
                join = await self._join(full=False)
        except TimeoutError as exc:
            await self._abandon_connect()
            raise ConnectError(
                f"not connected within {options.connect_timeout_s} s "
                "(no JoinResponse, or ICE/DTLS/data channels did not come up)"
            ) from exc
        except BaseException:
            await self._abandon_connect()
            raise
        self._set_state(ConnectionState.CONN_CONNECTED)
        self._emit(EngineConnected(join=join))
        return join

    async def _abandon_connect(self) -> None:
        """Undo a failed or cancelled connect completely, even if cancelled again meanwhile.

        If the server already knows us (JoinResponse arrived), say goodbye first so others do
        not see a participant linger until the server's own timeout.
        """
        self._closing = True
        link = self._link
        if link is not None and link.transport is not None and link.joined.done():
            with contextlib.suppress(LkError):
                link.session.send_leave(self._loop.time(), reason=pb.CLIENT_INITIATED)
                self._pump(link)
        task = self._loop.create_task(self._leave_and_teardown(link))
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True  # finish cleaning up first, then let the cancellation through
        if cancelled:
            raise asyncio.CancelledError

    async def _leave_and_teardown(self, link: _Link | None) -> None:
        if link is not None and link.outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await link.outbox.join()
        await self._teardown()

    async def disconnect(self, reason: DisconnectReasonValue = pb.CLIENT_INITIATED) -> None:
        """Leave (tells the server), close everything and emit EngineDisconnected."""
        if self._closing and self._link is None:
            return
        self._closing = True
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, LkError):
                await self._supervisor
        link = self._link
        if link is not None and link.transport is not None:
            with contextlib.suppress(LkError):
                link.session.send_leave(self._loop.time(), reason=reason)
                self._pump(link)
                await self._drain_writer(link)
        await self._teardown()
        self._finish(reason)

    async def update_metadata(
        self,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Send UpdateParticipantMetadata and wait for the server's RequestResponse (§7).

        Raises:
            RequestRejectedError: the server said no (NOT_ALLOWED, LIMIT_EXCEEDED...) or timed out.
        """
        link = self._require_link()
        request_id = link.session.update_metadata(
            self._loop.time(), name=name, metadata=metadata, attributes=attributes
        )
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending_requests[request_id] = fut
        self._pump(link)
        try:
            await fut
        finally:
            self._pending_requests.pop(request_id, None)

    def send_signal(self, request: pb.SignalRequest) -> None:
        """Queue any SignalRequest (tests use it for SimulateScenario)."""
        link = self._require_link()
        link.session.send(request, self._loop.time())
        self._pump(link)

    async def simulate(self, scenario: pb.SimulateScenario) -> None:
        link = self._require_link()
        link.session.send_simulate(scenario, self._loop.time())
        self._pump(link)
        await self._drain_writer(link)

    def force_full_reconnect(self) -> None:
        """Start a full reconnect now (new join, new peer connection), as a LeaveRequest RECONNECT
        would; used for ``SIMULATE_FULL_RECONNECT``, which v1.13.5 does not handle server-side."""
        link = self._require_link()
        self._recovery_hint = rc.Recovery.FULL_RECONNECT
        self._signal_broke(link, rc.Recovery.FULL_RECONNECT)

    async def close_signal(self) -> None:
        """Close the signalling socket cleanly (WebSocket close), keeping the peer connection.

        Unlike :meth:`simulate_signal_loss`, everything written before is read by the server
        first, so a ``SimulateScenario`` sent just before takes effect.
        """
        link = self._require_link()
        await self._drain_writer(link)
        transport = link.transport
        if transport is not None:
            await transport.close()

    def simulate_signal_loss(self) -> None:
        """Drop the signalling TCP connection as a network failure would (PC stays up)."""
        link = self._require_link()
        if link.transport is not None:
            link.transport.abort()

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        """Send one DataPacket on ``_reliable`` (sequenced, resent after a resume) or ``_lossy``.

        Waits while a reconnect is in progress and while the reliable queue is over its
        high-water mark, so a burst neither drops reliable packets nor grows memory without bound.
        A lossy packet is dropped (and counted in ``lossy_dropped``) when its queue is full.

        Raises:
            LocalProtocolError: the serialized packet exceeds 64 000 bytes (nothing is sent).
            ConnectError: the room is (or becomes) disconnected.
        """
        while True:
            pc = await self._connected_publisher()
            label = RELIABLE_LABEL if reliable else LOSSY_LABEL
            if not reliable:
                data = encode_data_packet(packet)
                if pc.buffered_amount(label) > LOSSY_HIGH_WATER_BYTES:
                    self.lossy_dropped += 1
                    return
                self._trace(">", label, packet, data)
                pc.send(label, data)
                return
            if pc.buffered_amount(label) > RELIABLE_HIGH_WATER_BYTES:
                await pc.wait_buffered_below(label, RELIABLE_LOW_WATER_BYTES)
                continue  # the connection may have changed while we waited
            data = self._sender.stamp(packet)
            self._trace(">", label, packet, data)
            if self._sender.suspended:
                return  # kept in the resend buffer; sent after the resume (PROTOCOL-MAP §10)
            try:
                pc.send(label, data)
            except LocalProtocolError:
                if self._state == ConnectionState.CONN_CONNECTED:
                    raise
                return  # the channel went away under us: the resume resends it
            self._sender.on_buffered_amount(pc.buffered_amount(label))
            return

    async def _connected_publisher(self) -> PeerConnection:
        while True:
            if self._state == ConnectionState.CONN_DISCONNECTED or self._closing:
                raise ConnectError("not connected")
            link = self._link
            if self._state == ConnectionState.CONN_CONNECTED and link is not None:
                pc = link.publisher
                if pc is not None:
                    return pc
            self._connected.clear()
            await self._connected.wait()

    # -- joining -----------------------------------------------------------------------------

    async def _join(self, *, full: bool, reconnect_reason: int = pb.RR_UNKNOWN) -> pb.JoinResponse:
        opts = self._opts
        token = self.refresh_token if full else self._token
        single = opts.single_peer_connection is not False
        transport: SignalTransport | None = None
        request = join_request(
            info=self._client_info(),
            auto_subscribe=opts.auto_subscribe,
            adaptive_stream=opts.adaptive_stream,
        )
        if single:
            url = signal_url_v1(self._url, wrap_join_request(request))
            try:
                transport = await SignalTransport.open(url, token, timeout=opts.connect_timeout_s)
            except JoinRejectedError as exc:
                if opts.single_peer_connection is True or not is_missing_v1_route(exc, url):
                    raise
                _log.info("= server has no /rtc/v1 (404), falling back to /rtc (two PCs)")
                single = False
        if transport is None:
            url = signal_url_v0(self._url, auto_subscribe=opts.auto_subscribe)
            transport = await SignalTransport.open(url, token, timeout=opts.connect_timeout_s)
        link = _Link(sg.SignalSession(join_timeout_s=opts.connect_timeout_s), single)
        self._link = link
        self._attach(link, transport, resume=False)
        join = await link.joined
        for ev in self._roster.apply_join(join):
            self._emit(ev)
        await self._start_peers(link, join)
        return join

    def _client_info(self) -> pb.ClientInfo:
        level = self._opts.client_protocol
        # The DEFLATE_RAW capability belongs to data streams v2 (PROTOCOL-MAP §5, §15).
        return client_info(
            client_protocol=level, capabilities=CLIENT_CAPABILITIES if level >= 2 else ()
        )

    @property
    def client_protocol(self) -> int:
        """The client-to-client level this engine advertises."""
        return self._opts.client_protocol

    def _peer_options(self, join: pb.JoinResponse | None) -> PeerOptions:
        opts = self._opts
        servers: tuple[IceServer, ...]
        if opts.ice_servers is not None:
            servers = opts.ice_servers
        elif opts.ice_addresses and all(_is_loopback(a) for a in opts.ice_addresses):
            # Server-reflexive candidates of a loopback socket are meaningless, and an unanswered
            # STUN query holds aioice's gathering for 5 s (PROTOCOL-MAP §17 ICE servers).
            servers = ()
        else:
            servers = tuple(
                IceServer(urls=tuple(s.urls), username=s.username, credential=s.credential)
                for s in (join.ice_servers if join else ())
            )
        return PeerOptions(ice_addresses=opts.ice_addresses, ice_servers=servers)

    async def _start_peers(self, link: _Link, join: pb.JoinResponse) -> None:
        options = self._peer_options(join)
        pub = PeerConnection(options, on_data=self._on_data, on_state_change=self._on_pc_state)
        link.publisher = pub
        await pub.create_data_channels()
        if not link.single_pc:
            sub = PeerConnection(options, on_data=self._on_data, on_state_change=self._on_pc_state)
            link.subscriber = sub
        await self._negotiate(link)
        primary = link.primary
        assert primary is not None
        await primary.wait_connected(self._opts.connect_timeout_s)
        await primary.wait_channels_open(self._opts.connect_timeout_s)
        if not link.single_pc:
            await pub.wait_connected(self._opts.connect_timeout_s)

    async def _negotiate(self, link: _Link) -> None:
        """Offer on the publisher (the single PC) and apply the matching answer (§2 offer ids)."""
        pc = link.publisher
        if pc is None:
            return
        if link.negotiating:
            link.renegotiate = True
            return
        link.negotiating = True
        try:
            while True:
                link.renegotiate = False
                link.offer_id += 1
                offer_id = link.offer_id
                sdp = await pc.create_offer()
                fut: asyncio.Future[str] = self._loop.create_future()
                link.answers[offer_id] = fut
                link.last_local_offer = pb.SessionDescription(type="offer", sdp=sdp, id=offer_id)
                link.session.send_offer(sdp, offer_id, self._loop.time())
                self._pump(link)
                answer = await fut
                await pc.apply_answer(answer)
                if not link.renegotiate:
                    break
        finally:
            link.negotiating = False

    # -- one connection's plumbing ---------------------------------------------------------

    def _attach(self, link: _Link, transport: SignalTransport, *, resume: bool) -> None:
        link.transport = transport
        link.session.connection_opened(self._loop.time(), resume=resume)
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        if link.outbox is not None:
            link.outbox.put_nowait(None)  # retire the previous connection's writer
        link.outbox = outbox
        self._spawn(link, self._reader(link, transport))
        self._spawn(link, self._writer(link, transport, outbox))
        self._pump(link)

    def _spawn(self, link: _Link, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    async def _reader(self, link: _Link, transport: SignalTransport) -> None:
        try:
            while True:
                frame = await transport.recv()
                now = self._loop.time()
                if _log.isEnabledFor(logging.DEBUG) or self._opts.trace is not None:
                    self._trace_frame(frame, now)
                link.session.receive_data(frame, now)
                self._pump(link)
        except SignalClosed as exc:
            if link.transport is transport:
                link.transport = None
                link.session.connection_lost(self._loop.time(), str(exc))
                self._pump(link)
                self._signal_broke(link, rc.Recovery.RESUME)

    def _trace_frame(self, frame: bytes | str, now: float) -> None:
        raw = frame.encode() if isinstance(frame, str) else frame
        try:
            msg: object = decode_signal_response(frame)
            text = describe(msg)  # type: ignore[arg-type]
        except DecodeError as exc:
            msg, text = exc, f"<malformed {len(raw)} bytes: {exc}>"
        _log.debug("< %s", text)
        if self._opts.trace is not None:
            self._opts.trace("<", "signal", msg, raw, now)

    async def _writer(
        self, link: _Link, transport: SignalTransport, outbox: asyncio.Queue[bytes | None]
    ) -> None:
        while True:
            data = await outbox.get()
            if data is None:
                outbox.task_done()
                return
            try:
                await transport.send(data)
            except SignalClosed:
                return  # the reader notices and starts the recovery
            finally:
                if data is not None:
                    outbox.task_done()

    async def _drain_writer(self, link: _Link) -> None:
        outbox = link.outbox
        if outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await outbox.join()

    def _pump(self, link: _Link) -> None:
        """Flush the session's outputs: frames to the writer, events to handlers, the timer."""
        session = link.session
        outbox = link.outbox
        for request, data in session.requests_to_send():
            now = self._loop.time()
            _log.debug("> %s", describe(request))
            if self._opts.trace is not None:
                self._opts.trace(">", "signal", request, data, now)
            if outbox is not None:
                outbox.put_nowait(data)
        while (event := session.next_event()) is not None:
            self._on_signal_event(link, event)
        deadline = session.get_timer()
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        if deadline is not None and link is self._link:
            link.timer = self._loop.call_at(deadline, self._on_timer, link)

    def _on_timer(self, link: _Link) -> None:
        link.timer = None
        link.session.handle_timer(self._loop.time())
        self._pump(link)

    # -- signal events -----------------------------------------------------------------------

    def _on_signal_event(self, link: _Link, event: sg.SignalEvent) -> None:
        if isinstance(event, sg.Joined):
            if not link.joined.done():
                link.joined.set_result(event.message)
        elif isinstance(event, sg.Resumed):
            if link.resumed is not None and not link.resumed.done():
                link.resumed.set_result(event.message)
        elif isinstance(event, sg.JoinTimedOut):
            err = ConnectError("the server sent no JoinResponse in time")
            if not link.joined.done():
                link.joined.set_exception(err)
            if link.resumed is not None and not link.resumed.done():
                link.resumed.set_exception(err)
        elif isinstance(event, sg.AnswerReceived):
            link.last_remote_answer = pb.SessionDescription(
                type="answer", sdp=event.sdp, id=event.answer_id
            )
            link.mid_to_track_id = dict(event.mid_to_track_id)
            answer = link.answers.pop(event.answer_id, None)
            if answer is not None and not answer.done():
                answer.set_result(event.sdp)
        elif isinstance(event, sg.OfferReceived):
            link.mid_to_track_id = dict(event.mid_to_track_id)
            link.last_remote_offer = pb.SessionDescription(
                type="offer", sdp=event.sdp, id=event.offer_id
            )
            self._spawn(link, self._answer_offer(link, event.sdp, event.offer_id))
        elif isinstance(event, sg.TrickleReceived):
            target = link.publisher
            if not link.single_pc and event.target == pb.SUBSCRIBER:
                target = link.subscriber
            if target is not None:
                self._spawn(link, self._add_candidate(target, event.candidate_init, event.final))
        elif isinstance(event, sg.MediaSectionsRequired):
            pc = link.publisher
            if pc is not None:
                pc.add_recvonly_transceivers(audio=event.num_audios, video=event.num_videos)
                self._spawn(link, self._negotiate(link))
        elif isinstance(event, sg.ParticipantsUpdated):
            for ev in self._roster.apply_participants(event.participants):
                self._emit(ev)
        elif isinstance(event, sg.RoomUpdated):
            for ev in self._roster.apply_room(event.room):
                self._emit(ev)
        elif isinstance(event, sg.RequestAnswered):
            fut2 = self._pending_requests.get(event.request_id)
            if fut2 is not None and not fut2.done():
                if event.reason == pb.RequestResponse.OK:
                    fut2.set_result(None)
                else:
                    name = pb.RequestResponse.Reason.Name(event.reason)
                    fut2.set_exception(RequestRejectedError(name, event.message_text))
        elif isinstance(event, sg.RequestTimedOut):
            fut2 = self._pending_requests.get(event.request_id)
            if fut2 is not None and not fut2.done():
                fut2.set_exception(RequestRejectedError("TIMEOUT", "no answer from the server"))
        elif isinstance(event, sg.LeaveReceived):
            self._on_leave(link, event)
        elif isinstance(event, sg.SignalLost):
            if link.transport is not None:
                link.transport.abort()
        elif isinstance(event, sg.ProtocolViolated):
            _log.warning("= ignoring a malformed signal frame: %s", event.error)
        else:
            self._emit(SignalMessageEvent(event=event))

    def _on_leave(self, link: _Link, event: sg.LeaveReceived) -> None:
        self._leave_reason = event.reason
        if link.resumed is not None and not link.resumed.done():
            # PROTOCOL-MAP §10 step 5: a leave as the first frame of a resume refuses it.
            link.resumed.set_exception(_ResumeRefused(event.reason))
            return
        if not link.joined.done():
            link.joined.set_exception(
                ConnectError(
                    f"server sent leave during join: {pb.DisconnectReason.Name(event.reason)}"
                )
            )
            return
        recovery = rc.choose_recovery(
            signal_ok=False,
            peer_ok=True,
            leave_action=event.action,
            resume_refused=False,
            resume_disabled=not link.single_pc,
        )
        if recovery == rc.Recovery.GIVE_UP:
            self._spawn_supervisor(self._disconnect_from_server(event.reason))
        else:
            self._signal_broke(link, recovery)

    async def _disconnect_from_server(self, reason: DisconnectReasonValue) -> None:
        self._closing = True
        await self._teardown()
        self._finish(reason)

    async def _answer_offer(self, link: _Link, sdp: str, offer_id: int) -> None:
        pc = link.subscriber if not link.single_pc else link.publisher
        if pc is None:
            return
        answer = await pc.apply_offer(sdp)
        link.last_local_answer = pb.SessionDescription(type="answer", sdp=answer, id=offer_id)
        link.session.send_answer(answer, offer_id, self._loop.time())
        self._pump(link)

    async def _add_candidate(self, pc: PeerConnection, candidate_init: str, final: bool) -> None:
        try:
            await pc.add_ice_candidate(candidate_init)
            if final:
                await pc.end_of_candidates()
        except LkError as exc:
            _log.warning("= ignoring an ICE candidate: %s", exc)

    def _on_data(self, label: str, data: bytes) -> None:
        try:
            packet = decode_data_packet(data)
        except DecodeError as exc:
            _data_log.warning("= dropping a malformed packet on %s: %s", label, exc)
            return
        reliable = label == RELIABLE_LABEL
        if _data_log.isEnabledFor(logging.DEBUG):
            _data_log.debug("< %s %s", label, describe(packet))
        self._trace("<", label, packet, data)
        # PROTOCOL-MAP §3: receivers drop reliable packets whose (sender sid, sequence) they saw.
        if reliable and not self._receiver.accept(packet, self._loop.time()):
            return
        self._emit(DataReceived(packet=packet, reliable=reliable))

    def _on_pc_state(self, state: PeerState) -> None:
        link = self._link
        if link is None or self._closing:
            return
        if state == PeerState.FAILED and self._state == ConnectionState.CONN_CONNECTED:
            # aiortc cannot ICE-restart (PROTOCOL-MAP §14): a failed PC means a full reconnect.
            self._signal_broke(link, rc.Recovery.FULL_RECONNECT)

    # -- recovery ----------------------------------------------------------------------------

    def _signal_broke(self, link: _Link, hint: rc.Recovery) -> None:
        if (
            self._closing
            or link is not self._link
            or self._state == ConnectionState.CONN_DISCONNECTED
        ):
            return
        if self._recovery_hint != rc.Recovery.FULL_RECONNECT:
            self._recovery_hint = hint
        if self._supervisor is None or self._supervisor.done():
            self._spawn_supervisor(self._recover())

    def _spawn_supervisor(self, coro: object) -> None:
        self._supervisor = self._loop.create_task(coro)  # type: ignore[arg-type]

    async def _recover(self) -> None:
        policy = self._opts.reconnect_policy
        self._set_state(ConnectionState.CONN_RECONNECTING)
        self._sender.suspend()
        self._emit(EngineReconnecting(full=self._recovery_hint == rc.Recovery.FULL_RECONNECT))
        attempt = 0
        while not self._closing:
            delay = policy.next_delay(attempt, random=self._opts.rng())
            if delay is None:
                break
            await asyncio.sleep(delay)
            attempt += 1
            link = self._link
            single = link.single_pc if link is not None else True
            peer_ok = (
                link is not None
                and link.primary is not None
                and link.primary.connection_state == PeerState.CONNECTED
            )
            hint = self._recovery_hint or rc.Recovery.RESUME
            want_full = hint == rc.Recovery.FULL_RECONNECT or not peer_ok or not single
            try:
                if not want_full and link is not None:
                    async with asyncio.timeout(self._opts.connect_timeout_s):
                        await self._resume(link)
                else:
                    self._recovery_hint = rc.Recovery.FULL_RECONNECT
                    await self._teardown_link()
                    # A new session numbers from 1 again; what was in flight is gone (as in JS).
                    self._sender.reset()
                    self._sender.suspend()
                    async with asyncio.timeout(self._opts.connect_timeout_s):
                        await self._join(full=True)
                    self._resend(self._sender.resume(0))
            except _ResumeRefused:
                _log.info("= resume refused; next attempt is a full reconnect")
                self._recovery_hint = rc.Recovery.FULL_RECONNECT
                continue
            except (LkError, TimeoutError, OSError) as exc:
                _log.info("= reconnect attempt %d failed: %s", attempt, exc)
                if isinstance(exc, JoinRejectedError) and exc.status in (401, 403, 404):
                    break
                continue
            current = self._link
            if (
                current is None
                or current.transport is None
                or (current.session.state != sg.SignalState.CONNECTED)
            ):
                # The signal dropped again while we were finishing (e.g. the server closed the
                # socket right after the reconnect response): that attempt did not succeed.
                _log.info("= signal lost again during reconnect attempt %d", attempt)
                continue
            full = self._recovery_hint == rc.Recovery.FULL_RECONNECT
            self._recovery_hint = None
            self._set_state(ConnectionState.CONN_CONNECTED)
            self._emit(EngineReconnected(full=full))
            return
        if not self._closing:
            self._closing = True
            await self._teardown()
            reason = self._leave_reason or pb.CONNECTION_TIMEOUT
            self._finish(reason)

    async def _resume(self, link: _Link) -> None:
        """Signal-only resume on /rtc/v1 keeping the peer connection (PROTOCOL-MAP §10, §16)."""
        session = link.session
        request = join_request(
            info=self._client_info(),
            auto_subscribe=self._opts.auto_subscribe,
            adaptive_stream=self._opts.adaptive_stream,
            reconnect=True,
            reconnect_reason=pb.RR_SIGNAL_DISCONNECTED,
            participant_sid=session.participant_sid or "",
        )
        url = signal_url_v1(self._url, wrap_join_request(request))
        transport = await SignalTransport.open(
            url, self.refresh_token, timeout=self._opts.connect_timeout_s
        )
        link.resumed = self._loop.create_future()
        self._attach(link, transport, resume=True)
        try:
            await link.resumed
        except BaseException:
            link.transport = None
            await transport.close()
            raise
        finally:
            link.resumed = None
        resumed = session.reconnect_response
        session.send_sync_state(self._sync_state(link), self._loop.time())
        session.flush_queued(self._loop.time())
        self._pump(link)
        # Resend reliable packets the server did not get, before anything new (PROTOCOL-MAP §10).
        last = resumed.last_message_seq if resumed is not None else 0
        self._resend(self._sender.resume(last))

    def _resend(self, packets: list[bytes]) -> None:
        link = self._link
        pc = link.publisher if link is not None else None
        if pc is None:
            return
        for data in packets:
            pc.send(RELIABLE_LABEL, data)

    def _sync_state(self, link: _Link) -> pb.SyncState:
        sync = pb.SyncState()
        if link.last_remote_answer is not None:
            sync.answer.CopyFrom(link.last_remote_answer)
        if link.last_local_offer is not None:
            sync.offer.CopyFrom(link.last_local_offer)
        sync.subscription.subscribe = not self._opts.auto_subscribe
        pc = link.publisher
        if pc is not None:
            for label, channel_id in pc.channel_ids().items():
                sync.data_channels.add(label=label, id=channel_id, target=pb.PUBLISHER)
        sync.datachannel_receive_states.extend(self._receiver.receive_states(self._loop.time()))
        return sync

    # -- teardown ----------------------------------------------------------------------------

    async def _teardown_link(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        # Request ids and their timeouts belong to the session being dropped (PROTOCOL-MAP §7):
        # a new session starts ids at 1 again, so nothing pending can be answered any more.
        for pending in self._pending_requests.values():
            if not pending.done():
                pending.set_exception(ConnectError("the connection was replaced before the answer"))
        if link.timer is not None:
            link.timer.cancel()
        outbox, link.outbox = link.outbox, None
        if outbox is not None:
            outbox.put_nowait(None)
        for fut in (link.joined, link.resumed, *link.answers.values()):
            if fut is not None and not fut.done():
                fut.cancel()
        transport, link.transport = link.transport, None
        current = asyncio.current_task()
        tasks = [t for t in link.tasks if t is not current]
        for t in tasks:
            t.cancel()
        # Peer connections first: their sockets matter most if this teardown is cut short.
        for pc in (link.publisher, link.subscriber):
            if pc is not None:
                await pc.close()
        if transport is not None:
            await transport.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _teardown(self) -> None:
        await self._teardown_link()
        for fut in self._pending_requests.values():
            if not fut.done():
                fut.set_exception(ConnectError("disconnected"))

    def _finish(self, reason: DisconnectReasonValue) -> None:
        was = self._state
        self._set_state(ConnectionState.CONN_DISCONNECTED)
        if was != ConnectionState.CONN_DISCONNECTED or reason != pb.CLIENT_INITIATED:
            for ev in self._roster.clear(reason):
                self._emit(ev)
            self._emit(EngineDisconnected(reason=reason))

    # -- helpers -----------------------------------------------------------------------------

    def _require_link(self) -> _Link:
        link = self._link
        if link is None:
            raise LocalProtocolError("not connected")
        return link

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state
        if state != ConnectionState.CONN_RECONNECTING:
            self._connected.set()  # wake senders: go on, or fail as disconnected

    def _emit(self, event: EngineEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logging.getLogger("lkproto").exception("event handler failed for %r", event)

    def _trace(self, direction: Direction, channel: str, message: object, raw: bytes) -> None:
        if self._opts.trace is not None:
            self._opts.trace(direction, channel, message, raw, self._loop.time())


class _ResumeRefused(ConnectError):
    def __init__(self, reason: DisconnectReasonValue) -> None:
        super().__init__(f"resume refused: {pb.DisconnectReason.Name(reason)}")
        self.reason = reason


def _is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1") or address.startswith("127.")
