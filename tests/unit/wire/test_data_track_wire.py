"""Data-track packet codec, packetiser and frame assembler (lkproto.wire.data_track)."""

from __future__ import annotations

import pytest

from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire import data_track as dt


def _packet(**overrides: object) -> dt.DataTrackPacket:
    fields: dict[str, object] = {
        "handle": 0x8811,
        "sequence": 0x4422,
        "frame_number": 0x4411,
        "timestamp": 0x44221188,
        "start": False,
        "final": True,
        "payload": b"\xfa" * 4,
    }
    fields.update(overrides)
    return dt.DataTrackPacket(**fields)  # type: ignore[arg-type]


def test_base_header_layout() -> None:
    # PROTOCOL-MAP §12: version 0, final bit = 0x08, then handle, sequence, frame, timestamp.
    data = dt.encode_packet(_packet())
    assert data[:12] == bytes.fromhex("080088114422441144221188")
    assert data[12:] == b"\xfa" * 4
    assert dt.decode_packet(data) == _packet()


@pytest.mark.parametrize(
    ("start", "final", "bits"), [(True, False, 0x10), (False, False, 0), (True, True, 0x18)]
)
def test_frame_marker_bits(start: bool, final: bool, bits: int) -> None:
    data = dt.encode_packet(_packet(start=start, final=final))
    assert data[0] == bits
    decoded = dt.decode_packet(data)
    assert (decoded.start, decoded.final) == (start, final)


# A packet the official SDK 1.2.1 sent (captured on loopback through livekit-server v1.13.5):
# single-packet frame, handle 0x4a, user timestamp 0x1122334455667788, 16 payload bytes.
_OFFICIAL_1_2_1 = bytes.fromhex(
    "1c00004a00010001c28fecdb000202081122334455667788000102030405060708090a0b0c0d0e0f"
)


def test_the_official_sdk_packet_decodes_and_re_encodes_byte_for_byte() -> None:
    packet = dt.decode_packet(_OFFICIAL_1_2_1)
    assert packet == dt.DataTrackPacket(
        handle=0x4A,
        sequence=1,
        frame_number=1,
        timestamp=0xC28FECDB,
        start=True,
        final=True,
        payload=bytes(range(16)),
        user_timestamp=0x1122334455667788,
    )
    assert dt.encode_packet(packet) == _OFFICIAL_1_2_1


def test_extension_block_with_e2ee_is_word_aligned() -> None:
    # 2 (size) + 15 (E2EE) + 10 (user timestamp) = 27 bytes -> 7 words, 1 padding byte.
    packet = _packet(
        payload=b"\xfa" * 10,
        user_timestamp=0x4411221111118811,
        e2ee=dt.E2eeExtension(key_index=0xFA, iv=b"\x3c" * 12),
    )
    data = dt.encode_packet(packet)
    assert dt.header_size(user_timestamp=1, e2ee=packet.e2ee) == 12 + 28
    assert len(data) == 40 + 10
    assert data[0] == 0x0C  # final + extensions
    assert data[12:14] == (6).to_bytes(2, "big")  # words minus one
    assert data[14:16] == bytes([1, 13])
    assert data[16] == 0xFA
    assert data[29:31] == bytes([2, 8])
    assert data[31:39] == (0x4411221111118811).to_bytes(8, "big")
    assert data[39] == 0
    assert dt.decode_packet(data) == packet


def test_unknown_extension_and_padding_are_skipped() -> None:
    base = bytearray(dt.encode_packet(_packet(payload=b"xy")))
    base[0] |= 0x04
    block = bytes.fromhex("00010902abcd0000")  # 2 words: unknown tag 9, then padding
    decoded = dt.decode_packet(bytes(base[:12]) + block + b"xy")
    assert decoded.payload == b"xy"
    assert decoded.user_timestamp is None
    assert decoded.e2ee is None


_BASE = bytes.fromhex("0c000001") + bytes(8)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08\x00\x00\x01" + bytes(7), "shorter"),
        (bytes.fromhex("28000001") + bytes(8), "version 1"),
        (bytes.fromhex("08000000") + bytes(8), "handle 0"),
        (_BASE, "no extension size"),
        (_BASE + b"\x00\x01" + bytes(2), "overruns the packet"),
        (_BASE + bytes.fromhex("00000208"), "overruns the extension block"),
        (_BASE + bytes.fromhex("00000009"), "has no length"),
        (_BASE + bytes.fromhex("00010204") + bytes(4), "expected 8"),
        (_BASE + bytes.fromhex("00010104") + bytes(4), "expected 13"),
    ],
)
def test_malformed_packets_raise_decode_error(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match="DataTrackPacket") as info:
        dt.decode_packet(data)
    assert why in str(info.value)


