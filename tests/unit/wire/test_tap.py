"""lkproto.wire.tap: records, type naming, JSON round trips, type guessing."""

from __future__ import annotations

import base64
import json

import pytest

from lkproto.errors import DecodeError
from lkproto.wire import encode, pb
from lkproto.wire.tap import (
    TapRecord,
    count_known_fields,
    count_unknown_fields,
    decode_any,
    iso_time,
    message_type_name,
    packet_record,
    rtp_record,
    signal_record,
)

WALL = 1_700_000_000.25


def _user(identity: str = "alice", topic: str | None = "chat") -> pb.DataPacket:
    user = pb.UserPacket(payload=b"\x00hi")
    if topic is not None:
        user.topic = topic
    return pb.DataPacket(participant_identity=identity, user=user, sequence=3)


def test_type_names() -> None:
    assert message_type_name(pb.SignalRequest(ping_req=pb.Ping(timestamp=1))) == (
        "SignalRequest.ping_req"
    )
    assert message_type_name(pb.SignalResponse()) == "SignalResponse.<unknown>"
    assert message_type_name(_user()) == "DataPacket.user"
    assert message_type_name(pb.Room(name="r")) == "Room"


def test_packet_record_fields_identity_topic_and_json_round_trip() -> None:
    packet = _user()
    raw = encode(packet)
    record = packet_record("<", "_reliable", packet, raw, mono=12.5, wall=WALL)
    assert record.type == "DataPacket.user"
    assert (record.participant, record.topic, record.decoded) == ("alice", "chat", True)
    assert record.fields == {
        "participant_identity": "alice",
        "user": {"payload": base64.b64encode(b"\x00hi").decode(), "topic": "chat"},
        "sequence": 3,
    }
    assert record.time == iso_time(WALL) == "2023-11-14T22:13:20.250000+00:00"
    line = json.dumps(record.to_json())
    assert TapRecord.from_json(json.loads(line)) == record
    assert json.loads(line)["raw"] == base64.b64encode(raw).decode()


def test_identity_fallbacks() -> None:
    legacy = pb.DataPacket(user=pb.UserPacket(payload=b"x", participant_identity="bob"))
    record = packet_record("<", "_lossy", legacy, encode(legacy), mono=0.0, wall=WALL)
    assert (record.participant, record.topic) == ("bob", None)
    header = pb.DataPacket(stream_header=pb.DataStream.Header(stream_id="s", topic="files"))
    record = packet_record(">", "_reliable", header, encode(header), mono=0.0, wall=WALL)
    assert (record.participant, record.topic) == (None, "files")
    join = pb.SignalResponse(join=pb.JoinResponse(participant=pb.ParticipantInfo(identity="me")))
    record = signal_record("<", join, encode(join), mono=0.0, wall=WALL)
    assert (record.type, record.participant, record.channel) == (
        "SignalResponse.join",
        "me",
        "signal",
    )
    offer = pb.SignalRequest(offer=pb.SessionDescription(type="offer", sdp="v=0"))
    record = signal_record(">", offer, encode(offer), mono=0.0, wall=WALL)
    assert (record.participant, record.topic) == (None, None)


def test_malformed_and_data_track_records() -> None:
    error = DecodeError("DataPacket", "truncated")
    record = packet_record("<", "_reliable", error, b"\xff", mono=1.0, wall=WALL)
    assert (record.type, record.fields, record.decoded) == ("DataPacket.<malformed>", None, False)
    assert record.error == "cannot decode DataPacket: truncated"
    record = packet_record("<", "_reliable", None, b"\xff", mono=1.0, wall=WALL)
    assert not record.decoded
    record = packet_record("<", "_data_track", error, b"\x01\x02\x03", mono=1.0, wall=WALL)
    assert (record.type, record.fields, record.decoded) == ("DataTrack.packet", {"size": 3}, True)
    unknown = signal_record("<", pb.SignalResponse(), b"", mono=1.0, wall=WALL)
    assert not unknown.decoded


def test_rtp_records() -> None:
    out = rtp_record(
        ">", track_sid="TR_1", kind="audio", packets=5, bytes_=500, mono=2.0, wall=WALL
    )
    assert (out.type, out.channel, out.raw) == ("RtpStats.outbound", "rtp", b"")
    assert out.fields == {
        "track_sid": "TR_1",
        "kind": "audio",
        "final": False,
        "packets_sent": 5,
        "bytes_sent": 500,
    }
    inbound = rtp_record(
        "<", track_sid="TR_2", kind="video", packets=7, bytes_=None, mono=2.0, wall=WALL, final=True
    )
    assert inbound.fields == {
        "track_sid": "TR_2",
        "kind": "video",
        "final": True,
        "packets_received": 7,
        "bytes_received": None,
    }
    assert TapRecord.from_json(json.loads(json.dumps(inbound.to_json()))) == inbound


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({}, "missing key"),
        ({"direction": "?", "mono": 0}, "bad direction"),
        ({"direction": "<", "mono": "x", "time": "", "channel": "", "type": ""}, "mono"),
        ({"direction": "<", "mono": 0, "fields": [], "raw": ""}, "fields must be"),
        (
            {"direction": "<", "mono": 0, "time": "", "channel": "", "type": "", "raw": "!!"},
            "not base64",
        ),
    ],
)
def test_from_json_rejects(obj: dict[str, object], match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        TapRecord.from_json(obj)


def test_counts_walk_nested_messages_maps_and_lists() -> None:
    response = pb.SignalResponse(
        update=pb.ParticipantUpdate(
            participants=[pb.ParticipantInfo(identity="a", attributes={"k": "v"})]
        )
    )
    # update, participants, identity, attributes
    assert count_known_fields(response) == 4
    offer = pb.SessionDescription(type="offer", mid_to_track_id={"0": "TR"})
    assert count_known_fields(pb.SignalResponse(offer=offer)) == 3
    data = encode(response) + b"\xf8\x07\x01"  # field 127, varint: unknown to us
    parsed = pb.SignalResponse()
    parsed.ParseFromString(data)
    assert count_unknown_fields(parsed) == 1
    nested = pb.SignalResponse()
    nested.ParseFromString(encode(pb.SignalResponse(join=pb.JoinResponse())) + b"")
    assert count_unknown_fields(nested) == 0


@pytest.mark.parametrize(
    "message",
    [
        pb.SignalRequest(offer=pb.SessionDescription(type="offer", sdp="v=0\r\n", id=1)),
        pb.SignalRequest(ping_req=pb.Ping(timestamp=1, rtt=3)),
        pb.SignalResponse(join=pb.JoinResponse(room=pb.Room(name="r"), ping_interval=5)),
        pb.SignalResponse(pong_resp=pb.Pong(last_ping_timestamp=1, timestamp=2)),
        pb.SignalResponse(update=pb.ParticipantUpdate(participants=[pb.ParticipantInfo(sid="P")])),
        _user(),
        pb.DataPacket(rpc_request=pb.RpcRequest(id="1", method="m", payload="p", version=1)),
    ],
)
def test_decode_any_guesses_the_type(message: pb.SignalRequest) -> None:
    name, decoded = decode_any(encode(message))
    assert name == message.DESCRIPTOR.name
    assert decoded == message


def test_decode_any_with_a_type_and_errors() -> None:
    raw = encode(pb.SignalRequest(ping_req=pb.Ping(timestamp=1)))
    assert decode_any(raw, "SignalRequest")[0] == "SignalRequest"
    with pytest.raises(DecodeError, match="unknown type"):
        decode_any(raw, "Room")
    with pytest.raises(DecodeError, match="none of them parses"):
        decode_any(b"\xff\xff\xff")
