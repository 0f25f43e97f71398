"""WebRTC statistics shaped like the official ``livekit.rtc.stats`` messages.

The official SDK answers ``Room.get_rtc_stats()`` and ``Track.get_stats()`` with protobuf
``RtcStats`` messages: one per W3C stats object, the kind chosen by the ``stats`` oneof
(``codec``, ``inbound_rtp``, ``outbound_rtp``, ``remote_inbound_rtp``, ...), each made of the
same building blocks (``rtc``: id and timestamp, ``stream``: SSRC and kind, ``received`` /
``sent``: packet and byte counts, then the kind's own block). lkproto returns frozen dataclasses
with the same class names, the same attribute paths (``s.outbound_rtp.sent.bytes_sent``) and the
protobuf-style ``WhichOneof("stats")`` / ``HasField(name)``, so code written for the official
messages reads them unchanged.

The numbers come from aiortc, which knows less than libwebrtc. Each block carries only the
fields lkproto can fill honestly (an attribute the official message has and this one lacks
raises ``AttributeError`` instead of reading a made-up zero):

- ``outbound_rtp``: packets and payload bytes sent (aiortc's sender counters), the section's
  mid, the sender's SSRC and whether it is sending (``active``: false while muted);
- ``remote_inbound_rtp``: what the server's receiver reports (RTCP RR) about our stream: lost
  packets, jitter, fraction lost, round-trip time;
- ``inbound_rtp``: packets received, lost, jitter (aiortc's per-SSRC RFC 3550 counters, read per
  SSRC so that retransmissions do not overwrite the media stream), payload bytes (counted by
  lkproto), frames decoded (video, lkproto's count of frames the track delivered),
  retransmitted packets and bytes (the RTX stream's counters);
- ``remote_outbound_rtp``: the server's sender reports (RTCP SR) about what it sent us;
- ``codec``: payload type, MIME type, clock rate, channels and fmtp line of each section's
  negotiated codec (read from the applied SDP);
- ``transport``: packets and bytes over the DTLS transport, ICE role and DTLS state;
- ``candidate_pair``, ``local_candidate``, ``remote_candidate``: the nominated ICE pair;
- ``data_channel``: label, id and state of lkproto's data channels.

Units follow the official messages: ``jitter`` and ``round_trip_time`` in seconds,
``timestamp`` in milliseconds since the Unix epoch.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from lkproto.rtc._enum import ProtoEnum

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.peer import PeerConnection

__all__ = [
    "CandidatePairStats",
    "CodecStats",
    "DataChannelState",
    "DataChannelStats",
    "DtlsTransportState",
    "IceCandidatePairState",
    "IceCandidateStats",
    "IceRole",
    "IceTransportState",
    "InboundRtpStreamStats",
    "OutboundRtpStreamStats",
    "ReceivedRtpStreamStats",
    "RemoteInboundRtpStreamStats",
    "RemoteOutboundRtpStreamStats",
    "RtcStats",
    "RtcStatsData",
    "RtpStreamStats",
    "SentRtpStreamStats",
    "TransportStats",
    "receiver_stats",
    "sender_stats",
    "session_stats",
    "watch_receiver",
]

# -- enums (the official stats enums' names and numbers) ------------------------------------------


class DataChannelState(ProtoEnum):
    """Official ``DataChannelState``."""

    DC_CONNECTING = 0
    DC_OPEN = 1
    DC_CLOSING = 2
    DC_CLOSED = 3


class IceRole(ProtoEnum):
    """Official ``IceRole``."""

    ICE_UNKNOWN = 0
    ICE_CONTROLLING = 1
    ICE_CONTROLLED = 2


class DtlsTransportState(ProtoEnum):
    """Official ``DtlsTransportState``."""

    DTLS_TRANSPORT_NEW = 0
    DTLS_TRANSPORT_CONNECTING = 1
    DTLS_TRANSPORT_CONNECTED = 2
    DTLS_TRANSPORT_CLOSED = 3
    DTLS_TRANSPORT_FAILED = 4


class IceTransportState(ProtoEnum):
    """Official ``IceTransportState``."""

    ICE_TRANSPORT_NEW = 0
    ICE_TRANSPORT_CHECKING = 1
    ICE_TRANSPORT_CONNECTED = 2
    ICE_TRANSPORT_COMPLETED = 3
    ICE_TRANSPORT_DISCONNECTED = 4
    ICE_TRANSPORT_FAILED = 5
    ICE_TRANSPORT_CLOSED = 6


class IceCandidatePairState(ProtoEnum):
    """Official ``IceCandidatePairState``."""

    PAIR_FROZEN = 0
    PAIR_WAITING = 1
    PAIR_IN_PROGRESS = 2
    PAIR_FAILED = 3
    PAIR_SUCCEEDED = 4


# -- building blocks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcStatsData:
    """What every stats object has.

    Attributes:
        id: unique within one report; other objects refer to it (``transport_id``...).
        timestamp: when it was taken, milliseconds since the Unix epoch.
    """

    id: str
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecStats:
    """A codec negotiated on a section (from the applied SDP's ``rtpmap``/``fmtp``).

    Attributes:
        payload_type: the RTP payload type.
        transport_id: the transport it is used on.
        mime_type: ``audio/opus``, ``video/VP8``...
        clock_rate: RTP clock in Hz.
        channels: audio channels (0 for video).
        sdp_fmtp_line: the ``a=fmtp`` parameters, or "".
    """

    payload_type: int
    transport_id: str
    mime_type: str
    clock_rate: int
    channels: int
    sdp_fmtp_line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpStreamStats:
    """One RTP stream.

    Attributes:
        ssrc: its synchronisation source.
        kind: ``audio`` or ``video``.
        transport_id: the transport carrying it.
        codec_id: the :class:`CodecStats` object's id ("" if the codec is not known).
    """

    ssrc: int
    kind: str
    transport_id: str
    codec_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedRtpStreamStats:
    """Reception counters (RFC 3550 A.3 and A.8).

    Attributes:
        packets_received: RTP packets received.
        packets_lost: expected minus received.
        jitter: interarrival jitter, seconds.
    """

    packets_received: int
    packets_lost: int
    jitter: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SentRtpStreamStats:
    """Sending counters.

    Attributes:
        packets_sent: RTP packets sent (retransmissions not included).
        bytes_sent: RTP payload bytes sent (headers and padding not included).
    """

    packets_sent: int
    bytes_sent: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRtpStreamStats:
    """A stream we receive.

    Attributes:
        track_identifier: the LiveKit track SID it carries.
        mid: its SDP section.
        remote_id: the matching ``remote_outbound_rtp`` object's id, or "".
        bytes_received: RTP payload bytes received (counted by lkproto from the subscription on).
        frames_decoded: decoded video frames delivered by the track (0 for audio).
        packets_discarded: audio packets that arrived after their place in the playout order
            had been passed (lkproto.core.jitter; duplicates not counted, as in WebRTC's
            ``packetsDiscarded``); 0 for video.
        retransmitted_packets_received: packets of the RTX stream.
        retransmitted_bytes_received: payload bytes of the RTX stream.
        rtx_ssrc: the RTX stream's SSRC, or 0.
    """

    track_identifier: str
    mid: str
    remote_id: str
    bytes_received: int
    frames_decoded: int
    packets_discarded: int
    retransmitted_packets_received: int
    retransmitted_bytes_received: int
    rtx_ssrc: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRtpStreamStats:
    """A stream we send.

    Attributes:
        mid: its SDP section.
        remote_id: the matching ``remote_inbound_rtp`` object's id, or "".
        rid: the simulcast layer's RTP stream id ("" for a single-layer track).
        active: whether the sender is sending (false while the track is muted, or while
            dynacast pauses this simulcast layer).
    """

    mid: str
    remote_id: str
    rid: str
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteInboundRtpStreamStats:
    """What the remote receiver reported about our stream (RTCP receiver report).

    Attributes:
        local_id: the ``outbound_rtp`` object it reports on.
        round_trip_time: latest smoothed round-trip time, seconds.
        fraction_lost: fraction of packets lost since the previous report, 0..1.
    """

    local_id: str
    round_trip_time: float
    fraction_lost: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteOutboundRtpStreamStats:
    """What the remote sender reported about its stream (RTCP sender report).

    Attributes:
        local_id: the ``inbound_rtp`` object it describes.
        remote_timestamp: the report's NTP time, milliseconds since the Unix epoch (0 if none).
    """

    local_id: str
    remote_timestamp: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportStats:
    """The DTLS transport under the media and data.

    Attributes:
        packets_sent: packets sent (RTP, RTCP and data).
        packets_received: packets received.
        bytes_sent: bytes sent.
        bytes_received: bytes received.
        ice_role: our ICE role.
        dtls_state: the DTLS state.
        ice_state: the ICE state (from the connection state).
        selected_candidate_pair_id: the nominated pair's id, or "".
    """

    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    ice_role: IceRole
    dtls_state: DtlsTransportState
    ice_state: IceTransportState
    selected_candidate_pair_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidatePairStats:
    """The nominated ICE candidate pair.

    Attributes:
        transport_id: the transport it serves.
        local_candidate_id: our candidate's id.
        remote_candidate_id: the server's candidate's id.
        state: always ``PAIR_SUCCEEDED`` (only the nominated pair is reported).
        nominated: always True.
    """

    transport_id: str
    local_candidate_id: str
    remote_candidate_id: str
    state: IceCandidatePairState
    nominated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class IceCandidateStats:
    """One side of the nominated pair.

    Attributes:
        transport_id: the transport it serves.
        address: IP address.
        port: port.
        protocol: ``udp`` or ``tcp``.
    """

    transport_id: str
    address: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChannelStats:
    """One of lkproto's data channels.

    Attributes:
        label: ``_reliable``, ``_lossy``...
        protocol: the subprotocol ("" for LiveKit's channels).
        data_channel_identifier: the SCTP stream id.
        state: open or closed.
    """

    label: str
    protocol: str
    data_channel_identifier: int
    state: DataChannelState


# -- the kinds (official RtcStats.<Kind> nested messages) ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Codec:
    rtc: RtcStatsData
    codec: CodecStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _InboundRtp:
    rtc: RtcStatsData
    stream: RtpStreamStats
    received: ReceivedRtpStreamStats
    inbound: InboundRtpStreamStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _OutboundRtp:
    rtc: RtcStatsData
    stream: RtpStreamStats
    sent: SentRtpStreamStats
    outbound: OutboundRtpStreamStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _RemoteInboundRtp:
    rtc: RtcStatsData
    stream: RtpStreamStats
    received: ReceivedRtpStreamStats
    remote_inbound: RemoteInboundRtpStreamStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _RemoteOutboundRtp:
    rtc: RtcStatsData
    stream: RtpStreamStats
    sent: SentRtpStreamStats
    remote_outbound: RemoteOutboundRtpStreamStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _DataChannel:
    rtc: RtcStatsData
    dc: DataChannelStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _Transport:
    rtc: RtcStatsData
    transport: TransportStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _CandidatePair:
    rtc: RtcStatsData
    candidate_pair: CandidatePairStats


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    rtc: RtcStatsData
    candidate: IceCandidateStats


_Kind: TypeAlias = (
    _Codec
    | _InboundRtp
    | _OutboundRtp
    | _RemoteInboundRtp
    | _RemoteOutboundRtp
    | _DataChannel
    | _Transport
    | _CandidatePair
    | _Candidate
)

_ONEOF: Final = (
    "codec",
    "inbound_rtp",
    "outbound_rtp",
    "remote_inbound_rtp",
    "remote_outbound_rtp",
    "data_channel",
    "transport",
    "candidate_pair",
    "local_candidate",
    "remote_candidate",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcStats:
    """One statistics object; exactly one of the fields is set (the official ``stats`` oneof).

    Read it as the official message: ``s.WhichOneof("stats")`` names the kind, ``s.HasField(k)``
    tests one, and ``s.inbound_rtp.received.packets_received`` reads a value. The nested names
    ``RtcStats.Codec``, ``RtcStats.InboundRtp``... are the kinds' classes, as in the official
    message. Kinds aiortc has no data for (``media_source``, ``media_playout``,
    ``peer_connection``, ``certificate``, ``stream``, ``track``) are never produced.

    Raises:
        ValueError: not exactly one kind is set.
    """

    Codec = _Codec
    InboundRtp = _InboundRtp
    OutboundRtp = _OutboundRtp
    RemoteInboundRtp = _RemoteInboundRtp
    RemoteOutboundRtp = _RemoteOutboundRtp
    DataChannel = _DataChannel
    Transport = _Transport
    CandidatePair = _CandidatePair
    LocalCandidate = _Candidate
    RemoteCandidate = _Candidate

    codec: _Codec | None = None
    inbound_rtp: _InboundRtp | None = None
    outbound_rtp: _OutboundRtp | None = None
    remote_inbound_rtp: _RemoteInboundRtp | None = None
    remote_outbound_rtp: _RemoteOutboundRtp | None = None
    data_channel: _DataChannel | None = None
    transport: _Transport | None = None
    candidate_pair: _CandidatePair | None = None
    local_candidate: _Candidate | None = None
    remote_candidate: _Candidate | None = None

    def __post_init__(self) -> None:
        chosen = [name for name in _ONEOF if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(f"RtcStats needs exactly one kind set, got {chosen or 'none'}")

    def WhichOneof(self, group: str) -> str:
        """The name of the kind that is set (protobuf's ``WhichOneof("stats")``).

        Raises:
            ValueError: ``group`` is not ``"stats"`` (as protobuf for an unknown oneof).
        """
        if group != "stats":
            raise ValueError(f'RtcStats has no oneof {group!r} (only "stats")')
        return next(name for name in _ONEOF if getattr(self, name) is not None)

    def HasField(self, name: str) -> bool:
        """Whether kind ``name`` (or the oneof ``"stats"``, always) is set.

        Raises:
            ValueError: ``name`` is no kind of the official message.
        """
        if name == "stats":
            return True
        if name in _ONEOF:
            return getattr(self, name) is not None
        if name in _UNPRODUCED:
            return False
        raise ValueError(f"RtcStats has no field {name!r}")

    @property
    def rtc(self) -> RtcStatsData:
        """The set kind's id and timestamp (a shortcut; the official message has no such
        field, read ``getattr(s, s.WhichOneof("stats")).rtc`` there)."""
        kind: _Kind = getattr(self, self.WhichOneof("stats"))
        return kind.rtc


_UNPRODUCED: Final = (
    "media_source",
    "media_playout",
    "peer_connection",
    "certificate",
    "stream",
    "track",
)


# -- collection from aiortc ---------------------------------------------------------------------


def watch_receiver(receiver: Any) -> None:
    """Count the payload bytes ``receiver`` accepts from now on (for ``bytes_received``).

    Called when a subscription starts; aiortc counts no received bytes itself. Does nothing if
    this aiortc lacks the internal the count needs (``bytes_received`` then stays 0).
    """
    from lkproto.asyncio import _seam
    from lkproto.errors import LkError

    with contextlib.suppress(LkError):  # another aiortc: the counter stays at 0
        _seam.count_received_bytes(receiver)


@dataclass(frozen=True, slots=True, kw_only=True)
class _SdpCodec:
    payload_type: int
    mime_type: str
    clock_rate: int
    channels: int
    fmtp: str


_RTPMAP: Final = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?", re.MULTILINE)
_FMTP: Final = re.compile(r"^a=fmtp:(\d+) (.*)$", re.MULTILINE)
_MID: Final = re.compile(r"^a=mid:(\S+)", re.MULTILINE)


def _section_codecs(sdp: str | None) -> dict[str, _SdpCodec]:
    """mid -> the first codec of that section's ``m=`` line (RFC 8829 §5.3.1: the answerer's
    first format is what its side sends; aiortc's sender takes the first, too)."""
    if not sdp:
        return {}
    out: dict[str, _SdpCodec] = {}
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        m_line = section.split("\n", 1)[0].split()
        mid = _MID.search(section)
        if mid is None or len(m_line) < 4 or m_line[0] not in ("m=audio", "m=video"):
            continue
        kind = m_line[0][2:]
        maps = {int(pt): (name, int(rate), ch) for pt, name, rate, ch in _RTPMAP.findall(section)}
        fmtps = {int(pt): line.strip() for pt, line in _FMTP.findall(section)}
        for fmt in m_line[3:]:
            pt = int(fmt) if fmt.isdigit() else -1
            if pt not in maps or maps[pt][0].lower() in ("rtx", "red", "ulpfec"):
                continue
            name, rate, channels = maps[pt]
            out[mid.group(1)] = _SdpCodec(
                payload_type=pt,
                mime_type=f"{kind}/{name}",
                clock_rate=rate,
                channels=int(channels) if channels else (1 if kind == "audio" else 0),
                fmtp=fmtps.get(pt, ""),
            )
            break
    return out


class _Collector:
    """Builds one report: shared ids, the clock, codec and transport objects made once."""

    def __init__(self, pc: PeerConnection, prefix: str) -> None:
        self.pc = pc
        self.prefix = prefix
        self.now_ms = int(time.time() * 1000)
        self.out: list[RtcStats] = []
        self.codecs = _section_codecs(pc.remote_description)
        self.codecs.update(
            {k: v for k, v in _section_codecs(pc.local_description).items() if k not in self.codecs}
        )
        self.transport_id = f"{prefix}T"
        self._codec_ids: set[str] = set()

    def rtc(self, suffix: str, *, prefixed: bool = True) -> RtcStatsData:
        return RtcStatsData(
            id=f"{self.prefix}{suffix}" if prefixed else suffix, timestamp=self.now_ms
        )

    def stream(self, ssrc: int, kind: str, mid: str) -> RtpStreamStats:
        # Every RTP kind (inbound, outbound and their remote views) has this same block.
        return RtpStreamStats(
            ssrc=ssrc, kind=kind, transport_id=self.transport_id, codec_id=self.codec_id(mid)
        )

    def candidate(self, address: str, port: int, protocol: str) -> IceCandidateStats:
        return IceCandidateStats(
            transport_id=self.transport_id, address=address, port=port, protocol=protocol
        )

    def codec_id(self, mid: str) -> str:
        codec = self.codecs.get(mid)
        if codec is None:
            return ""
        cid = f"{self.prefix}C{mid}_{codec.payload_type}"
        if cid not in self._codec_ids:
            self._codec_ids.add(cid)
            self.out.append(
                RtcStats(
                    codec=_Codec(
                        rtc=self.rtc(cid, prefixed=False),
                        codec=CodecStats(
                            payload_type=codec.payload_type,
                            transport_id=self.transport_id,
                            mime_type=codec.mime_type,
                            clock_rate=codec.clock_rate,
                            channels=codec.channels,
                            sdp_fmtp_line=codec.fmtp,
                        ),
                    )
                )
            )
        return cid

    async def sender(self, sender: Any, mid: str) -> None:
        from lkproto.asyncio.publish import simulcast_of

        simulcast = simulcast_of(sender)
        if simulcast is not None:
            # The section's own sender stays silent; each layer has its sender (and SSRC).
            # A layer dynacast paused is not active either.
            for rid, layer_sender in simulcast.senders.items():
                await self._one_sender(layer_sender, mid, rid, rid in simulcast.wanted)
            return
        await self._one_sender(sender, mid, "", True)

    async def _one_sender(self, sender: Any, mid: str, rid: str, running: bool) -> None:
        report = await sender.getStats()
        kind = str(getattr(sender, "kind", "") or "")
        for stats in list(report.values()):
            if stats.type == "outbound-rtp":
                self._outbound(stats, mid, kind, sender, rid=rid, running=running)
            elif stats.type == "remote-inbound-rtp":
                self._remote_inbound(stats, mid, kind)
            elif stats.type == "transport":
                self._transport(stats)

    def _outbound(
        self, stats: Any, mid: str, kind: str, sender: Any, *, rid: str, running: bool
    ) -> None:
        from lkproto.asyncio._seam import sender_enabled

        enabled = sender_enabled(sender)
        ssrc = int(stats.ssrc)
        self.out.append(
            RtcStats(
                outbound_rtp=_OutboundRtp(
                    rtc=self.rtc(f"OT{ssrc}"),
                    stream=self.stream(ssrc, stats.kind or kind, mid),
                    sent=_sent(stats),
                    outbound=OutboundRtpStreamStats(
                        mid=mid,
                        remote_id=f"{self.prefix}RI{ssrc}",
                        rid=rid,
                        active=running and (True if enabled is None else enabled),
                    ),
                )
            )
        )

    def _remote_inbound(self, stats: Any, mid: str, kind: str) -> None:
        ssrc = int(stats.ssrc)
        clock = self.codecs[mid].clock_rate if mid in self.codecs else 0
        self.out.append(
            RtcStats(
                remote_inbound_rtp=_RemoteInboundRtp(
                    rtc=self.rtc(f"RI{ssrc}"),
                    stream=self.stream(ssrc, stats.kind or kind, mid),
                    received=ReceivedRtpStreamStats(
                        packets_received=int(stats.packetsReceived),
                        packets_lost=int(stats.packetsLost),
                        jitter=float(stats.jitter) / clock if clock else 0.0,
                    ),
                    remote_inbound=RemoteInboundRtpStreamStats(
                        local_id=f"{self.prefix}OT{ssrc}",
                        round_trip_time=float(stats.roundTripTime or 0.0),
                        # RFC 3550 6.4.1: fraction lost is a fixed-point number over 256.
                        fraction_lost=float(stats.fractionLost) / 256.0,
                    ),
                )
            )
        )

    async def receiver(self, receiver: Any, mid: str, track_sid: str, frames_decoded: int) -> None:
        from lkproto.asyncio import _seam

        report = await receiver.getStats()
        kind = str(getattr(getattr(receiver, "track", None), "kind", "") or "")
        for stats in list(report.values()):
            if stats.type == "remote-outbound-rtp":
                self._remote_outbound(stats, mid, kind)
            elif stats.type == "transport":
                self._transport(stats)
        streams = _seam.inbound_streams(receiver)
        order = _seam.audio_order(receiver)  # None unless an audio buffer of lkproto's
        discarded = order.late if order is not None else 0
        rtx = {s.rtx_of: s for s in streams if s.rtx_of is not None}
        for stream in streams:
            if stream.rtx_of is not None:
                continue
            repair = rtx.get(stream.ssrc)
            self.out.append(
                RtcStats(
                    inbound_rtp=_InboundRtp(
                        rtc=self.rtc(f"IT{stream.ssrc}"),
                        stream=self.stream(stream.ssrc, kind, mid),
                        received=ReceivedRtpStreamStats(
                            packets_received=stream.packets_received,
                            packets_lost=stream.packets_lost,
                            jitter=stream.jitter / stream.clock_rate if stream.clock_rate else 0.0,
                        ),
                        inbound=InboundRtpStreamStats(
                            track_identifier=track_sid,
                            mid=mid,
                            remote_id=f"{self.prefix}RO{stream.ssrc}",
                            bytes_received=stream.bytes_received,
                            frames_decoded=frames_decoded if kind == "video" else 0,
                            packets_discarded=discarded,
                            retransmitted_packets_received=(
                                repair.packets_received if repair else 0
                            ),
                            retransmitted_bytes_received=repair.bytes_received if repair else 0,
                            rtx_ssrc=repair.ssrc if repair else 0,
                        ),
                    )
                )
            )

    def _remote_outbound(self, stats: Any, mid: str, kind: str) -> None:
        ssrc = int(stats.ssrc)
        remote = getattr(stats, "remoteTimestamp", None)
        self.out.append(
            RtcStats(
                remote_outbound_rtp=_RemoteOutboundRtp(
                    rtc=self.rtc(f"RO{ssrc}"),
                    stream=self.stream(ssrc, stats.kind or kind, mid),
                    sent=_sent(stats),
                    remote_outbound=RemoteOutboundRtpStreamStats(
                        local_id=f"{self.prefix}IT{ssrc}",
                        remote_timestamp=remote.timestamp() * 1000.0 if remote else 0.0,
                    ),
                )
            )
        )

    def _transport(self, stats: Any) -> None:
        # Every sender's and receiver's report repeats the one (bundled) DTLS transport.
        if any(s.transport is not None for s in self.out):
            return
        pair = self.pc.selected_candidate_pair()
        pair_id = f"{self.prefix}CP" if pair is not None else ""
        self.out.append(
            RtcStats(
                transport=_Transport(
                    rtc=self.rtc(self.transport_id, prefixed=False),
                    transport=TransportStats(
                        packets_sent=int(stats.packetsSent),
                        packets_received=int(stats.packetsReceived),
                        bytes_sent=int(stats.bytesSent),
                        bytes_received=int(stats.bytesReceived),
                        ice_role=_ICE_ROLES.get(self.pc.ice_role or "", IceRole.ICE_UNKNOWN),
                        dtls_state=_DTLS_STATES.get(
                            str(stats.dtlsState), DtlsTransportState.DTLS_TRANSPORT_NEW
                        ),
                        ice_state=_ice_state(self.pc),
                        selected_candidate_pair_id=pair_id,
                    ),
                )
            )
        )

    def ice_and_channels(self) -> None:
        pair = self.pc.selected_candidate_pair()
        if pair is not None:
            local = self.candidate(pair.local_address, pair.local_port, pair.protocol)
            remote = self.candidate(pair.remote_address, pair.remote_port, pair.protocol)
            self.out.append(
                RtcStats(
                    candidate_pair=_CandidatePair(
                        rtc=self.rtc("CP"),
                        candidate_pair=CandidatePairStats(
                            transport_id=self.transport_id,
                            local_candidate_id=f"{self.prefix}LC",
                            remote_candidate_id=f"{self.prefix}RC",
                            state=IceCandidatePairState.PAIR_SUCCEEDED,
                            nominated=True,
                        ),
                    )
                )
            )
            self.out.append(
                RtcStats(local_candidate=_Candidate(rtc=self.rtc("LC"), candidate=local))
            )
            self.out.append(
                RtcStats(remote_candidate=_Candidate(rtc=self.rtc("RC"), candidate=remote))
            )
        state = DataChannelState.DC_OPEN if self.pc.channels_open else DataChannelState.DC_CLOSED
        for label, channel_id in sorted(self.pc.channel_ids().items()):
            self.out.append(
                RtcStats(
                    data_channel=_DataChannel(
                        rtc=self.rtc(f"D{channel_id}"),
                        dc=DataChannelStats(
                            label=label,
                            protocol="",
                            data_channel_identifier=channel_id,
                            state=state,
                        ),
                    )
                )
            )


def _sent(stats: Any) -> SentRtpStreamStats:
    # aiortc's outbound-rtp and remote-outbound-rtp both carry the W3C sent-stream counters.
    return SentRtpStreamStats(packets_sent=int(stats.packetsSent), bytes_sent=int(stats.bytesSent))


_ICE_ROLES: Final[Mapping[str, IceRole]] = {
    "controlling": IceRole.ICE_CONTROLLING,
    "controlled": IceRole.ICE_CONTROLLED,
}
_DTLS_STATES: Final[Mapping[str, DtlsTransportState]] = {
    "new": DtlsTransportState.DTLS_TRANSPORT_NEW,
    "connecting": DtlsTransportState.DTLS_TRANSPORT_CONNECTING,
    "connected": DtlsTransportState.DTLS_TRANSPORT_CONNECTED,
    "closed": DtlsTransportState.DTLS_TRANSPORT_CLOSED,
    "failed": DtlsTransportState.DTLS_TRANSPORT_FAILED,
}


def _ice_state(pc: PeerConnection) -> IceTransportState:
    state = pc.connection_state.value
    return {
        "new": IceTransportState.ICE_TRANSPORT_NEW,
        "connecting": IceTransportState.ICE_TRANSPORT_CHECKING,
        "connected": IceTransportState.ICE_TRANSPORT_CONNECTED,
        "disconnected": IceTransportState.ICE_TRANSPORT_DISCONNECTED,
        "failed": IceTransportState.ICE_TRANSPORT_FAILED,
        "closed": IceTransportState.ICE_TRANSPORT_CLOSED,
    }.get(str(state), IceTransportState.ICE_TRANSPORT_NEW)


def _mid_of(endpoint: Any, by_mid: Mapping[str, Any]) -> str:
    return next((mid for mid, e in by_mid.items() if e is endpoint), "")


async def sender_stats(pc: PeerConnection, sender: Any, *, prefix: str = "P") -> list[RtcStats]:
    """Statistics of one published track's sender: outbound, remote inbound, codec, transport.

    Args:
        pc: the publisher connection.
        sender: aiortc's ``RTCRtpSender`` of the track.
        prefix: prepended to every id (keeps publisher and subscriber ids apart).
    """
    collector = _Collector(pc, prefix)
    await collector.sender(sender, _mid_of(sender, pc.senders()))
    return collector.out


async def receiver_stats(
    pc: PeerConnection, receiver: Any, *, track_sid: str, frames_decoded: int, prefix: str = "S"
) -> list[RtcStats]:
    """Statistics of one subscribed track's receiver: inbound, remote outbound, codec, transport.

    Args:
        pc: the connection the track arrives on.
        receiver: aiortc's ``RTCRtpReceiver`` of its section.
        track_sid: the track SID (``inbound.track_identifier``).
        frames_decoded: decoded frames the track delivered so far.
        prefix: prepended to every id.
    """
    collector = _Collector(pc, prefix)
    await collector.receiver(receiver, _mid_of(receiver, pc.receivers()), track_sid, frames_decoded)
    return collector.out


async def session_stats(
    engine: Engine, frames_decoded: Mapping[str, int]
) -> tuple[list[RtcStats], list[RtcStats]]:
    """``(publisher_stats, subscriber_stats)``: the report of each of the engine's connections.

    Each list is one peer connection's report, as the official SDK's: with the single peer
    connection livekit-server v1.13.5 offers, everything (streams both ways, transport, ICE
    pair, data channels) is in ``publisher_stats`` and ``subscriber_stats`` is empty, which is
    what the official SDK 1.2.1 answers there too; with two connections (protocol v0 servers)
    each has its own.

    Args:
        engine: the room's engine.
        frames_decoded: track SID -> decoded frames delivered by that remote track.
    """
    publisher, subscriber = engine.peer_connections()
    endpoints = engine.rtp_endpoints()
    out: list[list[RtcStats]] = []
    for pc, prefix in ((publisher, "P"), (subscriber, "S")):
        if pc is None:
            out.append([])
            continue
        collector = _Collector(pc, prefix)
        senders, receivers = pc.senders(), pc.receivers()
        for way, sid, _kind, endpoint in endpoints:
            if way == ">" and endpoint in senders.values():
                await collector.sender(endpoint, _mid_of(endpoint, senders))
            elif way == "<" and endpoint in receivers.values():
                await collector.receiver(
                    endpoint, _mid_of(endpoint, receivers), sid, frames_decoded.get(sid, 0)
                )
        collector.ice_and_channels()
        out.append(collector.out)
    return out[0], out[1]
