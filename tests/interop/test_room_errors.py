"""``lkproto.rtc.Room.connect`` failures and cancellation, against a real livekit-server.

Failures: each bad setup ends in exactly one exception of the ``lkproto.errors`` tree, within the
connect timeout, leaves the Room disconnected and reusable (PROTOCOL-MAP §1 Rejections).

Cancellation: ``connect()`` is cancelled at a sweep of points (event-loop iterations and small
delays, from "not started" to "already connected"); after each one no task, no file descriptor
and no participant on the server may be left behind. Points a sweep only hits by luck have
their own deterministic tests: the instant ICE completes, a second cancel during the cleanup, and
a cancel in the iteration the WebSocket upgrade completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioice.ice
import pytest
import websockets.asyncio.client

from lkproto import rtc
from lkproto.api import AccessToken, RoomServiceClient, VideoGrants
from lkproto.errors import ApiError, ConnectError, JoinRejectedError, LkError, UnauthorizedError
from lkproto.testing.server import free_tcp_port
from lkproto.wire import pb
from tests._support.proxy import RelayProxy, SilentSignalServer, StaticHttpServer
from tests.conftest import scaled

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

# Bounds, all scaled: a successful loopback connect takes well under a second.
CONNECT_TIMEOUT_S = 15.0
# Headroom over a connect timeout for the failure to surface (teardown closes sockets and PCs).
FAILURE_MARGIN_S = 3.0
# How long a cancelled connect may take to unwind (closing a socket waits at most 2 s for the
# close handshake); kept below CONNECT_TIMEOUT_S so that a lost cancel cannot pass for a slow one.
UNWIND_S = 5.0
# Closing aiortc/aioice sockets and ending their tasks finishes a few loop iterations after close.
SETTLE_S = 5.0
# The server drops a participant whose signal socket closes at once, except when the cancel lands
# just as its PC came up: then it waits for ICE to time out (10 s disconnected + 5 s failed,
# PROTOCOL-MAP §2 ICE / DTLS details), about 21 s in all here.
DEPARTURE_S = 40.0
SILENT_CONNECT_TIMEOUT_S = 2.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _options(**kwargs: object) -> rtc.RoomOptions:
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def service(livekit_server: LocalServer) -> RoomServiceClient:
    return RoomServiceClient(livekit_server.url, livekit_server.api_key, livekit_server.api_secret)


# -- leak accounting -----------------------------------------------------------------------------


def _open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


def _describe_task(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
    return f"{getattr(coro, '__qualname__', coro)!s} at {where}"


@dataclass(frozen=True)
class _Snapshot:
    tasks: frozenset[asyncio.Task[object]]
    fds: dict[int, str]


def _snapshot() -> _Snapshot:
    return _Snapshot(frozenset(asyncio.all_tasks()), _open_fds())


async def _assert_nothing_left(before: _Snapshot, what: str) -> None:
    """Wait (bounded) until every task and descriptor opened since ``before`` is gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(SETTLE_S)
    current = asyncio.current_task()
    while True:
        tasks = [
            t
            for t in asyncio.all_tasks()
            if t not in before.tasks and t is not current and not t.done()
        ]
        fds = {fd: target for fd, target in _open_fds().items() if before.fds.get(fd) != target}
        if not tasks and not fds:
            return
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    described = [_describe_task(t) for t in tasks]
    for t in tasks:  # do not let one failure spill into the next tests
        t.cancel()
    pytest.fail(f"{what}: left behind {len(tasks)} task(s) {described} and descriptors {fds}")


