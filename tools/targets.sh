#!/usr/bin/env bash
# Prove where lkproto runs (issue 14): build a real userland for TARGET from Debian's packages,
# install lkproto into it the way a user would (pip install of a clean checkout with the rtc
# extra, wheels from PyPI), run the unit, property and fuzz suites inside it, then the target
# smoke: lkproto inside the target against a livekit-server and the official SDK on the host.
#
#   bash tools/targets.sh TARGET [STAGE...]     # as root; stages default to all, in order
#   bash tools/targets.sh list
#
# Stages: userland (debootstrap, cached), install (fresh venv, cold pip install, timed),
# suites (pytest tests/unit tests/property tests/fuzz), smoke (tools/targets/smoke_host.py),
# record (tools/targets/results/TARGET.json). Everything heavy runs under `nice -n 15` and
# under `timeout`. Caches live in ~/.cache/lkproto/targets/TARGET/ (never committed).
# LKPROTO_INSTALL_TIMEOUT bounds the pip install (s, default 7200: armhf builds from sdist).
# LKPROTO_PYTEST_ARGS adds pytest arguments to the suites stage (recorded in the result).
# LKPROTO_REF picks the commit to test (default HEAD of this checkout; uncommitted edits are
# never tested, so a measurement always names a commit).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

declare -A ARCH=([bookworm-arm64]=arm64 [trixie-armhf]=armhf [trixie-amd64]=amd64
  [sid-amd64]=amd64 [trixie-amd64-ft]=amd64 [trixie-amd64-musl]=amd64)
declare -A SUITE=([bookworm-arm64]=bookworm [trixie-armhf]=trixie [trixie-amd64]=trixie
  [sid-amd64]=sid [trixie-amd64-ft]=trixie [trixie-amd64-musl]=trixie)
# Debian packages the target needs besides the base system. PyPI has no armv7 wheels for av,
# cryptography, cffi, pylibsrtp, websockets or numpy: Debian's python3-av (14.2.0, our floor;
# bookworm's 10.0 and FFmpeg 5.1 are too old for av>=14, hence trixie) and python3-numpy (tests
# only) are used through --system-site-packages, and pip builds the rest from sdist with
# Debian's compilers, Rust toolchain and development packages.
declare -A EXTRA=([bookworm-arm64]="" [trixie-armhf]="python3-av python3-numpy build-essential \
pkg-config python3-dev libffi-dev libssl-dev libsrtp2-dev cargo rustc"
  [trixie-amd64]="" [sid-amd64]="" [trixie-amd64-musl]=""
  [trixie-amd64-ft]="pkg-config libavformat-dev libavcodec-dev libavdevice-dev libavutil-dev \
libavfilter-dev libswscale-dev libswresample-dev libsrtp2-dev libffi-dev libssl-dev cargo rustc")
# (free-threaded: PyPI has no cp313t wheel of av, pylibsrtp and others, so pip builds them.)
declare -A VENV_OPTS=([trixie-armhf]=--system-site-packages)
# Interpreters Debian does not ship are built from Debian's source packages in the userland
# (stage build): a free-threaded CPython (--disable-gil; no python3.x-nogil package exists in
# trixie or sid) and a musl-linked one (musl-tools; no Alpine mirror is reachable).
declare -A BUILD=([trixie-amd64-ft]="build_python.sh 3.13 /opt/python3.13t --disable-gil"
  [trixie-amd64-musl]="build_musl_python.sh 3.13 /opt/python3.13-musl")
# The interpreter the venv is made with (the suite's default python3 unless said otherwise).
declare -A PYTHON=([trixie-amd64-ft]=/opt/python3.13t/bin/python3.13t
  [trixie-amd64-musl]=/opt/python3.13-musl/bin/python3.13)
# The free-threaded row runs with the GIL off even where an extension asks for it back.
declare -A GIL=([trixie-amd64-ft]=0)
# qemu-user runs foreign targets several times slower: stretch every smoke wait.
declare -A SCALE=([bookworm-arm64]=4 [trixie-armhf]=6)

