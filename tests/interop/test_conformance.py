"""The conformance runner (``lkproto.conformance``) against the session's livekit-server.

Runs the whole catalogue once, in one concurrent run, for lkproto, the official Python SDK and,
when Chromium and the browser bundle are set up, livekit-client (its serial lane overlaps the
others instead of running after them). One test checks that every scenario produced a result
for every client and that lkproto fails nothing; the other checks the browser lane. The JSON,
Markdown and HTML reports go to ``$LKPROTO_CONFORMANCE_REPORT`` (``X.json`` gives ``X.json``,
``X.md``, ``X.html``) when set, else into a temporary directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lkproto.conformance import REGISTRY, Result, ServerTarget, run_catalogue
from lkproto.conformance.adapters import livekit_js_unavailable
from lkproto.conformance.report import html_report, lanes, markdown_report
from lkproto.conformance.scenarios.cluster import CLUSTER_PREFIX
from lkproto.testing import LocalServer, server_version

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.interop

REPORT_ENV = "LKPROTO_CONFORMANCE_REPORT"

KNOWN_LKPROTO_FAILURES: dict[str, str] = {}
"""Scenarios lkproto may fail, with why; empty: every lkproto failure fails this test."""


@pytest.fixture(scope="module")
def closed_server(
    livekit_server_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A second server with ``room.auto_create: false`` (for ``join.reject.room_not_found``)."""
    server = LocalServer(
        binary=livekit_server_binary,
        auto_create=False,
        log_dir=tmp_path_factory.mktemp("livekit-server-closed"),
    )
    with server:
        yield server


def _target(server: LocalServer) -> ServerTarget:
    return ServerTarget(server.url, server.api_key, server.api_secret)


def _write_reports(results: list[Result], directory: Path) -> Path:
    base = os.environ.get(REPORT_ENV)
    path = Path(base) if base else directory / "conformance.json"
    path.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown_report(results, title="lkproto conformance"))
    path.with_suffix(".html").write_text(html_report(results, title="lkproto conformance"))
    return path


# The cluster scenarios need --local-cluster (as in the CLI, they are left out of a one-server
# run); tests/interop/test_local_cluster.py runs them.
_SINGLE_SERVER = {
    name: scenario for name, scenario in REGISTRY.items() if not name.startswith(CLUSTER_PREFIX)
}


@pytest.fixture(scope="module")
async def catalogue(
    livekit_server: LocalServer,
    livekit_server_binary: Path,
    closed_server: LocalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> list[Result]:
    """Every scenario for every available client, in one concurrent run."""
    clients = ["lkproto", "livekit-python"]
    if livekit_js_unavailable() is None:
        clients.append("livekit-js")
    version = server_version(livekit_server_binary)
    results = await run_catalogue(
        _target(livekit_server),
        list(_SINGLE_SERVER.values()),
        clients,
        no_autocreate=_target(closed_server),
        server_version=f"v{version}" if version else "",
    )
    path = _write_reports(results, tmp_path_factory.mktemp("conformance"))
    timings = "\n".join(
        f"lane {lane.label}: wall {lane.wall_s or 0:.0f} s, sum {lane.busy_s:.0f} s"
        for lane in lanes(results)
    )
    print(f"\n{timings}\nreports: {path} (.md, .html)")
    return results


def _check_complete(results: list[Result], client: str) -> None:
    produced = {r.scenario for r in results if r.client == client}
    assert produced == set(_SINGLE_SERVER), sorted(set(_SINGLE_SERVER) ^ produced)
    assert len(_SINGLE_SERVER) >= 40


def test_catalogue_lkproto_and_official_sdk(catalogue: list[Result]) -> None:
    for client in ("lkproto", "livekit-python"):
        _check_complete(catalogue, client)
    unexpected = [
        f"{r.scenario}: {r.reason}"
        for r in catalogue
        if r.client == "lkproto" and r.result != "pass" and r.scenario not in KNOWN_LKPROTO_FAILURES
    ]
    assert not unexpected, "\n".join(unexpected)


def test_catalogue_livekit_js(catalogue: list[Result]) -> None:
    why = livekit_js_unavailable()
    if why is not None:
        pytest.skip(f"livekit-js adapter unavailable: {why}")
    _check_complete(catalogue, "livekit-js")
    # A broken harness would make everything unsupported: at least the basics must pass.
    passed = {r.scenario for r in catalogue if r.client == "livekit-js" and r.result == "pass"}
    assert {"join.v1.single_pc", "data.reliable.send", "rpc.v1.call"} <= passed, passed
