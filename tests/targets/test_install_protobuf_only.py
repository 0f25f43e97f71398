"""Only-protobuf install (issue 14): ``pip install .`` without the ``rtc`` extra, in a fresh venv.

Such an install must give working ``lkproto.wire``, ``lkproto.core`` and ``lkproto.api`` and the
``lkproto decode`` / ``lkproto tap`` commands, with none of the media stack (aiortc, PyAV,
websockets, cryptography) installed. The venv is built once per session from this checkout
(pip's cache makes a warm run take seconds); the checks run inside it as subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120
# DataPacket{user: {payload: "hello", topic: "chat"}}, the example of `lkproto decode --help`
USER_PACKET_HEX = "120d120568656c6c6f220463686174"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install <this checkout>`` (no extras) in it."""
    root = tmp_path_factory.mktemp("protobuf-only")
    subprocess.run(
        [sys.executable, "-m", "venv", str(root / "venv")],
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    done = subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-m", "pip", "install",
         "--disable-pip-version-check", "--quiet", str(REPO)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "venv"


def run(venv: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True, text=True, input=stdin, timeout=RUN_TIMEOUT_S, check=False,
        cwd=venv,  # not the checkout: lkproto must come from the venv's site-packages
    )  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done.stdout


def test_only_protobuf_is_installed(venv: Path) -> None:
    listing = json.loads(run(venv, "python", "-m", "pip", "list", "--format=json"))
    names = {d["name"].lower() for d in listing}
    assert {"lkproto", "protobuf"} <= names
    assert not names & {"aiortc", "av", "websockets", "cryptography", "aioice", "pylibsrtp"}


def test_wire_core_and_api_work(venv: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, lkproto
        from lkproto import wire
        from lkproto.api import AccessToken, TokenVerifier, VideoGrants
        import lkproto.core
        # every core module imports with protobuf alone (the layering rule)
        for info in pkgutil.iter_modules(lkproto.core.__path__, "lkproto.core."):
            importlib.import_module(info.name)
        assert lkproto.__file__.startswith({str(venv)!r}), lkproto.__file__
        packet = wire.decode_data_packet(bytes.fromhex({USER_PACKET_HEX!r}))
        assert packet.user.payload == b"hello" and packet.user.topic == "chat"
        assert wire.encode_data_packet(packet).hex() == {USER_PACKET_HEX!r}
        jwt = (AccessToken("key", "secret-" + "x" * 32).with_identity("alice")
               .with_grants(VideoGrants(room_join=True, room="r")).to_jwt())
        claims = TokenVerifier("key", "secret-" + "x" * 32).verify(jwt)
        assert claims.identity == "alice", claims
        print("ok")
        """
    )
    assert run(venv, "python", "-c", script).strip() == "ok"


def test_decode_and_tap_commands(venv: Path) -> None:
    decoded = json.loads(run(venv, "lkproto", "decode", USER_PACKET_HEX))
    assert decoded["type"] == "DataPacket.user"
    assert decoded["fields"]["user"]["topic"] == "chat"
    # A tap file as RoomOptions(tap_file=...) writes it, made with lkproto.wire.tap in the venv.
    tap_file = venv / "run.jsonl"
    script = textwrap.dedent(
        f"""
        import json, time
        from lkproto import wire
        from lkproto.wire import tap
        raw = bytes.fromhex({USER_PACKET_HEX!r})
        record = tap.packet_record("<", "_reliable", wire.decode_data_packet(raw), raw,
                                   mono=time.monotonic(), wall=time.time())
        with open({str(tap_file)!r}, "w") as out:
            out.write(json.dumps(record.to_json()) + "\\n")
        """
    )
    run(venv, "python", "-c", script)
    listed = [json.loads(line) for line in run(venv, "lkproto", "tap", str(tap_file), "--json")
              .splitlines() if line.strip()]  # fmt: skip
    assert [r["type"] for r in listed] == ["DataPacket.user"]
    assert listed[0]["topic"] == "chat"
    text = run(venv, "lkproto", "tap", str(tap_file))
    assert "DataPacket.user" in text
