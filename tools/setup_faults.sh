#!/usr/bin/env bash
# Idempotent set-up of the fault harness (lkproto.testing.faults, tests/faults/, benchmarks/faults.py):
#   Debian's nftables (nft: random loss and outages in an input hook) and iproute2 (ip netns, veth,
#   tc tbf), installed with apt only when missing. The harness needs root (CAP_NET_ADMIN and
#   CAP_SYS_ADMIN for network namespaces); without it the fault tests skip themselves.
set -euo pipefail

missing=()
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
# de-duplicate (iproute2 may be listed twice)
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "setup_faults: installing ${packages[*]}" >&2
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi
