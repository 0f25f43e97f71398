"""One WebRTC peer connection: lkproto's wrapper of aiortc's ``RTCPeerConnection``.

:class:`PeerConnection` wraps an ``aiortc.RTCPeerConnection`` behind a small typed surface:
SDP goes in and out as strings, ICE candidates as the W3C ``RTCIceCandidateInit`` JSON the
LiveKit server trickles (PROTOCOL-MAP §2 Trickle), data as ``(label, bytes)``, and states as
:class:`PeerState`. aiortc's exceptions are mapped to :mod:`lkproto.errors` here, and its event
callbacks never see an exception raised by ours.

Theory of operation (PROTOCOL-MAP §0):

- Single PC (``/rtc/v1``) and the dual-PC publisher: :meth:`PeerConnection.create_data_channels`,
  then :meth:`~PeerConnection.create_offer` (host and TURN candidates are embedded in the SDP),
  then :meth:`~PeerConnection.apply_answer`.
- Dual-PC subscriber (``/rtc``): :meth:`~PeerConnection.apply_offer` returns the answer; the
  server opens ``_reliable``/``_lossy``/``_data_track`` itself and they are adopted on arrival.
- Either way, server candidates go to :meth:`~PeerConnection.add_ice_candidate` (buffered until a
  remote description exists) and the ``final=true`` trickle to
  :meth:`~PeerConnection.end_of_candidates`.
- Local trickle: STUN answers are not awaited before the description is returned (aiortc would
  hold ``setLocalDescription`` up to 5 s for an unanswered STUN server; issue 18). Each
  server-reflexive candidate found later is handed to :attr:`PeerConnection.on_local_candidate`
  as ``RTCIceCandidateInit`` JSON, never before the description it belongs to was returned, for
  the caller to send as a ``TrickleRequest`` (PROTOCOL-MAP §2 Trickle).

No protocol decisions are taken here: offer ids, DataPacket framing and sequencing belong to the
layers above. What aiortc/aioice offer no public API for (ICE role, selected pair, gathering on
chosen addresses) goes through :mod:`lkproto.asyncio._seam`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from lkproto.asyncio._ice import check_addresses
from lkproto.asyncio._lazy_av import import_aiortc
from lkproto.errors import ConnectError, LocalProtocolError, RemoteProtocolError
from lkproto.wire.channels import DATA_TRACK_LABEL, LOSSY_LABEL, RELIABLE_LABEL
from lkproto.wire.codec import DATA_PACKET_MAX_BYTES

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    import aiortc
    from aioice import Candidate
    from aiortc.exceptions import (
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        OperationError,
    )
    from aiortc.sdp import candidate_from_sdp

    from lkproto.asyncio import _seam

__all__ = [
    "DATA_TRACK_LABEL",
    "LOSSY_LABEL",
    "RELIABLE_LABEL",
    "CandidatePair",
    "DataCallback",
    "IceRole",
    "IceServer",
    "PeerConnection",
    "PeerOptions",
    "PeerState",
    "StateCallback",
    "load_webrtc",
]

logger = logging.getLogger(__name__)

# PROTOCOL-MAP §3 Labels and options: _reliable and _lossy must exist (and be open on the primary
# PC) before the server sends sequenced reliable packets; §12 _data_track is unordered and never
# retransmitted, like _lossy. The labels themselves are defined once, in lkproto.wire.channels.

_CANDIDATE_PREFIX: Final = "candidate:"


def load_webrtc() -> None:
    """Import the WebRTC stack (aiortc, aioice, pyOpenSSL, cryptography, pylibsrtp) now.

    Importing this module (the engine and ``lkproto.rtc`` do) loads none of it (issue 18); it
    loads on the first call of this function, which :class:`PeerConnection` makes and the engine
    makes before it opens the signal socket (so a missing ``rtc`` extra is reported before any
    network I/O). :func:`~lkproto.asyncio._lazy_av.import_aiortc` runs first, so aiortc binds
    PyAV stand-ins instead of loading PyAV. Later calls cost one dict lookup.

    The names are bound as globals of this module rather than imported inside each function
    that uses them: :func:`_mapped` runs on every :meth:`PeerConnection.send`.

    Raises:
        ModuleNotFoundError: aiortc (the ``rtc`` extra) is not installed.
        UnsupportedDependencyError: aiortc or aioice is outside the supported versions.
    """
    global aiortc, _seam, candidate_from_sdp  # noqa: PLW0603 - deferred import (issue 18)
    global InternalError, InvalidAccessError, InvalidStateError, OperationError  # noqa: PLW0603
    if "_seam" in globals():
        return
    import_aiortc()
    import aiortc
    from aiortc.exceptions import (
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        OperationError,
    )
    from aiortc.sdp import candidate_from_sdp

    from lkproto.asyncio import _seam


class PeerState(enum.Enum):
    """Connection state of a :class:`PeerConnection` (W3C ``RTCPeerConnectionState`` values).

    aiortc 1.16 never reports ``disconnected``: its ICE agent goes from connected straight to
    failed when consent checks stop (``aiortc/rtcpeerconnection.py (__updateConnectionState)``).
    """

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class IceServer:
    """A STUN or TURN server ICE may use (aioice uses at most one of each).

    Attributes:
        urls: ``stun:host:port`` / ``turn:host:port?transport=udp`` / ``turns:...`` URLs.
        username: TURN user name.
        credential: TURN password.
    """

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerOptions:
    """How a :class:`PeerConnection` gathers and what it allows.

    Attributes:
        ice_addresses: local IP addresses to gather host candidates on, e.g. ``("127.0.0.1",)``
            for a loopback-only server (PROTOCOL-MAP §17); ``None`` lets aioice pick every
            non-loopback interface address.
        ice_servers: STUN/TURN servers. Empty by default: aiortc would otherwise fall back to
            Google's public STUN server (PROTOCOL-MAP §17). STUN answers are trickled, so an
            unanswered STUN server no longer delays the description; an unanswered TURN server
            still delays it by up to 5 s.
        max_message_bytes: largest message :meth:`PeerConnection.send` accepts. aiortc trusts
            the remote ``a=max-message-size``, which pion sets to ~1 GiB, while the server reads
            each channel with a 65 535-byte buffer (PROTOCOL-MAP §3 Size limits, §14).
        max_bundle: aiortc's ``MAX_BUNDLE`` policy (every section on one transport from the
            start), which a LiveKit server needs for several media sections of one kind
            (see :class:`PeerConnection`). An aiortc *answerer* does not accept a max-bundle
            offer, so two aiortc peers talking to each other need ``False`` on the offerer.
        relay_only: aiortc's ``RELAY`` ICE transport policy (only TURN-relayed candidates), the
            official ``RtcConfiguration(ice_transport_type=TRANSPORT_RELAY)``.
        sctp_path_mtu: the IP MTU you know the path to the server carries (e.g. 1500 on a LAN
            without tunnels), or None if unknown. Data-channel SCTP packets are 1,189 bytes by
            default (aiortc's size: fits the IPv6 minimum MTU on any path, as libwebrtc's); with
            a known path they grow to what it carries, at most 1,392 bytes, the most every
            livekit-server reads (:func:`lkproto.asyncio._seam.sctp_packet_bytes`), which
            saves about one DATA packet in seven. A server on this host (a loopback pair)
            counts as a known path even when this is None; a TURN-relayed pair never does. A
            value larger than the path really carries loses the larger packets for good, so
            leave it None unless you know. Chosen each time the connection connects.
    """

    ice_addresses: tuple[str, ...] | None = None
    ice_servers: tuple[IceServer, ...] = ()
    max_message_bytes: int = DATA_PACKET_MAX_BYTES
    max_bundle: bool = True
    relay_only: bool = False
    sctp_path_mtu: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidatePair:
    """The ICE candidate pair carrying the connection.

    Attributes:
        local_address: our host (or relayed / reflexive) address.
        local_port: our port.
        remote_address: the peer's address.
        remote_port: the peer's port.
        protocol: ``udp`` or ``tcp``.
    """

    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    protocol: str


DataCallback = Callable[[str, bytes], None]
"""``on_data(label, data)``: a message arrived on the data channel ``label``."""
StateCallback = Callable[[PeerState], None]
"""``on_state_change(state)``: the connection state changed."""

IceRole = Literal["controlling", "controlled"]
"""Our ICE agent's role: the offerer controls unless the answerer is ICE-lite (PROTOCOL-MAP §17)."""


