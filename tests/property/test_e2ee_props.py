"""Property tests of the frame and data cryptors (lkproto.core.e2ee), with the real AES-GCM.

Keys are derived once per module (PBKDF2 with 100 000 iterations is the slow part), so each example
only encrypts and decrypts. No deadlines: whichever example derives the keys first takes 40 ms
alone and over 300 ms on a loaded machine (a timing assert that failed under load).
"""

from __future__ import annotations

import functools
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto.core.e2ee import (
    DataDecrypted,
    DataNotDecrypted,
    FrameCryptor,
    KeyOptions,
    KeyProvider,
)
from lkproto.wire import pb
from lkproto.wire.e2ee import TRAILER_LENGTH, FrameCodec, clear_header_size, h264_slice_ids

ivs = st.binary(min_size=12, max_size=12)
codecs = st.sampled_from(list(FrameCodec))
frames = st.binary(min_size=1, max_size=600)
# H.264 frames with a real structure: parameter sets, then a slice, then any bytes.
h264_frames = st.builds(
    lambda nal, body: b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01" + bytes([nal]) + body,
    st.sampled_from([0x65, 0x41, 0x01]),
    st.binary(min_size=1, max_size=600),
)


@functools.cache
def _provider() -> KeyProvider:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=b"property-key")
    provider.set_shared_key(b"other-key", 1)
    return provider


def _cryptor(codec: FrameCodec) -> FrameCryptor:
    return FrameCryptor(_provider(), participant_identity="p", track_sid="T", codec=codec)


@settings(max_examples=200, deadline=None)
@given(codec=codecs, frame=frames, iv=ivs, key_index=st.sampled_from([0, 1]))
def test_frame_round_trip(codec: FrameCodec, frame: bytes, iv: bytes, key_index: int) -> None:
    cryptor = _cryptor(codec)
    cryptor.set_key_index(key_index)
    sealed = cryptor.encrypt(frame, iv)
    size = clear_header_size(codec, frame)
    if size > len(frame):
        # too short for its codec's clear header: dropped rather than sent undecryptable
        assert sealed is None
        return
    assert sealed is not None
    assert sealed[-1] == key_index
    assert sealed[:size] == frame[:size]
    assert cryptor.decrypt(sealed) == frame


@settings(max_examples=100, deadline=None)
@given(frame=h264_frames, iv=ivs)
def test_h264_round_trip_without_start_codes(frame: bytes, iv: bytes) -> None:
    cryptor = _cryptor(FrameCodec.H264)
    sealed = cryptor.encrypt(frame, iv)
    assert sealed is not None
    size = clear_header_size(FrameCodec.H264, frame)
    assert b"\x00\x00\x01" not in sealed[size:]
    assert cryptor.decrypt(sealed) == frame


@settings(max_examples=100, deadline=None)
@given(
    # x264's first slice headers: IDR I slice, non-IDR I slice, P slice (issue 16)
    head=st.sampled_from([b"\x65\x88\x84", b"\x41\x88\x84", b"\x41\x9a"]),
    body=st.binary(min_size=1, max_size=600),
    seed=st.integers(0, 2**80),
)
def test_h264_ciphertext_keeps_the_slice_ids_receivers_read(
    head: bytes, body: bytes, seed: int
) -> None:
    frame = b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01" + head + body
    counter = itertools.count(seed)
    cryptor = _cryptor(FrameCodec.H264)
    sealed = cryptor.encrypt(frame, lambda: next(counter).to_bytes(12, "big"))
    assert sealed is not None
    assert h264_slice_ids(sealed) == h264_slice_ids(frame) == (0, 0)
    assert cryptor.decrypt(sealed) == frame


@settings(max_examples=200, deadline=None)
@given(
    codec=codecs,
    frame=frames,
    iv=ivs,
    data=st.data(),
)
def test_any_damage_or_truncation_is_rejected_cleanly(
    codec: FrameCodec, frame: bytes, iv: bytes, data: st.DataObject
) -> None:
    cryptor = _cryptor(codec)
    sealed = cryptor.encrypt(frame + bytes(10), iv)
    assert sealed is not None
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(sealed) - 1), label="keep")
        damaged = sealed[:cut]
    else:
        at = data.draw(st.integers(0, len(sealed) - 1), label="at")
        bit = data.draw(st.integers(0, 7), label="bit")
        damaged = sealed[:at] + bytes([sealed[at] ^ (1 << bit)]) + sealed[at + 1 :]
    result = cryptor.decrypt(damaged)
    # Flipping the key index to the other slot, or truncating, never yields a frame
    assert result is None or (result == b"" and damaged == b"")


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=2000), iv=ivs, topic=st.text(max_size=20))
def test_data_packet_round_trip(payload: bytes, iv: bytes, topic: str) -> None:
    provider = _provider()
    packet = pb.DataPacket(participant_identity="p")
    packet.user.payload = payload
    packet.user.topic = topic
    sealed = provider.encrypt_packet(packet, "p", iv)
    assert sealed.WhichOneof("value") == "encrypted_packet"
    opened = provider.decrypt_packet(sealed)
    assert isinstance(opened, DataDecrypted)
    assert opened.packet == packet
    value = sealed.encrypted_packet.encrypted_value
    sealed.encrypted_packet.encrypted_value = value[:-1] + bytes([value[-1] ^ 1])
    assert isinstance(provider.decrypt_packet(sealed), DataNotDecrypted)


def test_trailer_length_is_iv_plus_two() -> None:
    assert TRAILER_LENGTH == 14
