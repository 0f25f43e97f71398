"""A two-node livekit-server cluster on loopback: :class:`LocalCluster`.

Theory of operation
-------------------
livekit-server becomes a cluster node when its configuration names a Redis server
(``redis.address``): every node registers itself in the Redis hash ``nodes`` (node id -> ``Node``
with its stats, refreshed every ``stats_update_interval``, 2 s by default) and the room -> node
assignment lives in the hash ``room_node_map`` (upstream ``pkg/routing/redisrouter.go``,
``NodesKey``/``NodeRoomKey``). Signalling between nodes goes over Redis too (psrpc).

A room is hosted by exactly one node. Which one is decided when the room is first needed
(``pkg/service/roomallocator.go``, ``SelectRoomNode``): an existing assignment to a node that is
still *available* (stats updated less than 5 s ago, ``selector.AvailableSeconds``) is kept;
otherwise a ``CreateRoom`` request's ``node_id`` wins, else the node selector picks one (default:
any available node, at random). So :meth:`LocalCluster.pin_room` creates the room through
RoomService ``CreateRoom`` with the chosen node's id before anyone joins, and every participant,
whichever node its WebSocket reaches, is then served by that node: a participant connected
through the *other* node has its signalling relayed over Redis to the hosting node, and its media
(ICE) goes straight to the hosting node's UDP port, which the relayed join response advertises.

When the hosting node dies without a clean stop (SIGKILL), its entry stays in ``nodes`` but
its stats stop; about 5 s later it is no longer available, and the next join of the room through
a surviving node re-assigns the room to a live node (a new, empty room with the same name).
A node that stops cleanly removes itself from ``nodes`` at once.

What :class:`LocalCluster` runs:

- one private ``redis-server`` (Debian package; ``tools/setup_cluster.sh``) on a free loopback
  port, without persistence, in a temporary directory;
- ``nodes`` (default 2) :class:`~lkproto.testing.LocalServer` instances, each with its own
  signalling TCP port and ICE UDP mux port (ICE/TCP stays off), the same API key pair, and the
  Redis address; each is restarted on the same ports by :meth:`LocalCluster.restart_node` (it
  comes back with a new node id: livekit-server draws one per process start).

Every start and stop of a process can go through a ``call`` function, so the cluster runs inside a
:class:`~lkproto.testing.FaultLab` namespace with ``call=lab.netns.call`` (the processes inherit
the namespace of the thread that forks them).

Typical use::

    with LocalCluster() as cluster:
        cluster.pin_room("room-1", node=0)
        url_a, url_b = cluster.url(0), cluster.url(1)  # both reach the room on node 0
        token = cluster.create_token("alice", "room-1")
        cluster.kill_node(0)
        cluster.restart_node(0)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError, ServerError
from lkproto.testing._lifecycle import StartStopMixin
from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION, ensure_livekit_server
from lkproto.testing.server import (
    DEFAULT_READY_TIMEOUT_S,
    LocalServer,
    deep_merge,
    free_tcp_port,
    free_udp_port,
)

__all__ = [
    "DEFAULT_NODES",
    "NODES_KEY",
    "PINNED_EMPTY_TIMEOUT_S",
    "ROOM_NODE_KEY",
    "LocalCluster",
    "LocalRedis",
    "cluster_node_config",
    "missing_cluster_requirements",
    "redis_argv",
]

DEFAULT_NODES: Final = 2
"""Nodes of a :class:`LocalCluster` unless told otherwise: the smallest cluster, one node to host
a room and one to relay."""

NODES_KEY: Final = "nodes"
"""Redis hash node id -> ``Node`` (upstream ``pkg/routing/redisrouter.go`` ``NodesKey``)."""

ROOM_NODE_KEY: Final = "room_node_map"
"""Redis hash room name -> hosting node id (upstream ``redisrouter.go`` ``NodeRoomKey``)."""

REDIS_BINARY: Final = "redis-server"
"""The Debian package's executable, looked up on ``PATH``."""

