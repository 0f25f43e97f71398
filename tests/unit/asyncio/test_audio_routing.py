"""SSRCs a later remote description announces reach aiortc's RTP router (issue 18, many tracks).

aiortc registers a receiver's SSRCs only when the receiver starts; ``route_remote_ssrcs`` adds
what the current remote description says. Two real aiortc peer connections on loopback."""

from __future__ import annotations

import asyncio

import aiortc
from aiortc.mediastreams import AudioStreamTrack

from lkproto.asyncio import _seam
from tests.conftest import scaled


async def _connected_pair(tracks: int) -> tuple[aiortc.RTCPeerConnection, aiortc.RTCPeerConnection]:
    offerer, answerer = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
    connected = asyncio.Event()

    @answerer.on("connectionstatechange")
    def _changed() -> None:
        if answerer.connectionState == "connected":
            connected.set()

    for _ in range(tracks):
        offerer.addTrack(AudioStreamTrack())
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await connected.wait()
    # aiortc starts the receivers right after the DTLS handshake that made it "connected".
    for _ in range(10):
        await asyncio.sleep(0)
    return offerer, answerer


async def test_ssrcs_missing_from_the_router_are_added_and_routed() -> None:
    offerer, answerer = await asyncio.wait_for(_connected_pair(3), scaled(30))
    try:
        receivers = [t.receiver for t in answerer.getTransceivers()]
        router = receivers[0].transport._rtp_router
        assert all(r._RTCRtpReceiver__started for r in receivers)  # type: ignore[attr-defined]
        ssrcs = {r: [s for s, owner in router.ssrc_table.items() if owner is r] for r in receivers}
        assert all(len(v) == 1 for v in ssrcs.values())
        assert _seam.route_remote_ssrcs(answerer) == 0  # all known: nothing to add
        # What happens when the section had no a=ssrc line as the receiver started.
        lost = receivers[1]
        del router.ssrc_table[ssrcs[lost][0]]
        assert router.ssrc_table.get(ssrcs[lost][0]) is None
        assert _seam.route_remote_ssrcs(answerer) == 1
        assert router.ssrc_table[ssrcs[lost][0]] is lost
        # Three receivers share the Opus payload type: only the SSRC can route their packets.
        packet = aiortc.rtp.RtpPacket(payload_type=next(iter(router.payload_type_table)))
        packet.ssrc = ssrcs[lost][0]
        assert router.route_rtp(packet) is lost
    finally:
        await offerer.close()
        await answerer.close()


async def test_nothing_to_route_without_a_remote_description() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        assert _seam.route_remote_ssrcs(pc) == 0
    finally:
        await pc.close()
