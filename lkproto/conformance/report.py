"""Readable conformance reports: Markdown, self-contained HTML, and a comparison of two runs.

All of them are built from the JSON rows the runner writes (:meth:`Result.to_json`), so a report
can be rendered again from a saved run, and two saved runs can be compared.

A *lane* is one client against one server release (``lkproto @ v1.13.5``): the matrix has one
column per lane. Its *wall time* is from the first start to the last end of its runs (runs of
several lanes overlap, so the sum of scenario times says little about how long a lane took).

Order: scenarios with a failure in any lane come first, then those with an ``unsupported``
cell, then the rest, each group in catalogue order; the lists of reasons follow the same rule.
The HTML page escapes every string taken from a run, carries its own stylesheet and loads
nothing (no script, no external link), so it can be attached to a CI run and opened offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lkproto.conformance._registry import Outcome, Result

__all__ = [
    "Change",
    "Comparison",
    "LaneSummary",
    "compare",
    "format_comparison",
    "html_report",
    "lane_label",
    "lanes",
    "load_results",
    "markdown_report",
]

_RANK: Final[dict[Outcome, int]] = {"fail": 0, "unsupported": 1, "pass": 2}
"""Sort key of a scenario by its worst cell: failures first."""


def lane_label(client: str, server: str) -> str:
    """The column name of a lane: ``client @ server``, or ``client`` if the server is unknown."""
    return f"{client} @ {server}" if server else client


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneSummary:
    """Totals of one lane (one client against one server release).

    Attributes:
        client: adapter name.
        server: server release (empty when unknown).
        passed: scenarios that passed.
        failed: scenarios that failed.
        unsupported: scenarios the client cannot do.
        wall_s: first start to last end of the lane's runs; ``None`` when the rows carry no
            start times (reports of older runners).
        busy_s: sum of the lane's scenario times.
    """

    client: str
    server: str
    passed: int
    failed: int
    unsupported: int
    wall_s: float | None
    busy_s: float

    @property
    def label(self) -> str:
        """The lane's column name (see :func:`lane_label`)."""
        return lane_label(self.client, self.server)


def lanes(results: Iterable[Result]) -> list[LaneSummary]:
    """One summary per lane, in the order the lanes first appear in ``results``."""
    grouped: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        grouped.setdefault((r.client, r.server), []).append(r)
    summaries = []
    for (client, server), rows in grouped.items():
        starts = [r.started for r in rows if r.started is not None]
        wall = None
        if len(starts) == len(rows):
            wall = max(r.seconds + (r.started or 0.0) for r in rows) - min(starts)
        summaries.append(
            LaneSummary(
                client=client,
                server=server,
                passed=sum(r.result == "pass" for r in rows),
                failed=sum(r.result == "fail" for r in rows),
                unsupported=sum(r.result == "unsupported" for r in rows),
                wall_s=wall,
                busy_s=sum(r.seconds for r in rows),
            )
        )
    return summaries


def load_results(path: str | Path) -> list[Result]:
    """Read a JSON report (a list of rows) written by ``--json``.

    Raises:
        ValueError: the file is not such a list.
        OSError: the file cannot be read.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValueError(f"{path}: a conformance report is a JSON list of objects")
    return [Result.from_json(row) for row in data]


def _ordered(results: Sequence[Result]) -> tuple[list[str], dict[tuple[str, str], Result]]:
    """Scenario names failures first (then unsupported, then passing), and cells by
    ``(scenario, lane label)``."""
    cells = {(r.scenario, lane_label(r.client, r.server)): r for r in results}
    catalogue = list(dict.fromkeys(r.scenario for r in results))
    worst: dict[str, int] = {}
    for r in results:
        worst[r.scenario] = min(worst.get(r.scenario, 2), _RANK[r.result])
    position = {name: i for i, name in enumerate(catalogue)}
    names = sorted(catalogue, key=lambda n: (worst[n], position[n]))
    return names, cells


def _non_passing(results: Sequence[Result], outcome: Outcome, names: list[str]) -> list[Result]:
    position = {name: i for i, name in enumerate(names)}
    rows = [r for r in results if r.result == outcome]
    return sorted(rows, key=lambda r: position[r.scenario])


def _md(text: str) -> str:
    """One Markdown table cell: a single line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _md_cell(result: Result | None) -> str:
    if result is None:
        return "-"
    if result.result == "fail":
        return f"**FAIL** {result.seconds:.1f} s"
    if result.result == "unsupported":
        return "unsupported"
    return f"pass {result.seconds:.1f} s"


