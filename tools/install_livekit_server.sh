#!/usr/bin/env bash
# Build (once) the pinned livekit-server with `go install` and print the binary's path;
# `--version vX.Y.Z` builds another release into the same cache (at nice 15, bounded in time).
# Idempotent: a cached binary of the right version is reused. Honours LKPROTO_CACHE_DIR and
# LKPROTO_LIVEKIT_SERVER; PYTHON selects the interpreter (default: the project's .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-.venv/bin/python}" -m lkproto install-server "$@"
