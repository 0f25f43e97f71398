"""Markdown/HTML reports and run comparison (lkproto.conformance.report)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from lkproto.conformance import Result
from lkproto.conformance.report import (
    compare,
    format_comparison,
    html_report,
    lanes,
    load_results,
    markdown_report,
)

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.conformance._registry import Outcome


def row(
    scenario: str,
    client: str,
    result: Outcome,
    reason: str = "",
    *,
    seconds: float = 1.0,
    server: str = "v1.13.5",
    started: float | None = 0.0,
) -> Result:
    return Result(
        scenario=scenario,
        client=client,
        result=result,
        reason=reason,
        seconds=seconds,
        server=server,
        started=started,
    )


RUN = [
    row("join.basic", "lkproto", "pass", seconds=2.0, started=0.0),
    row("join.basic", "livekit-python", "pass", seconds=3.0, started=0.0),
    row("data.topic", "lkproto", "pass", seconds=1.0, started=2.0),
    row("data.topic", "livekit-python", "fail", "topic 'x' | <b>", seconds=4.0, started=3.0),
    row("rpc.v1", "lkproto", "pass", seconds=1.5, started=2.5),
    row("rpc.v1", "livekit-python", "unsupported", "no rpc & co", seconds=0.0, started=7.0),
]


def test_json_row_round_trip_and_old_rows() -> None:
    r = row("a.b", "lkproto", "fail", "why", seconds=1.234, started=5.678)
    assert Result.from_json(r.to_json()) == row(
        "a.b", "lkproto", "fail", "why", seconds=1.23, started=5.68
    )
    # Rows of the five-key format (no server, no start) still read, and stay five keys.
    old = {"scenario": "a.b", "client": "c", "result": "pass", "reason": "", "seconds": 2}
    parsed = Result.from_json(old)
    assert (parsed.server, parsed.started) == ("", None)
    assert parsed.to_json() == old
    with pytest.raises(ValueError, match="lacks 'client'"):
        Result.from_json({"scenario": "a", "result": "pass", "seconds": 1})
    with pytest.raises(ValueError, match="unknown result"):
        Result.from_json({**old, "result": "maybe"})


def test_lanes_wall_time_and_totals() -> None:
    (python,) = (s for s in lanes(RUN) if s.client == "livekit-python")
    assert (python.passed, python.failed, python.unsupported) == (1, 1, 1)
    assert python.wall_s == pytest.approx(7.0)  # 0.0 -> max(3, 3 + 4, 7 + 0)
    assert python.busy_s == pytest.approx(7.0)
    (lk,) = (s for s in lanes(RUN) if s.client == "lkproto")
    assert lk.wall_s == pytest.approx(4.0)  # 0.0 -> 2.5 + 1.5
    assert lk.label == "lkproto @ v1.13.5"
    no_starts = lanes([row("a", "c", "pass", started=None)])
    assert no_starts[0].wall_s is None


def test_markdown_puts_failures_first_with_reasons() -> None:
    md = markdown_report(RUN, title="t")
    lines = md.splitlines()
    matrix = lines[lines.index("| scenario | lkproto @ v1.13.5 | livekit-python @ v1.13.5 |") :]
    order = [m.group(1) for line in matrix if (m := re.match(r"\| `([^`]+)`", line))]
    assert order == ["data.topic", "rpc.v1", "join.basic"]
    assert "| `data.topic` | pass 1.0 s | **FAIL** 4.0 s |" in lines
    # The reason is one cell: its pipe is escaped.
    assert "| `data.topic` | livekit-python @ v1.13.5 | topic 'x' \\| <b> | 4.0 s |" in lines
    assert "| `rpc.v1` | livekit-python @ v1.13.5 | no rpc & co |" in lines
    assert "| livekit-python @ v1.13.5 | 1 | 1 | 1 | 7.0 s | 7.0 s |" in lines
    assert "## Failures (1)" in lines
    assert "## Unsupported (1)" in lines


def test_markdown_without_failures_says_none() -> None:
    md = markdown_report([row("a", "c", "pass")])
    assert "## Failures (0)\n\nNone." in md


def test_html_escapes_and_loads_nothing() -> None:
    evil = row("x.y", "lkproto", "fail", '<script>alert("1")</script> & "q"')
    page = html_report([*RUN, evil], title="<t>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &quot;q&quot;" in page
    assert "<title>&lt;t&gt;</title>" in page
    assert not re.search(r"(src|href)\s*=|@import|url\(", page)
    # Failures first in the matrix too, and the reason is the cell's tooltip.
    matrix = page[page.index("<h2>Matrix") :]
    assert matrix.index("x.y") < matrix.index("join.basic")
    assert 'class="fail" title="topic &#x27;x&#x27; | &lt;b&gt;">FAIL 4.0&nbsp;s' in page


def test_compare_lists_new_failures_first() -> None:
    old = [
        row("a", "lkproto", "pass"),
        row("b", "lkproto", "fail", "old reason"),
        row("c", "lkproto", "pass"),
        row("d", "lkproto", "fail", "same"),
        row("gone", "lkproto", "pass"),
    ]
    new = [
        row("a", "lkproto", "fail", "broke"),
        row("b", "lkproto", "pass"),
        row("c", "lkproto", "unsupported", "no"),
        row("d", "lkproto", "fail", "same"),
        row("fresh", "lkproto", "fail", "new one"),
        row("fresh2", "lkproto", "pass"),
    ]
    c = compare(old, new)
    assert [x.scenario for x in c.new_failures] == ["a", "fresh"]
    assert c.new_failures[1].old is None
    assert [x.scenario for x in c.fixed] == ["b"]
    assert [x.scenario for x in c.changed] == ["c"]
    assert [x.scenario for x in c.added] == ["fresh2"]
    assert [x.scenario for x in c.removed] == ["gone"]
    assert c.unchanged == 1
    text = format_comparison(c)
    assert text.startswith("new failures (2):\n  a [lkproto]: pass -> fail: broke\n")
    assert text.index("fixed (1)") < text.index("other changes (1)") < text.index("removed (1)")
    assert text.endswith("unchanged: 1\n")


def test_compare_across_releases_and_within_a_matrix() -> None:
    # One release each: cells match by scenario and client, whatever the releases.
    c = compare([row("a", "lk", "pass", server="v1.11.0")], [row("a", "lk", "fail", "x")])
    assert [x.lane for x in c.new_failures] == ["lk"]
    # A matrix: the release is part of the cell.
    old = [row("a", "lk", "pass", server="v1"), row("a", "lk", "pass", server="v2")]
    new = [row("a", "lk", "pass", server="v1"), row("a", "lk", "fail", "y", server="v2")]
    assert [x.lane for x in compare(old, new).new_failures] == ["lk @ v2"]
    assert compare(new, new) == compare(new, new).__class__(
        new_failures=(), fixed=(), changed=(), added=(), removed=(), unchanged=2
    )


def test_load_results(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps([r.to_json() for r in RUN]))
    assert load_results(path) == RUN
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="JSON list"):
        load_results(path)
