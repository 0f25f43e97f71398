#!/usr/bin/env bash
# The old-glibc row's dynamic half (issue 14). No glibc 2.17 userland can be had here, so:
# (1) the static audit (tools/targets/wheel_audit.py) proves that every shared object of the
#     closure pip resolves for manylinux2014 needs at most GLIBC_2.17; and
# (2) this script installs exactly that closure (same distributions, same versions: av 14.2.0,
#     pylibsrtp 0.12.0, ...) into a fresh venv on this host and runs the unit, property and fuzz
#     suites and the target smoke with it: what a CentOS 7 / Amazon Linux 2 user would run.
#
#   bash tools/targets/old_glibc_closure.sh      # writes tools/targets/results/old-glibc-closure.json
#
# Extra pytest arguments may follow (e.g. --deselect of a test that aborts the interpreter).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=${LKPROTO_TARGETS_CACHE:-$HOME/.cache/lkproto/targets}/old-glibc-closure
WHEELS=$HOME/.cache/lkproto/wheel-audit/manylinux2014_x86_64-py311
REF=$(git rev-parse "${LKPROTO_REF:-HEAD}")
PY=${PYTHON:-python3}
mkdir -p "$WORK"
now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }

.venv/bin/python tools/targets/wheel_audit.py --platform manylinux2014_x86_64 >"$WORK/audit.txt"
# name==version of every wheel of the closure (wheel file names: name-version-tags.whl)
for w in "$WHEELS"/*.whl; do basename "$w" | awk -F- '{print $1 "==" $2}'; done >"$WORK/constraints.txt"
rm -rf "$WORK/src" "$WORK/venv"
git clone -q "$REPO" "$WORK/src" && git -C "$WORK/src" checkout -q "$REF"
"$PY" -m venv "$WORK/venv"
pip=("$WORK/venv/bin/python" -m pip --disable-pip-version-check)
t0=$(now)
"${pip[@]}" install -q --no-cache-dir --only-binary=:all: -c "$WORK/constraints.txt" \
  "$WORK/src[rtc]" >"$WORK/pip.log" 2>&1
t1=$(now)
"${pip[@]}" install -q -c "$WORK/constraints.txt" pytest==9.2.0 pytest-asyncio==1.5.0 \
  pytest-timeout==2.4.0 hypothesis==6.170.17 livekit-protocol==1.1.29 livekit-api==1.2.2 numpy \
  grpcio-tools==1.85.1 mypy-protobuf==5.1.0 >>"$WORK/pip.log" 2>&1
rc_suites=0
t2=$(now)
(cd "$WORK/src" && timeout 3600 nice -n 15 "$WORK/venv/bin/python" -m pytest tests/unit \
  tests/property tests/fuzz -q -p no:cacheprovider "$@") >"$WORK/suites.log" 2>&1 || rc_suites=$?
t3=$(now)
rc_smoke=0
.venv/bin/python tools/targets/smoke_host.py --target-dir "$WORK/smoke" --out "$WORK/smoke.json" \
  --target-cmd "$WORK/venv/bin/python -P $WORK/src/tools/targets/smoke_peer.py" \
  >"$WORK/smoke.log" 2>&1 || rc_smoke=$?
summary=$(grep -E "(passed|failed|error|Fatal Python error)" "$WORK/suites.log" | tail -n 1)
"$WORK/venv/bin/python" - "$WORK" "$REF" "$(secs "$t0" "$t1")" "$rc_suites" "$(secs "$t2" "$t3")" \
  "$summary" "$rc_smoke" "$*" <<'EOF' >"$REPO/tools/targets/results/old-glibc-closure.json"
import json, platform, sys, time
from importlib import metadata
work, ref, install_s, rc_suites, suites_s, summary, rc_smoke, extra = sys.argv[1:]
smoke = json.load(open(f"{work}/smoke.json"))
for side in ("host", "target"):
    if isinstance(smoke.get(side), dict):
        smoke[side].pop("distributions", None)
print(json.dumps({
    "target": "old-glibc-closure (manylinux2014_x86_64 closure on this host)",
    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": ref,
    "python": sys.version,
    "host_libc": " ".join(platform.libc_ver()),
    "pip_install_rtc_seconds": float(install_s),
    "suites": {"exit": int(rc_suites), "seconds": float(suites_s), "summary": summary,
               "pytest_extra_args": extra},
    "smoke": smoke,
    "distributions": {d.metadata["Name"]: d.version for d in metadata.distributions()},
}, indent=2))
EOF
echo "old-glibc closure: install $(secs "$t0" "$t1") s, suites exit $rc_suites ($summary), smoke exit $rc_smoke"
