"""One engine per room: drives the sans-I/O machines over a WebSocket and aiortc.

The engine makes no protocol decisions of its own. It is a driver for four sans-I/O machines:

* :class:`lkproto.core.signal.SignalSession` (one per connection): frames and timer ticks in,
  frames to write and :data:`~lkproto.core.signal.AnySignalEvent` out;
* :class:`lkproto.core.negotiation.Negotiator` (one per connection): offer ids, overlapping
  renegotiations merged, answers matched, the descriptions ``SyncState`` needs;
* :class:`lkproto.core.publish.PublishTracker` (one per room): AddTrackRequests by cid, their
  deadline, the published set for ``SyncState`` and republishing;
* :class:`lkproto.core.reconnect.Recoverer` (one per room): what every trouble calls for (resume,
  full reconnect, give up) and when the next attempt is due.

For each machine the driver feeds inputs, flushes outputs and keeps its one deadline armed with
:class:`lkproto.asyncio._timer.DeadlineTimer`. It hands participant snapshots to
:class:`lkproto.core.roster.Roster` and applies SDP and ICE to
:class:`lkproto.asyncio.peer.PeerConnection`. What comes out is a stream of
:data:`EngineEvent` for ``lkproto.rtc``.

Tasks per connection: a reader (frames in) and a writer (frames out); SDP work (creating an offer,
applying an answer or a server offer) runs in short tasks of the connection. A recovery attempt
runs in a task of its own when the :class:`~lkproto.core.reconnect.Recoverer` says it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeVar, assert_never

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.asyncio.connection_state import ConnectionState
from lkproto.asyncio.peer import IceServer, PeerConnection, PeerOptions, PeerState, load_webrtc
from lkproto.asyncio.publish import prepare_sender
from lkproto.asyncio.signal import (
    SignalClosed,
    Transport,
    TransportFactory,
    is_missing_v1_route,
    open_transport,
)
from lkproto.asyncio.tap import (
    TAP_RTP_INTERVAL_S,
    TapCallback,
    TraceCallback,
    Tracer,
    sample_rtp,
)
from lkproto.core import negotiation as ng
from lkproto.core import publish as pu
from lkproto.core import reconnect as rc
from lkproto.core import reliable as rl
from lkproto.core import roster as ro
from lkproto.core import signal as sg
from lkproto.core.durations import optional_positive_seconds, positive_seconds
from lkproto.core.simulcast import announce_simulcast
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
from lkproto.wire.channels import DATA_TRACK_LABEL, LOSSY_LABEL, RELIABLE_LABEL

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
# PROTOCOL-MAP §3 Buffered-amount thresholds (JS values): a reliable send waits while more than
# the high-water mark is queued, until the queue is below the low-water mark; lossy packets are
# dropped when their channel's queue is full.
RELIABLE_HIGH_WATER_BYTES: Final = 1 << 20
RELIABLE_LOW_WATER_BYTES: Final = 64 << 10
LOSSY_HIGH_WATER_BYTES: Final = 256 << 10
# PROTOCOL-MAP §9 Publishing step 2 (the rule lives in lkproto.core.publish).
PUBLISH_TIMEOUT_S: Final = pu.PUBLISH_TIMEOUT_S
# How long a data channel closed under a connected peer waits for the signal's ``leave`` before
# it counts as a failed transport (issue 15).
_CHANNEL_CLOSED_GRACE_S: Final = 1.0
# How often the dead-transport watch looks (the rule: lkproto.core.reconnect.transport_stalled).
_TRANSPORT_CHECK_S: Final = 1.0
# A client-initiated leave first gives reliable data already accepted by ``publish_data`` (and
# the streams built on it) this long to be acknowledged by the server's SCTP: ``publish_data``
# returns once a packet is queued, and tearing the association down drops what is queued. The
# bound keeps ``disconnect()`` prompt over a dead transport.
DISCONNECT_DRAIN_S: Final = 2.0
_DRAIN_POLL_S: Final = 0.01
# How long a failed reconnect attempt's ``leave`` may take to reach the signal socket before the
# attempt's connection is closed (the signal's TCP works during a UDP outage; the bound keeps the
# next attempt on the policy's schedule when it does not).
_ABANDON_LEAVE_DRAIN_S: Final = 0.5

Direction = Literal["<", ">"]
DisconnectReasonValue: TypeAlias = "pb.DisconnectReason.ValueType"


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
    publish_timeout_s: float = PUBLISH_TIMEOUT_S
    """How long an AddTrackRequest waits for TrackPublishedResponse (PROTOCOL-MAP §9)."""
    negotiation_timeout_s: float | None = ng.NEGOTIATION_TIMEOUT_S
    """How long an offer waits for its answer before the renegotiation fails; None: no limit."""
    transport_factory: TransportFactory | None = None
    """Opens the signalling connection; None: a WebSocket
    (:func:`lkproto.asyncio.signal.open_transport`). Tests pass
    :meth:`lkproto.testing.SignalPeer.connect`."""


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
    another track on the same section (§14), which arrives as ended + received. ``pc`` is the
    connection it arrives on (``pc.receivers()[mid]`` is its aiortc receiver).
    """

    sid: str
    mid: str
    kind: str
    track: Any
    pc: PeerConnection | None = None


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


