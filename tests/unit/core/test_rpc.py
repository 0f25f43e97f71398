"""RPC v1: RpcError, the caller's RpcClient and the callee's RpcServer, wired together in memory.

Time is a plain float passed in; nothing here sleeps.
"""

from __future__ import annotations

import pickle

import pytest

from lkproto.core.rpc import (
    RPC_ATTR_RESPONSE_TIMEOUT_MS,
    RPC_DEFAULT_RESPONSE_TIMEOUT_S,
    RPC_ERROR_MESSAGES,
    RPC_MAX_PAYLOAD_BYTES,
    RPC_MAX_ROUND_TRIP_LATENCY_S,
    RPC_VERSION_V1,
    AnyRpcClientEvent,
    RpcCallFailed,
    RpcCallSucceeded,
    RpcClient,
    RpcError,
    RpcErrorCode,
    RpcEvent,
    RpcInvocationRequested,
    RpcServer,
    truncate_utf8,
)
from lkproto.errors import LkError, LocalProtocolError
from lkproto.wire import decode_data_packet, encode_data_packet, pb

T0 = 500.0
CALLEE = "callee"
CALLER = "caller"

# 2-, 3- and 4-byte UTF-8 characters.
E2 = "é"
E3 = "€"
E4 = "😀"


def events(machine: RpcClient | RpcServer) -> list[RpcEvent]:
    out: list[RpcEvent] = []
    while (event := machine.next_event()) is not None:
        out.append(event)
    return out


def client_events(client: RpcClient) -> list[AnyRpcClientEvent]:
    out: list[AnyRpcClientEvent] = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def ack(request_id: str, sender: str = CALLEE) -> pb.DataPacket:
    return pb.DataPacket(participant_identity=sender, rpc_ack=pb.RpcAck(request_id=request_id))


def ok(request_id: str, payload: str = "pong", sender: str = CALLEE) -> pb.DataPacket:
    return pb.DataPacket(
        participant_identity=sender,
        rpc_response=pb.RpcResponse(request_id=request_id, payload=payload),
    )


def err(request_id: str, error: pb.RpcError, sender: str = CALLEE) -> pb.DataPacket:
    return pb.DataPacket(
        participant_identity=sender,
        rpc_response=pb.RpcResponse(request_id=request_id, error=error),
    )


def request(
    request_id: str = "r1",
    *,
    method: str = "greet",
    payload: str = "hi",
    timeout_ms: int = 10_000,
    version: int = RPC_VERSION_V1,
    caller: str = CALLER,
) -> pb.DataPacket:
    return pb.DataPacket(
        participant_identity=caller,
        rpc_request=pb.RpcRequest(
            id=request_id,
            method=method,
            payload=payload,
            response_timeout_ms=timeout_ms,
            version=version,
        ),
    )


def perform(client: RpcClient, request_id: str = "r1", now: float = T0, **kw: object) -> None:
    client.perform(CALLEE, "greet", "hi", now, request_id=request_id, **kw)  # type: ignore[arg-type]


def failed_code(client: RpcClient) -> list[tuple[str, int]]:
    out = []
    for event in client_events(client):
        assert isinstance(event, RpcCallFailed)
        out.append((event.request_id, event.error.code))
    return out


# -------------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert RPC_MAX_PAYLOAD_BYTES == 15_360
    assert RPC_MAX_ROUND_TRIP_LATENCY_S == 7.0
    assert RPC_DEFAULT_RESPONSE_TIMEOUT_S == 15.0
    assert RPC_VERSION_V1 == 1


def test_error_codes_and_messages_match_the_official_sdks() -> None:
    expected = {
        "APPLICATION_ERROR": (1500, "Application error in method handler"),
        "CONNECTION_TIMEOUT": (1501, "Connection timeout"),
        "RESPONSE_TIMEOUT": (1502, "Response timeout"),
        "RECIPIENT_DISCONNECTED": (1503, "Recipient disconnected"),
        "RESPONSE_PAYLOAD_TOO_LARGE": (1504, "Response payload too large"),
        "SEND_FAILED": (1505, "Failed to send"),
        "UNSUPPORTED_METHOD": (1400, "Method not supported at destination"),
        "RECIPIENT_NOT_FOUND": (1401, "Recipient not found"),
        "REQUEST_PAYLOAD_TOO_LARGE": (1402, "Request payload too large"),
        "UNSUPPORTED_SERVER": (1403, "RPC not supported by server"),
        "UNSUPPORTED_VERSION": (1404, "Unsupported RPC version"),
    }
    assert {c.name: (int(c), RPC_ERROR_MESSAGES[c]) for c in RpcErrorCode} == expected


