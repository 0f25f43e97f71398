"""Small loopback endpoints that stand in front of, or instead of, a livekit-server in tests.

- :class:`RelayProxy`: a raw TCP relay to a real server. With ``refuse_v1=True`` it answers every
  request for ``/rtc/v1…`` with ``404 Not Found`` (body *not* "room does not exist"), which is how
  a server older than v1.9.10 answers (PROTOCOL-MAP §1 URLs and routes, Who uses which path).
  Everything else, including the ``/rtc`` WebSocket, is relayed byte for byte; ICE still goes
  straight to the real server. :meth:`RelayProxy.stall` freezes the signalling mid-flight.
- :class:`StaticHttpServer`: answers every request with one fixed status and body (not LiveKit).
- :class:`SilentSignalServer`: accepts the WebSocket upgrade on any path and then never sends a
  frame (no JoinResponse), until the client goes away.

All of them bind ``127.0.0.1`` on a free port, are async context managers, record the request
paths they saw, and close every socket they opened when they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, Self

from websockets.asyncio.server import Server, ServerConnection, serve

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RelayProxy", "SilentSignalServer", "StaticHttpServer"]

# The query of /rtc/v1 carries the whole JoinRequest; the server allows 1 MiB of headers.
_MAX_HEAD_BYTES: Final = 1 << 21
_RELAY_CHUNK_BYTES: Final = 1 << 16
_HEAD_TIMEOUT_S: Final = 10.0


def _http_response(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _request_path(head: bytes) -> str:
    """The path of ``GET /path?query HTTP/1.1`` (query stripped), or ``""`` if unparsable."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return parts[1].split("?", 1)[0] if len(parts) == 3 else ""


class _TcpEndpoint:
    """Shared lifecycle of an ``asyncio.start_server`` endpoint that tracks its connections."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        """Request paths (without query) in arrival order."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``, what a client is given as the server URL."""
        return f"ws://127.0.0.1:{self._port}"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=_MAX_HEAD_BYTES
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            await _close_writer(writer)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                return
            self.paths.append(_request_path(head))
            await self._handle(head, reader, writer)
        finally:
            self._writers.discard(writer)
            await _close_writer(writer)

    async def _handle(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


class StaticHttpServer(_TcpEndpoint):
    """Answers every HTTP request, WebSocket upgrades included, with ``status`` and ``body``.

    Args:
        status: HTTP status code, e.g. 200 or 404.
        body: response body.
    """

    def __init__(self, status: int = 200, body: bytes = b"hello") -> None:
        super().__init__()
        self._response = _http_response(status, body)

    async def _handle(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(self._response)
        with contextlib.suppress(OSError):
            await writer.drain()


class RelayProxy(_TcpEndpoint):
    """Relays every connection to ``127.0.0.1:upstream_port`` byte for byte.

    Args:
        upstream_port: the real server's HTTP/WebSocket port.
        refuse_v1: answer requests for ``/rtc/v1…`` with a plain 404 instead of relaying them,
            as a server older than v1.9.10 does.
        refusal_body: that 404's body; Go's ``http.NotFound`` text by default (not "room does
            not exist", which would mean a missing room rather than a missing route).
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        refuse_v1: bool = False,
        refusal_body: bytes = b"404 page not found\n",
    ) -> None:
        super().__init__()
        self._upstream_port = upstream_port
        self._refuse_v1 = refuse_v1
        self._refusal = _http_response(404, refusal_body)
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        """Stop forwarding in both directions (bytes are held, sockets stay open)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, held bytes first."""
        self._flowing.set()

    async def _handle(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._refuse_v1 and _request_path(head).startswith("/rtc/v1"):
            writer.write(self._refusal)
            with contextlib.suppress(OSError):
                await writer.drain()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.write(_http_response(502, b"upstream unreachable\n"))
            return
        self._writers.add(up_writer)
        try:
            up_writer.write(head)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            await _close_writer(up_writer)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy until EOF or error, then half-close ``dst`` (or close it if that fails)."""
        try:
            while data := await src.read(_RELAY_CHUNK_BYTES):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            await self._flowing.wait()
            if dst.can_write_eof():
                dst.write_eof()
        except OSError:
            dst.close()


class SilentSignalServer:
    """Accepts WebSocket upgrades on any path and never sends a frame.

    Attributes:
        paths: request paths (without query) of the upgrades it accepted.
        open_connections: connections whose client has not gone yet.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.open_connections = 0
        self._server: Server | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    async def start(self) -> Self:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handler(self, ws: ServerConnection) -> None:
        self.paths.append(ws.request.path.split("?", 1)[0] if ws.request else "")
        self.open_connections += 1
        try:
            await ws.wait_closed()
        finally:
            self.open_connections -= 1
