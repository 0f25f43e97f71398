"""LocalServer against the real livekit-server v1.13.5 binary."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from lkproto.errors import ServerError
from lkproto.testing import LocalServer, scaled

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.interop

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> tuple[int, str]:
    try:
        with _NO_PROXY.open(url, timeout=scaled(5)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _tcp_port_is_free(port: int) -> bool:
    # SO_REUSEADDR, as Go listeners use: connections of the HTTP probes may linger in TIME_WAIT,
    # which only matters for binds without it; a live listener still makes listen() fail.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _udp_port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_shared_server_is_ready(livekit_server: LocalServer) -> None:
    assert livekit_server.running
    assert _get(f"{livekit_server.http_url}/") == (200, "OK")
    assert livekit_server.url == f"ws://127.0.0.1:{livekit_server.port}"
    assert livekit_server.node_id is not None
    assert livekit_server.node_id.startswith("ND_")
    # The whole log, not the tail: other tests may have used the shared server first.
    assert livekit_server.log_path is not None
    assert "starting LiveKit server" in livekit_server.log_path.read_text()


def test_signalling_url_answers(livekit_server: LocalServer) -> None:
    # The signalling endpoint is served on the same port as the ws:// URL; without a token the
    # server refuses with 401 before any upgrade (PROTOCOL-MAP §1 Rejections).
    http_of_ws = livekit_server.url.replace("ws://", "http://", 1)
    status, body = _get(f"{http_of_ws}/rtc/validate")
    assert status == 401
    assert "permission" in body


def test_stop_kills_process_and_frees_ports(livekit_server_binary: Path) -> None:
    server = LocalServer(binary=livekit_server_binary, ready_timeout=scaled(30))
    started = time.monotonic()
    server.start()
    ready_s = time.monotonic() - started
    pid = server.pid
    assert pid is not None
    port, udp_port = server.port, server.udp_port
    assert not _tcp_port_is_free(port)
    assert not _udp_port_is_free(udp_port)
    assert ready_s < scaled(30)

    server.stop()
    assert server.pid is None
    assert not server.running
    assert _process_gone(pid)
    assert _tcp_port_is_free(port)
    assert _udp_port_is_free(udp_port)
    server.stop()  # idempotent
    assert "exit requested" in server.log_tail()


def test_bad_config_is_a_server_error_with_the_log(livekit_server_binary: Path) -> None:
    server = LocalServer(
        binary=livekit_server_binary,
        extra_config={"no_such_option": True},
        ready_timeout=scaled(30),
    )
    with pytest.raises(ServerError) as info:
        server.start()
    message = str(info.value)
    assert "before it was ready" in message
    assert "could not parse config" in message
    assert "no_such_option" in message
    assert "log " in message
    assert not server.running


def test_two_servers_side_by_side(livekit_server: LocalServer, livekit_server_binary: Path) -> None:
    with LocalServer(binary=livekit_server_binary, ready_timeout=scaled(30)) as other:
        assert other.port != livekit_server.port
        assert other.udp_port != livekit_server.udp_port
        assert other.api_key != livekit_server.api_key
        assert other.node_id != livekit_server.node_id
        assert _get(f"{other.http_url}/") == (200, "OK")
        assert _get(f"{livekit_server.http_url}/") == (200, "OK")
    assert livekit_server.running


async def test_async_context_manager(livekit_server_binary: Path, tmp_path: Path) -> None:
    async with LocalServer(
        binary=livekit_server_binary, log_dir=tmp_path, ready_timeout=scaled(30)
    ) as server:
        pid = server.pid
        assert pid is not None
        assert _get(f"{server.http_url}/")[0] == 200
    assert _process_gone(pid)
    log_path = server.log_path
    assert log_path is not None
    assert log_path.parent == tmp_path
    assert "starting LiveKit server" in log_path.read_text()
