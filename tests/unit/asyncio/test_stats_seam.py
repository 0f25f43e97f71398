"""The seam's statistics functions against the real aiortc internals (lkproto.asyncio._seam).

Two of lkproto's peer connections talk over loopback; one sends audio. The receiver's per-SSRC
counters read through the seam must equal what aiortc's sender says it sent once sending has
stopped, and each function must fail clearly when the internal it reads is gone.
"""

from __future__ import annotations

import asyncio

import aiortc
import pytest
from aiortc.mediastreams import AudioStreamTrack

from lkproto.asyncio import _seam
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from lkproto.errors import LkError
from tests.conftest import scaled

__all__: list[str] = []

LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)


async def test_received_bytes_and_streams_match_what_the_sender_sent() -> None:
    sending, receiving = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    try:
        transceiver = sending.add_send_track(AudioStreamTrack())
        offer = await asyncio.wait_for(sending.create_offer(), scaled(10))
        answer = await asyncio.wait_for(receiving.apply_offer(offer), scaled(10))
        [receiver] = receiving.receivers().values()
        _seam.count_received_bytes(receiver)
        _seam.count_received_bytes(receiver)  # a second call changes nothing
        await asyncio.wait_for(sending.apply_answer(answer), scaled(10))

        report: dict[str, object] = {}

        async def sent_at_least(n: int) -> None:
            while True:
                report.update(await transceiver.sender.getStats())
                out = [s for s in report.values() if getattr(s, "type", "") == "outbound-rtp"]
                if out and out[0].packetsSent >= n:  # type: ignore[attr-defined]
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(sent_at_least(25), scaled(15))
        assert _seam.sender_enabled(transceiver.sender) is True
        transceiver.sender.replaceTrack(None)  # stop sending, then let the last packets land
        await asyncio.sleep(scaled(0.5))
        stats = await transceiver.sender.getStats()
        [out] = [s for s in stats.values() if s.type == "outbound-rtp"]
        [stream] = _seam.inbound_streams(receiver)
        assert stream.ssrc == out.ssrc
        assert stream.rtx_of is None
        assert stream.packets_received == out.packetsSent
        assert stream.bytes_received == out.bytesSent > 0
        assert stream.packets_lost == 0
        assert stream.clock_rate == 48_000
    finally:
        await sending.close()
        await receiving.close()


async def test_receiver_counters_fail_clearly_without_the_internals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = aiortc.RTCPeerConnection().addTransceiver("audio").receiver
    assert _seam.inbound_streams(receiver) == []
    monkeypatch.delattr(receiver, "_RTCRtpReceiver__remote_streams")
    with pytest.raises(LkError, match="no longer has"):
        _seam.inbound_streams(receiver)
    with pytest.raises(LkError, match="no longer has"):
        _seam.count_received_bytes(receiver)


async def test_sender_enabled_reads_the_flag_muting_sets() -> None:
    sender = aiortc.RTCPeerConnection().addTransceiver("audio").sender
    assert _seam.sender_enabled(sender) is True
    assert _seam.set_sender_enabled(sender, False)
    assert _seam.sender_enabled(sender) is False
    del sender._enabled
    assert _seam.sender_enabled(sender) is None
