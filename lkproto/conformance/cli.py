"""``python -m lkproto conformance``: arguments and the run function.

``add_arguments(parser)`` and ``run(args)`` are what ``lkproto/__main__.py`` registers;
``python -m lkproto.conformance`` runs the same thing stand-alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lkproto.conformance._context import ServerTarget
from lkproto.conformance._registry import Result, select
from lkproto.conformance.adapters import ADAPTERS
from lkproto.conformance.runner import DEFAULT_PARALLEL, markdown_table, run_catalogue

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the conformance options to ``parser``."""
    target = parser.add_argument_group("server (one of --local or --url/--api-key/--api-secret)")
    target.add_argument("--url", help="signalling URL, e.g. ws://127.0.0.1:7880")
    target.add_argument("--api-key", help="API key of that server")
    target.add_argument("--api-secret", help="API secret of that server")
    target.add_argument(
        "--local",
        action="store_true",
        help="start a loopback livekit-server (built once) plus one with auto_create off",
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=sorted(ADAPTERS),
        dest="clients",
        help="client under test (repeatable; default: lkproto)",
    )
    parser.add_argument("--scenario", action="append", help="glob of scenario names (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", type=Path, help="write the results as a JSON list here")
    parser.add_argument(
        "--parallel", type=int, default=DEFAULT_PARALLEL, help="runs at once (%(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-result progress lines")


def _list(patterns: list[str] | None) -> int:
    for s in select(patterns):
        needs = f"  [needs: {', '.join(sorted(s.needs))}]" if s.needs else ""
        print(f"{s.name}{needs}\n    {' '.join(s.doc.split())}")
    return 0


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[tuple[ServerTarget, ServerTarget | None]]:
    if not args.local:
        yield ServerTarget(args.url, args.api_key, args.api_secret), None
        return
    from lkproto.testing import LocalServer, ensure_livekit_server

    binary = ensure_livekit_server()
    with (
        LocalServer(binary=binary) as main,
        LocalServer(binary=binary, auto_create=False) as closed,
    ):
        yield (
            ServerTarget(main.url, main.api_key, main.api_secret),
            ServerTarget(closed.url, closed.api_key, closed.api_secret),
        )


def run(args: argparse.Namespace) -> int:
    """Run the selected scenarios; print progress and the table; 0 only if nothing failed."""
    if args.list:
        return _list(args.scenario)
    if not args.local and not (args.url and args.api_key and args.api_secret):
        print("conformance: give --local or all of --url, --api-key, --api-secret", file=sys.stderr)
        return 2
    scenarios = select(args.scenario)
    if not scenarios:
        print(f"conformance: no scenario matches {args.scenario}", file=sys.stderr)
        return 2
    clients = list(dict.fromkeys(args.clients or ["lkproto"]))

    def progress(result: Result) -> None:
        if not args.quiet:
            reason = f": {result.reason}" if result.reason else ""
            print(
                f"{result.result:>11}  {result.scenario} [{result.client}] "
                f"{result.seconds:.1f}s{reason}",
                file=sys.stderr,
                flush=True,
            )

    start = time.monotonic()
    with _servers(args) as (server, closed):
        results = asyncio.run(
            run_catalogue(
                server,
                scenarios,
                clients,
                parallel=args.parallel,
                no_autocreate=closed,
                on_result=progress,
            )
        )
    elapsed = time.monotonic() - start
    print(markdown_table(results, clients))
    print(f"\n{len(scenarios)} scenarios x {len(clients)} clients in {elapsed:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    return 1 if any(r.result == "fail" for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m lkproto.conformance``)."""
    parser = argparse.ArgumentParser(
        prog="python -m lkproto.conformance", description="LiveKit client conformance runner"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
