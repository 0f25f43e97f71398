"""RPC v2 state in RpcClient and RpcServer (PROTOCOL-MAP §6 v2 flow)."""

from __future__ import annotations

import pytest

from lkproto.core.rpc import (
    RPC_ATTR_METHOD,
    RPC_ATTR_REQUEST_ID,
    RPC_ATTR_RESPONSE_TIMEOUT_MS,
    RPC_ATTR_VERSION,
    RPC_MAX_PAYLOAD_BYTES,
    RPC_REQUEST_TOPIC,
    RPC_RESPONSE_TOPIC,
    RpcCallFailed,
    RpcCallSucceeded,
    RpcClient,
    RpcError,
    RpcErrorCode,
    RpcInvocationRequested,
    RpcServer,
    RpcStreamMessage,
)
from lkproto.errors import LocalProtocolError

T0 = 100.0
BIG = "x" * (RPC_MAX_PAYLOAD_BYTES * 7)


def _attrs(
    rid: str = "r1", method: str = "m", timeout: str = "8000", version: str = "2"
) -> dict[str, str]:
    return {
        RPC_ATTR_REQUEST_ID: rid,
        RPC_ATTR_METHOD: method,
        RPC_ATTR_RESPONSE_TIMEOUT_MS: timeout,
        RPC_ATTR_VERSION: version,
    }


def test_perform_stream_has_no_size_limit_and_v2_attributes() -> None:
    client = RpcClient()
    msg = client.perform_stream("bob", "m", BIG, T0, request_id="r1", response_timeout_s=3)
    assert msg == RpcStreamMessage(
        destination_identity="bob",
        topic=RPC_REQUEST_TOPIC,
        attributes=_attrs(timeout="8000"),
        payload=BIG,
    )
    assert client.pending_request_ids == {"r1"}
    assert client.get_timer() == T0 + 3


def test_perform_stream_checks_server_version_and_duplicates() -> None:
    client = RpcClient()
    with pytest.raises(RpcError) as info:
        client.perform_stream("bob", "m", "", T0, request_id="r1", server_version="1.7.0")
    assert info.value.code == RpcErrorCode.UNSUPPORTED_SERVER
    client.perform_stream("bob", "m", "", T0, request_id="r1")
    with pytest.raises(LocalProtocolError):
        client.perform_stream("bob", "m", "", T0, request_id="r1")


def test_response_stream_only_from_the_callee() -> None:
    client = RpcClient()
    client.perform_stream("bob", "m", "", T0, request_id="r1")
    assert not client.expects_response_stream("mallory", "r1")
    assert not client.expects_response_stream("bob", "unknown")
    client.receive_response_stream("mallory", "r1", "evil")
    assert client.next_event() is None
    assert client.ignored_packets == 3
    assert client.expects_response_stream("bob", "r1")
    client.receive_response_stream("bob", "r1", BIG)
    event = client.next_event()
    assert isinstance(event, RpcCallSucceeded)
    assert (event.request_id, event.payload) == ("r1", BIG)
    assert client.pending_request_ids == frozenset()
    client.receive_response_stream("bob", "r1", "again")
    assert client.next_event() is None


def test_v2_call_times_out_like_v1() -> None:
    client = RpcClient()
    client.perform_stream("bob", "m", "", T0, request_id="r1", response_timeout_s=30)
    client.handle_timer(T0 + 7)
    event = client.next_event()
    assert isinstance(event, RpcCallFailed)
    assert event.error.code == RpcErrorCode.CONNECTION_TIMEOUT


def test_server_stream_request_acks_then_invokes() -> None:
    server = RpcServer()
    server.register("m")
    packets, read = server.receive_stream("alice", _attrs(), T0)
    assert read
    assert [p.WhichOneof("value") for p in packets] == ["rpc_ack"]
    assert packets[0].rpc_ack.request_id == "r1"
    assert list(packets[0].destination_identities) == ["alice"]
    assert server.next_event() is None
    # Not answerable while the payload is still being read.
    with pytest.raises(LocalProtocolError):
        server.respond("r1", "x")
    assert server.stream_received("r1", BIG) == []
    event = server.next_event()
    assert isinstance(event, RpcInvocationRequested)
    assert (event.caller_identity, event.method, event.payload) == ("alice", "m", BIG)
    assert event.response_timeout_s == 8.0
    assert event.deadline == T0 + 8.0
    assert event.message.version == 2
    reply = server.respond_stream("r1", BIG)
    assert reply == RpcStreamMessage(
        destination_identity="alice",
        topic=RPC_RESPONSE_TOPIC,
        attributes={RPC_ATTR_REQUEST_ID: "r1"},
        payload=BIG,
    )
    assert server.pending_request_ids == frozenset()