MIRROR=${LKPROTO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARGET=${1:-}
if [ -z "$TARGET" ] || [ "$TARGET" = list ] || [ -z "${ARCH[$TARGET]:-}" ]; then
  echo "usage: bash tools/targets.sh TARGET [userland|build|install|suites|smoke|record ...]" >&2
  echo "targets: ${!ARCH[*]}" >&2
  [ "$TARGET" = list ] && exit 0
  exit 2
fi
shift
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(userland build install suites smoke record)
export PYTHON_GIL=${GIL[$TARGET]:-${PYTHON_GIL:-}}

CACHE=${LKPROTO_TARGETS_CACHE:-$HOME/.cache/lkproto/targets}/$TARGET
ROOT=$CACHE/root
OUT=$CACHE/out  # per-stage results, merged by the record stage
REF=$(git -C "$REPO" rev-parse "${LKPROTO_REF:-HEAD}")
mkdir -p "$OUT"
log() { echo "[targets $TARGET] $*" >&2; }
now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }  # secs T0 T1

# --- the chroot ---------------------------------------------------------------------------
MOUNTED=()
mount_all() {
  local m
  for m in proc sys dev dev/pts dev/shm; do
    mountpoint -q "$ROOT/$m" && continue
    mkdir -p "$ROOT/$m"
    case $m in
      proc) mount -t proc proc "$ROOT/proc" ;;
      sys) mount -t sysfs sys "$ROOT/sys" ;;
      dev/shm) mount -t tmpfs shm "$ROOT/dev/shm" ;;
      *) mount --bind "/$m" "$ROOT/$m" ;;
    esac
    MOUNTED=("$ROOT/$m" "${MOUNTED[@]}")
  done
}
umount_all() {
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
  MOUNTED=()
}
trap umount_all EXIT

# A clean environment inside: nothing of the host's pip configuration leaks in, except that pip
# trusts the system CA bundle (which holds the host's extra certificates, copied below).
in_target() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PYTHON_GIL="${PYTHON_GIL:-}" \
    "$@"
}

enable_binfmt() {
  [ "${ARCH[$TARGET]}" = amd64 ] && return 0
  command -v debootstrap >/dev/null && [ -e /usr/libexec/qemu-binfmt ] ||
    apt-get install -y -q debootstrap qemu-user-static binfmt-support >/dev/null
  mountpoint -q /proc/sys/fs/binfmt_misc ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  case ${ARCH[$TARGET]} in
    arm64) update-binfmts --enable qemu-aarch64 ;;
    armhf) update-binfmts --enable qemu-arm ;;
    *) ;;
  esac
}

