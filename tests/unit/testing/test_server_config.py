"""lkproto.testing without a real server: config generation, environment, installer, CLI.

Fake ``go`` and fake ``livekit-server`` executables (small shell scripts) stand in for the real
ones, so these tests run in milliseconds and need no Go toolchain.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from lkproto.__main__ import build_parser, main
from lkproto.errors import LocalProtocolError, ServerError
from lkproto.testing import (
    LocalServer,
    binary_path,
    deep_merge,
    ensure_livekit_server,
    scaled,
    scrubbed_env,
    server_config,
    time_scale,
)
from lkproto.testing import server as server_module
from lkproto.testing.install import CACHE_DIR_ENV, SERVER_BINARY_ENV

if TYPE_CHECKING:
    from pathlib import Path

LEAKING_VARS = (
    "NODE_IP",
    "UDP_PORT",
    "REDIS_HOST",
    "REDIS_PASSWORD",
    "LIVEKIT_KEYS",
    "LIVEKIT_CONFIG",
    "LIVEKIT_REGION",
    "LIVEKIT_RTC_TCP_PORT",
)


def _config(**overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "port": 17880,
        "udp_port": 17882,
        "stun_port": 17883,
        "api_key": "key",
        "api_secret": "s" * 40,
    }
    kwargs.update(overrides)
    return server_config(**kwargs)  # type: ignore[arg-type]


def _section(config: dict[str, object], name: str) -> dict[str, object]:
    value = config[name]
    assert isinstance(value, dict)
    return value


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# -- configuration ------------------------------------------------------------------------------


def test_config_is_loopback_only() -> None:
    config = _config()
    assert config["port"] == 17880
    assert config["bind_addresses"] == ["127.0.0.1"]
    rtc = _section(config, "rtc")
    assert rtc["node_ip"] == "127.0.0.1"
    assert rtc["use_external_ip"] is False
    assert rtc["enable_loopback_candidate"] is True
    assert rtc["ips"] == {"includes": ["127.0.0.1/32"]}
    assert rtc["udp_port"] == 17882
    assert rtc["tcp_port"] == 0
    assert _section(config, "turn") == {"enabled": False}


def test_config_stun_servers_point_at_loopback() -> None:
    rtc = _section(_config(stun_port=23456), "rtc")
    assert rtc["stun_servers"] == ["127.0.0.1:23456"]


def test_config_keys_room_and_logging() -> None:
    config = _config(auto_create=False, empty_timeout=5, departure_timeout=2, log_level="debug")
    assert config["keys"] == {"key": "s" * 40}
    assert config["room"] == {"auto_create": False, "empty_timeout": 5, "departure_timeout": 2}
    assert config["logging"] == {"level": "debug"}


def test_config_defaults_follow_protocol_map() -> None:
    config = _config()
    assert config["room"] == {"auto_create": True, "empty_timeout": 10, "departure_timeout": 1}
    assert config["logging"] == {"level": "info"}


def test_config_is_json_and_therefore_yaml() -> None:
    config = _config()
    assert json.loads(json.dumps(config)) == config


def test_extra_config_is_deep_merged() -> None:
    config = _config(
        extra_config={"rtc": {"use_ice_lite": True}, "room": {"enable_remote_unmute": True}}
    )
    rtc = _section(config, "rtc")
    assert rtc["use_ice_lite"] is True
    assert rtc["node_ip"] == "127.0.0.1"
    assert rtc["tcp_port"] == 0
    room = _section(config, "room")
    assert room["enable_remote_unmute"] is True
    assert room["auto_create"] is True


def test_deep_merge_replaces_scalars_and_lists_and_copies() -> None:
    base: dict[str, object] = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    override: dict[str, object] = {"a": {"c": [3], "e": {"f": 1}}, "d": {"x": 1}}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 1, "c": [3], "e": {"f": 1}}, "d": {"x": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    inner = merged["a"]
    assert isinstance(inner, dict)
    inner["e"]["f"] = 2
    assert override == {"a": {"c": [3], "e": {"f": 1}}, "d": {"x": 1}}


# -- environment -------------------------------------------------------------------------------


def test_scrubbed_env_drops_everything_the_server_reads() -> None:
    environ = {name: "x" for name in LEAKING_VARS}
    environ |= {"PATH": "/usr/bin", "HOME": "/home/u", "TMPDIR": "/tmp", "OTHER": "1"}
    env = scrubbed_env(environ)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "TMPDIR": "/tmp"}


def test_scrubbed_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LEAKING_VARS:
        monkeypatch.setenv(name, "leak")
    env = scrubbed_env()
    assert not any(name.startswith(("LIVEKIT_", "REDIS_")) for name in env)
    assert not set(LEAKING_VARS) & set(env)
    assert env.get("PATH") == os.environ.get("PATH")


# -- LocalServer without a real server ----------------------------------------------------------


def test_random_credentials_per_instance() -> None:
    first, second = LocalServer(), LocalServer()
    assert first.api_key != second.api_key
    assert first.api_secret != second.api_secret
    assert len(first.api_secret) >= 32


def test_url_before_start_is_misuse() -> None:
    server = LocalServer()
    assert server.pid is None
    assert server.log_tail() == ""
    with pytest.raises(LocalProtocolError):
        _ = server.url
    server.stop()  # idempotent, even before start


def test_server_exiting_before_ready_is_an_error(tmp_path: Path) -> None:
    fake = _script(tmp_path / "fake-server", 'echo "could not parse config: boom"\nexit 0\n')
    server = LocalServer(binary=fake, log_dir=tmp_path / "logs", ready_timeout=scaled(10))
    with pytest.raises(ServerError, match="could not parse config: boom") as info:
        server.start()
    assert "exited (status 0) before it was ready" in str(info.value)
    assert str(server.log_path) in str(info.value)
    assert not server.running


def test_port_race_is_retried_with_new_ports(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    fake = _script(
        tmp_path / "fake-server",
        f'echo run >> "{counter}"\necho "listen udp: bind: address already in use"\n',
    )
    server = LocalServer(binary=fake, ready_timeout=scaled(10))
    with pytest.raises(ServerError, match="address already in use"):
        server.start()
    assert counter.read_text().count("run") == server_module.START_ATTEMPTS


def test_fixed_ports_are_not_retried(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    fake = _script(
        tmp_path / "fake-server",
        f'echo run >> "{counter}"\necho "listen tcp: bind: address already in use"\n',
    )
    server = LocalServer(binary=fake, port=1, udp_port=2, ready_timeout=scaled(10))
    with pytest.raises(ServerError):
        server.start()
    assert counter.read_text().count("run") == 1


def test_server_gets_scrubbed_env_and_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEKIT_KEYS", "leak: leak")
    monkeypatch.setenv("NODE_IP", "192.0.2.1")
    fake = _script(tmp_path / "fake-server", 'env\ncat "$2"\n')
    server = LocalServer(binary=fake, ready_timeout=scaled(10), extra_config={"x": {"y": 1}})
    with pytest.raises(ServerError):
        server.start()
    log = server.log_tail(500)
    assert "LIVEKIT_KEYS" not in log
    assert "NODE_IP" not in log
    assert '"enable_loopback_candidate": true' in log
    assert '"y": 1' in log
    assert server.config["x"] == {"y": 1}


def test_not_ready_in_time_is_an_error_and_kills(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    fake = _script(tmp_path / "fake-server", f'echo $$ > "{pid_file}"\nexec sleep 60\n')
    server = LocalServer(binary=fake, ready_timeout=0.3)
    with pytest.raises(ServerError, match="was not ready within"):
        server.start()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- time scale -------------------------------------------------------------------------------


def test_time_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKPROTO_TEST_TIME_SCALE", raising=False)
    assert time_scale() == 1.0
    monkeypatch.setenv("LKPROTO_TEST_TIME_SCALE", "2.5")
    assert scaled(2) == 5.0
    for bad in ("zero", "0", "-1", "nan"):
        monkeypatch.setenv("LKPROTO_TEST_TIME_SCALE", bad)
        with pytest.raises(LocalProtocolError):
            time_scale()


# -- installer ----------------------------------------------------------------------------------


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `go` on PATH whose `install` writes a fake server reporting version 1.13.5."""
    bin_dir = tmp_path / "gobin"
    bin_dir.mkdir()
    calls = tmp_path / "go-calls"
    _script(
        bin_dir / "go",
        f'echo "$@ CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS" >> "{calls}"\n'
        'printf \'#!/bin/sh\\necho "livekit-server version 1.13.5"\\n\' > "$GOBIN/server"\n'
        'chmod +x "$GOBIN/server"\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv(SERVER_BINARY_ENV, raising=False)
    return calls


def test_install_builds_once_and_is_idempotent(tmp_path: Path, fake_go: Path) -> None:
    cache = tmp_path / "cache"
    first = ensure_livekit_server("v1.13.5", cache)
    assert first == cache / "bin" / "livekit-server-v1.13.5"
    assert first == binary_path("v1.13.5", cache)
    second = ensure_livekit_server("v1.13.5", cache)
    assert second == first
    calls = fake_go.read_text().splitlines()
    assert calls == [
        "install github.com/livekit/livekit-server/cmd/server@v1.13.5 "
        "CGO_ENABLED=0 GOFLAGS=-buildvcs=false"
    ]
    leftovers = [p.name for p in (cache / "bin").iterdir() if p.name.startswith(".gobin-")]
    assert leftovers == []


def test_install_uses_cache_dir_env(
    tmp_path: Path, fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "envcache"))
    path = ensure_livekit_server("v1.13.5")
    assert path == tmp_path / "envcache" / "bin" / "livekit-server-v1.13.5"


