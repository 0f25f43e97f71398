"""The conformance cluster lane without a server: options, scenario selection, ``unsupported``."""

from __future__ import annotations

import argparse

import pytest

from lkproto.conformance._context import ClusterTarget, Context, ServerTarget
from lkproto.conformance._registry import REGISTRY, select
from lkproto.conformance.adapters import ADAPTERS, BrowserPool
from lkproto.conformance.cli import add_arguments, main
from lkproto.conformance.runner import run_one
from lkproto.conformance.scenarios.cluster import CLUSTER_PREFIX

_SERVER = ServerTarget("ws://127.0.0.1:1", "k", "s" * 32)


def test_cluster_scenarios_are_registered() -> None:
    names = [s.name for s in select([f"{CLUSTER_PREFIX}*"])]
    assert names == [
        "cluster.signal.relayed",
        "cluster.node.relay_failure",
        "cluster.node.relay_failure.resumed",
    ]
    assert all(REGISTRY[n].doc for n in names)


def test_local_cluster_option_parses() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--local-cluster"]).local_cluster is True
    assert parser.parse_args([]).local_cluster is False


def test_local_and_local_cluster_together_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--local", "--local-cluster"]) == 2
    assert "not both" in capsys.readouterr().err


def test_other_lanes_leave_the_cluster_scenarios_out(capsys: pytest.CaptureFixture[str]) -> None:
    # Selecting only cluster scenarios outside the cluster lane leaves nothing to run.
    assert main(["--url", "ws://127.0.0.1:1", "--api-key", "k", "--api-secret", "s",
                 "--scenario", f"{CLUSTER_PREFIX}*"]) == 2  # fmt: skip
    assert "no scenario matches" in capsys.readouterr().err


async def test_without_a_cluster_they_are_unsupported() -> None:
    factory = ADAPTERS["lkproto"](BrowserPool(1))
    results: list[tuple[str, str]] = []
    for scenario in select([f"{CLUSTER_PREFIX}*"]):
        result = await run_one(scenario, "lkproto", factory, _SERVER)
        results.append((result.result, result.reason))
    assert {r for r, _ in results} == {"unsupported"}
    assert all("--local-cluster" in reason for _, reason in results)


def test_context_sends_peers_to_the_host_and_the_client_to_the_relay() -> None:
    host = ServerTarget("ws://127.0.0.1:2", "k", "s" * 32)
    cluster = ClusterTarget(host=host, relay=_SERVER, host_node_id="ND_host")
    ctx = Context(
        server=_SERVER,
        client_name="lkproto",
        factory=ADAPTERS["lkproto"](BrowserPool(1)),
        scenario="x",
        cluster=cluster,
    )
    assert ctx.peer_server is host
    assert ctx.server is _SERVER
    assert ctx.require_cluster() is cluster
    plain = Context(
        server=_SERVER, client_name="lkproto", factory=ADAPTERS["lkproto"](BrowserPool(1)),
        scenario="x",
    )  # fmt: skip
    assert plain.peer_server is _SERVER
