"""lkproto.asyncio.rpc across full reconnects (issue 15): two drivers wired in memory.

What the core machines decide (lkproto.core.rpc) reaches the application: the caller's call
raises RECIPIENT_DISCONNECTED, the callee's handler chain is cancelled with that reason and
nothing is sent back. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from lkproto.asyncio.rpc import RpcInvocationData
from lkproto.core.rpc import RpcError, RpcErrorCode
from tests._support.rpc_wire import wired_drivers

if TYPE_CHECKING:
    pass

_BOUND_S = 5.0


class _Pair:
    def __init__(self) -> None:
        self.wire_a, self.alice, self.wire_b, self.bob = wired_drivers()
        self.started = asyncio.Event()
        self.unwound = asyncio.Event()
        self.release = asyncio.Event()
        self.reasons: list[RpcErrorCode | None] = []

    async def handler(self, data: RpcInvocationData) -> str:
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.reasons.append(data.cancel_reason)
            self.unwound.set()
        return "answer"

    def call(self, timeout_s: float = 30.0) -> asyncio.Future[str]:
        return asyncio.ensure_future(
            self.alice.perform("bob", "echo", "hi", response_timeout_s=timeout_s)
        )


@pytest.fixture
async def pair() -> AsyncIterator[_Pair]:
    p = _Pair()
    p.bob.register("echo", p.handler)
    yield p
    p.alice.close()
    p.bob.close()


async def test_caller_full_reconnect_fails_the_acked_call_at_once(pair: _Pair) -> None:
    call = pair.call(timeout_s=30.0)
    async with asyncio.timeout(_BOUND_S):
        await pair.started.wait()
    pair.alice.reconnecting()
    pair.alice.reconnected(full=True)
    async with asyncio.timeout(_BOUND_S):
        with pytest.raises(RpcError) as info:
            await call
    assert info.value.code == RpcErrorCode.RECIPIENT_DISCONNECTED


async def test_caller_resume_keeps_the_call(pair: _Pair) -> None:
    call = pair.call()
    async with asyncio.timeout(_BOUND_S):
        await pair.started.wait()
    pair.alice.reconnecting()
    pair.alice.reconnected(full=False)
    pair.release.set()
    async with asyncio.timeout(_BOUND_S):
        assert await call == "answer"
    assert pair.reasons == [None]


async def test_callee_stops_the_handler_of_a_caller_whose_session_ended(pair: _Pair) -> None:
    call = pair.call()
    async with asyncio.timeout(_BOUND_S):
        await pair.started.wait()
    sent_before = list(pair.wire_b.sent)
    pair.bob.participant_disconnected("alice")
    async with asyncio.timeout(_BOUND_S):
        await pair.unwound.wait()
    assert pair.reasons == [RpcErrorCode.RECIPIENT_DISCONNECTED]
    await asyncio.sleep(0)
    assert pair.wire_b.sent == sent_before == ["rpc_ack"]  # no answer for nobody
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_callee_full_reconnect_stops_handlers_of_the_old_session(pair: _Pair) -> None:
    call = pair.call()
    async with asyncio.timeout(_BOUND_S):
        await pair.started.wait()
    pair.bob.reconnecting()
    pair.bob.reconnected(full=True)
    async with asyncio.timeout(_BOUND_S):
        await pair.unwound.wait()
    assert pair.reasons == [RpcErrorCode.RECIPIENT_DISCONNECTED]
    assert pair.wire_b.sent == ["rpc_ack"]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_chain_that_swallows_the_cancel_sends_nothing(pair: _Pair) -> None:
    swallowed = asyncio.Event()

    async def stubborn(data: RpcInvocationData) -> str:
        pair.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()
        return "ignored"

    pair.bob.unregister("echo")
    pair.bob.register("echo", stubborn)
    call = pair.call()
    async with asyncio.timeout(_BOUND_S):
        await pair.started.wait()
    pair.bob.participant_disconnected("alice")
    async with asyncio.timeout(_BOUND_S):
        await swallowed.wait()
    for _ in range(3):
        await asyncio.sleep(0)
    assert pair.wire_b.sent == ["rpc_ack"]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
