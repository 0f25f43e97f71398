#!/usr/bin/env bash
# Idempotent set-up of the two-node cluster harness (lkproto.testing.cluster, tests/faults/test_cluster.py,
# tests/interop/test_local_cluster.py, `lkproto conformance --local-cluster`): Debian's redis-server,
# which the two livekit-server nodes share on loopback. Only the binary is used: LocalCluster starts its
# own private instance (no persistence, loopback, a free port), so the packaged service is stopped and
# disabled again where systemd runs it.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
echo "setup_cluster: installing redis-server" >&2
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; then
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
fi
# The package's own service (port 6379) is not used; don't leave it running where systemd manages it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  "${SUDO[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
