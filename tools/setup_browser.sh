#!/usr/bin/env bash
# Idempotent set-up of the browser harness (tests/interop/browser/):
#   Debian's chromium (+ chromium-driver) at /usr/bin/chromium, installed with apt only if missing;
#   the npm packages pinned in tests/interop/browser/package-lock.json (npm ci, npm cache reused);
#   the page bundle tests/interop/browser/dist/ (livekit-client bundled by esbuild).
# Needs node >= 18 with npm. Never runs `npx playwright install` (no browser downloads here):
# playwright-core drives the system Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
BROWSER_DIR=tests/interop/browser

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  echo "setup_browser: installing Debian's chromium" >&2
  if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; then
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
  fi
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup_browser: \`$tool\` is missing (install Node.js >= 18 with npm)" >&2
    exit 1
  fi
done

# Reinstall only when the lockfile changed since the last install (npm ci wipes node_modules).
stamp="$BROWSER_DIR/node_modules/.lkproto-lock-stamp"
if [ ! -f "$stamp" ] || ! cmp -s "$BROWSER_DIR/package-lock.json" "$stamp"; then
  # --ignore-scripts: no package needs an install script (esbuild's only checks its binary,
  # which comes from the optional @esbuild/<platform> package).
  (cd "$BROWSER_DIR" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$BROWSER_DIR/package-lock.json" "$stamp"
fi

(cd "$BROWSER_DIR" && node build.mjs)
