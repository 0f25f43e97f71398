"""Twirp (protobuf over HTTP POST) client shared by every server API service.

A call POSTs the serialized request to ``<base>/twirp/livekit.<Service>/<Method>`` with
``Content-Type: application/protobuf`` and a bearer token; a 200 answer is the serialized
response, anything else is a Twirp JSON error (PROTOCOL-MAP §17, "RoomService over Twirp"; Twirp
spec v7). The blocking exchange runs in a worker thread through ``urllib`` (see
:mod:`lkproto.api._http`), so the server API needs no HTTP library beyond the standard one.

Errors: a Twirp error answer raises :class:`ServerError` (an :class:`~lkproto.errors.ApiError`);
no answer at all raises :class:`ServerError` with ``status == 0`` and code ``unavailable``; a 200
answer that does not parse raises :class:`~lkproto.errors.DecodeError`; a call on a closed client
raises :class:`~lkproto.errors.LocalProtocolError`.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Final, TypeVar

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from lkproto.api._errors import (
    ServerError,
    ServerErrorCode,
    SipCallError,
    TwirpError,
    TwirpErrorCode,
)
from lkproto.api._http import post_json, twirp_error
from lkproto.core.durations import positive_seconds
from lkproto.errors import DecodeError, LocalProtocolError

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_S",
    "ServerError",
    "ServerErrorCode",
    "SipCallError",
    "TwirpClient",
    "TwirpError",
    "TwirpErrorCode",
    "http_base_url",
]

DEFAULT_PREFIX: Final = "twirp"
"""Path prefix of every Twirp route (PROTOCOL-MAP §17)."""

DEFAULT_TIMEOUT_S: Final = 10.0
"""Per-request timeout when none is given (livekit-api's default ``ClientTimeout(total=10)``)."""

_PACKAGE: Final = "livekit"
_CONTENT_TYPE: Final = "application/protobuf"
_SCHEMES: Final = {"ws": "http", "wss": "https", "http": "http", "https": "https"}

_ResponseT = TypeVar("_ResponseT", bound=Message)


def http_base_url(url: str) -> str:
    """The HTTP(S) base URL for a server URL as used to join (``ws``/``wss``) or as HTTP.

    A path is kept (the server may sit behind a reverse proxy under a prefix).

    Raises:
        LocalProtocolError: ``url`` is not a ws/wss/http/https URL with a host.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise LocalProtocolError(f"expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class TwirpClient:
    """POSTs protobuf requests to one server's Twirp routes.

    Args:
        host: server URL (``ws``, ``wss``, ``http`` or ``https``).
        pkg: the protobuf package of the services (``livekit``).
        prefix: the route prefix (``twirp``).
        timeout: seconds allowed for connecting and for each read of a request.

    Raises:
        LocalProtocolError: a bad URL or a timeout that is not a positive number of seconds.
    """

    def __init__(
        self,
        host: str,
        pkg: str = _PACKAGE,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = http_base_url(host)
        self.pkg = pkg
        self.prefix = prefix
        self._timeout_s = positive_seconds("timeout", timeout)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Refuse further requests. No connection is kept between calls, so nothing is released."""
        self._closed = True

    async def request(
        self,
        service: str,
        method: str,
        data: Message,
        headers: dict[str, str],
        response_class: type[_ResponseT],
    ) -> _ResponseT:
        """Call ``<pkg>.<service>/<method>`` and return the decoded answer.

        Args:
            service: Twirp service name (``RoomService``, ``Egress``, ``SIP``, ...).
            method: method name (``CreateRoom``, ...).
            data: the request message.
            headers: extra headers, normally ``Authorization``.
            response_class: the message type of the answer.

        Returns:
            The answer.

        Raises:
            ServerError: the server answered with a Twirp error, or did not answer.
            DecodeError: the 200 answer is not a ``response_class``.
            LocalProtocolError: the client is closed.
        """
        if self._closed:
            raise LocalProtocolError("the API client is closed")
        url = f"{self.host}/{self.prefix}/{self.pkg}.{service}/{method}"
        status, body = await asyncio.to_thread(
            post_json,
            url,
            data.SerializeToString(),
            headers,
            self._timeout_s,
            content_type=_CONTENT_TYPE,
        )
        if status != 200:
            raise twirp_error(status, body)
        try:
            return response_class.FromString(body)
        except ProtobufDecodeError as exc:
            raise DecodeError(response_class.DESCRIPTOR.name, str(exc)) from exc
