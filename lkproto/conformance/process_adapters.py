"""Clients in other languages, each driven as a child process over JSON lines.

The runner stays in Python; a client written against another SDK is a small program that reads
requests on its stdin and writes replies and events on its stdout, one JSON object per line
(UTF-8, ``\\n``-terminated, nothing else on stdout; logs go to stderr). One process is one
client (one ``Room``), started by :meth:`ProcessClient.connect` and ended by
:meth:`ProcessClient.close`.

The protocol (version 1):

- The child starts with ``{"event": "ready", "protocol": 1, "sdk": "<package> <version>"}``.
- A request is ``{"id": <int>, "op": "<name>", ...arguments}``. The child answers every request
  exactly once, in any order, with ``{"id": <int>, "ok": true, "value": <any>}`` or
  ``{"id": <int>, "ok": false, "kind": K, "message": str}`` where ``K`` is ``unsupported``
  (the SDK cannot do it: the scenario reports ``unsupported``), ``rpc_error`` (with ``code``
  and ``data``), ``join_refused`` (with ``status``, an int or null) or ``error``.
- Events are lines without ``id``: ``{"event": "data", "payload_b64", "sender", "topic",
  "reliable"}`` (``reliable`` null when the SDK does not tell the kind), ``{"event": "stream",
  "kind": "text"|"bytes", "topic", "sender", "payload_b64", "error", "attributes", "name"}``,
  ``{"event": "rpc", "method", "caller", "payload"}``, ``{"event": "state", "connected":
  bool}``, ``{"event": "reconnected"}``, ``{"event": "left", "identity"}`` and ``{"event":
  "disconnected", "reason": int|null, "detail": str}`` (``reason`` null when the SDK reports
  no ``DisconnectReason`` value, ``detail`` its own words).
- Operations and their arguments (bytes are base64 in ``*_b64`` strings): ``connect {url,
  token, single_pc: bool|null}``, ``disconnect``, ``local_sid``, ``remotes`` (a list of
  ``{identity, sid, name, metadata, attributes, kind, tracks: {sid: muted}}``),
  ``room_metadata``, ``rtt_ms``, ``simulate {kind}`` (one of ``SIMULATIONS``), ``publish_data
  {payload_b64, reliable, topic, destinations}``, ``watch {kind, topic}``, ``send_text {text,
  topic, destinations, attributes}``, ``send_bytes {payload_b64, topic, name}``, ``perform_rpc
  {destination, method, payload, timeout_s}``, ``register_rpc {method, mode, code, message,
  data, delay_s}``, ``set_metadata {value}``, ``set_name {value}``, ``set_attributes
  {attributes}``, ``publish_tone {freq, opus_b64: [packet, ...]}`` (the packets: one second of
  the tone as 20 ms Opus frames, for SDKs that publish encoded audio), ``set_tone_muted
  {muted}``, ``hear_tone {identity, seconds}`` (the value: ``{"pcm_b64": ...}`` with 48 kHz
  mono int16 samples, or ``{"opus_b64": [...]}`` with the received Opus payloads, decoded
  here), ``exit``.

Adapters:

- ``livekit-go``: ``github.com/livekit/server-sdk-go/v2`` (pion), ``adapters_go/main.go``,
  built with ``go build`` into the lkproto cache on first use (:func:`ensure_go_adapter`).
- ``livekit-node``: npm ``@livekit/rtc-node`` (the Rust FFI in an npm platform package),
  ``adapters_node/adapter.mjs``, installed with ``npm ci`` into the cache on first use
  (:func:`ensure_node_adapter`).

When a toolchain is missing or a build fails, every scenario of that adapter is
``unsupported`` with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from lkproto.conformance import _audio
from lkproto.conformance._registry import Unsupported
from lkproto.conformance.adapters import (
    CAPABILITIES,
    Client,
    ClientFactory,
    DataMsg,
    JoinRefused,
    PeerView,
    RpcBehaviour,
    RpcFailure,
    StreamMsg,
)
from lkproto.testing import scaled

__all__ = [
    "BUILD_TIMEOUT_S",
    "GO_ADAPTER_DIR",
    "NODE_ADAPTER_DIR",
    "PROTOCOL_VERSION",
    "GoClient",
    "NodeClient",
    "ProcessClient",
    "ensure_go_adapter",
    "ensure_node_adapter",
    "go_factory",
    "node_factory",
]

PROTOCOL_VERSION: Final = 1
"""The JSON-lines protocol version the children announce in their ``ready`` line."""

GO_ADAPTER_DIR: Final = Path(__file__).resolve().parent / "adapters_go"
"""Source of the livekit-go adapter child (a Go module built on first use)."""
NODE_ADAPTER_DIR: Final = Path(__file__).resolve().parent / "adapters_node"
"""Source of the livekit-node adapter child (an npm package installed on first use)."""

BUILD_TIMEOUT_S: Final = 1800.0
"""Upper bound of one ``go build`` / ``npm ci``: a cold Go build of pion and the SDK takes
minutes on two loaded cores."""

_CALL_TIMEOUT_S: Final = 120.0
"""A request the child never answers fails after this (scaled); scenarios bound tighter."""

_READY_TIMEOUT_S: Final = 30.0
_EXIT_TIMEOUT_S: Final = 5.0
_LINE_LIMIT_BYTES: Final = 64 * 1024 * 1024
_STDERR_LINES: Final = 30
_LOUD_RMS: Final = 0.01
_OPUS_FRAME_SAMPLES: Final = 960  # 20 ms at 48 kHz

# server-sdk-go reduces the server's DisconnectReason to a few strings (callback.go
# GetDisconnectionReason); the ones that map back to exactly one protocol value.
_GO_REASONS: Final = {
    "leave requested by user": 1,  # CLIENT_INITIATED
    "duplicate identity": 2,  # DUPLICATE_IDENTITY
    "removed by server": 4,  # PARTICIPANT_REMOVED
    "remote user unavailable": 14,  # USER_UNAVAILABLE
    "rejected by remote user": 15,  # USER_REJECTED
    "room closed": 10,  # ROOM_CLOSED
}


class ProcessClient(Client):
    """A :class:`Client` whose SDK runs in a child process speaking the protocol above.

    Subclasses set :attr:`adapter`, :attr:`capabilities`, :attr:`tone_input` and
    :meth:`command`.
    """

    tone_input: ClassVar[str] = "pcm"
    """``opus``: :meth:`publish_tone` sends the tone pre-encoded (the SDK has no encoder)."""

    def __init__(self, identity: str) -> None:
        super().__init__(identity)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._starting: asyncio.Lock | None = None
        self._connected = False
        self._reason: int | None = None
        self._reason_detail = ""
        self.sdk = ""
        self.refusal: str | None = None
        """Why this adapter cannot run here (set by the factory); every start raises it."""

    # -- what subclasses provide -----------------------------------------------------------------

    def command(self) -> list[str]:
        """The child's argv.

        Raises:
            Unsupported: the adapter cannot run here (toolchain missing, build failed).
        """
        raise self._unsupported("start its process")

    # -- process and requests --------------------------------------------------------------------

    async def _start(self) -> None:
        if self._proc is not None:
            return
        if self.refusal is not None:
            raise Unsupported(self.refusal)
        # Two first requests at once must not start two children.
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._proc is None:
                await self._spawn()

    async def _spawn(self) -> None:
        argv = await asyncio.to_thread(self.command)
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT_BYTES,
        )
        self._reader = asyncio.ensure_future(self._read_stdout())
        self._stderr_task = asyncio.ensure_future(self._read_stderr())
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._ready), scaled(_READY_TIMEOUT_S))
        except TimeoutError:
            raise RuntimeError(f"{self.adapter} process sent no ready line{self._tail()}") from None
        if hello.get("protocol") != PROTOCOL_VERSION:
            raise RuntimeError(f"{self.adapter} speaks protocol {hello.get('protocol')!r}")
        self.sdk = str(hello.get("sdk") or "")

    def _tail(self) -> str:
        return (": " + " | ".join(self._stderr)) if self._stderr else ""

    async def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    self._stderr.append(f"(not JSON on stdout) {line[:200]!r}")
                    continue
                if isinstance(msg, dict):
                    self._dispatch(msg)
        finally:
            code = await proc.wait()
            self._connected = False
            error = RuntimeError(f"{self.adapter} process exited with {code}{self._tail()}")
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(error)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            future = self._pending.pop(int(msg["id"]), None)
            if future is None or future.done():
                return
            if msg.get("ok"):
                future.set_result(msg.get("value"))
            else:
                future.set_exception(self._error(msg))
            return
        event = msg.get("event")
        if event is None:
            # An SDK's own JSON log line (pino writes to stdout): kept with the stderr tail.
            self._stderr.append(json.dumps(msg)[:300])
        elif event == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
        elif event == "data":
            reliable = msg.get("reliable")
            self.received.append(
                DataMsg(
                    payload=base64.b64decode(msg.get("payload_b64") or ""),
                    sender=msg.get("sender") or None,
                    topic=str(msg.get("topic") or ""),
                    reliable=None if reliable is None else bool(reliable),
                )
            )
        elif event == "stream":
            self.streams.append(StreamMsg.from_json(msg, sender_key="sender"))
        elif event == "rpc":
            self.rpc_calls.append(
                (str(msg["method"]), str(msg.get("caller") or ""), str(msg.get("payload") or ""))
            )
        elif event == "state":
            self._connected = bool(msg.get("connected"))
        elif event == "reconnected":
            self.reconnected += 1
            self._connected = True
        elif event == "left":
            self.left.append(str(msg.get("identity")))
        elif event == "disconnected":
            self._connected = False
            reason = msg.get("reason")
            self._reason_detail = str(msg.get("detail") or "")
            self._reason = int(reason) if isinstance(reason, int) else -1

    def _error(self, msg: dict[str, Any]) -> Exception:
        kind = msg.get("kind")
        message = str(msg.get("message") or "")
        if kind == "unsupported":
            return Unsupported(f"{self.adapter}: {message}")
        if kind == "rpc_error":
            return RpcFailure(int(msg.get("code") or 0), message, str(msg.get("data") or ""))
        if kind == "join_refused":
            status = msg.get("status")
            return JoinRefused(status if isinstance(status, int) else None, message)
        return RuntimeError(f"{self.adapter}: {message}")

    async def _call(self, op: str, **args: Any) -> Any:
        await self._start()
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        if proc.returncode is not None:
            raise RuntimeError(f"{self.adapter} process exited with {proc.returncode}")
        self._next_id += 1
        ident = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        proc.stdin.write(json.dumps({"id": ident, "op": op, **args}).encode() + b"\n")
        try:
            await proc.stdin.drain()
            return await asyncio.wait_for(future, scaled(_CALL_TIMEOUT_S))
        finally:
            self._pending.pop(ident, None)

    # -- the Client interface --------------------------------------------------------------------

    @property
    def disconnect_reason(self) -> int | None:
        """The ``DisconnectReason`` value, or ``None`` while connected.

        Raises:
            Unsupported: the SDK reported a reason that maps to no single protocol value.
        """
        if self._reason == -1:
            raise Unsupported(
                f"{self.adapter} reports no DisconnectReason value for this leave "
                f"(it said {self._reason_detail!r})"
            )
        return self._reason

    @disconnect_reason.setter
    def disconnect_reason(self, value: int | None) -> None:
        self._reason = value

    async def connect(self, url: str, token: str, *, single_pc: bool | None = None) -> None:
        await self._call("connect", url=url, token=token, single_pc=single_pc)
        self._connected = True

    async def disconnect(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            await self._call("disconnect")
            self._connected = False

    async def close(self) -> None:
        proc = self._proc
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.disconnect(), scaled(15.0))
                with contextlib.suppress(Exception):
                    assert proc.stdin is not None
                    proc.stdin.write(b'{"id": 0, "op": "exit"}\n')
                    await proc.stdin.drain()
                    proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), _EXIT_TIMEOUT_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(proc.wait(), _EXIT_TIMEOUT_S)
        finally:
            for task in (self._reader, self._stderr_task):
                if task is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(task, _EXIT_TIMEOUT_S)

    @property
    def connected(self) -> bool:
        return self._connected

    async def local_sid(self) -> str:
        return str(await self._call("local_sid"))

    async def remotes(self) -> dict[str, PeerView]:
        got = await self._call("remotes")
        return {str(p["identity"]): PeerView.from_json(p) for p in got or ()}

    async def room_metadata(self) -> str:
        return str(await self._call("room_metadata") or "")

    async def rtt_ms(self) -> float | None:
        value = await self._call("rtt_ms")
        return None if value is None else float(value)

    async def simulate(self, kind: str) -> None:
        await self._call("simulate", kind=kind)

    async def publish_data(
        self,
        payload: bytes,
        *,
        reliable: bool = True,
        topic: str = "",
        destinations: Sequence[str] = (),
    ) -> None:
        await self._call(
            "publish_data",
            payload_b64=base64.b64encode(payload).decode(),
            reliable=reliable,
            topic=topic,
            destinations=list(destinations),
        )

    async def watch_text(self, topic: str) -> None:
        await self._call("watch", kind="text", topic=topic)

    async def watch_bytes(self, topic: str) -> None:
        await self._call("watch", kind="bytes", topic=topic)

    async def send_text(
        self,
        text: str,
        *,
        topic: str,
        destinations: Sequence[str] = (),
        attributes: dict[str, str] | None = None,
    ) -> None:
        await self._call(
            "send_text",
            text=text,
            topic=topic,
            destinations=list(destinations),
            attributes=attributes or {},
        )

    async def send_bytes(self, data: bytes, *, topic: str, name: str = "blob") -> None:
        await self._call(
            "send_bytes", payload_b64=base64.b64encode(data).decode(), topic=topic, name=name
        )

    async def perform_rpc(
        self, destination: str, method: str, payload: str, *, timeout_s: float = 10.0
    ) -> str:
        return str(
            await self._call(
                "perform_rpc",
                destination=destination,
                method=method,
                payload=payload,
                timeout_s=timeout_s,
            )
        )

    async def _register_rpc(self, method: str, behaviour: RpcBehaviour) -> None:
        await self._call(
            "register_rpc",
            method=method,
            mode=behaviour.mode,
            code=behaviour.code,
            message=behaviour.message,
            data=behaviour.data,
            delay_s=behaviour.delay_s,
        )

    async def set_metadata(self, metadata: str) -> None:
        await self._call("set_metadata", value=metadata)

    async def set_name(self, name: str) -> None:
        await self._call("set_name", value=name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await self._call("set_attributes", attributes=attributes)

    async def publish_tone(self, freq: float) -> str:
        packets: list[str] = []
        if self.tone_input == "opus":
            encoded = await asyncio.to_thread(_opus_tone, freq)
            packets = [base64.b64encode(p).decode() for p in encoded]
        return str(await self._call("publish_tone", freq=freq, opus_b64=packets))

    async def set_tone_muted(self, muted: bool) -> None:
        await self._call("set_tone_muted", muted=muted)

    async def hear_tone(self, identity: str, seconds: float = 1.0) -> float:
        got = await self._call("hear_tone", identity=identity, seconds=seconds)
        if got.get("opus_b64") is not None:
            packets = [base64.b64decode(p) for p in got["opus_b64"]]
            pcm = await asyncio.to_thread(_opus_decode, packets)
        else:
            pcm = base64.b64decode(got.get("pcm_b64") or "")
        return _audio.peak_frequency(_steady(pcm, seconds))


def _steady(pcm: bytes, seconds: float) -> bytes:
    """``seconds`` of ``pcm`` from 0.25 s after the first audible 10 ms (the same window the
    in-process adapters measure: past the jitter buffer's start-up)."""
    frame = _audio.FRAME_SAMPLES * 2
    start = 0
    while start + frame <= len(pcm) and _audio.rms(pcm[start : start + frame]) < _LOUD_RMS:
        start += frame
    start += _audio.SAMPLE_RATE // 4 * 2
    return pcm[start : start + int(seconds * _audio.SAMPLE_RATE) * 2]


def _opus_tone(freq: float) -> list[bytes]:
    """One second of a sine at ``freq`` as 20 ms mono Opus packets (PyAV's libopus); a whole
    number of periods per second at the tones the scenarios use, so it loops seamlessly."""
    import av

    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = _audio.SAMPLE_RATE
    codec.layout = "mono"
    codec.format = av.AudioFormat("s16")
    codec.bit_rate = 64_000
    packets: list[bytes] = []
    for n in range(0, _audio.SAMPLE_RATE, _OPUS_FRAME_SAMPLES):
        frame = av.AudioFrame(format="s16", layout="mono", samples=_OPUS_FRAME_SAMPLES)
        frame.planes[0].update(_audio.sine_frame(freq, n, _OPUS_FRAME_SAMPLES))
        frame.sample_rate = _audio.SAMPLE_RATE
        frame.pts = n
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


def _opus_decode(packets: list[bytes]) -> bytes:
    """Decode Opus payloads to 48 kHz mono int16 (PyAV)."""
    import av

    codec = av.CodecContext.create("opus", "r")
    assert isinstance(codec, av.AudioCodecContext)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=_audio.SAMPLE_RATE)
    out: list[bytes] = []
    for payload in packets:
        try:
            frames = codec.decode(av.Packet(payload))
        except av.error.FFmpegError:
            continue
        for frame in frames:
            for converted in resampler.resample(frame):
                out.append(bytes(converted.planes[0])[: converted.samples * 2])
    return b"".join(out)


