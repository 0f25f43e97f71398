"""tolerate_audio_loss: a real aiortc audio receiver plays past a lost packet (issue 15).

Packets go through aiortc 1.16.0's own ``RTCRtpReceiver._handle_rtp_packet`` (depayloading, the
jitter buffer, the decoder queue); only the decoder thread is left out, so what reaches the
decoder queue is read directly.
"""

from __future__ import annotations

import queue

import aiortc
import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from lkproto.asyncio import _seam
from lkproto.core.jitter import AUDIO_REORDER_DEPTH
from lkproto.errors import LkError

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
LOST = frozenset({10, 30, 31, 32, 50})
SENT = 80


async def _decoded(tolerant: bool, order: list[int], late: int = 0) -> list[bytes]:
    """Feed ``order`` (sequence numbers) to a fresh audio receiver; the frames it would decode."""
    pc = aiortc.RTCPeerConnection()
    receiver = pc.addTransceiver("audio").receiver
    try:
        counters = None
        if tolerant:
            assert _seam.audio_order(receiver) is None  # aiortc's own buffer
            counters = _seam.tolerate_audio_loss(receiver)
            assert counters is not None
            assert _seam.tolerate_audio_loss(receiver) is None  # installed once
            assert _seam.audio_order(receiver) is counters
        receiver._RTCRtpReceiver__codecs[OPUS.payloadType] = OPUS  # type: ignore[attr-defined]
        # Any true value: _handle_rtp_packet queues frames only while a decoder thread is set.
        receiver._RTCRtpReceiver__decoder_thread = True  # type: ignore[attr-defined]
        for seq in order:
            packet = RtpPacket(
                payload_type=OPUS.payloadType or 0,
                sequence_number=seq % 65536,
                timestamp=(seq * 960) % (1 << 32),
                ssrc=4242,
                payload=b"frame-%d" % seq,
            )
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
        q: queue.Queue[tuple[RTCRtpCodecParameters, JitterFrame]]
        q = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        frames = []
        while not q.empty():
            codec, frame = q.get_nowait()
            assert codec is OPUS
            frames.append(frame.data)
        if counters is not None:
            assert counters.late == late
        return frames
    finally:
        receiver._RTCRtpReceiver__decoder_thread = None  # type: ignore[attr-defined]
        await pc.close()


@pytest.mark.parametrize("start", [0, 65500])  # the second crosses the 16-bit wrap
async def test_a_lost_packet_is_skipped_and_order_restored(start: int) -> None:
    order = [start + i for i in range(SENT) if i not in LOST]
    order[20], order[21] = order[21], order[20]  # one pair reordered
    arrived = sorted(order)
    order.append(start + 40)  # a repeat of a packet long gone: discarded as late
    tolerant = await _decoded(True, order, late=1)
    assert tolerant == [b"frame-%d" % s for s in arrived[:-AUDIO_REORDER_DEPTH]]
    # aiortc's own buffer, same packets: it stalls at each loss and drops packets to catch up.
    stock = await _decoded(False, order)
    assert len(stock) < len(tolerant) - len(LOST)


async def test_only_audio_receivers() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        with pytest.raises(ValueError, match="audio"):
            _seam.tolerate_audio_loss(pc.addTransceiver("video").receiver)
    finally:
        await pc.close()


async def test_fails_clearly_without_the_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        monkeypatch.delattr(receiver, "_RTCRtpReceiver__jitter_buffer")
        with pytest.raises(LkError, match="no longer has"):
            _seam.tolerate_audio_loss(receiver)
    finally:
        await pc.close()
