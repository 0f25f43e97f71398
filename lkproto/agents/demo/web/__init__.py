"""The demo's web page and its local HTTP server (standard library ``http.server``).

The page (``page/index.html`` + ``page/app.js``) is livekit-client 2.23.0 in the browser: it
shows the agent's state, a live transcript and the agent's picture, and has a push-to-talk
button. ``tools/setup_demo_web.sh`` bundles it with esbuild into ``dist/`` using the npm packages
pinned by ``tests/interop/browser/package-lock.json`` (the same lockfile as the browser harness).

:class:`WebDemo` serves ``dist/`` on 127.0.0.1 and answers ``GET /token`` with a fresh room, a
user token and the server URL, and dispatches a :class:`~lkproto.agents.demo.agent.MoonAgent`
into that room, as a LiveKit token server with agent dispatch would.

Page query parameters: ``?mic=oscillator`` publishes a 440 Hz WebAudio oscillator instead of
the microphone (what the test uses; no media permission needed), ``?autoconnect=1`` connects on
load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import urlsplit

from lkproto.agents.demo import AGENT_IDENTITY
from lkproto.agents.demo.agent import MoonAgent, agent_token

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["DIST_DIR", "PAGE_DIR", "BundleMissingError", "WebDemo", "check_bundle"]

_log = logging.getLogger("lkproto.agents.demo.web")

WEB_DIR: Final = Path(__file__).resolve().parent
PAGE_DIR: Final = WEB_DIR / "page"
DIST_DIR: Final = WEB_DIR / "dist"
BUILD_HINT: Final = "run `bash tools/setup_demo_web.sh` (after tools/setup_browser.sh)"
_MIME: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".png": "image/png",
}
_STOP_AGENTS_TIMEOUT_S: Final = 10.0


class BundleMissingError(RuntimeError):
    """The page bundle (``dist/``) was not built."""


def check_bundle() -> Path:
    """Return ``dist/``, or raise :class:`BundleMissingError` saying how to build it."""
    for name in ("index.html", "demo.js"):
        if not (DIST_DIR / name).is_file():
            raise BundleMissingError(f"{DIST_DIR / name} is missing: {BUILD_HINT}")
    return DIST_DIR


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/token":
            self._send_json(self.server.demo.new_session())
            return
        name = "index.html" if path == "/" else path.lstrip("/")
        file = (DIST_DIR / name).resolve()
        if file.parent != DIST_DIR or not file.is_file():
            status = HTTPStatus.NOT_FOUND if DIST_DIR.is_dir() else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, f"{path}: not found ({BUILD_HINT})\n".encode(), "text/plain")
            return
        self._send(HTTPStatus.OK, file.read_bytes(), _MIME.get(file.suffix, "text/plain"))

    def _send_json(self, body: dict[str, str]) -> None:
        self._send(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], demo: WebDemo) -> None:
        super().__init__(address, _Handler)
        self.demo = demo


class WebDemo:
    """Serves the page and dispatches one agent per page session.

    Use as an async context manager inside the event loop the agents should run on.

    Args:
        livekit_url: the livekit-server WebSocket URL (``ws://127.0.0.1:...``).
        api_key: the server's API key.
        api_secret: its secret.
        host: address to serve the page on.
        port: port to serve the page on (0 picks a free one).
        say: agent log lines go here (default: logging).
    """

    def __init__(
        self,
        livekit_url: str,
        api_key: str,
        api_secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self._livekit_url = livekit_url
        self._api_key = api_key
        self._api_secret = api_secret
        self._address = (host, port)
        self._say = say
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._agents: set[asyncio.Task[None]] = set()
        self.sessions: list[dict[str, str]] = []
        """The sessions handed out by ``/token`` (for tests and logs)."""

    @property
    def url(self) -> str:
        """The page's URL."""
        if self._http is None:
            raise RuntimeError("WebDemo is not running")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/"

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._http = _HttpServer(self._address, self)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="lkproto-demo-web", daemon=True
        )
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await asyncio.to_thread(self._http.shutdown)
            self._http.server_close()
        for task in self._agents:
            task.cancel()
        if self._agents:
            await asyncio.wait(self._agents, timeout=_STOP_AGENTS_TIMEOUT_S)

    def new_session(self) -> dict[str, str]:
        """A fresh room with a user token; an agent is dispatched into it. Thread-safe."""
        room = f"demo-{secrets.token_hex(4)}"
        identity = f"web-{secrets.token_hex(3)}"
        from lkproto.api import AccessToken, VideoGrants

        token = (
            AccessToken(self._api_key, self._api_secret)
            .with_identity(identity)
            .with_name("Web user")
            .with_grants(VideoGrants(room_join=True, room=room))
            .to_jwt()
        )
        session = {
            "url": self._livekit_url,
            "token": token,
            "room": room,
            "identity": identity,
            "agent_identity": AGENT_IDENTITY,
        }
        self.sessions.append(session)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._dispatch, room)
        return session

    def _dispatch(self, room: str) -> None:
        say = self._say
        agent = MoonAgent(say=None if say is None else (lambda line: say(f"{room}: {line}")))
        token = agent_token(self._api_key, self._api_secret, room)
        task = asyncio.ensure_future(agent.run(self._livekit_url, token))
        self._agents.add(task)
        task.add_done_callback(self._agent_done)

    def _agent_done(self, task: asyncio.Task[None]) -> None:
        self._agents.discard(task)
        with contextlib.suppress(asyncio.CancelledError):
            if (exc := task.exception()) is not None:
                _log.error("demo agent failed", exc_info=exc)
