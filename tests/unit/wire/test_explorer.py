"""lkproto.wire.explorer: lanes, stream grouping, RPC pairing, markers, escaping, limits."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from lkproto.errors import LocalProtocolError
from lkproto.wire import encode, pb
from lkproto.wire.explorer import (
    LANE_CLIENT,
    LANE_OTHERS,
    LANE_SERVER,
    ExplorerLimits,
    build_model,
    embed_json,
    render_html,
)
from lkproto.wire.tap import (
    TapDirection,
    TapRecord,
    message_fields,
    packet_record,
    rtp_record,
    signal_record,
)

WALL = 1_700_000_000.0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def tick(self) -> float:
        self.now += 0.25
        return self.now


CLOCK = _Clock()


def _sig(direction: TapDirection, message: pb.SignalRequest | pb.SignalResponse) -> TapRecord:
    return signal_record(direction, message, encode(message), mono=CLOCK.tick(), wall=WALL)


def _pkt(direction: TapDirection, packet: pb.DataPacket) -> TapRecord:
    return packet_record(
        direction, "_reliable", packet, encode(packet), mono=CLOCK.tick(), wall=WALL
    )


def _join(identity: str = "alice") -> TapRecord:
    return _sig(
        "<",
        pb.SignalResponse(join=pb.JoinResponse(participant=pb.ParticipantInfo(identity=identity))),
    )


def _stream(
    direction: TapDirection,
    sender: str,
    stream_id: str,
    *,
    topic: str,
    chunks: list[bytes],
    attributes: dict[str, str] | None = None,
) -> list[TapRecord]:
    header = pb.DataStream.Header(
        stream_id=stream_id,
        topic=topic,
        text_header=pb.DataStream.TextHeader(),
        attributes=attributes or {},
    )
    packets = [pb.DataPacket(participant_identity=sender, stream_header=header)]
    packets += [
        pb.DataPacket(
            participant_identity=sender,
            stream_chunk=pb.DataStream.Chunk(stream_id=stream_id, chunk_index=i, content=c),
        )
        for i, c in enumerate(chunks)
    ]
    packets.append(
        pb.DataPacket(
            participant_identity=sender, stream_trailer=pb.DataStream.Trailer(stream_id=stream_id)
        )
    )
    return [_pkt(direction, p) for p in packets]


def test_lanes_and_arrows() -> None:
    user_in = pb.DataPacket(participant_identity="bob", user=pb.UserPacket(payload=b"hi"))
    user_out = pb.DataPacket(destination_identities=["bob"], user=pb.UserPacket(payload=b"yo"))
    broadcast = pb.DataPacket(user=pb.UserPacket(payload=b"all"))
    offer = pb.SignalRequest(offer=pb.SessionDescription(type="offer", sdp="v=0"))
    rtp = rtp_record(">", track_sid="TR", kind="audio", packets=1, bytes_=2, mono=200, wall=WALL)
    records = [
        _join(),
        _sig(">", offer),
        _pkt("<", user_in),
        _pkt(">", user_out),
        _pkt(">", broadcast),
        rtp,
    ]
    model = build_model(records)
    assert model.identity == "alice"
    assert model.lanes == [
        (LANE_CLIENT, "client (alice)"),
        (LANE_SERVER, "server (SFU)"),
        ("peer:bob", "bob"),
    ]
    arrows = [(row.source, row.target) for row in model.rows]
    assert arrows == [
        (LANE_SERVER, LANE_CLIENT),
        (LANE_CLIENT, LANE_SERVER),
        ("peer:bob", LANE_CLIENT),
        (LANE_CLIENT, "peer:bob"),
        (LANE_CLIENT, LANE_SERVER),
        (LANE_CLIENT, LANE_SERVER),
    ]
    assert [row.label for row in model.rows][:3] == ["join", "offer", "user"]
    assert model.rows[0].t == 0.0
    assert model.rows[1].t == pytest.approx(0.25)


def test_streams_grouped_by_id_even_when_interleaved() -> None:
    a = _stream("<", "bob", "S-A", topic="notes", chunks=[b"one", b"two"])
    b = _stream(">", "alice", "S-B", topic="files", chunks=[b"x"])
    records = [_join(), a[0], b[0], a[1], b[1], a[2], b[2], a[3]]
    model = build_model(records)
    assert set(model.streams) == {"S-A", "S-B"}
    stream_a = model.streams["S-A"]
    assert stream_a.rows == [1, 3, 5, 7]
    assert (stream_a.topic, stream_a.kind, stream_a.chunks, stream_a.closed) == (
        "notes",
        "text",
        2,
        True,
    )
    assert model.streams["S-B"].rows == [2, 4, 6]
    assert [model.rows[i].stream_id for i in stream_a.rows] == ["S-A"] * 4
    assert model.rows[0].stream_id is None
    assert model.rows[3].label == "stream_chunk #0"


def test_inline_stream_is_complete_in_its_header() -> None:
    header = pb.DataStream.Header(
        stream_id="S-I",
        topic="notes",
        text_header=pb.DataStream.TextHeader(),
        inline_content=b"hello",
    )
    record = _pkt(">", pb.DataPacket(stream_header=header))
    model = build_model([record])
    assert model.streams["S-I"].closed
    assert model.streams["S-I"].chunks == 0
    assert model.rows[0].label == "stream_header (inline)"


def test_rpc_v1_paired_request_ack_response() -> None:
    request = pb.DataPacket(
        destination_identities=["bob"],
        rpc_request=pb.RpcRequest(id="R1", method="echo", payload="ping", version=1),
    )
    ack = pb.DataPacket(participant_identity="bob", rpc_ack=pb.RpcAck(request_id="R1"))
    response = pb.DataPacket(
        participant_identity="bob", rpc_response=pb.RpcResponse(request_id="R1", payload="PING")
    )
    failed = pb.DataPacket(
        participant_identity="bob",
        rpc_response=pb.RpcResponse(request_id="R2", error=pb.RpcError(code=1400, message="nope")),
    )
    model = build_model([_join(), _pkt(">", request), _pkt("<", ack), _pkt("<", response)])
    rpc = model.rpcs["R1"]
    assert (rpc.method, rpc.version, rpc.request, rpc.ack, rpc.response) == (
        "echo",
        1,
        [1],
        [2],
        [3],
    )
    assert [row.rpc_role for row in model.rows] == [None, "request", "ack", "response"]
    assert model.rows[1].label == "rpc_request echo"
    lone = build_model([_pkt("<", failed)])
    assert lone.rpcs["R2"].error == "1400: nope"
    assert lone.rpcs["R2"].request == []


def test_rpc_v2_streams_paired_with_the_ack_packet() -> None:
    request = _stream(
        ">",
        "alice",
        "S-REQ",
        topic="lk.rpc_request",
        chunks=[b"ping"],
        attributes={
            "lk.rpc_request_id": "R9",
            "lk.rpc_request_method": "echo",
            "lk.rpc_request_version": "2",
        },
    )
    ack = pb.DataPacket(participant_identity="bob", rpc_ack=pb.RpcAck(request_id="R9"))
    response = _stream(
        "<",
        "bob",
        "S-RSP",
        topic="lk.rpc_response",
        chunks=[b"PING"],
        attributes={"lk.rpc_request_id": "R9"},
    )
    model = build_model([_join(), *request, _pkt("<", ack), *response])
    rpc = model.rpcs["R9"]
    assert (rpc.method, rpc.version) == ("echo", 2)
    assert rpc.request == [1, 2, 3]
    assert rpc.ack == [4]
    assert rpc.response == [5, 6, 7]
    assert model.streams["S-REQ"].rpc_id == "R9"
    # An ordinary stream on another topic with the same attribute is not an RPC.
    other = _stream(
        "<", "bob", "S-X", topic="notes", chunks=[b"."], attributes={"lk.rpc_request_id": "R9"}
    )
    assert build_model(other).rpcs == {}


def test_markers_for_reconnects_and_leave() -> None:
    records = [
        _join(),
        _sig(">", pb.SignalRequest(simulate=pb.SimulateScenario(server_leave=True))),
        _sig("<", pb.SignalResponse(reconnect=pb.ReconnectResponse())),
        _join(),
        _sig(
            "<",
            pb.SignalResponse(
                leave=pb.LeaveRequest(
                    action=pb.LeaveRequest.Action.RESUME,
                    reason=pb.DisconnectReason.CLIENT_INITIATED,
                )
            ),
        ),
        _sig(">", pb.SignalRequest(leave=pb.LeaveRequest())),
    ]
    markers = [row.marker for row in build_model(records).rows]
    assert markers[0] is None
    assert markers[1] == "simulate scenario"
    assert markers[2] == "resumed (signal reconnected)"
    assert markers[3] == "full reconnect: joined again"
    assert markers[4] is not None
    assert markers[4] == "leave: RESUME (CLIENT_INITIATED)"
    assert markers[5] == "leave: DISCONNECT"


def test_encrypted_packets_shown_as_such_and_grouped_by_their_clear_content() -> None:
    clear = pb.DataPacket(
        participant_identity="bob",
        stream_header=pb.DataStream.Header(stream_id="S-E", topic="secret"),
    )
    sealed = pb.DataPacket(
        participant_identity="bob",
        encrypted_packet=pb.EncryptedPacket(iv=b"\x01" * 12, encrypted_value=b"\x02" * 40),
    )
    opened = TapRecord(
        **{
            **{
                k: getattr(_pkt("<", sealed), k)
                for k in ("time", "mono", "direction", "channel", "type", "fields", "raw")
            },
            "participant": "bob",
            "decrypted": message_fields(clear),
        }
    )
    no_key = _pkt("<", sealed)
    model = build_model([opened, no_key])
    first, second = model.rows
    assert first.encrypted
    assert second.encrypted
    assert first.label == "encrypted → stream_header secret"
    assert first.stream_id == "S-E"
    assert second.label == "encrypted (no key)"
    assert second.stream_id is None
    assert model.streams["S-E"].topic == "secret"


def test_peer_lanes_are_bounded() -> None:
    packets = [
        pb.DataPacket(participant_identity=f"p{i}", user=pb.UserPacket(payload=b"."))
        for i in range(5)
    ]
    model = build_model([_pkt("<", p) for p in packets], ExplorerLimits(max_peer_lanes=2))
    assert [lane for lane, _ in model.lanes] == [
        LANE_CLIENT,
        LANE_SERVER,
        "peer:p0",
        "peer:p1",
        LANE_OTHERS,
    ]
    assert [row.source for row in model.rows] == [
        "peer:p0",
        "peer:p1",
        LANE_OTHERS,
        LANE_OTHERS,
        LANE_OTHERS,
    ]


def _page_data(page: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="lk-data">(.*?)</script>', page, re.S)
    assert match is not None
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


def test_record_limit_and_note() -> None:
    records = [_join()] + [
        _pkt(">", pb.DataPacket(user=pb.UserPacket(payload=bytes([i])))) for i in range(9)
    ]
    model = build_model(records, ExplorerLimits(max_records=4))
    assert (len(model.rows), model.total, model.omitted) == (4, 10, 6)
    data = _page_data(render_html(records, limits=ExplorerLimits(max_records=4)))
    assert (len(data["rows"]), data["total"], data["omitted"]) == (4, 10, 6)  # type: ignore[arg-type]


def test_data_budget_stops_the_page_before_the_record_limit() -> None:
    chunks = [
        _pkt(
            ">",
            pb.DataPacket(
                stream_chunk=pb.DataStream.Chunk(stream_id="S", chunk_index=i, content=b"z" * 900)
            ),
        )
        for i in range(50)
    ]
    limits = ExplorerLimits(max_data_bytes=10_000)
    model = build_model(chunks, limits)
    # Each row embeds ~2.5 kB (900 raw bytes and the same content in the fields, both base64).
    assert 3 <= len(model.rows) <= 5
    assert model.total == 50
    assert model.streams["S"].rows == list(range(len(model.rows)))
    data = _page_data(render_html(chunks, limits=limits))
    assert len(embed_json(data["rows"])) < 10_000 + 3_000  # type: ignore[arg-type]
    assert data["omitted"] == 50 - len(model.rows)


def test_raw_bytes_and_long_strings_are_cut() -> None:
    big = pb.DataPacket(user=pb.UserPacket(payload=b"\xab" * 300, topic="t" * 50))
    small = pb.DataPacket(user=pb.UserPacket(payload=b"ok"))
    records = [_pkt(">", big), _pkt(">", small)]
    limits = ExplorerLimits(max_raw_bytes=16, max_string_chars=20)
    rows = _page_data(render_html(records, limits=limits))["rows"]
    assert isinstance(rows, list)
    cut, whole = rows
    assert cut["size"] == len(records[0].raw)
    assert len(cut["raw"]) == 24  # 16 bytes of base64
    assert cut["clipped"] is True
    assert cut["fields"]["user"]["topic"] == "t" * 20 + "… (50 chars)"
    assert whole["clipped"] is False
    assert whole["fields"] == records[1].fields


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_records": 0},
        {"max_data_bytes": 0},
        {"max_raw_bytes": -1},
        {"max_string_chars": True},
        {"max_peer_lanes": 1.5},
    ],
)
def test_limits_refuse_non_positive_integers(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ExplorerLimits(**kwargs)  # type: ignore[arg-type]


HOSTILE = "</script><script>alert(1)</script><!-- <img src=x onerror=alert(2)> &amp; \u2028"


def test_remote_text_cannot_break_out_of_the_page() -> None:
    packet = pb.DataPacket(
        participant_identity=HOSTILE,
        user=pb.UserPacket(payload=HOSTILE.encode(), topic=HOSTILE),
    )
    records = [_join(HOSTILE), _pkt("<", packet)]
    page = render_html(records, title=HOSTILE)
    # Exactly our two script elements, and no markup from the records anywhere.
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    assert "<img" not in page
    assert "<!--" not in page
    # A raw line separator is harmless in HTML text but ended string literals in older engines.
    assert "\u2028" not in page.split('id="lk-data">', 1)[1]
    assert "&lt;/script&gt;" in page.split("<style>")[0]  # the escaped title
    data = _page_data(page)
    rows = data["rows"]
    assert isinstance(rows, list)
    assert rows[1]["participant"] == HOSTILE
    assert rows[1]["topic"] == HOSTILE
    assert data["lanes"][2]["label"] == HOSTILE  # type: ignore[index]


def test_embed_json_round_trips() -> None:
    value = {"a": ["<>&", "\u2028\u2029", 1, None, True], "</": {"x": 1.5}}
    text = embed_json(value)  # type: ignore[arg-type]
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


@pytest.mark.parametrize("name", ["explorer.js", "explorer.css"])
def test_assets_can_be_inlined(name: str) -> None:
    text = resources.files("lkproto.wire").joinpath("explorer_assets", name).read_text("utf-8")
    assert "</" not in text
    assert text in render_html([])


def test_page_is_self_contained() -> None:
    page = render_html([_join()])
    assert page.startswith("<!DOCTYPE html>")
    # Nothing is loaded from anywhere: no external references, and a policy forbidding fetches.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "@import" not in page
    assert "default-src 'none'" in page
    assert "url(" not in page
