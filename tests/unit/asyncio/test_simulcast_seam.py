"""The seam's simulcast functions against the real aiortc internals (lkproto.asyncio._seam).

Two of lkproto's peer connections talk over loopback. A layer sender on the section of a
published track, behind :class:`RidTaggingTransport`, must deliver RTP that carries its rid in
the ``sdes:rtp-stream-id`` header extension; :func:`send_sender_report` must put an RTCP sender
report on the wire with the sender's own clock pair; :func:`intercept_send` must keep aiortc from
starting the section's own sender and hand over the negotiated parameters instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiortc
import aiortc.rtp
import pytest
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters

from lkproto.asyncio import _seam
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from lkproto.core.simulcast import RID_EXTENSION_URI
from lkproto.errors import LkError
from tests.conftest import scaled

__all__: list[str] = []

LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)


class Recording:
    """A stand-in DTLS transport that keeps what it is asked to send."""

    state = "connected"
    _stats_id = "transport_test"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.registered: list[Any] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)

    def _register_rtp_sender(self, sender: Any, parameters: Any) -> None:
        self.registered.append(sender)


_EXTENSIONS = [
    RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    RTCRtpHeaderExtensionParameters(id=2, uri=RID_EXTENSION_URI),
]


async def test_rtp_gets_the_rid_and_rtcp_passes_untouched() -> None:
    real = Recording()
    proxy = _seam.RidTaggingTransport(real, "h", _EXTENSIONS)  # type: ignore[arg-type]
    ext_map = aiortc.rtp.HeaderExtensionsMap()
    ext_map.configure(aiortc.RTCRtpParameters(headerExtensions=_EXTENSIONS))
    packet = aiortc.rtp.RtpPacket(payload_type=97, sequence_number=7, timestamp=90, ssrc=5)
    packet.extensions.mid = "1"
    packet.payload = b"\x10vp8"
    await proxy._send_rtp(packet.serialize(ext_map))
    report = aiortc.rtp.RtcpSrPacket(
        ssrc=5,
        sender_info=aiortc.rtp.RtcpSenderInfo(
            ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4
        ),
    )
    await proxy._send_rtp(bytes(report))
    tagged = aiortc.rtp.RtpPacket.parse(real.sent[0], ext_map)
    assert (tagged.extensions.rtp_stream_id, tagged.extensions.mid) == ("h", "1")
    assert (tagged.payload, tagged.sequence_number, tagged.ssrc) == (b"\x10vp8", 7, 5)
    assert real.sent[1] == bytes(report)
    # Everything else is the real transport's.
    assert proxy._stats_id == "transport_test"
    proxy._register_rtp_sender("sender", None)  # type: ignore[operator]
    assert real.registered == ["sender"]


def test_a_transport_without_the_internals_is_refused() -> None:
    with pytest.raises(LkError, match="no longer has"):
        _seam.RidTaggingTransport(object(), "q", _EXTENSIONS)  # type: ignore[arg-type]


async def test_the_section_sender_hands_over_its_parameters_and_reports_go_out() -> None:
    sending, receiving = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    handed: asyncio.Future[RTCRtpSendParameters] = asyncio.get_running_loop().create_future()

    async def on_send(parameters: RTCRtpSendParameters) -> None:
        handed.set_result(parameters)

    try:
        transceiver = sending.add_send_track(AudioStreamTrack())
        section_sender = transceiver.sender
        _seam.intercept_send(section_sender, on_send)
        _seam.intercept_send(section_sender, on_send)  # a second call changes nothing
        offer = await asyncio.wait_for(sending.create_offer(), scaled(10))
        answer = await asyncio.wait_for(receiving.apply_offer(offer), scaled(10))
        await asyncio.wait_for(sending.apply_answer(answer), scaled(10))
        parameters = await asyncio.wait_for(handed, scaled(15))
        assert parameters.muxId == "0"
        assert parameters.codecs[0].mimeType.lower() == "audio/opus"
        # aiortc never started the section's own sender.
        stats = await section_sender.getStats()
        [out] = [s for s in stats.values() if s.type == "outbound-rtp"]
        assert out.packetsSent == 0
        assert await _seam.send_sender_report(section_sender) is False  # no RTP yet

        # A layer sender on the same transport: it sends, then reports on demand.
        layer = aiortc.RTCRtpSender(AudioStreamTrack(), section_sender.transport)
        await layer.send(parameters)

        async def sent_some() -> None:
            while True:
                report = await layer.getStats()
                if any(s.type == "outbound-rtp" and s.packetsSent for s in report.values()):
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(sent_some(), scaled(10))
        assert await _seam.send_sender_report(layer) is True
        await layer.stop()
    finally:
        await sending.close()
        await receiving.close()


async def test_reports_fail_clearly_without_the_internals() -> None:
    sender = aiortc.RTCPeerConnection().addTransceiver("audio").sender
    del sender._RTCRtpSender__ntp_timestamp  # type: ignore[attr-defined]
    with pytest.raises(LkError, match="no longer has"):
        await _seam.send_sender_report(sender)
