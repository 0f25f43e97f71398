"""``lkproto tap FILE --html``: the explorer page from a tap file, filters and limits applied."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from lkproto.__main__ import main
from lkproto.wire import encode, pb
from lkproto.wire.tap import TapRecord, packet_record, signal_record

if TYPE_CHECKING:
    from pathlib import Path


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
    ]
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records), encoding="utf-8")
    return records


def _data(page: str) -> dict[str, object]:
    match = re.search(r'id="lk-data">(.*?)</script>', page, re.S)
    assert match is not None
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


def _types(data: dict[str, object]) -> list[str]:
    rows = data["rows"]
    assert isinstance(rows, list)
    return [row["type"] for row in rows]


def test_html_page_written_to_a_file(tmp_path: Path) -> None:
    tap = tmp_path / "run.jsonl"
    records = _write_tap(tap)
    out = tmp_path / "run.html"
    assert main(["tap", str(tap), "--html", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<title>run.jsonl · lkproto</title>" in page
    data = _data(page)
    assert _types(data) == [r.type for r in records]
    lanes = data["lanes"]
    assert isinstance(lanes, list)
    assert [lane["label"] for lane in lanes] == ["client (me)", "server (SFU)", "bob", "eve"]


def test_html_to_stdout_with_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tap = tmp_path / "run.jsonl"
    _write_tap(tap)
    assert main(["tap", str(tap), "--html", "--type", "DataPacket", "--participant", "bob"]) == 0
    data = _data(capsys.readouterr().out)
    assert _types(data) == ["DataPacket.user"]
    assert data["total"] == 1


def test_html_record_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tap = tmp_path / "run.jsonl"
    _write_tap(tap)
    assert main(["tap", str(tap), "--html", "--max-records", "2"]) == 0
    data = _data(capsys.readouterr().out)
    assert _types(data) == ["SignalResponse.join", "SignalRequest.offer"]
    assert (data["total"], data["omitted"]) == (4, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--html", "--follow"],
            "--follow cannot be used with --html (the page is written once)",
        ),
        (["--html", "--json"], "--json cannot be used with --html"),
        (["--html", "--max-records", "0"], "max_records must be a positive integer, got 0"),
        (["--max-records", "3"], "--max-records and --output go with --html"),
        (["-o", "x.html"], "--max-records and --output go with --html"),
    ],
)
def test_html_option_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    tap = tmp_path / "run.jsonl"
    _write_tap(tap)
    assert main(["tap", str(tap), *args]) == 2
    assert capsys.readouterr().err.strip() == f"lkproto tap: {message}"
