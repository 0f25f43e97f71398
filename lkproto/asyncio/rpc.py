"""Drives :mod:`lkproto.core.rpc`: sends its packets, arms its timer, runs method handlers.

The machines decide everything (limits, timeouts, error codes); this module only awaits: the
caller's future, the handler coroutine, the engine's ``send_data``, and (RPC v2, PROTOCOL-MAP §6)
the ``lk.rpc_request`` / ``lk.rpc_response`` text streams, read from the room's
:class:`~lkproto.asyncio.streams.StreamDriver` (:meth:`RpcDriver.on_stream`) and sent with a
:class:`~lkproto.asyncio.streams.StreamSender`. v2 is used towards a remote participant whose
``client_protocol`` is at least :data:`~lkproto.core.rpc.CLIENT_PROTOCOL_DATA_STREAM_RPC`.

Across a full reconnect (issue 15) the machines decide which calls fail with
RECIPIENT_DISCONNECTED and which invocations are abandoned (:mod:`lkproto.core.rpc`); the room
reports departures and its own recoveries (:meth:`RpcDriver.participant_disconnected`,
:meth:`RpcDriver.reconnecting`, :meth:`RpcDriver.reconnected`), and this driver cancels the
handler chains of abandoned invocations with ``cancel_reason`` RECIPIENT_DISCONNECTED and sends
nothing for them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias, assert_never

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.asyncio.streams import IncomingStream, StreamSender, recipients_form
from lkproto.core import rpc as core
from lkproto.core import streams as cs
from lkproto.errors import LkError
from lkproto.wire import pb
from lkproto.wire.streams import STREAM_CHUNK_SIZE_BYTES

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

__all__ = [
    "IncomingInterceptor",
    "IncomingRpcNext",
    "RpcDriver",
    "RpcHandler",
    "RpcInvocationData",
]

_log = logging.getLogger("lkproto.rpc")


@dataclass
class RpcInvocationData:
    """What a method handler receives (the official SDK's shape).

    Attributes:
        request_id: the caller's request id.
        caller_identity: who called (for a server-initiated call, the request UUID).
        payload: the request payload.
        response_timeout: seconds the caller waits for the response.
        method: the invoked method's name (official field, so one handler can serve several).
        cancel_reason: why lkproto cancelled the handler chain, set just before it does:
            ``RESPONSE_TIMEOUT`` when the caller's deadline passed, ``RECIPIENT_DISCONNECTED``
            when the room closed, the caller's session ended or a full reconnect of ours
            made the answer undeliverable; None while the chain runs (official field, so an
            interceptor unwinding from the cancellation knows what the caller is told).
    """

    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float
    method: str = ""
    cancel_reason: core.RpcErrorCode | None = None


RpcHandler: TypeAlias = Callable[[RpcInvocationData], Awaitable[str] | str]

IncomingRpcNext: TypeAlias = Callable[[RpcInvocationData], Awaitable[str | None]]
"""What an incoming interceptor calls to go on: the next interceptor, and last the handler."""


class IncomingInterceptor(Protocol):
    """The incoming half of :class:`lkproto.rtc.RpcInterceptor`, all this driver needs."""

    async def intercept_incoming(
        self, invocation: RpcInvocationData, next: IncomingRpcNext
    ) -> str | None:
        """Wrap the handling of ``invocation``; return (or raise) what ``next`` does."""
        ...


class RpcDriver:
    """RPC for one room: outgoing calls and registered methods."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._client = core.RpcClient()
        self._server = core.RpcServer()
        self._handlers: dict[str, RpcHandler] = {}
        self._calls: dict[str, asyncio.Future[str]] = {}
        self._timer = DeadlineTimer(self._loop, self._timer_deadline, self._on_timer)
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        # Invocations whose handler chain runs now, so close() can tell them why it cancels.
        self._running: dict[int, RpcInvocationData] = {}
        # The same chains by request id, with their task, to stop abandoned ones (core.rpc).
        self._chains: dict[str, tuple[asyncio.Task[None], RpcInvocationData]] = {}
        self.incoming_interceptors: Sequence[IncomingInterceptor] = ()
        """Interceptors around every handler, the first outermost (set by LocalParticipant)."""

    # -- caller --------------------------------------------------------------------------------

    async def perform(
        self,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout_s: float,
        max_round_trip_latency_s: float | None = None,
    ) -> str:
        """Call ``method`` on ``destination_identity`` and return its response payload.

        Raises:
            RpcError: every failure, with the built-in codes of PROTOCOL-MAP §6.
        """
        request_id = str(uuid.uuid4())
        join = self._engine.join_response
        version = join.server_info.version if join is not None else None
        request: pb.DataPacket | core.RpcStreamMessage
        if self._speaks_v2(destination_identity):
            request = self._client.perform_stream(
                destination_identity,
                method,
                payload,
                self._loop.time(),
                request_id=request_id,
                response_timeout_s=response_timeout_s,
                server_version=version,
                max_round_trip_latency_s=max_round_trip_latency_s,
            )
        else:
            request = self._client.perform(
                destination_identity,
                method,
                payload,
                self._loop.time(),
                request_id=request_id,
                response_timeout_s=response_timeout_s,
                server_version=version,
                max_round_trip_latency_s=max_round_trip_latency_s,
            )
        future: asyncio.Future[str] = self._loop.create_future()
        self._calls[request_id] = future
        self._pump()
        try:
            try:
                if isinstance(request, core.RpcStreamMessage):
                    await self._send_stream(request)
                else:
                    await self._send(request)
            except LkError as exc:
                self._client.fail(
                    request_id, core.RpcError.built_in(core.RpcErrorCode.SEND_FAILED, str(exc))
                )
                self._pump()
            return await future
        finally:
            self._calls.pop(request_id, None)
            if request_id in self._client.pending_request_ids:
                # Cancelled by the caller: forget the call so a late answer is ignored.
                self._client.fail(request_id, core.RpcError.built_in(core.RpcErrorCode.SEND_FAILED))
                self._pump()

    # -- callee --------------------------------------------------------------------------------

    def register(self, method: str, handler: RpcHandler) -> None:
        """Register a handler (sync or async). Raises ValueError if the method exists."""
        if method in self._handlers:
            raise ValueError(f"RPC method {method!r} is already registered")
        self._server.register(method)
        self._handlers[method] = handler

    def unregister(self, method: str) -> None:
        """Remove a handler (no error if absent)."""
        if self._handlers.pop(method, None) is not None:
            self._server.unregister(method)

    # -- inputs from the room ----------------------------------------------------------------

    def on_packet(self, packet: pb.DataPacket) -> bool:
        """Feed a received packet; True when it was an RPC packet."""
        kind = packet.WhichOneof("value")
        now = self._loop.time()
        if kind == "rpc_request":
            replies = self._server.receive(packet, now)
            invocations: list[core.RpcInvocationRequested] = []
            while (event := self._server.next_event()) is not None:
                if isinstance(event, core.RpcInvocationRequested):
                    invocations.append(event)
                else:
                    assert_never(event)
            self._spawn(self._answer(replies, invocations))
            return True
        if kind in ("rpc_ack", "rpc_response"):
            self._client.receive(packet, now)
            self._pump()
            return True
        return False

    def on_stream(self, stream: IncomingStream) -> None:
        """A new text stream on ``lk.rpc_request`` / ``lk.rpc_response`` (StreamDriver hook)."""
        info = stream.info
        if info.topic == core.RPC_REQUEST_TOPIC:
            replies, read = self._server.receive_stream(
                info.sender_identity, info.attributes, self._loop.time()
            )
            if not read:
                stream.cancel()
            self._spawn(self._answer_stream(stream, replies, read))
        elif info.topic == core.RPC_RESPONSE_TOPIC:
            request_id = info.attributes.get(core.RPC_ATTR_REQUEST_ID, "")
            if not self._client.expects_response_stream(info.sender_identity, request_id):
                _log.debug("ignoring RPC response stream %r", info.stream_id)
                stream.cancel()
                return
            self._spawn(self._read_response(stream, info.sender_identity, request_id))
        else:
            stream.cancel()

    def participant_disconnected(self, identity: str) -> None:
        """A session of ``identity`` ended (it left, or a full reconnect replaced it): fail
        pending calls to it with RECIPIENT_DISCONNECTED and stop the handlers of its calls."""
        self._client.participant_disconnected(identity, self._loop.time())
        self._pump()
        self._abandon(self._server.participant_disconnected(identity))

    def reconnecting(self) -> None:
        """The room began recovering (resume or full reconnect, not known yet)."""
        self._client.reconnecting(self._loop.time())
        self._server.reconnecting()
        self._pump()

    def reconnected(self, *, full: bool) -> None:
        """The room recovered; after a ``full`` reconnect, calls and invocations of the old
        session end (RECIPIENT_DISCONNECTED, :mod:`lkproto.core.rpc`)."""
        self._client.reconnected(self._loop.time(), full=full)
        self._pump()
        self._abandon(self._server.reconnected(full=full))

    def close(self) -> None:
        """Fail every pending call and stop running handlers (room disconnected)."""
        self._client.fail_all(core.RpcError.built_in(core.RpcErrorCode.RECIPIENT_DISCONNECTED))
        self._pump()
        self._timer.close()
        for data in self._running.values():
            if data.cancel_reason is None:
                data.cancel_reason = core.RpcErrorCode.RECIPIENT_DISCONNECTED
        for task in list(self._tasks):
            task.cancel()

    # -- internals ---------------------------------------------------------------------------

    def _abandon(self, request_ids: list[str]) -> None:
        """Stop the handler chains of invocations the callee machine dropped; an invocation
        whose chain has not started yet sees that in :meth:`_invoke` and never starts it."""
        for request_id in request_ids:
            running = self._chains.get(request_id)
            if running is None:
                continue
            task, data = running
            if data.cancel_reason is None:
                data.cancel_reason = core.RpcErrorCode.RECIPIENT_DISCONNECTED
            task.cancel()

    def _abandoned(self, request_id: str) -> bool:
        return request_id not in self._server.pending_request_ids

    async def _answer(
        self, replies: list[pb.DataPacket], invocations: list[core.RpcInvocationRequested]
    ) -> None:
        # The ack (and any error reply) goes out before the handler runs (PROTOCOL-MAP §6 step 2).
        for packet in replies:
            await self._send_quietly(packet)
        for invocation in invocations:
            await self._invoke(invocation)

    async def _answer_stream(
        self, stream: IncomingStream, replies: list[pb.DataPacket], read: bool
    ) -> None:
        request_id = stream.info.attributes.get(core.RPC_ATTR_REQUEST_ID, "")
        # The ack (or the error) goes out before the payload is read.
        for packet in replies:
            await self._send_quietly(packet)
        if not read:
            return
        try:
            payload = await _read_text(stream)
        except cs.StreamError as exc:
            _log.warning("could not read RPC request stream %r: %s", request_id, exc)
            await self._send_quietly(self._server.stream_failed(request_id))
            return
        except asyncio.CancelledError:
            self._server.stream_failed(request_id)
            raise
        for packet in self._server.stream_received(request_id, payload):
            await self._send_quietly(packet)
        while (event := self._server.next_event()) is not None:
            if isinstance(event, core.RpcInvocationRequested):
                await self._invoke(event)
            else:
                assert_never(event)

    async def _read_response(self, stream: IncomingStream, sender: str, request_id: str) -> None:
        try:
            payload = await _read_text(stream)
        except cs.StreamError as exc:
            _log.warning("could not read RPC response stream %r: %s", request_id, exc)
            error = core.RpcError.built_in(
                core.RpcErrorCode.APPLICATION_ERROR, "Error reading RPC response payload"
            )
            self._client.fail(request_id, error)
        else:
            self._client.receive_response_stream(sender, request_id, payload)
        self._pump()

    async def _invoke(self, invocation: core.RpcInvocationRequested) -> None:
        if self._abandoned(invocation.request_id):
            return  # its caller's session ended while the ack was being sent
        data = RpcInvocationData(
            request_id=invocation.request_id,
            caller_identity=invocation.caller_identity,
            payload=invocation.payload,
            response_timeout=invocation.response_timeout_s,
            method=invocation.method,
        )
        reply: pb.DataPacket | core.RpcStreamMessage
        try:
            result = await self._run_chain(data, invocation.deadline)
            if result is None:
                # The official SDK's handlers may return None: an empty response.
                result = ""
            if not isinstance(result, str):
                raise TypeError(f"RPC handler returned {type(result).__name__}, expected str")
            if self._speaks_v2(invocation.caller_identity):
                reply = self._server.respond_stream(invocation.request_id, result)
            else:
                reply = self._server.respond(invocation.request_id, result)
        except core.RpcError as error:
            if self._abandoned(invocation.request_id):
                return
            reply = self._server.respond_error(invocation.request_id, error)
        except Exception:
            if self._abandoned(invocation.request_id):
                return  # a chain that swallowed our cancel: nobody to answer
            # A failing handler is an APPLICATION_ERROR for the caller, never a dead room.
            _log.exception("RPC handler for %r raised", invocation.method)
            failed = core.RpcError.built_in(core.RpcErrorCode.APPLICATION_ERROR)
            reply = self._server.respond_error(invocation.request_id, failed)
        if isinstance(reply, core.RpcStreamMessage):
            try:
                await self._send_stream(reply)
            except LkError as exc:
                _log.warning("could not send an RPC response stream: %s", exc)
        else:
            await self._send_quietly(reply)

    async def _run_chain(self, data: RpcInvocationData, deadline: float) -> str | None:
        """The interceptors and the handler, cancelled when the caller's deadline passes.

        The deadline covers the whole chain, as in the official SDK (livekit.rtc participant.py
        ``_run_incoming_chain``): past it the chain is cancelled with ``data.cancel_reason`` set
        first, and the caller is told RESPONSE_TIMEOUT whatever the chain does while unwinding.
        A ``CancelledError`` the chain raises by itself is a failing handler (APPLICATION_ERROR);
        a ``TimeoutError`` of its own (an HTTP client's, say) is not the deadline either.

        Raises:
            RpcError: RESPONSE_TIMEOUT, or what the chain raised.
            asyncio.CancelledError: this task was cancelled from outside (the room closed).
        """
        call_next: IncomingRpcNext = self._call_handler
        for interceptor in reversed(self.incoming_interceptors):
            call_next = _bind_incoming(interceptor, call_next)
        task = asyncio.current_task()
        assert task is not None
        timed_out = False

        def on_deadline() -> None:
            nonlocal timed_out
            timed_out = True
            data.cancel_reason = core.RpcErrorCode.RESPONSE_TIMEOUT
            task.cancel()

        timer = self._loop.call_at(deadline, on_deadline)
        key = id(data)
        self._running[key] = data
        self._chains[data.request_id] = (task, data)
        try:
            result = await call_next(data)
        except asyncio.CancelledError:
            if timed_out:
                pass
            elif task.cancelling() == 0:
                _log.warning("RPC handler for %r raised CancelledError", data.method)
                raise core.RpcError.built_in(core.RpcErrorCode.APPLICATION_ERROR) from None
            else:
                raise
        except Exception:
            if not timed_out:
                raise
        finally:
            timer.cancel()
            del self._running[key]
            self._chains.pop(data.request_id, None)
        if timed_out:
            # Our own cancel, whether the chain let it through or swallowed it.
            task.uncancel()
            _log.warning("RPC handler for %r overran its deadline", data.method)
            raise core.RpcError.built_in(core.RpcErrorCode.RESPONSE_TIMEOUT)
        return result

    async def _call_handler(self, data: RpcInvocationData) -> str | None:
        """The innermost step of the chain: the registered handler (sync or async)."""
        handler = self._handlers.get(data.method)
        if handler is None:
            # Unregistered between dispatch and now (the core machine answers unknown methods
            # before the chain runs).
            raise core.RpcError.built_in(core.RpcErrorCode.UNSUPPORTED_METHOD)
        result = handler(data)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _speaks_v2(self, identity: str) -> bool:
        # v2 only when both sides advertise it: with client_protocol 0 we promised v1 only.
        if self._engine.client_protocol < core.CLIENT_PROTOCOL_DATA_STREAM_RPC:
            return False
        info = self._engine.roster.remotes.get(identity)
        return info is not None and info.client_protocol >= core.CLIENT_PROTOCOL_DATA_STREAM_RPC

    async def _send_stream(self, message: core.RpcStreamMessage) -> None:
        """Send a v2 request or response as one text stream (as JS ``sendText``).

        The one inline-or-chunked rule (:meth:`StreamSender.send_whole`, PROTOCOL-MAP §5): a
        single packet with the payload inline when the destination advertises data streams v2
        (``client_protocol >= 2``) and it fits, as the official SDK answers an lkproto caller
        (one ``inline_content`` header per response); otherwise the classic header, chunks and
        trailer. One packet instead of three is a third of the encoding, sequencing and SCTP
        work on both sides of every call. Never compressed: an RPC payload is usually small,
        and deflating it on every call would cost more than it saves.
        """
        destination = message.destination_identity
        data = message.payload.encode("utf-8")
        form = recipients_form(self._engine.roster.remotes.values(), (destination,))
        # Past one chunk's size it cannot be inline: skip building the packet that won't fit.
        inline = form.inline_allowed and len(data) <= STREAM_CHUNK_SIZE_BYTES
        stream = cs.OutgoingTextStream(
            stream_id=str(uuid.uuid4()),
            timestamp_ms=int(time.time() * 1000),
            topic=message.topic,
            total_length=len(data),
            attributes=message.attributes,
            destination_identities=[destination],
        )
        sender = StreamSender(self._engine, stream)
        async with self._send_lock:
            await sender.send_whole(data, cs.StreamForm(inline, compression_allowed=False))

    async def _send(self, packet: pb.DataPacket) -> None:
        async with self._send_lock:
            await self._engine.send_data(packet, reliable=True)

    async def _send_quietly(self, packet: pb.DataPacket) -> None:
        try:
            await self._send(packet)
        except LkError as exc:
            _log.warning("could not send an RPC reply: %s", exc)

    def _pump(self) -> None:
        while (event := self._client.next_event()) is not None:
            future = self._calls.get(event.request_id)
            if future is None or future.done():
                continue
            if isinstance(event, core.RpcCallSucceeded):
                future.set_result(event.payload)
            elif isinstance(event, core.RpcCallFailed):
                future.set_exception(event.error)
            else:
                assert_never(event)
        self._timer.rearm()

    def _timer_deadline(self) -> float | None:
        """The caller machine's deadline, or the one already armed when that is earlier.

        Every call moves the machine's deadline later (its ack deadline 7 s after the send, then
        its response deadline), so following it exactly would cancel and re-arm a loop timer
        two or three times per call. An armed deadline that is earlier only wakes the driver
        early: ``handle_timer`` then fails nothing that is not due, and the timer moves on to
        the machine's real deadline. Every call still fails at its own deadline.
        """
        deadline = self._client.get_timer()
        armed = self._timer.when
        if armed is not None and (deadline is None or armed <= deadline):
            return armed
        return deadline

    def _on_timer(self, now: float) -> None:
        self._client.handle_timer(now)
        self._pump()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _bind_incoming(interceptor: IncomingInterceptor, call_next: IncomingRpcNext) -> IncomingRpcNext:
    async def bound(invocation: RpcInvocationData) -> str | None:
        return await interceptor.intercept_incoming(invocation, call_next)

    return bound


async def _read_text(stream: IncomingStream) -> str:
    """The whole text of an incoming stream (its chunks are whole UTF-8 characters)."""
    parts: list[bytes] = []
    while (data := await stream.read()) is not None:
        parts.append(data)
    return b"".join(parts).decode("utf-8", "replace")
