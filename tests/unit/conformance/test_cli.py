"""The runner's command line without a server: --render, --compare, version options."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import pytest

from lkproto.conformance import Result
from lkproto.conformance.cli import _versions, add_arguments, main

if TYPE_CHECKING:
    from pathlib import Path


def _save(path: Path, *outcomes: tuple[str, str]) -> Path:
    rows = [
        Result(
            scenario=name,
            client="lkproto",
            result=outcome,  # type: ignore[arg-type]
            reason="" if outcome == "pass" else "because",
            seconds=1.0,
            server="v1.13.5",
            started=0.0,
        ).to_json()
        for name, outcome in outcomes
    ]
    path.write_text(json.dumps(rows))
    return path


def test_compare_exit_status_follows_new_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _save(tmp_path / "old.json", ("a", "pass"), ("b", "fail"))
    worse = _save(tmp_path / "worse.json", ("a", "fail"), ("b", "fail"))
    better = _save(tmp_path / "better.json", ("a", "pass"), ("b", "pass"))
    assert main(["--compare", str(old), str(worse)]) == 1
    out = capsys.readouterr().out
    assert "new failures (1):\n  a [lkproto]: pass -> fail: because" in out
    assert main(["--compare", str(old), str(better)]) == 0
    assert "fixed (1):" in capsys.readouterr().out


def test_compare_unreadable_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["--compare", str(bad), str(bad)]) == 2
    assert "JSON list" in capsys.readouterr().err


def test_render_writes_markdown_and_html(tmp_path: Path) -> None:
    run = _save(tmp_path / "run.json", ("a", "pass"), ("b", "fail"))
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["--render", str(run), "--markdown", str(md), "--html", str(page)]) == 0
    assert "## Failures (1)" in md.read_text()
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_server_versions_need_local(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--url", "ws://x", "--api-key", "k", "--api-secret", "s"]
    assert main([*args, "--server-versions", "v1.11.0,v1.13.5"]) == 2
    assert "needs --local" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--local", "--server-versions", " , "])


def test_server_versions_in_order_without_repeats() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--server-version", "v1.13.5", "--server-versions", "v1.11.0, v1.9.11,v1.13.5"]
    )
    assert _versions(args) == ["v1.13.5", "v1.11.0", "v1.9.11"]
    assert _versions(parser.parse_args([])) == []
