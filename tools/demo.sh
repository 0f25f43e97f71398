#!/usr/bin/env bash
# The main demo: set up (tools/setup.sh), then run the voice-agent demo on 127.0.0.1 and exit.
#
#   bash tools/demo.sh            a local livekit-server, an lkproto agent and an lkproto frontend:
#                                 one spoken push-to-talk turn, live transcript and agent states,
#                                 a picture over a byte stream, an RPC and a chat message; exits 0
#                                 when everything happened (python -m lkproto.agents.demo)
#   bash tools/demo.sh web        the same agent behind a web page (livekit-client) at
#                                 http://127.0.0.1:8080/ with push-to-talk; Ctrl-C stops it
#   bash tools/demo.sh server     only the local livekit-server: prints URL/key/secret/token
#
# Extra arguments go to the command (e.g. `bash tools/demo.sh web --port 9000`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
case "${1:-}" in
  server)
    shift
    exec .venv/bin/python -m lkproto server "$@"
    ;;
  web)
    shift
    exec .venv/bin/python -m lkproto.agents.demo web "$@"
    ;;
  *)
    exec .venv/bin/python -m lkproto.agents.demo "$@"
    ;;
esac