async def _wait_gone(service: RoomServiceClient, room: str, *identities: str) -> None:
    """Wait (bounded) until the server lists none of ``identities`` in ``room``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(DEPARTURE_S)
    while True:
        try:
            present = {p.identity for p in await service.list_participants(room)}
        except ApiError as exc:
            if exc.code != "not_found":
                raise
            present = set()
        if not present & set(identities):
            return
        if loop.time() > deadline:
            left = sorted(present & set(identities))
            pytest.fail(f"{left} still in {room!r} after {scaled(DEPARTURE_S)} s")
        await asyncio.sleep(0.1)


async def _unwind(task: asyncio.Task[None], label: str) -> None:
    """Wait for a cancelled connect() to end; fail if that takes more than UNWIND_S."""
    done, _ = await asyncio.wait({task}, timeout=scaled(UNWIND_S))
    if task not in done:
        # Let it end by itself (connect timeout) so that it cannot spill into later tests.
        await asyncio.wait({task}, timeout=scaled(CONNECT_TIMEOUT_S + FAILURE_MARGIN_S))
        pytest.fail(f"{label}: cancel lost, connect() still running {scaled(UNWIND_S)} s later")


def _assert_disconnected(room: rtc.Room) -> None:
    assert room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
    assert not room.isconnected()
    assert room.engine is None


async def _assert_reusable(room: rtc.Room, server: LocalServer) -> None:
    """The same Room object connects to the real server after a failure."""
    name = _unique("reuse")
    await asyncio.wait_for(
        room.connect(server.url, server.create_token(_unique("again"), name), _options()),
        scaled(CONNECT_TIMEOUT_S),
    )
    try:
        assert room.isconnected()
        assert room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert room.name == name
    finally:
        await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))
    _assert_disconnected(room)


# -- failures ------------------------------------------------------------------------------------


async def _connect_fails(
    room: rtc.Room, url: str, token: str, options: rtc.RoomOptions, timeout_s: float
) -> LkError:
    """Connect, expecting one LkError within ``timeout_s`` plus a margin; return it.

    Past that bound ``wait_for`` raises TimeoutError, which is no LkError: the test fails.
    """
    with pytest.raises(LkError) as info:
        await asyncio.wait_for(
            room.connect(url, token, options), timeout_s + scaled(FAILURE_MARGIN_S)
        )
    assert not isinstance(info.value, BaseExceptionGroup)
    _assert_disconnected(room)
    return info.value


async def test_wrong_signature_is_unauthorized(
    livekit_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    room = rtc.Room()
    token = (
        AccessToken(livekit_server.api_key, livekit_server.api_secret + "-wrong")
        .with_identity("mallory")
        .with_grants(VideoGrants(room_join=True, room=_unique("err")))
        .to_jwt()
    )
    err = await _connect_fails(
        room, livekit_server.url, token, _options(), scaled(CONNECT_TIMEOUT_S)
    )
    assert type(err) is UnauthorizedError
    assert err.status == 401
    assert "invalid token" in str(err)
    _assert_no_error_logs(caplog)
    await _assert_reusable(room, livekit_server)


async def test_refused_token_is_not_echoed_in_the_error(livekit_server: LocalServer) -> None:
    """A token that is not valid *yet* is a credential; the error text must not carry it.

    The server's 401 body is "invalid token: <the whole JWT>, error: ..." (PROTOCOL-MAP §1
    Rejections), and lkproto sends the token as a header precisely to keep it out of logs.
    """
    room = rtc.Room()
    token = (
        AccessToken(livekit_server.api_key, livekit_server.api_secret)
        .with_identity("early")
        .with_grants(VideoGrants(room_join=True, room=_unique("err")))
        .to_jwt(now=time.time() + 600)
    )
    err = await _connect_fails(
        room, livekit_server.url, token, _options(), scaled(CONNECT_TIMEOUT_S)
    )
    assert type(err) is UnauthorizedError
    assert "not valid yet" in str(err)
    assert token not in str(err)
    assert token.rsplit(".", 1)[1] not in str(err)  # not even the signature


async def test_token_without_room_join_is_permission_denied(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    token = livekit_server.create_token(_unique("nojoin"), _unique("err"), room_join=False)
    err = await _connect_fails(
        room, livekit_server.url, token, _options(), scaled(CONNECT_TIMEOUT_S)
    )
    assert type(err) is UnauthorizedError
    assert err.status == 401
    assert "permissions denied" in str(err)
    await _assert_reusable(room, livekit_server)


async def test_closed_port_is_a_connect_error(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    port = free_tcp_port()  # bound and closed again: nothing listens there
    token = livekit_server.create_token("alice", _unique("err"))
    err = await _connect_fails(
        room, f"ws://127.0.0.1:{port}", token, _options(), scaled(CONNECT_TIMEOUT_S)
    )
    assert type(err) is ConnectError
    assert not isinstance(err, JoinRejectedError)
    assert f"127.0.0.1:{port}" in str(err)
    await _assert_reusable(room, livekit_server)


async def test_plain_http_server_answering_200_is_rejected(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("err"))
    async with StaticHttpServer(200, b"hello") as fake:
        err = await _connect_fails(room, fake.url, token, _options(), scaled(CONNECT_TIMEOUT_S))
        # One request: a 200 is no reason to try /rtc.
        assert fake.paths == ["/rtc/v1"]
    # Today a JoinRejectedError(200); a plain ConnectError ("not a LiveKit endpoint") is fine too.
    assert isinstance(err, ConnectError)
    assert getattr(err, "status", 200) == 200
    assert "200" in str(err)
    await _assert_reusable(room, livekit_server)


async def test_plain_http_server_answering_404_fails_after_the_v0_fallback(
    livekit_server: LocalServer,
) -> None:
    # A 404 on /rtc/v1 that is not "room does not exist" looks like an old server, so the engine
    # retries /rtc (PROTOCOL-MAP §1 Who uses which path); that 404 must be the final, clear error.
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("err"))
    async with StaticHttpServer(404, b"no such page\n") as fake:
        err = await _connect_fails(room, fake.url, token, _options(), scaled(CONNECT_TIMEOUT_S))
        assert fake.paths == ["/rtc/v1", "/rtc"]
    assert type(err) is JoinRejectedError
    assert err.status == 404
    assert "404" in str(err)
    assert "no such page" in str(err)
    await _assert_reusable(room, livekit_server)


async def test_server_that_never_sends_join_response_times_out(
    livekit_server: LocalServer,
) -> None:
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("err"))
    timeout_s = scaled(SILENT_CONNECT_TIMEOUT_S)
    async with SilentSignalServer() as silent:
        err = await _connect_fails(
            room, silent.url, token, _options(connect_timeout=timeout_s), timeout_s
        )
        assert type(err) is ConnectError
        assert "JoinResponse" in str(err)
        assert silent.paths == ["/rtc/v1"]
        await _until(lambda: silent.open_connections == 0, "the socket to be closed")
    await _assert_reusable(room, livekit_server)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(SETTLE_S)
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- cancellation --------------------------------------------------------------------------------


@dataclass
class _Sweep:
    room: rtc.Room
    server: LocalServer
    service: RoomServiceClient
    room_name: str
    options: rtc.RoomOptions
    outcomes: list[str]
    identities: list[str]


_Wait = Callable[["asyncio.Task[None]"], Awaitable[object]]


async def _connected(task: asyncio.Task[None]) -> None:
    """The last point of every sweep: cancel only once connect() has returned."""
    await asyncio.wait({task}, timeout=scaled(CONNECT_TIMEOUT_S))


async def _cancel_once(sweep: _Sweep, label: str, wait: _Wait) -> None:
    """Start connect, ``wait``, cancel it; check that no task or descriptor is left behind."""
    before = _snapshot()
    identity = _unique("c")
    token = sweep.server.create_token(identity, sweep.room_name)
    task = asyncio.create_task(sweep.room.connect(sweep.server.url, token, sweep.options))
    await wait(task)
    task.cancel()
    await _unwind(task, label)
    if task.cancelled():
        sweep.outcomes.append("cancelled")
        _assert_disconnected(sweep.room)
    else:
        task.result()  # a cancel must never turn into another exception
        sweep.outcomes.append("connected")
        assert sweep.room.isconnected()
        await asyncio.wait_for(sweep.room.disconnect(), scaled(CONNECT_TIMEOUT_S))
        _assert_disconnected(sweep.room)
    await _assert_nothing_left(before, f"cancel {label}")
    sweep.identities.append(identity)  # checked together at the end: departures can be slow


async def _new_sweep(server: LocalServer, service: RoomServiceClient, prefix: str) -> _Sweep:
    sweep = _Sweep(
        room=rtc.Room(),
        server=server,
        service=service,
        room_name=_unique(prefix),
        options=_options(connect_timeout=scaled(CONNECT_TIMEOUT_S)),
        outcomes=[],
        identities=[],
    )
    # Warm up (first-use imports, aioice patch) so the snapshot sees only per-connect resources.
    await asyncio.wait_for(
        sweep.room.connect(server.url, server.create_token("warmup", sweep.room_name), _options()),
        scaled(CONNECT_TIMEOUT_S),
    )
    await sweep.room.disconnect()
    return sweep


def _geometric(limit: int) -> list[int]:
    points, k = [], 0
    while k <= limit:
        points.append(k)
        k = max(k + 1, round(k * 1.3))
    return points


def _assert_no_error_logs(caplog: pytest.LogCaptureFixture) -> None:
    errors = [
        f"{r.name}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("lkproto", "asyncio")
    ]
    assert not errors


async def test_connect_cancelled_after_k_loop_iterations(
    livekit_server: LocalServer, service: RoomServiceClient, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = await _new_sweep(livekit_server, service, "cancel-iter")
    # How many loop iterations a whole connect takes here.
    room = rtc.Room()
    task = asyncio.create_task(
        room.connect(
            livekit_server.url,
            livekit_server.create_token("probe", sweep.room_name),
            sweep.options,
        )
    )
    iterations = 0
    async with asyncio.timeout(scaled(CONNECT_TIMEOUT_S)):
        while not task.done():
            await asyncio.sleep(0)
            iterations += 1
    task.result()
    await room.disconnect()

    for k in _geometric(iterations):

        async def spin(_: object, k: int = k) -> None:
            for _ in range(k):
                await asyncio.sleep(0)

        await _cancel_once(sweep, f"after {k} of ~{iterations} iterations", spin)
    await _cancel_once(sweep, "once connected", _connected)
    assert "cancelled" in sweep.outcomes
    assert sweep.outcomes[-1] == "connected"
    await _assert_reusable(sweep.room, livekit_server)
    await _wait_gone(service, sweep.room_name, *sweep.identities)
    _assert_no_error_logs(caplog)


async def test_connect_cancelled_after_small_delays(
    livekit_server: LocalServer, service: RoomServiceClient, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = await _new_sweep(livekit_server, service, "cancel-delay")
    room = rtc.Room()
    start = time.monotonic()
    await asyncio.wait_for(
        room.connect(
            livekit_server.url,
            livekit_server.create_token("probe", sweep.room_name),
            sweep.options,
        ),
        scaled(CONNECT_TIMEOUT_S),
    )
    duration = time.monotonic() - start
    await room.disconnect()

    delays = sorted({0.0, 0.001, 0.005, 0.02, 0.05, *(duration * i / 8 for i in range(1, 13))})
    for delay in delays:

        async def pause(_: object, delay: float = delay) -> None:
            await asyncio.sleep(delay)

        await _cancel_once(sweep, f"after {delay * 1000:.1f} ms of ~{duration * 1000:.0f}", pause)
    await _cancel_once(sweep, "once connected", _connected)
    assert "cancelled" in sweep.outcomes
    assert sweep.outcomes[-1] == "connected"
    await _assert_reusable(sweep.room, livekit_server)
    await _wait_gone(service, sweep.room_name, *sweep.identities)
    _assert_no_error_logs(caplog)


async def test_connect_to_silent_server_is_cancellable(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("silent"))
    async with SilentSignalServer() as silent:
        points: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("before it starts", lambda: asyncio.sleep(0)),
            ("during the upgrade", lambda: asyncio.sleep(0.001)),
            ("while waiting for JoinResponse", lambda: _until(
                lambda: silent.open_connections == 1, "the upgrade"
            )),
        ]  # fmt: skip
        for label, wait in points:
            before = _snapshot()
            task = asyncio.create_task(
                room.connect(silent.url, token, _options(connect_timeout=scaled(CONNECT_TIMEOUT_S)))
            )
            await wait()
            await asyncio.sleep(0)
            task.cancel()
            await _unwind(task, label)
            assert task.cancelled(), f"{label}: {task!r}"
            _assert_disconnected(room)
            await _until(lambda: silent.open_connections == 0, "the socket to be closed")
            await _assert_nothing_left(before, f"cancel {label}")
        assert silent.paths  # the last point really reached the server
    await _assert_reusable(room, livekit_server)


async def test_connect_cancelled_when_ice_completes_leaves_no_consent_task(
    livekit_server: LocalServer, service: RoomServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel exactly when aioice's check list completes (a point the sweeps hit only by luck).

    aioice 0.13.0 ``Connection.connect`` paces its checks with ``sleep(0.02)`` while remote
    candidates may still come; when the check list completes during that sleep and the
    connection is closed before it ends, ``connect()`` resumes afterwards and still starts
    ``query_consent``, a task that loops forever on the closed connection.
    """
    sweep = await _new_sweep(livekit_server, service, "cancel-ice")
    target: list[asyncio.Task[None]] = []
    original = aioice.ice.Connection._check_list_maybe_complete

    def hooked(self: aioice.ice.Connection) -> bool:
        was_done = self._check_list_done
        completed = original(self)
        if completed and not was_done and target and not target[0].done():
            asyncio.get_running_loop().call_soon(target[0].cancel)
        return completed

    monkeypatch.setattr(aioice.ice.Connection, "_check_list_maybe_complete", hooked)
    for attempt in range(3):
        before = _snapshot()
        identity = _unique("ice")
        token = livekit_server.create_token(identity, sweep.room_name)
        task = asyncio.create_task(sweep.room.connect(livekit_server.url, token, sweep.options))
        target[:] = [task]
        await _unwind(task, f"attempt {attempt}")
        assert task.cancelled(), f"attempt {attempt}: the hook did not cancel the connect"
        _assert_disconnected(sweep.room)
        await _assert_nothing_left(before, f"cancel at ICE completion (attempt {attempt})")
        await _wait_gone(service, sweep.room_name, identity)


