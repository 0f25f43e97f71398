"""Resume, full reconnect and server-initiated disconnections (PROTOCOL-MAP §1 LeaveRequest,
§10, §16 reliability tests, §17 RoomService)."""

from __future__ import annotations

from lkproto.conformance._context import Context
from lkproto.conformance._registry import scenario
from lkproto.conformance.adapters import Client, PeerClient
from lkproto.conformance.scenarios._util import check, require_resumable

__all__: list[str] = []

_RECONNECT_TIMEOUT_S = 30.0


async def _data_flows(ctx: Context, client: Client, peer: PeerClient, tag: str) -> None:
    async def both_ways() -> bool:
        await client.publish_data(tag.encode(), topic=f"up-{tag}")
        await peer.publish_data(tag.encode(), topic=f"down-{tag}")
        await ctx.settle(0.2)
        await client.poll()
        return any(m.topic == f"up-{tag}" for m in peer.received) and any(
            m.topic == f"down-{tag}" for m in client.received
        )

    await ctx.until(both_ways, f"data both ways after {tag}", within=20)


async def _recovered(ctx: Context, client: Client) -> None:
    async def back() -> bool:
        await client.poll()
        return client.reconnected >= 1 and client.connected

    await ctx.until(back, "the client's reconnected event", within=_RECONNECT_TIMEOUT_S)


@scenario("reconnect.resume.signal", needs={"simulate", "data"}, timeout=60)
async def resume_signal(ctx: Context) -> None:
    """The signal WebSocket drops while the PeerConnection stays up: the client resumes
    (``reconnect=true`` join, ``ReconnectResponse``, ``SyncState``), keeps its SID, the peer never
    sees it leave, and data flows both ways afterwards (PROTOCOL-MAP §10 Resume)."""
    client, peer = await ctx.pair()
    await require_resumable(client, ctx.server.url)
    sid = await client.local_sid()
    await ctx.bounded(client.simulate("signal_reconnect"), "simulate signal_reconnect")
    await _recovered(ctx, client)
    check(await client.local_sid() == sid, "the SID changed on a resume")
    await _data_flows(ctx, client, peer, "resume")
    check("client" not in peer.left, "the peer saw the client leave during a resume")


@scenario("reconnect.full", needs={"simulate", "data"}, timeout=60)
async def full_reconnect(ctx: Context) -> None:
    """A full reconnect (leave, new join, new SID, fresh sequence counter) brings the client
    back: it reports reconnected, the peer sees it again, and data flows both ways
    (PROTOCOL-MAP §10 Full reconnect)."""
    client, peer = await ctx.pair()
    await ctx.bounded(client.simulate("full_reconnect"), "simulate full_reconnect")
    await _recovered(ctx, client)
    await ctx.until_sees(client, peer)
    await _data_flows(ctx, client, peer, "full")


@scenario("reconnect.node_failure", needs={"simulate", "data"}, timeout=60)
async def node_failure(ctx: Context) -> None:
    """``SimulateScenario{node_failure}``: the server closes the session without a leave; the
    resume is refused with ``leave{STATE_MISMATCH, RECONNECT}`` and the client must fall back to
    a full reconnect (PROTOCOL-MAP §10 SimulateScenario, §16)."""
    client, peer = await ctx.pair()
    await ctx.bounded(client.simulate("node_failure"), "simulate node_failure")
    await _recovered(ctx, client)
    await ctx.until_sees(client, peer)
    await _data_flows(ctx, client, peer, "node-failure")


async def _disconnected_with(ctx: Context, client: Client, reason: int, name: str) -> None:
    async def gone() -> bool:
        await client.poll()
        return client.disconnect_reason is not None

    await ctx.until(gone, f"the client's disconnected event ({name})", within=20)
    check(
        client.disconnect_reason == reason,
        f"disconnect reason {client.disconnect_reason}, expected {name} ({reason})",
    )
    check(not client.connected, "still connected")


@scenario("reconnect.server_leave", needs={"simulate"})
async def server_leave(ctx: Context) -> None:
    """``SimulateScenario{server_leave}`` makes the server send ``leave{SERVER_SHUTDOWN,
    DISCONNECT}``: the client disconnects (no reconnect) with reason SERVER_SHUTDOWN
    (PROTOCOL-MAP §1 LeaveRequest, §10)."""
    client = await ctx.client()
    await ctx.bounded(client.simulate("server_leave"), "simulate server_leave")
    await _disconnected_with(ctx, client, 3, "SERVER_SHUTDOWN")


async def _bare_join(ctx: Context, identity: str) -> None:
    """Open a v0 signal socket as ``identity`` and read the JoinResponse, then close: enough for
    the server to replace an existing session, without depending on any SDK."""
    from lkproto.asyncio.signal import SignalTransport
    from lkproto.wire.join import signal_url_v0

    url = signal_url_v0(ctx.server.url, auto_subscribe=False)
    transport = await ctx.bounded(
        SignalTransport.open(url, ctx.token(identity)), "bare signal join"
    )
    try:
        await ctx.bounded(transport.recv(), "JoinResponse on the bare socket", 10)
    finally:
        await transport.close()


@scenario("reconnect.duplicate_identity.kicked", needs={"roster"})
async def duplicate_identity_kicked(ctx: Context) -> None:
    """A second join with the same identity (here a bare signal socket) replaces the first
    session: the client gets ``leave{DUPLICATE_IDENTITY, DISCONNECT}`` and disconnects with that
    reason, without reconnecting (PROTOCOL-MAP §1 LeaveRequest, §16)."""
    client = await ctx.client()
    await _bare_join(ctx, "client")
    await _disconnected_with(ctx, client, 2, "DUPLICATE_IDENTITY")
    await ctx.settle(1.0)
    await client.poll()
    check(client.reconnected == 0, "the client reconnected after DUPLICATE_IDENTITY")


@scenario("reconnect.removed_by_api", needs={"roster"})
async def removed(ctx: Context) -> None:
    """RoomService.RemoveParticipant makes the server send ``leave{PARTICIPANT_REMOVED}``: the
    client disconnects with that reason (PROTOCOL-MAP §17 RoomService RemoveParticipant)."""
    client, peer = await ctx.pair()
    await ctx.bounded(ctx.room_service().remove_participant(ctx.room, "client"), "remove")
    await _disconnected_with(ctx, client, 4, "PARTICIPANT_REMOVED")
    await ctx.until(lambda: "client" in peer.left, "the peer sees the client leave")


@scenario("reconnect.room_deleted", needs={"roster"})
async def room_deleted(ctx: Context) -> None:
    """RoomService.DeleteRoom sends every participant ``leave{ROOM_DELETED}``: the client
    disconnects with that reason (PROTOCOL-MAP §17 RoomService DeleteRoom)."""
    client = await ctx.client()
    await ctx.bounded(ctx.room_service().delete_room(ctx.room), "delete_room")
    await _disconnected_with(ctx, client, 5, "ROOM_DELETED")
