"""Unit tests of :mod:`lkproto.testing.cluster`: configuration, the Redis client, validation."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from lkproto.errors import LocalProtocolError, ServerError
from lkproto.testing import LocalCluster as ExportedCluster
from lkproto.testing.cluster import (
    ROOM_NODE_KEY,
    LocalCluster,
    LocalRedis,
    _encode_command,
    _RespReader,
    cluster_node_config,
    missing_cluster_requirements,
    redis_argv,
)
from lkproto.testing.server import server_config


def test_exported_from_the_test_kit() -> None:
    assert ExportedCluster is LocalCluster


def test_node_config_names_the_shared_redis_on_loopback() -> None:
    assert cluster_node_config(redis_port=6400) == {"redis": {"address": "127.0.0.1:6400"}}


def test_node_config_merges_caller_overrides_without_losing_the_address() -> None:
    extra = {"redis": {"db": 3}, "room": {"empty_timeout": 30}}
    config = cluster_node_config(redis_port=6400, extra_config=extra)
    assert config == {
        "redis": {"address": "127.0.0.1:6400", "db": 3},
        "room": {"empty_timeout": 30},
    }
    assert extra == {"redis": {"db": 3}, "room": {"empty_timeout": 30}}  # not modified


def test_full_node_config_keeps_the_loopback_rules_and_adds_redis() -> None:
    config = server_config(
        port=7001,
        udp_port=7002,
        stun_port=7003,
        api_key="k",
        api_secret="s" * 32,
        extra_config=cluster_node_config(redis_port=6400),
    )
    assert config["redis"] == {"address": "127.0.0.1:6400"}
    assert config["port"] == 7001
    rtc = config["rtc"]
    assert isinstance(rtc, dict)
    assert rtc["udp_port"] == 7002
    assert rtc["tcp_port"] == 0
    assert config["bind_addresses"] == ["127.0.0.1"]


def test_redis_argv_is_loopback_only_without_persistence() -> None:
    argv = redis_argv("/usr/bin/redis-server", port=6400, directory="/tmp/x")
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert argv[0] == "/usr/bin/redis-server"
    assert pairs["--port"] == "6400"
    assert pairs["--bind"] == "127.0.0.1"
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "no"
    assert pairs["--daemonize"] == "no"
    assert pairs["--dir"] == "/tmp/x"


def test_resp_encoding_of_a_command() -> None:
    assert _encode_command(["HGET", ROOM_NODE_KEY, "r"]) == (
        b"*3\r\n$4\r\nHGET\r\n$13\r\nroom_node_map\r\n$1\r\nr\r\n"
    )
    assert _encode_command(["SET", "k", ""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"+PONG\r\n", "PONG"),
        (b":42\r\n", 42),
        (b"$5\r\nND_ab\r\n", "ND_ab"),
        (b"$-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n", ["a", "bc"]),
        (b"*0\r\n", []),
        (b"*-1\r\n", None),
    ],
)
def test_resp_replies_decode(wire: bytes, expected: object) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(wire)
        reader = _RespReader(right)
        try:
            assert reader.read() == expected
        finally:
            reader.close()


@pytest.mark.parametrize(
    ("wire", "message"),
    [(b"-ERR wrong\r\n", "ERR wrong"), (b"?x\r\n", "unexpected reply"), (b"+OK", "mid-reply")],
)
def test_resp_errors_raise_server_error(wire: bytes, message: str) -> None:
    left, right = socket.socketpair()
    with right:
        with left:
            left.sendall(wire)
        reader = _RespReader(right)
        try:
            with pytest.raises(ServerError, match=message):
                reader.read()
        finally:
            reader.close()


@pytest.mark.parametrize("nodes", [0, 1, True])
def test_a_cluster_needs_two_nodes(nodes: int) -> None:
    with pytest.raises(LocalProtocolError, match="at least 2 nodes"):
        LocalCluster(nodes=nodes)


def test_ready_timeout_must_be_positive() -> None:
    with pytest.raises(LocalProtocolError):
        LocalCluster(ready_timeout=0)


def test_nodes_are_unavailable_before_start() -> None:
    cluster = LocalCluster()
    assert cluster.nodes == ()
    with pytest.raises(LocalProtocolError, match="not been started"):
        cluster.url(0)
    cluster.stop()  # idempotent on a cluster never started


def test_port_choice_goes_through_call_and_is_distinct() -> None:
    threads: list[str] = []

    def call(func: Callable[[], object]) -> object:
        # What FaultLab's namespace call does: run it in another thread and return the result.
        out: list[object] = []
        worker = threading.Thread(target=lambda: out.append(func()), name="in-netns")
        worker.start()
        worker.join()
        threads.append(worker.name)
        return out[0]

    cluster = LocalCluster(nodes=3, call=call)
    ports = cluster._pick_ports()
    assert threads == ["in-netns"]
    assert len(ports) == 3
    assert len({tcp for tcp, _ in ports}) == 3
    assert len({udp for _, udp in ports}) == 3


@pytest.mark.skipif(missing_cluster_requirements() is not None, reason="no redis-server")
def test_local_redis_answers_and_stops() -> None:
    redis = LocalRedis()
    redis.start()
    try:
        assert redis.running
        assert redis.command("PING") == "PONG"
        assert redis.command("HSET", ROOM_NODE_KEY, "r", "ND_x") == 1
        assert redis.command("HGET", ROOM_NODE_KEY, "r") == "ND_x"
        assert redis.command("HGET", ROOM_NODE_KEY, "missing") is None
        with pytest.raises(ServerError, match="ERR"):
            redis.command("NO-SUCH-COMMAND")
    finally:
        redis.stop()
    assert not redis.running
    redis.stop()  # idempotent


def test_missing_redis_binary_is_a_server_error() -> None:
    redis = LocalRedis(binary="/nonexistent/redis-server")
    with pytest.raises(ServerError, match="cannot run"):
        redis.start()
    assert not redis.running
