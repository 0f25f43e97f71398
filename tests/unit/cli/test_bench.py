"""``lkproto bench``: name -> script, argument pass-through, result file (no benchmark runs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lkproto.__main__ import main
from lkproto.cli.bench import find_benchmarks, result_path, script_command

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"

# Writes its argv (after the script name) to the --json file, or to stdout without one.
_ECHO = '''"""Echo one."""
import json, sys
args = sys.argv[1:]
if args[:1] == ["--json"]:
    open(args[1], "w").write(json.dumps({"argv": args[2:]}))
else:
    print(json.dumps(args))
'''


def test_every_script_of_the_tree_is_listed_by_name() -> None:
    found = find_benchmarks(BENCHMARKS)
    expected = {p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert set(found) == expected
    assert {"join_time", "footprint", "data_rpc", "streams", "media"} <= set(found)
    assert all(found[name] for name in ("join_time", "footprint")), "first docstring line"


def test_script_command_maps_the_name_and_passes_arguments_through(tmp_path: Path) -> None:
    assert script_command(tmp_path, "join_time", ["--", "--joins", "5"]) == [
        sys.executable,
        str(tmp_path / "join_time.py"),
        "--joins",
        "5",
    ]
    assert script_command(tmp_path, "join_time.py", ["--joins", "5"], tmp_path / "r.json") == [
        sys.executable,
        str(tmp_path / "join_time.py"),
        "--json",
        str(tmp_path / "r.json"),
        "--joins",
        "5",
    ]
    # A later "--" belongs to the script.
    assert script_command(tmp_path, "x", ["-a", "--", "-b"])[2:] == ["-a", "--", "-b"]


def test_result_path_defaults_to_the_scripts_result_file(tmp_path: Path) -> None:
    assert result_path(tmp_path, "media", None) == tmp_path / "results" / "media.json"
    assert result_path(tmp_path, "media", tmp_path / "x.json") == tmp_path / "x.json"


def test_a_run_passes_arguments_and_prints_the_result_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "echo.py").write_text(_ECHO)
    out = tmp_path / "out.json"
    status = main(
        ["bench", "--dir", str(tmp_path), "--json", str(out), "--print-json", "echo", "--", "-x"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == {"argv": ["-x"]}
    assert json.loads(out.read_text()) == {"argv": ["-x"]}


def test_without_a_result_file_only_the_script_speaks(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "echo.py").write_text(_ECHO)
    assert main(["bench", "--dir", str(tmp_path), "echo", "a", "b"]) == 0
    assert json.loads(capfd.readouterr().out) == ["a", "b"]


def test_a_stale_result_file_is_not_reported(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "echo.py").write_text(_ECHO)
    (tmp_path / "results").mkdir()
    stale = tmp_path / "results" / "echo.json"
    stale.write_text("{}")
    os.utime(stale, (0, 0))
    assert main(["bench", "--dir", str(tmp_path), "echo"]) == 0
    assert "result:" not in capfd.readouterr().out


def test_the_real_join_time_script_answers_help(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "join_time", "--", "--help"]) == 0
    assert "--situations" in capfd.readouterr().out
