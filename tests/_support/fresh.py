"""Run a source scan in a fresh interpreter.

CPython 3.11.7's ``ast`` module keeps its recursion depth in state shared by every thread of the
process. After the rest of the suite (which leaves threads running) that state was sometimes
off, and from then on every ``ast.parse`` in the process failed with ``SystemError: AST
constructor recursion depth mismatch``, on a fresh thread too (two fresh-clone CI runs, in the
label scan of ``tests/unit/wire/test_channels.py``). A scan of the source tree therefore runs in
a child interpreter of its own; the planted-violation tests that prove each scan can fail parse a
few lines in-process, where a failure would show as an error, never as a pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def call_in_fresh_interpreter(module: str, function: str) -> Any:
    """``module.function()`` run in a new interpreter at the repository root, its JSON result.

    Raises:
        subprocess.CalledProcessError: the child failed (its stderr is in the exception).
    """
    script = (
        "import importlib, json, sys\n"
        f"result = getattr(importlib.import_module({module!r}), {function!r})()\n"
        "sys.stdout.write(json.dumps(result))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout)
