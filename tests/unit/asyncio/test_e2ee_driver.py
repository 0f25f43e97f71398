"""lkproto.asyncio.e2ee: data packets through the driver, and frames through aiortc's encoders
and decoder queue (real aiortc objects; the key derivation is the real one, window 0)."""

from __future__ import annotations

import asyncio
import logging
import threading
from fractions import Fraction
from typing import Any

import aiortc
import av
import pytest
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import PACKET_MAX, VpxPayloadDescriptor, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from lkproto.asyncio import _seam
from lkproto.asyncio.audio import install_opus_encoder
from lkproto.asyncio.e2ee import E2eeDriver, EncryptingEncoder
from lkproto.core.e2ee import (
    EncryptionState,
    EncryptionStateChanged,
    FrameCryptor,
    KeyOptions,
    KeyProvider,
    default_crypto,
)
from lkproto.core.publish import TrackDescription
from lkproto.errors import LocalProtocolError
from lkproto.testing import scaled
from lkproto.wire import pb
from lkproto.wire.e2ee import FrameCodec, clear_header_size, h264_slice_ids

KEY = b"driver-key"


def _counter_bytes() -> Any:
    state = {"n": 0}

    def random_bytes(n: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(n, "big")

    return random_bytes


def _driver(key: bytes | None = KEY, identity: str = "me") -> tuple[E2eeDriver, list[Any]]:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=key)
    states: list[EncryptionStateChanged] = []
    driver = E2eeDriver(
        provider,
        local_identity=lambda: identity,
        on_state=states.append,
        random_bytes=_counter_bytes(),
    )
    return driver, states


def _user(payload: bytes) -> pb.DataPacket:
    packet = pb.DataPacket()
    packet.user.payload = payload
    return packet


def test_seal_then_open_and_ivs_differ() -> None:
    sender, states = _driver()
    receiver, _ = _driver(identity="other")
    a, b = sender.seal(_user(b"one")), sender.seal(_user(b"two"))
    assert a.encrypted_packet.iv != b.encrypted_packet.iv
    a.participant_identity = "me"
    opened = receiver.open(a)
    assert opened is not None
    assert opened.user.payload == b"one"
    assert states == [
        EncryptionStateChanged(participant_identity="me", track_sid="", state=EncryptionState.OK)
    ]


def test_disabled_sends_clear_and_missing_key_refuses() -> None:
    driver, _ = _driver()
    driver.set_enabled(False)
    assert driver.seal(_user(b"x")).WhichOneof("value") == "user"
    keyless, states = _driver(key=None)
    with pytest.raises(LocalProtocolError):
        keyless.seal(_user(b"x"))
    assert states[-1].state is EncryptionState.MISSING_KEY


def test_unopenable_packet_is_dropped_logged_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, _ = _driver(key=b"theirs")
    receiver, states = _driver(key=b"ours")
    sealed = sender.seal(_user(b"secret"))
    sealed.participant_identity = "them"
    with caplog.at_level(logging.WARNING, "lkproto.e2ee"):
        assert receiver.open(sealed) is None
    assert "dropping an encrypted packet from 'them'" in caplog.text
    assert states[-1].state is EncryptionState.DECRYPTION_FAILED


# -- frames through aiortc ----------------------------------------------------------------------


def _audio_frame() -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    frame.planes[0].update(bytes(frame.planes[0].buffer_size))
    frame.sample_rate = 48_000
    frame.pts = 0
    frame.time_base = Fraction(1, 48_000)
    return frame


def _video_frame() -> av.VideoFrame:
    frame = av.VideoFrame(320, 240, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    frame.pts = 0
    frame.time_base = Fraction(1, 90_000)
    return frame


def _description(kind: str, mime: str) -> TrackDescription:
    return TrackDescription(cid="TR_cid", name="t", kind=kind, source=0, mime_type=mime)  # type: ignore[arg-type]


def _receiving_cryptor(codec: FrameCodec) -> FrameCryptor:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=KEY)
    return FrameCryptor(provider, participant_identity="me", track_sid="T", codec=codec)


