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
from typing import Any, Final, Literal, TypeAlias

from lkproto.asyncio.peer import IceServer, PeerConnection, PeerOptions, PeerState
from lkproto.asyncio.signal import SignalClosed, SignalTransport, is_missing_v1_route
from lkproto.asyncio.tap import (
    TAP_RTP_INTERVAL_S,
    TapCallback,
    TraceCallback,
    Tracer,
    receivers_by_mid,
    sample_rtp,
)
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
    "LocalInfoUpdated",
    "LocalTrackRepublished",
    "MediaTrackEnded",
    "MediaTrackReceived",
    "SignalMessageEvent",
    "TapCallback",
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
# PROTOCOL-MAP §9 Publishing step 2: JS gives AddTrackRequest 10 s to be answered.
PUBLISH_TIMEOUT_S: Final = 10.0

Direction = Literal["<", ">"]
DisconnectReasonValue: TypeAlias = "pb.DisconnectReason.ValueType"


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
    relay_only: bool = False
    """Gather TURN-relayed candidates only (``RtcConfiguration`` ``TRANSPORT_RELAY``)."""
    reconnect_policy: rc.ReconnectPolicy = field(default_factory=rc.ReconnectPolicy)
    trace: TraceCallback | None = None
    tap: TapCallback | None = None
    """Receives a :class:`lkproto.wire.tap.TapRecord` per signal message, data packet and RTP
    counter sample."""
    tap_file: str | None = None
    """JSON Lines file the records are appended to; None: ``$LKPROTO_TAP`` if set."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTrackReceived:
    """A downstream media section now carries track ``sid`` (PROTOCOL-MAP §9 Subscribing).

    ``track`` is aiortc's remote track for the section; it is reused if the server later puts
    another track on the same section (§14), which arrives as ended + received.
    """

    sid: str
    mid: str
    kind: str
    track: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTrackEnded:
    """Track ``sid`` no longer arrives on section ``mid`` (unsubscribed, replaced or torn down)."""

    sid: str
    mid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalInfoUpdated:
    """The server sent a newer snapshot of ourselves (it may differ only in track details)."""

    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrackRepublished:
    """After a full reconnect a local track was published again under a new SID."""

    cid: str
    old_sid: str
    info: pb.TrackInfo
    media: Any


class _Published:
    """A local track we publish: what to send again after a full reconnect."""

    def __init__(
        self, request: pb.AddTrackRequest, media: Any, codecs: tuple[str, ...], info: pb.TrackInfo
    ) -> None:
        self.request = request
        self.media = media
        self.codecs = codecs
        self.info = info
        self.transceiver: Any = None
        self.muted = request.muted
        self.on_sender: Callable[[Any], None] | None = None
        self.media_factory: Callable[[], Any] | None = None


EngineEvent: TypeAlias = (
    EngineConnected
    | EngineReconnecting
    | EngineReconnected
    | EngineDisconnected
    | DataReceived
    | SignalMessageEvent
    | MediaTrackReceived
    | MediaTrackEnded
    | LocalTrackRepublished
    | LocalInfoUpdated
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
        # Downstream sections we receive on: mid -> (track SID, aiortc remote track).
        self.receiving: dict[str, tuple[str, Any]] = {}
        self.negotiated: list[asyncio.Future[None]] = []
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
        self._published: dict[str, _Published] = {}
        self._publishing: dict[str, asyncio.Future[pb.TrackInfo]] = {}
        self.lossy_dropped = 0
        self._leave_reason: DisconnectReasonValue = pb.UNKNOWN_REASON
        # None unless someone listens: hot paths then pay one `is None` test (lkproto.asyncio.tap).
        self._tracer: Tracer | None = None
        self._rtp_task: asyncio.Task[None] | None = None

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
            OSError: the tap file cannot be opened.

        Cancelling leaves nothing behind: sockets, peer connections and tasks are closed.
        """
        if self._state != ConnectionState.CONN_DISCONNECTED or self._link is not None:
            raise LocalProtocolError("already connected or connecting")
        self._tracer = Tracer.create(
            trace=options.trace, tap=options.tap, tap_file=options.tap_file
        )
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
        if self._tracer is not None and self._tracer.wants_records:
            self._rtp_task = self._loop.create_task(self._sample_rtp_periodically())
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

    # -- media (PROTOCOL-MAP §9, §16) ------------------------------------------------------------

    async def publish_track(
        self,
        request: pb.AddTrackRequest,
        media: Any,
        *,
        codecs: tuple[str, ...] = (),
        on_sender: Callable[[Any], None] | None = None,
        media_factory: Callable[[], Any] | None = None,
    ) -> pb.TrackInfo:
        """Publish ``media`` (an aiortc track whose ``id`` is ``request.cid``).

        AddTrackRequest → TrackPublishedResponse (10 s) → a ``sendonly`` section → re-offer, and
        returns once the answer covering the new section is applied. ``on_sender`` gets aiortc's
        ``RTCRtpSender`` before the first frame (also after a full reconnect), e.g. to install an
        encoder. ``media_factory`` gives a live track again after aiortc stopped ``media``
        (it stops a sender's track when its connection closes, i.e. on a full reconnect).

        Raises:
            RequestRejectedError: the server refused (``NOT_ALLOWED`` for a source the token may
                not publish, ``UNSUPPORTED_TYPE``), or ``TIMEOUT`` without an answer.
            LocalProtocolError: not connected, or ``request.cid`` is already published.
            ConnectError: the connection was lost while publishing.
        """
        link = self._require_link()
        cid = request.cid
        if not cid or cid in self._published or cid in self._publishing:
            raise LocalProtocolError(f"track {cid!r} is already published (or has no cid)")
        info = await self._add_track(link, request)
        published = _Published(request, media, codecs, info)
        published.on_sender = on_sender
        published.media_factory = media_factory
        self._published[cid] = published
        try:
            await self._attach_media(link, published)
        except BaseException:
            self._published.pop(cid, None)
            raise
        return info

    async def unpublish_track(self, cid: str) -> None:
        """Stop sending ``cid`` and re-offer; the server then ends the publication (§16).

        Raises:
            LocalProtocolError: ``cid`` is not published.
        """
        published = self._published.pop(cid, None)
        if published is None:
            raise LocalProtocolError(f"track {cid!r} is not published")
        link = self._link
        if link is None or link.publisher is None or published.transceiver is None:
            return
        if (tracer := self._tracer) is not None and tracer.wants_records and published.info.sid:
            kind = "video" if published.info.type == pb.VIDEO else "audio"
            endpoint: tuple[Direction, str, str, Any] = (
                ">",
                published.info.sid,
                kind,
                published.transceiver.sender,
            )
            await sample_rtp(tracer, [endpoint], self._loop.time(), final=True)
        link.publisher.stop_sending(published.transceiver)
        await self._negotiate(link)

    def set_track_muted(self, cid: str, muted: bool) -> None:
        """Tell the server (``MuteTrackRequest``) and stop/restart sending media frames.

        Raises:
            LocalProtocolError: ``cid`` is not published.
        """
        published = self._published.get(cid)
        if published is None:
            raise LocalProtocolError(f"track {cid!r} is not published")
        published.muted = muted
        published.request.muted = muted
        _set_sender_enabled(published.transceiver, not muted)
        link = self._link
        if link is not None:
            mute = pb.MuteTrackRequest(sid=published.info.sid, muted=muted)
            link.session.send(pb.SignalRequest(mute=mute), self._loop.time())
            self._pump(link)

    def published_sender(self, cid: str) -> Any:
        """aiortc's ``RTCRtpSender`` for a published track (None before negotiation)."""
        published = self._published.get(cid)
        if published is None or published.transceiver is None:
            return None
        return published.transceiver.sender

    def published_info(self, cid: str) -> pb.TrackInfo | None:
        published = self._published.get(cid)
        return published.info if published is not None else None

    def update_subscription(self, track_sids: list[str], subscribe: bool) -> None:
        """``UpdateSubscription{track_sids, subscribe}`` (PROTOCOL-MAP §9 Subscribing)."""
        link = self._require_link()
        update = pb.UpdateSubscription(track_sids=track_sids, subscribe=subscribe)
        link.session.send(pb.SignalRequest(subscription=update), self._loop.time())
        self._pump(link)

    def update_track_settings(self, settings: pb.UpdateTrackSettings) -> None:
        """``UpdateTrackSettings`` (enable/disable, wanted dimensions, fps, quality)."""
        link = self._require_link()
        link.session.send(pb.SignalRequest(track_setting=settings), self._loop.time())
        self._pump(link)

    async def _add_track(self, link: _Link, request: pb.AddTrackRequest) -> pb.TrackInfo:
        fut: asyncio.Future[pb.TrackInfo] = self._loop.create_future()
        self._publishing[request.cid] = fut
        try:
            link.session.send(pb.SignalRequest(add_track=request), self._loop.time())
            self._pump(link)
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    return await fut
            except TimeoutError as exc:
                what = f"no track_published for {request.cid!r} within {PUBLISH_TIMEOUT_S} s"
                raise RequestRejectedError("TIMEOUT", what) from exc
        finally:
            self._publishing.pop(request.cid, None)

    async def _attach_media(self, link: _Link, published: _Published) -> None:
        pc = link.publisher
        if pc is None:
            raise ConnectError("no publisher peer connection")
        published.transceiver = pc.add_send_track(published.media, codecs=published.codecs)
        if published.on_sender is not None:
            published.on_sender(published.transceiver.sender)
        _set_sender_enabled(published.transceiver, not published.muted)
        await self._negotiate(link)

    async def _republish(self) -> None:
        """Publish every local track again on the new connection of a full reconnect (the
        official SDKs do the same and emit ``local_track_republished``)."""
        link = self._link
        if link is None:
            return
        for cid, published in list(self._published.items()):
            old_sid = published.info.sid
            if published.media_factory is not None and published.media.readyState != "live":
                # A new aiortc track has a new id, which must be the new AddTrack's cid (§9).
                published.media = published.media_factory()
                published.request.cid = published.media.id
                del self._published[cid]
                self._published[published.request.cid] = published
            try:
                published.info = await self._add_track(link, published.request)
                await self._attach_media(link, published)
            except LkError as exc:
                _log.warning("= could not republish %s after a full reconnect: %s", cid, exc)
                continue
            self._emit(
                LocalTrackRepublished(
                    cid=published.request.cid,
                    old_sid=old_sid,
                    info=published.info,
                    media=published.media,
                )
            )

    def _sync_receiving(self, link: _Link, pc: PeerConnection) -> None:
        """Diff the sections we receive on against the latest mid → track SID mapping (§2) and
        report subscriptions that started, ended or moved to another section."""
        mapping = link.mid_to_track_id
        now: dict[str, tuple[str, Any]] = {}
        for mid, track in pc.receiving().items():
            sid = mapping.get(mid)
            if sid is None:
                # The first msid of a section names its track (§9); reuse makes it stale, so it
                # only stands in when the server sent no mapping at all.
                sid = track.id if not mapping and str(track.id).startswith("TR_") else None
            if sid:
                now[mid] = (sid, track)
        before = link.receiving
        link.receiving = now
        for mid, (sid, _) in before.items():
            if now.get(mid, ("", None))[0] != sid:
                self._emit(MediaTrackEnded(sid=sid, mid=mid))
        for mid, (sid, track) in now.items():
            if before.get(mid, ("", None))[0] != sid:
                self._emit(MediaTrackReceived(sid=sid, mid=mid, kind=track.kind, track=track))

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
                if (tracer := self._tracer) is not None:
                    tracer.packet(">", label, packet, data, self._loop.time())
                pc.send(label, data)
                return
            if pc.buffered_amount(label) > RELIABLE_HIGH_WATER_BYTES:
                await pc.wait_buffered_below(label, RELIABLE_LOW_WATER_BYTES)
                continue  # the connection may have changed while we waited
            data = self._sender.stamp(packet)
            if (tracer := self._tracer) is not None:
                tracer.packet(">", label, packet, data, self._loop.time())
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
        return PeerOptions(
            ice_addresses=opts.ice_addresses, ice_servers=servers, relay_only=opts.relay_only
        )

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
            # The running round re-offers once more; wait until that round is answered.
            link.renegotiate = True
            done: asyncio.Future[None] = self._loop.create_future()
            link.negotiated.append(done)
            await done
            return
        link.negotiating = True
        error: BaseException | None = None
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
                if link.single_pc:
                    self._sync_receiving(link, pc)
                if not link.renegotiate:
                    break
        except BaseException as exc:
            error = exc
            raise
        finally:
            link.negotiating = False
            waiters, link.negotiated = link.negotiated, []
            for w in waiters:
                if w.done():
                    continue
                if error is None:
                    w.set_result(None)
                else:
                    w.set_exception(ConnectError(f"renegotiation failed: {error!r}"))

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
                link.session.receive_data(frame, now)
                if self._tracer is not None or _log.isEnabledFor(logging.DEBUG):
                    self._trace_frame(link, frame, now)
                self._pump(link)
        except SignalClosed as exc:
            if link.transport is transport:
                link.transport = None
                link.session.connection_lost(self._loop.time(), str(exc))
                self._pump(link)
                self._signal_broke(link, rc.Recovery.RESUME)

    def _trace_frame(self, link: _Link, frame: bytes | str, now: float) -> None:
        """Log and tap an inbound frame, reusing the message the session just decoded."""
        raw = frame.encode() if isinstance(frame, str) else bytes(frame)
        msg: pb.SignalResponse | DecodeError | None = link.session.last_received
        if msg is None:
            # Undecodable, or ignored before decoding (a socket the session left): rare.
            try:
                msg = decode_signal_response(frame)
            except DecodeError as exc:
                msg = exc
        if _log.isEnabledFor(logging.DEBUG):
            text = describe(msg) if not isinstance(msg, DecodeError) else None
            _log.debug("< %s", text or f"<malformed {len(raw)} bytes: {msg}>")
        if (tracer := self._tracer) is not None:
            tracer.signal("<", msg, raw, now)

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
        tracer = self._tracer
        for request, data in session.requests_to_send():
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("> %s", describe(request))
            if tracer is not None:
                tracer.signal(">", request, data, self._loop.time())
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
                # The roster takes the join here, in the reader, so that a participant update
                # already buffered behind it is never applied before it.
                for ev in self._roster.apply_join(event.message):
                    self._emit(ev)
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
            if link.single_pc:
                # Single PC: downstream sections are named in the server's answers (§2).
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
            local_before = self._roster.local
            for ev in self._roster.apply_participants(event.participants):
                self._emit(ev)
            local = self._roster.local
            if local is not None and local is not local_before:
                # Our own tracks produce no roster events (their codec, size and mute state
                # arrive this way), so the room refreshes its local view from here.
                self._emit(LocalInfoUpdated(info=local))
        elif isinstance(event, sg.RoomUpdated):
            for ev in self._roster.apply_room(event.room):
                self._emit(ev)
        elif isinstance(event, sg.MessageReceived) and event.kind == "track_published":
            published = event.message.track_published
            waiting = self._publishing.get(published.cid)
            if waiting is not None and not waiting.done():
                waiting.set_result(published.track)
            self._emit(SignalMessageEvent(event=event))
        elif (
            isinstance(event, sg.RequestAnswered)
            and event.message.WhichOneof("request") == "add_track"
            and event.reason != pb.RequestResponse.OK
        ):
            # PROTOCOL-MAP §9 Publishing step 2: NOT_ALLOWED / UNSUPPORTED_TYPE for an AddTrack.
            cid = event.message.add_track.cid
            waiting = self._publishing.get(cid)
            if waiting is not None and not waiting.done():
                name = pb.RequestResponse.Reason.Name(event.reason)
                waiting.set_exception(RequestRejectedError(name, event.message_text))
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
        self._sync_receiving(link, pc)
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
            if (tracer := self._tracer) is not None:
                tracer.packet("<", label, exc, data, self._loop.time())
            return
        reliable = label == RELIABLE_LABEL
        if _data_log.isEnabledFor(logging.DEBUG):
            _data_log.debug("< %s %s", label, describe(packet))
        if (tracer := self._tracer) is not None:
            tracer.packet("<", label, packet, data, self._loop.time())
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
                    await self._republish()
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
        for published in self._published.values():
            sync.publish_tracks.add(cid=published.request.cid, track=published.info)
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
        receiving, link.receiving = link.receiving, {}
        for mid, (sid, _) in receiving.items():
            self._emit(MediaTrackEnded(sid=sid, mid=mid))
        for published in self._published.values():
            published.transceiver = None
        current = asyncio.current_task()
        tasks = [t for t in link.tasks if t is not current]
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await self._sample_rtp(link, final=True)  # last counters before the PCs go
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
        self._close_tracer()  # flushes the tap file: every path to disconnected passes here
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

    # -- wire tap: RTP counters (lkproto.asyncio.tap) ---------------------------------------

    def _rtp_endpoints(self, link: _Link) -> list[tuple[Direction, str, str, Any]]:
        """(direction, track SID, kind, aiortc sender/receiver) of every track with media."""
        out: list[tuple[Direction, str, str, Any]] = []
        for published in self._published.values():
            if published.transceiver is not None and published.info.sid:
                kind = "video" if published.info.type == pb.VIDEO else "audio"
                out.append((">", published.info.sid, kind, published.transceiver.sender))
        receivers: dict[str, Any] = {}
        for pc in (link.publisher, link.subscriber):
            if pc is not None:
                receivers.update(receivers_by_mid(pc))
        for mid, (sid, track) in link.receiving.items():
            if mid in receivers:
                out.append(("<", sid, str(track.kind), receivers[mid]))
        return out

    async def _sample_rtp(self, link: _Link | None, *, final: bool = False) -> None:
        tracer = self._tracer
        if tracer is None or not tracer.wants_records or link is None:
            return
        await sample_rtp(tracer, self._rtp_endpoints(link), self._loop.time(), final=final)

    async def _sample_rtp_periodically(self) -> None:
        while True:
            await asyncio.sleep(TAP_RTP_INTERVAL_S)
            await self._sample_rtp(self._link)

    def _close_tracer(self) -> None:
        task, self._rtp_task = self._rtp_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self._tracer is not None:
            self._tracer.close()


def _set_sender_enabled(transceiver: Any, enabled: bool) -> None:
    """Mute by having aiortc's sender drop frames instead of encoding them (through the seam:
    :func:`lkproto.asyncio._seam.set_sender_enabled`)."""
    from lkproto.asyncio._seam import set_sender_enabled

    if transceiver is None:
        return
    if not set_sender_enabled(transceiver.sender, enabled):  # pragma: no cover - other aiortc
        _log.warning("= aiortc sender has no enabled flag; muting only tells the server")


class _ResumeRefused(ConnectError):
    def __init__(self, reason: DisconnectReasonValue) -> None:
        super().__init__(f"resume refused: {pb.DisconnectReason.Name(reason)}")
        self.reason = reason


def _is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1") or address.startswith("127.")