class PeerConnection:
    """One WebRTC peer connection used for LiveKit data channels (and, later, media).

    Callbacks run synchronously inside aiortc's receive path: they must not block. An exception
    they raise is logged and swallowed so it cannot break aiortc's tasks.

    Args:
        options: gathering and limits; defaults to :class:`PeerOptions`'s.
        on_data: called with ``(label, data)`` for every incoming data-channel message; text
            messages are passed UTF-8 encoded.
        on_state_change: called with the new :class:`PeerState`.

    Attributes:
        on_data: the data callback; may be replaced at any time.
        on_state_change: the state callback; may be replaced at any time.
        on_local_candidate: called with the ``RTCIceCandidateInit`` JSON of each
            server-reflexive candidate found after the description was returned (send it as a
            ``TrickleRequest``); may be replaced at any time.
        debug: whether DEBUG logging was enabled when the connection was created.

    Raises:
        LocalProtocolError: ``options`` holds an invalid ICE address or a non-positive limit.
    """

    def __init__(
        self,
        options: PeerOptions | None = None,
        *,
        on_data: DataCallback | None = None,
        on_state_change: StateCallback | None = None,
    ) -> None:
        load_webrtc()
        self._options = options if options is not None else PeerOptions()
        self._ice_addresses = (
            None
            if self._options.ice_addresses is None
            else check_addresses(self._options.ice_addresses)
        )
        if self._options.max_message_bytes <= 0:
            raise LocalProtocolError("max_message_bytes must be positive")
        path_mtu = self._options.sctp_path_mtu
        if path_mtu is not None and path_mtu < _seam.IPV6_MIN_MTU:
            raise LocalProtocolError(
                f"sctp_path_mtu {path_mtu} is below the IPv6 minimum MTU {_seam.IPV6_MIN_MTU}"
            )
        self.on_data: DataCallback | None = on_data
        self.on_state_change: StateCallback | None = on_state_change
        # Told the label when a current data channel closes while this connection is open: aiortc
        # closes every channel when the SCTP association dies (consent lost, DTLS closed), often
        # long before ``connectionState`` says anything (issue 15, 20 s outage).
        self.on_channel_closed: Callable[[str], None] | None = None
        # Told each server-reflexive candidate found after the description was returned, as
        # RTCIceCandidateInit JSON (PROTOCOL-MAP §2 Trickle); None drops them (later
        # descriptions still list them).
        self.on_local_candidate: Callable[[str], None] | None = None
        self._trickled: list[_seam.TrickledGathering] = []
        # Late candidates found before the first local description left create_offer /
        # apply_offer wait here, so a trickle never overtakes its description.
        self._description_out = False
        self._early_local_candidates: list[str] = []

        self._pc = aiortc.RTCPeerConnection(
            aiortc.RTCConfiguration(
                iceServers=_rtc_ice_servers(self._options.ice_servers),
                iceTransportPolicy=(
                    aiortc.RTCIceTransportPolicy.RELAY
                    if self._options.relay_only
                    else aiortc.RTCIceTransportPolicy.ALL
                ),
                # LiveKit bundles every section on one transport. With aiortc's default
                # BALANCED policy a second section of a kind, created before the first answer,
                # gets the first one's transport and is then skipped by the bundling step: its
                # receiver never starts and its SSRC lands on the first track (two audio tracks
                # offered together decoded nothing). MAX_BUNDLE gives every section the one
                # transport from the start (PROTOCOL-MAP §14).
                bundlePolicy=(
                    aiortc.RTCBundlePolicy.MAX_BUNDLE
                    if self._options.max_bundle
                    else aiortc.RTCBundlePolicy.BALANCED
                ),
            )
        )
        self._pc.on("connectionstatechange", self._on_connection_state_change)
        self._pc.on("datachannel", self._on_datachannel)
        self._state = PeerState.NEW
        self._channels: dict[str, aiortc.RTCDataChannel] = {}
        self._buffer_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._mid_to_track_id: dict[str, str] = {}
        # Candidates that arrived before a remote description (None = end-of-candidates).
        self._pending_candidates: list[aiortc.RTCIceCandidate | None] = []
        self._has_remote_description = False
        self._candidate_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closed = False
        self.debug = logger.isEnabledFor(logging.DEBUG)

    def __repr__(self) -> str:
        return f"<PeerConnection {self._state.value} channels={sorted(self._channels)}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- state ------------------------------------------------------------------------------

    @property
    def options(self) -> PeerOptions:
        """The options this connection was created with."""
        return self._options

    @property
    def connection_state(self) -> PeerState:
        """The current connection state."""
        return self._state

    @property
    def channels_open(self) -> bool:
        """True when both ``_reliable`` and ``_lossy`` are open (PROTOCOL-MAP §3)."""
        return all(self._is_open(label) for label in (RELIABLE_LABEL, LOSSY_LABEL))

    @property
    def local_description(self) -> str | None:
        """Our current or pending SDP (with the gathered candidates), if any."""
        description = self._pc.localDescription
        return description.sdp if description is not None else None

    @property
    def remote_description(self) -> str | None:
        """The peer's current or pending SDP, if any."""
        description = self._pc.remoteDescription
        return description.sdp if description is not None else None

    @property
    def ice_role(self) -> IceRole | None:
        """``controlling`` or ``controlled`` once a description fixed it, else None."""
        transport = self._ice_transport()
        return None if transport is None else _seam.ice_role(transport)

    def selected_candidate_pair(self) -> CandidatePair | None:
        """The nominated ICE pair of the data transport, or None before ICE completes."""
        transport = self._ice_transport()
        if transport is None:
            return None
        pair = _seam.nominated_pair(transport)
        if pair is None:
            return None
        return CandidatePair(
            local_address=pair.local.host,
            local_port=pair.local.port,
            remote_address=pair.remote.host,
            remote_port=pair.remote.port,
            protocol=pair.local.transport,
        )

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until the connection is ``connected`` (ICE and DTLS up).

        Args:
            timeout: seconds to wait.

        Raises:
            ConnectError: the connection failed or was closed, or ``timeout`` elapsed.
        """
        await self._wait_for(
            lambda: self._state is PeerState.CONNECTED, timeout, "peer connection to connect"
        )

    async def wait_channels_open(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until both ``_reliable`` and ``_lossy`` are open.

        Args:
            timeout: seconds to wait.

        Raises:
            ConnectError: the connection failed or was closed, or ``timeout`` elapsed.
        """
        await self._wait_for(lambda: self.channels_open, timeout, "data channels to open")

    # -- negotiation -------------------------------------------------------------------------

    async def create_data_channels(self, *, data_track: bool = False) -> None:
        """Create ``_reliable`` (ordered, reliable) and ``_lossy`` (unordered, no retransmits).

        (Nothing is awaited today; async so opening channels can later wait on the transport.)
        Call before :meth:`create_offer` so the offer carries the ``m=application`` section
        (PROTOCOL-MAP §0 step 5, §3).

        Args:
            data_track: also create ``_data_track`` (unordered, no retransmits; PROTOCOL-MAP §12).

        Raises:
            LocalProtocolError: a channel with one of these labels exists, or the connection is
                closed.
        """
        specs: list[tuple[str, bool, int | None]] = [
            (RELIABLE_LABEL, True, None),
            (LOSSY_LABEL, False, 0),
        ]
        if data_track:
            specs.append((DATA_TRACK_LABEL, False, 0))
        self._require_open()
        for label, _, _ in specs:
            if label in self._channels:
                raise LocalProtocolError(f"data channel {label!r} already exists")
        for label, ordered, max_retransmits in specs:
            with _mapped(f"create data channel {label!r}", remote=False):
                channel = self._pc.createDataChannel(
                    label, ordered=ordered, maxRetransmits=max_retransmits
                )
            self._adopt(channel)

    def add_recvonly_transceivers(self, audio: int, video: int) -> None:
        """Add receive-only media sections, e.g. for ``MediaSectionsRequirement`` (PROTOCOL-MAP §2).

        They appear in the next :meth:`create_offer`.

        Args:
            audio: number of ``recvonly`` audio transceivers to add.
            video: number of ``recvonly`` video transceivers to add.

        Raises:
            LocalProtocolError: a negative count, or the connection is closed.
        """
        if audio < 0 or video < 0:
            raise LocalProtocolError(f"transceiver counts must be >= 0, got {audio}, {video}")
        self._require_open()
        with _mapped("add transceivers", remote=False):
            for kind, count in (("audio", audio), ("video", video)):
                for _ in range(count):
                    self._pc.addTransceiver(kind, direction="recvonly")

    # -- media ---------------------------------------------------------------------------------

    def add_send_track(
        self, track: aiortc.MediaStreamTrack, *, codecs: tuple[str, ...] = ()
    ) -> aiortc.RTCRtpTransceiver:
        """Add a ``sendonly`` transceiver carrying ``track``; it appears in the next offer.

        A new transceiver every time (never ``addTrack``, which would take over a ``recvonly``
        section the server uses for a subscription, PROTOCOL-MAP §2 MediaSectionsRequirement).
        The msid track id in the SDP is ``track.id``: pass it as ``AddTrackRequest.cid``
        (PROTOCOL-MAP §9 Publishing step 1).

        Args:
            track: an aiortc track (kind ``audio`` or ``video``).
            codecs: MIME types in order of preference (``"video/VP8"``, ``"video/H264"``); the
                offer lists only these (plus their RTX); empty keeps aiortc's default order.

        Raises:
            LocalProtocolError: the connection is closed, or no codec of ``codecs`` is available.
        """
        self._require_open()
        with _mapped("add transceiver", remote=False):
            transceiver = self._pc.addTransceiver(track, direction="sendonly")
        if codecs:
            available = aiortc.RTCRtpSender.getCapabilities(track.kind).codecs
            wanted = [c for name in codecs for c in available if c.mimeType.lower() == name.lower()]
            if not wanted:
                raise LocalProtocolError(f"none of the codecs {codecs} is available in aiortc")
            rtx = [c for c in available if c.mimeType.lower().endswith("/rtx")]
            transceiver.setCodecPreferences(wanted + rtx)
        return transceiver

    def stop_sending(self, transceiver: aiortc.RTCRtpTransceiver) -> None:
        """Detach the track and make the section ``inactive`` from the next offer on (unpublish,
        PROTOCOL-MAP §16: there is no unpublish request; the server ends the publication when the
        section stops sending)."""
        self._require_open()
        with _mapped("stop sending", remote=False):
            transceiver.sender.replaceTrack(None)
            transceiver.direction = "inactive"

    def receiving(self) -> dict[str, aiortc.MediaStreamTrack]:
        """The remote track of every section we currently receive on, by mid.

        aiortc creates one ``RemoteStreamTrack`` per transceiver and keeps it when the server later
        reuses the section for another track (PROTOCOL-MAP §14), so callers map mid → track SID
        from the latest ``mid_to_track_id`` and treat a changed SID as a new subscription.
        """
        out: dict[str, aiortc.MediaStreamTrack] = {}
        for transceiver in self._pc.getTransceivers():
            track = transceiver.receiver.track
            if (
                transceiver.mid is not None
                and track is not None
                and transceiver.currentDirection in ("recvonly", "sendrecv")
            ):
                out[transceiver.mid] = track
        return out

    def receivers(self) -> dict[str, aiortc.RTCRtpReceiver]:
        """aiortc's ``RTCRtpReceiver`` of every negotiated section, by mid.

        For drivers that read per-section statistics (the wire tap's RTP counters) without
        reaching into the wrapped ``RTCPeerConnection``. Sections without a mid yet (not in any
        applied description) are left out.
        """
        return {t.mid: t.receiver for t in self._pc.getTransceivers() if t.mid is not None}

    def senders(self) -> dict[str, aiortc.RTCRtpSender]:
        """aiortc's ``RTCRtpSender`` of every negotiated section, by mid (see :meth:`receivers`)."""
        return {t.mid: t.sender for t in self._pc.getTransceivers() if t.mid is not None}

    async def create_offer(self) -> str:
        """Create an offer, set it as the local description and return its SDP.

        Gathering happens here, on :attr:`PeerOptions.ice_addresses` if set; host (and TURN)
        candidates are in the returned SDP, server-reflexive ones follow through
        :attr:`on_local_candidate`.

        Raises:
            LocalProtocolError: the connection is closed or not in a state to offer.
        """
        self._require_open()
        with _mapped("create offer", remote=False):
            offer = await self._pc.createOffer()
            self._scope_ice()
            await self._pc.setLocalDescription(offer)
        sdp = self._unfinished(self._local_sdp())
        self._release_local_candidates_soon()
        if self.debug:
            logger.debug("= local offer\n%s", sdp)
        return sdp

    async def apply_answer(self, sdp: str) -> None:
        """Set the peer's answer to our last offer as the remote description.

        Raises:
            LocalProtocolError: no offer is pending or the connection is closed.
            RemoteProtocolError: the SDP is malformed or does not match our offer.
        """
        self._require_open()
        if self.debug:
            logger.debug("< answer\n%s", sdp)
        await self._set_remote(sdp, "answer")
        # SSRCs announced after a receiver started (issue 18, see the seam function).
        _seam.route_remote_ssrcs(self._pc)

    async def apply_offer(self, sdp: str) -> str:
        """Apply the peer's offer and return our answer SDP (dual-PC subscriber, PROTOCOL-MAP §0).

        Raises:
            LocalProtocolError: the connection is closed or in a state that cannot take an offer.
            RemoteProtocolError: the SDP is malformed or offers nothing we can receive.
        """
        self._require_open()
        if self.debug:
            logger.debug("< offer\n%s", sdp)
        await self._set_remote(sdp, "offer")
        with _mapped("create answer", remote=False):
            answer = await self._pc.createAnswer()
            self._scope_ice()
            await self._pc.setLocalDescription(answer)
        # aiortc registers a receiver's SSRCs only when it starts; livekit-server may announce
        # them in a later offer (issue 18, many subscribed tracks; see the seam function).
        _seam.route_remote_ssrcs(self._pc)
        answer_sdp = self._unfinished(self._local_sdp())
        self._release_local_candidates_soon()
        if self.debug:
            logger.debug("= local answer\n%s", answer_sdp)
        return answer_sdp

    async def add_ice_candidate(self, candidate_init_json: str) -> None:
        """Add a trickled remote candidate (``TrickleRequest.candidateInit``, PROTOCOL-MAP §2).

        Candidates that arrive before the remote description are kept and applied with it. An
        empty ``candidate`` is the W3C end-of-candidates marker.

        Args:
            candidate_init_json: JSON ``{"candidate": "candidate:...", "sdpMid": ...,
                "sdpMLineIndex": ..., "usernameFragment": ...}``.

        Raises:
            RemoteProtocolError: the JSON or the candidate line is malformed, or it names no
                media section.
            LocalProtocolError: the connection is closed.
        """
        self._require_open()
        candidate = _parse_candidate_init(candidate_init_json)
        if candidate is None:
            await self.end_of_candidates()
            return
        await self._add_candidate(candidate)

    async def end_of_candidates(self) -> None:
        """Tell ICE no more remote candidates will come (after the ``final=true`` trickle).

        aiortc 1.16 supports ``addIceCandidate(None)``: it marks every ICE transport complete,
        which lets aioice report a failure once all checks fail instead of waiting forever.

        Raises:
            LocalProtocolError: the connection is closed.
        """
        self._require_open()
        await self._add_candidate(None)

    def channel_ids(self) -> dict[str, int]:
        """SCTP stream id of each data channel by label, for ``SyncState.data_channels``.

        A channel gets its id once SCTP is up (even ids for the DTLS client, odd for the server),
        so channels not yet announced are left out.
        """
        return {
            label: channel.id for label, channel in self._channels.items() if channel.id is not None
        }

    def remember_mapping(self, mid_to_track_id: Mapping[str, str]) -> None:
        """Record ``SessionDescription.mid_to_track_id`` from an offer or answer (PROTOCOL-MAP §2).

        Later mappings for the same mid replace earlier ones (aiortc reuses m-lines, §14).
        """
        self._mid_to_track_id.update(mid_to_track_id)

    def track_id_for_mid(self, mid: str) -> str | None:
        """The track SID last recorded for ``mid`` by :meth:`remember_mapping`, if any."""
        return self._mid_to_track_id.get(mid)

    # -- data ----------------------------------------------------------------------------------

    def send(self, label: str, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` as one binary message on the channel ``label``.

        Back-pressure is the caller's: watch :meth:`buffered_amount` and await
        :meth:`wait_buffered_below` (PROTOCOL-MAP §3 Buffered-amount thresholds).

        Raises:
            LocalProtocolError: no such channel, it is not open, or ``data`` is larger than
                :attr:`PeerOptions.max_message_bytes`.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"data must be bytes, got {type(data).__name__}")
        size = len(data)
        if size > self._options.max_message_bytes:
            raise LocalProtocolError(
                f"message of {size} bytes exceeds max_message_bytes="
                f"{self._options.max_message_bytes}"
            )
        channel = self._channel(label)
        if channel.readyState != "open":
            raise LocalProtocolError(f"data channel {label!r} is {channel.readyState}")
        with _mapped(f"send on {label!r}", remote=False):
            channel.send(bytes(data))

    def buffered_amount(self, label: str) -> int:
        """Bytes queued on ``label`` and not yet handed to SCTP.

        Raises:
            LocalProtocolError: no such channel.
        """
        return self._channel(label).bufferedAmount

    def unacknowledged_bytes(self, label: str) -> int:
        """Bytes sent on ``label`` that the peer has not yet received, as far as we can know.

        :meth:`buffered_amount` plus, for an ordered channel, what SCTP holds from the first
        message the peer has not acknowledged in full (:func:`_seam.sctp_unacknowledged_bytes`;
        a message partly covered counts as not received). Still valid after :meth:`close`.
        Falls back to :meth:`buffered_amount` alone when the channel has no stream id yet.

        Raises:
            LocalProtocolError: no such channel.
        """
        channel = self._channel(label)
        queued = channel.bufferedAmount
        sctp = self._pc.sctp
        if sctp is None or channel.id is None or not channel.ordered:
            return queued
        return queued + _seam.sctp_unacknowledged_bytes(sctp, channel.id)

    def last_received_at(self) -> float | None:
        """Event-loop time the peer was last heard on the data transport, None before ICE.

        Watching starts on the first call (:func:`_seam.watch_ice_receipts`), which counts as
        a receipt; call it once connected and then periodically.
        """
        transport = self._ice_transport()
        if transport is None or self._closed:
            return None
        return _seam.watch_ice_receipts(transport)()

    async def wait_buffered_below(self, label: str, threshold: int) -> None:
        """Wait until :meth:`buffered_amount` of ``label`` is at most ``threshold`` bytes.

        Uses aiortc's ``bufferedamountlow`` event; the channel's ``bufferedAmountLowThreshold``
        is managed here (the highest threshold any waiter needs).

        Raises:
            LocalProtocolError: no such channel or a negative threshold.
            ConnectError: the channel or the connection closed while waiting.
        """
        if threshold < 0:
            raise LocalProtocolError(f"threshold must be >= 0, got {threshold}")
        channel = self._channel(label)
        if channel.bufferedAmount <= threshold:
            return
        if channel.readyState != "open":
            raise ConnectError(f"data channel {label!r} is {channel.readyState}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (threshold, future)
        waiters = self._buffer_waiters.setdefault(label, [])
        waiters.append(entry)
        self._rearm_low_threshold(label)
        try:
            await future
        finally:
            if entry in waiters:
                waiters.remove(entry)
                self._rearm_low_threshold(label)

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection and its channels; safe to call more than once.

        Pending :meth:`wait_buffered_below`, :meth:`wait_connected` and
        :meth:`wait_channels_open` calls fail with :class:`~lkproto.errors.ConnectError`. When it
        returns, aiortc's ICE, DTLS and SCTP tasks for this connection have ended.
        """
        first = not self._closed
        self._closed = True
        if first:
            self._fail_buffer_waiters(None, "peer connection closed")
        for gathering in self._trickled:
            gathering.cancel()
        try:
            await self._pc.close()
        except Exception:  # aiortc teardown errors must not mask the caller's own
            logger.exception("error while closing the peer connection")
        await _seam.after_close()
        self._set_state(PeerState.CLOSED)
        self._notify()

    # -- aiortc events (private) -------------------------------------------------------------

    def _on_connection_state_change(self) -> None:
        try:
            state = PeerState(self._pc.connectionState)
        except ValueError:
            logger.warning("unknown aiortc connection state %r", self._pc.connectionState)
            return
        if self._closed and state is not PeerState.CLOSED:
            return
        if state is PeerState.CONNECTED:
            self._fit_datagram_path()
        self._set_state(state)

    def _fit_datagram_path(self) -> None:
        """Size SCTP packets to the path of the nominated pair (see
        :attr:`PeerOptions.sctp_path_mtu`) and enlarge the sockets' receive buffers (so a
        server's burst is not dropped by the kernel: see
        :func:`lkproto.asyncio._seam.enlarge_receive_buffers`); before any data, as DTLS
        connects ahead of SCTP."""
        sctp = self._pc.sctp
        if sctp is None:
            return
        ice = sctp.transport.transport
        _seam.enlarge_receive_buffers(ice)
        pair = _seam.nominated_pair(ice)
        if pair is None:
            return
        size = _seam.sctp_packet_bytes(
            self._options.sctp_path_mtu,
            remote_address=pair.remote.host,
            relayed=pair.local.type == "relay",
        )
        if size == _seam.sctp_packet_bytes_of(sctp):
            return
        _seam.set_sctp_packet_bytes(sctp, size)
        if self.debug:
            logger.debug("= SCTP packets up to %d bytes to %s", size, pair.remote.host)

    def _on_datachannel(self, channel: aiortc.RTCDataChannel) -> None:
        if self.debug:
            logger.debug("< data channel %r opened by the peer", channel.label)
        self._adopt(channel)
        self._notify()

    def _adopt(self, channel: aiortc.RTCDataChannel) -> None:
        label = channel.label
        current = self._channels.get(label)
        if current is None or current.readyState in ("closing", "closed"):
            self._channels[label] = channel

        def on_message(message: bytes | str) -> None:
            data = message.encode() if isinstance(message, str) else message
            callback = self.on_data
            if callback is None:
                return
            try:
                callback(label, data)
            except Exception:
                logger.exception("on_data callback failed for %r", label)

        def on_open() -> None:
            if self.debug:
                logger.debug("= data channel %r open", label)
            self._notify()

        def on_close() -> None:
            if self.debug:
                logger.debug("= data channel %r closed", label)
            current = self._channels.get(label) is channel
            if current:
                self._fail_buffer_waiters(label, f"data channel {label!r} closed")
            self._notify()
            callback = self.on_channel_closed
            if current and not self._closed and callback is not None:
                try:
                    callback(label)
                except Exception:
                    logger.exception("on_channel_closed callback failed for %r", label)

        def on_buffered_amount_low() -> None:
            if self._channels.get(label) is channel:
                self._release_buffer_waiters(label)

        channel.on("message", on_message)
        channel.on("open", on_open)
        channel.on("close", on_close)
        channel.on("bufferedamountlow", on_buffered_amount_low)

    # -- helpers (private) ---------------------------------------------------------------------

    def _set_state(self, state: PeerState) -> None:
        if state is self._state:
            return
        if self.debug:
            logger.debug("= connection is %s", state.value)
        self._state = state
        self._notify()
        callback = self.on_state_change
        if callback is not None:
            try:
                callback(state)
            except Exception:
                logger.exception("on_state_change callback failed")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(self, predicate: Callable[[], bool], limit_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(limit_s):
                while not predicate():
                    if self._closed or self._state in (PeerState.FAILED, PeerState.CLOSED):
                        raise ConnectError(
                            f"gave up waiting for {what}: connection {self._state.value}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise ConnectError(
                f"timed out after {limit_s:g} s waiting for {what} (connection {self._state.value})"
            ) from None

    def _require_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("peer connection is closed")

    def _channel(self, label: str) -> aiortc.RTCDataChannel:
        channel = self._channels.get(label)
        if channel is None:
            raise LocalProtocolError(f"no data channel {label!r}")
        return channel

    def _is_open(self, label: str) -> bool:
        channel = self._channels.get(label)
        return channel is not None and channel.readyState == "open"

    def _scope_ice(self) -> None:
        """Fit every ICE transport of this connection before it gathers (in
        ``setLocalDescription``): our host addresses and aioice's consent-task fix, applied to
        our own aioice connections only (see :func:`lkproto.asyncio._seam.scope_ice_connection`).
        aiortc creates transports in ``addTransceiver``/``createDataChannel`` and
        ``setRemoteDescription``, all of which run before our ``setLocalDescription``."""
        transports: dict[int, aiortc.RTCIceTransport] = {}
        sctp = self._pc.sctp
        if sctp is not None:
            transports[id(sctp.transport.transport)] = sctp.transport.transport
            # Deliver ordered data by SSN even when the server's TSNs are out of SSN order, or
            # the reliable channel stalls in a busy room (issue 15; see the seam function).
            _seam.order_inbound_by_ssn(sctp)
            # WebRTC-sized RTO, delayed SACKs, bundling, one flush per loop turn (issues 15, 18).
            _seam.tune_sctp(sctp)
        for transceiver in self._pc.getTransceivers():
            for dtls in (transceiver.receiver.transport, transceiver.sender.transport):
                transports[id(dtls.transport)] = dtls.transport
        for transport in transports.values():
            _seam.scope_ice_connection(transport, self._ice_addresses)
            # Checks resent every second while connecting: a join made during an outage
            # connects when the path returns instead of hanging (issue 15; see the seam).
            _seam.keep_ice_checking(transport)
            # After scope_ice_connection, whose shadow it wraps (see the seam function).
            self._trickled.append(
                _seam.trickle_server_reflexive(
                    transport, functools.partial(self._on_late_candidate, transport)
                )
            )
            # Outermost: a cancelled gather closes the sockets it bound (issue 15 churn).
            _seam.finish_gather_on_cancel(transport)

    def _on_late_candidate(self, transport: aiortc.RTCIceTransport, candidate: Candidate) -> None:
        if self._closed:
            return
        mid, index = self._section_of(transport)
        if mid is None:
            return
        init = json.dumps(
            {
                "candidate": _CANDIDATE_PREFIX + candidate.to_sdp(),
                "sdpMid": mid,
                "sdpMLineIndex": index,
                "usernameFragment": transport.iceGatherer.getLocalParameters().usernameFragment,
            }
        )
        if self.debug:
            logger.debug("= late local candidate %s", init)
        if not self._description_out:
            self._early_local_candidates.append(init)
            return
        self._emit_local_candidate(init)

    def _section_of(self, transport: aiortc.RTCIceTransport) -> tuple[str | None, int]:
        """The first section of our local description carried by ``transport``: its mid and
        m-line index, which a trickled candidate names (PROTOCOL-MAP §2 Trickle)."""
        sdp = self.local_description or ""
        by_mid = {t.mid: t.receiver.transport.transport for t in self._pc.getTransceivers()}
        sctp = self._pc.sctp
        index = -1
        kind = ""
        for line in sdp.splitlines():
            if line.startswith("m="):
                index += 1
                kind = line[2:].split(" ", 1)[0]
            elif line.startswith("a=mid:") and index >= 0:
                mid = line[6:].strip()
                owner = sctp.transport.transport if kind == "application" and sctp else None
                if owner is None:
                    owner = by_mid.get(mid)
                if owner is transport:
                    return mid, index
        return None, 0

    def _unfinished(self, sdp: str) -> str:
        """``sdp`` without aiortc's ``a=end-of-candidates`` while a STUN query may still add a
        candidate: the peer must keep accepting trickled ones (RFC 8840 §4.4; aioice, for one,
        refuses a candidate after end-of-candidates)."""
        if not any(gathering.pending for gathering in self._trickled):
            return sdp
        return "".join(
            line
            for line in sdp.splitlines(keepends=True)
            if line.rstrip("\r\n") != "a=end-of-candidates"
        )

    def _release_local_candidates_soon(self) -> None:
        """After this call returns its SDP, the caller sends it before yielding to the loop
        (the engine does), so early candidates are emitted on the next loop iteration."""
        if not self._description_out:
            asyncio.get_running_loop().call_soon(self._release_local_candidates)

    def _release_local_candidates(self) -> None:
        self._description_out = True
        early, self._early_local_candidates = self._early_local_candidates, []
        for init in early:
            self._emit_local_candidate(init)

    def _emit_local_candidate(self, init: str) -> None:
        callback = self.on_local_candidate
        if callback is None or self._closed:
            return
        try:
            callback(init)
        except Exception:
            logger.exception("on_local_candidate callback failed")

    def _ice_transport(self) -> aiortc.RTCIceTransport | None:
        sctp = self._pc.sctp
        if sctp is not None:
            return sctp.transport.transport
        for transceiver in self._pc.getTransceivers():
            return transceiver.receiver.transport.transport
        return None

    def _local_sdp(self) -> str:
        sdp = self.local_description
        if sdp is None:  # pragma: no cover - setLocalDescription always leaves one
            raise LocalProtocolError("no local description after setLocalDescription")
        return sdp

    async def _set_remote(self, sdp: str, kind: Literal["offer", "answer"]) -> None:
        if not isinstance(sdp, str) or not sdp.strip():
            raise RemoteProtocolError(f"empty remote {kind}")
        description = aiortc.RTCSessionDescription(sdp=sdp, type=kind)
        async with self._candidate_lock:
            with _mapped(f"apply remote {kind}", remote=True):
                await self._pc.setRemoteDescription(description)
            self._has_remote_description = True
            pending, self._pending_candidates = self._pending_candidates, []
            for candidate in pending:
                await self._apply_candidate(candidate)

    async def _add_candidate(self, candidate: aiortc.RTCIceCandidate | None) -> None:
        async with self._candidate_lock:
            if not self._has_remote_description:
                self._pending_candidates.append(candidate)
                return
            await self._apply_candidate(candidate)

    async def _apply_candidate(self, candidate: aiortc.RTCIceCandidate | None) -> None:
        if self.debug:
            logger.debug("< candidate %s", "end" if candidate is None else candidate)
        with _mapped("add ICE candidate", remote=True):
            await self._pc.addIceCandidate(candidate)

    def _rearm_low_threshold(self, label: str) -> None:
        channel = self._channels.get(label)
        waiters = self._buffer_waiters.get(label)
        if channel is None or not waiters:
            return
        channel.bufferedAmountLowThreshold = max(threshold for threshold, _ in waiters)

    def _release_buffer_waiters(self, label: str) -> None:
        channel = self._channels[label]
        waiters = self._buffer_waiters.get(label, [])
        amount = channel.bufferedAmount
        for threshold, future in list(waiters):
            if amount <= threshold:
                waiters.remove((threshold, future))
                if not future.done():
                    future.set_result(None)
        # Every remaining threshold is below the current amount, so the event fires again when
        # the amount crosses the highest of them.
        self._rearm_low_threshold(label)

    def _fail_buffer_waiters(self, label: str | None, reason: str) -> None:
        labels = list(self._buffer_waiters) if label is None else [label]
        for each in labels:
            for _, future in self._buffer_waiters.pop(each, []):
                if not future.done():
                    future.set_exception(ConnectError(reason))


def _rtc_ice_servers(servers: tuple[IceServer, ...]) -> list[aiortc.RTCIceServer]:
    # Never None: aiortc would substitute stun.l.google.com (PROTOCOL-MAP §17).
    return [
        aiortc.RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in servers
    ]


def _parse_candidate_init(text: str) -> aiortc.RTCIceCandidate | None:
    """Parse W3C ``RTCIceCandidateInit`` JSON; None for the end-of-candidates marker."""
    load_webrtc()
    try:
        init = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"ICE candidate is not JSON: {text!r}") from exc
    if not isinstance(init, dict):
        raise RemoteProtocolError(f"ICE candidate is not a JSON object: {text!r}")
    line = init.get("candidate") or ""
    if not isinstance(line, str):
        raise RemoteProtocolError(f"ICE candidate 'candidate' is not a string: {text!r}")
    line = line.strip()
    if line.startswith("a="):
        line = line[2:]
    line = line.removeprefix(_CANDIDATE_PREFIX)
    if not line:
        return None
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise RemoteProtocolError(f"ICE candidate sdpMid is not a string: {text!r}")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise RemoteProtocolError(f"ICE candidate sdpMLineIndex is not an integer: {text!r}")
    if mid is None and index is None:
        raise RemoteProtocolError(f"ICE candidate has neither sdpMid nor sdpMLineIndex: {text!r}")
    try:
        candidate = candidate_from_sdp(line)
    except (AssertionError, ValueError, IndexError) as exc:
        raise RemoteProtocolError(f"malformed ICE candidate {line!r}") from exc
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate


@contextlib.contextmanager
def _mapped(what: str, *, remote: bool) -> Iterator[None]:
    """Map aiortc's bare exceptions to lkproto's tree at this boundary.

    Wrong-state errors are always the caller's; content errors (malformed SDP, no common codec,
    mismatched sections) are the peer's when ``remote`` is set.
    """
    try:
        yield
    except (InvalidStateError, InvalidAccessError, InternalError) as exc:
        raise LocalProtocolError(f"cannot {what}: {exc or type(exc).__name__}") from exc
    except (OperationError, ValueError, AssertionError, IndexError, KeyError) as exc:
        error = RemoteProtocolError if remote else LocalProtocolError
        raise error(f"cannot {what}: {exc or type(exc).__name__}") from exc
