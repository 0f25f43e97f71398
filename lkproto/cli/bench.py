"""``lkproto bench``: list or run the benchmark scripts of the source tree (``benchmarks/``)."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from lkproto.cli._common import CliError

__all__ = ["BENCH_EPILOG", "add_bench_arguments", "find_benchmarks", "run_bench"]

BENCH_EPILOG: Final = """\
examples:
  lkproto bench                     # list the benchmarks with their one-line description
  lkproto bench data_rpc            # run benchmarks/data_rpc.py
  lkproto bench streams -- --help   # arguments after -- go to the script

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


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None, help="benchmark to run (omit to list)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    parser.add_argument("--dir", default=None, help="benchmarks directory")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")


def run_bench(args: argparse.Namespace) -> int:
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
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    env = dict(os.environ)
    root = str(directory.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.call([sys.executable, str(directory / f"{name}.py"), *extra], env=env)
