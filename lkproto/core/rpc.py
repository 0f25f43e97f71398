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
* :meth:`~RpcClient.participant_disconnected` for its destination: RECIPIENT_DISCONNECTED. This
  includes a destination's full reconnect: its old session leaves (``DUPLICATE_IDENTITY``) and
  takes the invocation's state with it, so the call fails when that departure arrives instead of
  waiting out its timeout (JS ``RpcClientManager.handleParticipantDisconnected``);
* our own full reconnect: a call pending when :meth:`~RpcClient.reconnecting` was reported and
  still unanswered at :meth:`~RpcClient.reconnected` with ``full=True`` fails with
  RECIPIENT_DISCONNECTED. The callee saw our old session leave; an answer it sent while we were
  away is lost, and nothing tells us whether it sent one (JS fails every pending call with this
  code when a full reconnect begins, ``Room.handleRestarting``; we wait for its end so that an
  answer reaching the new session still counts). A resume (``full=False``) changes nothing;
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

v2 (RPC over ``lk.rpc_request`` / ``lk.rpc_response`` text streams, PROTOCOL-MAP §6) shares the
same records; only the transport of requests and successful responses changes, acks and errors
stay packets. The driver picks v2 per remote participant from its ``client_protocol``
(:data:`CLIENT_PROTOCOL_DATA_STREAM_RPC`):

