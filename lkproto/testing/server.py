"""A real livekit-server on loopback, started and stopped from Python.

:class:`LocalServer` runs the pinned release (built by :mod:`lkproto.testing.install`) with a
configuration that keeps every socket and every advertised address on ``127.0.0.1``
(PROTOCOL-MAP §17 "Loopback-only configuration"): HTTP and signalling on a free TCP port, ICE on one
free UDP mux port, ICE/TCP and TURN off, and a STUN server list pointing at an unused loopback port
so that clients are never handed the public STUN defaults the server falls back to otherwise.

Typical use::

    with LocalServer() as server:
        token = server.create_token("alice", "room-1")
        ...  # connect to server.url with the token

    async with LocalServer() as server:  # start/stop run in a worker thread
        ...
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lkproto.errors import LocalProtocolError, ServerError
from lkproto.testing._lifecycle import StartStopMixin
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION, ensure_livekit_server

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_READY_TIMEOUT_S",
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "ENV_ALLOWLIST",
    "READY_LOG_LINE",
    "LocalServer",
    "deep_merge",
    "free_tcp_port",
    "free_udp_port",
    "scrubbed_env",
    "server_config",
]

DEMO_API_KEY: Final = "lkproto-demo"
"""API key of ``python -m lkproto server``; public on purpose, never use it outside a demo."""

DEMO_API_SECRET: Final = "lkproto-demo-secret-do-not-use-in-production"
"""API secret of ``python -m lkproto server`` (at least 32 characters, as the server asks)."""

DEFAULT_READY_TIMEOUT_S: Final = 30.0
"""How long :meth:`LocalServer.start` waits for the server to answer ``GET /`` with 200."""

READY_LOG_LINE: Final = "starting LiveKit server"
"""Logged once every listener is bound (PROTOCOL-MAP §17 "Readiness")."""

ENV_ALLOWLIST: Final = frozenset({"PATH", "HOME", "TMPDIR", "TMP", "TEMP", "LANG", "LC_ALL", "TZ"})
"""The only variables passed to the server: it reads ``NODE_IP``, ``UDP_PORT``, ``REDIS_*``,
``LIVEKIT_*`` and more from its environment (PROTOCOL-MAP §17 "Process behaviour")."""

START_ATTEMPTS: Final = 3
"""Tries with fresh ports when an automatically chosen port was taken in the meantime."""

FIRST_SIGINT_GRACE_S: Final = 1.0
"""After the first SIGINT the server drains until every participant has left, polling every 5 s
(PROTOCOL-MAP §17 "Shutdown"); a second SIGINT after this delay forces the stop."""

SECOND_SIGINT_GRACE_S: Final = 4.0
"""After the second SIGINT, wait this long before SIGKILL."""

LOG_TAIL_LINES: Final = 60

_POLL_INTERVAL_S: Final = 0.02
_HTTP_PROBE_TIMEOUT_S: Final = 1.0
_NODE_ID_RE: Final = re.compile(r'"nodeID":\s*"([^"]+)"')
_PORT_IN_USE: Final = "address already in use"
# The saved tail of a log whose private directory was removed by stop(); enough for any caller.
_SAVED_TAIL_LINES: Final = 400


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago.

    Args:
        host: address to bind.

    Returns:
        The port the kernel picked for a socket bound to ``(host, 0)``, now closed again.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def free_udp_port(host: str = "127.0.0.1", *, avoid: frozenset[int] = frozenset()) -> int:
    """Return a UDP port that was free on ``host`` a moment ago.

    Args:
        host: address to bind.
        avoid: ports not to return (e.g. one already chosen for something else).

    Returns:
        The port the kernel picked for a socket bound to ``(host, 0)``, now closed again.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def deep_merge(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """Merge two configuration trees without modifying either.

    Args:
        base: the defaults.
        override: values that win; nested mappings are merged key by key, anything else
            (scalars, lists) replaces the base value.

    Returns:
        A new tree.
    """
    merged: dict[str, object] = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def server_config(
    *,
    port: int,
    udp_port: int,
    stun_port: int,
    api_key: str,
    api_secret: str,
    auto_create: bool = True,
    empty_timeout: int = 10,
    departure_timeout: int = 1,
    log_level: str = "info",
    extra_config: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Build the loopback-only configuration :class:`LocalServer` writes for the server.

    Args:
        port: HTTP / signalling TCP port.
        udp_port: the single ICE UDP mux port.
        stun_port: an unused loopback UDP port advertised as the only STUN server, so the server
            does not hand clients its public STUN defaults.
        api_key: API key.
        api_secret: API secret.
        auto_create: whether joining a missing room creates it.
        empty_timeout: seconds an empty room is kept.
        departure_timeout: seconds a room is kept after its last participant left.
        log_level: ``debug``, ``info``, ``warn`` or ``error``.
        extra_config: deep-merged over the result (see :func:`deep_merge`).

    Returns:
        The configuration tree (JSON-serialisable, and JSON is valid YAML).
    """
    config: dict[str, object] = {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "keys": {api_key: api_secret},
        "logging": {"level": log_level},
        "rtc": {
            "node_ip": "127.0.0.1",
            "use_external_ip": False,
            "enable_loopback_candidate": True,
            "ips": {"includes": ["127.0.0.1/32"]},
            "udp_port": udp_port,
            "tcp_port": 0,
            "stun_servers": [f"127.0.0.1:{stun_port}"],
        },
        "room": {
            "auto_create": auto_create,
            "empty_timeout": empty_timeout,
            "departure_timeout": departure_timeout,
        },
        "turn": {"enabled": False},
    }
    if extra_config:
        config = deep_merge(config, extra_config)
    return config


def scrubbed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment the server is started with.

    Args:
        environ: the environment to filter; ``None`` means ``os.environ``.

    Returns:
        Only the variables in :data:`ENV_ALLOWLIST`.
    """
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if name in ENV_ALLOWLIST}


class LocalServer(StartStopMixin):
    """A livekit-server child process bound to 127.0.0.1.

    Usable as a sync or async context manager, or through :meth:`start` / :meth:`stop`. Every
    started server is also stopped at interpreter exit.

    Args:
        api_key: API key; random per instance by default.
        api_secret: API secret; random (43 characters) per instance by default.
        port: HTTP / signalling TCP port; a free one by default.
        udp_port: ICE UDP port; a free one by default.
        auto_create: ``room.auto_create``.
        empty_timeout: ``room.empty_timeout`` in seconds.
        departure_timeout: ``room.departure_timeout`` in seconds.
        extra_config: deep-merged over the generated configuration (unknown keys make the
            server refuse to start).
        log_level: ``logging.level``.
        log_dir: directory for the log file, kept after :meth:`stop`; by default a private
            temporary directory that :meth:`stop` removes (the tail stays in memory).
        binary: the livekit-server executable; by default :func:`ensure_livekit_server` is called.
        version: the release to build when ``binary`` is not given.
        ready_timeout: seconds :meth:`start` waits for readiness.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        port: int | None = None,
        udp_port: int | None = None,
        auto_create: bool = True,
        empty_timeout: int = 10,
        departure_timeout: int = 1,
        extra_config: Mapping[str, object] | None = None,
        log_level: str = "info",
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        version: str = DEFAULT_LIVEKIT_SERVER_VERSION,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
    ) -> None:
        self._api_key = api_key if api_key is not None else f"lk-{secrets.token_hex(6)}"
        self._api_secret = api_secret if api_secret is not None else secrets.token_urlsafe(32)
        self._fixed_port = port
        self._fixed_udp_port = udp_port
        self._auto_create = auto_create
        self._empty_timeout = empty_timeout
        self._departure_timeout = departure_timeout
        self._extra_config = copy.deepcopy(dict(extra_config)) if extra_config else None
        self._log_level = log_level
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = Path(binary) if binary is not None else None
        self._version = version
        self._ready_timeout = ready_timeout

        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._private_dir: Path | None = None
        self._config_path: Path | None = None
        self._log_path: Path | None = None
        self._saved_tail: str | None = None
        self._config: dict[str, object] = {}
        self._port = 0
        self._udp_port = 0
        self._node_id: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalServer {state} url={self.url if self._port else None!r} pid={self.pid}>"

    # -- properties ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Signalling URL, ``ws://127.0.0.1:<port>``, for clients."""
        return f"ws://127.0.0.1:{self._require_port()}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API (RoomService, ``GET /``), ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._require_port()}"

    @property
    def api_key(self) -> str:
        """The API key the server accepts."""
        return self._api_key

    @property
    def api_secret(self) -> str:
        """The secret of :attr:`api_key`."""
        return self._api_secret

    @property
    def port(self) -> int:
        """HTTP / signalling TCP port (0 before the first start)."""
        return self._port

    @property
    def udp_port(self) -> int:
        """ICE UDP mux port (0 before the first start)."""
        return self._udp_port

    @property
    def pid(self) -> int | None:
        """Process id of the running server, else ``None``."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    @property
    def log_path(self) -> Path | None:
        """The server's combined stdout/stderr log (``None`` before the first start)."""
        return self._log_path

    @property
    def config(self) -> dict[str, object]:
        """A copy of the configuration of the current (or last) run."""
        return copy.deepcopy(self._config)

    @property
    def node_id(self) -> str | None:
        """The server's node id (``ND_...``) from its start log line, once started."""
        return self._node_id

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        """Return the last ``n`` lines of the server log.

        Args:
            n: number of lines.

        Returns:
            The lines joined by newlines; empty before the first start.
        """
        if self._saved_tail is not None:
            text = self._saved_tail
        elif self._log_path is not None:
            try:
                text = self._log_path.read_text(errors="replace")
            except OSError as exc:
                return f"<log {self._log_path} unreadable: {exc}>"
        else:
            return ""
        return "\n".join(text.splitlines()[-n:])

    def create_token(
        self, identity: str, room: str, *, name: str | None = None, **grants: object
    ) -> str:
        """Mint a join token signed with this server's key.

        Args:
            identity: participant identity.
            room: room name.
            name: display name.
            **grants: extra ``VideoGrants`` fields (``can_publish=False``, ``room_admin=True``,
                ...); ``room_join=True`` and ``room`` are set already.

        Returns:
            The JWT.
        """
        from lkproto.api import AccessToken, VideoGrants

        fields: dict[str, object] = {"room_join": True, "room": room}
        fields.update(grants)
        token = AccessToken(self._api_key, self._api_secret).with_identity(identity)
        if name is not None:
            token = token.with_name(name)
        return token.with_grants(VideoGrants(**fields)).to_jwt()  # type: ignore[arg-type]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers ``GET /`` with 200.

        Raises:
            LocalProtocolError: already running.
            ServerError: the binary cannot be obtained, the server exited before it was ready
                (livekit-server exits with status 0 even then), or it was not ready in time. The
                message carries the log tail.
        """
        with self._lock:
            if self.running:
                raise LocalProtocolError("LocalServer is already running")
            binary = self._binary or ensure_livekit_server(self._version)
            self._reset_files()
            last_error: ServerError | None = None
            for _ in range(START_ATTEMPTS):
                try:
                    self._start_once(binary)
                except _PortTakenError as exc:
                    last_error = exc
                    continue
                except BaseException:
                    self._kill()
                    self._remove_private_dir()
                    raise
                _LIVE_SERVERS.add(self)
                return
            self._remove_private_dir()
            assert last_error is not None
            raise last_error

    def stop(self) -> None:
        """Stop the server: SIGINT, a second SIGINT, then SIGKILL; idempotent.

        The first SIGINT only starts a drain that waits for participants to leave, so a second
        one follows after :data:`FIRST_SIGINT_GRACE_S` if the process is still alive.
        """
        with self._lock:
            _LIVE_SERVERS.discard(self)
            self._kill()
            self._remove_private_dir()

    # -- internals ----------------------------------------------------------------------------

    def _require_port(self) -> int:
        if not self._port:
            raise LocalProtocolError("LocalServer has not been started yet")
        return self._port

    def _reset_files(self) -> None:
        self._remove_private_dir()
        self._saved_tail = None
        self._node_id = None
        self._private_dir = Path(tempfile.mkdtemp(prefix="lkproto-server-"))
        self._config_path = self._private_dir / "livekit.yaml"
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="livekit-server-", suffix=".log", dir=self._log_dir)
            os.close(fd)
            self._log_path = Path(name)
        else:
            self._log_path = self._private_dir / "livekit-server.log"

    def _start_once(self, binary: Path) -> None:
        assert self._config_path is not None
        assert self._log_path is not None
        self._port = self._fixed_port or free_tcp_port()
        self._udp_port = self._fixed_udp_port or free_udp_port()
        stun_port = free_udp_port(avoid=frozenset({self._udp_port}))
        self._config = server_config(
            port=self._port,
            udp_port=self._udp_port,
            stun_port=stun_port,
            api_key=self._api_key,
            api_secret=self._api_secret,
            auto_create=self._auto_create,
            empty_timeout=self._empty_timeout,
            departure_timeout=self._departure_timeout,
            log_level=self._log_level,
            extra_config=self._extra_config,
        )
        try:
            text = json.dumps(self._config, indent=2)
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"extra_config is not JSON-serialisable: {exc}") from exc
        fd = os.open(self._config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

        with self._log_path.open("wb") as log:
            try:
                self._proc = subprocess.Popen(
                    [os.fspath(binary), "--config", os.fspath(self._config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=scrubbed_env(),
                    cwd=self._private_dir,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerError(f"cannot run livekit-server {binary}: {exc}") from exc
        self._wait_ready()

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self._ready_timeout
        # The start line is logged at INFO; with a quieter level only the HTTP probe is left.
        logged = self._log_level.lower() not in ("debug", "info")
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                self._proc = None
                tail = self.log_tail()
                auto_ports = self._fixed_port is None or self._fixed_udp_port is None
                if auto_ports and _PORT_IN_USE in tail:
                    raise _PortTakenError(self._failure("lost a port race", tail))
                raise ServerError(
                    self._failure(f"exited (status {code}) before it was ready", tail)
                )
            if not logged:
                tail = self.log_tail(LOG_TAIL_LINES)
                if READY_LOG_LINE in tail:
                    logged = True
                    match = _NODE_ID_RE.search(tail)
                    self._node_id = match.group(1) if match else None
            elif self._http_ok():
                return
            time.sleep(_POLL_INTERVAL_S)
        self._kill()
        raise ServerError(
            self._failure(f"was not ready within {self._ready_timeout:g} s", self.log_tail())
        )

    def _http_ok(self) -> bool:
        # No proxy handler: an http_proxy in the environment must not capture loopback probes.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.http_url}/", timeout=_HTTP_PROBE_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _failure(self, what: str, tail: str) -> str:
        return (
            f"livekit-server on 127.0.0.1:{self._port} (udp {self._udp_port}) {what}; "
            f"log {self._log_path}, last lines:\n{tail}"
        )

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        for sig, grace in (
            (signal.SIGINT, FIRST_SIGINT_GRACE_S),
            (signal.SIGINT, SECOND_SIGINT_GRACE_S),
            (signal.SIGKILL, None),
        ):
            if proc.poll() is not None:
                break
            _signal_group(proc, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            break
        if proc.poll() is None:
            proc.wait()
        self._proc = None

    def _remove_private_dir(self) -> None:
        private = self._private_dir
        if private is None:
            return
        if self._log_path is not None and self._log_path.parent == private:
            self._saved_tail = self.log_tail(_SAVED_TAIL_LINES)
        shutil.rmtree(private, ignore_errors=True)
        self._private_dir = None


class _PortTakenError(ServerError):
    """An automatically chosen port was taken between choosing it and the server binding it."""


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # start_new_session made the server a group leader, so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


_LIVE_SERVERS: set[LocalServer] = set()


def _stop_all_at_exit() -> None:
    for server in list(_LIVE_SERVERS):
        server.stop()


atexit.register(_stop_all_at_exit)
