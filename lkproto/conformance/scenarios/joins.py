"""Joining: both signalling paths, token rejections, ping/pong (PROTOCOL-MAP §1, §13)."""

from __future__ import annotations

import time

from lkproto.conformance._context import Context
from lkproto.conformance._registry import Unsupported, scenario
from lkproto.conformance.adapters import JoinRefused
from lkproto.conformance.scenarios._util import check, server_has_rtc_v1

__all__: list[str] = []


async def _join_and_meet(ctx: Context, single_pc: bool) -> None:
    peer = await ctx.peer()
    client = await ctx.client(single_pc=single_pc)
    await ctx.until_sees(client, peer)
    sid = await client.local_sid()
    check(sid.startswith("PA_"), f"own SID {sid!r} is not a PA_ SID")
    remote = peer.room.remote_participants["client"]
    check(remote.sid == sid, f"peer sees SID {remote.sid}, client reports {sid}")
    await client.publish_data(b"hello", topic="join")
    await ctx.until(lambda: any(m.topic == "join" for m in peer.received), "data over the new PCs")


@scenario("join.v1.single_pc", needs={"join_path", "roster", "data"})
async def join_v1(ctx: Context) -> None:
    """Join on ``/rtc/v1`` (one PeerConnection, ``join_request`` in the query): the client gets
    a ``PA_`` SID, the peer sees it ACTIVE under the same SID, and data flows over the single PC
    (PROTOCOL-MAP §0 variant A, §1 URLs, §2 modes)."""
    if not await server_has_rtc_v1(ctx.server.url):
        # An SDK that falls back to /rtc would pass without being graded on /rtc/v1 at all.
        raise Unsupported(
            "needs a server with the /rtc/v1 single-PC endpoint: this release answers 404 there "
            "(livekit-server v1.7.2 has only /rtc; v1.9.11 has both)"
        )
    await _join_and_meet(ctx, True)


@scenario("join.v0.dual_pc", needs={"join_path", "roster", "data"})
async def join_v0(ctx: Context) -> None:
    """Join on ``/rtc`` (v0: query parameters, publisher + subscriber PCs, server offers the
    subscriber PC): SID, ACTIVE state and data as on v1 (PROTOCOL-MAP §0 variant B, §2)."""
    await _join_and_meet(ctx, False)


async def _refused(ctx: Context, token: str, statuses: set[int], what: str) -> None:
    client = ctx.new_client()
    ctx.step = f"connect with {what}"
    try:
        await ctx.bounded(client.connect(ctx.server.url, token), f"connect with {what}")
    except JoinRefused as exc:
        if exc.status is None:
            if "join_status" in client.capabilities:
                raise AssertionError(f"refused without an HTTP status: {exc.message}") from exc
            return
        check(exc.status in statuses, f"{what}: HTTP {exc.status}, expected {sorted(statuses)}")
        return
    raise AssertionError(f"join with {what} was accepted")


@scenario("join.reject.bad_signature", needs={"join_status"})
async def reject_bad_signature(ctx: Context) -> None:
    """A token signed with the wrong secret is refused before the upgrade with HTTP 401, and
    the SDK raises its typed connect error (PROTOCOL-MAP §1 Rejections, §13)."""
    token = ctx.token("client", api_secret="not-the-secret-" + "x" * 32)
    await _refused(ctx, token, {401}, "a bad signature")


@scenario("join.reject.expired", needs={"join_status"})
async def reject_expired(ctx: Context) -> None:
    """A token whose ``exp`` is an hour past (beyond the 1 min leeway) is refused with 401
    (PROTOCOL-MAP §1 Rejections, §13)."""
    token = ctx.token("client", ttl_s=600, issued_at=time.time() - 3600)
    await _refused(ctx, token, {401}, "an expired token")


@scenario("join.reject.unknown_key", needs={"join_status"})
async def reject_unknown_key(ctx: Context) -> None:
    """A token whose ``iss`` is not a configured API key is refused with 401 "invalid API key"
    (PROTOCOL-MAP §1 Rejections)."""
    token = ctx.token("client", api_key="no-such-key", api_secret="s" * 40)
    await _refused(ctx, token, {401}, "an unknown API key")