def test_server_v1_fallback_response_is_size_checked() -> None:
    server = RpcServer()
    server.register("m")
    server.receive_stream("alice", _attrs(), T0)
    server.stream_received("r1", "")
    packet = server.respond("r1", BIG)
    assert packet.rpc_response.error.code == RpcErrorCode.RESPONSE_PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "attrs",
    [
        _attrs(rid=""),
        _attrs(method=""),
        _attrs(timeout="soon"),
        _attrs(version=""),
        {RPC_ATTR_REQUEST_ID: "r1"},
    ],
)
def test_server_malformed_stream_is_an_application_error_packet(attrs: dict[str, str]) -> None:
    server = RpcServer()
    server.register("m")
    packets, read = server.receive_stream("alice", attrs, T0)
    assert not read
    assert [p.WhichOneof("value") for p in packets] == ["rpc_response"]
    error = packets[0].rpc_response.error
    assert error.code == RpcErrorCode.APPLICATION_ERROR
    assert error.data == "RPC data stream malformed"
    assert server.pending_request_ids == frozenset()


def test_server_unsupported_version_after_ack() -> None:
    server = RpcServer()
    server.register("m")
    packets, read = server.receive_stream("alice", _attrs(version="3"), T0)
    assert not read
    assert [p.WhichOneof("value") for p in packets] == ["rpc_ack", "rpc_response"]
    assert packets[1].rpc_response.error.code == RpcErrorCode.UNSUPPORTED_VERSION


def test_server_unsupported_method_after_reading() -> None:
    server = RpcServer()
    packets, read = server.receive_stream("alice", _attrs(method="nope"), T0)
    assert read
    assert [p.WhichOneof("value") for p in packets] == ["rpc_ack"]
    (error,) = server.stream_received("r1", "payload")
    assert error.rpc_response.error.code == RpcErrorCode.UNSUPPORTED_METHOD
    assert server.next_event() is None
    assert server.pending_request_ids == frozenset()


def test_server_stream_failure_and_duplicates() -> None:
    server = RpcServer()
    server.register("m")
    server.receive_stream("alice", _attrs(), T0)
    assert server.receive_stream("alice", _attrs(), T0) == ([], False)
    assert server.receive_stream("", _attrs(rid="r2"), T0) == ([], False)
    assert server.ignored_packets == 2
    packet = server.stream_failed("r1")
    assert packet.rpc_response.error.code == RpcErrorCode.APPLICATION_ERROR
    assert list(packet.destination_identities) == ["alice"]
    with pytest.raises(LocalProtocolError):
        server.stream_failed("r1")
    with pytest.raises(LocalProtocolError):
        server.stream_received("r1", "")


def test_client_and_server_round_trip_over_v2() -> None:
    client, server = RpcClient(), RpcServer()
    server.register("m")
    request = client.perform_stream("bob", "m", BIG, T0, request_id="r1")
    packets, read = server.receive_stream("alice", request.attributes, T0)
    assert read
    for packet in packets:
        packet.participant_identity = "bob"
        client.receive(packet, T0)
    assert client.is_acknowledged("r1")
    server.stream_received("r1", request.payload)
    event = server.next_event()
    assert isinstance(event, RpcInvocationRequested)
    reply = server.respond_stream(event.request_id, event.payload[::-1])
    assert client.expects_response_stream("bob", reply.attributes[RPC_ATTR_REQUEST_ID])
    client.receive_response_stream("bob", "r1", reply.payload)
    done = client.next_event()
    assert isinstance(done, RpcCallSucceeded)
    assert done.payload == BIG[::-1]