def markdown_report(results: Sequence[Result], *, title: str = "Conformance") -> str:
    """A Markdown document: lane totals with wall times, failures with reasons, unsupported
    cells with reasons, then the scenario x lane matrix (failing scenarios first)."""
    summaries = lanes(results)
    names, cells = _ordered(results)
    out = [f"# {_md(title)}", ""]
    out += ["| lane | pass | fail | unsupported | wall time | sum of scenario times |"]
    out += ["|---|---:|---:|---:|---:|---:|"]
    for s in summaries:
        out.append(
            f"| {_md(s.label)} | {s.passed} | {s.failed} | {s.unsupported} "
            f"| {_seconds(s.wall_s)} | {_seconds(s.busy_s)} |"
        )
    failures = _non_passing(results, "fail", names)
    out += ["", f"## Failures ({len(failures)})", ""]
    if failures:
        out += ["| scenario | lane | reason | time |", "|---|---|---|---:|"]
        out += [
            f"| `{r.scenario}` | {_md(lane_label(r.client, r.server))} | {_md(r.reason)} "
            f"| {r.seconds:.1f} s |"
            for r in failures
        ]
    else:
        out.append("None.")
    unsupported = _non_passing(results, "unsupported", names)
    out += ["", f"## Unsupported ({len(unsupported)})", ""]
    if unsupported:
        out += ["| scenario | lane | reason |", "|---|---|---|"]
        out += [
            f"| `{r.scenario}` | {_md(lane_label(r.client, r.server))} | {_md(r.reason)} |"
            for r in unsupported
        ]
    else:
        out.append("None.")
    labels = [s.label for s in summaries]
    out += ["", f"## Matrix ({len(names)} scenarios x {len(labels)} lanes)", ""]
    out.append("| scenario | " + " | ".join(_md(label) for label in labels) + " |")
    out.append("|---|" + "---|" * len(labels))
    for name in names:
        row = " | ".join(_md_cell(cells.get((name, label))) for label in labels)
        out.append(f"| `{name}` | {row} |")
    return "\n".join(out) + "\n"