@scenario("join.reject.no_room_join", needs={"join_status"})
async def reject_no_room_join(ctx: Context) -> None:
    """A token without the ``roomJoin`` grant is refused with 401 "permissions denied"
    (PROTOCOL-MAP §1 Rejections, §13)."""
    token = ctx.token("client", room_join=False, room_list=True)
    await _refused(ctx, token, {401}, "no roomJoin grant")


@scenario("join.reject.room_not_found", needs={"join_status"})
async def reject_room_not_found(ctx: Context) -> None:
    """With ``room.auto_create: false`` joining a room that does not exist is refused with 404
    "requested room does not exist" (PROTOCOL-MAP §1 Rejections, §17 room.auto_create)."""
    target = ctx.require_no_autocreate()
    client = ctx.new_client()
    token = ctx.token("client", api_key=target.api_key, api_secret=target.api_secret)
    try:
        await ctx.bounded(client.connect(target.url, token), "connect to a missing room")
    except JoinRefused as exc:
        check(exc.status in {404, None}, f"HTTP {exc.status}, expected 404: {exc.message}")
        if exc.status is None:
            check(
                "does not exist" in exc.message.lower() or "not found" in exc.message.lower(),
                f"refusal does not say the room is missing: {exc.message}",
            )
        return
    raise AssertionError("join to a missing room was accepted with auto_create off")


@scenario("join.ping.rtt", needs={"rtt"})
async def ping_rtt(ctx: Context) -> None:
    """The client pings every ``ping_interval`` (5 s) with ``Ping{timestamp, rtt}`` and derives
    a round-trip time from the server's ``Pong`` echo (PROTOCOL-MAP §1 Ping / Pong)."""
    client = await ctx.client()
    found: list[float] = []

    async def measured() -> bool:
        rtt = await client.rtt_ms()
        if rtt is not None and rtt > 0:
            found.append(rtt)
            return True
        return False

    await ctx.until(measured, "a signalling RTT from ping/pong", within=12)
    check(found[0] < 5000, f"implausible RTT {found[0]} ms on this server")


@scenario("join.leave.client_initiated", needs={"roster"})
async def leave_client_initiated(ctx: Context) -> None:
    """Leaving sends ``LeaveRequest{CLIENT_INITIATED}``: the peer sees the participant
    DISCONNECTED with reason CLIENT_INITIATED (PROTOCOL-MAP §1 LeaveRequest, §7)."""
    client, peer = await ctx.pair()
    reasons: list[int] = []
    peer.room.on(
        "participant_disconnected",
        lambda p: reasons.append(int(p.disconnect_reason or 0)) if p.identity == "client" else None,
    )
    await ctx.bounded(client.disconnect(), "client disconnect")
    await ctx.until(lambda: reasons, "participant_disconnected at the peer")
    check(reasons[0] == 1, f"disconnect reason {reasons[0]}, expected CLIENT_INITIATED (1)")


@scenario("join.duplicate_identity.replaces", needs={"roster", "data"})
async def duplicate_identity_replaces(ctx: Context) -> None:
    """Joining with an identity already in the room succeeds: the server removes the old session
    (the lkproto peer gets DUPLICATE_IDENTITY) and immediately sends the newcomer a
    ParticipantUpdate, which must not disturb its join (PROTOCOL-MAP §1 LeaveRequest, §7
    ParticipantUpdate)."""
    first = await ctx.peer("client")
    other = await ctx.peer("peer")
    client = await ctx.client("client")
    await ctx.until_sees(client, other)
    await ctx.until(lambda: first.disconnect_reason == 2, "the old session gets DUPLICATE_IDENTITY")
    await client.publish_data(b"after", topic="dup")
    await ctx.until(lambda: any(m.topic == "dup" for m in other.received), "data from the newcomer")
