"""lkproto.rtc.stats: the official shapes, the oneof behaviour, and reports built from aiortc.

The names are checked against the installed official SDK's ``stats`` messages (every field and
enum member lkproto has must exist there under the same name and number); the reports are built
from two of lkproto's peer connections talking over loopback, one sending audio to the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import types

import pytest
from aiortc.mediastreams import AudioStreamTrack

from lkproto import rtc
from lkproto.asyncio import _seam
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from lkproto.errors import LocalProtocolError
from lkproto.rtc import stats
from lkproto.rtc.stats import RtcStats, _section_codecs
from tests.conftest import scaled

__all__: list[str] = []

LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)

_BLOCKS = (
    stats.RtcStatsData,
    stats.CodecStats,
    stats.RtpStreamStats,
    stats.ReceivedRtpStreamStats,
    stats.SentRtpStreamStats,
    stats.InboundRtpStreamStats,
    stats.OutboundRtpStreamStats,
    stats.RemoteInboundRtpStreamStats,
    stats.RemoteOutboundRtpStreamStats,
    stats.TransportStats,
    stats.CandidatePairStats,
    stats.IceCandidateStats,
    stats.DataChannelStats,
)
_KINDS = (
    "Codec",
    "InboundRtp",
    "OutboundRtp",
    "RemoteInboundRtp",
    "RemoteOutboundRtp",
    "DataChannel",
    "Transport",
    "CandidatePair",
    "LocalCandidate",
    "RemoteCandidate",
)
_ENUMS = (
    stats.DataChannelState,
    stats.IceRole,
    stats.DtlsTransportState,
    stats.IceTransportState,
    stats.IceCandidatePairState,
)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("block", _BLOCKS, ids=lambda c: c.__name__)
def test_every_field_has_the_official_name(block: type) -> None:
    official = pytest.importorskip("livekit.rtc").stats
    message = getattr(official, block.__name__)
    assert set(_field_names(block)) <= set(message.DESCRIPTOR.fields_by_name)


@pytest.mark.parametrize("kind", _KINDS)
def test_every_kind_has_the_official_blocks(kind: str) -> None:
    official = pytest.importorskip("livekit.rtc").stats
    ours = getattr(RtcStats, kind)
    message = getattr(official.RtcStats, kind)
    # Each kind is made of the official blocks, all of them (no field of a kind is left out).
    assert _field_names(ours) == list(message.DESCRIPTOR.fields_by_name)
    for field in dataclasses.fields(ours):
        block = message.DESCRIPTOR.fields_by_name[field.name].message_type.name
        assert str(field.type) == block, (kind, field.name)


def test_the_oneof_names_are_the_official_ones() -> None:
    official = pytest.importorskip("livekit.rtc").stats
    oneof = official.RtcStats.DESCRIPTOR.oneofs_by_name["stats"]
    produced = set(_field_names(RtcStats))
    assert produced | set(stats._UNPRODUCED) == {f.name for f in oneof.fields}


@pytest.mark.parametrize("ours", _ENUMS, ids=lambda e: e.__name__)
def test_enums_have_the_official_names_and_numbers(ours: type[enum.IntEnum]) -> None:
    official = pytest.importorskip("livekit.rtc").stats
    wrapper = getattr(official, ours.__name__)
    assert {m.name: int(m) for m in ours} == dict(wrapper.items())


def _codec() -> RtcStats:
    return RtcStats(
        codec=RtcStats.Codec(
            rtc=stats.RtcStatsData(id="c", timestamp=1),
            codec=stats.CodecStats(
                payload_type=111,
                transport_id="t",
                mime_type="audio/opus",
                clock_rate=48000,
                channels=2,
                sdp_fmtp_line="",
            ),
        )
    )


def test_the_oneof_answers_like_protobuf() -> None:
    s = _codec()
    assert s.WhichOneof("stats") == "codec"
    assert s.HasField("codec")
    assert s.HasField("stats")
    assert not s.HasField("inbound_rtp")
    assert not s.HasField("media_source")  # an official kind lkproto never produces
    assert s.rtc.id == "c"
    with pytest.raises(ValueError, match="no field"):
        s.HasField("nonsense")
    with pytest.raises(ValueError, match="no oneof"):
        s.WhichOneof("other")
    with pytest.raises(ValueError, match="exactly one"):
        RtcStats()
    with pytest.raises(ValueError, match="exactly one"):
        RtcStats(codec=s.codec, transport=RtcStats.Transport(rtc=s.rtc, transport=None))  # type: ignore[arg-type]


_SDP = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
        "a=mid:0",
        "a=rtpmap:63 red/48000/2",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 96",
        "a=mid:1",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:2",
        "",
    ]
)


def test_section_codecs_take_each_sections_first_media_codec() -> None:
    codecs = _section_codecs(_SDP)
    assert set(codecs) == {"0", "1"}
    assert (codecs["0"].payload_type, codecs["0"].mime_type) == (111, "audio/opus")
    assert (codecs["0"].clock_rate, codecs["0"].channels) == (48000, 2)
    assert codecs["0"].fmtp == "minptime=10;useinbandfec=1"
    assert (codecs["1"].payload_type, codecs["1"].mime_type) == (96, "video/VP8")
    assert (codecs["1"].channels, codecs["1"].fmtp) == (0, "")
    assert _section_codecs(None) == {}


async def test_reports_from_a_loopback_call_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    sending, receiving = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    try:
        await sending.create_data_channels()
        transceiver = sending.add_send_track(AudioStreamTrack())
        offer = await asyncio.wait_for(sending.create_offer(), scaled(10))
        answer = await asyncio.wait_for(receiving.apply_offer(offer), scaled(10))
        [receiver] = receiving.receivers().values()
        stats.watch_receiver(receiver)
        await asyncio.wait_for(sending.apply_answer(answer), scaled(10))
        await sending.wait_connected(scaled(10))

        async def sent(n: int) -> list[RtcStats]:
            while True:
                report = await stats.sender_stats(sending, transceiver.sender)
                out = [s.outbound_rtp for s in report if s.outbound_rtp is not None]
                if out and out[0].sent.packets_sent >= n:
                    return report
                await asyncio.sleep(0.05)

        await asyncio.wait_for(sent(25), scaled(15))
        transceiver.sender.replaceTrack(None)
        await asyncio.sleep(scaled(0.5))
        sent_report = await stats.sender_stats(sending, transceiver.sender)
        # packets_discarded is the audio buffer's count of late packets (none on this link).
        late = types.SimpleNamespace(late=3)
        monkeypatch.setattr(_seam, "audio_order", lambda r: late if r is receiver else None)
        got_report = await stats.receiver_stats(
            receiving, receiver, track_sid="TR_x", frames_decoded=7
        )
    finally:
        await sending.close()
        await receiving.close()

    by_kind = {s.WhichOneof("stats"): s for s in sent_report}
    assert set(by_kind) >= {"outbound_rtp", "codec", "transport"}
    out = by_kind["outbound_rtp"].outbound_rtp
    assert out is not None
    assert out.outbound.mid == "0"
    assert out.outbound.active
    codec = by_kind["codec"].codec
    assert codec is not None
    assert codec.codec.mime_type.lower() == "audio/opus"
    assert out.stream.codec_id == codec.rtc.id
    transport = by_kind["transport"].transport
    assert transport is not None
    assert transport.transport.bytes_sent > out.sent.bytes_sent
    assert transport.transport.ice_role == stats.IceRole.ICE_CONTROLLING

    [inbound] = [s.inbound_rtp for s in got_report if s.inbound_rtp is not None]
    assert inbound.stream.ssrc == out.stream.ssrc
    assert inbound.received.packets_received == out.sent.packets_sent
    assert inbound.inbound.bytes_received == out.sent.bytes_sent
    assert inbound.received.packets_lost == 0
    assert 0 <= inbound.received.jitter < 1.0
    assert inbound.inbound.track_identifier == "TR_x"
    assert inbound.inbound.frames_decoded == 0  # audio: decoded frames are a video count
    assert inbound.inbound.packets_discarded == 3


async def test_a_disconnected_room_refuses_and_an_unpublished_track_reports_nothing() -> None:
    room = rtc.Room()
    with pytest.raises(LocalProtocolError):
        await room.get_rtc_stats()
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("t", source)
    assert await track.get_stats() == []
