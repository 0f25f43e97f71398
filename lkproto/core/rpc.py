"""RPC over data packets (v1): the caller's pending calls and the callee's invocations, sans-I/O.

Theory of operation
-------------------
PROTOCOL-MAP §6 v1 flow. The caller sends ``rpc_request`` to one identity; the callee answers at
once with ``rpc_ack``, runs the handler and replies with ``rpc_response`` (a payload or an
:class:`RpcError`). Two machines, one per side; neither reads a clock nor draws random numbers
(``now`` and request ids are passed in).

Output style, the same for both: **packets are return values, events are pulled.** Every method
that has something to send returns the ``pb.DataPacket`` (or a list of them) for the driver to
hand to ``_reliable`` (stamped by :class:`~lkproto.core.reliable.ReliableSender` like any other
packet); everything the application must learn about comes from ``next_event()``. Timers follow
aioquic: ``get_timer()`` is the next deadline, ``handle_timer(now)`` fires what is due.

:class:`RpcClient` (caller). :meth:`~RpcClient.perform` validates, registers the call and returns
the request packet. The call then ends exactly once, with :class:`RpcCallSucceeded` or
:class:`RpcCallFailed`:

* ``rpc_response`` with a payload or an error (accepted before or after the ack; a later ack is
  ignored);
* no ack within ``max_round_trip_latency_s`` (7 s) of :meth:`~RpcClient.perform`:
  CONNECTION_TIMEOUT, and the call is dropped (a late response is ignored);
* no response within ``response_timeout_s`` of :meth:`~RpcClient.perform`: RESPONSE_TIMEOUT. If
  both deadlines pass unacknowledged, the earlier wins and a tie is a CONNECTION_TIMEOUT (JS arms
  the ack timer first);
* :meth:`~RpcClient.participant_disconnected` for its destination: RECIPIENT_DISCONNECTED;
* :meth:`~RpcClient.fail` / :meth:`~RpcClient.fail_all` by the driver (SEND_FAILED, shutdown).

Failures detected before anything is sent (payload too large, server too old) are *raised* from
:meth:`~RpcClient.perform` as :class:`RpcError`, as JS throws them from ``performRpc``.

Timeouts follow ``JS:src/room/rpc/client/RpcClientManager.ts (performRpc)``: the local response
deadline is the caller's timeout measured from the send, and the request tells the callee
``max(timeout, max_round_trip_latency + 1 s)`` (8 s by default). Rust instead waits for the
response *after* the ack and sends ``max(timeout - 7 s, 1 s)``; we keep one clock per call and the
JS numbers, which every callee accepts.

Acks and responses are matched by request id and must come from the call's destination identity.
A packet with an *empty* ``participant_identity`` is accepted too: the server blanks the identity
of hidden senders (PROTOCOL-MAP §3, inbound step 4), and the random request id is known only to
the destination. Responses whose value is neither ``payload`` nor ``error`` (``compressed_payload``,
unused by JS and Rust, or a newer field) are ignored like JS does, so the call runs into its
timeout.

:class:`RpcServer` (callee). :meth:`~RpcServer.receive` turns an ``rpc_request`` into the ack packet
plus either an error response (UNSUPPORTED_VERSION for ``version != 1``, UNSUPPORTED_METHOD without
a registered method), or an :class:`RpcInvocationRequested` event: the driver runs the handler and
answers with :meth:`~RpcServer.respond` or :meth:`~RpcServer.respond_error`, exactly once per
invocation (map a handler's non-RPC exception to APPLICATION_ERROR). Replies go to the packet's
``participant_identity``, whatever it is: for a server-initiated RPC (RoomService.PerformRpc,
PROTOCOL-MAP §6) it carries the request UUID and the server intercepts the reply.

Room for v2 (RPC over ``lk.rpc_request`` / ``lk.rpc_response`` text streams, PROTOCOL-MAP §6): the
pending-call and invocation bookkeeping does not depend on the transport; a v2 request will come
in through its own method (stream attributes instead of a packet) and register the same records,
acks and errors stay packets, and only the success reply changes transport.
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from lkproto.errors import LkError, LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "RPC_DEFAULT_RESPONSE_TIMEOUT_S",
    "RPC_ERROR_MESSAGES",
    "RPC_MAX_PAYLOAD_BYTES",
    "RPC_MAX_ROUND_TRIP_LATENCY_S",
    "RPC_MIN_SERVER_VERSION",
    "RPC_VERSION_V1",
    "AnyRpcClientEvent",
    "AnyRpcEvent",
    "AnyRpcServerEvent",
    "RpcCallFailed",
    "RpcCallSucceeded",
    "RpcClient",
    "RpcError",
    "RpcErrorCode",
    "RpcEvent",
    "RpcInvocationRequested",
    "RpcServer",
    "truncate_utf8",
]

# PROTOCOL-MAP §6 Error codes / v1 flow step 5: request and response payloads of v1 RPC
# (JS ``MAX_V1_PAYLOAD_BYTES``, Rust ``MAX_V1_PAYLOAD_BYTES``), UTF-8 bytes.
RPC_MAX_PAYLOAD_BYTES: Final = 15_360
# PROTOCOL-MAP §6 v1 flow step 3: the ack must arrive within this (JS ``maxRoundTripLatency``).
RPC_MAX_ROUND_TRIP_LATENCY_S: Final = 7.0
# PROTOCOL-MAP §6 v1 flow step 3: JS ``performRpc`` default ``responseTimeout``.
RPC_DEFAULT_RESPONSE_TIMEOUT_S: Final = 15.0
# PROTOCOL-MAP §6 v1 flow step 4: the request's ``response_timeout_ms`` is at least the round-trip
# allowance plus this (JS ``minEffectiveTimeoutMs = maxRoundTripLatencyMs + 1000``).
_MIN_TIMEOUT_MARGIN_S: Final = 1.0
# PROTOCOL-MAP §6 Error codes (1403): servers before 1.8.0 do not route RPC.
RPC_MIN_SERVER_VERSION: Final = (1, 8, 0)
# ``RpcRequest.version`` of data-packet RPC (JS ``RPC_VERSION_V1``).
RPC_VERSION_V1: Final = 1

_UINT32_MAX: Final = 2**32 - 1
_VERSION_RE: Final = re.compile(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


class RpcErrorCode(enum.IntEnum):
    """Built-in RPC error codes (PROTOCOL-MAP §6; ``JS:src/room/rpc/utils.ts (ErrorCode)``).

    Codes 1001-1999 are reserved for built-ins; applications use others.
    """

    APPLICATION_ERROR = 1500
    """Callee: the handler raised something that is not an :class:`RpcError`."""
    CONNECTION_TIMEOUT = 1501
    """Caller: no ack in time."""
    RESPONSE_TIMEOUT = 1502
    """Caller: no response in time."""
    RECIPIENT_DISCONNECTED = 1503
    """Caller: the callee left."""
    RESPONSE_PAYLOAD_TOO_LARGE = 1504
    """Callee: the v1 response exceeds :data:`RPC_MAX_PAYLOAD_BYTES`."""
    SEND_FAILED = 1505
    """Caller: the request could not be sent."""
    UNSUPPORTED_METHOD = 1400
    """Callee: no handler for the method."""
    RECIPIENT_NOT_FOUND = 1401
    """Reserved."""
    REQUEST_PAYLOAD_TOO_LARGE = 1402
    """Caller: the v1 request exceeds :data:`RPC_MAX_PAYLOAD_BYTES`."""
    UNSUPPORTED_SERVER = 1403
    """Caller: the server is older than 1.8.0."""
    UNSUPPORTED_VERSION = 1404
    """Callee: unexpected ``RpcRequest.version``."""


_C = RpcErrorCode

#: The message of each built-in error, as the official SDKs write it
#: (``JS:src/room/rpc/utils.ts (ErrorMessage)``, Rust ``RpcErrorCode::message``).
RPC_ERROR_MESSAGES: Final[Mapping[RpcErrorCode, str]] = {
    _C.APPLICATION_ERROR: "Application error in method handler",
    _C.CONNECTION_TIMEOUT: "Connection timeout",
    _C.RESPONSE_TIMEOUT: "Response timeout",
    _C.RECIPIENT_DISCONNECTED: "Recipient disconnected",
    _C.RESPONSE_PAYLOAD_TOO_LARGE: "Response payload too large",
    _C.SEND_FAILED: "Failed to send",
    _C.UNSUPPORTED_METHOD: "Method not supported at destination",
    _C.RECIPIENT_NOT_FOUND: "Recipient not found",
    _C.REQUEST_PAYLOAD_TOO_LARGE: "Request payload too large",
    _C.UNSUPPORTED_SERVER: "RPC not supported by server",
    _C.UNSUPPORTED_VERSION: "Unsupported RPC version",
}


def _well_formed(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, as a JS ``TextEncoder`` would."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes`` (whole characters).

    ``JS:src/room/rpc/utils.ts (truncateBytes)``; ``text`` must be encodable (no lone surrogates).
    """
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    # The cut can only split the last character; "ignore" drops its leading bytes.
    return data[:max_bytes].decode("utf-8", "ignore")


