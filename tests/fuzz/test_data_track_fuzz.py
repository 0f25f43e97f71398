"""Fuzz: any bytes on ``_data_track`` decode or raise DecodeError; the assembler never crashes."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto import errors
from lkproto.wire import data_track as dt

_SEED = dt.encode_packet(
    dt.DataTrackPacket(
        handle=1,
        sequence=2,
        frame_number=3,
        timestamp=4,
        start=True,
        final=False,
        payload=b"payload",
        user_timestamp=5,
        e2ee=dt.E2eeExtension(key_index=6, iv=bytes(12)),
    )
)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_SEED)
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=1000, deadline=None)
@given(items=st.lists(st.binary(max_size=80) | _mutated(), max_size=20))
def test_decode_and_assemble_never_crash(items: list[bytes]) -> None:
    assembler = dt.FrameAssembler(max_partial_frames=2, max_frame_packets=4, max_frame_bytes=200)
    for data in items:
        packet = None
        with contextlib.suppress(errors.DecodeError):
            packet = dt.decode_packet(data)
        if packet is not None:
            assert 1 <= packet.handle <= 0xFFFF
            frame = assembler.push(packet)
            assert frame is None or len(frame.payload) <= 200 or packet.start
        assert assembler.pending_frames <= 2