* caller: :meth:`RpcClient.perform_stream` instead of :meth:`~RpcClient.perform` returns an
  :class:`RpcStreamMessage` (no 15 360-byte limit) for the driver to send as a text stream. A
  response stream is read only if :meth:`~RpcClient.expects_response_stream` (a pending call and
  the callee's own identity; others are ignored) and delivered with
  :meth:`~RpcClient.receive_response_stream`.
* callee: :meth:`RpcServer.receive_stream` takes the header attributes of an ``lk.rpc_request``
  stream and returns the ack (or a malformed / UNSUPPORTED_VERSION error) and whether to read the
  payload; :meth:`~RpcServer.stream_received` / :meth:`~RpcServer.stream_failed` finish it.
  :meth:`~RpcServer.respond_stream` answers with an ``lk.rpc_response`` stream (callers with
  ``client_protocol >= 1``), :meth:`~RpcServer.respond` with a v1 packet.

Abandoned invocations (issue 15). An answer is addressed to the caller's identity, and a caller
whose session ended has forgotten the call (it left; or, in a full reconnect of either side, the
official SDKs and :class:`RpcClient` fail it with RECIPIENT_DISCONNECTED). So
:meth:`RpcServer.participant_disconnected` (the caller's session ended, whatever the reason) and
:meth:`RpcServer.reconnected` with ``full=True`` (for invocations pending when
:meth:`RpcServer.reconnecting` was reported) drop the invocations whose handler runs and return
their ids: the driver stops the handler (its ``cancel_reason`` is RECIPIENT_DISCONNECTED) and
sends nothing. Request streams still being read end with their stream instead.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from lkproto.core.durations import positive_seconds
from lkproto.errors import LkError, LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "CLIENT_PROTOCOL_DATA_STREAM_RPC",
    "RPC_ATTR_METHOD",
    "RPC_ATTR_REQUEST_ID",
    "RPC_ATTR_RESPONSE_TIMEOUT_MS",
    "RPC_ATTR_VERSION",
    "RPC_DEFAULT_RESPONSE_TIMEOUT_S",
    "RPC_ERROR_MESSAGES",
    "RPC_MAX_PAYLOAD_BYTES",
    "RPC_MAX_ROUND_TRIP_LATENCY_S",
    "RPC_MIN_SERVER_VERSION",
    "RPC_REQUEST_TOPIC",
    "RPC_RESPONSE_TOPIC",
    "RPC_VERSION_V1",
    "RPC_VERSION_V2",
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
    "RpcStreamMessage",
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
# PROTOCOL-MAP §6 v2 flow: ``lk.rpc_request_version`` of stream RPC (JS ``RPC_VERSION_V2``).
RPC_VERSION_V2: Final = 2
# ParticipantInfo.client_protocol from which a peer speaks RPC over streams (JS
# ``CLIENT_PROTOCOL_DATA_STREAM_RPC``).
CLIENT_PROTOCOL_DATA_STREAM_RPC: Final = 1
# PROTOCOL-MAP §6 v2 flow: topics and attributes.
RPC_REQUEST_TOPIC: Final = "lk.rpc_request"
RPC_RESPONSE_TOPIC: Final = "lk.rpc_response"
"""Topic of the text stream carrying a successful RPC v2 result back to the caller (errors
always travel as ``rpc_response`` packets, PROTOCOL-MAP §6 v2 flow)."""
RPC_ATTR_REQUEST_ID: Final = "lk.rpc_request_id"
"""Stream attribute on requests and responses: the request id (a UUID) they belong to."""
RPC_ATTR_METHOD: Final = "lk.rpc_request_method"
"""Request stream attribute: the name of the method the caller invokes."""
RPC_ATTR_RESPONSE_TIMEOUT_MS: Final = "lk.rpc_request_response_timeout_ms"
"""Request stream attribute: the caller's response timeout, in milliseconds, as a decimal string."""
RPC_ATTR_VERSION: Final = "lk.rpc_request_version"
"""Request stream attribute: the RPC version as a decimal string, ``"2"``
(:data:`RPC_VERSION_V2`)."""

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
    # The official SDK's spellings (livekit.rtc rpc.py RpcError.ErrorCode / ErrorMessage).
    ErrorCode: ClassVar[type[RpcErrorCode]] = RpcErrorCode
    ErrorMessage: ClassVar[Mapping[RpcErrorCode, str]] = RPC_ERROR_MESSAGES

    def __init__(self, code: int, message: str, data: str | None = "") -> None:
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= _UINT32_MAX:
            raise LocalProtocolError(f"RpcError code must be a uint32, got {code!r}")
        # The official constructor takes data=None for "no data"; on the wire both are "".
        data = "" if data is None else data
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


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcStreamMessage:
    """A v2 request or response: send ``payload`` as one text stream (PROTOCOL-MAP §6 v2 flow).

    Attributes:
        destination_identity: the only destination of the stream.
        topic: :data:`RPC_REQUEST_TOPIC` or :data:`RPC_RESPONSE_TOPIC`.
        attributes: the stream header's attributes.
        payload: the text.
    """

    destination_identity: str
    topic: str
    attributes: dict[str, str]
    payload: str


AnyRpcClientEvent: TypeAlias = RpcCallSucceeded | RpcCallFailed
"""The outcomes of calls we made: the events of the caller side."""
AnyRpcServerEvent: TypeAlias = RpcInvocationRequested
"""The events of the callee side: a peer invoked one of our methods."""
AnyRpcEvent: TypeAlias = RpcCallSucceeded | RpcCallFailed | RpcInvocationRequested
"""Every RPC event, caller and callee side; match it exhaustively (``assert_never``)."""


# --------------------------------------------------------------------------------------------
# Caller


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
    # Pending when our reconnect began (reconnecting() .. reconnected()).
    marked: bool = False

    def next_deadline(self) -> tuple[float, RpcErrorCode]:
        ack = self.ack_deadline
        if ack is not None and ack <= self.response_deadline:
            return ack, RpcErrorCode.CONNECTION_TIMEOUT
        return self.response_deadline, RpcErrorCode.RESPONSE_TIMEOUT


class RpcClient:
    """The caller side of v1 RPC: pending calls, their acks, responses and deadlines.

    See the module docstring for the rules. Inputs: :meth:`perform`, :meth:`receive`,
    :meth:`participant_disconnected`, :meth:`reconnecting`, :meth:`reconnected`, :meth:`fail`,
    :meth:`fail_all`, :meth:`handle_timer`.
    Outputs: the request packet returned by :meth:`perform`, events from :meth:`next_event`,
    the deadline from :meth:`get_timer`.

    Args:
        max_round_trip_latency_s: the ack deadline after :meth:`perform` (Rust lets callers
            raise it for slow links).

    Raises:
        LocalProtocolError: ``max_round_trip_latency_s`` is not a positive finite number.
    """

    def __init__(self, *, max_round_trip_latency_s: float = RPC_MAX_ROUND_TRIP_LATENCY_S) -> None:
        self._latency_s = positive_seconds("max_round_trip_latency_s", max_round_trip_latency_s)
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
        max_round_trip_latency_s: float | None = None,
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
            max_round_trip_latency_s: this call's ack deadline (the official
                ``perform_rpc(max_round_trip_latency=)``); None: the client's.

        Returns:
            ``DataPacket(destination_identities=[destination], rpc_request=...)``.

        Raises:
            RpcError: REQUEST_PAYLOAD_TOO_LARGE or UNSUPPORTED_SERVER (nothing was registered).
            LocalProtocolError: an empty destination or request id, a request id already
                pending, a timeout that is not positive or exceeds uint32 milliseconds, or
                strings that are not valid Unicode.
        """
        wire_timeout_ms = self._check(
            destination_identity,
            payload,
            request_id=request_id,
            response_timeout_s=response_timeout_s,
            server_version=server_version,
            size_limit=True,
            latency_s=max_round_trip_latency_s,
        )
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
        self._register(
            destination_identity, request_id, now, response_timeout_s, max_round_trip_latency_s
        )
        return packet

    def perform_stream(
        self,
        destination_identity: str,
        method: str,
        payload: str,
        now: float,
        *,
        request_id: str,
        response_timeout_s: float = RPC_DEFAULT_RESPONSE_TIMEOUT_S,
        server_version: str | None = None,
        max_round_trip_latency_s: float | None = None,
    ) -> RpcStreamMessage:
        """Start a v2 call (callee ``client_protocol >= 1``); send the result as a text stream.

        Same as :meth:`perform` except that the request travels as an ``lk.rpc_request`` text
        stream and has no size limit. The response comes as an ``lk.rpc_response`` stream
        (:meth:`receive_response_stream`) or an ``rpc_response`` packet (:meth:`receive`).

        Raises:
            RpcError: UNSUPPORTED_SERVER (nothing was registered).
            LocalProtocolError: as :meth:`perform`; also a method that is not a str.
        """
        if not isinstance(method, str):
            raise LocalProtocolError(f"method must be a str, got {type(method).__name__}")
        _utf8_len("method", method)
        wire_timeout_ms = self._check(
            destination_identity,
            payload,
            request_id=request_id,
            response_timeout_s=response_timeout_s,
            server_version=server_version,
            size_limit=False,
            latency_s=max_round_trip_latency_s,
        )
        message = RpcStreamMessage(
            destination_identity=destination_identity,
            topic=RPC_REQUEST_TOPIC,
            attributes={
                RPC_ATTR_REQUEST_ID: request_id,
                RPC_ATTR_METHOD: method,
                RPC_ATTR_RESPONSE_TIMEOUT_MS: str(wire_timeout_ms),
                RPC_ATTR_VERSION: str(RPC_VERSION_V2),
            },
            payload=payload,
        )
        self._register(
            destination_identity, request_id, now, response_timeout_s, max_round_trip_latency_s
        )
        return message

    def expects_response_stream(self, sender_identity: str, request_id: str) -> bool:
        """Whether an ``lk.rpc_response`` stream from ``sender_identity`` answers a pending call.

        False (count it ignored, do not read the stream) for an unknown id or another sender.
        """
        call = self._calls.get(request_id)
        if call is None or sender_identity != call.destination:
            self._ignored += 1
            return False
        return True

    def receive_response_stream(self, sender_identity: str, request_id: str, payload: str) -> None:
        """The whole payload of an ``lk.rpc_response`` stream: the call succeeds.

        Never raises; an unknown id or another sender is counted in :attr:`ignored_packets`.
        """
        call = self._calls.get(request_id)
        if call is None or sender_identity != call.destination:
            self._ignored += 1
            return
        del self._calls[request_id]
        self._events.append(
            RpcCallSucceeded(
                request_id=request_id,
                payload=payload,
                message=pb.RpcResponse(request_id=request_id, payload=payload),
            )
        )

    def _check(
        self,
        destination_identity: str,
        payload: str,
        *,
        request_id: str,
        response_timeout_s: float,
        server_version: str | None,
        size_limit: bool,
        latency_s: float | None,
    ) -> int:
        _nonempty("destination_identity", destination_identity)
        _nonempty("request_id", request_id)
        if request_id in self._calls:
            raise LocalProtocolError(f"request id {request_id!r} is already pending")
        timeout_s = positive_seconds("response_timeout_s", response_timeout_s)
        latency = self._latency_s
        if latency_s is not None:
            latency = positive_seconds("max_round_trip_latency_s", latency_s)
        wire_timeout_ms = round(max(timeout_s, latency + _MIN_TIMEOUT_MARGIN_S) * 1000)
        if wire_timeout_ms > _UINT32_MAX:
            raise LocalProtocolError(f"response_timeout_s {timeout_s} exceeds uint32 milliseconds")
        # JS checks the size (v1 only) before the server version.
        size = _utf8_len("payload", payload)
        if size_limit and size > RPC_MAX_PAYLOAD_BYTES:
            raise RpcError.built_in(RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if server_version:
            parsed = _parse_version(server_version)
            if parsed is not None and parsed < RPC_MIN_SERVER_VERSION:
                raise RpcError.built_in(RpcErrorCode.UNSUPPORTED_SERVER)
        return wire_timeout_ms

    def _register(
        self,
        destination_identity: str,
        request_id: str,
        now: float,
        response_timeout_s: float,
        latency_s: float | None,
    ) -> None:
        self._order += 1
        self._calls[request_id] = _Call(
            destination=destination_identity,
            order=self._order,
            ack_deadline=now + (self._latency_s if latency_s is None else float(latency_s)),
            response_deadline=now + float(response_timeout_s),
        )

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

    def reconnecting(self, now: float) -> None:
        """Our room began recovering (resume or full reconnect): mark the pending calls."""
        del now
        for call in self._calls.values():
            call.marked = True

    def reconnected(self, now: float, *, full: bool) -> None:
        """Our room recovered; after a ``full`` reconnect the marked calls still pending fail
        with RECIPIENT_DISCONNECTED, in call order (module docstring)."""
        del now
        marked = [rid for rid, call in self._calls.items() if call.marked]
        for request_id in marked:
            if full:
                error = RpcError.built_in(
                    RpcErrorCode.RECIPIENT_DISCONNECTED, "full reconnect while awaiting the answer"
                )
                self._finish_failed(request_id, error)
            else:
                self._calls[request_id].marked = False

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
    # v2: the request stream is still being read (then method and timeout are kept here).
    reading: bool = False
    method: str = ""
    timeout_ms: int = 0
    # Pending when our reconnect began (RpcServer.reconnecting .. reconnected).
    marked: bool = False


def _parse_uint(value: str | None) -> int | None:
    """A decimal attribute as JS ``parseInt`` would accept it when well-formed; None otherwise."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number <= _UINT32_MAX else None


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
    :meth:`respond`, :meth:`respond_error`, :meth:`participant_disconnected`,
    :meth:`reconnecting`, :meth:`reconnected`. Outputs: packets returned by those, events from
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

    def receive_stream(
        self, caller_identity: str, attributes: Mapping[str, str], now: float
    ) -> tuple[list[pb.DataPacket], bool]:
        """The header of an ``lk.rpc_request`` text stream arrived (PROTOCOL-MAP §6 v2 flow).

        Never raises.

        Returns:
            ``(packets, read)``: packets to send now (the ack, or an error response: APPLICATION_
            ERROR "RPC data stream malformed" without the ack when an attribute is missing or
            not a number, UNSUPPORTED_VERSION after the ack for a version other than 2), and
            whether to read the stream and then call :meth:`stream_received` /
            :meth:`stream_failed` (otherwise drop the stream).
        """
        request_id = attributes.get(RPC_ATTR_REQUEST_ID, "")
        method = attributes.get(RPC_ATTR_METHOD, "")
        timeout_ms = _parse_uint(attributes.get(RPC_ATTR_RESPONSE_TIMEOUT_MS))
        version = _parse_uint(attributes.get(RPC_ATTR_VERSION))
        if not caller_identity or request_id in self._pending:
            self._ignored += 1
            return [], False
        if not request_id or not method or timeout_ms is None or version is None:
            error = RpcError.built_in(RpcErrorCode.APPLICATION_ERROR, "RPC data stream malformed")
            return [_error_packet(caller_identity, request_id, error)], False
        out = [_ack_packet(caller_identity, request_id)]
        if version != RPC_VERSION_V2:
            error = RpcError.built_in(RpcErrorCode.UNSUPPORTED_VERSION)
            out.append(_error_packet(caller_identity, request_id, error))
            return out, False
        self._pending[request_id] = _Invocation(
            caller=caller_identity,
            deadline=now + timeout_ms / 1000,
            reading=True,
            method=method,
            timeout_ms=timeout_ms,
        )
        return out, True

    def participant_disconnected(self, identity: str) -> list[str]:
        """A session of the caller ``identity`` ended: drop its invocations whose handler runs.

        Returns:
            Their request ids, oldest first: stop those handlers and send nothing (module
            docstring, "Abandoned invocations").
        """
        gone = [
            rid for rid, inv in self._pending.items() if inv.caller == identity and not inv.reading
        ]
        for request_id in gone:
            del self._pending[request_id]
        return gone

    def reconnecting(self) -> None:
        """Our room began recovering (resume or full reconnect): mark the pending invocations."""
        for invocation in self._pending.values():
            invocation.marked = True

    def reconnected(self, *, full: bool) -> list[str]:
        """Our room recovered; after a ``full`` reconnect drop the marked invocations whose
        handler runs.

        Returns:
            Their request ids, oldest first (empty after a resume): stop those handlers and send
            nothing.
        """
        gone: list[str] = []
        for request_id, invocation in list(self._pending.items()):
            if not invocation.marked:
                continue
            invocation.marked = False
            if full and not invocation.reading:
                del self._pending[request_id]
                gone.append(request_id)
        return gone

    def stream_received(self, request_id: str, payload: str) -> list[pb.DataPacket]:
        """The whole payload of a request stream accepted by :meth:`receive_stream`.

        Returns:
            An UNSUPPORTED_METHOD error response without a handler; otherwise nothing, and an
            :class:`RpcInvocationRequested` event to answer.

        Raises:
            LocalProtocolError: ``request_id`` is not a request stream being read.
        """
        invocation = self._reading(request_id)
        if invocation.method not in self._methods:
            del self._pending[request_id]
            error = RpcError.built_in(RpcErrorCode.UNSUPPORTED_METHOD)
            return [_error_packet(invocation.caller, request_id, error)]
        invocation.reading = False
        timeout_s = invocation.timeout_ms / 1000
        self._events.append(
            RpcInvocationRequested(
                request_id=request_id,
                caller_identity=invocation.caller,
                method=invocation.method,
                payload=payload,
                response_timeout_s=timeout_s,
                deadline=invocation.deadline,
                message=pb.RpcRequest(
                    id=request_id,
                    method=invocation.method,
                    payload=payload,
                    response_timeout_ms=invocation.timeout_ms,
                    version=RPC_VERSION_V2,
                ),
            )
        )
        return []

    def stream_failed(self, request_id: str) -> pb.DataPacket:
        """A request stream accepted by :meth:`receive_stream` failed before its end.

        Returns:
            The APPLICATION_ERROR response for the caller.

        Raises:
            LocalProtocolError: ``request_id`` is not a request stream being read.
        """
        invocation = self._reading(request_id)
        del self._pending[request_id]
        error = RpcError.built_in(
            RpcErrorCode.APPLICATION_ERROR, "Error reading RPC request payload"
        )
        return _error_packet(invocation.caller, request_id, error)

    def respond_stream(self, request_id: str, payload: str) -> RpcStreamMessage:
        """Answer an invocation with an ``lk.rpc_response`` text stream (no size limit).

        Use it when the caller's ``client_protocol >= 1``; :meth:`respond` otherwise.

        Raises:
            LocalProtocolError: as :meth:`respond`.
        """
        invocation = self._get(request_id)
        _utf8_len("payload", payload)
        del self._pending[request_id]
        return RpcStreamMessage(
            destination_identity=invocation.caller,
            topic=RPC_RESPONSE_TOPIC,
            attributes={RPC_ATTR_REQUEST_ID: request_id},
            payload=payload,
        )

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
        if invocation is None or invocation.reading:
            raise LocalProtocolError(f"no pending RPC invocation {request_id!r}")
        return invocation

    def _reading(self, request_id: str) -> _Invocation:
        invocation = self._pending.get(request_id)
        if invocation is None or not invocation.reading:
            raise LocalProtocolError(f"no RPC request stream {request_id!r} being read")
        return invocation