# -------------------------------------------------------------------------------- RpcError


def test_rpc_error_fields_and_text() -> None:
    e = RpcError(RpcErrorCode.APPLICATION_ERROR, "boom", "details")
    assert isinstance(e, LkError)
    assert e.code == 1500
    assert type(e.code) is int
    assert e.code == RpcErrorCode.APPLICATION_ERROR
    assert (e.message, e.data) == ("boom", "details")
    assert str(e) == "RPC error 1500: boom"
    assert repr(e) == "RpcError(APPLICATION_ERROR, 'boom', 'details')"
    assert repr(RpcError(42, "x")) == "RpcError(42, 'x', '')"
    assert RpcError(42, "x").data == ""


def test_rpc_error_built_in() -> None:
    e = RpcError.built_in(RpcErrorCode.RESPONSE_TIMEOUT)
    assert (e.code, e.message, e.data) == (1502, "Response timeout", "")
    e = RpcError.built_in(RpcErrorCode.SEND_FAILED, "socket closed")
    assert (e.code, e.message, e.data) == (1505, "Failed to send", "socket closed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 256, "a" * 256),
        ("a" * 257, "a" * 256),
        (E2 * 128, E2 * 128),  # exactly 256 bytes
        ("a" + E2 * 128, "a" + E2 * 127),  # 257 bytes: the last é would be split
        (E3 * 86, E3 * 85),  # 258 bytes -> 255
        ("ab" + E4 * 64, "ab" + E4 * 63),  # 258 bytes -> 254
        (E4 * 64, E4 * 64),  # exactly 256
        ("", ""),
    ],
)
def test_rpc_error_message_truncated_to_256_bytes(text: str, expected: str) -> None:
    e = RpcError(1, text)
    assert e.message == expected
    assert len(e.message.encode()) <= 256


def test_rpc_error_data_truncated_to_15360_bytes() -> None:
    assert RpcError(1, "", E3 * 5120).data == E3 * 5120  # exactly 15 360 bytes
    assert RpcError(1, "", "a" + E3 * 5120).data == "a" + E3 * 5119
    assert RpcError(1, "", "x" * 20_000).data == "x" * 15_360


def test_truncate_utf8() -> None:
    assert truncate_utf8("h" + E4, 4) == "h"
    assert truncate_utf8("h" + E4, 5) == "h" + E4
    assert truncate_utf8(E4, 0) == ""


def test_rpc_error_replaces_lone_surrogates() -> None:
    e = RpcError(1, "a\ud800b", "\udfff")
    assert e.message == "a\ufffdb"
    assert e.data == "\ufffd"
    e.to_proto().SerializeToString()
    # A proper pair written as two code points becomes the character.
    assert RpcError(1, "\ud83d\ude00").message == E4


def test_rpc_error_proto_round_trip() -> None:
    e = RpcError(2001, "custom " + E4, "data " + E3)
    proto = e.to_proto()
    assert proto == pb.RpcError(code=2001, message="custom " + E4, data="data " + E3)
    back = RpcError.from_proto(pb.RpcError.FromString(proto.SerializeToString()))
    assert (back.code, back.message, back.data) == (e.code, e.message, e.data)


def test_rpc_error_from_proto_truncates_remote_input() -> None:
    e = RpcError.from_proto(pb.RpcError(code=2**32 - 1, message="m" * 1000, data="d" * 20_000))
    assert e.code == 2**32 - 1
    assert len(e.message) == 256
    assert len(e.data) == 15_360


def test_rpc_error_pickles() -> None:
    e = RpcError(1404, "Unsupported RPC version", "x")
    back = pickle.loads(pickle.dumps(e))
    assert (back.code, back.message, back.data) == (1404, "Unsupported RPC version", "x")


