"""lkproto and the official SDK through the two nodes of a :class:`LocalCluster` (issue 15/19).

The room is pinned to one node (RoomService ``CreateRoom`` with its ``node_id``); lkproto joins
through node 0 and the official SDK through node 1, so one of the two always reaches the room
through the other node, its signalling relayed over Redis (upstream ``pkg/routing``). Both
directions of data, a text stream, a byte stream, RPC and an audio tone must work either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.conformance._context import ClusterTarget, ServerTarget
from lkproto.conformance._registry import select
from lkproto.conformance.runner import run_catalogue
from lkproto.conformance.scenarios.cluster import CLUSTER_PREFIX
from lkproto.testing import scaled
from lkproto.testing.cluster import LocalCluster, missing_cluster_requirements
from lkproto.testing.server import DEFAULT_READY_TIMEOUT_S
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    disconnect_all,
    official_options,
    our_options,
    unique_room,
    wait_for,
)
from tests.interop.test_media import publish_tone, subscribed_track, tone_of

_MISSING = missing_cluster_requirements()
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]

_STEP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def cluster(
    livekit_server_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    # Nodes 0 and 1 for the exchanges; node 2 is the spare the conformance lane kills.
    with LocalCluster(
        nodes=3,
        binary=livekit_server_binary,
        log_dir=tmp_path_factory.mktemp("cluster"),
        ready_timeout=scaled(DEFAULT_READY_TIMEOUT_S),
    ) as started:
        yield started


@contextlib.asynccontextmanager
async def _pair(cluster: LocalCluster, host: int) -> AsyncIterator[tuple[rtc.Room, lrtc.Room]]:
    name = unique_room(f"cluster-{host}")
    await asyncio.to_thread(cluster.pin_room, name, node=host)
    ours: rtc.Room | None = None
    theirs: lrtc.Room | None = None
    try:
        ours = rtc.Room()
        await asyncio.wait_for(
            ours.connect(cluster.url(0), cluster.create_token("lk", name), our_options()),
            scaled(CONNECT_TIMEOUT_S),
        )
        theirs = lrtc.Room()
        await asyncio.wait_for(
            theirs.connect(cluster.url(1), cluster.create_token("sdk", name), official_options()),
            scaled(CONNECT_TIMEOUT_S),
        )
        both = (ours, theirs)
        await wait_for(
            lambda: all(len(r.remote_participants) == 1 for r in both),
            ROSTER_TIMEOUT_S,
            "both participants see each other",
        )
        yield ours, theirs
        # The room never moved: the pin held for both the local and the relayed participant.
        assert await asyncio.to_thread(cluster.room_node, name) == host
    finally:
        await disconnect_all(ours, theirs)


def _settle(future: asyncio.Future[bytes], value: bytes) -> None:
    if not future.done():
        future.set_result(value)


async def _bounded(awaitable: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, scaled(_STEP_TIMEOUT_S))
    except TimeoutError:
        raise AssertionError(f"{what} did not finish in {scaled(_STEP_TIMEOUT_S):g} s") from None


@pytest.mark.parametrize("host", [0, 1], ids=["room-on-lkproto-node", "room-on-sdk-node"])
async def test_data_streams_rpc_and_audio_across_nodes(cluster: LocalCluster, host: int) -> None:
    async with _pair(cluster, host) as (ours, theirs):
        loop = asyncio.get_running_loop()

        # -- reliable data, both ways
        got_ours: asyncio.Future[bytes] = loop.create_future()
        got_theirs: asyncio.Future[bytes] = loop.create_future()
        ours.on("data_received", lambda p: _settle(got_ours, bytes(p.data)))
        theirs.on("data_received", lambda p: _settle(got_theirs, bytes(p.data)))
        await ours.local_participant.publish_data(b"from-lkproto", reliable=True, topic="c")
        await theirs.local_participant.publish_data(b"from-sdk", reliable=True, topic="c")
        assert await _bounded(got_theirs, "data lkproto -> sdk") == b"from-lkproto"
        assert await _bounded(got_ours, "data sdk -> lkproto") == b"from-sdk"

        # -- text stream lkproto -> sdk, byte stream sdk -> lkproto
        text: asyncio.Future[str] = loop.create_future()
        blob: asyncio.Future[bytes] = loop.create_future()
        tasks: list[asyncio.Future[Any]] = []

        def on_text(reader: Any, _identity: str) -> None:
            async def read() -> None:
                text.set_result(await reader.read_all())

            tasks.append(asyncio.ensure_future(read()))

        def on_bytes(reader: Any, _identity: str) -> None:
            async def read() -> None:
                chunks = [bytes(c) async for c in reader]
                blob.set_result(b"".join(chunks))

            tasks.append(asyncio.ensure_future(read()))

        theirs.register_text_stream_handler("cluster-text", on_text)
        ours.register_byte_stream_handler("cluster-bytes", on_bytes)
        long_text = "relayed " * 5_000  # several chunks
        data = bytes(range(256)) * 400  # 100 KiB
        await _bounded(ours.local_participant.send_text(long_text, topic="cluster-text"), "text")
        writer = await theirs.local_participant.stream_bytes(
            "blob.bin", total_size=len(data), topic="cluster-bytes"
        )
        for offset in range(0, len(data), 16_384):
            await writer.write(data[offset : offset + 16_384])
        await writer.aclose()
        assert await _bounded(text, "text stream lkproto -> sdk") == long_text
        received = await _bounded(blob, "byte stream sdk -> lkproto")
        assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
        await asyncio.gather(*tasks)

        # -- RPC both ways
        ours.local_participant.register_rpc_method("up", lambda d: d.payload.upper())
        theirs.local_participant.register_rpc_method("rev", lambda d: d.payload[::-1])
        answer = await _bounded(
            ours.local_participant.perform_rpc(
                destination_identity="sdk", method="rev", payload="cluster"
            ),
            "rpc lkproto -> sdk",
        )
        assert answer == "retsulc"
        answer = await _bounded(
            theirs.local_participant.perform_rpc(
                destination_identity="lk", method="up", payload="cluster"
            ),
            "rpc sdk -> lkproto",
        )
        assert answer == "CLUSTER"

        # -- audio both ways, detected at the sent frequency
        mine = await publish_tone(rtc, ours, 440)
        their_feed = await publish_tone(lrtc, theirs, 1000)
        try:
            heard_by_sdk, _ = await tone_of(lrtc, await subscribed_track(theirs, "audio"), 1.0)
            heard_by_us, _ = await tone_of(rtc, await subscribed_track(ours, "audio"), 1.0)
        finally:
            await mine.stop()
            await their_feed.stop()
        assert abs(heard_by_sdk - 440) <= 5, heard_by_sdk
        assert abs(heard_by_us - 1000) <= 5, heard_by_us


async def test_pinned_room_is_refused_to_another_node_and_reassigned_after_a_kill(
    cluster: LocalCluster,
) -> None:
    """A room stays where it was pinned while its node is available; after that node is
    killed (its Redis entry left behind), a join through a survivor re-creates it on a live node
    once the dead node's stats are older than 5 s (upstream ``selector.AvailableSeconds``)."""
    name = unique_room("cluster-move")
    await asyncio.to_thread(cluster.pin_room, name, node=1)
    # A second pin to the other node does not move it (the assignment to an available node wins).
    with pytest.raises(Exception, match="is on node 1"):
        await asyncio.to_thread(cluster.pin_room, name, node=0)
    dead_id = cluster.node_id(1)
    await asyncio.to_thread(cluster.kill_node, 1)
    try:
        assert dead_id in await asyncio.to_thread(cluster.registered_node_ids)
        room = rtc.Room()
        try:
            await asyncio.wait_for(
                room.connect(cluster.url(0), cluster.create_token("late", name), our_options()),
                scaled(CONNECT_TIMEOUT_S),
            )
            # Re-assigned to a live node: the selector picks one of the available nodes at
            # random (upstream selector "any"), so node 0 or node 2 here, never the dead one.
            assert await asyncio.to_thread(cluster.room_node, name) in (0, 2)
        finally:
            await disconnect_all(room)
    finally:
        await asyncio.to_thread(cluster.restart_node, 1)


