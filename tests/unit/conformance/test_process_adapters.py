"""The JSON-lines child-process adapters, driven against a fake child written in Python."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from lkproto.conformance import _audio, process_adapters
from lkproto.conformance._registry import Unsupported
from lkproto.conformance.adapters import ADAPTERS, JoinRefused, RpcFailure
from lkproto.conformance.process_adapters import (
    GoClient,
    ProcessClient,
    _factory,
    _opus_decode,
    _opus_tone,
    _steady,
)

_CHILD = textwrap.dedent(
    """
    import json, sys, time

    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\\n")
        sys.stdout.flush()

    send({"level": 30, "msg": "an SDK log line on stdout"})
    print("not json at all", flush=True)
    send({"event": "ready", "protocol": 1, "sdk": "fake 0.0"})
    for line in sys.stdin:
        req = json.loads(line)
        op, ident = req["op"], req["id"]
        if op == "exit":
            if MODE == "stubborn":
                time.sleep(60)
            break
        if op == "connect":
            if req["token"] == "bad":
                send({"id": ident, "ok": False, "kind": "join_refused", "message": "401",
                      "status": 401})
                continue
            send({"id": ident, "ok": True, "value": None})
        elif op == "publish_data":
            send({"event": "data", "payload_b64": req["payload_b64"], "sender": "me",
                  "topic": req["topic"], "reliable": None})
            send({"id": ident, "ok": True, "value": None})
        elif op == "remotes":
            send({"id": ident, "ok": True, "value": [
                {"identity": "peer", "sid": "PA_1", "name": "n", "metadata": "m",
                 "attributes": {"a": "1"}, "kind": 0, "tracks": {"TR_1": True}}]})
        elif op == "perform_rpc":
            send({"id": ident, "ok": False, "kind": "rpc_error", "message": "nope",
                  "code": 1500, "data": "d"})
        elif op == "simulate":
            send({"event": "disconnected", "reason": None, "detail": req["kind"]})
            send({"id": ident, "ok": True, "value": None})
        elif op == "local_sid":
            if MODE == "die":
                sys.stderr.write("fatal: the SDK crashed\\n")
                sys.stderr.flush()
                sys.exit(3)
            send({"id": ident, "ok": True, "value": "PA_me"})
        elif op == "disconnect":
            send({"id": ident, "ok": True, "value": None})
        else:
            send({"id": ident, "ok": False, "kind": "unsupported", "message": "no " + op})
    """
)


def _client(
    tmp_path: Path, mode: str = "", cls: type[ProcessClient] = ProcessClient
) -> ProcessClient:
    script = tmp_path / "child.py"
    script.write_text(f"MODE = {mode!r}\n" + _CHILD)

    class Fake(cls):  # type: ignore[valid-type,misc]
        adapter = "fake"

        def command(self) -> list[str]:
            return [sys.executable, str(script)]

    return Fake("client")


async def test_requests_replies_and_events(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        await client.connect("ws://x", "tok")
        assert client.connected
        assert client.sdk == "fake 0.0"
        await client.publish_data(b"\x00\xff", topic="t")
        assert len(client.received) == 1
        got = client.received[0]
        assert (got.payload, got.topic, got.sender, got.reliable) == (b"\x00\xff", "t", "me", None)
        peers = await client.remotes()
        assert peers["peer"].attributes == {"a": "1"}
        assert peers["peer"].tracks == {"TR_1": True}
        assert await client.local_sid() == "PA_me"
        # The SDK's JSON log line and the stray text line were kept for error messages.
        assert any("an SDK log line" in line for line in client._stderr)
    finally:
        await client.close()
    assert client._proc is not None
    assert client._proc.returncode == 0


async def test_error_kinds_map_to_the_runner_exceptions(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        with pytest.raises(JoinRefused) as refused:
            await client.connect("ws://x", "bad")
        assert refused.value.status == 401
        await client.connect("ws://x", "tok")
        with pytest.raises(RpcFailure) as failed:
            await client.perform_rpc("peer", "m", "p")
        assert (failed.value.code, failed.value.message, failed.value.data) == (1500, "nope", "d")
        with pytest.raises(Unsupported, match="no set_name"):
            await client.set_name("x")
    finally:
        await client.close()


async def test_a_reason_without_a_protocol_value_is_unsupported(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        await client.connect("ws://x", "tok")
        assert client.disconnect_reason is None
        await client.simulate("other reasons")
        assert not client.connected
        with pytest.raises(Unsupported, match="other reasons"):
            _ = client.disconnect_reason
    finally:
        await client.close()


async def test_go_reasons_map_back_when_unambiguous(tmp_path: Path) -> None:
    client = _client(tmp_path, cls=GoClient)
    try:
        await client.connect("ws://x", "tok")
        await client.simulate("duplicate identity")
        assert client.disconnect_reason == 2
    finally:
        await client.close()


async def test_a_dead_child_fails_the_pending_call_with_its_stderr(tmp_path: Path) -> None:
    client = _client(tmp_path, mode="die")
    try:
        await client.connect("ws://x", "tok")
        with pytest.raises(RuntimeError, match=r"exited with 3.*the SDK crashed"):
            await client.local_sid()
        assert not client.connected
    finally:
        await client.close()


async def test_close_kills_a_child_that_does_not_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_adapters, "_EXIT_TIMEOUT_S", 0.5)
    client = _client(tmp_path, mode="stubborn")
    await client.connect("ws://x", "tok")
    await asyncio.wait_for(client.close(), 10)
    assert client._proc is not None
    assert client._proc.returncode is not None


async def test_a_factory_whose_preparation_failed_refuses_every_client() -> None:
    def broken() -> object:
        raise Unsupported("the Go toolchain (`go`) is not installed")

    factory = _factory(GoClient, broken)
    client = factory("client")
    assert "data" in client.capabilities
    with pytest.raises(Unsupported, match="toolchain"):
        await client.connect("ws://x", "tok")
    await client.close()


def test_both_adapters_are_registered() -> None:
    assert {"livekit-go", "livekit-node"} <= set(ADAPTERS)


def test_go_capabilities_leave_out_what_the_sdk_lacks() -> None:
    assert not {"rtt", "stream_errors"} & GoClient.capabilities
    assert {"data", "rpc", "streams", "state", "media", "media_receive"} <= GoClient.capabilities


def test_steady_window_skips_silence_and_start_up() -> None:
    silence = b"\x00\x00" * _audio.SAMPLE_RATE
    tone = b"".join(
        _audio.sine_frame(440.0, n) for n in range(0, 2 * _audio.SAMPLE_RATE, _audio.FRAME_SAMPLES)
    )
    window = _steady(silence + tone, 1.0)
    assert len(window) == _audio.SAMPLE_RATE * 2
    assert window == tone[_audio.SAMPLE_RATE // 4 * 2 : _audio.SAMPLE_RATE // 4 * 2 + len(window)]


def test_opus_tone_decodes_back_to_its_pitch() -> None:
    pytest.importorskip("av")
    packets = _opus_tone(1000.0)
    assert len(packets) >= 50
    pcm = _opus_decode(packets * 2)
    assert abs(_audio.peak_frequency(_steady(pcm, 1.0)) - 1000.0) < 20


async def test_concurrent_first_requests_start_one_child(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        await asyncio.gather(client.connect("ws://x", "tok"), client.local_sid())
        first = client._proc
        await client.remotes()
        assert client._proc is first
        # Each child prints one stray line: one child, one line.
        assert sum("not json at all" in line for line in client._stderr) == 1
    finally:
        await client.close()