@pytest.mark.parametrize("code", [-1, 2**32, True, 1.0, "1500", None])
def test_rpc_error_bad_code(code: object) -> None:
    with pytest.raises(LocalProtocolError, match="uint32"):
        RpcError(code, "x")  # type: ignore[arg-type]


def test_rpc_error_bad_text() -> None:
    with pytest.raises(LocalProtocolError):
        RpcError(1, None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        RpcError(1, "", b"data")  # type: ignore[arg-type]


def test_rpc_error_none_data_is_empty_and_official_names() -> None:
    # livekit.rtc's RpcError(code, message, None) means "no data"; the wire carries "".
    error = RpcError(RpcError.ErrorCode.RESPONSE_TIMEOUT, "late", None)
    assert (error.code, error.message, error.data) == (1502, "late", "")
    assert RpcError.ErrorMessage[RpcError.ErrorCode.RESPONSE_TIMEOUT] == "Response timeout"


# -------------------------------------------------------------------------------- client


def test_perform_builds_the_request() -> None:
    client = RpcClient()
    packet = client.perform(CALLEE, "greet", "hello", T0, request_id="r1")
    assert packet == pb.DataPacket(
        destination_identities=[CALLEE],
        rpc_request=pb.RpcRequest(
            id="r1", method="greet", payload="hello", response_timeout_ms=15_000, version=1
        ),
    )
    assert packet.sequence == 0
    assert client.pending_request_ids == {"r1"}
    assert not client.is_acknowledged("r1")
    assert client_events(client) == []
    encode_data_packet(packet)


@pytest.mark.parametrize(
    ("timeout_s", "wire_ms"),
    [(15.0, 15_000), (2.0, 8_000), (7.999, 8_000), (8.0, 8_000), (8.001, 8_001), (60, 60_000)],
)
def test_request_timeout_on_the_wire_is_at_least_8_s(timeout_s: float, wire_ms: int) -> None:
    packet = RpcClient().perform(CALLEE, "m", "", T0, request_id="r", response_timeout_s=timeout_s)
    assert packet.rpc_request.response_timeout_ms == wire_ms


def test_wire_timeout_floor_follows_the_configured_latency() -> None:
    client = RpcClient(max_round_trip_latency_s=20)
    packet = client.perform(CALLEE, "m", "", T0, request_id="r", response_timeout_s=5)
    assert packet.rpc_request.response_timeout_ms == 21_000
    assert client.get_timer() == T0 + 5


def test_per_call_latency_sets_that_call_s_ack_deadline_and_wire_floor() -> None:
    client = RpcClient()
    packet = client.perform(
        CALLEE, "m", "", T0, request_id="r", response_timeout_s=5, max_round_trip_latency_s=2
    )
    stream = client.perform_stream(
        CALLEE, "m", "", T0, request_id="s", response_timeout_s=5, max_round_trip_latency_s=30
    )
    assert packet.rpc_request.response_timeout_ms == 5_000
    assert stream.attributes[RPC_ATTR_RESPONSE_TIMEOUT_MS] == "31000"
    assert client.get_timer() == T0 + 2
    client.handle_timer(T0 + 2)
    assert failed_code(client) == [("r", RpcErrorCode.CONNECTION_TIMEOUT)]
    # The other call keeps its own (longer) ack deadline: its response deadline comes first.
    client.handle_timer(T0 + 5)
    assert failed_code(client) == [("s", RpcErrorCode.RESPONSE_TIMEOUT)]
    with pytest.raises(LocalProtocolError, match="max_round_trip_latency_s"):
        client.perform(CALLEE, "m", "", T0, request_id="x", max_round_trip_latency_s=0)
    assert client.pending_request_ids == set()


def test_payload_limit_exactly_at_and_over_with_multibyte() -> None:
    client = RpcClient()
    at_limit = E3 * 5120  # 15 360 bytes, 5 120 characters
    client.perform(CALLEE, "m", at_limit, T0, request_id="ok")
    for over in (at_limit + "a", E2 * 7681, "a" * 15_361):
        with pytest.raises(RpcError) as info:
            client.perform(CALLEE, "m", over, T0, request_id="big")
        assert info.value.code == RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE
        assert info.value.message == "Request payload too large"
    assert client.pending_request_ids == {"ok"}
    assert client_events(client) == []


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("1.7.9", False),
        ("1.7", False),
        ("0.15.0", False),
        ("1.8.0", True),
        ("1.8", True),
        ("1.13.5", True),
        ("v1.9.0-rc1", True),
        ("2", True),
        ("", True),
        ("unknown", True),
    ],
)
def test_unsupported_server(version: str, supported: bool) -> None:
    client = RpcClient()
    if supported:
        perform(client, server_version=version)
        assert client.pending_request_ids == {"r1"}
    else:
        with pytest.raises(RpcError) as info:
            perform(client, server_version=version)
        assert info.value.code == RpcErrorCode.UNSUPPORTED_SERVER
        assert client.pending_request_ids == frozenset()


