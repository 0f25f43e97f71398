"""The one exception tree of lkproto.

Everything lkproto raises on purpose descends from :class:`LkError`. Foreign exceptions
(``google.protobuf.message.DecodeError``, ``OSError``, ``websockets`` errors, ...) are mapped at
the boundary where they occur, so callers only ever need to catch these::

    LkError
    ├── LocalProtocolError        you misused the API (raised at once, nothing was sent)
    │   ├── PublishDataError      a data packet that cannot be sent (e.g. over 64 000 bytes)
    │   ├── UnsupportedFeatureError  an option the official SDK honours that lkproto cannot (yet)
    │   ├── EventQueueOverflowError  a room.events() reader fell max_queue events behind
    │   └── StreamClosedError     a stream writer used after it was closed (also a RuntimeError)
    ├── RemoteProtocolError       the peer broke the protocol
    │   └── DecodeError           bytes that are not a valid message of the expected type
    ├── TokenError                an access token could not be built or did not verify
    ├── ApiError                  the server's RoomService answered with a Twirp error
    ├── RequestRejectedError      the server answered a signal request with an error
    ├── RpcError                  an RPC failed (code, message, data; lkproto.core.rpc)
    ├── ConnectError              a signal connection could not be opened or was lost
    │   └── JoinRejectedError     the server refused the join before the upgrade (HTTP status)
    │       ├── UnauthorizedError     401: bad/expired token, unknown key, missing grants
    │       ├── RoomNotFoundError     404 "requested room does not exist"
    │       └── ...                   any other status stays a plain JoinRejectedError
    ├── ServerError               a local livekit-server could not be installed or started
    └── UnsupportedDependencyError   an installed aiortc/aioice version lkproto was not proven with
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ConnectError",
    "DecodeError",
    "EventQueueOverflowError",
    "JoinRejectedError",
    "LkError",
    "LocalProtocolError",
    "PublishDataError",
    "RemoteProtocolError",
    "RequestRejectedError",
    "RoomNotFoundError",
    "RpcError",  # noqa: F822  (provided lazily by __getattr__)
    "ServerError",
    "StreamClosedError",
    "TokenError",
    "UnauthorizedError",
    "UnsupportedDependencyError",
    "UnsupportedFeatureError",
]


class LkError(Exception):
    """Base class of every exception lkproto raises on purpose."""


class LocalProtocolError(LkError):
    """The caller asked for something the protocol does not allow (bad argument, wrong state)."""


class PublishDataError(LocalProtocolError):
    """A data packet was refused before sending (same name as the official SDK's error)."""


class UnsupportedFeatureError(LocalProtocolError):
    """An option or value the official SDK honours that lkproto does not implement.

    Raised at once (before anything connects or is sent) instead of silently behaving differently.

    Attributes:
        feature: the option's name as the caller wrote it, e.g. ``"RoomOptions.e2ee"``.
        reason: why it is refused (what is missing, or what to use instead).
    """

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(f"{feature} is not supported by lkproto: {reason}")
        self.feature = feature
        self.reason = reason


class RemoteProtocolError(LkError):
    """The remote side sent something the protocol does not allow."""


class DecodeError(RemoteProtocolError):
    """Bytes could not be decoded as the expected message.

    Attributes:
        message_type: name of the protobuf message (or format) that was expected.
    """

    def __init__(self, message_type: str, reason: str) -> None:
        super().__init__(f"cannot decode {message_type}: {reason}")
        self.message_type = message_type
        self.reason = reason


class TokenError(LkError):
    """An access token could not be created, parsed or verified."""


class ApiError(LkError):
    """A Twirp error returned by the server's HTTP API.

    Attributes:
        status: HTTP status code.
        code: Twirp error code (``not_found``, ``unauthenticated``, ...).
        message: the server's message.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message


class RequestRejectedError(LkError):
    """The server refused a signal request (``RequestResponse`` with a non-OK reason).

    Attributes:
        reason: the ``RequestResponse.Reason`` name (``NOT_ALLOWED``, ``LIMIT_EXCEEDED``, ...)
            or ``TIMEOUT`` when no answer came in time.
        message: the server's explanation, if any.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"request rejected: {reason}" + (f" ({message})" if message else ""))
        self.reason = reason
        self.message = message


class ConnectError(LkError):
    """A connection to the server could not be established, or was lost for good."""


class JoinRejectedError(ConnectError):
    """The server answered the WebSocket upgrade with an HTTP error (PROTOCOL-MAP §1 Rejections).

    Attributes:
        status: HTTP status code of the refusal.
        body: the plain-text body the server gave as the reason.
    """

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"join rejected with HTTP {status}: {body.strip()}")
        self.status = status
        self.body = body


class UnauthorizedError(JoinRejectedError):
    """HTTP 401: invalid, expired or unknown-key token, or missing join permission."""


class RoomNotFoundError(JoinRejectedError):
    """HTTP 404 "requested room does not exist": the room is missing and may not be created."""


class ServerError(LkError):
    """A local livekit-server could not be installed or started."""


class UnsupportedDependencyError(LkError, ImportError):
    """A third-party package lkproto reaches into (aiortc, aioice) is at an unproven version.

    Attributes:
        package: the distribution name.
        installed: the version found.
        supported: the version range lkproto's suite was run against (a PEP 440 specifier).
    """

    def __init__(self, package: str, installed: str, supported: str) -> None:
        super().__init__(
            f"lkproto supports {package}{supported}, but {package} {installed} is installed; "
            f"install a supported version (pip install '{package}{supported}')"
        )
        self.package = package
        self.installed = installed
        self.supported = supported


class EventQueueOverflowError(LocalProtocolError):
    """A ``Room.events()`` iterator fell ``max_queue`` events behind and was ended.

    Raised by the iterator after it has yielded every event it held; the events after those were
    not kept. The room's own state (participants, publications) stays correct: read it, then
    iterate a new ``room.events()``.

    Attributes:
        max_queue: the bound that was exceeded.
    """

    def __init__(self, max_queue: int) -> None:
        super().__init__(
            f"room.events() reader fell {max_queue} events behind; the stream was ended "
            "(consume faster, or pass a larger max_queue)"
        )
        self.max_queue = max_queue


class StreamClosedError(LocalProtocolError, RuntimeError):
    """A data-stream writer was written to or closed after it was closed.

    Local misuse, so a :class:`LocalProtocolError`; also a ``RuntimeError``, which is what the
    official SDK's writers raise, so code written for it still catches it.
    """


def __getattr__(name: str) -> type[LkError]:
    # RpcError lives with the RPC machines (lkproto.core.rpc), which import this module.
    if name == "RpcError":
        from lkproto.core.rpc import RpcError

        return RpcError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