async def test_opus_sender_is_wrapped_and_frames_decrypt() -> None:
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(AudioStreamTrack())
        install_opus_encoder(sender, channels=1, bitrate=32_000)
        inner = _seam.current_encoder(sender)
        driver.prepare_sender(sender, _description("audio", "audio/opus"))
        wrapper = _seam.current_encoder(sender)
        assert isinstance(wrapper, EncryptingEncoder)
        assert wrapper.inner is inner
        driver.prepare_sender(sender, _description("audio", "audio/opus"))
        assert _seam.current_encoder(sender) is wrapper  # not wrapped twice
        payloads, _ = wrapper.encode(_audio_frame())
        assert len(payloads) == 1
        clear = _receiving_cryptor(FrameCodec.OPUS).decrypt(payloads[0])
        assert clear is not None
        assert clear[0] == payloads[0][0]  # the TOC byte travels in clear
        assert list(driver.cryptors) == [("me", "TR_cid")]
    finally:
        await pc.close()


async def test_vp8_frames_are_encrypted_whole_and_packetised_anew() -> None:
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        driver.prepare_sender(sender, _description("video", "video/VP8"))
        wrapper = _seam.current_encoder(sender)
        assert isinstance(wrapper, EncryptingEncoder)
        plain_payloads, _ = wrapper.inner.encode(_video_frame(), True)
        plain = b"".join(vp8_depayload(p) for p in plain_payloads)
        payloads, _ = wrapper.encode(_video_frame(), True)
        assert all(len(p) <= PACKET_MAX for p in payloads)
        descriptors = [VpxPayloadDescriptor.parse(p)[0] for p in payloads]
        assert [d.partition_start for d in descriptors] == [1] + [0] * (len(payloads) - 1)
        assert len({d.picture_id for d in descriptors}) == 1
        sealed = b"".join(vp8_depayload(p) for p in payloads)
        assert sealed[:10] == plain[:10]  # key frame: 10 clear bytes
        clear = _receiving_cryptor(FrameCodec.VP8).decrypt(sealed)
        assert clear is not None
        assert len(clear) == len(plain)
        assert clear[:10] == plain[:10]
    finally:
        await pc.close()