def test_payload_size_is_checked_before_server_version() -> None:
    with pytest.raises(RpcError) as info:
        RpcClient().perform(CALLEE, "m", "x" * 20_000, T0, request_id="r", server_version="1.0.0")
    assert info.value.code == RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"destination_identity": ""},
        {"request_id": ""},
        {"response_timeout_s": 0},
        {"response_timeout_s": -1},
        {"response_timeout_s": float("inf")},
        {"response_timeout_s": float("nan")},
        {"response_timeout_s": True},
        {"response_timeout_s": 2**32 / 1000 + 1},
        {"payload": "a\ud800"},
        {"payload": b"bytes"},
        {"method": "a\ud800"},
        {"method": 3},
        {"destination_identity": "\ud800"},
    ],
)
def test_perform_misuse(kwargs: dict[str, object]) -> None:
    client = RpcClient()
    args: dict[str, object] = {
        "destination_identity": CALLEE,
        "method": "m",
        "payload": "p",
        "now": T0,
        "request_id": "r",
    }
    args.update(kwargs)
    with pytest.raises(LocalProtocolError):
        client.perform(**args)  # type: ignore[arg-type]
    assert client.pending_request_ids == frozenset()


def test_perform_refuses_a_pending_request_id() -> None:
    client = RpcClient()
    perform(client)
    with pytest.raises(LocalProtocolError, match="already pending"):
        perform(client)
    # Once it ended, the id may be reused.
    client.receive(ok("r1"), T0)
    perform(client)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), True])
def test_client_bad_latency(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        RpcClient(max_round_trip_latency_s=bad)  # type: ignore[arg-type]


def test_ack_then_response() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1"), T0 + 0.1)
    assert client.is_acknowledged("r1")
    assert client_events(client) == []
    response = ok("r1", "pong " + E4)
    client.receive(response, T0 + 0.2)
    assert client_events(client) == [
        RpcCallSucceeded(request_id="r1", payload="pong " + E4, message=response.rpc_response)
    ]
    assert client.pending_request_ids == frozenset()
    assert client.get_timer() is None
    assert client.ignored_packets == 0


def test_response_before_ack_is_accepted_and_the_late_ack_ignored() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ok("r1"), T0 + 0.1)
    [event] = client_events(client)
    assert isinstance(event, RpcCallSucceeded)
    client.receive(ack("r1"), T0 + 0.2)
    assert client_events(client) == []
    assert client.ignored_packets == 1


def test_empty_payload_response() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ok("r1", ""), T0)
    [event] = client_events(client)
    assert isinstance(event, RpcCallSucceeded)
    assert event.payload == ""


def test_error_response() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1"), T0)
    response = err("r1", pb.RpcError(code=2001, message="nope", data="d"))
    client.receive(response, T0 + 1)
    [event] = client_events(client)
    assert isinstance(event, RpcCallFailed)
    assert (event.error.code, event.error.message, event.error.data) == (2001, "nope", "d")
    assert event.message == response.rpc_response


def test_duplicate_ack_is_ignored() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1"), T0)
    client.receive(ack("r1"), T0)
    assert client.ignored_packets == 1
    assert client.pending_request_ids == {"r1"}


def test_packets_from_another_identity_are_ignored() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1", sender="mallory"), T0)
    client.receive(ok("r1", "forged", sender="mallory"), T0)
    assert not client.is_acknowledged("r1")
    assert client_events(client) == []
    assert client.ignored_packets == 2
    client.receive(ok("r1", "real"), T0)
    [event] = client_events(client)
    assert isinstance(event, RpcCallSucceeded)
    assert event.payload == "real"


