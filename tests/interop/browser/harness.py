"""livekit-client in headless Chromium as a peer for interop tests.

:class:`BrowserPeer` starts ``node driver.mjs`` (next to this file) and talks to it in
line-delimited JSON over stdin/stdout. The driver serves ``dist/`` (the page and the
livekit-client bundle built by ``tools/setup_browser.sh``) on ``127.0.0.1``, launches Debian's
``/usr/bin/chromium`` through npm ``playwright-core`` with a fresh ``--user-data-dir`` and runs
each op in the page (``page/entry.js``). Every livekit-client ``RoomEvent`` is pushed back as it
happens and recorded here as a dict: ``{"type": "<RoomEvent key>", "seq": n, "t": ms, ...}``, e.g.
``{"type": "DataReceived", "payload_b64": ..., "identity": ..., "kind": "reliable", "topic": ...}``
or ``{"type": "ParticipantConnected", "identity": ..., "sid": ..., "name": ..., ...}``; RPC
handlers registered with :meth:`BrowserPeer.register_rpc` add ``{"type": "RpcInvoked", ...}``.

Typical use::

    async with BrowserPeer() as browser:
        await browser.connect(server.url, token)
        await browser.publish_data(b"hi", topic="chat")
        ev = await browser.wait_event("DataReceived", lambda e: e["topic"] == "chat")
        assert browser.payload(ev) == b"hello"

Loopback (all measured with tcpdump on Chromium 156 / livekit-client 2.23.0, see ``driver.mjs``):
the mandated switches alone already connect (Chromium without a media permission gathers on one
any-address socket, its checks to the server's 127.0.0.1 candidate leave from 127.0.0.1 and pion
pairs them peer-reflexively; ``--allow-loopback-in-peer-connection`` only adds loopback *host*
candidates once a media permission is granted). Two switches keep everything else on loopback:
``--disable-features=WebRtcHideLocalIpsWithMdns`` (no mDNS multicast announcements on eth0) and
``--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost`` (no DNS look-ups
of Google update/account hosts). The page drops non-loopback ICE candidates before livekit-client
signals them (``page/entry.js``), so the server never checks the eth0 address either. Do not add
``--use-fake-ui-for-media-stream``: granting media makes Chromium bind every interface and pick an
eth0-address pair.

Every call has a timeout (scaled by ``LKPROTO_TEST_TIME_SCALE``). On exit the driver is asked to
close; if it does not, its process group is killed, and any Chromium process still using this
peer's private ``--user-data-dir`` is killed by pid; the directory is removed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from lkproto.testing import scaled

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence
    from types import TracebackType

__all__ = [
    "BROWSER_DIR",
    "CHROMIUM",
    "BrowserError",
    "BrowserPeer",
    "BrowserRpcError",
    "BrowserSetupError",
    "check_browser_setup",
    "generated_bytes",
    "started_browser",
]

BROWSER_DIR: Final = Path(__file__).resolve().parent
DRIVER: Final = BROWSER_DIR / "driver.mjs"
BUNDLE: Final = BROWSER_DIR / "dist" / "lk-page.js"
CHROMIUM: Final = Path("/usr/bin/chromium")
SETUP_HINT: Final = "run `bash tools/setup_browser.sh` (installs chromium, npm packages, bundle)"

START_TIMEOUT_S: Final = 60.0
CALL_TIMEOUT_S: Final = 20.0
CLOSE_TIMEOUT_S: Final = 15.0
STDERR_LINES: Final = 400
# asyncio's default 64 KiB line limit is too small for large payloads and event histories.
STREAM_LIMIT: Final = 64 * 1024 * 1024

_log = logging.getLogger("tests.browser")


class BrowserSetupError(RuntimeError):
    """Node, Chromium, the npm packages or the page bundle are missing."""


class BrowserError(Exception):
    """An op failed in the driver or in the page (``name``/``code``/``data`` from the JS error)."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        self.op = op
        self.error = error
        self.name: str = str(error.get("name", "Error"))
        self.js_message: str = str(error.get("message", ""))
        self.code: Any = error.get("code")
        self.data: Any = error.get("data")
        super().__init__(f"{op}: {self.name}: {self.js_message}")


