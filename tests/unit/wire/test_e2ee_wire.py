"""lkproto.wire.e2ee: clear-header sizes, trailer parsing, RBSP escaping, payload moves."""

from __future__ import annotations

import pytest

from lkproto.errors import DecodeError
from lkproto.wire import pb
from lkproto.wire.e2ee import (
    ENCRYPTABLE_PACKET_VALUES,
    FrameCodec,
    clear_header_size,
    escape_rbsp,
    h264_slice_ids,
    move_into_payload,
    move_out_of_payload,
    parse_frame_trailer,
    unescape_rbsp,
)
from lkproto.wire.tap import TapRecord


@pytest.mark.parametrize(
    ("mime", "codec"),
    [
        ("audio/opus", FrameCodec.OPUS),
        ("audio/PCMU", FrameCodec.OPUS),
        ("video/VP8", FrameCodec.VP8),
        ("video/vp9", FrameCodec.VP9),
        ("video/H264", FrameCodec.H264),
    ],
)
def test_codec_from_mime_type(mime: str, codec: FrameCodec) -> None:
    assert FrameCodec.from_mime_type(mime) is codec


def test_codec_without_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="AV1"):
        FrameCodec.from_mime_type("video/AV1")


@pytest.mark.parametrize(
    ("codec", "frame", "size"),
    [
        (FrameCodec.VP8, b"\x10" + bytes(20), 10),  # key frame: bit 0 of the tag clear
        (FrameCodec.VP8, b"\x11" + bytes(20), 3),
        (FrameCodec.VP8, b"\x10\x00", 10),  # more than the frame: not encryptable
        (FrameCodec.OPUS, b"\xfc\x01\x02", 1),
        (FrameCodec.VP9, b"\x00\x01", 0),
        (FrameCodec.H264, b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x41\x9a\x10", 11),
        (FrameCodec.H264, b"\x00\x00\x01\x65\x88\x80", 5),
        # no slice NAL unit: the VP8 rule, as the SDKs fall back
        (FrameCodec.H264, b"\x00\x00\x00\x01\x67" + bytes(20), 10),
    ],
)
def test_clear_header_size(codec: FrameCodec, frame: bytes, size: int) -> None:
    assert clear_header_size(codec, frame) == size


@pytest.mark.parametrize(
    ("frame", "ids"),
    [
        # x264 IDR: first_mb 0 (1), slice type 7 (0001000), PPS id 0 (1) in the third byte
        (b"\x00\x00\x00\x01\x65\x88\x84\x00", (0, 0)),
        # x264 P slice: 1 00110 1 -> the PPS id is in the first slice-header byte
        (b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x41\x9a\x10", (0, 0)),
        # second slice of a frame (first_mb 299), PPS id 2 (011)
        (b"\x00\x00\x01\x65" + bytes([0b00000000, 0b10010110, 0b00001000, 0b01110000]), (299, 2)),
        # an emulation-prevention byte inside the header is skipped, as receivers skip it
        (b"\x00\x00\x01\x65\x00\x00\x03\x01\x80\x00\x01\x80", (12_582_911, 0)),
        # the PPS id runs past the end: unreadable, as for a receiver
        (b"\x00\x00\x01\x65\x88\x04", None),
        # 32 leading zero bits: libwebrtc's reader gives up
        (b"\x00\x00\x01\x65\x88" + b"\x00\x00\x03" * 2 + b"\x00\x00\x03\x01" * 4, None),
        # no slice at all
        (b"\x00\x00\x00\x01\x67\x42\xc0\x1f", None),
    ],
)
def test_h264_slice_ids_read_as_a_depacketiser_reads_them(
    frame: bytes, ids: tuple[int, int] | None
) -> None:
    assert h264_slice_ids(frame) == ids


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"\x00\x00\x00", b"\x00\x00\x03\x00"),
        (b"\x00\x00\x01\x00\x00\x02", b"\x00\x00\x03\x01\x00\x00\x03\x02"),
        (b"\x00\x00\x04", b"\x00\x00\x04"),
        (b"\x00\x00\x03", b"\x00\x00\x03\x03"),
        (b"\x00\x00", b"\x00\x00"),
    ],
)
def test_rbsp_escape_and_unescape(raw: bytes, escaped: bytes) -> None:
    assert escape_rbsp(raw) == escaped
    assert unescape_rbsp(escaped) == raw


def test_parse_trailer() -> None:
    iv = bytes(range(100, 112))
    frame = b"\xfc" + b"C" * 20 + iv + b"\x0c\x02"
    parts = parse_frame_trailer(FrameCodec.OPUS, frame)
    assert parts.header == b"\xfc"
    assert parts.ciphertext == b"C" * 20
    assert parts.iv == iv
    assert parts.key_index == 2
    assert "key index 2" in str(parts)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xfc" + bytes(20) + b"\x0c\x00",  # too short for IV and tag
        b"\xfc" + bytes(40) + b"\x10\x00",  # IV length byte not 12
    ],
)
def test_parse_trailer_rejects(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_frame_trailer(FrameCodec.OPUS, frame)


def test_payload_moves_every_encryptable_value_and_back() -> None:
    for kind in sorted(ENCRYPTABLE_PACKET_VALUES):
        packet = pb.DataPacket(participant_identity="a", destination_identities=["b"], sequence=3)
        getattr(packet, kind).SetInParent()
        payload = move_into_payload(packet)
        assert payload is not None
        assert payload.WhichOneof("value") == kind
        outer = pb.DataPacket(participant_identity="a", destination_identities=["b"], sequence=3)
        outer.encrypted_packet.iv = b"x"
        assert move_out_of_payload(outer, payload) == packet


def test_clear_values_and_empty_payloads() -> None:
    packet = pb.DataPacket()
    packet.metrics.SetInParent()
    assert move_into_payload(packet) is None
    with pytest.raises(DecodeError):
        move_out_of_payload(pb.DataPacket(), pb.EncryptedPacketPayload())


def test_encryptable_values_match_the_payload_message() -> None:
    fields = {f.name for f in pb.EncryptedPacketPayload.DESCRIPTOR.fields}
    assert fields == ENCRYPTABLE_PACKET_VALUES


def test_tap_record_carries_the_decrypted_packet() -> None:
    plain = TapRecord(time="t", mono=1.0, direction="<", channel="_reliable", type="x", fields={})
    assert "decrypted" not in plain.to_json()  # the file format is unchanged without a key
    record = TapRecord(
        time="t",
        mono=1.0,
        direction="<",
        channel="_reliable",
        type="DataPacket.encrypted_packet",
        fields={},
        decrypted={"user": {"payload": "aGk="}},
    )
    assert TapRecord.from_json(record.to_json()) == record
    with pytest.raises(DecodeError):
        TapRecord.from_json({**record.to_json(), "decrypted": "not an object"})