PINNED_EMPTY_TIMEOUT_S: Final = 300
"""``empty_timeout`` :meth:`LocalCluster.pin_room` gives a room (the nodes' own default is 10 s)."""

_REDIS_READY_TIMEOUT_S: Final = 15.0
_REDIS_STOP_GRACE_S: Final = 5.0
_REDIS_IO_TIMEOUT_S: Final = 2.0
_POLL_S: Final = 0.05
# A node registers in `nodes` when its router starts, before it answers HTTP; this bounds the wait
# for every node to be listed (a node that answers HTTP has normally registered already).
_REGISTER_TIMEOUT_S: Final = 10.0
_TWIRP_TIMEOUT_S: Final = 10.0

_T = TypeVar("_T")


def missing_cluster_requirements() -> str | None:
    """Say why :class:`LocalCluster` cannot run here, or ``None`` when it can.

    Returns:
        A reason for ``pytest.skip`` (``redis-server`` not installed).
    """
    if shutil.which(REDIS_BINARY) is None:
        return f"{REDIS_BINARY} is not installed (run tools/setup_cluster.sh)"
    return None


def redis_argv(binary: str | os.PathLike[str], *, port: int, directory: str) -> list[str]:
    """The command line of the private Redis server.

    Args:
        binary: the ``redis-server`` executable.
        port: loopback TCP port.
        directory: working directory (nothing is written there: persistence is off).

    Returns:
        The argv: loopback only, no RDB snapshots, no AOF, no daemon, protected mode off (the
        nodes connect without a password, and only loopback is bound).
    """
    return [
        os.fspath(binary),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--dir",
        directory,
        "--loglevel",
        "warning",
    ]


def cluster_node_config(
    *, redis_port: int, extra_config: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The configuration a cluster node adds to :func:`~lkproto.testing.server.server_config`.

    Args:
        redis_port: the shared Redis server's loopback port.
        extra_config: the caller's overrides, deep-merged over the cluster part.

    Returns:
        The ``extra_config`` tree for :class:`~lkproto.testing.LocalServer`: ``redis.address``
        (which turns the node into a cluster member, upstream ``pkg/routing``: a Redis router
        instead of the local one).
    """
    base: dict[str, object] = {"redis": {"address": f"127.0.0.1:{redis_port}"}}
    return deep_merge(base, extra_config or {})


def _direct(func: Callable[[], _T]) -> _T:
    return func()


def _encode_command(args: Sequence[str]) -> bytes:
    # RESP: an array of bulk strings (https://redis.io/docs/latest/develop/reference/protocol-spec/).
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _RespReader:
    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def close(self) -> None:
        self._file.close()

    def _line(self) -> bytes:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ServerError("redis: connection closed mid-reply")
        return line[:-2]

    def read(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ServerError(f"redis: {rest.decode(errors='replace')}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:size].decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read() for _ in range(count)]
        raise ServerError(f"redis: unexpected reply {line[:40]!r}")


class LocalRedis:
    """A private ``redis-server`` on a loopback port, without persistence.

    Args:
        port: TCP port; a free one by default.
        binary: the executable; ``redis-server`` from ``PATH`` by default.
        call: runs each start/stop (see :class:`LocalCluster`).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        call: Callable[[Callable[[], object]], object] = _direct,
    ) -> None:
        self._fixed_port = port
        self._binary = binary
        self._call = call
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def port(self) -> int:
        """The TCP port (0 before the first start)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start Redis and wait until it answers ``PING``.

        Raises:
            ServerError: not installed, exited, or not ready within 15 s.
        """
        if self.running:
            raise LocalProtocolError("LocalRedis is already running")
        binary = self._binary or shutil.which(REDIS_BINARY)
        if binary is None:
            raise ServerError(f"{REDIS_BINARY} is not installed (run tools/setup_cluster.sh)")
        directory = Path(tempfile.mkdtemp(prefix="lkproto-redis-"))
        self._dir = directory
        log_path = directory / "redis.log"

        def start() -> None:
            self._port = self._fixed_port or free_tcp_port()
            with log_path.open("wb") as log:
                try:
                    self._proc = subprocess.Popen(
                        redis_argv(binary, port=self._port, directory=os.fspath(directory)),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=directory,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise ServerError(f"cannot run {binary}: {exc}") from exc
            deadline = time.monotonic() + _REDIS_READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                with contextlib.suppress(OSError, ServerError):
                    if self._send(("PING",)) == "PONG":
                        return
                time.sleep(_POLL_S)
            tail = log_path.read_text(errors="replace")[-2000:]
            self._stop_process()
            raise ServerError(f"redis-server on 127.0.0.1:{self._port} did not start:\n{tail}")

        try:
            self._call(start)
        except BaseException:
            self.stop()
            raise

    def command(self, *args: str) -> object:
        """Send one command and return its decoded reply (str, int, list or ``None``).

        Raises:
            OSError: no connection.
            ServerError: Redis answered with an error.
        """
        # Through `call`: inside a namespace, Redis's loopback is the namespace's own.
        return self._call(lambda: self._send(args))

    def _send(self, args: Sequence[str]) -> object:
        with socket.create_connection(
            ("127.0.0.1", self._port), timeout=_REDIS_IO_TIMEOUT_S
        ) as sock:
            sock.sendall(_encode_command(args))
            reader = _RespReader(sock)
            try:
                return reader.read()
            finally:
                reader.close()

    def stop(self) -> None:
        """Stop Redis (SIGTERM, then SIGKILL) and remove its directory; idempotent."""
        self._call(self._stop_process)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_REDIS_STOP_GRACE_S)
        if proc.poll() is None:
            proc.wait()
        self._proc = None


