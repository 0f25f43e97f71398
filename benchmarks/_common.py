"""Helpers shared by the benchmark scripts: statistics, machine description, output.

Every benchmark compares lkproto with the official SDK in the same run (STYLE.md rule 8), prints a
Markdown table and writes a JSON file that carries the machine it ran on.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

__all__ = [
    "PACKAGES",
    "Summary",
    "current_rss_kib",
    "machine_info",
    "percentile",
    "summarize",
    "utc_now",
    "write_json",
]

PACKAGES: Final = (
    "lkproto",
    "aiortc",
    "aioice",
    "av",
    "websockets",
    "protobuf",
    "livekit",
    "livekit-api",
    "livekit-protocol",
)
"""Distributions whose versions go into every result file."""


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): the smallest sample >= q % of the samples.

    Raises:
        ValueError: ``samples`` is empty or ``q`` is outside 0..100.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Median, nearest-rank p90, min and max of a set of samples (same unit as the samples)."""

    n: int
    median: float
    p90: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median": self.median,
            "p90": self.p90,
            "min": self.min,
            "max": self.max,
        }


def summarize(samples: Sequence[float]) -> Summary | None:
    """The :class:`Summary` of ``samples``, or ``None`` when there are none."""
    if not samples:
        return None
    return Summary(
        n=len(samples),
        median=statistics.median(samples),
        p90=percentile(samples, 90),
        min=min(samples),
        max=max(samples),
    )


def current_rss_kib() -> int | None:
    """Resident set size of this process now, in KiB (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def _memory_total_kib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """Everything needed to tell which machine and software a result came from."""
    uname = platform.uname()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, object] = {
        "platform": platform.platform(),
        "uname": " ".join((uname.system, uname.node, uname.release, uname.version, uname.machine)),
        "machine": uname.machine,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(affinity) if affinity is not None else None,
        "memory_total_kib": _memory_total_kib(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
    if extra:
        info.update(extra)
    return info


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, for result files."""
    return datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")


def write_json(path: str | os.PathLike[str], payload: Mapping[str, object]) -> Path:
    """Write ``payload`` as indented JSON, creating the directory; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target
