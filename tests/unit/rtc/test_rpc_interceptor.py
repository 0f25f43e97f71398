"""RPC interceptors (lkproto.rtc.rpc_interceptor) across two RPC drivers wired in memory."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import pytest

from lkproto.asyncio.rpc import IncomingRpcNext, RpcDriver, RpcInvocationData
from lkproto.core.rpc import RpcError, RpcErrorCode
from lkproto.rtc import LocalParticipant, RpcCallInfo, RpcInterceptor
from lkproto.rtc.rpc_interceptor import OutgoingRpcNext
from lkproto.wire import pb
from tests._support.rpc_wire import wired_drivers

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

_BOUND_S = 5.0


@dataclasses.dataclass
class _Pair:
    alice: LocalParticipant
    bob: LocalParticipant
    bob_driver: RpcDriver


@pytest.fixture
async def pair() -> AsyncIterator[_Pair]:
    wire_a, rpc_a, wire_b, rpc_b = wired_drivers()
    alice = LocalParticipant(pb.ParticipantInfo(identity="alice"), cast("Engine", wire_a), rpc_a)
    bob = LocalParticipant(pb.ParticipantInfo(identity="bob"), cast("Engine", wire_b), rpc_b)
    yield _Pair(alice, bob, rpc_b)
    rpc_a.close()
    rpc_b.close()


async def _call(pair: _Pair, payload: str = "hi", response_timeout: float | None = None) -> str:
    async with asyncio.timeout(_BOUND_S):
        return await pair.alice.perform_rpc(
            destination_identity="bob",
            method="echo",
            payload=payload,
            response_timeout=response_timeout,
            # Short, so the callee's deadline, max(response_timeout, this + 1 s), is too.
            max_round_trip_latency=0.1,
        )


class _Tag(RpcInterceptor):
    def __init__(self, tag: str, seen: list[str]) -> None:
        self.tag = tag
        self.seen = seen

    async def intercept_outgoing(self, call: RpcCallInfo, next: OutgoingRpcNext) -> str:
        self.seen.append(f"out {self.tag} {call.payload}")
        response = await next(dataclasses.replace(call, payload=call.payload + self.tag))
        return response + self.tag

    async def intercept_incoming(
        self, invocation: RpcInvocationData, next: IncomingRpcNext
    ) -> str | None:
        self.seen.append(f"in {self.tag} {invocation.payload}")
        return await next(invocation)


async def test_outgoing_interceptors_wrap_the_call_first_added_outermost(pair: _Pair) -> None:
    seen: list[str] = []
    pair.bob.register_rpc_method("echo", lambda data: data.payload)
    pair.alice.add_rpc_interceptor(_Tag("1", seen))
    pair.alice.add_rpc_interceptor(_Tag("2", seen))
    assert await _call(pair) == "hi1221"
    assert seen == ["out 1 hi", "out 2 hi1"]


async def test_incoming_interceptors_see_the_invocation_and_can_answer(pair: _Pair) -> None:
    seen: list[str] = []

    class Answer(RpcInterceptor):
        async def intercept_incoming(
            self, invocation: RpcInvocationData, next: IncomingRpcNext
        ) -> str | None:
            if invocation.payload == "short":
                return "from the interceptor"
            return await next(invocation)

    pair.bob.register_rpc_method("echo", lambda data: f"{data.method}:{data.caller_identity}")
    pair.bob.add_rpc_interceptor(_Tag("x", seen))
    pair.bob.add_rpc_interceptor(Answer())
    assert await _call(pair) == "echo:alice"
    assert await _call(pair, "short") == "from the interceptor"
    assert seen == ["in x hi", "in x short"]


async def test_adding_twice_is_a_no_op_and_remove_stops_it(pair: _Pair) -> None:
    seen: list[str] = []
    tag = _Tag("t", seen)
    pair.bob.register_rpc_method("echo", lambda data: data.payload)
    pair.alice.add_rpc_interceptor(tag)
    pair.alice.add_rpc_interceptor(tag)
    assert await _call(pair) == "hitt"  # wrapped once: "hi" + "t" echoed, then + "t"
    pair.alice.remove_rpc_interceptor(tag)
    pair.alice.remove_rpc_interceptor(tag)
    assert await _call(pair) == "hi"
    assert seen == ["out t hi"]


async def test_errors_pass_through_every_interceptor(pair: _Pair) -> None:
    outgoing: list[BaseException] = []
    incoming: list[BaseException] = []

    class Watch(RpcInterceptor):
        async def intercept_outgoing(self, call: RpcCallInfo, next: OutgoingRpcNext) -> str:
            try:
                return await next(call)
            except RpcError as exc:
                outgoing.append(exc)
                raise

        async def intercept_incoming(
            self, invocation: RpcInvocationData, next: IncomingRpcNext
        ) -> str | None:
            try:
                return await next(invocation)
            except Exception as exc:
                incoming.append(exc)
                raise

    def fail(data: RpcInvocationData) -> str:
        raise ValueError("boom")

    pair.bob.register_rpc_method("echo", fail)
    pair.alice.add_rpc_interceptor(Watch())
    pair.bob.add_rpc_interceptor(Watch())
    with pytest.raises(RpcError) as info:
        await _call(pair)
    assert info.value.code == RpcErrorCode.APPLICATION_ERROR
    assert outgoing == [info.value]
    assert len(incoming) == 1
    assert isinstance(incoming[0], ValueError)


async def test_the_deadline_cancels_the_chain_with_a_reason(pair: _Pair) -> None:
    reasons: list[RpcErrorCode | None] = []
    started = asyncio.Event()
    unwound = asyncio.Event()

    class Record(RpcInterceptor):
        async def intercept_incoming(
            self, invocation: RpcInvocationData, next: IncomingRpcNext
        ) -> str | None:
            try:
                return await next(invocation)
            finally:
                reasons.append(invocation.cancel_reason)
                unwound.set()

    async def hang(data: RpcInvocationData) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    pair.bob.register_rpc_method("echo", hang)
    pair.bob.add_rpc_interceptor(Record())
    with pytest.raises(RpcError) as info:
        await _call(pair, response_timeout=0.3)
    assert info.value.code == RpcErrorCode.RESPONSE_TIMEOUT
    async with asyncio.timeout(_BOUND_S):
        await unwound.wait()
    assert started.is_set()
    assert reasons == [RpcErrorCode.RESPONSE_TIMEOUT]


async def test_a_swallowed_deadline_still_answers_response_timeout(pair: _Pair) -> None:
    async def stubborn(data: RpcInvocationData) -> str:
        with_cancel = False
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            with_cancel = True
        return f"late {with_cancel}"

    pair.bob.register_rpc_method("echo", stubborn)
    with pytest.raises(RpcError) as info:
        await _call(pair, response_timeout=0.3)
    assert info.value.code == RpcErrorCode.RESPONSE_TIMEOUT


async def test_closing_the_room_cancels_the_chain_as_recipient_disconnected(pair: _Pair) -> None:
    reasons: list[RpcErrorCode | None] = []
    started = asyncio.Event()
    unwound = asyncio.Event()

    async def hang(data: RpcInvocationData) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            reasons.append(data.cancel_reason)
            unwound.set()
        return "never"

    pair.bob.register_rpc_method("echo", hang)
    call = asyncio.ensure_future(_call(pair, response_timeout=30))
    async with asyncio.timeout(_BOUND_S):
        await started.wait()
    pair.bob_driver.close()
    async with asyncio.timeout(_BOUND_S):
        await unwound.wait()
    assert reasons == [RpcErrorCode.RECIPIENT_DISCONNECTED]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_handler_raising_cancelled_error_is_an_application_error(pair: _Pair) -> None:
    async def cancels(data: RpcInvocationData) -> str:
        raise asyncio.CancelledError

    pair.bob.register_rpc_method("echo", cancels)
    with pytest.raises(RpcError) as info:
        await _call(pair)
    assert info.value.code == RpcErrorCode.APPLICATION_ERROR


async def test_a_handler_returning_none_answers_an_empty_payload(pair: _Pair) -> None:
    pair.bob.register_rpc_method("echo", lambda data: None)  # type: ignore[arg-type,return-value]
    assert await _call(pair) == ""