class LocalCluster(StartStopMixin):
    """``nodes`` livekit-server processes sharing a private Redis on loopback.

    Usable as a sync or async context manager, or through :meth:`start` / :meth:`stop`; stopped at
    interpreter exit too.

    Args:
        nodes: how many nodes (at least 2).
        api_key: the API key every node accepts; random by default.
        api_secret: its secret; random by default.
        extra_config: deep-merged over each node's configuration (after the Redis address).
        log_level: ``logging.level`` of the nodes.
        log_dir: where node logs are kept after :meth:`stop` (default: private, removed).
        binary: the livekit-server executable; by default :func:`ensure_livekit_server`.
        version: the release to build when ``binary`` is not given.
        ready_timeout: seconds each node's start waits for readiness.
        redis_binary: the ``redis-server`` executable (default: from ``PATH``).
        call: runs every process start and stop, e.g. ``lab.netns.call`` to put the cluster in a
            :class:`~lkproto.testing.FaultLab` namespace; by default a plain call.
        empty_timeout: ``room.empty_timeout`` of every node, seconds.
        departure_timeout: ``room.departure_timeout`` of every node, seconds.
    """

    def __init__(
        self,
        *,
        nodes: int = DEFAULT_NODES,
        api_key: str | None = None,
        api_secret: str | None = None,
        extra_config: Mapping[str, object] | None = None,
        log_level: str = "info",
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        version: str = DEFAULT_LIVEKIT_SERVER_VERSION,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
        redis_binary: str | os.PathLike[str] | None = None,
        call: Callable[[Callable[[], object]], object] | None = None,
        empty_timeout: int = 10,
        departure_timeout: int = 1,
    ) -> None:
        if isinstance(nodes, bool) or nodes < 2:
            raise LocalProtocolError(f"a cluster needs at least 2 nodes, got {nodes!r}")
        self._count = nodes
        self._api_key = api_key if api_key is not None else f"lkc-{secrets.token_hex(6)}"
        self._api_secret = api_secret if api_secret is not None else secrets.token_urlsafe(32)
        self._extra_config = dict(extra_config or {})
        self._log_level = log_level
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = Path(binary) if binary is not None else None
        self._version = version
        self._ready_timeout = positive_seconds("ready_timeout", ready_timeout)
        self._call: Callable[[Callable[[], object]], object] = call or _direct
        self._empty_timeout = empty_timeout
        self._departure_timeout = departure_timeout
        self._redis = LocalRedis(binary=redis_binary, call=self._call)
        self._nodes: list[LocalServer] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        urls = [n.url if n.port else None for n in self._nodes]
        return f"<LocalCluster nodes={urls!r} redis={self._redis.port}>"

    # -- properties ---------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[LocalServer, ...]:
        """The node servers, in index order (running or killed)."""
        return tuple(self._nodes)

    @property
    def redis(self) -> LocalRedis:
        """The shared Redis server."""
        return self._redis

    @property
    def api_key(self) -> str:
        """The API key every node accepts."""
        return self._api_key

    @property
    def api_secret(self) -> str:
        """The secret of :attr:`api_key`."""
        return self._api_secret

    def node(self, index: int) -> LocalServer:
        """The node at ``index``.

        Raises:
            LocalProtocolError: not started, or no such node.
        """
        if not self._nodes:
            raise LocalProtocolError("LocalCluster has not been started")
        if not 0 <= index < len(self._nodes):
            raise LocalProtocolError(f"no node {index}; the cluster has {len(self._nodes)}")
        return self._nodes[index]

    def url(self, index: int) -> str:
        """Signalling URL of node ``index`` (``ws://127.0.0.1:<port>``)."""
        return self.node(index).url

    def node_id(self, index: int) -> str:
        """The node id (``ND_...``) node ``index`` runs under now (new after each restart).

        Raises:
            ServerError: the node did not log its id.
        """
        node_id = self.node(index).node_id
        if node_id is None:
            raise ServerError(f"node {index} did not log its node id")
        return node_id

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis, then every node, and wait until every node is registered in Redis.

        Raises:
            LocalProtocolError: already started.
            ServerError: Redis or a node did not start (everything started is stopped again).
        """
        with self._lock:
            if self._nodes:
                raise LocalProtocolError("LocalCluster is already started")
            binary = self._binary or ensure_livekit_server(self._version)
            _LIVE_CLUSTERS.add(self)
            try:
                self._redis.start()
                ports = self._pick_ports()
                for index, (port, udp_port) in enumerate(ports):
                    node = LocalServer(
                        api_key=self._api_key,
                        api_secret=self._api_secret,
                        port=port,
                        udp_port=udp_port,
                        empty_timeout=self._empty_timeout,
                        departure_timeout=self._departure_timeout,
                        extra_config=cluster_node_config(
                            redis_port=self._redis.port, extra_config=self._extra_config
                        ),
                        log_level=self._log_level,
                        log_dir=None if self._log_dir is None else self._log_dir / f"node{index}",
                        binary=binary,
                        ready_timeout=self._ready_timeout,
                    )
                    self._nodes.append(node)
                    self._call(node.start)
                self._wait_registered()
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop every node, then Redis; idempotent."""
        with self._lock:
            _LIVE_CLUSTERS.discard(self)
            for node in self._nodes:
                with contextlib.suppress(Exception):
                    self._call(node.stop)
            self._nodes = []
            self._redis.stop()

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (no drain, no leave, its Redis entry left behind) and reap it."""
        node = self.node(index)
        pid = node.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self._call(node.stop)

    def stop_node(self, index: int) -> None:
        """Stop node ``index`` cleanly (it unregisters from Redis and ends its sessions)."""
        self._call(self.node(index).stop)

    def restart_node(self, index: int) -> None:
        """Start node ``index`` again on the same ports (it gets a new node id).

        Raises:
            LocalProtocolError: it is still running.
            ServerError: it did not come up or did not register.
        """
        node = self.node(index)
        if node.running:
            raise LocalProtocolError(f"node {index} is still running; kill or stop it first")
        self._call(node.start)
        self._wait_registered()

    # -- rooms and tokens ---------------------------------------------------------------------

    def create_token(
        self, identity: str, room: str, *, name: str | None = None, **grants: object
    ) -> str:
        """Mint a join token (valid on every node); see :meth:`LocalServer.create_token`."""
        return self.node(0).create_token(identity, room, name=name, **grants)

    def pin_room(
        self,
        room: str,
        *,
        node: int,
        via: int | None = None,
        empty_timeout: int = PINNED_EMPTY_TIMEOUT_S,
    ) -> None:
        """Create ``room`` on node ``node`` (RoomService ``CreateRoom`` with its ``node_id``).

        Call it before anyone joins: an existing assignment to an available node is kept
        (upstream ``roomallocator.go`` ``SelectRoomNode``).

        Args:
            room: room name.
            node: index of the node that is to host it.
            via: index of the node the request is sent to (default: ``node``).
            empty_timeout: seconds the room is kept while nobody has joined it yet. A room
                that closes before the first join is re-created by that join on *any* node,
                so the pin would be lost; once participants have come and gone, the departure
                timeout closes it as usual.

        Raises:
            ServerError: the request failed, or the room ended up on another node.
        """
        target = self.node_id(node)
        entry = self.node(node if via is None else via)
        token = self.create_token("lkproto-cluster-admin", room, room_create=True)
        body = json.dumps(
            {"name": room, "node_id": target, "empty_timeout": empty_timeout}
        ).encode()
        request = urllib.request.Request(
            f"{entry.http_url}/twirp/livekit.RoomService/CreateRoom",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        # No proxy handler: an http_proxy in the environment must not capture loopback requests.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def post() -> None:
            with opener.open(request, timeout=_TWIRP_TIMEOUT_S) as response:
                response.read()

        try:
            self._call(post)
        except (urllib.error.URLError, OSError) as exc:
            detail = ""
            if isinstance(exc, urllib.error.HTTPError):
                detail = exc.read().decode(errors="replace")
            raise ServerError(f"CreateRoom {room!r} on node {node} failed: {exc} {detail}") from exc
        hosted = self.room_node(room)
        if hosted != node:
            raise ServerError(f"room {room!r} is on node {hosted}, not on node {node}")

    def room_node(self, room: str) -> int | None:
        """Index of the node Redis says hosts ``room`` (``None``: unassigned or an unknown id)."""
        node_id = self._redis.command("HGET", ROOM_NODE_KEY, room)
        for index, node in enumerate(self._nodes):
            if node_id is not None and node.node_id == node_id:
                return index
        return None

    def registered_node_ids(self) -> set[str]:
        """The node ids in Redis's ``nodes`` hash (a killed node's stays until swept)."""
        reply = self._redis.command("HKEYS", NODES_KEY)
        return {str(k) for k in reply} if isinstance(reply, list) else set()

    # -- internals ----------------------------------------------------------------------------

    def _pick_ports(self) -> list[tuple[int, int]]:
        def pick() -> list[tuple[int, int]]:
            chosen: list[tuple[int, int]] = []
            tcp_taken = {self._redis.port}
            udp_taken: set[int] = set()
            for _ in range(self._count):
                port = free_tcp_port()
                while port in tcp_taken:
                    port = free_tcp_port()
                udp_port = free_udp_port(avoid=frozenset(udp_taken))
                tcp_taken.add(port)
                udp_taken.add(udp_port)
                chosen.append((port, udp_port))
            return chosen

        result = self._call(pick)
        assert isinstance(result, list)
        return result

    def _wait_registered(self) -> None:
        deadline = time.monotonic() + self._ready_timeout + _REGISTER_TIMEOUT_S
        ids = [n.node_id for n in self._nodes if n.running]
        wanted = {node_id for node_id in ids if node_id is not None}
        if len(wanted) != len(ids):
            raise ServerError("a cluster node did not log its node id")
        while True:
            registered = self.registered_node_ids()
            if wanted <= registered:
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"cluster nodes {sorted(wanted - registered)} (of {sorted(wanted)}) "
                    "did not register in Redis"
                )
            time.sleep(_POLL_S)


_LIVE_CLUSTERS: set[LocalCluster] = set()


def _stop_all_at_exit() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        cluster.stop()


atexit.register(_stop_all_at_exit)
