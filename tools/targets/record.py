"""Merge one target run's stage outputs into ``tools/targets/results/TARGET.json``.

Called by ``tools/targets.sh TARGET record`` with the host's ``python3`` (standard library
only). Stages that did not run in this invocation keep the output of their last run; each
file's own time is kept, so a merged result never passes off an old stage as new.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

__all__ = ["main"]

STAGES = ("userland", "apt", "build", "install", "python", "suites", "smoke")


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    result: dict[str, Any] = {"target": args.target, "arch": args.arch, "debian": args.suite}
    for stage in STAGES:
        path = args.out_dir / f"{stage}.json"
        data = load(path)
        if data is not None:
            stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            data = {"measured_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), **data}
        result[stage] = data
    os_release = args.root / "etc" / "os-release"
    if os_release.exists():
        fields = dict(
            line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line
        )
        result["os"] = fields.get("PRETTY_NAME", "").strip('"')
    listing = load(args.out_dir / "pip-list.json") or []
    result["distributions"] = {d["name"]: d["version"] for d in listing}
    summary = args.out_dir / "pip-install-summary.txt"
    result["pip_downloads"] = [
        line.split("Downloading ", 1)[1].split(" ", 1)[0]
        for line in (summary.read_text().splitlines() if summary.exists() else [])
        if line.strip().startswith("Downloading ")
    ]
    smoke = result.get("smoke")
    if smoke is not None:
        # Keep verdicts and times; the per-side distribution lists repeat what is above.
        for side in ("host", "target"):
            if isinstance(smoke.get(side), dict):
                dists = smoke[side].pop("distributions", None) or {}
                if side == "host":  # which official SDK was the peer
                    smoke[side]["peer_sdk"] = {
                        k: v for k, v in dists.items() if k.lower().startswith("livekit")
                    }
    args.result.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
