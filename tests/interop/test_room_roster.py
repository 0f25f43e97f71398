"""The participant model of ``lkproto.rtc.Room`` against the official SDK on a real server.

The official Python SDK (``livekit.rtc``) is the other participant and the reference: whatever
it sees of us must be what we told the server, and whatever we see of it must arrive with the
same event names and argument order as the official SDK uses (PROTOCOL-MAP §7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from livekit import api as lapi
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.errors import RequestRejectedError
from lkproto.rtc import events as ev
from lkproto.testing import scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    EventRecorder,
    connect_official,
    connect_ours,
    disconnect_all,
    room_service,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

ROSTER_EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "connection_state_changed",
    "connected",
    "disconnected",
)
UPDATE_EVENTS = (
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
)


def connection_state(room: rtc.Room) -> rtc.ConnectionState:
    # Read through a call after an earlier assert narrowed ``room.connection_state``: mypy keeps
    # the narrowed literal and does not know that the awaits in between change it.
    return room.connection_state


def updates(
    recorder: EventRecorder, identity: str, *, with_old: bool = True
) -> list[tuple[Any, ...]]:
    """Metadata/name/attribute events about ``identity``, SDK-neutral.

    ``(event, old, new)`` for metadata and name (``(event, new)`` without ``with_old``),
    ``(event, changed)`` for attributes. The participant's position in the arguments is part of
    the check: metadata and name events carry it first, attribute events last (official
    ``livekit.rtc.Room._on_room_event``).
    """
    out: list[tuple[Any, ...]] = []
    for name, args in recorder.events:
        if name == "participant_attributes_changed":
            changed, participant = args
            if participant.identity == identity:
                out.append((name, dict(changed)))
        elif name in UPDATE_EVENTS:
            participant, old, new = args
            if participant.identity == identity:
                out.append((name, old, new) if with_old else (name, new))
    return out


def without_old(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``updates()`` entries with the old value dropped.

    The official SDK (1.2.1) sometimes reports ``old == new`` for a remote participant: its
    ``participants_updated`` FFI event can replace the participant info before the change event
    is handled. Its old values are therefore not a reference.
    """
    return [e if e[0] == "participant_attributes_changed" else (e[0], e[-1]) for e in events]


async def collect_events(room: rtc.Room) -> list[ev.RoomEvent]:
    """Everything ``room.events()`` yields until it ends."""
    return [event async for event in room.events()]


async def start_collecting(room: rtc.Room) -> asyncio.Task[list[ev.RoomEvent]]:
    task = asyncio.create_task(collect_events(room))
    await asyncio.sleep(0)  # run the generator up to its first get(): it is subscribed now
    return task


