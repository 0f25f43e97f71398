#!/usr/bin/env bash
# The main demo. For now: set up, start a local livekit-server on 127.0.0.1 in the foreground and
# print its URL, API key/secret and a join token (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
exec .venv/bin/python -m lkproto server "$@"