stage_userland() {
  enable_binfmt
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
  if [ ! -e "$CACHE/userland.done" ]; then
    local t0
    t0=$(now)
    rm -rf "$ROOT"
    log "debootstrap ${SUITE[$TARGET]} ${ARCH[$TARGET]} (minutes under qemu)"
    timeout 3600 nice -n 15 debootstrap --arch="${ARCH[$TARGET]}" --variant=minbase \
      --include=ca-certificates,python3,python3-venv "${SUITE[$TARGET]}" "$ROOT" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1
    echo "{\"debootstrap_seconds\": $(secs "$t0" "$(now)")}" >"$OUT/userland.json"
    touch "$CACHE/userland.done"
  fi
  # The host's extra CA certificates (a TLS-inspecting egress) or pip cannot reach PyPI.
  cp /usr/local/share/ca-certificates/* "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mount_all
  in_target update-ca-certificates >/dev/null 2>&1
  if [ -n "${EXTRA[$TARGET]}" ] && [ ! -e "$CACHE/extra.done" ]; then
    local t0
    t0=$(now)
    log "apt-get install ${EXTRA[$TARGET]}"
    echo "deb $MIRROR ${SUITE[$TARGET]} main" >"$ROOT/etc/apt/sources.list"
    # A mirror's unstable/testing index may be past its Valid-Until: accept it (no upgrade).
    in_target timeout 3600 nice -n 15 sh -c "apt-get -o Acquire::Check-Valid-Until=false update -q && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${EXTRA[$TARGET]}" \
      >"$CACHE/apt.log" 2>&1
    echo "{\"apt_seconds\": $(secs "$t0" "$(now)")}" >"$OUT/apt.json"
    touch "$CACHE/extra.done"
  fi
}

stage_build() {
  [ -n "${BUILD[$TARGET]:-}" ] || return 0
  [ -e "$CACHE/build.done" ] && return 0
  mount_all
  local script=${BUILD[$TARGET]%% *} t0 rc=0
  cp "$REPO/tools/targets/$script" "$ROOT/opt/$script"
  log "build: ${BUILD[$TARGET]} (tens of minutes)"
  t0=$(now)
  # shellcheck disable=SC2086  # the build arguments are a word list
  in_target timeout 3600 nice -n 15 sh "/opt/$script" ${BUILD[$TARGET]#* } \
    >"$CACHE/build.log" 2>&1 || rc=$?
  echo "{\"build\": \"${BUILD[$TARGET]}\", \"build_seconds\": $(secs "$t0" "$(now)"), \"exit\": $rc}" \
    >"$OUT/build.json"
  [ $rc -eq 0 ] && touch "$CACHE/build.done"
  return $rc
}

stage_install() {
  mount_all
  # A clean clone at a known commit: other work in this checkout never leaks into a run.
  rm -rf "$ROOT/opt/lkproto-src"
  git clone -q --no-hardlinks "$REPO" "$ROOT/opt/lkproto-src"
  git -C "$ROOT/opt/lkproto-src" checkout -q "$REF"
  local py=${PYTHON[$TARGET]:-python3}
  rm -rf "$ROOT/opt/lkproto-venv"
  # shellcheck disable=SC2086  # VENV_OPTS is a word list
  in_target "$py" -m venv ${VENV_OPTS[$TARGET]:-} /opt/lkproto-venv
  local pip=(/opt/lkproto-venv/bin/python -m pip)
  # pip >= 25.1 reads dependency groups (--group).
  in_target timeout 900 nice -n 15 "${pip[@]}" install -q 'pip>=25.1'
  log "pip install /opt/lkproto-src[rtc] (cold: --no-cache-dir)"
  local t0 t1 rc=0
  t0=$(now)
  in_target timeout "${LKPROTO_INSTALL_TIMEOUT:-7200}" nice -n 15 "${pip[@]}" install \
    --no-cache-dir '/opt/lkproto-src[rtc]' >"$CACHE/pip-install.log" 2>&1 || rc=$?
  t1=$(now)
  # Test dependencies: the dev group minus linters/type checkers and the official SDK (the SDK
  # peer runs on the host; the few unit tests comparing with it skip themselves without it).
  local deps
  deps=$(python3 - "$ROOT/opt/lkproto-src/pyproject.toml" <<'EOF'
import sys, tomllib
groups = tomllib.load(open(sys.argv[1], "rb"))["dependency-groups"]
skip = ("ruff", "mypy", "types-", "livekit==")
print(" ".join(d for d in groups["dev"] if isinstance(d, str) and not d.startswith(skip)))
EOF
)
  # numpy: some unit tests use it as a helper; on the host it arrives with the official SDK.
  deps="$deps numpy"
  local rc_dev=skipped rc_codegen=skipped
  if [ $rc -eq 0 ]; then  # no point building test dependencies for a failed install
    rc_dev=0 rc_codegen=0
    # shellcheck disable=SC2086  # deps is a word list
    in_target timeout 3600 nice -n 15 "${pip[@]}" install -q $deps >>"$CACHE/pip-install.log" \
      2>&1 || rc_dev=$?
    # The freshness test of the generated code needs the codegen group (grpcio-tools).
    in_target timeout 3600 nice -n 15 "${pip[@]}" install -q --group \
      /opt/lkproto-src/pyproject.toml:codegen >>"$CACHE/pip-install.log" 2>&1 || rc_codegen=$?
  fi
  in_target /opt/lkproto-venv/bin/python -m pip list --format=json >"$OUT/pip-list.json" || true
  in_target /opt/lkproto-venv/bin/python -c 'import json, platform, sys, sysconfig
print(json.dumps({"version": sys.version, "implementation": platform.python_implementation(),
  "machine": platform.machine(), "libc": " ".join(platform.libc_ver()),
  "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED"))}))' >"$OUT/python.json" || true
  # pip's own words on how each distribution arrived (wheel downloaded or built from sdist)
  grep -E "^\s*(Downloading|Building wheel|Collecting)" "$CACHE/pip-install.log" \
    >"$OUT/pip-install-summary.txt" || true
  cat >"$OUT/install.json" <<EOF
{"commit": "$REF", "python_for_venv": "$py", "pip_install_rtc_seconds": $(secs "$t0" "$t1"),
 "pip_install_rtc_exit": $rc, "test_deps_exit": "$rc_dev", "codegen_group_exit": "$rc_codegen",
 "built_from_sdist": $(grep -oE "Building wheel for [^ ]+" "$CACHE/pip-install.log" | awk '{print $4}' |
   sort -u | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')}
EOF
  log "install: exit $rc in $(secs "$t0" "$t1") s"
  return $rc
}

stage_suites() {
  mount_all
  local t0 t1 rc=0
  t0=$(now)
  # From the checkout (the freshness and layer tests read its files); imports of lkproto resolve
  # to the same pure-Python files, every compiled dependency comes from the target's venv.
  # LKPROTO_TEST_TIME_SCALE stretches the suites' bounded waits like the smoke's (emulation).
  in_target sh -c "cd /opt/lkproto-src && LKPROTO_TEST_TIME_SCALE=${SCALE[$TARGET]:-1} \
    timeout 5400 nice -n 15 /opt/lkproto-venv/bin/python \
    -m pytest tests/unit tests/property tests/fuzz -q -p no:cacheprovider -o timeout=1200 \
    ${LKPROTO_PYTEST_ARGS:-}" \
    >"$CACHE/suites.log" 2>&1 || rc=$?
  t1=$(now)
  local summary
  summary=$(grep -E "(passed|failed|error)" "$CACHE/suites.log" | tail -n 1)
  python3 -c 'import json, sys
print(json.dumps({"exit": int(sys.argv[1]), "seconds": float(sys.argv[2]), "summary": sys.argv[3],
                  "pytest_extra_args": sys.argv[4]}))' \
    "$rc" "$(secs "$t0" "$t1")" "$summary" "${LKPROTO_PYTEST_ARGS:-}" >"$OUT/suites.json"
  log "suites: exit $rc: $summary"
  return $rc
}

stage_smoke() {
  mount_all
  [ -x "$REPO/.venv/bin/python" ] || { log "need the host .venv (bash tools/setup.sh)"; return 1; }
  local scale=${SCALE[$TARGET]:-1} rc=0
  # Run from / so that lkproto is imported from the target's site-packages, not the checkout.
  nice -n 5 timeout 1800 "$REPO/.venv/bin/python" "$REPO/tools/targets/smoke_host.py" \
    --target-cmd "chroot $ROOT /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
PYTHON_GIL=${PYTHON_GIL:-} /opt/lkproto-venv/bin/python -P /opt/lkproto-src/tools/targets/smoke_peer.py" \
    --target-root "$ROOT" --target-dir /tmp/lkproto-smoke --time-scale "$scale" \
    --out "$OUT/smoke.json" >"$CACHE/smoke.log" 2>&1 || rc=$?
  grep -E "^\[|^smoke " "$CACHE/smoke.log" >&2 || true
  return "$rc"
}

stage_record() {
  mkdir -p "$REPO/tools/targets/results"
  python3 "$REPO/tools/targets/record.py" --target "$TARGET" --arch "${ARCH[$TARGET]}" \
    --suite "${SUITE[$TARGET]}" --out-dir "$OUT" --root "$ROOT" \
    --result "$REPO/tools/targets/results/$TARGET.json"
}

main() {
  local status=0 stage
  for stage in "${STAGES[@]}"; do
    case $stage in
      userland | build | install | suites | smoke | record) "stage_$stage" || status=1 ;;
      *) log "unknown stage $stage"; return 2 ;;
    esac
  done
  return $status
}

# One line, read whole before it runs: editing this file during a (long) run cannot derail it.
main; exit $?
