"""The command line without a server: parser, decode, token, tap, bench, errors.

Most checks call :func:`lkproto.__main__.main` in process; a few run ``python -m lkproto`` in a
subprocess to check exit codes, stderr and that the import stays cheap.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lkproto.__main__ import COMMANDS, main
from lkproto.api.access_token import TokenVerifier
from lkproto.cli._common import CliError, Progress, preview
from lkproto.cli.decode import parse_bytes
from lkproto.cli.token import parse_duration
from lkproto.testing.server import DEMO_API_KEY, DEMO_API_SECRET
from lkproto.wire import encode, pb
from lkproto.wire.tap import TapRecord, packet_record, rtp_record, signal_record
from tests.conftest import scaled


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lkproto", *args],
        check=False,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=scaled(60),
    )


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        if name == "conformance":
            continue  # its --help belongs to the runner
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out, name
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_import_is_cheap() -> None:
    code = (
        "import sys, lkproto.__main__\n"
        "heavy = [m for m in ('google.protobuf', 'aiortc', 'asyncio', 'lkproto.cli.room') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decode_guesses_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    raw = encode(pb.DataPacket(user=pb.UserPacket(payload=b"hello", topic="chat")))
    assert main(["decode", raw.hex()]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["type"] == "DataPacket.user"
    assert out["fields"]["user"]["topic"] == "chat"
    assert out["unknown_fields"] == 0
    request = encode(pb.SignalRequest(ping_req=pb.Ping(timestamp=1)))
    assert main(["decode", "--compact", base64.b64encode(request).decode()]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "SignalRequest.ping_req"


def test_decode_stdin_subprocess() -> None:
    raw = encode(pb.SignalResponse(join=pb.JoinResponse(room=pb.Room(name="r"))))
    result = _cli("decode", "-", stdin=raw.hex() + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["type"] == "SignalResponse.join"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decode", "zz-not-data!"], "neither hex nor base64"),
        (["decode", "ffffff"], "none of them parses"),
        (["decode", "--encoding", "hex", "abc"], "not hex"),
        (["decode", "--type", "SignalRequest", "ffff"], "cannot decode SignalRequest"),
    ],
)
def test_decode_errors_are_one_line(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lkproto decode: ")
    assert message in lines[0]


def test_parse_bytes() -> None:
    assert parse_bytes("0x0a:0b 0c") == b"\n\x0b\x0c"
    assert parse_bytes("_-8", "base64") == base64.urlsafe_b64decode("_-8=")
    with pytest.raises(CliError):
        parse_bytes("abc", "hex")


def test_token_mints_the_grants(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["token", "--identity", "bob", "--room", "r", "--name", "Bob", "--ttl", "10m"]
    args += ["--kind", "agent", "--attribute", "a=1", "--metadata", "m", "--no-publish"]
    args += ["--sources", "camera, microphone", "--hidden", "--admin", "--update-own-metadata"]
    assert main(args) == 0
    token = capsys.readouterr().out.strip()
    claims = TokenVerifier(DEMO_API_KEY, DEMO_API_SECRET).verify(token)
    assert (claims.identity, claims.name, claims.kind, claims.metadata) == (
        "bob",
        "Bob",
        "agent",
        "m",
    )
    assert claims.attributes == {"a": "1"}
    video = claims.video
    assert video is not None
    assert (video.room, video.room_join, video.can_publish, video.hidden) == (
        "r",
        True,
        False,
        True,
    )
    assert video.can_publish_sources == ["camera", "microphone"]
    assert (video.room_admin, video.can_update_own_metadata) == (True, True)


def test_token_errors() -> None:
    result = _cli("token")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "lkproto token: --identity is required for a join token (or pass --no-join)"
    )
    result = _cli("token", "--identity", "a", "--ttl", "soon")
    assert result.returncode == 2
    assert "not a duration" in result.stderr
    assert parse_duration("1.5h").total_seconds() == 5400
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("0")


def test_token_subprocess_with_custom_key() -> None:
    result = _cli("token", "--api-key", "k", "--api-secret", "s" * 32, "--no-join", "--list")
    assert result.returncode == 0
    claims = TokenVerifier("k", "s" * 32).verify(result.stdout.strip())
    assert claims.video is not None
    assert claims.video.room_list is True


def _write_tap(path: Path) -> list[TapRecord]:
    join = pb.SignalResponse(join=pb.JoinResponse(participant=pb.ParticipantInfo(identity="me")))
    offer = pb.SignalRequest(offer=pb.SessionDescription(type="offer", sdp="v=0"))
    chat = pb.DataPacket(participant_identity="bob", user=pb.UserPacket(payload=b"x", topic="c"))
    other = pb.DataPacket(participant_identity="eve", user=pb.UserPacket(payload=b"y"))
    records = [
        signal_record("<", join, encode(join), mono=1.0, wall=1e9),
        signal_record(">", offer, encode(offer), mono=2.0, wall=1e9),
        packet_record("<", "_reliable", chat, encode(chat), mono=3.0, wall=1e9),
        packet_record("<", "_lossy", other, encode(other), mono=4.0, wall=1e9),
        rtp_record(">", track_sid="TR", kind="audio", packets=1, bytes_=2, mono=5.0, wall=1e9),
    ]
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records), encoding="utf-8")
    return records


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([], [0, 1, 2, 3, 4]),
        (["--type", "DataPacket"], [2, 3]),
        (["--type", "*.user", "--participant", "bob"], [2]),
        (["--type", "SignalRequest.offer", "--type", "SignalResponse.*"], [0, 1]),
        (["--direction", "out"], [1, 4]),
        (["--direction", "<", "--channel", "_lossy"], [3]),
        (["--topic", "c"], [2]),
        (["--channel", "rtp"], [4]),
    ],
)
def test_tap_filters_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], filters: list[str], expected: list[int]
) -> None:
    path = tmp_path / "t.jsonl"
    records = _write_tap(path)
    assert main(["tap", str(path), "--json", *filters]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [TapRecord.from_json(json.loads(line)) for line in out] == [records[i] for i in expected]


def test_tap_pretty_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    _write_tap(path)
    assert main(["tap", str(path), "--type", "DataPacket.user", "--participant", "bob"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("01:46:40.000 < _reliable  DataPacket.user")
    assert "from=bob topic=c" in line
    assert main(["tap", str(path), "--channel", "rtp", "-v"]) == 0
    assert '"packets_sent": 1' in capsys.readouterr().out


def test_tap_subprocess_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    _write_tap(path)
    result = _cli("tap", str(path), "--type", "SignalRequest.offer")
    assert result.returncode == 0
    assert " > signal     SignalRequest.offer" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"direction": "<"}\nnot json\n', encoding="utf-8")
    result = _cli("tap", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"lkproto tap: {bad}:1: not a tap record")
    result = _cli("tap", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"lkproto tap: No such file or directory: {tmp_path / 'missing.jsonl'}"
    )


def test_conformance_without_the_runner_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "lkproto.conformance.cli", None)  # "not installed"
    assert main(["conformance", "--list"]) == 2
    assert capsys.readouterr().err.strip() == (
        "lkproto conformance: the conformance runner is not available "
        "(lkproto.conformance.cli not found)"
    )


def test_conformance_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("lkproto.conformance.cli")
    fake.__doc__ = "Fake runner."

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--list", action="store_true")

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 3

    fake.add_arguments = add_arguments  # type: ignore[attr-defined]
    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lkproto.conformance.cli", fake)
    assert main(["conformance", "--list"]) == 3
    assert seen[0].list is True


def test_bench_lists_and_rejects_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fast.py").write_text('"""Fast one."""\nimport sys\nsys.exit(len(sys.argv))\n')
    (tmp_path / "_helper.py").write_text("")
    assert main(["bench", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "fast  Fast one."
    assert main(["bench", "--dir", str(tmp_path), "fast", "--", "a", "b"]) == 3
    assert main(["bench", "--dir", str(tmp_path), "slow"]) == 1
    assert "no benchmark 'slow'" in capsys.readouterr().err
    assert main(["bench", "--dir", str(tmp_path / "none")]) == 1


def test_unrecognized_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["decode", "00", "--bogus"])
    assert exc.value.code == 2


def test_unexpected_exceptions_and_interrupts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lkproto.cli.decode as decode_cli

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("kaput")

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(decode_cli, "run_decode", boom)
    assert main(["decode", "00"]) == 1
    assert capsys.readouterr().err.strip() == "lkproto decode: unexpected RuntimeError: kaput"
    monkeypatch.setenv("LKPROTO_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["decode", "00"])
    monkeypatch.setattr(decode_cli, "run_decode", interrupted)
    assert main(["decode", "00"]) == 130
    assert capsys.readouterr().err == ""


def test_progress_and_preview() -> None:
    stream = io.StringIO()
    bar = Progress(2048, "f", stream=stream)
    bar.update(1024)
    bar.update(2048)
    text = stream.getvalue()
    assert "100.0%" in text
    assert "2.0 KiB/2.0 KiB" in text
    assert "ETA 0s" in text
    assert preview(b"\xff\xfe") == "0xfffe"
    assert preview("x" * 100).endswith("…'")


def test_a_missing_rtc_extra_is_named(tmp_path: Path) -> None:
    # The protobuf-only install: a command that opens a room must say which extra it needs, not
    # print an unexpected ModuleNotFoundError. Simulated by making `aiortc` unimportable.
    blocker = tmp_path / "aiortc.py"
    blocker.write_text("raise ModuleNotFoundError(\"No module named 'aiortc'\", name='aiortc')\n")
    result = subprocess.run(
        [sys.executable, "-m", "lkproto", "join", "--url", "ws://127.0.0.1:9", "--token", "x"],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[3]}", "PATH": ""},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "needs the 'rtc' extra" in result.stderr
    assert "pip install 'lkproto[rtc]'" in result.stderr
    assert "unexpected" not in result.stderr