class _Media:
    """The media side of a local track (its announcement is in the PublishTracker)."""

    def __init__(
        self, description: pu.TrackDescription, media: Any, factory: Callable[[], Any] | None
    ) -> None:
        self.description = description
        self.media = media
        self.factory = factory
        self.transceiver: Any = None


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

    def __init__(
        self,
        session: sg.SignalSession,
        single_pc: bool,
        negotiator: ng.Negotiator | None = None,
        on_signal_due: Callable[[_Link, float], None] | None = None,
        on_negotiation_due: Callable[[_Link, float], None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.session = session
        self.negotiator = negotiator if negotiator is not None else ng.Negotiator()
        self.single_pc = single_pc
        self.transport: Transport | None = None
        self.publisher: PeerConnection | None = None
        self.subscriber: PeerConnection | None = None  # v0 only
        self.tasks: set[asyncio.Task[None]] = set()
        signal_due = on_signal_due or _nothing_due
        negotiation_due = on_negotiation_due or _nothing_due
        self.signal_timer = DeadlineTimer(
            loop, session.get_timer, lambda now: signal_due(self, now)
        )
        self.negotiation_timer = DeadlineTimer(
            loop, self.negotiator.get_timer, lambda now: negotiation_due(self, now)
        )
        self.joined: asyncio.Future[pb.JoinResponse] = loop.create_future()
        self.resumed: asyncio.Future[pb.ReconnectResponse] | None = None
        # Negotiation tickets (lkproto.core.negotiation) -> callers waiting for them.
        self.negotiated: dict[int, list[asyncio.Future[None]]] = {}
        # An offer was dropped while the signal was down: offer again once resumed.
        self.offer_dropped = False
        self.mid_to_track_id: dict[str, str] = {}
        # Downstream sections we receive on: mid -> (track SID, aiortc remote track).
        self.receiving: dict[str, tuple[str, Any]] = {}
        self.outbox: asyncio.Queue[bytes | None] | None = None

    @property
    def primary(self) -> PeerConnection | None:
        return self.publisher if self.single_pc else self.subscriber


def _nothing_due(link: _Link, now: float) -> None:
    """Timer callback of a link built without a driver (tests of the subscription diff)."""


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
        # The time bound of a full-reconnect attempt's join while it runs (see _on_leave).
        self._attempt_window: asyncio.Timeout | None = None
        # When that bound was narrowed to the attempt's ICE window (_narrow_to_ice_window).
        self._ice_window_ends: float | None = None
        self._ice_window_s = 0.0  # the length of the window that ends at _ice_window_ends
        # A failed attempt's link while it says goodbye (_abandon_attempt): whatever it still
        # reports is no trouble of the room's.
        self._abandoned: _Link | None = None
        self._recovery_started_at = 0.0
        # Identity -> SID of the other participants when the current recovery started: whom a
        # full reconnect's hold waits for (core/reconnect.py RejoinHold).
        self._recovery_before: dict[str, str] = {}
        self._recovery_room_sid = ""
        # After a full reconnect, reliable sends wait here until those participants are back.
        self._hold: rc.RejoinHold | None = None
        self._hold_timer = DeadlineTimer(self._loop, self._hold_deadline, self._on_hold_due)
        self._closing = False
        self._pending_requests: dict[int, asyncio.Future[None]] = {}
        # Metadata updates sent to a server that answers no success (see update_metadata):
        # request id -> the requested (name, metadata, attributes).
        self._echo_waits: dict[int, tuple[str | None, str | None, Mapping[str, str] | None]] = {}
        self._sender = rl.ReliableSender()
        self._receiver = rl.ReliableReceiver()
        # Kept across our own reconnects: a sender's resend can reach us after either side's.
        self._nonces = rl.UserNonceFilter()
        self._connected = asyncio.Event()
        self._media: dict[str, _Media] = {}
        self._publishing: dict[str, asyncio.Future[pb.TrackInfo]] = {}
        self._tracker = pu.PublishTracker()
        self._publish_timer = DeadlineTimer(
            self._loop, self._tracker.get_timer, self._on_publish_due
        )
        self._recoverer = rc.Recoverer(rc.ReconnectPolicy(), random=random.random)
        self._recovery_timer = DeadlineTimer(
            self._loop, self._recoverer.get_timer, self._on_recovery_due
        )
        self.lossy_dropped = 0
        self.data_sealer: Callable[[pb.DataPacket], pb.DataPacket] | None = None
        """Set by an encrypted room: every outgoing packet passes through it, so the resend
        buffer and the wire only hold what it returns (lkproto.asyncio.e2ee, PROTOCOL-MAP §11).
        A reliable packet gets its sequence and user nonce first (core/reliable.py "Nonces")."""
        self.sender_hook: Callable[[Any, pu.TrackDescription], None] | None = None
        self.data_track_sink: Callable[[bytes], None] | None = None
        """Set by the room: receives every raw ``_data_track`` message (PROTOCOL-MAP §12 packets
        are not protobuf and are decoded by lkproto.core.data_track)."""
        self.data_track_dropped = 0
        self.data_peeker: Callable[[str, pb.DataPacket], pb.DataPacket | None] | None = None
        """Given to the wire tap so that it can show what encrypted packets decrypt to."""
        """Called with each aiortc sender once it is prepared, before its first frame (E2EE)."""
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

    def peer_connections(self) -> tuple[PeerConnection | None, PeerConnection | None]:
        """``(publisher, subscriber)`` of the current link, for statistics (lkproto.rtc.stats).

        With a single peer connection the subscriber is None: the publisher carries both ways.
        """
        link = self._link
        return (None, None) if link is None else (link.publisher, link.subscriber)

    def rtp_endpoints(self) -> list[tuple[Direction, str, str, Any]]:
        """``(direction, track SID, kind, aiortc sender or receiver)`` of every track with media
        now (``>`` published, ``<`` subscribed), for statistics (lkproto.rtc.stats)."""
        link = self._link
        return [] if link is None else self._rtp_endpoints(link)

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
        positive_seconds("publish_timeout_s", options.publish_timeout_s)
        optional_positive_seconds("negotiation_timeout_s", options.negotiation_timeout_s)
        # lkproto.rtc imports no WebRTC stack (issue 18): it loads here, before the signal socket
        # opens, so a missing rtc extra fails before any network I/O.
        load_webrtc()
        self._publish_timer.close()
        self._recovery_timer.close()
        self._tracker = pu.PublishTracker(timeout_s=options.publish_timeout_s)
        self._media.clear()  # a new session publishes nothing yet
        self._publish_timer = DeadlineTimer(
            self._loop, self._tracker.get_timer, self._on_publish_due
        )
        self._recoverer = rc.Recoverer(
            options.reconnect_policy,
            random=options.rng,
            attempt_timeout_s=options.connect_timeout_s,
        )
        self._recovery_timer = DeadlineTimer(
            self._loop, self._recoverer.get_timer, self._on_recovery_due
        )
        self._tracer = Tracer.create(
            trace=options.trace, tap=options.tap, tap_file=options.tap_file
        )
        if self._tracer is not None:
            self._tracer.opener = self.data_peeker
        self._opts, self._url, self._token = options, url, token
        self._closing = False
        self._hold = None
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
        self._recoverer.cancel()
        self._recovery_timer.rearm()
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, LkError):
                await self._supervisor
        if self._hold is not None:
            # Leaving: what the hold kept goes to whoever is in the room, then the drain below.
            self._hold.release("disconnect")
            self._after_hold_input()
        link = self._link
        if link is not None and link.transport is not None:
            await self._drain_reliable(link)
            with contextlib.suppress(LkError):
                link.session.send_leave(self._loop.time(), reason=reason)
                self._pump(link)
                await self._drain_writer(link)
        await self._teardown()
        self._finish(reason)

    async def _drain_reliable(self, link: _Link) -> None:
        """Wait, at most :data:`DISCONNECT_DRAIN_S`, until the server's SCTP has acknowledged
        every reliable byte we accepted (nothing is dropped by our own teardown)."""
        pc = link.publisher
        if pc is None:
            return
        deadline = self._loop.time() + DISCONNECT_DRAIN_S
        while self._loop.time() < deadline:
            try:
                if pc.unacknowledged_bytes(RELIABLE_LABEL) == 0:
                    return
            except LkError:
                return  # no channel yet, or aiortc's internals changed: nothing to wait for
            await asyncio.sleep(_DRAIN_POLL_S)
        _data_log.warning(
            "= leaving with %d reliable bytes the server has not acknowledged after %.1f s",
            self._undelivered(pc),
            DISCONNECT_DRAIN_S,
        )

    async def update_metadata(
        self,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Send UpdateParticipantMetadata and wait for the server's RequestResponse (§7).

        A server older than protocol 15 (v1.7.2 reports 14) never answers a success (§7):
        there the update completes once our own ParticipantInfo shows it, as in livekit-client,
        and at once when it already does (the server then sends nothing at all).

        Raises:
            RequestRejectedError: the server said no (NOT_ALLOWED, LIMIT_EXCEEDED...) or timed out.
        """
        link = self._require_link()
        request_id = link.session.update_metadata(
            self._loop.time(), name=name, metadata=metadata, attributes=attributes
        )
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending_requests[request_id] = fut
        if not link.session.server_answers_ok:
            self._echo_waits[request_id] = (name, metadata, attributes)
            self._settle_echoed(link)
        self._pump(link)
        try:
            await fut
        finally:
            self._pending_requests.pop(request_id, None)
            self._echo_waits.pop(request_id, None)

    def _settle_echoed(self, link: _Link) -> None:
        """Complete the metadata updates our own ParticipantInfo now shows (servers < protocol 15).

        PROTOCOL-MAP §7: such a server sends only errors (ErrorResponse, field 22), so seeing the
        change is the success (sg.metadata_applied).
        """
        local = self._roster.local
        if local is None:
            return
        for request_id, (name, metadata, attributes) in list(self._echo_waits.items()):
            if not sg.metadata_applied(local, name=name, metadata=metadata, attributes=attributes):
                continue
            del self._echo_waits[request_id]
            link.session.settle_request(request_id)
            waiting = self._pending_requests.get(request_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

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
        description: pu.TrackDescription,
        media: Any,
        *,
        media_factory: Callable[[], Any] | None = None,
    ) -> pb.TrackInfo:
        """Publish ``media`` (an aiortc track whose ``id`` is ``description.cid``).

        AddTrackRequest → TrackPublishedResponse (within ``publish_timeout_s``) → a ``sendonly``
        section whose sender is prepared by :func:`lkproto.asyncio.publish.prepare_sender` →
        re-offer; returns once the answer covering the new section is applied.
        ``media_factory`` gives a live track again after aiortc stopped ``media`` (it stops a
        sender's track when its connection closes, i.e. on a full reconnect).

        Raises:
            RequestRejectedError: the server refused (``NOT_ALLOWED`` for a source the token may
                not publish, ``UNSUPPORTED_TYPE``), or ``TIMEOUT`` without an answer.
            LocalProtocolError: not connected, ``description.cid`` is already published, or the
                description cannot be announced.
            ConnectError: the connection was lost while publishing.
        """
        link = self._require_link()
        cid = description.cid
        if cid in self._media:
            raise LocalProtocolError(f"track {cid!r} is already published")
        info = await self._add_track(link, description)
        self._media[cid] = _Media(description, media, media_factory)
        try:
            await self._attach_media(link, cid)
        except BaseException:
            self._media.pop(cid, None)
            self._tracker.remove(cid)
            raise
        return info

    async def unpublish_track(self, cid: str) -> None:
        """Stop sending ``cid`` and re-offer; the server then ends the publication (§16).

        Raises:
            LocalProtocolError: ``cid`` is not published.
        """
        media = self._media.pop(cid, None)
        if media is None:
            raise LocalProtocolError(f"track {cid!r} is not published")
        published = self._tracker.remove(cid)
        link = self._link
        if link is None or link.publisher is None or media.transceiver is None:
            return
        tracer = self._tracer
        if tracer is not None and tracer.wants_records and published and published.info.sid:
            kind = "video" if published.info.type == pb.VIDEO else "audio"
            endpoint: tuple[Direction, str, str, Any] = (
                ">",
                published.info.sid,
                kind,
                media.transceiver.sender,
            )
            await sample_rtp(tracer, [endpoint], self._loop.time(), final=True)
        link.publisher.stop_sending(media.transceiver)
        try:
            await self._negotiate(link)
        except ConnectError as exc:
            # The track is detached here already; the section goes inactive with the next offer
            # that gets through (the one after a resume, see _resume), or the publication ends
            # with the session on a full reconnect. Nothing is left for the caller to undo.
            _log.info("= unpublish of %s not negotiated yet: %s", cid, exc)

    def set_track_muted(self, cid: str, muted: bool) -> None:
        """Tell the server (``MuteTrackRequest``) and stop/restart sending media frames.

        Raises:
            LocalProtocolError: ``cid`` is not published.
        """
        media = self._media.get(cid)
        if media is None:
            raise LocalProtocolError(f"track {cid!r} is not published")
        media.description = dataclasses.replace(media.description, muted=muted)
        _set_sender_enabled(media.transceiver, not muted)
        published = self._tracker.published.get(cid)
        if published is None:
            return  # a republish that failed: nothing to tell the server about
        self._tracker.set_muted(cid, muted)
        link = self._link
        if link is not None:
            mute = pb.MuteTrackRequest(sid=published.info.sid, muted=muted)
            link.session.send(pb.SignalRequest(mute=mute), self._loop.time())
            self._pump(link)

    def published_sender(self, cid: str) -> Any:
        """aiortc's ``RTCRtpSender`` for a published track (None before negotiation)."""
        media = self._media.get(cid)
        if media is None or media.transceiver is None:
            return None
        return media.transceiver.sender

    def published_info(self, cid: str) -> pb.TrackInfo | None:
        """The server's TrackInfo of a published track, or None."""
        published = self._tracker.published.get(cid)
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

    async def _add_track(self, link: _Link, description: pu.TrackDescription) -> pb.TrackInfo:
        """Send the AddTrackRequest and wait for the tracker's verdict (its deadline included)."""
        request = self._tracker.request(description, self._loop.time())
        fut: asyncio.Future[pb.TrackInfo] = self._loop.create_future()
        self._publishing[description.cid] = fut
        try:
            link.session.send(pb.SignalRequest(add_track=request), self._loop.time())
            self._pump(link)
            self._flush_publish()
            return await fut
        finally:
            self._publishing.pop(description.cid, None)
            if not fut.done():  # the caller was cancelled: a late answer must not publish it
                self._tracker.cancel(description.cid)
                self._publish_timer.rearm()

    def _flush_publish(self) -> None:
        """Settle publish waiters from the tracker's events and re-arm its deadline."""
        while (event := self._tracker.next_event()) is not None:
            waiting = self._publishing.get(event.cid)
            match event:
                case pu.TrackPublished(info=info):
                    if waiting is not None and not waiting.done():
                        waiting.set_result(info)
                case pu.PublishRefused(reason=reason, message=message):
                    # PROTOCOL-MAP §9 Publishing step 2: NOT_ALLOWED / UNSUPPORTED_TYPE.
                    if waiting is not None and not waiting.done():
                        waiting.set_exception(RequestRejectedError(reason, message))
                case pu.PublishTimedOut(cid=cid, timeout_s=timeout_s):
                    if waiting is not None and not waiting.done():
                        what = f"no track_published for {cid!r} within {timeout_s} s"
                        waiting.set_exception(RequestRejectedError("TIMEOUT", what))
                case _:
                    assert_never(event)
        self._publish_timer.rearm()

    def _on_publish_due(self, now: float) -> None:
        self._tracker.handle_timer(now)
        self._flush_publish()

    async def _attach_media(self, link: _Link, cid: str) -> None:
        media = self._media[cid]
        pc = link.publisher
        if pc is None:
            raise ConnectError("no publisher peer connection")
        media.transceiver = pc.add_send_track(media.media, codecs=(media.description.mime_type,))
        prepare_sender(media.transceiver.sender, media.description)
        if self.sender_hook is not None:
            self.sender_hook(media.transceiver.sender, media.description)
        _set_sender_enabled(media.transceiver, not media.description.muted)
        await self._negotiate(link)

    async def _republish(self) -> None:
        """Publish every local track again on the new connection of a full reconnect (the
        official SDKs do the same and emit ``local_track_republished``)."""
        link = self._link
        if link is None:
            return
        for old in self._tracker.take_for_republish():
            cid = old.description.cid
            media = self._media.get(cid)
            if media is None:
                continue
            if media.factory is not None and media.media.readyState != "live":
                # A new aiortc track has a new id, which must be the new AddTrack's cid (§9).
                media.media = media.factory()
                del self._media[cid]
                cid = media.media.id
                self._media[cid] = media
            media.description = dataclasses.replace(old.description, cid=cid)
            try:
                info = await self._add_track(link, media.description)
                await self._attach_media(link, cid)
            except LkError as exc:
                _log.warning("= could not republish %s after a full reconnect: %s", cid, exc)
                continue
            self._emit(
                LocalTrackRepublished(cid=cid, old_sid=old.info.sid, info=info, media=media.media)
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
                self._emit(
                    MediaTrackReceived(sid=sid, mid=mid, kind=track.kind, track=track, pc=pc)
                )

    def force_full_reconnect(self) -> None:
        """Start a full reconnect now (new join, new peer connection), as a LeaveRequest RECONNECT
        would; used for ``SIMULATE_FULL_RECONNECT``, which v1.13.5 does not handle server-side."""
        link = self._require_link()
        self._trouble(link, rc.RecoveryCause.FULL_REQUESTED)

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
        sealer = self.data_sealer
        if sealer is not None and not reliable:
            packet = sealer(packet)
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
            # Sealed after stamping, so an encrypted user packet's nonce is inside it and its
            # resend after a full reconnect repeats it (core/reliable.py "Nonces"). ``packet``
            # stays unsealed: a retry below seals it again with the same nonce.
            wire, data = self._sender.stamp_sealed(packet, sealer)
            if (tracer := self._tracer) is not None:
                tracer.packet(">", label, wire, data, self._loop.time())
            if self._sender.suspended:
                return  # kept in the resend buffer; sent after the resume (PROTOCOL-MAP §10)
            try:
                pc.send(label, data)
            except LocalProtocolError:
                # It never reached the channel: take it back so that it is not sent later
                # behind the caller's back (issue 15 floor; core/reliable.py withdraw).
                self._sender.withdraw(packet.sequence)
                if self._state == ConnectionState.CONN_CONNECTED:
                    raise
                continue  # the channel went away under us: send it after the recovery
            # Keep every packet the server has not acknowledged, not only those still queued
            # in aiortc: a full reconnect resends what the old association never delivered.
            self._sender.on_buffered_amount(pc.unacknowledged_bytes(label))
            return

    def send_data_track(self, packets: list[bytes]) -> bool:
        """Send the packets of one data-track frame on ``_data_track``, or drop them all.

        Never waits: frames are dropped (counted in ``data_track_dropped``) while the session is
        not connected or while the channel holds more than the lossy high-water mark, since the
        channel is lossy by contract and the server drops to keep 100 ms latency (PROTOCOL-MAP
        §3 Buffered-amount thresholds, §12). Returns whether the frame was queued.
        """
        link = self._link
        pc = link.publisher if link is not None else None
        try:
            if (
                pc is not None
                and self._state == ConnectionState.CONN_CONNECTED
                and pc.buffered_amount(DATA_TRACK_LABEL) <= LOSSY_HIGH_WATER_BYTES
            ):
                for data in packets:
                    pc.send(DATA_TRACK_LABEL, data)
                    if (tracer := self._tracer) is not None:
                        tracer.packet(">", DATA_TRACK_LABEL, _NOT_PROTOBUF, data, self._loop.time())
                return True
        except LocalProtocolError:
            pass  # no such channel, or it is not open (yet, or any more)
        self.data_track_dropped += 1
        return False

    async def _connected_publisher(self) -> PeerConnection:
        while True:
            if self._state == ConnectionState.CONN_DISCONNECTED or self._closing:
                raise ConnectError("not connected")
            link = self._link
            # After a full reconnect, new reliable sends also wait behind the hold (and the resend
            # it keeps), so that nothing reaches the server before its receivers are back.
            if (
                self._state == ConnectionState.CONN_CONNECTED
                and link is not None
                and not self._hold
            ):
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
        opener = opts.transport_factory or open_transport
        transport: Transport | None = None
        request = join_request(
            info=self._client_info(),
            auto_subscribe=opts.auto_subscribe,
            adaptive_stream=opts.adaptive_stream,
        )
        if single:
            url = signal_url_v1(self._url, wrap_join_request(request))
            try:
                transport = await opener(url, token, opts.connect_timeout_s)
            except JoinRejectedError as exc:
                if opts.single_peer_connection is True or not is_missing_v1_route(exc, url):
                    raise
                _log.info("= server has no /rtc/v1 (404), falling back to /rtc (two PCs)")
                single = False
        if transport is None:
            url = signal_url_v0(self._url, auto_subscribe=opts.auto_subscribe)
            transport = await opener(url, token, opts.connect_timeout_s)
        link = _Link(
            sg.SignalSession(join_timeout_s=opts.connect_timeout_s),
            single,
            ng.Negotiator(answer_timeout_s=opts.negotiation_timeout_s),
            self._on_signal_due,
            self._on_negotiation_due,
        )
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
            # Server-reflexive candidates of a loopback socket are meaningless (PROTOCOL-MAP §17
            # ICE servers); the query would only trickle a useless candidate after the join.
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
        pub.on_channel_closed = functools.partial(self._on_channel_closed, link)
        pub.on_local_candidate = functools.partial(self._on_local_candidate, link, pb.PUBLISHER)
        link.publisher = pub
        await pub.create_data_channels(data_track=True)
        if not link.single_pc:
            sub = PeerConnection(options, on_data=self._on_data, on_state_change=self._on_pc_state)
            sub.on_channel_closed = functools.partial(self._on_channel_closed, link)
            sub.on_local_candidate = functools.partial(
                self._on_local_candidate, link, pb.SUBSCRIBER
            )
            link.subscriber = sub
        await self._negotiate(link)
        primary = link.primary
        assert primary is not None
        outer = self._narrow_to_ice_window()
        await primary.wait_connected(self._opts.connect_timeout_s)
        window = self._attempt_window
        if outer is not None and window is not None and not window.expired():
            window.reschedule(outer)  # connected: the rest has the attempt's whole bound
        self._ice_window_ends = None
        await primary.wait_channels_open(self._opts.connect_timeout_s)
        if not link.single_pc:
            await pub.wait_connected(self._opts.connect_timeout_s)
        self._spawn(link, self._watch_transport(link, pub))

    def _narrow_to_ice_window(self) -> float | None:
        """Bound a full-reconnect attempt's wait for its peer connection by the ICE window.

        Issue 15: after a UDP outage the attempt made during it sometimes never got an answer
        once the path was back and hung for the whole connect timeout; the next attempt, on new
        sockets, connected at once (core/reconnect.py :data:`ATTEMPT_ICE_WINDOW_S`). Its checks
        begin now (the answer is applied), so the attempt's bound becomes the window's end when
        that is sooner; the recoverer says how long (None for the policy's last attempt).

        Returns:
            The attempt's own deadline to put back once connected, or None if unchanged.
        """
        window = self._attempt_window
        if window is None or self._recoverer.state is not rc.RecoveryState.ATTEMPTING:
            return None  # not a recovery attempt (connect() has its own bound)
        seconds = self._recoverer.ice_window()
        outer = window.when()
        if seconds is None or outer is None:
            return None
        ends = self._loop.time() + seconds
        if ends >= outer:
            return None
        self._ice_window_ends = ends
        self._ice_window_s = seconds
        window.reschedule(ends)
        return outer

    async def _negotiate(self, link: _Link) -> None:
        """Offer on the publisher (the single PC) and wait until an answer covering everything
        added so far is applied (PROTOCOL-MAP §2 offer ids; merging in lkproto.core.negotiation).

        Raises:
            ConnectError: the round failed (no answer in time, SDP error, connection replaced).
        """
        if link.publisher is None:
            return
        ticket = link.negotiator.request(self._loop.time())
        done: asyncio.Future[None] = self._loop.create_future()
        link.negotiated.setdefault(ticket, []).append(done)
        self._flush_negotiation(link)
        await done

    def _flush_negotiation(self, link: _Link) -> None:
        """Act on the negotiator's events and re-arm its deadline."""
        negotiator = link.negotiator
        while (event := negotiator.next_event()) is not None:
            match event:
                case ng.OfferWanted():
                    self._spawn(link, self._make_offer(link))
                case ng.NegotiationCompleted(round=done_round):
                    self._settle_negotiated(link, done_round, None)
                case ng.NegotiationFailed(round=failed_round, reason=reason):
                    _log.info("= renegotiation failed: %s", reason)
                    error = ConnectError(f"renegotiation failed: {reason}")
                    self._settle_negotiated(link, failed_round, error)
                case ng.AnswerIgnored(answer_id=answer_id, awaited_id=awaited_id):
                    _log.debug("= ignoring answer %d (awaiting %s)", answer_id, awaited_id)
                case _:
                    assert_never(event)
        if link is self._link:
            link.negotiation_timer.rearm()

    def _settle_negotiated(self, link: _Link, up_to: int, error: BaseException | None) -> None:
        for ticket in sorted(t for t in link.negotiated if t <= up_to):
            for waiter in link.negotiated.pop(ticket):
                if waiter.done():
                    continue
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    def _on_negotiation_due(self, link: _Link, now: float) -> None:
        link.negotiator.handle_timer(now)
        self._flush_negotiation(link)

    async def _make_offer(self, link: _Link) -> None:
        pc = link.publisher
        try:
            if pc is None:
                raise ConnectError("no publisher peer connection")
            # Simulcast layers are announced in what the server reads (core/simulcast.py).
            sdp = announce_simulcast(
                await pc.create_offer(),
                {cid: m.description.simulcast_layers for cid, m in self._media.items()},
            )
        except LkError as exc:
            link.negotiator.failed(f"cannot create an offer: {exc}", self._loop.time())
            self._flush_negotiation(link)
            return
        if link.session.state is sg.SignalState.CLOSED:
            # disconnect() or a leave closed the session while aiortc made the offer; send_offer
            # would raise and end this task unretrieved (tests/fuzz/test_hostile_server.py).
            link.negotiator.failed("the signal session closed", self._loop.time())
            self._flush_negotiation(link)
            return
        offer_id = link.negotiator.offer_created(sdp, self._loop.time())
        link.session.send_offer(sdp, offer_id, self._loop.time())
        self._pump(link)
        self._flush_negotiation(link)

    async def _apply_answer(self, link: _Link, sdp: str) -> None:
        pc = link.publisher
        try:
            if pc is None:
                raise ConnectError("no publisher peer connection")
            await pc.apply_answer(sdp)
        except LkError as exc:
            link.negotiator.failed(f"cannot apply the answer: {exc}", self._loop.time())
            self._flush_negotiation(link)
            return
        if link.single_pc:
            self._sync_receiving(link, pc)
        link.negotiator.answer_applied(self._loop.time())
        self._flush_negotiation(link)

    # -- one connection's plumbing ---------------------------------------------------------

    def _attach(self, link: _Link, transport: Transport, *, resume: bool) -> None:
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

    async def _reader(self, link: _Link, transport: Transport) -> None:
        try:
            while True:
                frame = await transport.recv()
                now = self._loop.time()
                try:
                    link.session.receive_data(frame, now)
                    if self._tracer is not None or _log.isEnabledFor(logging.DEBUG):
                        self._trace_frame(link, frame, now)
                    self._pump(link)
                except (SignalClosed, asyncio.CancelledError):
                    raise
                except Exception:
                    # A defect in handling one frame must not end the reader: a room whose
                    # reader died says CONNECTED while it hears nothing more (issue 15 floor).
                    _log.exception("< frame of %d bytes could not be handled; skipped", len(frame))
        except SignalClosed as exc:
            if link.transport is transport:
                link.transport = None
                link.session.connection_lost(self._loop.time(), str(exc))
                self._pump(link)
                self._trouble(link, rc.RecoveryCause.SIGNAL_LOST)

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
        self, link: _Link, transport: Transport, outbox: asyncio.Queue[bytes | None]
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
        if link is self._link:
            link.signal_timer.rearm()

    def _on_signal_due(self, link: _Link, now: float) -> None:
        link.session.handle_timer(now)
        self._pump(link)

    # -- signal events -----------------------------------------------------------------------

    def _on_signal_event(self, link: _Link, event: sg.AnySignalEvent) -> None:
        now = self._loop.time()
        match event:
            case sg.Joined(message=join):
                if not link.joined.done():
                    # The roster takes the join here, in the reader, so that a participant update
                    # already buffered behind it is never applied before it.
                    for ev in self._roster.apply_join(join):
                        self._emit(ev)
                    link.joined.set_result(join)
            case sg.Resumed(message=reconnect):
                if link.resumed is not None and not link.resumed.done():
                    link.resumed.set_result(reconnect)
            case sg.JoinTimedOut():
                err = ConnectError("the server sent no JoinResponse in time")
                if not link.joined.done():
                    link.joined.set_exception(err)
                if link.resumed is not None and not link.resumed.done():
                    link.resumed.set_exception(err)
            case sg.AnswerReceived(sdp=sdp, answer_id=answer_id, mid_to_track_id=mapping):
                if link.negotiator.answer_received(sdp, answer_id, now):
                    if link.single_pc:
                        # Single PC: downstream sections are named in the server's answers (§2).
                        link.mid_to_track_id = dict(mapping)
                    self._spawn(link, self._apply_answer(link, sdp))
                self._flush_negotiation(link)
            case sg.OfferReceived(sdp=sdp, offer_id=offer_id, mid_to_track_id=mapping):
                link.mid_to_track_id = dict(mapping)
                link.negotiator.remote_offer_received(sdp, offer_id)
                self._spawn(link, self._answer_offer(link, sdp, offer_id))
            case sg.TrickleReceived(candidate_init=candidate, target=target, final=final):
                pc = link.publisher
                if not link.single_pc and target == pb.SUBSCRIBER:
                    pc = link.subscriber
                if pc is not None:
                    self._spawn(link, self._add_candidate(pc, candidate, final))
            case sg.MediaSectionsRequired(num_audios=audios, num_videos=videos):
                pc = link.publisher
                if pc is not None:
                    pc.add_recvonly_transceivers(audio=audios, video=videos)
                    self._spawn(link, self._negotiate_quietly(link))
            case sg.ParticipantsUpdated(participants=participants):
                local_before = self._roster.local
                hold = self._hold
                for ev in self._roster.apply_participants(participants):
                    if hold is not None and isinstance(ev, ro.ParticipantDisconnected):
                        hold.participant_left(ev.info.identity, ev.reason)
                    self._emit(ev)
                if hold is not None:
                    hold.check(self._roster.remotes, self._roster.local)
                    self._after_hold_input()
                local = self._roster.local
                if local is not None and local is not local_before:
                    # Our own tracks produce no roster events (their codec, size and mute state
                    # arrive this way), so the room refreshes its local view from here.
                    self._emit(LocalInfoUpdated(info=local))
                # Data tracks live in ParticipantInfo.data_tracks, which the roster does not diff.
                self._emit(SignalMessageEvent(event=event))
                if self._echo_waits:
                    self._settle_echoed(link)
            case sg.RoomUpdated(room=room):
                for ev in self._roster.apply_room(room):
                    self._emit(ev)
            case sg.MessageReceived(kind="track_published", message=message):
                self._tracker.track_published(message.track_published, now)
                self._flush_publish()
                self._emit(SignalMessageEvent(event=event))
            case sg.RequestAnswered(request_id=request_id, reason=reason, message=rr):
                name = _enum_name(pb.RequestResponse.Reason.Name, reason)
                if rr.WhichOneof("request") in ("publish_data_track", "unpublish_data_track"):
                    self._emit(SignalMessageEvent(event=event))  # the room's data tracks
                    return
                if rr.WhichOneof("request") == "add_track" and reason != pb.RequestResponse.OK:
                    # PROTOCOL-MAP §9 Publishing step 2: NOT_ALLOWED / UNSUPPORTED_TYPE.
                    self._tracker.request_refused(rr.add_track.cid, name, event.message_text, now)
                    self._flush_publish()
                    return
                waiting = self._pending_requests.get(request_id)
                if waiting is not None and not waiting.done():
                    if reason == pb.RequestResponse.OK:
                        waiting.set_result(None)
                    else:
                        waiting.set_exception(RequestRejectedError(name, event.message_text))
            case sg.RequestTimedOut(request_id=request_id):
                waiting = self._pending_requests.get(request_id)
                if waiting is not None and not waiting.done():
                    waiting.set_exception(
                        RequestRejectedError("TIMEOUT", "no answer from the server")
                    )
            case sg.RequestDropped(kind=kind):
                if kind == "offer":
                    # The socket went down between creating and sending the offer: its answer
                    # will never come. Fail the round now instead of at its deadline, and offer
                    # again once the session is back (see _resume).
                    link.offer_dropped = True
                    link.negotiator.failed("the signal connection was down", now)
                    self._flush_negotiation(link)
                self._emit(SignalMessageEvent(event=event))
            case sg.LeaveReceived():
                self._on_leave(link, event)
            case sg.SignalLost():
                if link.transport is not None:
                    link.transport.abort()  # the reader sees the socket end and reports it
            case sg.ProtocolViolated(error=error):
                _log.warning("= ignoring a malformed signal frame: %s", error)
            case (
                sg.PongReceived()
                | sg.TokenRefreshed()
                | sg.SpeakersChanged()
                | sg.ConnectionQualityChanged()
                | sg.MessageReceived()
            ):
                self._emit(SignalMessageEvent(event=event))
            case _:
                assert_never(event)

    def _on_leave(self, link: _Link, event: sg.LeaveReceived) -> None:
        if link is self._abandoned:
            return  # the answer to our own goodbye of a failed attempt
        self._leave_reason = event.reason
        if link.resumed is not None and not link.resumed.done():
            # PROTOCOL-MAP §10 step 5: a leave as the first frame of a resume refuses it.
            link.resumed.set_exception(_ResumeRefused(event.reason))
            return
        if not link.joined.done():
            link.joined.set_exception(
                ConnectError(
                    "server sent leave during join: "
                    + _enum_name(pb.DisconnectReason.Name, event.reason)
                )
            )
            return
        window = self._attempt_window
        if window is not None and link is self._link and not window.expired():
            # The server gave up on the session this attempt is still setting up (a new
            # participant whose transport did not come up within its ICE timeout sends
            # leave{RESUME}, onAnyTransportFailed): fail the attempt now rather than after
            # connect_timeout_s, so that the next one comes on the policy's schedule (issue 15:
            # attempts made during an outage otherwise outlived the outage by ~10 s).
            window.reschedule(self._loop.time())
        self._trouble(link, rc.RecoveryCause.LEAVE, leave_action=event.action)

    async def _negotiate_quietly(self, link: _Link) -> None:
        """A renegotiation nobody waits for (the server asked for sections): log a failure."""
        try:
            await self._negotiate(link)
        except ConnectError as exc:
            _log.info("= renegotiation for the server's media sections failed: %s", exc)

    async def _answer_offer(self, link: _Link, sdp: str, offer_id: int) -> None:
        pc = link.subscriber if not link.single_pc else link.publisher
        if pc is None:
            return
        try:
            answer = await pc.apply_offer(sdp)
        except LkError as exc:
            # An offer aiortc cannot apply (empty or malformed SDP; found by
            # tests/fuzz/test_hostile_server.py) leaves the connection as it was: drop it, as a
            # bad candidate is dropped, instead of ending this task with an unretrieved error.
            _log.warning("= ignoring an offer from the server: %s", exc)
            return
        if link.session.state is sg.SignalState.CLOSED:
            return  # closed while aiortc made the answer, as in _make_offer
        self._sync_receiving(link, pc)
        link.negotiator.local_answer_sent(answer, offer_id)
        link.session.send_answer(answer, offer_id, self._loop.time())
        self._pump(link)

    async def _add_candidate(self, pc: PeerConnection, candidate_init: str, final: bool) -> None:
        try:
            await pc.add_ice_candidate(candidate_init)
            if final:
                await pc.end_of_candidates()
        except LkError as exc:
            _log.warning("= ignoring an ICE candidate: %s", exc)

    def _on_local_candidate(
        self, link: _Link, target: pb.SignalTarget.ValueType, candidate_init: str
    ) -> None:
        """Trickle a candidate our ICE found after its description was sent (a STUN answer,
        PROTOCOL-MAP §2 Trickle; the server routes it by ``target``)."""
        try:
            link.session.send_trickle(candidate_init, target, self._loop.time())
        except LkError as exc:
            _log.debug("= not trickling a local candidate: %s", exc)
            return
        self._pump(link)

    def accept_decrypted(self, packet: pb.DataPacket) -> bool:
        """Whether a packet the room decrypted is new, by its user nonce; False for a repeat.

        An encrypted user packet carries its nonce inside the ciphertext, so the check
        :meth:`_on_data` makes on clear packets has to wait for the room to open it; the same
        per-identity filter then drops the resend after a sender's full reconnect
        (core/reliable.py "Nonces"). Packets other than user packets, and user packets without
        a 16-byte nonce, are always new.
        """
        return self._nonces.accept(packet, self._loop.time())

    def _on_data(self, label: str, data: bytes) -> None:
        if label == DATA_TRACK_LABEL:
            if (tracer := self._tracer) is not None:
                tracer.packet("<", label, _NOT_PROTOBUF, data, self._loop.time())
            if (sink := self.data_track_sink) is not None:
                sink(data)
            return
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
        # The resend after a sender's full reconnect has a new SID; its nonce is the original's
        # (core/reliable.py "Nonces"; PROTOCOL-MAP §3 item 6).
        if not self._nonces.accept(packet, self._loop.time()):
            return
        self._emit(DataReceived(packet=packet, reliable=reliable))

    def _on_pc_state(self, state: PeerState) -> None:
        _log.debug("= peer connection %s", state.value)
        link = self._link
        if link is None or self._closing:
            return
        if state == PeerState.FAILED and self._state == ConnectionState.CONN_CONNECTED:
            self._trouble(link, rc.RecoveryCause.PEER_FAILED)

    def _on_channel_closed(self, link: _Link, label: str) -> None:
        """A data channel of ``link`` closed while its peer connection was open.

        aiortc closes every channel when the SCTP association dies and has no ICE restart, so
        the transport is gone for good even if ``connectionState`` still says connected (aioice
        consent takes ~30 s to fail): a full reconnect is the only repair (issue 15 floor, a
        dead transport must not leave the room CONNECTED; PROTOCOL-MAP §14).
        """
        if label not in (RELIABLE_LABEL, LOSSY_LABEL) or self._closing or link is not self._link:
            return
        _log.info("= data channel %r closed under us", label)
        self._spawn(link, self._channel_closed_after_grace(link))

    async def _channel_closed_after_grace(self, link: _Link) -> None:
        # A server ending the session closes the peer connection around the time it sends
        # ``leave`` on the signal; wait briefly so that the leave, when there is one, decides
        # (a disconnect must not first show as a reconnect). The link's tasks are cancelled with
        # it, so this ends with a replaced connection.
        await asyncio.sleep(_CHANNEL_CLOSED_GRACE_S)
        if self._state == ConnectionState.CONN_CONNECTED:
            self._trouble(link, rc.RecoveryCause.PEER_FAILED)

    async def _watch_transport(self, link: _Link, pc: PeerConnection) -> None:
        """Report a dead data transport long before aiortc or aioice would notice it.

        Runs for the life of ``link``; the rule is :func:`lkproto.core.reconnect.transport_stalled`
        (issue 15 floor: a room must not say CONNECTED while nothing moves).
        """
        while True:
            await asyncio.sleep(_TRANSPORT_CHECK_S)
            if self._state != ConnectionState.CONN_CONNECTED or link is not self._link:
                continue
            try:
                heard = pc.last_received_at()
            except LkError as exc:  # aiortc internals changed (the seam names them)
                _log.warning("= dead-transport watch stopped: %s", exc)
                return
            now = self._loop.time()
            if rc.transport_stalled(now=now, last_heard=heard, silence_s=rc.TRANSPORT_SILENCE_S):
                assert heard is not None
                _log.info("= nothing heard for %.1f s: the transport is dead", now - heard)
                self._trouble(link, rc.RecoveryCause.PEER_FAILED)
                return

    # -- recovery (decisions in lkproto.core.reconnect.Recoverer) -------------------------------

    def _trouble(
        self, link: _Link, cause: rc.RecoveryCause, *, leave_action: int | None = None
    ) -> None:
        """Report a trouble of the current connection to the recoverer."""
        if self._closing or link is not self._link or link is self._abandoned:
            return  # a connection being replaced or closed reports nothing any more
        wanted = rc.recovery_for(cause, leave_action=leave_action)
        if self._state == ConnectionState.CONN_DISCONNECTED and wanted is not rc.Recovery.GIVE_UP:
            return  # still joining: connect() fails or times out by itself
        self._recoverer.resume_supported = link.single_pc
        self._recoverer.trouble(cause, self._loop.time(), leave_action=leave_action)
        self._flush_recovery()

    def _flush_recovery(self) -> None:
        """Act on the recoverer's events and re-arm its deadline."""
        while (event := self._recoverer.next_event()) is not None:
            match event:
                case rc.RecoveryStarted(full=full):
                    self._recovery_started_at = self._loop.time()
                    # Whom a full reconnect's hold will wait for: the room before this fault (or,
                    # if a hold is still on, the room before the fault that started it).
                    hold = self._hold
                    if hold is None:
                        room = self._roster.room
                        self._recovery_room_sid = room.sid if room is not None else ""
                    self._recovery_before = (
                        dict(hold.before)
                        if hold is not None
                        else {identity: info.sid for identity, info in self._roster.remotes.items()}
                    )
                    self._set_state(ConnectionState.CONN_RECONNECTING)
                    self._sender.suspend()
                    self._emit(EngineReconnecting(full=full))
                case rc.AttemptDue(number=number):
                    self._supervisor = self._loop.create_task(self._attempt(number))
                case rc.Recovered(full=full):
                    self._set_state(ConnectionState.CONN_CONNECTED)
                    self._flush_held()  # before any sender woken above gets to run
                    self._emit(EngineReconnected(full=full))
                case rc.GaveUp(reason=why):
                    _log.info("= giving up: %s", why)
                    # From here on the session is over: later troubles (the socket closing
                    # after the server's leave) must not start a recovery.
                    self._closing = True
                    previous = self._supervisor
                    self._supervisor = self._loop.create_task(self._give_up(previous))
                case _:
                    assert_never(event)
        self._recovery_timer.rearm()

    def _on_recovery_due(self, now: float) -> None:
        if self._closing:
            return
        self._recoverer.handle_timer(now)
        self._flush_recovery()

    async def _attempt(self, number: int) -> None:
        """Run one recovery attempt of the kind the recoverer chooses and report the outcome."""
        if self._closing or self._recoverer.state is not rc.RecoveryState.ATTEMPTING:
            return  # disconnected between the timer and this task
        link = self._link
        # A resume keeps the peer connection, so it only helps when the data channels still work
        # (a connected ICE state alone can outlive a dead SCTP association by ~30 s).
        peer_usable = (
            link is not None
            and link.primary is not None
            and link.primary.connection_state == PeerState.CONNECTED
            and link.primary.channels_open
            and (link.publisher is None or link.publisher.channels_open)
        )
        kind = self._recoverer.attempt_kind(peer_usable=peer_usable)
        _log.info("= reconnect attempt %d: %s", number, kind.value)
        self._ice_window_ends = None
        cause: rc.RecoveryCause | None = None
        status: int | None = None
        unreachable = False
        windowed = False  # failed by its ICE window (Recoverer.attempt_failed)
        ok = False
        try:
            if kind is rc.Recovery.RESUME and link is not None:
                async with asyncio.timeout(self._opts.connect_timeout_s):
                    await self._resume(link)
            else:
                old_publisher = link.publisher if link is not None else None
                self._hold = None  # a new join makes a new hold (below)
                self._hold_timer.rearm()
                await self._teardown_link()
                # A new session numbers from 1 again. What the closed old association never
                # delivered to the server is renumbered and resent after the join; what the
                # server acknowledged is not (core/reliable.py "Full reconnect").
                undelivered = self._undelivered(old_publisher)
                abandoned = self._sender.restart(undelivered)
                _log.info(
                    "= full reconnect: %d reliable packets to resend (%d bytes undelivered), %d "
                    "acknowledged by the old session's server",
                    self._sender.buffered_count,
                    undelivered,
                    abandoned,
                )
                async with asyncio.timeout(self._opts.connect_timeout_s) as window:
                    self._attempt_window = window
                    try:
                        await self._join(full=True)
                    finally:
                        self._attempt_window = None
                self._start_hold()
                await self._republish()
            current = self._link
            # The signal may have dropped again while we were finishing (e.g. the server closed
            # the socket right after the reconnect response): that attempt did not succeed.
            ok = (
                current is not None
                and current.transport is not None
                and current.session.state == sg.SignalState.CONNECTED
            )
            if ok:
                _log.info("= reconnect attempt %d succeeded", number)
            else:
                _log.info("= signal lost again during reconnect attempt %d", number)
        except _ResumeRefused:
            _log.info("= resume refused; next attempt is a full reconnect")
            cause = rc.RecoveryCause.RESUME_REFUSED
        except (LkError, TimeoutError, OSError) as exc:
            ends = self._ice_window_ends
            windowed = (
                isinstance(exc, TimeoutError) and ends is not None and self._loop.time() >= ends
            )
            if windowed:
                _log.info(
                    "= reconnect attempt %d failed: its ICE did not connect within %.1f s",
                    number,
                    self._ice_window_s,
                )
            else:
                _log.info("= reconnect attempt %d failed: %s", number, exc)
            self._ice_window_ends = None
            if isinstance(exc, JoinRejectedError):
                status = exc.status
            # Nothing listening (a server being restarted): retried quickly (Recoverer).
            refused = exc.__cause__ or exc
            unreachable = isinstance(refused, ConnectionRefusedError) or (
                getattr(refused, "errno", None) == errno.ECONNREFUSED
            )
            if kind is rc.Recovery.FULL_RECONNECT and not self._closing:
                await self._abandon_attempt()
        if self._closing or self._recoverer.state is not rc.RecoveryState.ATTEMPTING:
            return  # disconnected meanwhile, or the server ended the session
        now = self._loop.time()
        if ok:
            self._recoverer.attempt_succeeded(now)
        else:
            self._recoverer.attempt_failed(
                now, cause=cause, status=status, unreachable=unreachable, ice_window=windowed
            )
        self._flush_recovery()

    async def _abandon_attempt(self) -> None:
        """A full-reconnect attempt failed: say goodbye if the server took its join, close it.

        Without the ``leave`` its session stays in the room, JOINED under a new SID, until the
        server gives up on its ICE or our next attempt replaces it (``DUPLICATE_IDENTITY``), up
        to the policy's 7 s later (issue 15: other participants' rejoin holds and replays were
        aimed at such sessions). The reason says "not there" without "gone for good"
        (:data:`lkproto.core.reconnect.ABANDONED_ATTEMPT_LEAVE_REASON`). Closing it at once
        also frees its sockets instead of keeping them until the next attempt starts.
        """
        link = self._link
        if link is None:
            return
        joined = link.joined
        took_join = joined.done() and not joined.cancelled() and joined.exception() is None
        self._abandoned = link
        try:
            leaving = took_join and link.transport is not None
            if leaving:
                with contextlib.suppress(LkError):
                    link.session.send_leave(
                        self._loop.time(), reason=rc.ABANDONED_ATTEMPT_LEAVE_REASON
                    )
                    self._pump(link)
                outbox = link.outbox
                if outbox is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_ABANDON_LEAVE_DRAIN_S):
                            await outbox.join()
            if self._link is link:
                await self._teardown_link()
            _log.info(
                "= closed the failed attempt's session%s",
                " after leaving" if leaving else " (the server had not taken its join)",
            )
        finally:
            self._abandoned = None

    # -- the hold after a full reconnect (decisions in lkproto.core.reconnect.RejoinHold) -----

    def _start_hold(self) -> None:
        """The new session has joined: hold reliable sends until the room's earlier participants
        are back (issue 15: what reached the server before a receiver's live session was in the
        room was lost). The sender stays suspended; :meth:`_flush_held` sends what it kept."""
        room = self._roster.room
        hold = rc.RejoinHold(
            self._recovery_before,
            now=self._loop.time(),
            room_changed=room is not None and room.sid != self._recovery_room_sid,
            held_bytes=self._sender.buffered_bytes,
        )
        if hold.check(self._roster.remotes, self._roster.local):
            return  # everyone is back (or nobody was there): the resend goes with the recovery
        self._hold = hold
        _log.info(
            "= reliable sends held until %s are back (at most %.0f s)",
            ", ".join(hold.waiting_for(self._roster.remotes, self._roster.local)),
            rc.REJOIN_HOLD_S,
        )
        self._hold_timer.rearm()

    def _hold_deadline(self) -> float | None:
        return self._hold.get_timer() if self._hold is not None else None

    def _on_hold_due(self, now: float) -> None:
        if self._hold is not None:
            self._hold.handle_timer(now)
            self._after_hold_input()

    def _after_hold_input(self) -> None:
        """Act on a released hold, else keep its deadline armed."""
        hold = self._hold
        if hold is not None and hold.released:
            self._hold = None
            missing = hold.waiting_for(self._roster.remotes, self._roster.local)
            _log.info(
                "= reliable sends released (%s)%s",
                hold.released_by,
                f"; not back: {', '.join(missing)}" if missing else "",
            )
            self._flush_held()
            self._connected.set()  # wake the senders waiting behind the hold
        self._hold_timer.rearm()

    def _flush_held(self) -> None:
        """Send what a full reconnect kept, in order, once connected and no hold is on."""
        if (
            self._hold is None
            and self._state == ConnectionState.CONN_CONNECTED
            and self._link is not None
            and self._sender.suspended
        ):
            self._resend(self._sender.resume(0))

    async def _give_up(self, attempt: asyncio.Task[None] | None) -> None:
        self._closing = True
        if attempt is not None and attempt is not asyncio.current_task():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, LkError):
                await attempt
        await self._teardown()
        self._finish(self._leave_reason or pb.CONNECTION_TIMEOUT)

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
        opener = self._opts.transport_factory or open_transport
        transport = await opener(url, self.refresh_token, self._opts.connect_timeout_s)
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
        # Not while a full reconnect's hold is on: nothing was sent since its join, and what it
        # keeps goes when it is released (_flush_held).
        last = resumed.last_message_seq if resumed is not None else 0
        if self._hold is None:
            self._resend(self._sender.resume(last))
        if link.offer_dropped:
            link.offer_dropped = False
            self._spawn(link, self._negotiate_quietly(link))

    @staticmethod
    def _undelivered(pc: PeerConnection | None) -> int:
        """The closed ``pc``'s ``_reliable`` bytes the server never acknowledged."""
        if pc is None:
            return 0
        try:
            return pc.unacknowledged_bytes(RELIABLE_LABEL)
        except LocalProtocolError:
            return 0
        except LkError as exc:
            # aiortc's internals changed (the seam says which): fall back to what never left
            # the channel's queue; packets in SCTP are then not resent.
            _log.warning("= %s", exc)
            return pc.buffered_amount(RELIABLE_LABEL)

    def _resend(self, packets: list[bytes]) -> None:
        link = self._link
        pc = link.publisher if link is not None else None
        if pc is None:
            return
        for data in packets:
            pc.send(RELIABLE_LABEL, data)

    def _sync_state(self, link: _Link) -> pb.SyncState:
        sync = pb.SyncState()
        # PROTOCOL-MAP §10 Resume step 3 (single PC): the last answer applied and our last offer.
        negotiator = link.negotiator
        if negotiator.last_remote_answer is not None:
            sync.answer.CopyFrom(negotiator.last_remote_answer)
        if negotiator.last_local_offer is not None:
            sync.offer.CopyFrom(negotiator.last_local_offer)
        sync.subscription.subscribe = not self._opts.auto_subscribe
        sync.publish_tracks.extend(self._tracker.sync_tracks())
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
        link.signal_timer.close()
        link.negotiation_timer.close()
        outbox, link.outbox = link.outbox, None
        if outbox is not None:
            outbox.put_nowait(None)
        for fut in (link.joined, link.resumed):
            if fut is not None and not fut.done():
                fut.cancel()
        # Renegotiations of this connection can no longer complete.
        self._settle_negotiated(
            link, max(link.negotiated, default=0), ConnectError("the connection was replaced")
        )
        transport, link.transport = link.transport, None
        receiving, link.receiving = link.receiving, {}
        for mid, (sid, _) in receiving.items():
            self._emit(MediaTrackEnded(sid=sid, mid=mid))
        for media in self._media.values():
            media.transceiver = None
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
        self._hold = None
        self._hold_timer.rearm()
        await self._teardown_link()
        self._recoverer.cancel()
        self._recovery_timer.rearm()
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
        for cid, media in self._media.items():
            published = self._tracker.published.get(cid)
            if media.transceiver is not None and published is not None and published.info.sid:
                out.append(
                    (">", published.info.sid, media.description.kind, media.transceiver.sender)
                )
        receivers: dict[str, Any] = {}
        for pc in (link.publisher, link.subscriber):
            if pc is not None:
                receivers.update(pc.receivers())
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


# What the wire tap is given for a _data_track message: not a DataPacket, recorded by size only
# (lkproto.wire.tap.packet_record; PROTOCOL-MAP §12 packets are decoded by core.data_track).
_NOT_PROTOBUF: Final = DecodeError("DataPacket", "a raw data-track packet (PROTOCOL-MAP §12)")


class _ResumeRefused(ConnectError):
    def __init__(self, reason: DisconnectReasonValue) -> None:
        super().__init__(f"resume refused: {_enum_name(pb.DisconnectReason.Name, reason)}")
        self.reason = reason


_EnumValue = TypeVar("_EnumValue", bound=int)


def _enum_name(name: Callable[[_EnumValue], str], value: _EnumValue) -> str:
    """The name of a remote enum value, or its number when this build has no name for it.

    Proto3 enums are open: a newer (or hostile) server may send any number, and ``Name`` raises
    ``ValueError`` for it, which must not end the signal reader (found by
    tests/fuzz/test_hostile_server.py: a RequestResponse with reason 77 killed it).
    """
    try:
        return name(value)
    except ValueError:
        return str(value)


def _is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1") or address.startswith("127.")
