"""Fault harness: livekit-server and clients in a private network namespace, with impairments.

Theory of operation
-------------------
A :class:`FaultLab` creates one Linux network namespace per use (``ip netns add``), brings its
``lo`` up and adds a veth pair whose **two ends stay inside it**, each with an address of a private
/24. libwebrtc (the official SDK, Chromium) ignores loopback adapters, so it needs that non-loopback
address; lkproto keeps gathering on ``127.0.0.1``. Both addresses are local to the namespace, so
the kernel routes every packet through the namespace's ``lo`` and nothing leaves it (issue 15,
"Harness facts learnt").

The server is put in the namespace without ``ip netns exec``: a fresh helper thread enters the
namespace with ``setns(2)`` (a thread's network namespace is its own) and starts it from there,
since a child inherits the namespace of the thread that forked it. That way
:class:`~lkproto.testing.LocalServer` runs unchanged inside the namespace, its port choice and
readiness probe included, and restarts on the same ports and keys. Client workers are started with
``ip netns exec`` (:meth:`FaultLab.spawn`), which also gives them the namespace's own ``/sys``.

Impairments are applied inside the namespace only:

- random loss per direction: an nftables ``numgen random`` rule in an **input** hook, matched on
  the server's ICE UDP port (``dport`` = client to server, "up"; ``sport`` = server to client,
  "down"). An output-hook drop would make ``sendto`` fail with EPERM instead of losing the packet.
- full UDP outage: drop every UDP packet to or from the server's ICE port.
- signal-only outage: drop the server's WebSocket TCP port both ways (the connection stalls, it is
  not reset, as on a dead link).
- rate limit: a ``tc`` token bucket (``tbf``) on the namespace's ``lo`` (this kernel has no
  ``netem``).
- server faults: SIGKILL and restart on the same ports and keys; SIGTERM (the server's drain).

The whole nftables table is replaced atomically on every change, so the rule set is always exactly
:attr:`FaultLab.impairment`. Cleanup (workers killed, server stopped, namespace deleted) runs on
``__exit__``, from a :func:`weakref.finalize` finaliser and at interpreter exit; namespaces left
by a process that was killed outright are swept by the next :class:`FaultLab` (their name carries
the creating pid).

Needs root (CAP_SYS_ADMIN for ``setns``, CAP_NET_ADMIN for nftables/tc), ``ip``, ``nft`` and ``tc``
(``tools/setup_faults.sh``); :func:`missing_requirements` says what is absent so tests can skip.

Typical use::

    with FaultLab() as lab:
        worker = lab.spawn_worker({...})  # lkproto.testing.faultworker in the namespace
        lab.set_impairment(Impairment(loss_up=0.1, loss_down=0.1))
        with lab.udp_outage():
            time.sleep(5)
        lab.kill_server()
        lab.restart_server()
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar, cast

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError, ServerError
from lkproto.testing.server import LocalServer, free_tcp_port, free_udp_port

__all__ = [
    "CLIENT_VETH_ADDRESS",
    "SDKS",
    "SERVER_VETH_ADDRESS",
    "Fault",
    "FaultLab",
    "Impairment",
    "LoadResult",
    "Netns",
    "TransferPlan",
    "TransferResult",
    "Worker",
    "missing_requirements",
    "nft_ruleset",
    "outage_fault",
    "percentile",
    "restart_fault",
    "run_load",
    "run_transfer",
    "summarise",
]

SERVER_VETH_ADDRESS: Final = "10.99.0.1"
"""Address of the veth end the server advertises as its non-loopback ICE candidate."""

CLIENT_VETH_ADDRESS: Final = "10.99.0.2"
"""Address of the other veth end (libwebrtc clients gather on it)."""

_PREFIX_LENGTH: Final = 24
_NETNS_DIR: Final = Path("/run/netns")
_NAME_PREFIX: Final = "lkfault"
_NAME_RE: Final = re.compile(rf"^{_NAME_PREFIX}-(\d+)-\d+$")
_CLONE_NEWNET: Final = 0x40000000  # <sched.h>
_NFT_TABLE: Final = "lkfault"
_VETH_NAMES: Final = ("lkf0", "lkf1")
_COMMAND_TIMEOUT_S: Final = 10.0
_THREAD_JOIN_TIMEOUT_S: Final = 120.0
_WORKER_KILL_GRACE_S: Final = 3.0
_LOSS_SCALE: Final = 10_000  # numgen modulus: loss is honoured to 0.01 %
_REQUIRED_TOOLS: Final = ("ip", "nft", "tc")

_T = TypeVar("_T")
_counter = itertools.count()


def missing_requirements() -> str | None:
    """Say why the harness cannot run here, or ``None`` when it can.

    Returns:
        A human-readable reason (not root, a tool missing), for ``pytest.skip``.
    """
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the fault harness needs root (network namespaces, nftables, tc)"
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (run tools/setup_faults.sh)"
    return None


def _run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"fault harness: {' '.join(argv)} failed: {exc}") from exc
    if done.returncode != 0:
        raise ServerError(
            f"fault harness: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_namespaces() -> None:
    # A namespace outlives a test process killed with SIGKILL; its name carries the dead pid.
    if not _NETNS_DIR.is_dir():
        return
    for entry in _NETNS_DIR.iterdir():
        match = _NAME_RE.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(ServerError):
                _run(["ip", "netns", "delete", entry.name])


class Netns:
    """One network namespace with ``lo`` up and an internal veth pair.

    Args:
        name: the namespace name; a fresh ``lkfault-<pid>-<n>`` by default.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{_NAME_PREFIX}-{os.getpid()}-{next(_counter)}"
        self._created = False

    @property
    def exists(self) -> bool:
        """Whether the namespace is present under ``/run/netns``."""
        return (_NETNS_DIR / self.name).exists()

    def create(self) -> None:
        """Create the namespace, bring ``lo`` up and add the veth pair with its two addresses.

        Raises:
            ServerError: a command failed (the half-made namespace is deleted again).
        """
        _run(["ip", "netns", "add", self.name])
        self._created = True
        try:
            a, b = _VETH_NAMES
            for argv in (
                ["link", "set", "lo", "up"],
                ["link", "add", a, "type", "veth", "peer", "name", b],
                ["addr", "add", f"{SERVER_VETH_ADDRESS}/{_PREFIX_LENGTH}", "dev", a],
                ["addr", "add", f"{CLIENT_VETH_ADDRESS}/{_PREFIX_LENGTH}", "dev", b],
                ["link", "set", a, "up"],
                ["link", "set", b, "up"],
            ):
                _run(["ip", "-n", self.name, *argv])
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Delete the namespace (idempotent; its veth pair goes with it)."""
        if self._created or self.exists:
            with contextlib.suppress(ServerError):
                _run(["ip", "netns", "delete", self.name])
        self._created = False

    def exec(self, argv: Sequence[str], *, stdin: str | None = None) -> str:
        """Run a command inside the namespace (``ip netns exec``) and return its stdout.

        Raises:
            ServerError: it failed or took longer than 10 s.
        """
        return _run(["ip", "netns", "exec", self.name, *argv], stdin=stdin)

    def call(self, func: Callable[[], _T], *, timeout: float = _THREAD_JOIN_TIMEOUT_S) -> _T:
        """Run ``func`` in a fresh thread that has entered the namespace, and return its result.

        Sockets ``func`` opens and processes it starts belong to the namespace. The thread is
        used once and ends, so no other code ever runs in it.

        Raises:
            ServerError: the thread could not enter the namespace, or ``func`` took longer than
                ``timeout`` seconds.
            BaseException: whatever ``func`` raised.
        """
        result: list[_T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                _enter(self.name)
                result.append(func())
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        thread = threading.Thread(target=target, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise ServerError(f"fault harness: a call in {self.name} took over {timeout:g} s")
        if error:
            raise error[0]
        return result[0]


def _enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(_NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise ServerError(f"fault harness: setns({name}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Impairment:
    """What the namespace does to traffic; :meth:`FaultLab.set_impairment` applies it.

    Attributes:
        loss_up: probability (0..1) of dropping a UDP packet towards the server's ICE port.
        loss_down: probability of dropping a UDP packet from the server's ICE port.
        udp_blocked: drop every UDP packet to or from the server's ICE port (full media/data
            outage; the signal WebSocket keeps working).
        signal_blocked: drop the server's signalling TCP port both ways.
        rate_kbit: token-bucket rate on the namespace's ``lo`` in kbit/s, or ``None``.
    """

    loss_up: float = 0.0
    loss_down: float = 0.0
    udp_blocked: bool = False
    signal_blocked: bool = False
    rate_kbit: int | None = None

    def __post_init__(self) -> None:
        for name in ("loss_up", "loss_down"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise LocalProtocolError(f"{name} must be a probability in [0, 1], got {value!r}")
        if self.rate_kbit is not None and (isinstance(self.rate_kbit, bool) or self.rate_kbit <= 0):
            raise LocalProtocolError(f"rate_kbit must be positive, got {self.rate_kbit!r}")


def nft_ruleset(
    impairment: Impairment, *, udp_ports: Sequence[int], tcp_ports: Sequence[int]
) -> str:
    """Render the nftables script that replaces the harness table with ``impairment``'s rules.

    Args:
        impairment: what to drop.
        udp_ports: the servers' ICE UDP ports.
        tcp_ports: the servers' signalling TCP ports.

    Returns:
        An ``nft -f`` script: declare the table (a no-op if present), delete it, define it anew,
        so the kernel swaps the rule set in one transaction.
    """
    udp = "{ " + ", ".join(str(p) for p in udp_ports) + " }"
    tcp = "{ " + ", ".join(str(p) for p in tcp_ports) + " }"
    rules: list[str] = []
    if impairment.udp_blocked:
        rules += [f"udp dport {udp} counter drop", f"udp sport {udp} counter drop"]
    if impairment.signal_blocked:
        rules += [f"tcp dport {tcp} counter drop", f"tcp sport {tcp} counter drop"]
    for field, probability in (("dport", impairment.loss_up), ("sport", impairment.loss_down)):
        threshold = round(probability * _LOSS_SCALE)
        if threshold:
            rules.append(
                f"udp {field} {udp} numgen random mod {_LOSS_SCALE} < {threshold} counter drop"
            )
    body = "".join(f"    {rule}\n" for rule in rules)
    return (
        f"table inet {_NFT_TABLE}\n"
        f"delete table inet {_NFT_TABLE}\n"
        f"table inet {_NFT_TABLE} {{\n"
        "  chain input {\n"
        # The input hook: a drop there loses the packet; an output-hook drop fails sendto (EPERM).
        "    type filter hook input priority filter; policy accept;\n"
        f"{body}"
        "  }\n"
        "}\n"
    )


class Worker:
    """A client process in the namespace speaking JSON lines (:mod:`lkproto.testing.faultworker`).

    Every line the process prints to stdout that parses as a JSON object is kept in
    :attr:`messages` (other lines go to :attr:`noise`); stderr goes to a log file.
    """

    def __init__(self, proc: subprocess.Popen[str], label: str, log_path: Path) -> None:
        self.proc = proc
        self.label = label
        self.log_path = log_path
        self.messages: list[dict[str, object]] = []
        self.noise: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"worker-{label}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                with self._cond:
                    if isinstance(message, dict):
                        self.messages.append(message)
                    else:
                        self.noise.append(line.rstrip("\n"))
                    self._cond.notify_all()
        except ValueError:
            pass  # the pipe was closed by our own cleanup while we read: the same as its end
        with self._cond:
            self._cond.notify_all()

    def send(self, command: Mapping[str, object]) -> None:
        """Write one JSON command line to the worker's stdin (ignored once it has exited)."""
        stdin = self.proc.stdin
        if stdin is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stdin.write(json.dumps(dict(command)) + "\n")
            stdin.flush()

    def wait_for(
        self, predicate: Callable[[dict[str, object]], bool], timeout: float
    ) -> dict[str, object]:
        """Return the first message (already received or arriving) that satisfies ``predicate``.

        Raises:
            TimeoutError: none within ``timeout`` seconds, or the worker exited without one (the
                message carries the worker's log tail).
        """
        deadline = time.monotonic() + positive_seconds("timeout", timeout)
        seen = 0
        with self._cond:
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                remaining = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or exited:
                    why = "exited" if exited else f"sent nothing matching within {timeout:g} s"
                    raise TimeoutError(f"worker {self.label} {why}; log:\n{self.log_tail()}")
                self._cond.wait(min(remaining, 0.5))

    def wait_event(self, name: str, timeout: float) -> dict[str, object]:
        """Shorthand for :meth:`wait_for` on ``message["ev"] == name``."""
        return self.wait_for(lambda m: m.get("ev") == name, timeout)

    def wait_nth(self, name: str, index: int, timeout: float) -> dict[str, object]:
        """Wait for the ``index``-th (0-based) message whose ``ev`` is ``name`` and return it.

        Raises:
            TimeoutError: it did not come within ``timeout`` seconds, or the worker exited.
        """
        count = 0

        def nth(message: dict[str, object]) -> bool:
            nonlocal count
            if message.get("ev") != name:
                return False
            count += 1
            return count > index

        return self.wait_for(nth, timeout)

    def events(self, name: str) -> list[dict[str, object]]:
        """Every message received so far whose ``ev`` is ``name``."""
        with self._cond:
            return [m for m in self.messages if m.get("ev") == name]

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the worker's stderr log and unparsed stdout."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        with self._cond:
            last = [json.dumps(m)[:300] for m in self.messages[-5:]]
        tail = text.splitlines()[-lines:] + self.noise[-lines:] + last
        return "\n".join(tail)

    def kill(self) -> None:
        """End the worker: SIGTERM to its process group, SIGKILL after a grace period."""
        proc = self.proc
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_WORKER_KILL_GRACE_S)
        if proc.poll() is None:
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._reader.join(_WORKER_KILL_GRACE_S)


