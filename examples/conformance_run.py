"""Run lkproto's protocol conformance checks against your own LiveKit server, from Python.

Shows :mod:`lkproto.conformance` as a library: pick scenarios by glob (:func:`select`), run them
for one or more clients against a :class:`ServerTarget` (:func:`run_catalogue`), print each
result as it arrives and a Markdown table at the end. Every scenario joins a fresh room with
lkproto as the known-good peer; the client under test is ``lkproto`` by default, or the
official SDK (``--client livekit-python``, needs the ``livekit`` package).

::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/conformance_run.py --scenario 'data.*' --scenario 'rpc.*'
    python examples/conformance_run.py --list

The same run from the command line: ``lkproto conformance --url ... --scenario 'data.*'``.
The exit status is 1 if any scenario failed. Scenarios a client cannot run report
``unsupported``; ``join.reject.room_not_found`` needs a second server with
``room.auto_create: false`` and is unsupported here.
"""

from __future__ import annotations

import argparse
import asyncio

import _shared

from lkproto import conformance

__all__ = ["DEFAULT_SCENARIOS", "main"]

# A quick sample (about 10 s); pass --scenario '*' for the whole catalogue (minutes).
DEFAULT_SCENARIOS = ("join.v1.single_pc", "data.reliable.send", "rpc.v2.call", "rpc.v2.serve")


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    scenarios = conformance.select(args.scenario or DEFAULT_SCENARIOS)
    if not scenarios:
        _shared.fail(f"no scenario matches {args.scenario}")
    clients = args.client or ["lkproto"]
    server = conformance.ServerTarget(args.url, args.api_key, args.api_secret)
    print(
        f"running {len(scenarios)} scenarios for {', '.join(clients)} against {args.url}",
        flush=True,
    )

    def progress(result: conformance.Result) -> None:
        reason = f": {result.reason}" if result.reason else ""
        print(
            f"{result.scenario} [{result.client}] {result.result}{reason} ({result.seconds:.1f} s)",
            flush=True,
        )

    results = await conformance.run_catalogue(
        server, scenarios, clients, parallel=args.parallel, on_result=progress
    )
    print(flush=True)
    print(conformance.markdown_table(results, clients), flush=True)
    return 1 if any(r.result == "fail" for r in results) else 0


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__, room=None)
    parser.add_argument("--scenario", action="append", help="glob of scenario names (repeatable)")
    parser.add_argument(
        "--client",
        action="append",
        choices=["lkproto", "livekit-python", "livekit-js"],
        help="client under test (repeatable; default lkproto)",
    )
    parser.add_argument("--parallel", type=int, default=2, help="scenarios at once (2)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args()
    if args.list:
        for s in conformance.select(args.scenario):
            print(s.name)
        return 0
    _shared.check_server_args(parser, args)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