def test_packets_from_a_hidden_sender_are_accepted() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1", sender=""), T0)
    assert client.is_acknowledged("r1")
    client.receive(ok("r1", sender=""), T0)
    assert isinstance(client.next_event(), RpcCallSucceeded)


def test_unknown_ids_and_other_packets_are_ignored() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("nope"), T0)
    client.receive(ok("nope"), T0)
    assert client.ignored_packets == 2
    client.receive(pb.DataPacket(user=pb.UserPacket(payload=b"x")), T0)
    client.receive(request("r1"), T0)
    client.receive(pb.DataPacket(), T0)
    assert client.ignored_packets == 2
    assert client.pending_request_ids == {"r1"}
    assert client_events(client) == []


@pytest.mark.parametrize(
    "response",
    [
        pb.RpcResponse(request_id="r1"),
        pb.RpcResponse(request_id="r1", compressed_payload=b"\x00"),
    ],
)
def test_response_without_usable_value_is_ignored(response: pb.RpcResponse) -> None:
    client = RpcClient()
    perform(client)
    client.receive(pb.DataPacket(participant_identity=CALLEE, rpc_response=response), T0)
    assert client.pending_request_ids == {"r1"}
    assert client.ignored_packets == 1
    client.handle_timer(T0 + 15)
    assert failed_code(client) == [("r1", RpcErrorCode.CONNECTION_TIMEOUT)]


def test_no_ack_within_7_s_is_a_connection_timeout() -> None:
    client = RpcClient()
    perform(client)
    assert client.get_timer() == T0 + 7
    client.handle_timer(T0 + 6.999)
    assert client_events(client) == []
    client.handle_timer(T0 + 7)
    [event] = client_events(client)
    assert isinstance(event, RpcCallFailed)
    assert event.error.code == RpcErrorCode.CONNECTION_TIMEOUT
    assert event.error.message == "Connection timeout"
    assert event.message is None
    assert client.get_timer() is None
    # The call was dropped: a late response changes nothing.
    client.receive(ok("r1"), T0 + 8)
    assert client_events(client) == []
    assert client.ignored_packets == 1


def test_acked_call_times_out_at_the_response_deadline() -> None:
    client = RpcClient()
    perform(client)
    client.receive(ack("r1"), T0 + 6)
    assert client.get_timer() == T0 + 15
    client.handle_timer(T0 + 14.9)
    assert client_events(client) == []
    client.handle_timer(T0 + 15)
    [event] = client_events(client)
    assert isinstance(event, RpcCallFailed)
    assert (event.error.code, event.error.message) == (1502, "Response timeout")


def test_short_timeout_without_ack_is_a_response_timeout() -> None:
    client = RpcClient()
    perform(client, response_timeout_s=2)
    assert client.get_timer() == T0 + 2
    client.handle_timer(T0 + 2)
    assert failed_code(client) == [("r1", RpcErrorCode.RESPONSE_TIMEOUT)]


def test_deadline_tie_is_a_connection_timeout() -> None:
    client = RpcClient()
    perform(client, response_timeout_s=7)
    client.handle_timer(T0 + 100)
    assert failed_code(client) == [("r1", RpcErrorCode.CONNECTION_TIMEOUT)]


def test_late_timer_reports_the_earlier_deadline() -> None:
    client = RpcClient()
    perform(client, response_timeout_s=15)
    client.handle_timer(T0 + 100)  # both passed: the ack deadline was first
    assert failed_code(client) == [("r1", RpcErrorCode.CONNECTION_TIMEOUT)]


def test_timeouts_come_out_in_deadline_then_call_order() -> None:
    client = RpcClient()
    perform(client, "a", T0, response_timeout_s=20)
    perform(client, "b", T0 + 1, response_timeout_s=3)
    perform(client, "c", T0 + 2, response_timeout_s=2)
    perform(client, "d", T0, response_timeout_s=20)
    client.receive(ack("a"), T0)
    assert client.get_timer() == T0 + 4
    client.handle_timer(T0 + 30)
    assert failed_code(client) == [
        ("b", RpcErrorCode.RESPONSE_TIMEOUT),  # T0 + 4
        ("c", RpcErrorCode.RESPONSE_TIMEOUT),  # T0 + 4, performed later
        ("d", RpcErrorCode.CONNECTION_TIMEOUT),  # T0 + 7
        ("a", RpcErrorCode.RESPONSE_TIMEOUT),  # T0 + 20
    ]