_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; }
td.pass { background: #e6f4e6; }
td.fail { background: #f9d6d5; font-weight: bold; }
td.unsupported { background: #eeeeee; color: #555; }
code { font-size: 0.95em; }
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_cell(result: Result | None) -> str:
    if result is None:
        return "<td>-</td>"
    word = {"pass": "pass", "fail": "FAIL", "unsupported": "unsupported"}[result.result]
    tip = f' title="{_h(result.reason)}"' if result.reason else ""
    timing = "" if result.result == "unsupported" else f" {result.seconds:.1f}&nbsp;s"
    return f'<td class="{result.result}"{tip}>{word}{timing}</td>'


def html_report(results: Sequence[Result], *, title: str = "Conformance") -> str:
    """The same content as :func:`markdown_report` as one HTML page with no external resource;
    a matrix cell's reason is also its tooltip."""
    summaries = lanes(results)
    names, cells = _ordered(results)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        "<table><tr><th>lane</th><th>pass</th><th>fail</th><th>unsupported</th>"
        "<th>wall time</th><th>sum of scenario times</th></tr>",
    ]
    for s in summaries:
        out.append(
            f'<tr><td>{_h(s.label)}</td><td class="num">{s.passed}</td>'
            f'<td class="num">{s.failed}</td><td class="num">{s.unsupported}</td>'
            f'<td class="num">{_h(_seconds(s.wall_s))}</td>'
            f'<td class="num">{_h(_seconds(s.busy_s))}</td></tr>'
        )
    out.append("</table>")
    sections: tuple[tuple[Outcome, str], ...] = (
        ("fail", "Failures"),
        ("unsupported", "Unsupported"),
    )
    for outcome, heading in sections:
        rows = _non_passing(results, outcome, names)
        out.append(f"<h2>{heading} ({len(rows)})</h2>")
        if not rows:
            out.append("<p>None.</p>")
            continue
        out.append("<table><tr><th>scenario</th><th>lane</th><th>reason</th><th>time</th></tr>")
        out += [
            f"<tr><td><code>{_h(r.scenario)}</code></td>"
            f"<td>{_h(lane_label(r.client, r.server))}</td><td>{_h(r.reason)}</td>"
            f'<td class="num">{r.seconds:.1f}&nbsp;s</td></tr>'
            for r in rows
        ]
        out.append("</table>")
    labels = [s.label for s in summaries]
    out.append(f"<h2>Matrix ({len(names)} scenarios x {len(labels)} lanes)</h2>")
    out.append(
        "<table><tr><th>scenario</th>" + "".join(f"<th>{_h(x)}</th>" for x in labels) + "</tr>"
    )
    for name in names:
        row = "".join(_html_cell(cells.get((name, label))) for label in labels)
        out.append(f"<tr><td><code>{_h(name)}</code></td>{row}</tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


# -- comparing two runs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One cell that differs between two runs.

    Attributes:
        scenario: scenario name.
        lane: lane label (``client @ server``; just the client when the runs each used one
            server, possibly different ones).
        old: the old outcome, ``None`` when the cell is new.
        new: the new outcome, ``None`` when the cell is gone.
        old_reason: the old reason (empty for pass).
        new_reason: the new reason (empty for pass).
    """

    scenario: str
    lane: str
    old: Outcome | None
    new: Outcome | None
    old_reason: str
    new_reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """What changed from an old run to a new one.

    Attributes:
        new_failures: cells failing now that did not fail before (including new cells).
        fixed: cells that failed before and pass now.
        changed: every other change of outcome, or of a failure's reason.
        added: new cells that do not fail.
        removed: cells only in the old run.
        unchanged: how many cells are the same.
    """

    new_failures: tuple[Change, ...]
    fixed: tuple[Change, ...]
    changed: tuple[Change, ...]
    added: tuple[Change, ...]
    removed: tuple[Change, ...]
    unchanged: int


def _keyed(results: Sequence[Result], with_server: bool) -> dict[tuple[str, str], Result]:
    return {(r.scenario, lane_label(r.client, r.server if with_server else "")): r for r in results}


def compare(old: Sequence[Result], new: Sequence[Result]) -> Comparison:
    """Compare two runs cell by cell.

    Cells match by scenario and lane. When each run used a single server release, cells match by
    scenario and client alone, so a run on one release compares with a run on another.
    """
    single = len({r.server for r in old}) <= 1 and len({r.server for r in new}) <= 1
    before, after = _keyed(old, not single), _keyed(new, not single)
    new_failures: list[Change] = []
    fixed: list[Change] = []
    changed: list[Change] = []
    added: list[Change] = []
    removed: list[Change] = []
    unchanged = 0
    for key, now in after.items():
        was = before.get(key)
        change = Change(
            scenario=key[0],
            lane=key[1],
            old=None if was is None else was.result,
            new=now.result,
            old_reason="" if was is None else was.reason,
            new_reason=now.reason,
        )
        if now.result == "fail" and (was is None or was.result != "fail"):
            new_failures.append(change)
        elif was is None:
            added.append(change)
        elif was.result == "fail" and now.result == "pass":
            fixed.append(change)
        elif was.result != now.result or (now.result == "fail" and was.reason != now.reason):
            changed.append(change)
        else:
            unchanged += 1
    for key, was in before.items():
        if key not in after:
            removed.append(
                Change(
                    scenario=key[0],
                    lane=key[1],
                    old=was.result,
                    new=None,
                    old_reason=was.reason,
                    new_reason="",
                )
            )
    return Comparison(
        new_failures=tuple(new_failures),
        fixed=tuple(fixed),
        changed=tuple(changed),
        added=tuple(added),
        removed=tuple(removed),
        unchanged=unchanged,
    )


def _describe(change: Change) -> str:
    def side(outcome: Outcome | None, reason: str) -> str:
        if outcome is None:
            return "absent"
        return f"{outcome}: {' '.join(reason.split())}" if reason else outcome

    return (
        f"  {change.scenario} [{change.lane}]: {side(change.old, change.old_reason)}"
        f" -> {side(change.new, change.new_reason)}"
    )


def format_comparison(comparison: Comparison) -> str:
    """The comparison as text, new failures first; empty sections are left out."""
    sections = (
        ("new failures", comparison.new_failures),
        ("fixed", comparison.fixed),
        ("other changes", comparison.changed),
        ("added", comparison.added),
        ("removed", comparison.removed),
    )
    out: list[str] = []
    for heading, changes in sections:
        if changes:
            out.append(f"{heading} ({len(changes)}):")
            out += [_describe(c) for c in changes]
    out.append(f"unchanged: {comparison.unchanged}")
    return "\n".join(out) + "\n"