async def test_connect_cancelled_again_during_its_cleanup_leaves_nothing(
    livekit_server: LocalServer, service: RoomServiceClient
) -> None:
    """A second cancel while the first one's cleanup is closing the socket must not stop it.

    The relay is stalled right after the server's answer, so the WebSocket close handshake of
    the cleanup cannot finish and the second cancel lands inside it.
    """
    sweep = await _new_sweep(livekit_server, service, "cancel-twice")
    before = _snapshot()
    identity = _unique("twice")
    token = livekit_server.create_token(identity, sweep.room_name)
    loop = asyncio.get_running_loop()
    async with RelayProxy(livekit_server.port) as proxy:
        target: list[asyncio.Task[None]] = []

        def trace(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
            if (
                direction == "<"
                and isinstance(message, pb.SignalResponse)
                and message.WhichOneof("message") == "answer"
                and target
            ):
                proxy.stall()
                loop.call_soon(target[0].cancel)

        task = asyncio.create_task(
            sweep.room.connect(
                proxy.url,
                token,
                _options(connect_timeout=scaled(CONNECT_TIMEOUT_S), trace=trace),
            )
        )
        target.append(task)
        await _until(lambda: task.cancelling() > 0 or task.done(), "the first cancel")
        await asyncio.sleep(0.1)  # the cleanup is now waiting for the close handshake
        assert not task.done(), "the cleanup finished before the second cancel"
        task.cancel()
        await _unwind(task, "second cancel")
        assert task.cancelled()
        _assert_disconnected(sweep.room)
    await _assert_nothing_left(before, "second cancel during cleanup")
    await _wait_gone(service, sweep.room_name, identity)


async def test_cancel_racing_the_websocket_upgrade_is_not_lost(
    livekit_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel in the very iteration the WebSocket upgrade completes.

    On Python 3.11, ``asyncio.wait_for`` returns the inner result instead of raising when the
    outer task is cancelled in the iteration its inner awaitable completed (CPython gh-86296,
    fixed in 3.12 by building wait_for on ``asyncio.timeout``). A cancel lost there leaves
    connect() waiting for a JoinResponse that the silent server never sends.
    """
    target: list[asyncio.Task[None]] = []
    original = websockets.asyncio.client.connect.connect

    async def connect_then_cancel(self: websockets.asyncio.client.connect) -> object:
        connection = await original(self)
        if target and not target[0].done():
            target[0].cancel()
        return connection

    monkeypatch.setattr(websockets.asyncio.client.connect, "connect", connect_then_cancel)
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("race"))
    async with SilentSignalServer() as silent:
        before = _snapshot()
        task = asyncio.create_task(
            room.connect(silent.url, token, _options(connect_timeout=scaled(CONNECT_TIMEOUT_S)))
        )
        target.append(task)
        await _unwind(task, "cancel racing the upgrade")
        assert task.cancelled()
        assert silent.paths == ["/rtc/v1"]
        _assert_disconnected(room)
        await _until(lambda: silent.open_connections == 0, "the socket to be closed")
        await _assert_nothing_left(before, "cancel racing the upgrade")
    monkeypatch.undo()
    await _assert_reusable(room, livekit_server)
