"""Roster and participant state: identities, names, kinds, metadata, attributes, room metadata
and permissions (PROTOCOL-MAP §7, §13)."""

from __future__ import annotations

from lkproto.conformance._context import Context
from lkproto.conformance._registry import scenario
from lkproto.conformance.scenarios._util import check

__all__: list[str] = []

_AGENT_KIND = 4  # ParticipantInfo.Kind AGENT (PROTOCOL-MAP §7 Kind)


@scenario("roster.identity_name_kind", needs={"roster"})
async def roster_identity(ctx: Context) -> None:
    """Both participants see each other with the identity, display name, metadata and kind from
    the other's token (``name``, ``metadata``, ``kind: agent`` claims) (PROTOCOL-MAP §7
    ParticipantUpdate/Kind, §13 custom claims)."""
    client, peer = await ctx.pair(
        client_args={"name": "Client Name", "metadata": "client-meta"},
        peer_args={"name": "Peer Name", "kind": "agent", "metadata": "peer-meta"},
    )
    view = (await client.remotes())["peer"]
    check(view.sid.startswith("PA_"), f"peer SID {view.sid!r}")
    check(view.name == "Peer Name", f"client sees peer name {view.name!r}")
    check(view.metadata == "peer-meta", f"client sees peer metadata {view.metadata!r}")
    check(view.kind == _AGENT_KIND, f"client sees peer kind {view.kind}, expected AGENT (4)")
    mine = peer.room.remote_participants["client"]
    check(mine.name == "Client Name", f"peer sees client name {mine.name!r}")
    check(mine.metadata == "client-meta", f"peer sees client metadata {mine.metadata!r}")
    check(int(mine.kind) == 0, f"peer sees client kind {mine.kind}, expected STANDARD")


@scenario("roster.join_and_leave_seen", needs={"roster"})
async def roster_join_leave(ctx: Context) -> None:
    """A participant joining after the client appears in its roster, and disappears (with a
    participant-disconnected event) when it leaves (PROTOCOL-MAP §7 ParticipantUpdate:
    DISCONNECTED snapshots)."""
    client = await ctx.client()
    late = await ctx.peer("late")
    await ctx.until_sees(client, late)
    await ctx.bounded(late.disconnect(), "late peer disconnect")

    async def gone() -> bool:
        await client.poll()
        return "late" not in await client.remotes() and "late" in client.left

    await ctx.until(gone, "the late peer removed from the client's roster")


async def _state_seen(ctx: Context, what: str) -> None:
    client, peer = await ctx.pair(client_args={"can_update_own_metadata": True})
    remote = peer.room.remote_participants["client"]
    if what == "metadata":
        await ctx.bounded(client.set_metadata("m-1"), "set_metadata")
        await ctx.until(lambda: remote.metadata == "m-1", "peer sees metadata m-1")
    elif what == "name":
        await ctx.bounded(client.set_name("Renamed"), "set_name")
        await ctx.until(lambda: remote.name == "Renamed", "peer sees name Renamed")
    else:
        await ctx.bounded(client.set_attributes({"a": "1", "b": "2"}), "set_attributes")
        await ctx.until(
            lambda: dict(remote.attributes) == {"a": "1", "b": "2"}, "peer sees a=1, b=2"
        )
        # A patch: an empty value deletes the key, untouched keys stay.
        await ctx.bounded(client.set_attributes({"a": "", "c": "3"}), "set_attributes patch")
        await ctx.until(
            lambda: dict(remote.attributes) == {"b": "2", "c": "3"},
            f"peer sees b=2, c=3 after the patch (has {dict(remote.attributes)})",
        )


@scenario("state.metadata.update_seen", needs={"state"})
async def metadata_seen(ctx: Context) -> None:
    """``UpdateParticipantMetadata{metadata}`` (needs ``canUpdateOwnMetadata``) reaches the
    peer in a ParticipantUpdate (PROTOCOL-MAP §7 UpdateParticipantMetadata)."""
    await _state_seen(ctx, "metadata")


@scenario("state.name.update_seen", needs={"state"})
async def name_seen(ctx: Context) -> None:
    """``UpdateParticipantMetadata{name}`` renames the participant for the peer
    (PROTOCOL-MAP §7)."""
    await _state_seen(ctx, "name")


@scenario("state.attributes.patch_seen", needs={"state"})
async def attributes_seen(ctx: Context) -> None:
    """Attributes are a patch: listed keys are set, ``""`` deletes a key, others stay; the peer
    sees the complete map after each update (PROTOCOL-MAP §7 UpdateParticipantMetadata)."""
    await _state_seen(ctx, "attributes")


