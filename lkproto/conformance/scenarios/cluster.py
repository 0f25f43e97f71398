"""Scenarios only a cluster can show (the ``--local-cluster`` lane, issue 19 item 3).

In the cluster lane every run's room is pinned to the host node and the client under test joins
through another node (:class:`~lkproto.conformance._context.ClusterTarget`), so the whole
catalogue already runs with relayed signalling. These scenarios check what is specific to it
(upstream ``pkg/routing``, ``pkg/service/roomallocator.go``): the session lives on the room's
node whichever node the WebSocket reaches, and losing the node that only relays the signalling
costs a reconnect of the signalling, not the session.

Outside the cluster lane they are ``unsupported`` ("needs a cluster"); the CLI leaves them out of
other lanes (:data:`CLUSTER_PREFIX`).
"""

from __future__ import annotations

import asyncio
from typing import Final

from lkproto.conformance._context import Context
from lkproto.conformance._registry import Unsupported, scenario
from lkproto.conformance.adapters import Client, PeerClient
from lkproto.conformance.scenarios._util import check
from lkproto.wire import pb

__all__ = ["CLUSTER_PREFIX"]

CLUSTER_PREFIX: Final = "cluster."
"""Names of the cluster-only scenarios start with this."""

_RECONNECT_TIMEOUT_S: Final = 30.0


class _JoinTap:
    """Keeps the JoinResponse an lkproto peer received (its ``RoomOptions.trace``)."""

    def __init__(self) -> None:
        self.join: pb.JoinResponse | None = None

    def __call__(
        self, direction: str, channel: str, message: object, raw: bytes, now: float
    ) -> None:
        if (
            direction == "<"
            and isinstance(message, pb.SignalResponse)
            and message.WhichOneof("message") == "join"
        ):
            self.join = message.join


async def _data_both_ways(ctx: Context, client: Client, peer: PeerClient, tag: str) -> None:
    async def both_ways() -> bool:
        await client.publish_data(tag.encode(), topic=f"up-{tag}")
        await peer.publish_data(tag.encode(), topic=f"down-{tag}")
        await ctx.settle(0.2)
        await client.poll()
        return any(m.topic == f"up-{tag}" for m in peer.received) and any(
            m.topic == f"down-{tag}" for m in client.received
        )

    await ctx.until(both_ways, f"data both ways ({tag})", within=20)


def _joined_on(tap: _JoinTap, who: str) -> str:
    check(tap.join is not None, f"{who} saw no JoinResponse")
    assert tap.join is not None
    return tap.join.server_info.node_id


@scenario("cluster.signal.relayed", needs={"data", "state"})
async def signal_relayed(ctx: Context) -> None:
    """A participant whose WebSocket reaches a node that does not host the room is served by
    the room's node: the JoinResponse relayed to it names the host node
    (``ServerInfo.node_id``), its own signal requests (a metadata update) reach the others and
    theirs reach it, and data flows both ways (upstream ``pkg/routing``: the room lives on one
    node, other nodes relay the signalling over Redis; PROTOCOL-MAP §1 JoinResponse)."""
    cluster = ctx.require_cluster()
    host_tap, relayed_tap = _JoinTap(), _JoinTap()
    peer = await ctx.peer("peer", trace=host_tap, can_update_own_metadata=True)
    witness = await ctx.peer("witness", trace=relayed_tap, via=cluster.relay)
    client = await ctx.client(can_update_own_metadata=True)
    await ctx.until_sees(client, peer)
    check(
        _joined_on(host_tap, "the peer on the host node") == cluster.host_node_id,
        "the host node's JoinResponse names another node",
    )
    relayed_node = _joined_on(relayed_tap, "the lkproto peer on the relay node")
    check(
        relayed_node == cluster.host_node_id,
        f"a join through the relay node was served by {relayed_node!r}, "
        f"not by the room's node {cluster.host_node_id!r}",
    )

    await ctx.bounded(client.set_metadata("relayed-up"), "set_metadata through the relay node")

    def peer_sees_metadata() -> bool:
        remote = peer.room.remote_participants.get(client.identity)
        return remote is not None and remote.metadata == "relayed-up"

    await ctx.until(peer_sees_metadata, "the host-node peer sees the relayed metadata update")
    await ctx.bounded(peer.set_metadata("host-down"), "set_metadata on the host node")

    async def client_sees_metadata() -> bool:
        view = (await client.remotes()).get(peer.identity)
        return view is not None and view.metadata == "host-down"

    await ctx.until(client_sees_metadata, "the relayed client sees the peer's metadata update")
    await _data_both_ways(ctx, client, peer, "relayed")
    check(witness.identity in await client.remotes(), "the relayed client misses the witness")


async def _relay_killed(ctx: Context) -> tuple[Client, PeerClient, str]:
    """Connect the client through the spare node, kill and restart that node, wait until the
    client is back and data flows; return the client, the peer and the client's first SID."""
    cluster = ctx.require_cluster()
    if cluster.control is None or cluster.spare is None or cluster.spare_index is None:
        raise Unsupported("needs a local cluster with a spare node (--local-cluster)")
    control, spare, index = cluster.control, cluster.spare, cluster.spare_index
    async with cluster.fault_lock:  # one node kill at a time in the whole lane
        peer = await ctx.peer()
        client = ctx.new_client()
        ctx.step = "connect the client through the spare node"
        await client.connect(spare.url, ctx.token(client.identity))
        await ctx.until_sees(client, peer)
        sid = await client.local_sid()
        await _data_both_ways(ctx, client, peer, "before")
        ctx.step = "kill and restart the spare node"
        await asyncio.to_thread(control.kill_node, index)
        await asyncio.to_thread(control.restart_node, index)

        async def back() -> bool:
            await client.poll()
            return client.reconnected >= 1 and client.connected

        await ctx.until(back, "the client's reconnected event", within=_RECONNECT_TIMEOUT_S)
        await ctx.until_sees(client, peer)
        await _data_both_ways(ctx, client, peer, "after")
    return client, peer, sid


@scenario("cluster.node.relay_failure", needs={"data"}, timeout=90)
async def relay_node_failure(ctx: Context) -> None:
    """The node that only relays the client's signalling is killed (SIGKILL) and restarted on
    the same port; the room and the client's media stay on the host node. The client comes
    back (``reconnected``, by a resume or a full reconnect) and data flows both ways again
    (upstream ``pkg/routing``; PROTOCOL-MAP §10)."""
    await _relay_killed(ctx)


@scenario("cluster.node.relay_failure.resumed", needs={"data"}, timeout=90)
async def relay_node_failure_resumed(ctx: Context) -> None:
    """As ``cluster.node.relay_failure``, and the session survives: only the signalling died
    and the PeerConnection to the host node is intact, so the client resumes through the
    restarted node (``reconnect=true`` join) and keeps its SID, and the peer never sees it leave
    (PROTOCOL-MAP §10 Resume: resume while the transport is up; a full reconnect here throws a
    healthy session away)."""
    client, peer, sid = await _relay_killed(ctx)
    check(
        client.identity not in peer.left,
        "the peer saw the client leave: it did a full reconnect, not a resume",
    )
    check(await client.local_sid() == sid, "the SID changed: a full reconnect, not a resume")