def test_participant_disconnected_fails_only_its_calls() -> None:
    client = RpcClient()
    perform(client, "a")
    client.perform("other", "m", "", T0, request_id="b")
    perform(client, "c")
    client.receive(ack("c"), T0)
    client.participant_disconnected(CALLEE, T0 + 1)
    assert failed_code(client) == [
        ("a", RpcErrorCode.RECIPIENT_DISCONNECTED),
        ("c", RpcErrorCode.RECIPIENT_DISCONNECTED),
    ]
    assert client.pending_request_ids == {"b"}
    client.participant_disconnected("nobody", T0 + 1)
    assert client_events(client) == []


def test_fail_and_fail_all() -> None:
    client = RpcClient()
    perform(client, "a")
    perform(client, "b")
    perform(client, "c")
    assert client.fail("b", RpcError.built_in(RpcErrorCode.SEND_FAILED, "closed"))
    assert not client.fail("b", RpcError.built_in(RpcErrorCode.SEND_FAILED))
    [event] = client_events(client)
    assert isinstance(event, RpcCallFailed)
    assert (event.request_id, event.error.code, event.error.data) == ("b", 1505, "closed")
    client.fail_all(RpcError(2000, "closing"))
    assert failed_code(client) == [("a", 2000), ("c", 2000)]
    assert client.get_timer() is None


# -------------------------------------------------------------------------------- server


def test_register_and_unregister() -> None:
    server = RpcServer()
    server.register("greet")
    with pytest.raises(LocalProtocolError, match="already registered"):
        server.register("greet")
    with pytest.raises(LocalProtocolError):
        server.register(3)  # type: ignore[arg-type]
    assert server.registered_methods == {"greet"}
    server.unregister("greet")
    server.unregister("greet")
    assert server.registered_methods == frozenset()
    server.register("greet")


def test_request_is_acked_and_dispatched() -> None:
    server = RpcServer()
    server.register("greet")
    packet = request("r1", payload="hi " + E4, timeout_ms=8_000)
    out = server.receive(packet, T0)
    assert out == [
        pb.DataPacket(destination_identities=[CALLER], rpc_ack=pb.RpcAck(request_id="r1"))
    ]
    assert events(server) == [
        RpcInvocationRequested(
            request_id="r1",
            caller_identity=CALLER,
            method="greet",
            payload="hi " + E4,
            response_timeout_s=8.0,
            deadline=T0 + 8,
            message=packet.rpc_request,
        )
    ]
    assert server.pending_request_ids == {"r1"}
    reply = server.respond("r1", "hello " + E4)
    assert reply == pb.DataPacket(
        destination_identities=[CALLER],
        rpc_response=pb.RpcResponse(request_id="r1", payload="hello " + E4),
    )
    assert server.pending_request_ids == frozenset()


def test_empty_response_payload() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request(), T0)
    reply = server.respond("r1", "")
    assert reply.rpc_response.WhichOneof("value") == "payload"
    assert reply.rpc_response.payload == ""


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unsupported_version(version: int) -> None:
    server = RpcServer()
    server.register("greet")
    out = server.receive(request(version=version), T0)
    assert [p.WhichOneof("value") for p in out] == ["rpc_ack", "rpc_response"]
    assert out[1].destination_identities == [CALLER]
    assert out[1].rpc_response == pb.RpcResponse(
        request_id="r1", error=pb.RpcError(code=1404, message="Unsupported RPC version")
    )
    assert events(server) == []
    assert server.pending_request_ids == frozenset()


def test_unsupported_method() -> None:
    server = RpcServer()
    out = server.receive(request(method="nope"), T0)
    assert [p.WhichOneof("value") for p in out] == ["rpc_ack", "rpc_response"]
    assert out[1].rpc_response.error == pb.RpcError(
        code=1400, message="Method not supported at destination"
    )
    assert events(server) == []


