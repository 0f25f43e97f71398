"""End-to-end encryption of simulcast layers (lkproto.asyncio.e2ee + lkproto.asyncio.publish).

A simulcast track's frames leave through one sender per layer, created after the engine's
``sender_hook`` ran; the E2EE driver must reach each of them and encrypt its frames like a
single-layer track's, each layer drawing its own IVs.
"""

from __future__ import annotations

from typing import Any

import aiortc
import av
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import VideoStreamTrack

from lkproto.asyncio import _seam
from lkproto.asyncio.e2ee import E2eeDriver, EncryptingEncoder
from lkproto.asyncio.publish import SimulcastSender, install_video_encoder, prepare_sender
from lkproto.core.e2ee import EncryptionStateChanged, FrameCryptor, KeyOptions, KeyProvider
from lkproto.core.publish import TrackDescription
from lkproto.core.simulcast import plan_layers
from lkproto.wire.e2ee import FrameCodec

__all__: list[str] = []

KEY = b"simulcast-key"


def _driver() -> E2eeDriver:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=KEY)
    states: list[EncryptionStateChanged] = []
    return E2eeDriver(provider, local_identity=lambda: "me", on_state=states.append)


def _description() -> TrackDescription:
    return TrackDescription(
        cid="TR_cam",
        name="cam",
        kind="video",
        source=1,
        mime_type="video/VP8",
        simulcast_layers=plan_layers(1280, 720),
    )


def _frame(width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.pts = 0
    frame.time_base = aiortc.mediastreams.VIDEO_TIME_BASE
    return frame


def _layer_sender(pc: aiortc.RTCPeerConnection, bitrate: int) -> Any:
    sender = aiortc.RTCRtpSender(VideoStreamTrack(), pc.addTransceiver("video").sender.transport)
    install_video_encoder(sender, mime_type="video/VP8", bitrate=bitrate)
    return sender


async def test_every_layer_sender_is_encrypted_under_the_tracks_cryptor() -> None:
    driver = _driver()
    description = _description()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        prepare_sender(sender, description)
        simulcast = _seam_simulcast(sender)
        # One layer already started (hook added late), the others start after the hook.
        simulcast.senders["q"] = _layer_sender(pc, 150_000)
        driver.prepare_sender(sender, description)
        assert isinstance(_seam.current_encoder(simulcast.senders["q"]), EncryptingEncoder)
        # The section's own sender stays silent: it is not wrapped.
        assert not isinstance(_seam.current_encoder(sender), EncryptingEncoder)
        for rid in ("h", "f"):
            layer = _layer_sender(pc, 500_000)
            for hook in simulcast._layer_hooks:
                hook(layer)
            simulcast.senders[rid] = layer
        wrappers = [_seam.current_encoder(s) for s in simulcast.senders.values()]
        assert all(isinstance(w, EncryptingEncoder) for w in wrappers)
        assert len({id(w.cryptor) for w in wrappers if isinstance(w, EncryptingEncoder)}) == 1
        assert list(driver.cryptors) == [("me", "TR_cam")]
        receiving = FrameCryptor(
            KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=KEY),
            participant_identity="me",
            track_sid="T",
            codec=FrameCodec.VP8,
        )
        ivs = set()
        for wrapper, (width, height) in zip(
            wrappers, [(320, 180), (640, 360), (1280, 720)], strict=True
        ):
            assert isinstance(wrapper, EncryptingEncoder)
            payloads, _ = wrapper.encode(_frame(width, height), True)
            sealed = b"".join(vp8_depayload(p) for p in payloads)
            clear = receiving.decrypt(sealed)
            assert clear is not None
            assert clear != sealed
            # The trailer's IV: 12 bytes before the IV length and key index.
            ivs.add(sealed[-14:-2])
        assert len(ivs) == 3  # no IV shared between layers under the one key
    finally:
        await pc.close()


def _seam_simulcast(sender: Any) -> SimulcastSender:
    from lkproto.asyncio.publish import simulcast_of

    found = simulcast_of(sender)
    assert found is not None
    return found
