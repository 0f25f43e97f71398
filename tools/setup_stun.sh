#!/usr/bin/env bash
# Idempotent set-up of a loopback STUN server for the join-time interop test and benchmark
# (tests/interop/test_join_stun.py, benchmarks/join_time.py, lkproto.testing.stun.CoturnStun):
#   Debian's coturn (turnserver, run in STUN-only mode on 127.0.0.1), installed only when missing.
#   Without it those cases skip themselves.
set -euo pipefail

if command -v turnserver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
echo "setup_stun: installing coturn" >&2
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y coturn; then
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y coturn
fi
