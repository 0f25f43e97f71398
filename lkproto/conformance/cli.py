"""``python -m lkproto conformance``: arguments and the run function.

``add_arguments(parser)`` and ``run(args)`` are what ``lkproto/__main__.py`` registers;
``python -m lkproto.conformance`` runs the same thing stand-alone.

Besides running, it renders saved runs (``--render old.json --markdown r.md --html r.html``)
and compares two (``--compare old.json new.json``: exit 1 when the new run has new failures).
``--server-versions v1.13.5,v1.11.0`` with ``--local`` builds each release once (``go install``
into the lkproto cache, at low priority) and runs the catalogue against each in turn.
``--local-cluster`` runs it against a local three-node cluster sharing a private redis-server
(:class:`~lkproto.testing.LocalCluster`): every run's room is pinned to node 0, the lkproto peers
join through node 0, the client under test through node 1 (signalling relayed between nodes),
and node 2 is the spare the node-failure scenarios kill; the ``cluster.*`` scenarios run only
in this lane.
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

from lkproto.conformance._context import ClusterTarget, ServerTarget
from lkproto.conformance._registry import Result, select
from lkproto.conformance.adapters import ADAPTERS
from lkproto.conformance.report import (
    compare,
    format_comparison,
    html_report,
    lanes,
    load_results,
    markdown_report,
)
from lkproto.conformance.runner import (
    DEFAULT_BROWSERS,
    DEFAULT_PARALLEL,
    markdown_table,
    run_catalogue,
)
from lkproto.conformance.scenarios.cluster import CLUSTER_PREFIX
from lkproto.errors import LkError

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
    target.add_argument(
        "--local-cluster",
        action="store_true",
        help="like --local, but a 3-node cluster with redis-server: rooms on node 0, the client "
        "under test through node 1 (relayed), node 2 killed by the cluster.* scenarios",
    )
    target.add_argument(
        "--server-version",
        action="append",
        dest="server_versions",
        metavar="vX.Y.Z",
        help="with --local: the release to run (repeatable; default: the pinned one)",
    )
    target.add_argument(
        "--server-versions",
        action="append",
        type=_version_list,
        dest="server_version_lists",
        metavar="vA,vB,...",
        help="with --local: comma-separated releases, run one after the other",
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
    parser.add_argument("--markdown", type=Path, help="write a Markdown report here")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report here")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RUN.json",
        help="do not run: read a saved --json run and write --markdown/--html from it",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("OLD.json", "NEW.json"),
        help="do not run: print what changed between two saved runs (new failures first)",
    )
    parser.add_argument(
        "--parallel", type=int, default=DEFAULT_PARALLEL, help="runs at once (%(default)s)"
    )
    parser.add_argument(
        "--browsers",
        type=int,
        default=DEFAULT_BROWSERS,
        help="Chromium pages for livekit-js, i.e. its runs at once (%(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-result progress lines")


def _list(patterns: list[str] | None) -> int:
    for s in select(patterns):
        needs = f"  [needs: {', '.join(sorted(s.needs))}]" if s.needs else ""
        print(f"{s.name}{needs}\n    {' '.join(s.doc.split())}")
    return 0


def _version_list(text: str) -> list[str]:
    versions = [v.strip() for v in text.split(",") if v.strip()]
    if not versions:
        raise argparse.ArgumentTypeError("give at least one release, e.g. v1.13.5,v1.11.0")
    return versions


def _versions(args: argparse.Namespace) -> list[str]:
    """The releases asked for, in order, without repeats; empty: the pinned (or given) server."""
    wanted = list(args.server_versions or [])
    for group in args.server_version_lists or []:
        wanted += group
    return list(dict.fromkeys(wanted))


_Servers = tuple[ServerTarget, ServerTarget | None, str, ClusterTarget | None]


@contextlib.contextmanager
def _servers(args: argparse.Namespace, version: str | None) -> Iterator[_Servers]:
    """The target server, the auto-create-off one (local only), the release label and the
    cluster lane's nodes (``--local-cluster`` only)."""
    if not (args.local or args.local_cluster):
        yield ServerTarget(args.url, args.api_key, args.api_secret), None, "", None
        return
    from lkproto.testing import LocalCluster, LocalServer, ensure_livekit_server
    from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION, server_version

    binary = ensure_livekit_server(version or DEFAULT_LIVEKIT_SERVER_VERSION)
    found = server_version(binary)
    label = f"v{found}" if found else (version or "")
    with LocalServer(binary=binary, auto_create=False) as closed:
        no_autocreate = ServerTarget(closed.url, closed.api_key, closed.api_secret)
        if not args.local_cluster:
            with LocalServer(binary=binary) as main:
                yield (
                    ServerTarget(main.url, main.api_key, main.api_secret),
                    no_autocreate,
                    label,
                    None,
                )
            return
        with LocalCluster(nodes=3, binary=binary) as cluster:
            host, relay, spare = (
                ServerTarget(node.url, cluster.api_key, cluster.api_secret)
                for node in cluster.nodes
            )
            target = ClusterTarget(
                host=host,
                relay=relay,
                host_node_id=cluster.node_id(0),
                spare=spare,
                spare_index=2,
                control=cluster,
            )
            yield relay, no_autocreate, f"{label} cluster", target


