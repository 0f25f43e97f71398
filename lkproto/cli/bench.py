"""``lkproto bench``: list or run the benchmark scripts of the source tree (``benchmarks/``)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from lkproto.cli._common import CliError

__all__ = [
    "BENCH_EPILOG",
    "add_bench_arguments",
    "find_benchmarks",
    "result_path",
    "run_bench",
    "script_command",
]

BENCH_EPILOG: Final = """\
examples:
  lkproto bench                     # list the benchmarks with their one-line description
  lkproto bench data_rpc            # run benchmarks/data_rpc.py
  lkproto bench streams -- --help   # arguments after -- go to the script
  lkproto bench join_time --json out.json --print-json -- --joins 5
                                    # result file handed to the script, then printed

Benchmarks live in the source checkout (benchmarks/ next to lkproto/), or --dir DIR.
"""


def _default_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks"


def find_benchmarks(directory: Path) -> dict[str, str]:
    """Script name (without ``.py``) -> first line of its docstring, sorted by name."""
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError):
            doc = ""
        out[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def script_command(
    directory: Path, name: str, extra: list[str], json_path: Path | None = None
) -> list[str]:
    """The command that runs benchmark ``name``: this interpreter, its script, ``--json`` when a
    result file is chosen, then ``extra`` unchanged (a leading ``--`` is dropped)."""
    args = extra[1:] if extra[:1] == ["--"] else list(extra)
    command = [sys.executable, str(directory / f"{name.removesuffix('.py')}.py")]
    if json_path is not None:
        command += ["--json", str(json_path)]
    return command + args


def result_path(directory: Path, name: str, json_path: Path | None) -> Path:
    """Where benchmark ``name`` writes its JSON: ``json_path``, or the scripts' default,
    ``<directory>/results/<name>.json``."""
    return json_path if json_path is not None else directory / "results" / f"{name}.json"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``lkproto bench``'s arguments to ``parser``."""
    parser.add_argument("name", nargs="?", default=None, help="benchmark to run (omit to list)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    parser.add_argument("--dir", default=None, help="benchmarks directory")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    parser.add_argument(
        "--json", type=Path, default=None, help="result file (passed to the script as --json)"
    )
    parser.add_argument(
        "--print-json",
        action="store_true",
        help="print the result JSON after the run (else only its path)",
    )


def run_bench(args: argparse.Namespace) -> int:
    """List the benchmarks, or run one and show its result; returns the script's exit status.

    Raises:
        CliError: no benchmarks directory, or no benchmark of that name.
    """
    directory = Path(args.dir) if args.dir else _default_dir()
    if not directory.is_dir():
        raise CliError(f"no benchmarks directory at {directory} (use --dir)")
    available = find_benchmarks(directory)
    if args.list or args.name is None:
        width = max((len(n) for n in available), default=0)
        for name, doc in available.items():
            print(f"{name:<{width}}  {doc}")
        return 0
    name = args.name.removesuffix(".py")
    if name not in available:
        raise CliError(f"no benchmark {name!r} (available: {', '.join(available) or 'none'})")
    env = dict(os.environ)
    root = str(directory.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    started = time.time()
    status = subprocess.call(script_command(directory, name, args.args, args.json), env=env)
    _show_result(result_path(directory, name, args.json), started, full=args.print_json)
    return status


def _show_result(path: Path, started: float, *, full: bool) -> None:
    """Print the result the run wrote (a file older than the run is not this run's)."""
    try:
        if path.stat().st_mtime < started:
            return
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if full:
        print(json.dumps(document, indent=2))
        return
    print(f"result: {path}")