def test_requests_without_caller_or_id_and_duplicates_are_ignored() -> None:
    server = RpcServer()
    server.register("greet")
    assert server.receive(request(caller=""), T0) == []
    assert server.receive(request(""), T0) == []
    assert len(server.receive(request("r1"), T0)) == 1
    assert server.receive(request("r1"), T0) == []
    assert server.ignored_packets == 3
    assert len(events(server)) == 1
    # Answered, the id is free again (a new request, not a duplicate).
    server.respond("r1", "x")
    assert len(server.receive(request("r1"), T0)) == 1


def test_server_ignores_other_packets() -> None:
    server = RpcServer()
    for packet in (pb.DataPacket(), ack("r1"), ok("r1"), pb.DataPacket(user=pb.UserPacket())):
        assert server.receive(packet, T0) == []
    assert server.ignored_packets == 0


def test_response_payload_limit_exactly_at_and_over() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request("a"), T0)
    server.receive(request("b"), T0)
    server.receive(request("c"), T0)
    at_limit = E4 * 3840  # 15 360 bytes
    assert server.respond("a", at_limit).rpc_response.payload == at_limit
    for rid, over in (("b", at_limit + "a"), ("c", E2 * 7681)):
        reply = server.respond(rid, over)
        assert reply.destination_identities == [CALLER]
        assert reply.rpc_response == pb.RpcResponse(
            request_id=rid, error=pb.RpcError(code=1504, message="Response payload too large")
        )
    assert server.pending_request_ids == frozenset()


def test_respond_error() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request(), T0)
    reply = server.respond_error("r1", RpcError(2001, "bad " + E3, "why"))
    assert reply == pb.DataPacket(
        destination_identities=[CALLER],
        rpc_response=pb.RpcResponse(
            request_id="r1", error=pb.RpcError(code=2001, message="bad " + E3, data="why")
        ),
    )


def test_respond_misuse() -> None:
    server = RpcServer()
    server.register("greet")
    with pytest.raises(LocalProtocolError, match="no pending"):
        server.respond("r1", "x")
    with pytest.raises(LocalProtocolError, match="no pending"):
        server.respond_error("r1", RpcError(1, "x"))
    server.receive(request(), T0)
    with pytest.raises(LocalProtocolError):
        server.respond_error("r1", ValueError("x"))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="Unicode"):
        server.respond("r1", "\ud800")
    assert server.pending_request_ids == {"r1"}  # still answerable
    server.respond("r1", "x")
    with pytest.raises(LocalProtocolError):
        server.respond("r1", "x")


def test_unregister_keeps_pending_invocations_answerable() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request(), T0)
    server.unregister("greet")
    assert server.respond("r1", "late").rpc_response.payload == "late"


def test_server_initiated_rpc_replies_to_the_request_uuid() -> None:
    # PROTOCOL-MAP §6: RoomService.PerformRpc puts the request UUID in participant_identity.
    uuid = "6f1d7a52-2f7b-4bde-9a8e-4e1f0c3b2a19"
    server = RpcServer()
    server.register("greet")
    out = server.receive(request(uuid, caller=uuid, timeout_ms=9_500), T0)
    assert out[0].destination_identities == [uuid]
    [event] = events(server)
    assert isinstance(event, RpcInvocationRequested)
    assert event.caller_identity == uuid
    assert event.response_timeout_s == 9.5
    assert server.respond(uuid, "ok").destination_identities == [uuid]
    out = server.receive(request("other", caller=uuid, method="nope"), T0)
    assert [p.destination_identities[0] for p in out] == [uuid, uuid]


# -------------------------------------------------------------------------------- end to end


def sfu(packet: pb.DataPacket, sender: str) -> pb.DataPacket:
    """What the server does to a packet on its way: wire round trip, sender identity stamped."""
    received = decode_data_packet(encode_data_packet(packet))
    received.participant_identity = sender
    return received


def test_round_trip_between_client_and_server() -> None:
    client, server = RpcClient(), RpcServer()
    server.register("echo")
    req = client.perform(CALLEE, "echo", "ping " + E4, T0, request_id="r1")
    out = server.receive(sfu(req, CALLER), T0 + 0.05)
    for packet in out:
        client.receive(sfu(packet, CALLEE), T0 + 0.1)
    assert client.is_acknowledged("r1")
    [invocation] = events(server)
    assert isinstance(invocation, RpcInvocationRequested)
    assert invocation.response_timeout_s == 15.0
    reply = server.respond(invocation.request_id, invocation.payload.upper())
    client.receive(sfu(reply, CALLEE), T0 + 0.2)
    [event] = client_events(client)
    assert isinstance(event, RpcCallSucceeded)
    assert event.payload == "PING " + E4


