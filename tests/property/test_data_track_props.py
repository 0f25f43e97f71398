"""Data-track properties: the header round-trips; any arrival order reassembles exactly.

For any header fields and extensions the codec round-trips; for any payload, MTU, starting
sequence (wrap included) and any permutation of the packets (with duplicates), the assembler
hands out exactly the frame once, and never a wrong one when packets are missing; an encrypted
frame comes back exactly after reassembly and decryption, and a damaged one does not open.
"""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto.core import data_track as cd
from lkproto.core.e2ee import KeyOptions, KeyProvider
from lkproto.wire import data_track as dt

_e2ee = st.builds(
    dt.E2eeExtension, key_index=st.integers(0, 255), iv=st.binary(min_size=12, max_size=12)
)

_packets = st.builds(
    dt.DataTrackPacket,
    handle=st.integers(1, 0xFFFF),
    sequence=st.integers(0, 0xFFFF),
    frame_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFF_FFFF),
    start=st.booleans(),
    final=st.booleans(),
    payload=st.binary(max_size=200),
    user_timestamp=st.none() | st.integers(0, 2**64 - 1),
    e2ee=st.none() | _e2ee,
)


@settings(max_examples=300, deadline=None)
@given(packet=_packets)
def test_codec_round_trip(packet: dt.DataTrackPacket) -> None:
    data = dt.encode_packet(packet)
    assert len(data) == dt.header_size(
        user_timestamp=packet.user_timestamp, e2ee=packet.e2ee
    ) + len(packet.payload)
    assert dt.decode_packet(data) == packet


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    mtu=st.integers(60, 700),
    first_sequence=st.integers(0, 0xFFFF),
    user_timestamp=st.none() | st.integers(0, 2**64 - 1),
    data=st.data(),
)
def test_any_order_reassembles_exactly(
    payload: bytes, mtu: int, first_sequence: int, user_timestamp: int | None, data: st.DataObject
) -> None:
    raw = dt.packetize(
        payload,
        handle=7,
        first_sequence=first_sequence,
        frame_number=3,
        timestamp=0,
        user_timestamp=user_timestamp,
        mtu=mtu,
    )
    assert all(len(p) <= mtu for p in raw)
    packets = [dt.decode_packet(p) for p in raw]
    duplicated = packets + data.draw(st.lists(st.sampled_from(packets), max_size=3))
    order = data.draw(st.permutations(duplicated))
    assembler = dt.FrameAssembler()
    frames = [f for p in order if (f := assembler.push(p)) is not None]
    assert len(frames) == 1
    assert frames[0].payload == payload
    assert frames[0].user_timestamp == user_timestamp


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=200, max_size=2000), data=st.data())
def test_a_missing_packet_never_yields_a_frame(payload: bytes, data: st.DataObject) -> None:
    raw = dt.packetize(payload, handle=7, first_sequence=0, frame_number=3, timestamp=0, mtu=80)
    packets = [dt.decode_packet(p) for p in raw]
    missing = data.draw(st.integers(0, len(packets) - 1))
    rest = data.draw(st.permutations(packets[:missing] + packets[missing + 1 :]))
    assembler = dt.FrameAssembler(max_frame_packets=len(packets) + 1)
    assert all(assembler.push(p) is None for p in rest)
    assert assembler.pending_frames <= 1


# One provider for every example: the PBKDF2 key derivation (100 000 iterations) runs once.
_KEYS = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=b"property key")


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    mtu=st.integers(60, 1500),
    user_timestamp=st.none() | st.integers(0, 2**64 - 1),
    order=st.randoms(use_true_random=False),
)
def test_encrypted_frames_reassemble_and_decrypt_exactly(
    payload: bytes, mtu: int, user_timestamp: int | None, order: random.Random
) -> None:
    # A frame is sealed whole, then cut into packets that all carry the same E2EE extension;
    # in any arrival order the subscriber gets exactly the plaintext back, once.
    cipher = cd.DataTrackCipher(_KEYS, local_identity=lambda: "pub", random_bytes=os.urandom)
    sealed, ext = cipher.seal(payload)
    assert len(sealed) == len(payload) + 16
    packets = dt.packetize(
        sealed,
        handle=9,
        first_sequence=order.randrange(0x10000),
        frame_number=3,
        timestamp=0,
        user_timestamp=user_timestamp,
        e2ee=ext,
        mtu=mtu,
    )
    order.shuffle(packets)
    assembler = dt.FrameAssembler()
    frames = [f for f in (assembler.push(dt.decode_packet(p)) for p in packets) if f is not None]
    assert len(frames) == 1
    (frame,) = frames
    assert frame.e2ee == ext
    assert frame.user_timestamp == user_timestamp
    assert cipher.open("pub", frame.payload, ext) == payload
    # One flipped byte anywhere and the frame does not open.
    if frame.payload:
        spot = order.randrange(len(frame.payload))
        damaged = bytearray(frame.payload)
        damaged[spot] ^= 0x01
        assert cipher.open("pub", bytes(damaged), ext) is None
