"""Host side of the target smoke (issue 14): server, tokens, both peers, one merged verdict.

Runs with the host's ``.venv`` (lkproto for ``LocalServer`` and tokens, the official ``livekit``
SDK for the host peer). It starts a livekit-server on 127.0.0.1, then two processes that run
``smoke_peer.py``: the official SDK here, and lkproto inside the target through ``--target-cmd``
(a chroot shares the host's loopback, so the target reaches the server at the same URL).

    .venv/bin/python tools/targets/smoke_host.py --out result.json --target-root ROOT \\
        --target-dir /tmp/lkproto-smoke --target-cmd 'chroot ROOT /opt/lkproto-venv/bin/python \\
        /opt/lkproto-src/tools/targets/smoke_peer.py'

Exit status 0 only when both sides passed every step.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from lkproto.api import AccessToken, VideoGrants
from lkproto.testing import LocalServer

__all__ = ["main"]

HERE = Path(__file__).resolve().parent


def token(server: LocalServer, identity: str, room: str) -> str:
    grants = VideoGrants(room_join=True, room=room)
    return (
        AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-cmd", required=True, help="runs smoke_peer.py in the target")
    parser.add_argument("--target-dir", required=True, help="scratch directory, target's view")
    parser.add_argument("--target-root", default="/", help="where the target's / is on the host")
    parser.add_argument("--out", required=True, help="merged JSON result")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the whole smoke")
    args = parser.parse_args()

    target_dir = args.target_dir.rstrip("/")
    host_dir = Path(args.target_root) / target_dir.lstrip("/")
    host_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("target.json", "tap.jsonl"):
        (host_dir / stale).unlink(missing_ok=True)
    host_out = Path(args.out).with_suffix(".host.json")
    room = f"target-smoke-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with LocalServer() as server:
        common = ["--url", server.url, "--time-scale", str(args.time_scale)]
        target = subprocess.Popen(
            [
                *shlex.split(args.target_cmd),
                "--sdk", "lkproto", *common,
                "--token", token(server, "target", room), "--peer", "host",
                "--out", f"{target_dir}/target.json", "--tap", f"{target_dir}/tap.jsonl",
            ]
        )  # fmt: skip
        host = subprocess.Popen(
            [
                sys.executable, str(HERE / "smoke_peer.py"),
                "--sdk", "livekit", *common,
                "--token", token(server, "host", room), "--peer", "target",
                "--out", str(host_out),
            ]
        )  # fmt: skip
        deadline = started + args.timeout
        codes: dict[str, int | None] = {}
        for name, proc in (("host", host), ("target", target)):
            try:
                codes[name] = proc.wait(max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
    sides: dict[str, object] = {}
    for name, path in (("host", host_out), ("target", host_dir / "target.json")):
        sides[name] = json.loads(path.read_text()) if path.exists() else None
    passed = all(code == 0 for code in codes.values())
    merged = {
        "passed": passed,
        "exit_codes": codes,
        "wall_seconds": round(time.monotonic() - started, 2),
        "host": sides["host"],
        "target": sides["target"],
    }
    Path(args.out).write_text(json.dumps(merged, indent=2) + "\n")
    host_out.unlink(missing_ok=True)
    print(f"smoke {'passed' if passed else 'FAILED'}: exit codes {codes}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
