#!/usr/bin/env bash
# Builds the demo's web page (lkproto/agents/demo/web/dist/: page/app.js + livekit-client bundled
# by esbuild, and index.html). Uses the npm packages that tools/setup_browser.sh installs from
# tests/interop/browser/package-lock.json (one lockfile for the browser harness and the demo).
# Idempotent; takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_MODULES=tests/interop/browser/node_modules

if [ ! -f "$NODE_MODULES/livekit-client/package.json" ] || [ ! -f "$NODE_MODULES/esbuild/package.json" ]; then
  bash tools/setup_browser.sh
fi
node lkproto/agents/demo/web/build.mjs "$NODE_MODULES"
