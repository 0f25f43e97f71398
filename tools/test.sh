#!/usr/bin/env bash
# The one command that sets up everything on a fresh machine and runs every check and test.
# Extra arguments go to pytest (e.g. `bash tools/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy --strict over lkproto, tests, benchmarks and examples (`files` in pyproject.toml)
.venv/bin/mypy
# pytest exits 5 when it collected no test; `set -e` turns that (like any failure) into a failed run.
.venv/bin/python -m pytest "$@"