@dataclasses.dataclass
class _Resources:
    """Everything a lab must release; shared with its finaliser (which cannot hold the lab)."""

    netns: Netns
    server: LocalServer | None = None
    workers: list[Worker] = dataclasses.field(default_factory=list)
    log_dir: Path | None = None
    keep_logs: bool = False
    closed: bool = False

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.kill()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        self.netns.delete()
        if self.log_dir is not None and not self.keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)


_LIVE: weakref.WeakSet[FaultLab] = weakref.WeakSet()


@atexit.register
def _release_all_at_exit() -> None:
    for lab in list(_LIVE):
        lab.close()


class FaultLab:
    """A namespace with a livekit-server in it, client workers, and the faults to apply.

    Args:
        server_options: extra keyword arguments for :class:`~lkproto.testing.LocalServer` (for
            example ``log_level``, ``extra_config``); ports and keys are chosen by the lab so a
            restart reuses them.
        log_dir: where worker logs go; a temporary directory removed on close by default.
    """

    def __init__(
        self,
        *,
        server_options: Mapping[str, object] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._server_options = dict(server_options or {})
        for reserved in ("port", "udp_port", "api_key", "api_secret"):
            if reserved in self._server_options:
                raise LocalProtocolError(f"FaultLab chooses {reserved} itself")
        keep = log_dir is not None
        self._resources = _Resources(netns=Netns(), keep_logs=keep)
        if log_dir is not None:
            self._resources.log_dir = Path(log_dir)
        self._impairment = Impairment()
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._port = 0
        self._udp_port = 0
        self._api_key = f"lkfault-{secrets.token_hex(4)}"
        self._api_secret = secrets.token_urlsafe(32)

    # -- properties --------------------------------------------------------------------------

    @property
    def netns(self) -> Netns:
        """The lab's namespace."""
        return self._resources.netns

    @property
    def server(self) -> LocalServer:
        """The livekit-server (running or killed) of this lab.

        Raises:
            LocalProtocolError: before :meth:`start`.
        """
        if self._resources.server is None:
            raise LocalProtocolError("FaultLab has not been started")
        return self._resources.server

    @property
    def url(self) -> str:
        """Signalling URL, valid inside the namespace only (``ws://127.0.0.1:<port>``)."""
        return f"ws://127.0.0.1:{self._port}"

    @property
    def impairment(self) -> Impairment:
        """The impairment in force."""
        return self._impairment

    @property
    def workers(self) -> list[Worker]:
        """Workers spawned so far (alive or not)."""
        return list(self._resources.workers)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the namespace, install the (empty) rule set and start the server in it.

        Raises:
            ServerError: the namespace or the server could not be set up (everything made so
                far is released again).
        """
        reason = missing_requirements()
        if reason is not None:
            raise ServerError(f"fault harness unavailable: {reason}")
        _sweep_stale_namespaces()
        resources = self._resources
        if resources.log_dir is None:
            import tempfile

            resources.log_dir = Path(tempfile.mkdtemp(prefix="lkfault-logs-"))
        resources.log_dir.mkdir(parents=True, exist_ok=True)
        _LIVE.add(self)
        try:
            resources.netns.create()
            self._port, self._udp_port = resources.netns.call(self._pick_ports)
            options = dict(self._server_options)
            extra = dict(options.pop("extra_config", None) or {})  # type: ignore[call-overload]
            resources.server = LocalServer(
                api_key=self._api_key,
                api_secret=self._api_secret,
                port=self._port,
                udp_port=self._udp_port,
                extra_config=_with_veth(extra),
                **options,  # type: ignore[arg-type]
            )
            self._apply_rules()
            self.netns.call(resources.server.start)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _pick_ports() -> tuple[int, int]:
        return free_tcp_port(), free_udp_port()

    def close(self) -> None:
        """Kill the workers, stop the server, delete the namespace; idempotent."""
        _LIVE.discard(self)
        self._finalizer()

    def __enter__(self) -> FaultLab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- impairments -------------------------------------------------------------------------

    def set_impairment(self, impairment: Impairment) -> None:
        """Replace the impairment in force (atomically for the nftables part)."""
        previous = self._impairment
        self._impairment = impairment
        self._apply_rules()
        if impairment.rate_kbit != previous.rate_kbit:
            self._apply_rate(impairment.rate_kbit)

    def update(self, **changes: object) -> None:
        """Change some fields of the impairment in force (``lab.update(loss_up=0.1)``)."""
        self.set_impairment(dataclasses.replace(self._impairment, **changes))  # type: ignore[arg-type]

    def clear(self) -> None:
        """Remove every impairment."""
        self.set_impairment(Impairment())

    @contextlib.contextmanager
    def udp_outage(self) -> Iterator[None]:
        """Block the server's ICE UDP port both ways for the duration of the ``with`` block."""
        self.update(udp_blocked=True)
        try:
            yield
        finally:
            self.update(udp_blocked=False)

    @contextlib.contextmanager
    def signal_outage(self) -> Iterator[None]:
        """Block the server's signalling TCP port both ways for the ``with`` block."""
        self.update(signal_blocked=True)
        try:
            yield
        finally:
            self.update(signal_blocked=False)

    def drop_counters(self) -> str:
        """The harness table with its rule counters (``nft list table``), for diagnostics."""
        return self.netns.exec(["nft", "list", "table", "inet", _NFT_TABLE])

    def _apply_rules(self) -> None:
        script = nft_ruleset(self._impairment, udp_ports=[self._udp_port], tcp_ports=[self._port])
        self.netns.exec(["nft", "-f", "-"], stdin=script)

    def _apply_rate(self, rate_kbit: int | None) -> None:
        if rate_kbit is None:
            with contextlib.suppress(ServerError):  # no qdisc installed: nothing to remove
                self.netns.exec(["tc", "qdisc", "del", "dev", "lo", "root"])
            return
        # Burst: at least one 64 KB loopback frame, or the bucket never passes one.
        burst_bytes = max(rate_kbit * 1000 // 8 // 10, 70_000)
        self.netns.exec(
            [
                "tc",
                "qdisc",
                "replace",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                f"{rate_kbit}kbit",
                "burst",
                str(burst_bytes),
                "latency",
                "400ms",
            ]
        )

    # -- server faults -----------------------------------------------------------------------

    def kill_server(self) -> None:
        """SIGKILL the server (no drain, no leave sent) and reap it."""
        server = self.server
        pid = server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        server.stop()  # reaps the dead process and removes its files

    def restart_server(self) -> None:
        """Start the server again on the same ports and keys (after :meth:`kill_server`).

        Raises:
            ServerError: it did not come up.
        """
        server = self.server
        if server.running:
            raise LocalProtocolError("the server is still running; kill or stop it first")
        self.netns.call(server.start)

    def term_server(self) -> None:
        """Send SIGTERM: the server drains (waits for every participant to leave) and exits."""
        pid = self.server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)

    # -- clients -----------------------------------------------------------------------------

    def token(self, identity: str, room: str, **grants: object) -> str:
        """A join token for ``room`` signed with this lab's key (``grants`` as in
        :meth:`~lkproto.testing.LocalServer.create_token`)."""
        return self.server.create_token(identity, room, **grants)  # type: ignore[arg-type]

    def spawn(self, argv: Sequence[str], *, label: str) -> Worker:
        """Start a process in the namespace with JSON-line stdin/stdout (see :class:`Worker`).

        Args:
            argv: the command.
            label: names the worker's log file and thread.
        """
        log_dir = self._resources.log_dir
        if log_dir is None or self._resources.closed:
            raise LocalProtocolError("FaultLab is not running")
        log_path = log_dir / f"{label}.log"

        # Through `ip netns exec` (it also mounts the namespace's own /sys, so anything that
        # reads interfaces from there sees the namespace's); `ip` execs the command, so the pid
        # is the worker's own.
        def popen() -> subprocess.Popen[str]:
            with log_path.open("w") as log:
                return subprocess.Popen(
                    ["ip", "netns", "exec", self.netns.name, *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    bufsize=1,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

        worker = Worker(popen(), label, log_path)
        self._resources.workers.append(worker)
        return worker

    def spawn_worker(self, config: Mapping[str, object], *, label: str) -> Worker:
        """Start :mod:`lkproto.testing.faultworker` with ``config`` (``url`` added if absent)."""
        full = {"url": self.url, **config}
        argv = [sys.executable, "-m", "lkproto.testing.faultworker", json.dumps(full)]
        return self.spawn(argv, label=label)


def _with_veth(extra: dict[str, object]) -> dict[str, object]:
    from lkproto.testing.server import deep_merge

    # The server offers its veth address next to 127.0.0.1: libwebrtc never pairs loopback.
    base: dict[str, object] = {
        "rtc": {"ips": {"includes": ["127.0.0.1/32", f"{SERVER_VETH_ADDRESS}/32"]}},
    }
    return deep_merge(base, extra)


# -- transfer scenarios: the measurement both the CI tests and benchmarks/faults.py run ---------

SDKS: Final = ("lkproto", "livekit")
"""The client implementations a scenario can drive: lkproto and the official Python SDK."""

_READY_TIMEOUT_S: Final = 60.0
_REPORT_POLL_S: Final = 0.5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TransferPlan:
    """What each sender does in :func:`run_transfer`.

    Attributes:
        packets: reliable packets per sender.
        size: bytes per packet.
        interval_s: pacing between packet starts.
        rpcs: RPC calls after the packets (sequential, measured alone).
        publish_timeout_s: bound on one ``publish_data`` (its outcome is then ``timeout``).
        rpc_timeout_s: ``response_timeout`` of each RPC.
        drain_s: after the sender is done, how long to wait for the receiver to catch up.
        run_timeout_s: bound on the whole sending phase.
        rpc_phase_s: when set, no RPC starts once the RPC phase has lasted this long (the
            result then counts fewer calls than ``rpcs``); bounds a phase whose calls time out.
        log_level: when set, the workers log their SDK at this level into their log files.
    """

    packets: int = 200
    size: int = 1024
    interval_s: float = 0.01
    rpcs: int = 0
    publish_timeout_s: float = 60.0
    rpc_timeout_s: float = 15.0
    drain_s: float = 30.0
    run_timeout_s: float = 300.0
    rpc_phase_s: float | None = None
    log_level: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TransferResult:
    """What happened to one SDK's sender/receiver pair in :func:`run_transfer`.

    Attributes:
        sdk: ``"lkproto"`` or ``"livekit"``.
        attempted: packets the sender tried to publish.
        accepted: ``publish_data`` calls that returned normally.
        failures: outcome name -> count for the calls that did not (exception class or
            ``timeout``).
        received: distinct packets the receiver got.
        lost: accepted packets never received (the silent losses the floor forbids).
        duplicates: packets received more than once.
        reordered: arrivals whose number is below an earlier arrival's.
        corrupt: payloads that did not match their number.
        longest_gap_s: the longest pause between two arrivals.
        throughput_kbps: received payload kbit/s over the first-to-last arrival span.
        resumed_after_s: first arrival after the fault's restore time, minus that time (``None``
            when nothing arrived after it or the fault reported no restore time).
        failures_after_restore: sends started after the restore that failed.
        final_state: the sender's connection state when probed at the end.
        rpc_outcomes: outcome -> count.
        rpc_p50_ms, rpc_p99_ms: latency percentiles of successful RPCs.
        events: ``(role, event, seconds since go)`` for reconnecting/reconnected/disconnected.
        resources: per role (``tx``, ``rx``), ``[asyncio tasks, open fds, threads]`` of the
            worker when ready (``before``) and at the end, connected and idle (``after``):
            anything the faults' reconnects left behind shows as ``after`` above ``before``.
    """

    sdk: str
    attempted: int
    accepted: int
    failures: dict[str, int]
    received: int
    lost: int
    duplicates: int
    reordered: int
    corrupt: int
    longest_gap_s: float
    throughput_kbps: float
    resumed_after_s: float | None
    failures_after_restore: int
    final_state: str | None
    rpc_outcomes: dict[str, int]
    rpc_p50_ms: float | None
    rpc_p99_ms: float | None
    events: list[tuple[str, str, float]]
    resources: dict[str, dict[str, list[int]]] = dataclasses.field(default_factory=dict)

    def leaked(self) -> dict[str, list[int]]:
        """Per role, how many tasks, fds and threads more than when ready (only roles with a
        positive count; a role whose counts are missing shows with an empty list, so that a
        check for ``{}`` cannot pass without counting)."""
        out: dict[str, list[int]] = {}
        for role in ("tx", "rx"):
            counts = self.resources.get(role, {})
            before, after = counts.get("before", []), counts.get("after", [])
            if len(before) != 3 or len(after) != 3:
                out[role] = []
                continue
            extra = [a - b for a, b in zip(after, before, strict=True)]
            if any(n > 0 for n in extra):
                out[role] = extra
        return out

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by the nearest-rank rule, ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


def summarise(
    sdk: str,
    *,
    sends: Sequence[Sequence[object]],
    rpcs: Sequence[Sequence[object]],
    arrivals: Sequence[Sequence[float]],
    corrupt: int,
    size: int,
    go_at: float,
    restored_at: float | None,
    final_state: str | None,
    events: Sequence[tuple[str, str, float]],
) -> TransferResult:
    """Turn a sender's ``done`` and a receiver's ``report`` into a :class:`TransferResult`.

    Args:
        sdk: which SDK the pair ran.
        sends: ``[seq, t_start, t_end, outcome]`` per packet.
        rpcs: ``[t_start, t_end, outcome]`` per call.
        arrivals: ``[seq, t]`` in arrival order.
        corrupt: payloads that did not match.
        size: packet size in bytes.
        go_at: when the sender was told to start (monotonic).
        restored_at: when the fault ended (monotonic), if it has an end.
        final_state: the sender's state at the end.
        events: connection events, times relative to ``go_at``.
    """
    failures: dict[str, int] = {}
    accepted: set[int] = set()
    failures_after = 0
    for seq, t_start, _t_end, outcome in sends:
        if outcome == "ok":
            accepted.add(int(seq))  # type: ignore[call-overload]
        else:
            failures[str(outcome)] = failures.get(str(outcome), 0) + 1
            if restored_at is not None and float(t_start) >= restored_at:  # type: ignore[arg-type]
                failures_after += 1
    seen: dict[int, int] = {}
    reordered = 0
    highest = -1
    times: list[float] = []
    for seq_f, t in arrivals:
        seq = int(seq_f)
        seen[seq] = seen.get(seq, 0) + 1
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
        times.append(float(t))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    throughput = (len(seen) * size * 8 / 1000 / span) if span > 0 else 0.0
    resumed: float | None = None
    if restored_at is not None:
        after = [t for t in times if t >= restored_at]
        resumed = (after[0] - restored_at) if after else None
    rpc_outcomes: dict[str, int] = {}
    latencies: list[float] = []
    for t_start, t_end, outcome in rpcs:
        rpc_outcomes[str(outcome)] = rpc_outcomes.get(str(outcome), 0) + 1
        if outcome == "ok":
            latencies.append((float(t_end) - float(t_start)) * 1000)  # type: ignore[arg-type]
    p50 = percentile(latencies, 0.5)
    p99 = percentile(latencies, 0.99)
    return TransferResult(
        sdk=sdk,
        attempted=len(sends),
        accepted=len(accepted),
        failures=failures,
        received=len(seen),
        lost=len(accepted - seen.keys()),
        duplicates=sum(1 for n in seen.values() if n > 1),
        reordered=reordered,
        corrupt=corrupt,
        longest_gap_s=max(gaps, default=0.0),
        throughput_kbps=throughput,
        resumed_after_s=resumed,
        failures_after_restore=failures_after,
        final_state=final_state,
        rpc_outcomes=rpc_outcomes,
        rpc_p50_ms=p50,
        rpc_p99_ms=p99,
        events=[(role, name, at) for role, name, at in events],
    )


Fault = Callable[[FaultLab], float | None]
"""A fault schedule run while the senders send: it applies faults (sleeping as it needs) and
returns the monotonic time it restored the network/server, or ``None``."""


def outage_fault(kind: str, *, after_s: float, for_s: float) -> Fault:
    """A schedule: wait ``after_s``, block ``kind`` (``"udp"`` or ``"signal"``) for ``for_s``.

    Returns:
        The schedule; it returns the moment the block was lifted.
    """
    if kind not in ("udp", "signal"):
        raise LocalProtocolError(f"outage kind must be 'udp' or 'signal', got {kind!r}")
    positive_seconds("for_s", for_s)

    def schedule(lab: FaultLab) -> float:
        time.sleep(after_s)
        outage = lab.udp_outage() if kind == "udp" else lab.signal_outage()
        with outage:
            time.sleep(for_s)
        return time.monotonic()

    return schedule


def restart_fault(*, after_s: float, down_s: float = 0.0) -> Fault:
    """A schedule: wait ``after_s``, SIGKILL the server, wait ``down_s``, restart it.

    Returns:
        The schedule; it returns the moment the restarted server was ready.
    """

    def schedule(lab: FaultLab) -> float:
        time.sleep(after_s)
        lab.kill_server()
        if down_s > 0:
            time.sleep(down_s)
        lab.restart_server()
        return time.monotonic()

    return schedule


def run_transfer(
    lab: FaultLab,
    plan: TransferPlan,
    fault: Fault | None = None,
    *,
    sdks: Sequence[str] = SDKS,
) -> dict[str, TransferResult]:
    """Run one sender/receiver pair per SDK, each in its own room, under one fault schedule.

    All pairs share the lab's server and namespace and run at the same time, so every SDK meets
    the same fault at the same moment.

    Args:
        lab: a started lab.
        plan: what each sender sends.
        fault: the schedule, started right after the senders are told to go.
        sdks: which SDKs to run.

    Returns:
        A result per SDK.

    Raises:
        TimeoutError: a worker did not get ready, or a sender did not finish within
            ``plan.run_timeout_s`` (the message carries its log).
    """
    for sdk in sdks:
        if sdk not in SDKS:
            raise LocalProtocolError(f"unknown sdk {sdk!r}; expected one of {SDKS}")
    pairs: dict[str, tuple[Worker, Worker]] = {}
    for sdk in sdks:
        room = f"{sdk}-{secrets.token_hex(4)}"
        common: dict[str, object] = {"sdk": sdk, "size": plan.size}
        if plan.log_level is not None:
            common["log_level"] = plan.log_level
        rx = lab.spawn_worker(
            {**common, "role": "receiver", "token": lab.token("rx", room)}, label=f"{sdk}-rx"
        )
        tx = lab.spawn_worker(
            {
                **common,
                "role": "sender",
                "token": lab.token("tx", room),
                "peer": "rx",
                "packets": plan.packets,
                "interval_s": plan.interval_s,
                "rpcs": plan.rpcs,
                "publish_timeout_s": plan.publish_timeout_s,
                "rpc_timeout_s": plan.rpc_timeout_s,
                "rpc_phase_s": plan.rpc_phase_s,
            },
            label=f"{sdk}-tx",
        )
        pairs[sdk] = (tx, rx)
    for tx, rx in pairs.values():
        rx.wait_event("ready", _READY_TIMEOUT_S)
        tx.wait_event("ready", _READY_TIMEOUT_S)
    go_at = time.monotonic()
    for tx, _rx in pairs.values():
        tx.send({"cmd": "go"})
    restored_at = fault(lab) if fault is not None else None
    deadline = go_at + plan.run_timeout_s
    done: dict[str, dict[str, object]] = {}
    for sdk, (tx, _rx) in pairs.items():
        done[sdk] = tx.wait_event("done", max(deadline - time.monotonic(), 1.0))
    results: dict[str, TransferResult] = {}
    for sdk, (tx, rx) in pairs.items():
        sends = done[sdk]["sends"]
        accepted = {s[0] for s in sends if s[3] == "ok"}  # type: ignore[attr-defined]
        report = _drain(rx, accepted, plan.drain_s)
        probes = {}
        for role, worker in (("tx", tx), ("rx", rx)):
            worker.send({"cmd": "probe"})
            probes[role] = worker.wait_event("probe", 20.0)
        probe = probes["tx"]
        resources = {
            role: {
                "before": list(worker.wait_event("ready", 1.0).get("resources") or []),  # type: ignore[call-overload]
                "after": list(probes[role].get("resources") or []),  # type: ignore[call-overload]
            }
            for role, worker in (("tx", tx), ("rx", rx))
        }
        events = [
            (role, str(m["ev"]), float(m["t"]) - go_at)  # type: ignore[arg-type]
            for role, worker in (("tx", tx), ("rx", rx))
            for m in worker.messages
            if m.get("ev") in ("reconnecting", "reconnected", "disconnected")
        ]
        results[sdk] = summarise(
            sdk,
            sends=sends,  # type: ignore[arg-type]
            rpcs=done[sdk]["rpcs"],  # type: ignore[arg-type]
            arrivals=report["arrivals"],  # type: ignore[arg-type]
            corrupt=int(report["corrupt"]),  # type: ignore[call-overload]
            size=plan.size,
            go_at=go_at,
            restored_at=restored_at,
            final_state=probe.get("state"),  # type: ignore[arg-type]
            events=events,
        )
        results[sdk] = dataclasses.replace(results[sdk], resources=resources)
    for tx, rx in pairs.values():
        tx.send({"cmd": "stop"})
        rx.send({"cmd": "stop"})
    return results


def _drain(rx: Worker, accepted: set[object], drain_s: float) -> dict[str, object]:
    """Ask the receiver for reports until it has every accepted packet or ``drain_s`` passed."""
    deadline = time.monotonic() + drain_s
    for _ in range(int(drain_s / _REPORT_POLL_S) + 2):
        index = len(rx.events("report"))
        rx.send({"cmd": "report"})
        report = rx.wait_nth("report", index, 10.0)
        got = {a[0] for a in report["arrivals"]}  # type: ignore[attr-defined]
        if accepted <= got or time.monotonic() >= deadline:
            return report
        time.sleep(_REPORT_POLL_S)
    return report


# -- load: many lkproto participants over a few processes ---------------------------------------

_LOAD_SETTLE_S: Final = 1.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """What :func:`run_load` measured.

    Attributes:
        participants: participants asked for.
        processes: worker processes they were spread over.
        duration_s: sending time.
        joined: participants whose ``connect()`` returned.
        join_failures: identity -> error.
        join_p50_s, join_p90_s, join_max_s: ``connect()`` wall times.
        sent: reliable packets sent in all.
        expected: deliveries expected (each packet to every other joined participant).
        delivered: distinct deliveries.
        lost: ``expected - delivered``.
        duplicates: deliveries of a packet already received.
        settle_s: how long after the senders stopped the last packet arrived (or the bound).
        attributes: attribute changes made in all.
        cpu_per_participant: CPU seconds per second of sending, per participant (1.0 = a core).
        rss_kib_per_participant: the workers' resident memory divided by the participants.
    """

    participants: int
    processes: int
    duration_s: float
    joined: int
    join_failures: dict[str, str]
    join_p50_s: float | None
    join_p90_s: float | None
    join_max_s: float | None
    sent: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    settle_s: float
    attributes: int
    cpu_per_participant: float
    rss_kib_per_participant: float

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def _load_counts(
    reports: Sequence[dict[str, object]], joined: Mapping[str, float]
) -> tuple[int, int, int, dict[str, int], dict[str, dict[str, object]]]:
    """Expected and distinct deliveries, duplicates, packets per sender, records per identity."""
    records: dict[str, dict[str, object]] = {}
    for report in reports:
        records.update(cast("dict[str, dict[str, object]]", report["participants"]))
    sent_by = {n: cast(int, r["sent"]) for n, r in records.items()}
    expected = delivered = duplicates = 0
    for receiver, record in records.items():
        if receiver not in joined:
            continue
        recv = cast("dict[str, list[int]]", record["recv"])
        for sender, count in sent_by.items():
            if sender == receiver or sender not in joined:
                continue
            expected += count
            distinct, dups = recv.get(sender, [0, 0])
            delivered += min(distinct, count)
            duplicates += dups
    return expected, delivered, duplicates, sent_by, records


def run_load(
    lab: FaultLab,
    *,
    participants: int,
    processes: int,
    duration_s: float,
    packet_interval_s: float = 1.0,
    attribute_interval_s: float = 10.0,
    join_gap_s: float = 0.1,
    join_timeout_s: float = 300.0,
    log_level: str | None = None,
    settle_s: float = 20.0,
) -> LoadResult:
    """Put ``participants`` lkproto participants in one room, spread over ``processes`` workers.

    Every participant broadcasts one reliable packet every ``packet_interval_s`` and changes an
    attribute every ``attribute_interval_s`` for ``duration_s``; then every receiver's record is
    compared with every sender's count (:mod:`lkproto.testing.loadworker`).

    Raises:
        TimeoutError: a worker did not join or report in time.
    """
    if participants < 2 or not 1 <= processes <= participants:
        raise LocalProtocolError("need >= 2 participants and 1..participants processes")
    positive_seconds("duration_s", duration_s)
    room = f"load-{secrets.token_hex(4)}"
    names = [f"p{i:03d}" for i in range(participants)]
    workers: list[Worker] = []
    for w in range(processes):
        mine = names[w::processes]
        config = {
            "url": lab.url,
            "participants": [[n, lab.token(n, room, can_update_own_metadata=True)] for n in mine],
            "room_size": participants,
            "log_level": log_level,
            "packet_interval_s": packet_interval_s,
            "attribute_interval_s": attribute_interval_s,
            "join_gap_s": join_gap_s * processes,
        }
        argv = [sys.executable, "-m", "lkproto.testing.loadworker", json.dumps(config)]
        workers.append(lab.spawn(argv, label=f"load-{w}"))
    joined: dict[str, float] = {}
    failures: dict[str, str] = {}
    for worker in workers:
        message = worker.wait_event("joined", join_timeout_s)
        joined.update(cast("dict[str, float]", message["join_s"]))
        failures.update(cast("dict[str, str]", message["failed"]))

    def snapshot() -> list[dict[str, object]]:
        reports = []
        for worker in workers:
            index = len(worker.events("report"))
            worker.send({"cmd": "report"})
            reports.append(worker.wait_nth("report", index, 60.0))
        return reports

    before = snapshot()
    for worker in workers:
        worker.send({"cmd": "go"})
    time.sleep(duration_s)
    for worker in workers:
        worker.send({"cmd": "halt"})
    halted = time.monotonic()
    # Late deliveries are not losses: poll until every packet arrived or the settle bound passed.
    for _ in range(int(settle_s / _LOAD_SETTLE_S) + 1):
        time.sleep(_LOAD_SETTLE_S)
        after = snapshot()
        counts = _load_counts(after, joined)
        if counts[1] >= counts[0] or time.monotonic() - halted >= settle_s:
            break
    settled = time.monotonic() - halted
    for worker in workers:
        worker.send({"cmd": "stop"})
    expected, delivered, duplicates, sent_by, records = counts
    cpu = sum(
        cast(float, a["cpu_s"]) - cast(float, b["cpu_s"])
        for a, b in zip(after, before, strict=True)
    )
    rss = sum(int(a["rss_kib"] or 0) for a in after)  # type: ignore[call-overload]
    busy_s = duration_s + settled
    times = list(joined.values())
    return LoadResult(
        participants=participants,
        processes=processes,
        duration_s=duration_s,
        joined=len(joined),
        join_failures=failures,
        join_p50_s=percentile(times, 0.5),
        join_p90_s=percentile(times, 0.9),
        join_max_s=max(times, default=None),
        sent=sum(sent_by.values()),
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicates=duplicates,
        settle_s=settled,
        attributes=sum(int(r["attributes"]) for r in records.values()),  # type: ignore[call-overload]
        cpu_per_participant=cpu / busy_s / participants,
        rss_kib_per_participant=rss / participants,
    )
