#!/usr/bin/env bash
# Idempotent set-up for a fresh machine (also fine on a warm one):
#   .venv with lkproto[rtc] + the dev and codegen groups (pip cache reused),
#   livekit-server v1.13.5 built with `go install` into the lkproto cache (Go caches reused),
#   Debian chromium and the npm packages of the browser harness (npm cache reused).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: need Python >= 3.11 (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# --group needs pip >= 25.1
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1'
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[rtc]' --group dev --group codegen

PYTHON=.venv/bin/python bash tools/install_livekit_server.sh
# Debian chromium + npm livekit-client/playwright-core for the browser interop tests
bash tools/setup_browser.sh
bash tools/setup_faults.sh  # nftables/iproute2 for the fault harness (tests/faults; skipped without root)
bash tools/setup_stun.sh  # coturn: a loopback STUN server for the join-time test and benchmark
bash tools/setup_cluster.sh  # redis-server for the two-node cluster (lkproto.testing.LocalCluster)
bash tools/setup_demo_web.sh  # the demo web page bundle (lkproto/agents/demo/web/dist/)
bash tools/setup_adapters.sh  # the conformance runner's Go and Node clients (built into the lkproto cache)