def _write_reports(args: argparse.Namespace, results: list[Result]) -> None:
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown_report(results, title="lkproto conformance"))
    if args.html is not None:
        args.html.write_text(html_report(results, title="lkproto conformance"))


def _offline(args: argparse.Namespace) -> int | None:
    """``--compare`` and ``--render``: no server; ``None`` when neither was asked for."""
    try:
        if args.compare is not None:
            old, new = (load_results(path) for path in args.compare)
            comparison = compare(old, new)
            print(f"{args.compare[0]} ({len(old)} results) -> {args.compare[1]} ({len(new)})")
            print(format_comparison(comparison), end="")
            return 1 if comparison.new_failures else 0
        if args.render is not None:
            if args.markdown is None and args.html is None:
                print(markdown_report(load_results(args.render)), end="")
            else:
                _write_reports(args, load_results(args.render))
            return 0
    except (OSError, ValueError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    return None


def run(args: argparse.Namespace) -> int:
    """Run the selected scenarios; print progress and the table; 0 only if nothing failed."""
    if args.list:
        return _list(args.scenario)
    offline = _offline(args)
    if offline is not None:
        return offline
    local = args.local or args.local_cluster
    if args.local and args.local_cluster:
        print("conformance: give --local or --local-cluster, not both", file=sys.stderr)
        return 2
    if not local and not (args.url and args.api_key and args.api_secret):
        print(
            "conformance: give --local, --local-cluster or all of --url, --api-key, --api-secret",
            file=sys.stderr,
        )
        return 2
    versions = _versions(args)
    if versions and not local:
        print("conformance: --server-version(s) needs --local", file=sys.stderr)
        return 2
    scenarios = select(args.scenario)
    if not args.local_cluster:
        # Cluster-only scenarios would only report "needs a cluster" in every other lane.
        scenarios = [s for s in scenarios if not s.name.startswith(CLUSTER_PREFIX)]
    if not scenarios:
        print(f"conformance: no scenario matches {args.scenario}", file=sys.stderr)
        return 2
    clients = list(dict.fromkeys(args.clients or ["lkproto"]))

    def progress(result: Result) -> None:
        if not args.quiet:
            reason = f": {result.reason}" if result.reason else ""
            server = f" @ {result.server}" if result.server else ""
            print(
                f"{result.result:>11}  {result.scenario} [{result.client}{server}] "
                f"{result.seconds:.1f}s{reason}",
                file=sys.stderr,
                flush=True,
            )

    start = time.monotonic()
    results: list[Result] = []
    runs: list[str | None] = [*versions] or [None]
    for version in runs:
        try:
            with _servers(args, version) as (server, closed, label, cluster):
                results += asyncio.run(
                    run_catalogue(
                        server,
                        scenarios,
                        clients,
                        parallel=args.parallel,
                        browsers=args.browsers,
                        no_autocreate=closed,
                        on_result=progress,
                        server_version=label,
                        cluster=cluster,
                    )
                )
        except LkError as exc:
            # One release that does not build or start must not lose the others' results.
            print(f"conformance: server {version}: {exc}", file=sys.stderr)
            if len(versions) <= 1:
                return 2
    elapsed = time.monotonic() - start
    if len({r.server for r in results}) <= 1:
        print(markdown_table(results, clients))
    else:
        print(markdown_report(results, title="lkproto conformance"))
    for lane in lanes(results):
        wall = "-" if lane.wall_s is None else f"{lane.wall_s:.0f} s"
        print(f"lane {lane.label}: wall {wall}, sum of scenario times {lane.busy_s:.0f} s")
    print(f"\n{len(scenarios)} scenarios x {len(clients)} clients in {elapsed:.0f} s")
    _write_reports(args, results)
    if versions and len({r.server for r in results}) < len(versions):
        return 1
    return 1 if any(r.result == "fail" for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m lkproto.conformance``)."""
    parser = argparse.ArgumentParser(
        prog="python -m lkproto.conformance", description="LiveKit client conformance runner"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
