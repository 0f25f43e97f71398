"""``python -m lkproto`` join/send/recv/rpc against a real server, in subprocesses.

Each command exits 0 on success; failures are one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lkproto import rtc
from lkproto.wire.tap import TapRecord
from tests.conftest import scaled

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

RUN_TIMEOUT_S = 60.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("LIVEKIT_URL", "LIVEKIT_TOKEN", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        env.pop(name, None)
    env.pop("LKPROTO_TAP", None)
    return env


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lkproto",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_cli_env(),
    )


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), scaled(RUN_TIMEOUT_S))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the command did not finish")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run(*args: str) -> tuple[int, str, str]:
    return await _finish(await _start(*args))


def _server_args(server: LocalServer, room: str, identity: str) -> list[str]:
    return [
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--api-secret",
        server.api_secret,
        "--room",
        room,
        "--identity",
        identity,
    ]


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


async def test_send_and_recv(livekit_server: LocalServer, tmp_path: Path) -> None:
    room = _unique("cli")
    out_dir = tmp_path / "in"
    payload_file = tmp_path / "blob.bin"
    blob = os.urandom(40_000)
    payload_file.write_bytes(blob)
    tap = tmp_path / "recv.jsonl"
    recv = await _start(
        "recv",
        "--count",
        "3",
        "--duration",
        str(scaled(45)),
        "--out-dir",
        str(out_dir),
        "--tap",
        str(tap),
        *_server_args(livekit_server, room, "receiver"),
    )
    # One identity per sender: re-using one right after it left races the engine (see report).
    wait = ["--wait", str(scaled(20)), "--to", "receiver"]
    code, _, err = await _run(
        "send",
        "--payload",
        "hi there",
        "--topic",
        "",
        *wait,
        *_server_args(livekit_server, room, "s1"),
    )
    assert (code, err.strip()) == (0, "sent 8 B packet")
    code, _, err = await _run(
        "send", "--text", "a text stream", *wait, *_server_args(livekit_server, room, "s2")
    )
    assert code == 0, err
    code, _, err = await _run(
        "send", "--file", str(payload_file), *wait, *_server_args(livekit_server, room, "s3")
    )
    assert code == 0, err
    assert "100.0%" in err
    assert "ETA" in err
    assert "/s" in err
    code, out, err = await _finish(recv)
    assert code == 0, err
    # The packet may outrun s1's ParticipantUpdate: then the sender shows as "(unknown)".
    assert "(8 B): 'hi there'" in out
    assert "text from s2 topic='' (13 chars): 'a text stream'" in out
    assert "file 'blob.bin' from s3 (40000 B)" in out
    assert (out_dir / "blob.bin").read_bytes() == blob
    records = [TapRecord.from_json(json.loads(x)) for x in tap.read_text().splitlines()]
    assert all(r.decoded for r in records)
    assert any(r.type == "DataPacket.stream_chunk" and r.direction == "<" for r in records)


async def test_rpc(livekit_server: LocalServer) -> None:
    room_name = _unique("cli-rpc")
    callee = rtc.Room()
    await callee.connect(
        livekit_server.url,
        livekit_server.create_token("callee", room_name),
        rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"])),
    )
    try:

        def shout(data: rtc.RpcInvocationData) -> str:
            return data.payload.upper() + f" from {data.caller_identity}"

        callee.local_participant.register_rpc_method("shout", shout)

        args = [*_server_args(livekit_server, room_name, "caller"), "--to", "callee"]
        code, out, err = await _run(
            "rpc", "--method", "shout", "--payload", "hey", "--timeout", "20", *args
        )
        assert (code, out.strip()) == (0, "HEY from caller"), err
        # A fresh identity: re-joining with one that just left races the engine (see report).
        args = [*_server_args(livekit_server, room_name, "caller2"), "--to", "callee"]
        code, out, err = await _run("rpc", "--method", "nope", "--timeout", "20", *args)
        assert code == 1
        assert _one_line_error(err).startswith("lkproto rpc: RPC error 1400")
    finally:
        await callee.disconnect()


async def test_join_prints_events(livekit_server: LocalServer) -> None:
    room_name = _unique("cli-join")
    join = await _start(
        "join", "--duration", str(scaled(8)), *_server_args(livekit_server, room_name, "watcher")
    )
    other = rtc.Room()
    options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))
    # Join only once the watcher is in, so its log shows us arriving.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(20)
    await other.connect(
        livekit_server.url, livekit_server.create_token("visitor", room_name), options
    )
    try:
        while "watcher" not in {p.identity for p in other.remote_participants.values()}:
            assert loop.time() < deadline, "the watcher never joined"
            await asyncio.sleep(0.05)
        await other.local_participant.publish_data(b"hello watcher", topic="t")
        await asyncio.sleep(scaled(0.5))
    finally:
        await other.disconnect()
    code, out, err = await _finish(join)
    assert code == 0, err
    assert f"connected to room '{room_name}' as watcher" in out
    assert "data from visitor topic=t (13 B): 'hello watcher'" in out
    assert "- visitor left" in out


async def test_bad_token_and_dead_server(livekit_server: LocalServer) -> None:
    code, _, err = await _run("join", "--url", livekit_server.url, "--token", "not-a-jwt")
    assert code == 1
    assert _one_line_error(err).startswith("lkproto join: ")
    code, _, err = await _run(
        "send", "--payload", "x", "--url", "ws://127.0.0.1:1", "--connect-timeout", "5"
    )
    assert code == 1
    assert "cannot reach" in _one_line_error(err)
