"""RPC properties: every call ends exactly once, as a model predicts; bad input never raises.

(a) Random interleavings of performs, acks and responses (from the callee, a stranger or a hidden
    sender), clock advances, disconnects and local failures: after each step the client's events,
    pending set and timer equal those of an independent model, so every call ends exactly once
    (succeeded xor failed) and never twice; a final flush ends all of them.
(b) Arbitrary DataPackets never raise out of ``RpcClient.receive`` / ``RpcServer.receive``.
(c) The server answers each dispatched invocation exactly once; every request gets one ack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.core.rpc import (
    RPC_MAX_ROUND_TRIP_LATENCY_S,
    RpcCallFailed,
    RpcCallSucceeded,
    RpcClient,
    RpcError,
    RpcErrorCode,
    RpcInvocationRequested,
    RpcServer,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb
from tests._support.pbstrategies import messages

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDENTITIES = ("alice", "bob")
Outcome = tuple[str, str, int]  # (request id, "ok" | "fail", code or 0)


@dataclass
class Call:
    destination: str
    order: int
    ack_deadline: float
    response_deadline: float
    acked: bool = False

    def deadline(self) -> tuple[float, int]:
        if not self.acked and self.ack_deadline <= self.response_deadline:
            return self.ack_deadline, RpcErrorCode.CONNECTION_TIMEOUT
        return self.response_deadline, RpcErrorCode.RESPONSE_TIMEOUT


_op = st.one_of(
    st.tuples(
        st.just("perform"), st.sampled_from(IDENTITIES), st.sampled_from([1.0, 2.0, 7.0, 15.0])
    ),
    st.tuples(st.just("ack"), st.integers(0, 9), st.sampled_from(["dest", "stranger", "hidden"])),
    st.tuples(st.just("ok"), st.integers(0, 9), st.sampled_from(["dest", "stranger", "hidden"])),
    st.tuples(st.just("err"), st.integers(0, 9), st.sampled_from(["dest", "stranger", "hidden"])),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 7.0, 10.0]), st.none()),
    st.tuples(st.just("disconnect"), st.sampled_from(IDENTITIES), st.none()),
    st.tuples(st.just("fail"), st.integers(0, 9), st.none()),
    st.tuples(st.just("fail_all"), st.none(), st.none()),
)


def _drain(client: RpcClient) -> list[Outcome]:
    out: list[Outcome] = []
    while (event := client.next_event()) is not None:
        if isinstance(event, RpcCallSucceeded):
            out.append((event.request_id, "ok", 0))
        else:
            assert isinstance(event, RpcCallFailed)
            out.append((event.request_id, "fail", event.error.code))
    return out


@SETTINGS
@given(ops=st.lists(_op, max_size=50))
def test_every_call_ends_exactly_once(ops: list[tuple[str, object, object]]) -> None:
    client = RpcClient()
    calls: dict[str, Call] = {}  # pending, in perform order
    performed: list[str] = []
    ended: Counter[str] = Counter()
    now = 0.0

    def sender_of(rid: str, who: object) -> str:
        if who == "dest":
            return calls[rid].destination if rid in calls else "alice"
        return "mallory" if who == "stranger" else ""

    for op, a, b in ops:
        expected: list[Outcome] = []
        if op == "perform":
            rid = f"r{len(performed)}"
            assert isinstance(a, str)
            assert isinstance(b, float)
            client.perform(a, "m", "p", now, request_id=rid, response_timeout_s=b)
            calls[rid] = Call(
                destination=a,
                order=len(performed),
                ack_deadline=now + RPC_MAX_ROUND_TRIP_LATENCY_S,
                response_deadline=now + b,
            )
            performed.append(rid)
        elif op in ("ack", "ok", "err"):
            assert isinstance(a, int)
            rid = f"r{a}"
            sender = sender_of(rid, b)
            valid = rid in calls and sender in ("", calls[rid].destination)
            if op == "ack":
                client.receive(
                    pb.DataPacket(participant_identity=sender, rpc_ack=pb.RpcAck(request_id=rid)),
                    now,
                )
                if valid:
                    calls[rid].acked = True
            else:
                response = (
                    pb.RpcResponse(request_id=rid, payload="x")
                    if op == "ok"
                    else pb.RpcResponse(request_id=rid, error=pb.RpcError(code=4242, message="e"))
                )
                client.receive(
                    pb.DataPacket(participant_identity=sender, rpc_response=response), now
                )
                if valid:
                    del calls[rid]
                    expected.append((rid, "ok", 0) if op == "ok" else (rid, "fail", 4242))
        elif op == "advance":
            assert isinstance(a, float)
            now += a
            client.handle_timer(now)
            due = sorted(
                ((*call.deadline(), call.order, rid) for rid, call in calls.items()),
                key=lambda item: (item[0], item[2]),
            )
            due = [item for item in due if now >= item[0]]
            for _, code, _, rid in due:
                del calls[rid]
                expected.append((rid, "fail", code))
        elif op == "disconnect":
            client.participant_disconnected(str(a), now)
            for rid in [r for r, c in calls.items() if c.destination == a]:
                del calls[rid]
                expected.append((rid, "fail", RpcErrorCode.RECIPIENT_DISCONNECTED))
        elif op == "fail":
            rid = f"r{a}"
            was_pending = rid in calls
            assert client.fail(rid, RpcError.built_in(RpcErrorCode.SEND_FAILED)) == was_pending
            if was_pending:
                del calls[rid]
                expected.append((rid, "fail", RpcErrorCode.SEND_FAILED))
        else:
            client.fail_all(RpcError(2000, "closing"))
            expected = [(rid, "fail", 2000) for rid in calls]
            calls.clear()

        got = _drain(client)
        assert got == expected
        ended.update(rid for rid, _, _ in got)
        assert client.pending_request_ids == set(calls)
        timer = client.get_timer()
        if calls:
            assert timer == min(call.deadline()[0] for call in calls.values())
            if op == "advance":
                assert timer > now
        else:
            assert timer is None

    # Let every deadline pass: all calls end, each exactly once.
    client.handle_timer(now + 1000)
    ended.update(rid for rid, _, _ in _drain(client))
    assert client.pending_request_ids == frozenset()
    assert set(ended) == set(performed)
    assert all(count == 1 for count in ended.values())


_rpc_packets = st.one_of(
    messages(pb.DataPacket.DESCRIPTOR),
    messages(pb.DataPacket.DESCRIPTOR, force_oneof=("value", "rpc_ack")),
    messages(pb.DataPacket.DESCRIPTOR, force_oneof=("value", "rpc_response")),
    messages(pb.DataPacket.DESCRIPTOR, force_oneof=("value", "rpc_request")),
)


@SETTINGS
@given(packets=st.lists(_rpc_packets, max_size=8), rid=st.sampled_from(["", "a", "r0"]))
def test_arbitrary_packets_never_raise(packets: list[pb.DataPacket], rid: str) -> None:
    client = RpcClient()
    client.perform("x", "m", "p", 0.0, request_id="r0")
    server = RpcServer()
    server.register("")
    server.register("m")
    for packet in packets:
        # Also aim some at the pending call.
        if rid and packet.WhichOneof("value") == "rpc_ack":
            packet.rpc_ack.request_id = rid
        elif rid and packet.WhichOneof("value") == "rpc_response":
            packet.rpc_response.request_id = rid
        client.receive(packet, 1.0)
        for reply in server.receive(packet, 1.0):
            assert list(reply.destination_identities) == [packet.participant_identity]
            reply.SerializeToString()
    while (event := client.next_event()) is not None:
        assert event.request_id == "r0"
        if isinstance(event, RpcCallFailed):
            event.error.to_proto().SerializeToString()
    client.handle_timer(100.0)
    while server.next_event() is not None:
        pass


_request = st.tuples(
    st.sampled_from(["r1", "r2", "r3", ""]),
    st.sampled_from(["m", "other"]),
    st.sampled_from([0, 1, 2]),
    st.sampled_from(["alice", "bob", ""]),
)


@SETTINGS
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("request"), _request),
            st.tuples(st.just("respond"), st.sampled_from(["r1", "r2", "r3"])),
        ),
        max_size=40,
    )
)
def test_server_answers_each_invocation_exactly_once(
    steps: list[tuple[str, object]],
) -> None:
    server = RpcServer()
    server.register("m")
    pending: dict[str, str] = {}
    for kind, arg in steps:
        if kind == "request":
            assert isinstance(arg, tuple)
            rid, method, version, caller = arg
            packet = pb.DataPacket(
                participant_identity=caller,
                rpc_request=pb.RpcRequest(id=rid, method=method, version=version),
            )
            out = server.receive(packet, 0.0)
            if not caller or not rid or rid in pending:
                assert out == []
                continue
            assert out[0].rpc_ack.request_id == rid
            if version == 1 and method == "m":
                assert len(out) == 1
                event = server.next_event()
                assert isinstance(event, RpcInvocationRequested)
                assert (event.request_id, event.caller_identity) == (rid, caller)
                pending[rid] = caller
            else:
                assert len(out) == 2
                code = 1404 if version != 1 else 1400
                assert out[1].rpc_response.error.code == code
        else:
            assert isinstance(arg, str)
            if arg in pending:
                reply = server.respond(arg, "done")
                assert list(reply.destination_identities) == [pending.pop(arg)]
            else:
                try:
                    server.respond(arg, "done")
                except LocalProtocolError:
                    pass
                else:
                    raise AssertionError("answered an invocation twice or never requested")
        assert server.pending_request_ids == set(pending)
        assert server.next_event() is None
