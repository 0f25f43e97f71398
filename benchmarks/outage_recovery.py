"""Recovery after a long UDP outage, lkproto next to the official SDK (issue 15, brief s6_outage).

    sudo .venv/bin/python benchmarks/outage_recovery.py [--outages 20,60] [--runs 1]
                                                        [--logs /tmp/outage] [--json out.json]
                                                        [--server-debug] [--sdks lkproto]

For each outage length a fresh :class:`lkproto.testing.faults.FaultLab` runs one paced
sender/receiver pair per SDK at the same time (each pair in its own room,
:func:`lkproto.testing.faults.run_transfer`), drops every UDP packet to and from the server from
3 s in for N s, then lets the transfer go on for 25 s. The workers log at DEBUG into ``--logs``.

Printed per SDK and role, in seconds after the restore: ``reconnected`` (the last one of the
run), the first packet delivered after the restore, what was lost; and for lkproto the recovery
attempts its log shows (``= reconnect attempt N`` lines: start, outcome and how long each took),
which is where a hung attempt shows. The 1-minute load average at each run's start and end
goes beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, utc_now, write_json

from lkproto.testing.faults import (
    SDKS,
    FaultLab,
    TransferPlan,
    missing_requirements,
    outage_fault,
    run_transfer,
)

_AFTER_S: Final = 3.0
_AFTER_RESTORE_S: Final = 25.0
_INTERVAL_S: Final = 0.05
# The engine's state lines (lkproto.asyncio.engine logs them as "= ..."): recovery attempts,
# peer connection states, leaves, the dead-transport watch.
_STATE_LINE: Final = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) lkproto\.signal \w+ = (.*)$"
)


def _attempts(log: Path) -> list[str]:
    """The ``= ...`` state lines of an lkproto worker's log, with their wall time."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text(errors="replace").splitlines():
        match = _STATE_LINE.match(line)
        if match:
            out.append(f"{match.group(1)[11:]} {match.group(2)}")
    return out


def run_one(
    seconds: int, logs: Path | None, *, server_debug: bool = False, sdks: Sequence[str] = SDKS
) -> dict[str, object]:
    """One outage of ``seconds``; the SDKs in the same run."""
    load_start = os.getloadavg()[0]
    restored: list[float] = []
    outage = outage_fault("udp", after_s=_AFTER_S, for_s=seconds)

    def fault(lab: FaultLab) -> float:
        at = outage(lab)
        assert at is not None
        restored.append(time.time())
        return at

    plan = TransferPlan(
        packets=int((_AFTER_S + seconds + _AFTER_RESTORE_S) / _INTERVAL_S),
        interval_s=_INTERVAL_S,
        drain_s=20.0,
        publish_timeout_s=30.0,
        log_level="DEBUG",
    )
    log_dir = logs / f"udp-{seconds}" if logs is not None else None
    options: dict[str, object] = {"log_dir": log_dir} if log_dir is not None else {}
    if server_debug:
        # livekit-server and its WebRTC stack (pion: ICE, the UDP mux) at DEBUG.
        options["log_level"] = "debug"
        options["extra_config"] = {"logging": {"pion_level": "debug"}}
    with FaultLab(server_options=options, log_dir=log_dir) as lab:
        results = run_transfer(lab, plan, fault, sdks=sdks)
    restore_since_go = _AFTER_S + seconds
    out: dict[str, object] = {
        "outage_s": seconds,
        "load": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "restored_wall": time.strftime("%H:%M:%S", time.localtime(restored[0]))
        if restored
        else None,
    }
    for sdk, result in results.items():
        reconnected = {
            role: [
                round(at - restore_since_go, 2)
                for r, name, at in result.events
                if r == role and name == "reconnected"
            ]
            for role in ("tx", "rx")
        }
        entry: dict[str, object] = {
            "lost": result.lost,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "delivered_after_restore_s": result.resumed_after_s,
            "reconnected_after_restore_s": reconnected,
            "events": result.events,
        }
        if sdk == "lkproto" and log_dir is not None:
            entry["attempts"] = {
                role: _attempts(log_dir / f"lkproto-{role}.log") for role in ("tx", "rx")
            }
        out[sdk] = entry
    return out


def main() -> int:
    """Run the outages and print the figures; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--outages", default="20,60", help="comma-separated outage lengths (s)")
    parser.add_argument("--runs", type=int, default=1, help="runs per outage length")
    parser.add_argument("--logs", type=Path, default=None, help="keep worker/server logs here")
    parser.add_argument("--json", type=Path, default=None, help="result file")
    parser.add_argument(
        "--server-debug", action="store_true", help="livekit-server and pion at DEBUG"
    )
    parser.add_argument("--sdks", default=",".join(SDKS), help="comma-separated SDKs to run")
    args = parser.parse_args()
    missing = missing_requirements()
    if missing is not None:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    runs = []
    for seconds in (int(s) for s in args.outages.split(",") if s):
        for index in range(args.runs):
            logs = args.logs / f"run{index}" if args.logs is not None else None
            result = run_one(
                seconds,
                logs,
                server_debug=args.server_debug,
                sdks=[s for s in args.sdks.split(",") if s],
            )
            runs.append(result)
            print(json.dumps(result, indent=1), flush=True)
    if args.json is not None:
        write_json(args.json, {"when": utc_now(), "machine": machine_info(), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