@scenario("state.metadata.denied_without_grant", needs={"state"})
async def metadata_denied(ctx: Context) -> None:
    """Without ``canUpdateOwnMetadata`` the server answers ``RequestResponse{NOT_ALLOWED}``:
    the update must fail (not hang, not pretend) and the peer must not see it (PROTOCOL-MAP §7,
    §13 default false)."""
    client, peer = await ctx.pair()
    try:
        await ctx.bounded(client.set_metadata("forbidden"), "set_metadata without the grant", 12)
    except AssertionError:
        raise
    except Exception:
        pass
    else:
        raise AssertionError("set_metadata without canUpdateOwnMetadata succeeded")
    await ctx.settle(0.5)
    remote = peer.room.remote_participants["client"]
    check(remote.metadata != "forbidden", "the peer saw the refused metadata")


@scenario("state.peer_updates_seen", needs={"roster"})
async def peer_updates_seen(ctx: Context) -> None:
    """Metadata, name and attribute changes made by the peer (over signalling) and by the
    server API (RoomService.UpdateParticipant) both reach the client (PROTOCOL-MAP §7, §17
    RoomService UpdateParticipant)."""
    client, peer = await ctx.pair(peer_args={"can_update_own_metadata": True})
    await ctx.bounded(peer.set_metadata("peer-m"), "peer set_metadata")
    await ctx.bounded(peer.set_name("Peer Renamed"), "peer set_name")
    await ctx.bounded(peer.set_attributes({"k": "v"}), "peer set_attributes")

    async def seen() -> bool:
        view = (await client.remotes()).get("peer")
        return (
            view is not None
            and view.metadata == "peer-m"
            and view.name == "Peer Renamed"
            and view.attributes == {"k": "v"}
        )

    await ctx.until(seen, "client sees the peer's metadata, name and attributes")
    service = ctx.room_service()
    await ctx.bounded(
        service.update_participant(ctx.room, "peer", metadata="by-api", attributes={"k": "w"}),
        "RoomService.UpdateParticipant",
    )

    async def api_seen() -> bool:
        view = (await client.remotes()).get("peer")
        return view is not None and view.metadata == "by-api" and view.attributes == {"k": "w"}

    await ctx.until(api_seen, "client sees the RoomService update")


@scenario("room.metadata.update_seen", needs={"roster"})
async def room_metadata(ctx: Context) -> None:
    """Room metadata changed with RoomService.UpdateRoomMetadata (``roomAdmin``) reaches the
    client in a ``RoomUpdate`` (PROTOCOL-MAP §7 Room metadata, §17 RoomService)."""
    client = await ctx.client()
    service = ctx.room_service()
    await ctx.bounded(service.update_room_metadata(ctx.room, "room-meta-1"), "UpdateRoomMetadata")

    async def seen() -> bool:
        return await client.room_metadata() == "room-meta-1"

    await ctx.until(seen, "client sees room metadata room-meta-1")


@scenario("perm.can_publish_data_false", needs={"data"})
async def no_publish_data(ctx: Context) -> None:
    """With ``canPublishData=false`` the server drops the participant's data packets
    (PROTOCOL-MAP §3 "dropped if sender lacks canPublishData"): publishing may fail, but nothing
    may reach the peer."""
    client, peer = await ctx.pair(client_args={"can_publish_data": False})
    try:
        await ctx.bounded(client.publish_data(b"forbidden", topic="perm"), "publish_data", 10)
    except AssertionError:
        raise
    except Exception:
        pass
    await ctx.settle(1.5)
    got = [m for m in peer.received if m.topic == "perm"]
    check(not got, f"the peer received {len(got)} packet(s) from a sender without the grant")


@scenario("perm.can_publish_sources", needs={"media"})
async def publish_sources(ctx: Context) -> None:
    """``canPublishSources=[camera]`` forbids publishing a microphone track: the server answers
    the AddTrackRequest with ``RequestResponse{NOT_ALLOWED}`` and the publish fails, and the peer
    never sees the track (PROTOCOL-MAP §9 Publishing step 2, §13 canPublishSources)."""
    client, peer = await ctx.pair(client_args={"can_publish_sources": ["camera"]})
    try:
        await ctx.bounded(client.publish_tone(440), "publish a microphone tone", 15)
    except AssertionError:
        raise
    except Exception:
        pass
    else:
        raise AssertionError("publishing a microphone track without the source grant succeeded")
    await ctx.settle(1.0)
    tracks = peer.room.remote_participants["client"].track_publications
    check(not tracks, f"the peer sees {len(tracks)} track(s) from the refused publish")
