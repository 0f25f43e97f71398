"""RPC interceptors, shaped like the official ``livekit.rtc`` ``RpcInterceptor``.

An interceptor wraps every RPC a :class:`~lkproto.rtc.LocalParticipant` performs
(:meth:`RpcInterceptor.intercept_outgoing`, given an :class:`RpcCallInfo`) or handles
(:meth:`RpcInterceptor.intercept_incoming`, given the
:class:`~lkproto.asyncio.rpc.RpcInvocationData` its handler gets). Each receives a ``next``
continuation; the first interceptor added is the outermost. What the official SDK documents
holds here too (livekit.rtc ``rpc.py`` / ``participant.py``):

- errors pass through the chain unchanged: the callee's :class:`~lkproto.core.rpc.RpcError`
  (outgoing) or whatever the handler raised (incoming) reaches every interceptor before the
  caller; a non-``RpcError`` becomes ``APPLICATION_ERROR`` only after the chain;
- the caller's response timeout covers the whole incoming chain: when it passes the chain is
  cancelled (interceptors see ``CancelledError``, and ``invocation.cancel_reason`` is
  ``RESPONSE_TIMEOUT``) and the caller gets ``RESPONSE_TIMEOUT``; a room that disconnects
  cancels it with ``RECIPIENT_DISCONNECTED``;
- the chain is snapshotted when a call starts, so adding or removing an interceptor during a
  call does not change that call.

One difference: a call for a method nobody registered is answered ``UNSUPPORTED_METHOD`` by
lkproto's RPC machine before any interceptor runs (the official SDK runs the chain and its
innermost ``next`` raises it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from lkproto.asyncio.rpc import IncomingRpcNext, RpcInvocationData

__all__ = ["IncomingRpcNext", "OutgoingRpcNext", "RpcCallInfo", "RpcInterceptor", "chain_outgoing"]


@dataclass
class RpcCallInfo:
    """An outgoing call, as :meth:`RpcInterceptor.intercept_outgoing` sees it.

    The arguments of :meth:`~lkproto.rtc.LocalParticipant.perform_rpc`; an interceptor may pass
    a changed copy (``dataclasses.replace``) to ``next``.

    Attributes:
        destination_identity: the callee.
        method: the method name.
        payload: the request payload.
        response_timeout: seconds to wait for the response, None for the default (15 s).
        max_round_trip_latency: seconds to wait for the callee's ack, None for the default.
    """

    destination_identity: str
    method: str
    payload: str
    response_timeout: float | None = None
    max_round_trip_latency: float | None = None


OutgoingRpcNext: TypeAlias = Callable[[RpcCallInfo], Awaitable[str]]
"""What an outgoing interceptor calls to go on: the next interceptor, and last the call."""


class RpcInterceptor:
    """Observe or wrap the RPCs a local participant performs and handles.

    Register with :meth:`~lkproto.rtc.LocalParticipant.add_rpc_interceptor`. Both methods pass
    the call through by default; override the direction you need, and return (or raise) what
    ``next`` returns (or raises) unless you mean to answer the call yourself.

    Example:
        Stamp every outgoing payload and log every handled call::

            class Audit(rtc.RpcInterceptor):
                async def intercept_outgoing(self, call, next):
                    return await next(dataclasses.replace(call, payload="v1:" + call.payload))

                async def intercept_incoming(self, invocation, next):
                    log.info("rpc %s from %s", invocation.method, invocation.caller_identity)
                    return await next(invocation)
    """

    async def intercept_outgoing(self, call: RpcCallInfo, next: OutgoingRpcNext) -> str:
        """Wrap one :meth:`~lkproto.rtc.LocalParticipant.perform_rpc`; return its response."""
        return await next(call)

    async def intercept_incoming(
        self, invocation: RpcInvocationData, next: IncomingRpcNext
    ) -> str | None:
        """Wrap the handling of one incoming call; return the response payload."""
        return await next(invocation)


def chain_outgoing(
    interceptors: Sequence[RpcInterceptor], terminal: OutgoingRpcNext
) -> OutgoingRpcNext:
    """``terminal`` wrapped by ``interceptors``, the first one outermost."""
    call_next = terminal
    for interceptor in reversed(interceptors):
        call_next = _bind(interceptor, call_next)
    return call_next


def _bind(interceptor: RpcInterceptor, call_next: OutgoingRpcNext) -> OutgoingRpcNext:
    async def bound(call: RpcCallInfo) -> str:
        return await interceptor.intercept_outgoing(call, call_next)

    return bound
