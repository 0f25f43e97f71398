from __future__ import annotations

import pytest

from lkproto import errors
from lkproto.wire import (
    DATA_PACKET_MAX_BYTES,
    decode,
    decode_data_packet,
    decode_signal_request,
    decode_signal_response,
    encode_data_packet,
    encode_signal_request,
    encode_signal_response,
    pb,
    which,
)


def test_signal_request_round_trip() -> None:
    req = pb.SignalRequest(ping_req=pb.Ping(timestamp=123, rtt=4))
    back = decode_signal_request(encode_signal_request(req))
    assert back == req
    assert which(back, "message") == "ping_req"


def test_signal_response_round_trip() -> None:
    resp = pb.SignalResponse(
        join=pb.JoinResponse(
            room=pb.Room(name="r", sid="RM_x"),
            participant=pb.ParticipantInfo(identity="a", sid="PA_x", attributes={"k": "v"}),
            ping_interval=5,
            ping_timeout=15,
        )
    )
    back = decode_signal_response(encode_signal_response(resp))
    assert back.join.participant.attributes["k"] == "v"
    assert which(back, "message") == "join"


def test_unknown_oneof_member_is_kept_but_not_reported() -> None:
    # field 200 of SignalResponse, length-delimited: not a member we know.
    data = bytes([0xC2, 0x0C, 0x02, 0x08, 0x01])
    msg = decode_signal_response(data)
    assert which(msg, "message") is None
    assert msg.SerializeToString() == data  # preserved for taps and re-encoding


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\x0a\x05abc", b"\x08", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"],
)
def test_malformed_bytes_raise_decode_error(bad: bytes) -> None:
    with pytest.raises(errors.DecodeError) as info:
        decode_signal_response(bad)
    assert info.value.message_type == "SignalResponse"
    assert isinstance(info.value, errors.RemoteProtocolError)
    assert isinstance(info.value, errors.LkError)


def test_invalid_utf8_in_string_field_is_a_decode_error() -> None:
    # DataPacket.participant_identity (4) with bytes that are not UTF-8
    with pytest.raises(errors.DecodeError):
        decode_data_packet(b"\x22\x02\xc3\x28")


def test_text_frame_is_rejected() -> None:
    with pytest.raises(errors.DecodeError, match="text frame"):
        decode_signal_response("{}")


def test_non_bytes_is_rejected() -> None:
    with pytest.raises(errors.DecodeError):
        decode(pb.SignalResponse, 42)  # type: ignore[arg-type]


def test_memoryview_and_bytearray_accepted() -> None:
    data = encode_signal_request(pb.SignalRequest(ping=7))
    assert decode_signal_request(memoryview(data)).ping == 7
    assert decode_signal_request(bytearray(data)).ping == 7


def test_data_packet_size_limit_on_encode() -> None:
    ok = pb.DataPacket(user=pb.UserPacket(payload=b"x" * (DATA_PACKET_MAX_BYTES - 100)))
    assert len(encode_data_packet(ok)) <= DATA_PACKET_MAX_BYTES
    big = pb.DataPacket(user=pb.UserPacket(payload=b"x" * DATA_PACKET_MAX_BYTES))
    with pytest.raises(errors.LocalProtocolError, match="64000"):
        encode_data_packet(big)


def test_data_packet_size_limit_on_decode() -> None:
    big = pb.DataPacket(user=pb.UserPacket(payload=b"x" * DATA_PACKET_MAX_BYTES))
    with pytest.raises(errors.DecodeError, match="exceeds"):
        decode_data_packet(big.SerializeToString())


def test_data_packet_round_trip_keeps_sequence_and_destinations() -> None:
    pkt = pb.DataPacket(
        user=pb.UserPacket(payload=b"hi", topic="t"),
        destination_identities=["b"],
        sequence=9,
    )
    back = decode_data_packet(encode_data_packet(pkt))
    assert back.sequence == 9
    assert list(back.destination_identities) == ["b"]
    assert back.user.topic == "t"
