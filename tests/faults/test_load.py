"""Load, CI size (issue 15 item 3): 20 lkproto participants in one room over two processes.

Each broadcasts one reliable packet per second and changes an attribute every 10 s for 30 s; every
participant must receive every other's packets exactly once. ``benchmarks/load.py`` is the long
run (100 participants, 5 minutes) with CPU and memory per participant.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from lkproto.testing import scaled
from lkproto.testing.faults import FaultLab, run_load

_PARTICIPANTS = 20


def test_twenty_participants_thirty_seconds(
    lab: FaultLab, record_property: Callable[[str, object], None]
) -> None:
    result = run_load(
        lab, participants=_PARTICIPANTS, processes=2, duration_s=30.0, join_timeout_s=scaled(120)
    )
    detail = json.dumps(result.as_dict(), indent=1)
    record_property("load", detail)
    # What holds today; pytest.fail is not an AssertionError, so these are never "expected".
    problems = []
    if result.joined != _PARTICIPANTS:
        problems.append("not everyone joined")
    # 30 packets each (the first goes out at once), give or take one for the halt's timing.
    if result.sent < _PARTICIPANTS * 29:
        problems.append("publish_data blocked")
    if result.attributes < _PARTICIPANTS * 2:
        problems.append("attribute changes missing")
    if result.duplicates:
        problems.append("duplicates")
    if problems:
        pytest.fail(f"{', '.join(problems)}: {detail}")
    assert result.lost == 0, detail