# -- building and installing the children ---------------------------------------------------------


def _cache_dir() -> Path:
    from lkproto.testing.install import default_cache_dir

    return default_cache_dir()


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_logged(command: list[str], *, cwd: Path, log: Path, env: dict[str, str]) -> None:
    """Run a build step at low priority, bounded, its output in ``log``.

    Raises:
        Unsupported: the step failed or timed out (the log's tail is in the message).
    """
    from lkproto.testing.install import BUILD_NICENESS

    nice = shutil.which("nice")
    if nice is not None:
        command = [nice, "-n", str(BUILD_NICENESS), *command]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            done = subprocess.run(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unsupported(f"{command[-1]} timed out after {BUILD_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").splitlines()[-8:])
        raise Unsupported(f"{' '.join(command[-3:])} failed ({done.returncode}): {tail}")


@functools.cache
def ensure_go_adapter() -> Path:
    """Build ``adapters_go`` once into ``<cache>/bin`` (keyed by its sources) and return it.

    Raises:
        Unsupported: ``go`` is missing or the build failed (the reason names which).
    """
    go = shutil.which("go")
    if go is None:
        raise Unsupported("the Go toolchain (`go`) is not installed")
    sources = [GO_ADAPTER_DIR / n for n in ("go.mod", "go.sum", "main.go")]
    target = _cache_dir() / "bin" / f"lkproto-conformance-go-{_digest(sources)}"
    if target.is_file():
        return target
    with _locked(target.with_suffix(".lock")):
        if target.is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix="go-adapter-", dir=target.parent))
        try:
            env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=readonly"}
            _run_logged(
                [go, "build", "-trimpath", "-o", str(tmp / "adapter"), "."],
                cwd=GO_ADAPTER_DIR,
                log=_cache_dir() / "logs" / "conformance-go-build.log",
                env=env,
            )
            os.replace(tmp / "adapter", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@functools.cache
def ensure_node_adapter() -> Path:
    """Install ``adapters_node`` (``npm ci`` of its lockfile) into the cache; return the script.

    Raises:
        Unsupported: ``node``/``npm`` is missing or the install failed.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Unsupported("Node.js (`node` and `npm`) is not installed")
    lock = NODE_ADAPTER_DIR / "package-lock.json"
    root = _cache_dir() / "node-adapter" / _digest([NODE_ADAPTER_DIR / "package.json", lock])
    stamp = root / "node_modules" / ".lkproto-installed"
    with _locked(root.with_suffix(".lock")):
        if not stamp.is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(NODE_ADAPTER_DIR / name, root / name)
            # --ignore-scripts: the FFI library comes in the optional platform package, no
            # package needs an install script.
            _run_logged(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=root,
                log=_cache_dir() / "logs" / "conformance-node-install.log",
                env=dict(os.environ),
            )
            stamp.write_text("ok\n")
        # The script is copied beside its node_modules (ES modules resolve from their own path).
        script = root / "adapter.mjs"
        source = (NODE_ADAPTER_DIR / "adapter.mjs").read_bytes()
        if not script.is_file() or script.read_bytes() != source:
            script.write_bytes(source)
    return script


class GoClient(ProcessClient):
    """``livekit-go``: server-sdk-go v2 in ``adapters_go/main.go``."""

    adapter = "livekit-go"
    capabilities = frozenset(CAPABILITIES) - {"rtt", "stream_errors"}
    """server-sdk-go has no RTT accessor and its stream readers end without an error when a
    stream breaks (streams.go ``ReadAll``). A refused join's status is read from the error it
    returns, which names 401, 404 and 503 (engine.go ``validate``)."""
    tone_input = "opus"

    def command(self) -> list[str]:
        return [str(ensure_go_adapter())]

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("event") == "disconnected" and msg.get("reason") is None:
            msg = {**msg, "reason": _GO_REASONS.get(str(msg.get("detail")))}
        super()._dispatch(msg)


class NodeClient(ProcessClient):
    """``livekit-node``: @livekit/rtc-node in ``adapters_node/adapter.mjs``."""

    adapter = "livekit-node"
    capabilities = frozenset(CAPABILITIES) - {"rtt"}
    """The RTT is not public in @livekit/rtc-node (as in the Python SDK on the same FFI)."""

    def command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise Unsupported("Node.js (`node`) is not installed")
        return [node, str(ensure_node_adapter())]


def _factory(cls: type[ProcessClient], prepare: Callable[[], object]) -> ClientFactory:
    """Prepare the child once (build/install, blocking) before the runs; a failure makes every
    client of the adapter refuse with the reason."""
    try:
        prepare()
    except Unsupported as exc:
        reason = str(exc)

        def refuse(identity: str) -> Client:
            client = cls(identity)
            client.refusal = reason
            return client

        return refuse
    return cls


def go_factory() -> ClientFactory:
    """The ``livekit-go`` factory (builds the program on first use)."""
    return _factory(GoClient, ensure_go_adapter)


def node_factory() -> ClientFactory:
    """The ``livekit-node`` factory (installs the npm packages on first use)."""
    return _factory(NodeClient, ensure_node_adapter)