class BrowserRpcError(BrowserError):
    """livekit-client's ``RpcError`` from :meth:`BrowserPeer.perform_rpc` (``code``, ``data``)."""


def check_browser_setup() -> str:
    """Return the path of ``node``, or raise :class:`BrowserSetupError` naming what is missing."""
    missing: list[str] = []
    node = shutil.which("node")
    if node is None:
        missing.append("`node` is not on PATH (install Node.js >= 18 with npm first)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} is missing (Debian package `chromium`)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append(f"{BROWSER_DIR / 'node_modules'} has no playwright-core (npm ci)")
    if not BUNDLE.is_file():
        missing.append(f"{BUNDLE} is missing (node build.mjs)")
    if missing or node is None:
        raise BrowserSetupError(
            "browser harness not set up: " + "; ".join(missing) + f". Fix: {SETUP_HINT}."
        )
    return node


def generated_bytes(size: int, kind: str = "random", seed: int = 1) -> bytes:
    """The bytes ``sendGeneratedBytes`` makes in the page (``generateBytes`` in ``entry.js``).

    ``"random"``: xorshift32 words (little-endian) from ``seed`` (0 means 1), incompressible;
    ``"pattern"``: byte ``i`` is ``(i * 7 + (i >> 11) + seed) & 0xff``, highly compressible.
    """
    if kind == "pattern":
        return bytes((i * 7 + (i >> 11) + seed) & 0xFF for i in range(size))
    if kind != "random":
        raise ValueError(f"unknown kind {kind!r}")
    x = (seed & 0xFFFFFFFF) or 1
    words = []
    for _ in range((size + 3) // 4):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        words.append(x)
    return struct.pack(f"<{len(words)}I", *words)[:size]


def _matches(
    event: dict[str, Any], type_: str | None, predicate: Callable[[dict[str, Any]], bool] | None
) -> bool:
    if type_ is not None and event.get("type") != type_:
        return False
    return predicate is None or bool(predicate(event))


class BrowserPeer:
    """One Chromium tab running livekit-client, driven from asyncio (an async context manager)."""

    def __init__(
        self,
        *,
        call_timeout: float = CALL_TIMEOUT_S,
        start_timeout: float = START_TIMEOUT_S,
        extra_chromium_args: Sequence[str] = (),
        loopback_flags: bool = True,
        name: str = "browser",
    ) -> None:
        """Configure (nothing starts before :meth:`start` / ``async with``).

        Args:
            call_timeout: default timeout of one op, in seconds before scaling.
            start_timeout: timeout for node + Chromium + page load, in seconds before scaling.
            extra_chromium_args: more Chromium switches (experiments only).
            loopback_flags: False drops the driver's extra loopback switches (experiments only).
            name: prefix of this peer's log lines.
        """
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.extra_chromium_args = tuple(extra_chromium_args)
        self.loopback_flags = loopback_flags
        self.name = name
        self.events: list[dict[str, Any]] = []
        """Every event the page pushed, in order (see the module docstring)."""
        self.ready_info: dict[str, Any] = {}
        """The driver's ready line: ``url``, ``versions``, ``flags``, ``user_data_dir``."""
        self._proc: asyncio.subprocess.Process | None = None
        self._user_data_dir: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._event_signal = asyncio.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._tasks: list[asyncio.Task[None]] = []
        self._dead: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def driver_pid(self) -> int | None:
        """The pid of ``node driver.mjs`` (None before start and after close)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def user_data_dir(self) -> str | None:
        """This peer's private Chromium profile (None before start and after close)."""
        return self._user_data_dir

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start node, Chromium and the page; raise :class:`BrowserSetupError` if not set up."""
        node = check_browser_setup()
        self._user_data_dir = tempfile.mkdtemp(prefix="lkproto-chromium-")
        cmd = [node, str(DRIVER), "--user-data-dir", self._user_data_dir, "--remove-user-data-dir"]
        for arg in self.extra_chromium_args:
            cmd += ["--extra-chromium-arg", arg]
        if not self.loopback_flags:
            cmd.append("--no-loopback-flags")
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=BROWSER_DIR,
                start_new_session=True,  # own process group: killable as a whole
                limit=STREAM_LIMIT,
            )
            self._tasks = [
                asyncio.create_task(self._read_stdout(), name=f"{self.name}-stdout"),
                asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr"),
            ]
            self.ready_info = await asyncio.wait_for(self._ready, scaled(self.start_timeout))
        except BaseException as exc:
            tail = self.stderr_tail()
            await self.close()
            if isinstance(exc, TimeoutError | BrowserError):
                raise BrowserError(
                    "start", {"name": type(exc).__name__, "message": f"{exc}\n{tail}"}
                ) from exc
            raise
        _log.info("%s ready: %s", self.name, self.ready_info.get("versions"))

    async def close(self) -> None:
        """Stop the page, Chromium and node; never leaves a process or the profile behind."""
        proc = self._proc
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(Exception):
                    await self.call("close", timeout=CLOSE_TIMEOUT_S / 3)
                try:
                    await asyncio.wait_for(proc.wait(), scaled(CLOSE_TIMEOUT_S))
                except TimeoutError:
                    _log.warning("%s: driver did not exit; killing its process group", self.name)
                    self._killpg(proc.pid, signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 3.0)
                    except TimeoutError:
                        self._killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
            if self._tasks:  # the readers end by themselves at EOF
                await asyncio.wait(self._tasks, timeout=2.0)
        finally:
            # Also on cancellation: node still running means its process group id is still ours.
            if proc is not None and proc.returncode is None:
                self._killpg(proc.pid, signal.SIGKILL)
            # Chromium runs in its own process group (Playwright starts it detached); it exits
            # with node, but if anything of it is left, find it by its private profile path.
            self._kill_profile_users()
            for task in self._tasks:
                if not task.done():
                    task.cancel()
            self._tasks = []
            self._fail_pending("browser peer closed")
            if self._user_data_dir is not None:
                shutil.rmtree(self._user_data_dir, ignore_errors=True)
                self._user_data_dir = None
            self._proc = None
        if proc is not None and proc.returncode is None:
            await proc.wait()

    @staticmethod
    def _killpg(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _kill_profile_users(self) -> None:
        """SIGKILL every process whose command line names this peer's private user-data-dir.

        Playwright starts Chromium in its own process group, so killing node's group is not
        enough if node itself died; the temp profile path identifies our Chromium processes.
        """
        udd = self._user_data_dir
        if not udd:
            return
        needle = f"--user-data-dir={udd}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline.split(b"\0"):
                pid = int(entry.name)
                _log.warning("%s: killing leftover Chromium process %d", self.name, pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    pgid = os.getpgid(pid)
                    if pgid == pid:
                        os.killpg(pgid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    # -- I/O with the driver ---------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        while True:
            line = await stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                self._stderr.append(f"[stdout, not JSON] {line!r}")
                continue
            if "event" in msg:
                self.events.append(msg["event"])
                _log.debug("%s event %s", self.name, msg["event"])
                self._event_signal.set()
                self._event_signal = asyncio.Event()
            elif "id" in msg and msg["id"] is not None:
                op, fut = self._pending.pop(msg["id"], ("?", None))
                if fut is None or fut.done():
                    continue
                if msg.get("ok"):
                    fut.set_result(msg.get("result"))
                else:
                    error = msg.get("error") or {}
                    cls = BrowserRpcError if error.get("name") == "RpcError" else BrowserError
                    fut.set_exception(cls(op, error))
            elif msg.get("ready") and self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
            elif "fatal" in msg:
                self._dead = str(msg["fatal"])
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(
                        BrowserError("start", {"name": "Fatal", "message": self._dead})
                    )
        rc = await self._proc.wait()
        self._dead = self._dead or f"driver exited with status {rc}"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                BrowserError("start", {"name": "Exited", "message": self._dead})
            )
        self._fail_pending(self._dead)
        self._event_signal.set()

    async def _read_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        stderr = self._proc.stderr
        while True:
            line = await stderr.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            _log.debug("%s: %s", self.name, text)

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for op, fut in pending.values():
            if not fut.done():
                fut.set_exception(
                    BrowserError(op, {"name": "DriverGone", "message": why + self._tail_hint()})
                )

    def _tail_hint(self) -> str:
        tail = "\n".join(list(self._stderr)[-30:])
        return f"\n--- driver stderr (last lines) ---\n{tail}" if tail else ""

    def stderr_tail(self, lines: int = 60) -> str:
        """The last lines of the driver's stderr (its log, page console messages, page errors)."""
        return "\n".join(list(self._stderr)[-lines:])

    async def call(
        self,
        op: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (scaled, reported with context)
        **args: Any,
    ) -> Any:
        """Run one op (driver or page, see ``page/entry.js``) and return its result.

        Raises:
            BrowserError: the op failed (``BrowserRpcError`` for an RpcError), the driver is
                gone, or the op took longer than ``timeout`` (default ``call_timeout``), scaled.
        """
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None or self._dead:
            raise BrowserError(op, {"name": "NotRunning", "message": self._dead or "not started"})
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (op, fut)
        line = json.dumps({"id": req_id, "op": op, **args}, separators=(",", ":")) + "\n"
        limit = scaled(self.call_timeout if timeout is None else timeout)
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
            return await asyncio.wait_for(fut, limit)
        except TimeoutError as exc:
            raise BrowserError(
                op, {"name": "Timeout", "message": f"no answer in {limit:.1f} s{self._tail_hint()}"}
            ) from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise BrowserError(op, {"name": "DriverGone", "message": str(exc)}) from exc
        finally:
            self._pending.pop(req_id, None)

    # -- events ----------------------------------------------------------------------------------

    def find_events(
        self,
        type_: str | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
    ) -> list[dict[str, Any]]:
        """Recorded events of ``type_`` (any if None) matching ``predicate``, with seq > since."""
        return [e for e in self.events if e["seq"] > since and _matches(e, type_, predicate)]

    async def wait_event(
        self,
        type_: str | None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (scaled, reported with context)
        *,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first recorded event (seq > ``since``) of ``type_`` matching ``predicate``.

        Looks at what was already recorded first, then waits; ``timeout`` is scaled.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(timeout)
        while True:
            signal_ = self._event_signal
            found = self.find_events(type_, predicate, since=since)
            if found:
                return found[0]
            if self._dead:
                raise BrowserError("wait_event", {"name": "DriverGone", "message": self._dead})
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [e.get("type") for e in self.events[-20:]]
                raise BrowserError(
                    "wait_event",
                    {
                        "name": "Timeout",
                        "message": f"no {type_ or 'event'} matching the predicate in "
                        f"{scaled(timeout):.1f} s; last events: {seen}",
                    },
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal_.wait(), remaining)

    @property
    def last_seq(self) -> int:
        """The seq of the last recorded event (0 if none): pass it as ``since`` to skip history."""
        return self.events[-1]["seq"] if self.events else 0

    def clear_events(self) -> list[dict[str, Any]]:
        """Return the recorded events and forget them."""
        out, self.events = self.events, []
        return out

    @staticmethod
    def payload(event: dict[str, Any]) -> bytes:
        """The bytes of a ``DataReceived`` / ``ByteStreamReceived`` event."""
        return base64.b64decode(event["payload_b64"])

    # -- livekit-client operations ---------------------------------------------------------------

    async def connect(
        self,
        url: str,
        token: str,
        *,
        room_options: dict[str, Any] | None = None,
        connect_options: dict[str, Any] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 (scaled, reported with context)
    ) -> dict[str, Any]:
        """``room.connect(url, token, {rtcConfig: {iceServers: []}, ...connect_options})``.

        ``room_options`` go to ``new Room(...)`` when the page has no Room yet. Returns the room
        info (``connection_state``, ``room_name``, ``local``, ``remote``, ``server_info``).
        """
        result: dict[str, Any] = await self.call(
            "connect",
            url=url,
            token=token,
            room_options=room_options,
            connect_options=connect_options,
            timeout=timeout,
        )
        return result

    async def disconnect(
        self,
        *,
        timeout: float = 15.0,  # noqa: ASYNC109 (scaled, reported with context)
    ) -> dict[str, Any]:
        """``room.disconnect()``; returns the room info afterwards."""
        result: dict[str, Any] = await self.call("disconnect", timeout=timeout)
        return result

    async def info(self) -> dict[str, Any]:
        """Connection state, room name, local and remote participants, server info."""
        result: dict[str, Any] = await self.call("info")
        return result

    async def wait_for_remote(self, identity: str, timeout_s: float) -> None:
        """Poll :meth:`info` until ``identity`` is in the page's roster.

        livekit-client emits ``ParticipantConnected`` only for participants that join after
        it, so the roster is read rather than an event awaited.

        Raises:
            TimeoutError: not there within ``timeout_s`` (scaled).
        """
        async with asyncio.timeout(scaled(timeout_s)):
            while not any(  # noqa: ASYNC110 (polling the page's roster)
                p.get("identity") == identity for p in (await self.info())["remote"]
            ):
                await asyncio.sleep(0.2)

    async def versions(self) -> dict[str, Any]:
        """Versions of chromium, livekit-client, playwright-core and node, plus the flags."""
        result: dict[str, Any] = await self.call("versions")
        return result

    async def publish_data(
        self,
        payload: bytes,
        *,
        topic: str | None = None,
        reliable: bool = True,
        destinations: Iterable[str] | None = None,
    ) -> None:
        """``localParticipant.publishData(payload, {reliable, topic, destinationIdentities})``."""
        await self.call(
            "publishData",
            payload_b64=base64.b64encode(payload).decode(),
            topic=topic,
            reliable=reliable,
            destinations=list(destinations) if destinations is not None else None,
        )

    async def send_text(
        self,
        text: str,
        *,
        topic: str | None = None,
        destinations: Iterable[str] | None = None,
        attributes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``localParticipant.sendText(text, {...})``; returns the TextStreamInfo."""
        result: dict[str, Any] = await self.call(
            "sendText",
            text=text,
            topic=topic,
            destinations=list(destinations) if destinations is not None else None,
            attributes=attributes,
        )
        return result

    async def register_text_stream(self, topic: str) -> None:
        """Record each text stream on ``topic`` as a ``TextStreamReceived`` event (``text``)."""
        await self.call("registerTextStream", topic=topic)

    async def register_byte_stream(self, topic: str) -> None:
        """Record each byte stream on ``topic`` as ``ByteStreamReceived`` (``payload_b64``)."""
        await self.call("registerByteStream", topic=topic)

    async def register_byte_stream_digest(self, topic: str) -> None:
        """Record each byte stream on ``topic`` as ``ByteStreamDigest`` (``size``, ``sha256``
        hex, ``chunks``, ``info``, ``elapsed_ms``): the payload itself stays in the page."""
        await self.call("registerByteStreamDigest", topic=topic)

    async def send_generated_bytes(
        self,
        size: int,
        *,
        method: str = "sendFile",
        kind: str = "random",
        seed: int = 1,
        topic: str | None = None,
        name: str | None = None,
        mime_type: str | None = None,
        attributes: dict[str, str] | None = None,
        destinations: Iterable[str] | None = None,
        compress: bool | None = None,
        chunk_size: int | None = None,
        timeout: float = 120.0,  # noqa: ASYNC109 (scaled, reported with context)
    ) -> dict[str, Any]:
        """Generate ``size`` bytes in the page (:func:`generated_bytes`) and send them with
        ``localParticipant.sendFile`` / ``sendBytes`` / ``streamBytes`` (``method``).

        Returns ``{size, sha256, info, elapsed_ms}`` (``sha256`` from ``crypto.subtle``).
        """
        if method not in {"sendFile", "sendBytes", "streamBytes"}:
            raise ValueError(f"unknown method {method!r}")
        result: dict[str, Any] = await self.call(
            "sendGeneratedBytes",
            size=size,
            method=method,
            kind=kind,
            seed=seed,
            topic=topic,
            name=name,
            mime_type=mime_type,
            attributes=attributes,
            destinations=list(destinations) if destinations is not None else None,
            compress=compress,
            chunk_size=chunk_size,
            timeout=timeout,
        )
        return result

    async def register_rpc(
        self,
        method: str,
        *,
        mode: str = "echo",
        response: str | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
        error_data: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """``room.registerRpcMethod(method, handler)`` in the browser.

        The handler records an ``RpcInvoked`` event (``method``, ``request_id``,
        ``caller_identity``, ``payload``, ``response_timeout_ms``), sleeps ``delay_s``, then by
        ``mode``: ``"echo"`` returns the payload, ``"fixed"`` returns ``response``,
        ``"rpc_error"`` throws ``new RpcError(error_code, error_message, error_data)``,
        ``"throw"`` throws a plain ``Error(error_message)`` (the SDK turns it into 1500).
        Registering a method again replaces its handler.
        """
        if mode not in {"echo", "fixed", "rpc_error", "throw"}:
            raise ValueError(f"unknown rpc mode {mode!r}")
        await self.call(
            "registerRpc",
            method=method,
            mode=mode,
            response=response,
            error_code=error_code,
            error_message=error_message,
            error_data=error_data,
            delay_ms=round(delay_s * 1000),
        )

    async def unregister_rpc(self, method: str) -> None:
        """``room.unregisterRpcMethod(method)``."""
        await self.call("unregisterRpc", method=method)

    async def perform_rpc(
        self,
        destination: str,
        method: str,
        payload: str = "",
        *,
        response_timeout_s: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (scaled, reported with context)
    ) -> str:
        """``localParticipant.performRpc(...)`` from the browser; returns the response payload.

        Raises:
            BrowserRpcError: the RpcError (``code``, ``js_message``, ``data``).
        """
        response_timeout_ms = (
            None if response_timeout_s is None else round(response_timeout_s * 1000)
        )
        if timeout is None:
            timeout = max(self.call_timeout, (response_timeout_s or 15.0) + 10.0)
        result: dict[str, Any] = await self.call(
            "performRpc",
            destination=destination,
            method=method,
            payload=payload,
            response_timeout_ms=response_timeout_ms,
            timeout=timeout,
        )
        return str(result["response"])

    async def set_metadata(self, metadata: str) -> None:
        """``localParticipant.setMetadata(metadata)``."""
        await self.call("setMetadata", metadata=metadata)

    async def set_name(self, name: str) -> None:
        """``localParticipant.setName(name)``."""
        await self.call("setName", name=name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """``localParticipant.setAttributes(attributes)``."""
        await self.call("setAttributes", attributes=attributes)

    async def simulate_scenario(self, scenario: str, arg: Any = None) -> None:
        """``room.simulateScenario(scenario, arg)`` (e.g. ``"signal-reconnect"``)."""
        await self.call("simulateScenario", scenario=scenario, arg=arg)

    async def eval(
        self,
        js: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (scaled, reported with context)
    ) -> Any:
        """Run ``js`` as the body of ``async (lk, room, LK, args) => {...}`` in the page.

        ``room`` is the livekit-client Room (or null), ``LK`` the livekit-client module and
        ``args`` the list of ``args``; return a JSON-serialisable value.
        """
        return await self.call("eval", js=js, args=list(args), timeout=timeout)


@contextlib.asynccontextmanager
async def started_browser(name: str = "web") -> AsyncIterator[BrowserPeer]:
    """A started :class:`BrowserPeer`, closed on exit (the body of the tests' ``browser``
    fixtures).

    Raises:
        BrowserSetupError: node, Chromium, the npm packages or the bundle are missing; the
            message names the fix.
    """
    check_browser_setup()
    async with BrowserPeer(name=name) as peer:
        yield peer
