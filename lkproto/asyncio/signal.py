"""The signalling WebSocket: open, send, receive, close; foreign errors mapped to lkproto.errors.

No protocol decisions live here (those are in :mod:`lkproto.core.signal`); this module only moves
frames. The token goes in an ``Authorization: Bearer`` header, as the Rust SDK sends it
(PROTOCOL-MAP §1 URLs and routes), so it never appears in URLs that end up in logs.

The engine sees a socket only through the :class:`Transport` protocol and obtains one from a
:data:`TransportFactory` (:func:`open_transport` by default), so tests can put an in-memory signal
peer (:mod:`lkproto.testing.signal_peer`) in place of the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

from lkproto import __version__
from lkproto.errors import ConnectError, JoinRejectedError
from lkproto.wire import rejection_error

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

# websockets (and the http/email/urllib modules it pulls in) is imported where a socket is
# opened or used, not here: importing lkproto.rtc should not pay for it (issue 18).

__all__ = [
    "DEFAULT_OPEN_TIMEOUT_S",
    "SignalClosed",
    "SignalTransport",
    "Transport",
    "TransportFactory",
    "is_missing_v1_route",
    "open_transport",
]

# JS waits 15 s for the whole WebSocket connect (PROTOCOL-MAP §1 Framing).
DEFAULT_OPEN_TIMEOUT_S: Final = 15.0
# Signal frames are small, but JoinResponse/ParticipantUpdate of a big room are not; the server
# itself has no frame limit, so allow generously while still bounding memory.
MAX_FRAME_BYTES: Final = 16 << 20


class SignalClosed(ConnectError):
    """The signalling socket closed (or failed) after it was open."""


def is_missing_v1_route(error: JoinRejectedError, url: str) -> bool:
    """True when a 404 means "this server has no /rtc/v1" (so v0 is worth a try).

    PROTOCOL-MAP §1 Who uses which path: JS and Rust fall back to ``/rtc`` on a 404 that is not
    "requested room does not exist".
    """
    return error.status == 404 and "/rtc/v1" in url and "room does not exist" not in error.body


class Transport(Protocol):
    """What the engine needs from one open signalling connection."""

    async def send(self, data: bytes) -> None:
        """Send one binary frame; raises :class:`SignalClosed` once the connection is gone."""

    async def recv(self) -> bytes | str:
        """Receive one frame; raises :class:`SignalClosed` once the connection is gone."""

    async def close(self) -> None:
        """Close cleanly (idempotent, never raises, bounded in time)."""

    def abort(self) -> None:
        """Drop the connection at once, as a network failure would."""


TransportFactory: TypeAlias = Callable[[str, str, float], Awaitable[Transport]]
"""``(url, token, timeout_s) -> Transport``: opens one signalling connection.

Raises the errors :meth:`SignalTransport.open` documents (JoinRejectedError, ConnectError)."""


async def open_transport(url: str, token: str, timeout: float) -> Transport:  # noqa: ASYNC109
    """The default :data:`TransportFactory`: a WebSocket through :meth:`SignalTransport.open`."""
    return await SignalTransport.open(url, token, timeout=timeout)


class SignalTransport:
    """One open signalling WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        *,
        timeout: float = DEFAULT_OPEN_TIMEOUT_S,  # noqa: ASYNC109 (bounds connect + upgrade only)
    ) -> SignalTransport:
        """Open the socket.

        Args:
            url: a signal URL built by :func:`lkproto.wire.signal_url_v1` or ``signal_url_v0``.
            token: the access token (sent as a Bearer header).
            timeout: seconds for TCP connect + HTTP upgrade.

        Raises:
            JoinRejectedError: the server refused the upgrade (typed by status, see
                :func:`lkproto.wire.rejection_error`).
            ConnectError: anything else: refused port, timeout, not a WebSocket endpoint.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races the inner result (CPython gh-86296).
            async with asyncio.timeout(timeout):
                ws = await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    user_agent_header=f"lkproto/{__version__}",
                    open_timeout=None,
                    # Liveness is the protocol's own ping_req/pong_resp (PROTOCOL-MAP §1); the
                    # server sends WebSocket pings itself and websockets answers them.
                    ping_interval=None,
                    max_size=MAX_FRAME_BYTES,
                    proxy=None,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            # The server echoes the token in some 401 bodies; never put a credential in an error.
            body = body.replace(token, "<token>") if token else body
            if status < 400:
                raise ConnectError(
                    f"{_origin(url)} is not a LiveKit signal endpoint "
                    f"(HTTP {status} instead of 101 Switching Protocols)"
                ) from exc
            raise rejection_error(status, body) from exc
        except TimeoutError as exc:
            raise ConnectError(
                f"no WebSocket upgrade from {_origin(url)} within {timeout} s"
            ) from exc
        except InvalidURI as exc:
            raise ConnectError(f"invalid signal URL: {exc}") from exc
        except InvalidHandshake as exc:
            raise ConnectError(f"{_origin(url)} is not a LiveKit signal endpoint: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot reach {_origin(url)}: {exc}") from exc
        return cls(ws)

    async def send(self, data: bytes) -> None:
        """Send one binary frame.

        Raises:
            SignalClosed: the socket is closed.
        """
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise SignalClosed(f"signal socket closed: {exc}") from exc

    async def recv(self) -> bytes | str:
        """Receive one frame (cancellation-safe).

        Raises:
            SignalClosed: the socket closed or failed.
        """
        from websockets.exceptions import ConnectionClosed

        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise SignalClosed(f"signal socket closed: {exc}") from exc

    async def close(self) -> None:
        """Close the socket (idempotent, never raises, bounded in time)."""
        from websockets.exceptions import ConnectionClosed

        try:
            async with asyncio.timeout(2.0):
                await self._ws.close()
        except (TimeoutError, OSError, ConnectionClosed):
            self._ws.transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (tests use it to simulate signal loss)."""
        self._ws.transport.abort()


def _origin(url: str) -> str:
    return url.split("?", 1)[0]