def test_round_trip_errors_reach_the_caller_unchanged() -> None:
    client, server = RpcClient(), RpcServer()
    for method, expected in (("missing", 1400), ("bad", 1404)):
        req = client.perform(CALLEE, method, "", T0, request_id=method)
        if method == "bad":
            req.rpc_request.version = 2
        for packet in server.receive(sfu(req, CALLER), T0):
            client.receive(sfu(packet, CALLEE), T0)
        [event] = client_events(client)
        assert isinstance(event, RpcCallFailed)
        assert event.error.code == expected
        assert event.error.message == RPC_ERROR_MESSAGES[RpcErrorCode(expected)]


# -------------------------------------------------------------------------------- full reconnects


def test_our_full_reconnect_fails_the_calls_pending_before_it() -> None:
    """Calls made before our reconnect began and unanswered at its end fail with 1503; one
    answered on the new session in between succeeds; one made during the reconnect is kept."""
    client = RpcClient()
    perform(client, "a")
    perform(client, "b")
    client.receive(ack("b"), T0)
    perform(client, "c")
    client.reconnecting(T0 + 1)
    client.receive(ok("c"), T0 + 2)
    perform(client, "d", now=T0 + 2)
    client.reconnected(T0 + 3, full=True)
    outcomes = client_events(client)
    assert [type(e).__name__ for e in outcomes] == ["RpcCallSucceeded"] + ["RpcCallFailed"] * 2
    failed = [e for e in outcomes if isinstance(e, RpcCallFailed)]
    assert [(e.request_id, e.error.code) for e in failed] == [
        ("a", RpcErrorCode.RECIPIENT_DISCONNECTED),
        ("b", RpcErrorCode.RECIPIENT_DISCONNECTED),
    ]
    assert failed[0].error.message == RPC_ERROR_MESSAGES[RpcErrorCode.RECIPIENT_DISCONNECTED]
    assert client.pending_request_ids == {"d"}


def test_a_resume_keeps_the_pending_calls() -> None:
    client = RpcClient()
    perform(client, "a")
    client.reconnecting(T0 + 1)
    client.reconnected(T0 + 2, full=False)
    assert client_events(client) == []
    assert client.pending_request_ids == {"a"}
    # The marks are gone: a later full reconnect starts from a new reconnecting().
    client.reconnected(T0 + 3, full=True)
    assert client.pending_request_ids == {"a"}


def test_server_drops_the_invocations_of_a_caller_that_left() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request("r1"), T0)
    server.receive(request("r2", caller="other"), T0)
    server.receive(request("r3"), T0)
    events(server)
    assert server.participant_disconnected(CALLER) == ["r1", "r3"]
    assert server.pending_request_ids == {"r2"}
    with pytest.raises(LocalProtocolError):
        server.respond("r1", "too late")
    assert server.participant_disconnected("nobody") == []


def test_server_drops_invocations_pending_across_our_full_reconnect() -> None:
    server = RpcServer()
    server.register("greet")
    server.receive(request("r1"), T0)
    server.reconnecting()
    server.receive(request("r2"), T0 + 1)
    events(server)
    assert server.reconnected(full=True) == ["r1"]
    assert server.pending_request_ids == {"r2"}
    server.reconnecting()
    assert server.reconnected(full=False) == []
    assert server.pending_request_ids == {"r2"}
    assert server.reconnected(full=True) == []


def test_request_streams_being_read_are_left_to_their_stream() -> None:
    server = RpcServer()
    attrs = {
        "lk.rpc_request_id": "s1",
        "lk.rpc_request_method": "greet",
        RPC_ATTR_RESPONSE_TIMEOUT_MS: "8000",
        "lk.rpc_request_version": "2",
    }
    _, read = server.receive_stream(CALLER, attrs, T0)
    assert read
    assert server.participant_disconnected(CALLER) == []
    server.reconnecting()
    assert server.reconnected(full=True) == []
    assert server.stream_failed("s1").rpc_response.error.code == RpcErrorCode.APPLICATION_ERROR