@pytest.mark.parametrize(
    "packet",
    [
        _packet(handle=0),
        _packet(handle=0x10000),
        _packet(sequence=-1),
        _packet(timestamp=1 << 32),
        _packet(user_timestamp=1 << 64),
        _packet(e2ee=dt.E2eeExtension(key_index=1, iv=b"short")),
        _packet(e2ee=dt.E2eeExtension(key_index=256, iv=bytes(12))),
    ],
)
def test_encode_refuses_out_of_range_fields(packet: dt.DataTrackPacket) -> None:
    with pytest.raises(LocalProtocolError):
        dt.encode_packet(packet)


def test_packetize_at_the_official_mtu() -> None:
    payload = bytes(range(256)) * 200  # 51 200 bytes
    packets = dt.packetize(
        payload, handle=3, first_sequence=0xFFFE, frame_number=9, timestamp=5, user_timestamp=7
    )
    assert all(len(p) <= dt.DATA_TRACK_MTU_BYTES for p in packets)
    decoded = [dt.decode_packet(p) for p in packets]
    assert len(decoded) == 4
    assert [p.sequence for p in decoded] == [0xFFFE, 0xFFFF, 0, 1]
    assert [(p.start, p.final) for p in decoded] == [
        (True, False),
        (False, False),
        (False, False),
        (False, True),
    ]
    assert {p.user_timestamp for p in decoded} == {7}
    assert b"".join(p.payload for p in decoded) == payload


def test_packetize_small_and_empty_frames_are_single_packets() -> None:
    for payload in (b"", b"hello"):
        (only,) = dt.packetize(payload, handle=1, first_sequence=0, frame_number=0, timestamp=0)
        decoded = dt.decode_packet(only)
        assert decoded.start
        assert decoded.final
        assert decoded.payload == payload


def test_packetize_refuses_a_tiny_mtu() -> None:
    with pytest.raises(LocalProtocolError, match="no room"):
        dt.packetize(b"x", handle=1, first_sequence=0, frame_number=0, timestamp=0, mtu=12)


def _frame_packets(
    payload: bytes, *, frame: int = 0, seq: int = 0, mtu: int = 40
) -> list[dt.DataTrackPacket]:
    raw = dt.packetize(
        payload, handle=1, first_sequence=seq, frame_number=frame, timestamp=0, mtu=mtu
    )
    return [dt.decode_packet(p) for p in raw]


def test_assembler_out_of_order_and_duplicates() -> None:
    packets = _frame_packets(bytes(range(100)), seq=0xFFFD)
    assembler = dt.FrameAssembler()
    order = [packets[-1], packets[1], packets[1], *packets[2:-1]]
    assert all(assembler.push(p) is None for p in order)
    frame = assembler.push(packets[0])
    assert frame is not None
    assert frame.payload == bytes(range(100))
    assert assembler.pending_frames == 0
    assert assembler.dropped_frames == 0


def test_assembler_drops_an_interrupted_frame() -> None:
    first = _frame_packets(b"a" * 100, frame=1)
    second = _frame_packets(b"b" * 100, frame=2, seq=10)
    assembler = dt.FrameAssembler()
    assert assembler.push(first[0]) is None  # frame 1 never completes
    results = [assembler.push(p) for p in second]
    assert results[-1] is not None
    assert results[-1].payload == b"b" * 100
    assert assembler.dropped_frames == 1
    assert assembler.push(first[-1]) is None  # the late tail starts a new partial only


def test_assembler_keeps_several_partials_when_asked() -> None:
    first = _frame_packets(b"a" * 100, frame=1)
    second = _frame_packets(b"b" * 100, frame=2, seq=10)
    assembler = dt.FrameAssembler(max_partial_frames=2)
    assembler.push(first[0])
    for p in second:
        assembler.push(p)
    frames = [assembler.push(p) for p in first[1:]]
    assert frames[-1] is not None
    assert frames[-1].payload == b"a" * 100
    assert assembler.dropped_frames == 0


def test_assembler_bounds() -> None:
    packets = _frame_packets(bytes(500))
    assembler = dt.FrameAssembler(max_frame_packets=3)
    assert all(assembler.push(p) is None for p in packets)
    assert assembler.dropped_frames >= 1
    assert assembler.pending_frames <= 1
    by_bytes = dt.FrameAssembler(max_frame_bytes=50)
    assert all(by_bytes.push(p) is None for p in packets)
    assert by_bytes.dropped_frames >= 1
    with pytest.raises(LocalProtocolError):
        dt.FrameAssembler(max_partial_frames=0)
    with pytest.raises(LocalProtocolError):
        assembler.max_partial_frames = 0


def test_assembler_ignores_late_duplicates_of_a_delivered_frame() -> None:
    packets = _frame_packets(b"z" * 60, frame=4)
    assembler = dt.FrameAssembler()
    frames = [f for p in packets if (f := assembler.push(p)) is not None]
    assert len(frames) == 1
    assert all(assembler.push(p) is None for p in packets)
    assert assembler.pending_frames == 0
    (single,) = _frame_packets(b"s", frame=5)
    assert assembler.push(single) is not None
    assert assembler.push(single) is None
    assembler.clear()
    assert assembler.push(single) is not None