async def test_conformance_cluster_scenarios(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The cluster-only conformance scenarios (what ``--local-cluster`` adds), both SDKs: lkproto
    passes all; the official SDK 1.2.1 answers a dead relay node with a full reconnect."""
    # lkproto's recovery decisions are logged at INFO: keep them for the failure message.
    caplog.set_level(logging.INFO, logger="lkproto")
    host, relay, spare = (
        ServerTarget(node.url, cluster.api_key, cluster.api_secret) for node in cluster.nodes
    )
    target = ClusterTarget(
        host=host,
        relay=relay,
        host_node_id=cluster.node_id(0),
        spare=spare,
        spare_index=2,
        control=cluster,
    )
    results = await run_catalogue(
        relay,
        select([f"{CLUSTER_PREFIX}*"]),
        ["lkproto", "livekit-python"],
        cluster=target,
    )
    outcome = {(r.scenario, r.client): (r.result, r.reason) for r in results}
    ours = {name: got for (name, client), got in outcome.items() if client == "lkproto"}
    assert len(ours) == 3, outcome
    recovery = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("lkproto") and re.search("reconnect|resum|leave|refus", r.getMessage())
    ]
    # The host node's word on closed sessions, for a refused resume.
    closes = [
        line[:400]
        for line in cluster.node(0).log_tail(2000).splitlines()
        if re.search("closing participant|cannot restart|participant closing", line)
    ]
    detail = (ours, recovery[-30:], closes[-10:])
    assert ours["cluster.signal.relayed"][0] == "pass", detail
    assert ours["cluster.node.relay_failure"][0] == "pass", detail
    assert ours["cluster.node.relay_failure.resumed"][0] == "pass", detail
    theirs = {name: got for (name, client), got in outcome.items() if client != "lkproto"}
    assert theirs["cluster.signal.relayed"][0] == "pass", outcome
    assert theirs["cluster.node.relay_failure"][0] == "pass", outcome