def _utf8_len(name: str, text: str) -> int:
    if not isinstance(text, str):
        raise LocalProtocolError(f"{name} must be a str, got {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{name} is not valid Unicode text: {exc}") from exc


class RpcError(LkError):
    """An RPC failure, sent across the wire as ``pb.RpcError`` (PROTOCOL-MAP §6).

    Raise it from a method handler to send it to the caller unchanged; the caller receives an
    equal one. ``message`` is cut to 256 UTF-8 bytes and ``data`` to 15 360, on character
    boundaries, as the official SDKs do; lone surrogates become U+FFFD so that it always encodes.

    Args:
        code: an :class:`RpcErrorCode` or an application code (uint32; avoid 1001-1999).
        message: human-readable text.
        data: optional payload for the caller.

    Attributes:
        code: the code as a plain ``int`` (compare with :class:`RpcErrorCode` members).
        message: the (truncated) message.
        data: the (truncated) data, ``""`` when absent.

    Raises:
        LocalProtocolError: ``code`` is not an int in 0..2**32-1, or ``message``/``data`` is not
            a str.
    """

    MAX_MESSAGE_BYTES: ClassVar[int] = 256
    MAX_DATA_BYTES: ClassVar[int] = RPC_MAX_PAYLOAD_BYTES

    def __init__(self, code: int, message: str, data: str = "") -> None:
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= _UINT32_MAX:
            raise LocalProtocolError(f"RpcError code must be a uint32, got {code!r}")
        if not isinstance(message, str) or not isinstance(data, str):
            raise LocalProtocolError("RpcError message and data must be str")
        self.code = int(code)
        self.message = truncate_utf8(_well_formed(message), self.MAX_MESSAGE_BYTES)
        self.data = truncate_utf8(_well_formed(data), self.MAX_DATA_BYTES)
        # args round-trip through the constructor, so the exception pickles.
        super().__init__(self.code, self.message, self.data)

    @classmethod
    def built_in(cls, code: RpcErrorCode, data: str = "") -> RpcError:
        """A built-in error with its standard message (:data:`RPC_ERROR_MESSAGES`)."""
        return cls(code, RPC_ERROR_MESSAGES[code], data)

    @classmethod
    def from_proto(cls, message: pb.RpcError) -> RpcError:
        """Build from the wire message (truncating over-long fields)."""
        return cls(message.code, message.message, message.data)

    def to_proto(self) -> pb.RpcError:
        """The wire message."""
        return pb.RpcError(code=self.code, message=self.message, data=self.data)

    def __str__(self) -> str:
        return f"RPC error {self.code}: {self.message}"

    def __repr__(self) -> str:
        try:
            code = RpcErrorCode(self.code).name
        except ValueError:
            code = str(self.code)
        return f"RpcError({code}, {self.message!r}, {self.data!r})"


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcEvent:
    """Base class of every event :class:`RpcClient` and :class:`RpcServer` produce."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcCallSucceeded(RpcEvent):
    """A call made with :meth:`RpcClient.perform` got its response payload.

    Attributes:
        request_id: the call's id.
        payload: the response payload.
        message: the RpcResponse.
    """

    request_id: str
    payload: str
    message: pb.RpcResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcCallFailed(RpcEvent):
    """A call made with :meth:`RpcClient.perform` ended with an error.

    Attributes:
        request_id: the call's id.
        error: the callee's error, or a local one (timeouts, disconnect, :meth:`RpcClient.fail`).
        message: the RpcResponse that carried the error, None for local errors.
    """

    request_id: str
    error: RpcError
    message: pb.RpcResponse | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcInvocationRequested(RpcEvent):
    """Run the handler of ``method`` and answer with :meth:`RpcServer.respond` (or ``_error``).

    The ack has already been returned by :meth:`RpcServer.receive`.

    Attributes:
        request_id: pass it back to :meth:`RpcServer.respond`.
        caller_identity: who asked (for a server-initiated RPC, the request UUID).
        method: the registered method name.
        payload: the request payload.
        response_timeout_s: how long the caller says it waits.
        deadline: ``now`` at receipt plus ``response_timeout_s``: after it, the answer is
            useless (still allowed).
        message: the RpcRequest.
    """

    request_id: str
    caller_identity: str
    method: str
    payload: str
    response_timeout_s: float
    deadline: float
    message: pb.RpcRequest


AnyRpcClientEvent: TypeAlias = RpcCallSucceeded | RpcCallFailed
AnyRpcServerEvent: TypeAlias = RpcInvocationRequested
AnyRpcEvent: TypeAlias = RpcCallSucceeded | RpcCallFailed | RpcInvocationRequested


# --------------------------------------------------------------------------------------------
# Caller


def _positive_seconds(name: str, value: float) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise LocalProtocolError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _nonempty(name: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _parse_version(version: str) -> tuple[int, int, int] | None:
    match = _VERSION_RE.match(version)
    if match is None:
        return None
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return (major, minor, patch)


@dataclass(slots=True)
class _Call:
    destination: str
    order: int
    ack_deadline: float | None
    response_deadline: float

    def next_deadline(self) -> tuple[float, RpcErrorCode]:
        ack = self.ack_deadline
        if ack is not None and ack <= self.response_deadline:
            return ack, RpcErrorCode.CONNECTION_TIMEOUT
        return self.response_deadline, RpcErrorCode.RESPONSE_TIMEOUT


class RpcClient:
    """The caller side of v1 RPC: pending calls, their acks, responses and deadlines.

    See the module docstring for the rules. Inputs: :meth:`perform`, :meth:`receive`,
    :meth:`participant_disconnected`, :meth:`fail`, :meth:`fail_all`, :meth:`handle_timer`.
    Outputs: the request packet returned by :meth:`perform`, events from :meth:`next_event`,
    the deadline from :meth:`get_timer`.

    Args:
        max_round_trip_latency_s: the ack deadline after :meth:`perform` (Rust lets callers
            raise it for slow links).

    Raises:
        LocalProtocolError: ``max_round_trip_latency_s`` is not a positive finite number.
    """

    def __init__(self, *, max_round_trip_latency_s: float = RPC_MAX_ROUND_TRIP_LATENCY_S) -> None:
        self._latency_s = _positive_seconds("max_round_trip_latency_s", max_round_trip_latency_s)
        self._calls: dict[str, _Call] = {}
        self._events: deque[AnyRpcClientEvent] = deque()
        self._order = 0
        self._ignored = 0

    # ---------------------------------------------------------------- state (read-only)

    @property
    def pending_request_ids(self) -> frozenset[str]:
        """Ids of the calls that have not ended yet."""
        return frozenset(self._calls)

    def is_acknowledged(self, request_id: str) -> bool:
        """Whether a pending call has been acked (False for unknown ids)."""
        call = self._calls.get(request_id)
        return call is not None and call.ack_deadline is None

    @property
    def ignored_packets(self) -> int:
        """Acks and responses dropped: unknown id, wrong sender, repeated ack, unusable value."""
        return self._ignored

    # ---------------------------------------------------------------- inputs

    def perform(
        self,
        destination_identity: str,
        method: str,
        payload: str,
        now: float,
        *,
        request_id: str,
        response_timeout_s: float = RPC_DEFAULT_RESPONSE_TIMEOUT_S,
        server_version: str | None = None,
    ) -> pb.DataPacket:
        """Start a call and return its request packet (send it on ``_reliable``).

        Args:
            destination_identity: the callee.
            method: the method name.
            payload: the request payload (at most :data:`RPC_MAX_PAYLOAD_BYTES` UTF-8 bytes).
            now: current monotonic time in seconds.
            request_id: a fresh unique id (the SDKs use a random UUID v4 string).
            response_timeout_s: how long to wait for the response, from now.
            server_version: ``JoinResponse.server_info.version``, if known; RPC needs 1.8.0.

        Returns:
            ``DataPacket(destination_identities=[destination], rpc_request=...)``.

        Raises:
            RpcError: REQUEST_PAYLOAD_TOO_LARGE or UNSUPPORTED_SERVER (nothing was registered).
            LocalProtocolError: an empty destination or request id, a request id already
                pending, a timeout that is not positive or exceeds uint32 milliseconds, or
                strings that are not valid Unicode.
        """
        _nonempty("destination_identity", destination_identity)
        _nonempty("request_id", request_id)
        if request_id in self._calls:
            raise LocalProtocolError(f"request id {request_id!r} is already pending")
        timeout_s = _positive_seconds("response_timeout_s", response_timeout_s)
        wire_timeout_ms = round(max(timeout_s, self._latency_s + _MIN_TIMEOUT_MARGIN_S) * 1000)
        if wire_timeout_ms > _UINT32_MAX:
            raise LocalProtocolError(f"response_timeout_s {timeout_s} exceeds uint32 milliseconds")
        # JS checks the size before the server version.
        if _utf8_len("payload", payload) > RPC_MAX_PAYLOAD_BYTES:
            raise RpcError.built_in(RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if server_version:
            parsed = _parse_version(server_version)
            if parsed is not None and parsed < RPC_MIN_SERVER_VERSION:
                raise RpcError.built_in(RpcErrorCode.UNSUPPORTED_SERVER)
        try:
            packet = pb.DataPacket(
                destination_identities=[destination_identity],
                rpc_request=pb.RpcRequest(
                    id=request_id,
                    method=method,
                    payload=payload,
                    response_timeout_ms=wire_timeout_ms,
                    version=RPC_VERSION_V1,
                ),
            )
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise LocalProtocolError(f"cannot build RpcRequest: {exc}") from exc
        self._order += 1
        self._calls[request_id] = _Call(
            destination=destination_identity,
            order=self._order,
            ack_deadline=now + self._latency_s,
            response_deadline=now + timeout_s,
        )
        return packet

    def receive(self, packet: pb.DataPacket, now: float) -> None:
        """Feed a received packet; only ``rpc_ack`` and ``rpc_response`` are looked at.

        Never raises. Packets that match no pending call are counted in :attr:`ignored_packets`.
        """
        kind = packet.WhichOneof("value")
        if kind == "rpc_ack":
            request_id = packet.rpc_ack.request_id
        elif kind == "rpc_response":
            request_id = packet.rpc_response.request_id
        else:
            return
        call = self._calls.get(request_id)
        sender = packet.participant_identity
        if call is None or (sender and sender != call.destination):
            self._ignored += 1
            return
        if kind == "rpc_ack":
            if call.ack_deadline is None:
                self._ignored += 1
            call.ack_deadline = None
            return
        response = packet.rpc_response
        value = response.WhichOneof("value")
        if value == "payload":
            del self._calls[request_id]
            self._events.append(
                RpcCallSucceeded(request_id=request_id, payload=response.payload, message=response)
            )
        elif value == "error":
            del self._calls[request_id]
            error = RpcError.from_proto(response.error)
            self._events.append(RpcCallFailed(request_id=request_id, error=error, message=response))
        else:
            self._ignored += 1

    def participant_disconnected(self, identity: str, now: float) -> None:
        """The participant ``identity`` left: fail its calls with RECIPIENT_DISCONNECTED."""
        gone = [rid for rid, call in self._calls.items() if call.destination == identity]
        for request_id in gone:
            self._finish_failed(request_id, RpcError.built_in(RpcErrorCode.RECIPIENT_DISCONNECTED))

    def fail(self, request_id: str, error: RpcError) -> bool:
        """End a pending call with ``error`` (e.g. SEND_FAILED when the request could not be sent).

        Returns:
            False if the call is not pending (it already ended); nothing happens then.
        """
        if request_id not in self._calls:
            return False
        self._finish_failed(request_id, error)
        return True

    def fail_all(self, error: RpcError) -> None:
        """End every pending call with ``error`` (e.g. the room is closing), in call order."""
        for request_id in list(self._calls):
            self._finish_failed(request_id, error)

    def handle_timer(self, now: float) -> None:
        """Fail every call whose ack or response deadline has passed at ``now``.

        Failures come out in deadline order, ties in call order. Afterwards :meth:`get_timer` is
        None or later than ``now``.
        """
        due: list[tuple[float, int, str, RpcErrorCode]] = []
        for request_id, call in self._calls.items():
            deadline, code = call.next_deadline()
            if now >= deadline:
                due.append((deadline, call.order, request_id, code))
        due.sort()
        for _, _, request_id, code in due:
            self._finish_failed(request_id, RpcError.built_in(code))

    def get_timer(self) -> float | None:
        """The next ack or response deadline, or None when no call is pending."""
        if not self._calls:
            return None
        return min(call.next_deadline()[0] for call in self._calls.values())

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyRpcClientEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    def _finish_failed(self, request_id: str, error: RpcError) -> None:
        del self._calls[request_id]
        self._events.append(RpcCallFailed(request_id=request_id, error=error))


# --------------------------------------------------------------------------------------------
# Callee


@dataclass(slots=True)
class _Invocation:
    caller: str
    deadline: float


def _ack_packet(caller: str, request_id: str) -> pb.DataPacket:
    return pb.DataPacket(destination_identities=[caller], rpc_ack=pb.RpcAck(request_id=request_id))


def _error_packet(caller: str, request_id: str, error: RpcError) -> pb.DataPacket:
    return pb.DataPacket(
        destination_identities=[caller],
        rpc_response=pb.RpcResponse(request_id=request_id, error=error.to_proto()),
    )


class RpcServer:
    """The callee side of v1 RPC: registered methods and invocations awaiting an answer.

    See the module docstring. Inputs: :meth:`register`, :meth:`unregister`, :meth:`receive`,
    :meth:`respond`, :meth:`respond_error`. Outputs: packets returned by those, events from
    :meth:`next_event`. No timers: the driver bounds the handler with the event's ``deadline``
    and must answer every invocation once (the record is kept until then).
    """

    def __init__(self) -> None:
        self._methods: set[str] = set()
        self._pending: dict[str, _Invocation] = {}
        self._events: deque[AnyRpcServerEvent] = deque()
        self._ignored = 0

    # ---------------------------------------------------------------- state (read-only)

    @property
    def registered_methods(self) -> frozenset[str]:
        """The methods with a handler."""
        return frozenset(self._methods)

    @property
    def pending_request_ids(self) -> frozenset[str]:
        """Invocations handed out by :class:`RpcInvocationRequested` and not answered yet."""
        return frozenset(self._pending)

    @property
    def ignored_packets(self) -> int:
        """Requests dropped: empty request id, no caller identity, or an id already pending."""
        return self._ignored

    # ---------------------------------------------------------------- inputs

    def register(self, method: str) -> None:
        """Accept requests for ``method``.

        Raises:
            LocalProtocolError: ``method`` is already registered (JS and Python SDKs refuse a
                second handler too) or is not a str.
        """
        if not isinstance(method, str):
            raise LocalProtocolError(f"method must be a str, got {type(method).__name__}")
        if method in self._methods:
            raise LocalProtocolError(f"RPC method {method!r} is already registered")
        self._methods.add(method)

    def unregister(self, method: str) -> None:
        """Stop accepting ``method`` (no-op if unknown). Pending invocations may still answer."""
        self._methods.discard(method)

    def receive(self, packet: pb.DataPacket, now: float) -> list[pb.DataPacket]:
        """Feed a received packet; only ``rpc_request`` is looked at. Never raises.

        Returns:
            Packets to send now, in order: the ack, then an error response if the request cannot
            be dispatched. Empty for anything that is not a usable request.
        """
        if packet.WhichOneof("value") != "rpc_request":
            return []
        request = packet.rpc_request
        caller = packet.participant_identity
        request_id = request.id
        # Without a caller there is no one to address (an empty destination list would
        # broadcast); without an id the reply cannot be matched; a repeated id is a duplicate.
        if not caller or not request_id or request_id in self._pending:
            self._ignored += 1
            return []
        out = [_ack_packet(caller, request_id)]
        if request.version != RPC_VERSION_V1:
            error = RpcError.built_in(RpcErrorCode.UNSUPPORTED_VERSION)
            out.append(_error_packet(caller, request_id, error))
        elif request.method not in self._methods:
            error = RpcError.built_in(RpcErrorCode.UNSUPPORTED_METHOD)
            out.append(_error_packet(caller, request_id, error))
        else:
            timeout_s = request.response_timeout_ms / 1000
            self._pending[request_id] = _Invocation(caller=caller, deadline=now + timeout_s)
            self._events.append(
                RpcInvocationRequested(
                    request_id=request_id,
                    caller_identity=caller,
                    method=request.method,
                    payload=request.payload,
                    response_timeout_s=timeout_s,
                    deadline=now + timeout_s,
                    message=request,
                )
            )
        return out

    def respond(self, request_id: str, payload: str) -> pb.DataPacket:
        """Answer an invocation with the handler's result.

        Returns:
            The response packet; a RESPONSE_PAYLOAD_TOO_LARGE error response instead when
            ``payload`` exceeds :data:`RPC_MAX_PAYLOAD_BYTES` UTF-8 bytes.

        Raises:
            LocalProtocolError: ``request_id`` is not pending (never requested, or answered
                already), or ``payload`` is not valid Unicode text (the invocation stays pending).
        """
        invocation = self._get(request_id)
        size = _utf8_len("payload", payload)
        del self._pending[request_id]
        if size > RPC_MAX_PAYLOAD_BYTES:
            error = RpcError.built_in(RpcErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
            return _error_packet(invocation.caller, request_id, error)
        return pb.DataPacket(
            destination_identities=[invocation.caller],
            rpc_response=pb.RpcResponse(request_id=request_id, payload=payload),
        )

    def respond_error(self, request_id: str, error: RpcError) -> pb.DataPacket:
        """Answer an invocation with an error (map non-RPC handler exceptions to APPLICATION_ERROR).

        Raises:
            LocalProtocolError: ``request_id`` is not pending, or ``error`` is not an
                :class:`RpcError`.
        """
        if not isinstance(error, RpcError):
            raise LocalProtocolError(f"error must be an RpcError, got {type(error).__name__}")
        invocation = self._get(request_id)
        del self._pending[request_id]
        return _error_packet(invocation.caller, request_id, error)

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyRpcServerEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    def _get(self, request_id: str) -> _Invocation:
        invocation = self._pending.get(request_id)
        if invocation is None:
            raise LocalProtocolError(f"no pending RPC invocation {request_id!r}")
        return invocation