def test_install_rejects_wrong_version_output(tmp_path: Path, fake_go: Path) -> None:
    with pytest.raises(ServerError, match=r"expected '1\.13\.6'"):
        ensure_livekit_server("v1.13.6", tmp_path / "cache")
    assert not (tmp_path / "cache" / "bin" / "livekit-server-v1.13.6").exists()


def test_install_reports_unservable_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "gobin"
    bin_dir.mkdir()
    _script(
        bin_dir / "go",
        'echo "go: reading .../@v/v9.9.9.info: 403 Forbidden"\n'
        'echo "server response: This module version is not available."\nexit 1\n',
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(SERVER_BINARY_ENV, raising=False)
    with pytest.raises(ServerError, match=r"module proxy cannot serve livekit-server v9\.9\.9"):
        ensure_livekit_server("v9.9.9", tmp_path / "cache")


def test_install_without_go_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(SERVER_BINARY_ENV, raising=False)
    with pytest.raises(ServerError, match=r"`go`.*not on PATH"):
        ensure_livekit_server("v1.13.5", tmp_path / "cache")


@pytest.mark.parametrize("version", ["latest", "1.13.5", "v1.13", "master"])
def test_install_requires_an_exact_tag(tmp_path: Path, version: str) -> None:
    with pytest.raises(ServerError, match="exact release tag"):
        ensure_livekit_server(version, tmp_path)


def test_install_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _script(tmp_path / "mine", 'echo "livekit-server version 1.99.0"\n')
    monkeypatch.setenv(SERVER_BINARY_ENV, str(fake))
    assert ensure_livekit_server() == fake
    monkeypatch.setenv(SERVER_BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(ServerError, match="not a runnable livekit-server"):
        ensure_livekit_server()


# -- command line -------------------------------------------------------------------------------


def test_cli_parser() -> None:
    args = build_parser().parse_args(["server", "--port", "9000", "--room", "r"])
    assert (args.port, args.udp_port, args.room, args.identity) == (9000, 7882, "r", "demo-user")
    args = build_parser().parse_args(["install-server"])
    assert args.server_version == "v1.13.5"


def test_cli_install_server_prints_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _script(tmp_path / "mine", 'echo "livekit-server version 1.13.5"\n')
    monkeypatch.setenv(SERVER_BINARY_ENV, str(fake))
    assert main(["install-server"]) == 0
    assert capsys.readouterr().out.strip() == str(fake)


def test_cli_errors_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SERVER_BINARY_ENV, str(tmp_path / "missing"))
    assert main(["install-server"]) == 1
    assert "not a runnable livekit-server" in capsys.readouterr().err


def test_install_script_is_a_thin_wrapper(tmp_path: Path) -> None:
    fake = _script(tmp_path / "mine", 'echo "livekit-server version 1.13.5"\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env = dict(os.environ, PYTHON=sys.executable, LKPROTO_LIVEKIT_SERVER=str(fake))
    out = subprocess.run(
        ["bash", os.path.join(root, "tools", "install_livekit_server.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=scaled(60),
    )
    assert out.stdout.strip() == str(fake)
