#!/usr/bin/env bash
# Idempotent set-up of the conformance runner's Go and Node clients (lkproto/conformance/):
#   livekit-go:   adapters_go/ (server-sdk-go) built with `go build` (nice 15, 30 min bound) into
#                 <lkproto cache>/bin/lkproto-conformance-go-<hash of its sources>;
#   livekit-node: adapters_node/ (@livekit/rtc-node, pinned by package-lock.json) installed with
#                 `npm ci --ignore-scripts` into <lkproto cache>/node-adapter/<hash>/.
# Both are also done on first use by `python -m lkproto conformance --client livekit-go|livekit-node`;
# doing them here keeps that first run fast. Needs go (installed for the livekit-server build) and
# node >= 18 with npm (installed for the browser harness). Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" - <<'PY'
import time

from lkproto.conformance._registry import Unsupported
from lkproto.conformance.process_adapters import ensure_go_adapter, ensure_node_adapter

failed = False
for name, ensure in (("livekit-go", ensure_go_adapter), ("livekit-node", ensure_node_adapter)):
    start = time.monotonic()
    try:
        path = ensure()
    except Unsupported as exc:
        failed = True
        print(f"setup_adapters: {name}: {exc}")
        continue
    print(f"setup_adapters: {name} ready in {time.monotonic() - start:.0f} s: {path}")
raise SystemExit(1 if failed else 0)
PY