async def test_join_and_leave_are_seen_by_both_sides(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-join")
    created = await room_service(livekit_server).create_room(room_name, metadata="room-v1")
    first, late = lrtc.Room(), lrtc.Room()
    ours = rtc.Room()
    first_rec = EventRecorder(first, ROSTER_EVENTS)
    ours_rec = EventRecorder(ours, ROSTER_EVENTS)
    try:
        await connect_official(
            livekit_server,
            "sdk-first",
            room_name,
            room=first,
            name="First",
            metadata="first-md",
            attributes={"role": "host"},
        )
        await connect_ours(
            livekit_server,
            "lk-ours",
            room_name,
            room=ours,
            name="Ours",
            metadata='{"v": 1}',
            attributes={"team": "blue", "lang": "py"},
        )

        # Room and local participant.
        assert ours.name == room_name
        assert await asyncio.wait_for(ours.sid, scaled(CONNECT_TIMEOUT_S)) == created.sid
        assert created.sid.startswith("RM_")
        assert ours.metadata == "room-v1"
        assert ours.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert ours.isconnected()
        me = ours.local_participant
        assert me.identity == "lk-ours"
        assert me.sid.startswith("PA_")
        assert (me.name, me.metadata, me.attributes) == (
            "Ours",
            '{"v": 1}',
            {"team": "blue", "lang": "py"},
        )
        assert me.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

        # sdk-first came with the JoinResponse: present, but no participant_connected for it
        # (the official SDK announces only those who join later).
        assert set(ours.remote_participants) == {"sdk-first"}
        p_first = ours.remote_participants["sdk-first"]
        assert p_first.sid == first.local_participant.sid
        assert (p_first.name, p_first.metadata, p_first.attributes) == (
            "First",
            "first-md",
            {"role": "host"},
        )
        assert p_first.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        assert ours_rec.names() == ["connection_state_changed", "connected"]
        assert ours_rec.args_of("connection_state_changed") == [
            (rtc.ConnectionState.CONN_CONNECTED,)
        ]

        # The official SDK sees us join, with what our token says.
        (p_ours,) = await first_rec.wait("participant_connected", lambda p: p.identity == "lk-ours")
        assert p_ours is first.remote_participants["lk-ours"]
        assert p_ours.sid == me.sid
        assert (p_ours.name, p_ours.metadata, p_ours.attributes) == (
            "Ours",
            '{"v": 1}',
            {"team": "blue", "lang": "py"},
        )
        assert p_ours.kind == lrtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

        # An agent joins later: we see it join with its kind, metadata and attributes...
        await connect_official(
            livekit_server,
            "sdk-agent",
            room_name,
            room=late,
            name="Agent",
            metadata="agent-md",
            attributes={"model": "m1", "lang": "en"},
            kind="agent",
        )
        (p_agent,) = await ours_rec.wait(
            "participant_connected", lambda p: p.identity == "sdk-agent"
        )
        assert isinstance(p_agent, rtc.RemoteParticipant)
        assert p_agent is ours.remote_participants["sdk-agent"]
        assert p_agent.sid == late.local_participant.sid
        assert (p_agent.name, p_agent.metadata, p_agent.attributes) == (
            "Agent",
            "agent-md",
            {"model": "m1", "lang": "en"},
        )
        assert p_agent.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        assert (
            int(p_agent.kind)
            == late.local_participant.kind
            == lrtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        )
        # ...and it sees us in its JoinResponse.
        seen_by_agent = late.remote_participants["lk-ours"]
        assert (seen_by_agent.sid, seen_by_agent.name, seen_by_agent.attributes) == (
            me.sid,
            "Ours",
            {"team": "blue", "lang": "py"},
        )

        # The agent leaves: one participant_disconnected carrying the same participant object.
        await disconnect_all(late)
        (gone,) = await ours_rec.wait(
            "participant_disconnected", lambda p: p.identity == "sdk-agent"
        )
        assert gone is p_agent
        assert set(ours.remote_participants) == {"sdk-first"}
        assert [args[0].identity for args in ours_rec.args_of("participant_connected")] == [
            "sdk-agent"
        ]
        assert [args[0].identity for args in ours_rec.args_of("participant_disconnected")] == [
            "sdk-agent"
        ]

        # We leave: the official SDK sees it.
        await disconnect_all(ours)
        assert connection_state(ours) == rtc.ConnectionState.CONN_DISCONNECTED
        assert not ours.isconnected()
        assert ours_rec.events[-2:] == [
            ("connection_state_changed", (rtc.ConnectionState.CONN_DISCONNECTED,)),
            ("disconnected", (rtc.DisconnectReason.CLIENT_INITIATED,)),
        ]
        (left,) = await first_rec.wait(
            "participant_disconnected", lambda p: p.identity == "lk-ours"
        )
        assert left.sid == me.sid
        assert "lk-ours" not in first.remote_participants
    finally:
        await disconnect_all(ours, late, first)


async def test_our_updates_reach_the_official_sdk(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-ours-upd")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, UPDATE_EVENTS)
    theirs_rec = EventRecorder(theirs, UPDATE_EVENTS)
    try:
        await connect_ours(
            livekit_server,
            "lk-ours",
            room_name,
            room=ours,
            name="Ours",
            metadata="m0",
            attributes={"keep": "k", "change": "c0", "drop": "d"},
            can_update_own_metadata=True,
        )
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        me = ours.local_participant
        expected: list[tuple[Any, ...]] = []

        async def step(
            change: Callable[[], Awaitable[None]], event: tuple[Any, ...], what: str
        ) -> None:
            await asyncio.wait_for(change(), scaled(CONNECT_TIMEOUT_S))
            expected.append(event)
            # Wait for each change on both sides before the next one, so the server cannot
            # fold two changes into one snapshot.
            await wait_for(lambda: updates(ours_rec, "lk-ours") == expected, what=what)
            await wait_for(
                lambda: updates(theirs_rec, "lk-ours", with_old=False) == without_old(expected),
                what=what,
            )

        await step(
            lambda: me.set_metadata("m1"), ("participant_metadata_changed", "m0", "m1"), "metadata"
        )
        assert me.metadata == "m1"
        await step(
            lambda: me.set_name("Ours Renamed"),
            ("participant_name_changed", "Ours", "Ours Renamed"),
            "name",
        )
        assert me.name == "Ours Renamed"
        await step(
            lambda: me.set_attributes({"change": "c1", "new": "n"}),
            ("participant_attributes_changed", {"change": "c1", "new": "n"}),
            "attributes set/change",
        )
        assert me.attributes == {"keep": "k", "change": "c1", "drop": "d", "new": "n"}
        await step(
            lambda: me.set_attributes({"drop": ""}),
            ("participant_attributes_changed", {"drop": ""}),
            "attribute delete",
        )
        assert me.attributes == {"keep": "k", "change": "c1", "new": "n"}

        # Our own events carry our LocalParticipant; theirs carry their view of us.
        assert all(
            participant is me
            for name, args in ours_rec.events
            for participant in (args[-1] if name == "participant_attributes_changed" else args[0],)
        )
        seen = theirs.remote_participants["lk-ours"]
        assert (seen.name, seen.metadata, seen.attributes) == (
            "Ours Renamed",
            "m1",
            {"keep": "k", "change": "c1", "new": "n"},
        )
        assert all(
            (args[-1] if name == "participant_attributes_changed" else args[0]) is seen
            for name, args in theirs_rec.events
        )
    finally:
        await disconnect_all(ours, theirs)


async def test_official_updates_reach_us(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-sdk-upd")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, UPDATE_EVENTS)
    theirs_rec = EventRecorder(theirs, UPDATE_EVENTS)
    try:
        await connect_ours(livekit_server, "lk-ours", room_name, room=ours)
        await connect_official(
            livekit_server,
            "sdk-peer",
            room_name,
            room=theirs,
            name="Peer",
            metadata="p0",
            attributes={"keep": "k", "change": "c0", "drop": "d"},
            can_update_own_metadata=True,
        )
        await wait_for(lambda: "sdk-peer" in ours.remote_participants, what="sdk-peer joins")
        peer = ours.remote_participants["sdk-peer"]
        lp = theirs.local_participant

        expected = [
            ("participant_metadata_changed", "p0", "p1"),
            ("participant_name_changed", "Peer", "Peer Renamed"),
            ("participant_attributes_changed", {"change": "c1", "new": "n"}),
            ("participant_attributes_changed", {"drop": ""}),
        ]
        changes: list[Callable[[], Awaitable[None]]] = [
            lambda: lp.set_metadata("p1"),
            lambda: lp.set_name("Peer Renamed"),
            lambda: lp.set_attributes({"change": "c1", "new": "n"}),
            lambda: lp.set_attributes({"drop": ""}),
        ]
        for count, change in enumerate(changes, start=1):
            await asyncio.wait_for(change(), scaled(CONNECT_TIMEOUT_S))
            # Each change is awaited on both sides before the next, so none are folded together.
            # The official SDK's events about its own participant are the reference.
            want: list[tuple[Any, ...]] = expected[:count]

            # (default arguments bind this iteration's `want`; mypy infers no lambda with one)
            def theirs_saw(w: list[tuple[Any, ...]] = want) -> bool:
                return updates(theirs_rec, "sdk-peer", with_old=False) == without_old(w)

            def ours_saw(w: list[tuple[Any, ...]] = want) -> bool:
                return updates(ours_rec, "sdk-peer") == w

            await wait_for(theirs_saw, what=f"official SDK's own events {want}")
            await wait_for(ours_saw, what=f"our events {want}")

        assert all(
            (args[-1] if name == "participant_attributes_changed" else args[0]) is peer
            for name, args in ours_rec.events
        )
        assert (peer.name, peer.metadata, peer.attributes) == (
            "Peer Renamed",
            "p1",
            {"keep": "k", "change": "c1", "new": "n"},
        )
        assert ours.remote_participants["sdk-peer"] is peer
    finally:
        await disconnect_all(ours, theirs)


async def test_server_side_participant_update_reaches_both(livekit_server: LocalServer) -> None:
    """RoomService ``UpdateParticipant`` on us needs no grant of ours; both sides see it."""
    room_name = unique_room("roster-svc-upd")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, UPDATE_EVENTS)
    theirs_rec = EventRecorder(theirs, UPDATE_EVENTS)
    try:
        await connect_ours(
            livekit_server, "lk-ours", room_name, room=ours, name="Ours", attributes={"a": "1"}
        )
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        await wait_for(lambda: "lk-ours" in theirs.remote_participants, what="sdk sees us")
        await room_service(livekit_server).update_participant(
            room_name,
            "lk-ours",
            metadata="by-server",
            name="Renamed",
            attributes={"a": "", "b": "2"},
        )
        # One snapshot carries all three changes; the order within it is the official one.
        expected = [
            ("participant_name_changed", "Ours", "Renamed"),
            ("participant_metadata_changed", "", "by-server"),
            ("participant_attributes_changed", {"a": "", "b": "2"}),
        ]
        await wait_for(lambda: len(updates(theirs_rec, "lk-ours")) == 3, what="sdk sees update")
        await wait_for(lambda: len(updates(ours_rec, "lk-ours")) == 3, what="we see our update")
        assert sorted(updates(theirs_rec, "lk-ours", with_old=False), key=repr) == sorted(
            without_old(expected), key=repr
        )
        assert updates(ours_rec, "lk-ours") == expected
        me = ours.local_participant
        assert (me.name, me.metadata, me.attributes) == ("Renamed", "by-server", {"b": "2"})
    finally:
        await disconnect_all(ours, theirs)


async def test_permission_change_arguments_match_official(livekit_server: LocalServer) -> None:
    """``participant_permissions_changed`` handlers get ``(participant, permissions)``, the new
    permissions, as in the official SDK (the old value is only on the typed event)."""
    room_name = unique_room("roster-perm")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_got: list[Any] = []
    theirs_got: list[Any] = []
    # Handlers written the official way: two parameters.
    ours.on("participant_permissions_changed", lambda p, perm: ours_got.append((p.identity, perm)))
    theirs.on(
        "participant_permissions_changed", lambda p, perm: theirs_got.append((p.identity, perm))
    )
    try:
        await connect_ours(livekit_server, "lk-ours", room_name, room=ours)
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        await wait_for(lambda: "sdk-peer" in ours.remote_participants, what="we see sdk-peer")
        async with lapi.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lk:
            await lk.room.update_participant(
                lapi.UpdateParticipantRequest(
                    room=room_name,
                    identity="sdk-peer",
                    permission=lapi.ParticipantPermission(
                        can_subscribe=True, can_publish=False, can_publish_data=True
                    ),
                )
            )
        await wait_for(lambda: theirs_got and ours_got, what="permission events")
        assert [(i, p.can_publish) for i, p in theirs_got] == [("sdk-peer", False)]
        assert [(i, p.can_publish) for i, p in ours_got] == [("sdk-peer", False)]
    finally:
        await disconnect_all(ours, theirs)


async def test_set_metadata_without_grant_is_rejected(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-no-grant")
    ours, theirs = rtc.Room(), lrtc.Room()
    try:
        await connect_ours(
            livekit_server, "lk-ours", room_name, room=ours, name="Ours", metadata="m0"
        )
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        me = ours.local_participant
        attempts: list[Callable[[], Awaitable[None]]] = [
            lambda: me.set_metadata("m1"),
            lambda: me.set_name("Other"),
            lambda: me.set_attributes({"k": "v"}),
        ]
        for attempt in attempts:
            with pytest.raises(RequestRejectedError) as info:
                await asyncio.wait_for(attempt(), scaled(CONNECT_TIMEOUT_S))
            assert info.value.reason == "NOT_ALLOWED"
        assert ours.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert (me.name, me.metadata, me.attributes) == ("Ours", "m0", {})
        # Still connected for real: the signalling carries a later room update to us.
        await room_service(livekit_server).update_room_metadata(room_name, "still-here")
        await wait_for(lambda: ours.metadata == "still-here", what="room update after rejection")
        await wait_for(lambda: "lk-ours" in theirs.remote_participants, what="sdk sees us")
        assert theirs.remote_participants["lk-ours"].metadata == "m0"
    finally:
        await disconnect_all(ours, theirs)


async def test_room_metadata_change_arrives_like_in_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    room_name = unique_room("roster-room-md")
    service = room_service(livekit_server)
    await service.create_room(room_name, metadata="v1")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, ["room_metadata_changed"])
    theirs_rec = EventRecorder(theirs, ["room_metadata_changed"])
    try:
        await connect_ours(livekit_server, "lk-ours", room_name, room=ours)
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        assert ours.metadata == theirs.metadata == "v1"
        for new in ("v2", "v3"):
            # (default arguments bind this iteration's `new`; mypy infers no lambda with one)
            def ours_has(v: str = new) -> bool:
                return ours.metadata == v

            def theirs_has(v: str = new) -> bool:
                return theirs.metadata == v

            await service.update_room_metadata(room_name, new)
            await wait_for(ours_has, what=f"our room metadata {new}")
            await wait_for(theirs_has, what=f"sdk room metadata {new}")
        await wait_for(lambda: len(ours_rec.events) == 2, what="our two events")
        await wait_for(lambda: len(theirs_rec.events) == 2, what="sdk's two events")
        assert ours_rec.events == theirs_rec.events
        assert ours_rec.args_of("room_metadata_changed") == [("v1", "v2"), ("v2", "v3")]
    finally:
        await disconnect_all(ours, theirs)


async def test_removed_by_the_server(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-removed")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, ROSTER_EVENTS)
    theirs_rec = EventRecorder(theirs, ROSTER_EVENTS)
    try:
        await connect_ours(livekit_server, "lk-ours", room_name, room=ours)
        await connect_official(livekit_server, "sdk-peer", room_name, room=theirs)
        collecting = await start_collecting(ours)
        await room_service(livekit_server).remove_participant(room_name, "lk-ours")

        typed = await asyncio.wait_for(collecting, scaled(ROSTER_TIMEOUT_S))
        assert typed[-2:] == [
            ev.ConnectionStateChanged(state=rtc.ConnectionState.CONN_DISCONNECTED),
            ev.Disconnected(reason=rtc.DisconnectReason.PARTICIPANT_REMOVED),
        ]
        assert ours_rec.events[-2:] == [
            ("connection_state_changed", (rtc.ConnectionState.CONN_DISCONNECTED,)),
            ("disconnected", (rtc.DisconnectReason.PARTICIPANT_REMOVED,)),
        ]
        assert ours_rec.names().count("disconnected") == 1
        assert ours.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        assert not ours.isconnected()
        await theirs_rec.wait("participant_disconnected", lambda p: p.identity == "lk-ours")
        assert "lk-ours" not in theirs.remote_participants
    finally:
        await disconnect_all(ours, theirs)


async def test_duplicate_identity_replaces_us(livekit_server: LocalServer) -> None:
    room_name = unique_room("roster-dup")
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec = EventRecorder(ours, ROSTER_EVENTS)
    try:
        await connect_ours(livekit_server, "same-identity", room_name, room=ours)
        old_sid = ours.local_participant.sid
        collecting = await start_collecting(ours)
        await connect_official(livekit_server, "same-identity", room_name, room=theirs)

        typed = await asyncio.wait_for(collecting, scaled(ROSTER_TIMEOUT_S))
        assert typed[-1] == ev.Disconnected(reason=rtc.DisconnectReason.DUPLICATE_IDENTITY)
        assert ours_rec.events[-2:] == [
            ("connection_state_changed", (rtc.ConnectionState.CONN_DISCONNECTED,)),
            ("disconnected", (rtc.DisconnectReason.DUPLICATE_IDENTITY,)),
        ]
        assert ours.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        assert not ours.isconnected()
        # The newcomer took over the identity with a session of its own.
        assert theirs.isconnected()
        assert theirs.local_participant.identity == "same-identity"
        assert theirs.local_participant.sid != old_sid
    finally:
        await disconnect_all(ours, theirs)


async def test_rejoining_at_once_with_the_same_identity(livekit_server: LocalServer) -> None:
    """A participant update can be queued right behind the JoinResponse (here: the server still
    announcing the previous session of the same identity); the roster must take the join first."""
    name = unique_room("roster-rejoin")
    other = await connect_ours(livekit_server, "watcher", name)
    try:
        for _ in range(4):
            room = await connect_ours(livekit_server, "same", name)
            assert room.isconnected()
            await room.disconnect()
    finally:
        await disconnect_all(other)