async def test_h264_access_units_are_encrypted_and_packetised_anew() -> None:
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        driver.prepare_sender(sender, _description("video", "video/H264"))
        wrapper = _seam.current_encoder(sender)
        assert isinstance(wrapper, EncryptingEncoder)
        captured: list[tuple[list[bytes], int]] = []
        real_encode = wrapper.inner.encode

        def recording(frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
            captured.append(real_encode(frame, force_keyframe))
            return captured[-1]

        wrapper.inner.encode = recording  # type: ignore[method-assign]
        payloads, _ = wrapper.encode(_video_frame(), True)
        plain = b"".join(h264_depayload(p) for p in captured[0][0])
        sealed = b"".join(h264_depayload(p) for p in payloads)
        header = clear_header_size(FrameCodec.H264, sealed)
        assert sealed[:header] == plain[:header]
        assert b"\x00\x00\x01" not in sealed[header:]
        assert _receiving_cryptor(FrameCodec.H264).decrypt(sealed) == plain
    finally:
        await pc.close()


async def test_encrypted_x264_key_frames_keep_the_pps_id_libwebrtc_reads() -> None:
    """Issue 16 root cause, with aiortc's real x264 encoder.

    libwebrtc's depacketiser reads the first slice's pic_parameter_set_id before decrypting, and
    x264's I slices put it in the first encrypted bit: with one IV per frame about every other
    key frame reached the official SDK as "No PPS with id << N received", was dropped and asked
    for again, and sometimes a second of video went missing.
    """
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        driver.prepare_sender(sender, _description("video", "video/H264"))
        wrapper = _seam.current_encoder(sender)
        assert isinstance(wrapper, EncryptingEncoder)
        receiving = _receiving_cryptor(FrameCodec.H264)
        for _ in range(16):
            payloads, _ = wrapper.encode(_video_frame(), True)
            sealed = b"".join(h264_depayload(p) for p in payloads)
            assert h264_slice_ids(sealed) == (0, 0)
            assert receiving.decrypt(sealed) is not None
    finally:
        await pc.close()


async def test_vp9_sender_is_refused() -> None:
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        with pytest.raises(LocalProtocolError, match="VP9"):
            driver.prepare_sender(sender, _description("video", "video/VP9"))
    finally:
        await pc.close()


async def test_receiver_decrypts_and_clear_tracks_pass() -> None:
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        sender_side = FrameCryptor(
            driver.provider, participant_identity="them", track_sid="T", codec=FrameCodec.OPUS
        )
        sealed = sender_side.encrypt(b"\xfc" + bytes(40), bytes(12))
        assert sealed is not None
        driver.attach_receiver(receiver, identity="them", track_sid="T", mime_type="audio/opus")
        queue.put(("codec", JitterFrame(b"\xfc" + bytes(40) + bytes(30), 0)))  # not decryptable
        queue.put(("codec", JitterFrame(sealed, 960)))
        _codec, frame = queue.get()
        assert frame.data == b"\xfc" + bytes(40)
        assert ("them", "T") in driver.cryptors
        driver.attach_receiver(
            receiver, identity="them", track_sid="T2", mime_type="audio/opus", encrypted=False
        )
        queue.put(("codec", JitterFrame(b"clear", 0)))
        assert queue.get()[1].data == b"clear"
    finally:
        await pc.close()


async def test_pre_encoded_frames_are_encrypted_too() -> None:
    """A pre-encoded source goes through the encoder's pack(): the wrapper encrypts it too."""
    driver, _ = _driver()
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(VideoStreamTrack())
        driver.prepare_sender(sender, _description("video", "video/VP8"))
        wrapper = _seam.current_encoder(sender)
        assert isinstance(wrapper, EncryptingEncoder)
        frame = b"\x31\x02\x00" + bytes(range(200)) * 10
        packet = av.Packet(frame)
        packet.pts = 0
        packet.time_base = Fraction(1, 90_000)
        payloads, _ = wrapper.pack(packet)
        sealed = b"".join(vp8_depayload(p) for p in payloads)
        assert sealed != frame
        assert _receiving_cryptor(FrameCodec.VP8).decrypt(sealed) == frame
    finally:
        await pc.close()


# -- received data while a key is derived (issue 16: off the event loop) --------------------------


class _GatedCrypto:
    """The real primitives, but once ``armed`` PBKDF2 waits for ``gate``: a key derivation in
    progress that the test lets finish when it wants."""

    def __init__(self) -> None:
        self.real = default_crypto()
        self.gate = threading.Event()
        self.armed = False
        self.threads: set[str] = set()
        self.started = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def pbkdf2_sha256(self, material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        if self.armed and self.loop is not None:
            self.threads.add(threading.current_thread().name)
            self.loop.call_soon_threadsafe(self.started.set)
            assert self.gate.wait(scaled(10.0)), "the test never opened the gate"
        return self.real.pbkdf2_sha256(material, salt, iterations, length)

    def hkdf_sha256(self, material: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        return self.real.hkdf_sha256(material, salt, info, length)

    def aes_gcm_encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self.real.aes_gcm_encrypt(key, iv, plaintext, aad)

    def aes_gcm_decrypt(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
        return self.real.aes_gcm_decrypt(key, iv, ciphertext, aad)


class _Inbox:
    """What the driver hands on, as (payload, encrypted)."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, bool]] = []
        self._changed = asyncio.Event()

    def deliver(self, packet: pb.DataPacket, encrypted: bool) -> None:
        self.got.append((packet.user.payload, encrypted))
        self._changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(scaled(10.0)):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()


def _gated_receiver() -> tuple[E2eeDriver, _GatedCrypto, list[Any]]:
    crypto = _GatedCrypto()
    provider = KeyProvider(KeyOptions(ratchet_window_size=2), shared_key=KEY, crypto=crypto)
    states: list[EncryptionStateChanged] = []
    driver = E2eeDriver(
        provider, local_identity=lambda: "me", on_state=states.append, random_bytes=_counter_bytes()
    )
    crypto.loop = asyncio.get_running_loop()
    crypto.armed = True
    return driver, crypto, states


def _sealed_by(provider: KeyProvider, payload: bytes) -> pb.DataPacket:
    packet = provider.encrypt_packet(_user(payload), "them", bytes(12))
    packet.participant_identity = "them"
    return packet


def _clear(payload: bytes) -> pb.DataPacket:
    packet = _user(payload)
    packet.participant_identity = "them"
    return packet


async def _started(crypto: _GatedCrypto) -> None:
    async with asyncio.timeout(scaled(10.0)):
        await crypto.started.wait()


async def test_a_ratcheted_key_is_derived_off_the_loop_and_order_is_kept() -> None:
    driver, crypto, _ = _gated_receiver()
    sender = KeyProvider(KeyOptions(ratchet_window_size=2), shared_key=KEY)
    inbox = _Inbox()
    driver.receive(_sealed_by(sender, b"before"), inbox.deliver)
    assert inbox.got == [(b"before", True)]  # the key opens it: handed on at once
    sender.ratchet_shared_key(0)
    driver.receive(_sealed_by(sender, b"ratcheted"), inbox.deliver)
    driver.receive(_clear(b"clear"), inbox.deliver)
    # The loop runs on while the derivation waits at the gate, and nothing overtakes it.
    await _started(crypto)
    for _ in range(20):
        await asyncio.sleep(0)
    assert inbox.got == [(b"before", True)]
    assert threading.current_thread().name not in crypto.threads
    crypto.gate.set()
    await inbox.until(3)
    assert inbox.got == [(b"before", True), (b"ratcheted", True), (b"clear", False)]
    assert driver.provider.export_shared_key(0) == sender.export_shared_key(0)


async def test_a_wrong_key_is_tried_off_the_loop_then_packets_flow_again() -> None:
    driver, crypto, states = _gated_receiver()
    stranger = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=b"another key")
    inbox = _Inbox()
    driver.receive(_sealed_by(stranger, b"unreadable"), inbox.deliver)
    driver.receive(_clear(b"clear"), inbox.deliver)
    await _started(crypto)
    assert inbox.got == []
    crypto.gate.set()
    await inbox.until(1)
    assert inbox.got == [(b"clear", False)]
    assert states[-1].state is EncryptionState.DECRYPTION_FAILED
    # The window is derived now: the next wrong-key packet fails at once, on the loop.
    crypto.armed = False
    driver.receive(_sealed_by(stranger, b"again"), inbox.deliver)
    driver.receive(_clear(b"next"), inbox.deliver)
    assert inbox.got == [(b"clear", False), (b"next", False)]


async def test_close_forgets_packets_waiting_for_a_derivation() -> None:
    driver, crypto, _ = _gated_receiver()
    sender = KeyProvider(KeyOptions(ratchet_window_size=2), shared_key=KEY)
    sender.ratchet_shared_key(0)
    inbox = _Inbox()
    driver.receive(_sealed_by(sender, b"late"), inbox.deliver)
    await _started(crypto)
    driver.close()
    crypto.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert inbox.got == []


async def test_a_failing_derivation_drops_that_packet_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver, crypto, _ = _gated_receiver()
    sender = KeyProvider(KeyOptions(ratchet_window_size=2), shared_key=KEY)
    sender.ratchet_shared_key(0)

    def broken(material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        raise RuntimeError("no PBKDF2 today")

    crypto.pbkdf2_sha256 = broken  # type: ignore[method-assign]
    inbox = _Inbox()
    with caplog.at_level(logging.ERROR, "lkproto.e2ee"):
        driver.receive(_sealed_by(sender, b"lost"), inbox.deliver)
        driver.receive(_clear(b"next"), inbox.deliver)
        await inbox.until(1)
    assert inbox.got == [(b"next", False)]
    assert "deriving keys for a packet from 'them'" in caplog.text
