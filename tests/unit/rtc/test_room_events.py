"""Room: engine events -> room model, official string events, typed stream (lkproto.rtc.room).

No server: ``lkproto.asyncio.engine.Engine`` is replaced by :class:`FakeEngine`, a lower layer that
drives a real :class:`lkproto.core.roster.Roster` and hands its outputs to the room exactly as the
engine does (roster events while joining, then ``EngineConnected``; signal pass-through events as
``SignalMessageEvent``). Every test also checks that ``room.on(...)`` handlers and
``room.events()`` saw the same events, in the same order, with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast, get_args

import pytest

from lkproto.asyncio import engine as en
from lkproto.core import roster as ro
from lkproto.core import signal as sg
from lkproto.errors import ConnectError, EventQueueOverflowError, LocalProtocolError
from lkproto.rtc import (
    ChatMessage,
    ConnectionQuality,
    ConnectionState,
    DataPacket,
    DataPacketKind,
    DisconnectReason,
    ParticipantKind,
    RemoteParticipant,
    Room,
    RoomOptions,
    RtcConfiguration,
)
from lkproto.rtc import events as ev
from lkproto.rtc.room import DEFAULT_EVENTS_MAX_QUEUE
from lkproto.testing import scaled
from lkproto.wire import pb

URL = "ws://127.0.0.1:7880"
TOKEN = "token"
ACTIVE = pb.ParticipantInfo.ACTIVE
JOINED = pb.ParticipantInfo.JOINED
DISCONNECTED = pb.ParticipantInfo.DISCONNECTED


# -- builders --------------------------------------------------------------------------------------


def track(sid: str, *, muted: bool = False) -> pb.TrackInfo:
    return pb.TrackInfo(sid=sid, name=f"name-{sid}", muted=muted, type=pb.AUDIO)


def person(
    identity: str, *, version: int = 1, state: Any = ACTIVE, **kw: Any
) -> pb.ParticipantInfo:
    kw.setdefault("sid", f"PA_{identity}")
    return pb.ParticipantInfo(identity=identity, version=version, state=state, **kw)


def join_response(
    *others: pb.ParticipantInfo, me: pb.ParticipantInfo | None = None
) -> pb.JoinResponse:
    return pb.JoinResponse(
        participant=me if me is not None else person("me", name="Me"),
        other_participants=others,
        room=pb.Room(sid="RM_1", name="room", metadata="rm", num_participants=1 + len(others)),
    )


# -- the fake lower layer --------------------------------------------------------------------------


class FakeEngine:
    """Stands in for ``lkproto.asyncio.engine.Engine``: same outputs, no network."""

    def __init__(self, on_event: Any, join: pb.JoinResponse, fail: Exception | None) -> None:
        self.on_event = on_event
        self.join = join
        self.fail = fail
        self.roster = ro.Roster()
        self.rtt_ms = 12.5
        self.options: en.EngineOptions | None = None
        self.url = self.token = ""
        self.left: list[int] = []

    async def connect(self, url: str, token: str, options: en.EngineOptions) -> pb.JoinResponse:
        self.url, self.token, self.options = url, token, options
        await asyncio.sleep(0)  # the real one suspends on the network
        if self.fail is not None:
            raise self.fail
        self.emit_all(self.roster.apply_join(self.join))
        self.on_event(en.EngineConnected(join=self.join))
        return self.join

    async def disconnect(self, reason: int = pb.CLIENT_INITIATED) -> None:
        self.left.append(reason)
        self.finish(reason)

    # what the real engine does in _finish(): roster cleared, then EngineDisconnected
    def finish(self, reason: int) -> None:
        self.emit_all(self.roster.clear(cast("pb.DisconnectReason.ValueType", reason)))
        self.on_event(en.EngineDisconnected(reason=cast("pb.DisconnectReason.ValueType", reason)))

    def emit_all(self, events: Iterable[en.EngineEvent]) -> None:
        for event in events:
            self.on_event(event)

    def participants(self, *infos: pb.ParticipantInfo) -> None:
        self.emit_all(self.roster.apply_participants(infos))

    def room_update(self, room: pb.Room) -> None:
        self.emit_all(self.roster.apply_room(room))

    def signal(self, event: sg.SignalEvent) -> None:
        self.on_event(en.SignalMessageEvent(event=event))

    def data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        self.on_event(en.DataReceived(packet=packet, reliable=reliable))


class Recorder:
    """Every official string event (with its args) and every typed event of one room."""

    def __init__(self, room: Room) -> None:
        self.emitted: list[tuple[str, tuple[object, ...]]] = []
        self.typed: list[ev.RoomEvent] = []
        for name in get_args(ev.EventTypes):
            room.on(name, functools.partial(self._record, name))
        self._stream = room.events()
        self.task: asyncio.Task[None] | None = None

    def _record(self, name: str, *args: object) -> None:
        self.emitted.append((name, args))

    async def start(self) -> None:
        self.task = asyncio.create_task(self._consume())
        await asyncio.sleep(0)  # the generator subscribes on its first step

    async def _consume(self) -> None:
        async for event in self._stream:
            self.typed.append(event)

    async def settle(self) -> None:
        """Let the typed consumer catch up, then check both views agree."""
        for _ in range(100):
            if len(self.typed) >= len(self.emitted):
                break
            await asyncio.sleep(0)
        assert [(e.name, e.args()) for e in self.typed] == self.emitted

    def take(self) -> list[tuple[str, tuple[object, ...]]]:
        """Events since the last take (both views were compared by settle())."""
        out, self.emitted, self.typed = self.emitted, [], []
        return out

    def take_typed(self) -> list[ev.RoomEvent]:
        out = self.typed
        self.emitted, self.typed = [], []
        return out

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def state_of(room: Room) -> ConnectionState:
    """Read the state through a call, so a type checker does not keep an earlier narrowing."""
    return room.connection_state


def names(events: list[tuple[str, tuple[object, ...]]]) -> list[str]:
    return [name for name, _ in events]


class Harness:
    """What the next ``Room.connect`` will see, and every engine created so far."""

    def __init__(self) -> None:
        self.join = join_response()
        self.fail: Exception | None = None
        self.engines: list[FakeEngine] = []

    def __call__(self, on_event: Any) -> FakeEngine:
        engine = FakeEngine(on_event, self.join, self.fail)
        self.fail = None
        self.engines.append(engine)
        return engine


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    """Replaces the engine class the room instantiates with :class:`FakeEngine`."""
    fake = Harness()
    monkeypatch.setattr(en, "Engine", fake)
    return fake


@pytest.fixture
async def connected(harness: Harness) -> AsyncIterator[tuple[Room, FakeEngine, Recorder]]:
    """A room connected to a fake engine whose JoinResponse has ``alice`` (one track)."""
    harness.join = join_response(person("alice", tracks=[track("TR_a")]))
    room = Room()
    rec = Recorder(room)
    await rec.start()
    await room.connect(URL, TOKEN)
    await rec.settle()
    rec.take()
    yield room, harness.engines[-1], rec
    await rec.stop()


# -- connect ---------------------------------------------------------------------------------------


async def test_connect_emits_state_then_connected_and_adopts_the_join(
    harness: Harness,
) -> None:
    harness.join = join_response(
        person("alice", name="Alice", tracks=[track("TR_a")], kind=pb.ParticipantInfo.BRIDGE),
        person("bob", state=JOINED),
    )
    room = Room()
    rec = Recorder(room)
    await rec.start()
    assert not room.isconnected()
    assert state_of(room) is ConnectionState.CONN_DISCONNECTED
    with pytest.raises(LocalProtocolError):
        _ = room.local_participant
    sid = asyncio.ensure_future(room.sid)
    await asyncio.sleep(0)
    assert not sid.done()

    await room.connect(URL, TOKEN)
    await rec.settle()

    # the join's participants and tracks are the initial state: no per-participant events
    assert rec.take() == [
        ("connection_state_changed", (ConnectionState.CONN_CONNECTED,)),
        ("connected", ()),
    ]
    assert room.isconnected()
    assert state_of(room) is ConnectionState.CONN_CONNECTED
    assert await asyncio.wait_for(sid, scaled(1)) == "RM_1"
    assert await room.sid == "RM_1"
    assert (room.name, room.metadata, room.num_participants) == ("room", "rm", 3)
    assert room.local_participant.identity == "me"
    assert room.local_participant.sid == "PA_me"
    remotes = room.remote_participants
    assert list(remotes) == ["alice", "bob"]
    assert isinstance(remotes["alice"], RemoteParticipant)
    assert remotes["alice"].name == "Alice"
    assert remotes["alice"].kind is ParticipantKind.PARTICIPANT_KIND_BRIDGE
    assert list(remotes["alice"].track_publications) == ["TR_a"]
    cast("dict[str, object]", remotes).clear()
    assert list(room.remote_participants) == ["alice", "bob"], "a copy is returned"
    assert room.rtt_ms == 12.5
    assert room.engine is cast("Any", harness.engines[0])
    await rec.stop()


async def test_room_options_reach_the_engine(harness: Harness) -> None:
    room = Room()
    await room.connect(
        URL,
        TOKEN,
        RoomOptions(
            auto_subscribe=False,
            connect_timeout=3.5,
            single_peer_connection=True,
            rtc_config=RtcConfiguration(ice_addresses=["127.0.0.1"]),
        ),
    )
    opts = harness.engines[0].options
    assert opts is not None
    assert (harness.engines[0].url, harness.engines[0].token) == (URL, TOKEN)
    assert opts.auto_subscribe is False
    assert opts.connect_timeout_s == 3.5
    assert opts.single_peer_connection is True
    assert opts.ice_addresses == ("127.0.0.1",)
    assert opts.ice_servers is None


async def test_default_options(harness: Harness) -> None:
    await Room().connect(URL, TOKEN)
    opts = harness.engines[0].options
    assert opts is not None
    assert opts.auto_subscribe is True
    assert opts.connect_timeout_s == en.DEFAULT_CONNECT_TIMEOUT_S
    assert opts.ice_addresses is None
    assert opts.single_peer_connection is None


async def test_connect_twice_is_refused(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, _, rec = connected
    with pytest.raises(LocalProtocolError):
        await room.connect(URL, TOKEN)
    await rec.settle()
    assert rec.take() == []


async def test_failed_connect_emits_nothing_and_the_room_can_retry(
    harness: Harness,
) -> None:
    harness.fail = ConnectError("unreachable")
    room = Room()
    rec = Recorder(room)
    await rec.start()
    with pytest.raises(ConnectError):
        await room.connect(URL, TOKEN)
    assert room.engine is None
    assert not room.isconnected()
    await rec.settle()
    assert rec.take() == []

    await room.connect(URL, TOKEN)
    await rec.settle()
    assert names(rec.take()) == ["connection_state_changed", "connected"]
    assert len(harness.engines) == 2
    await rec.stop()


# -- remote participants ---------------------------------------------------------------------------


async def test_participant_joins_activates_changes_and_leaves(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected

    engine.participants(person("bob", state=JOINED, tracks=[track("TR_1"), track("TR_2")]))
    await rec.settle()
    bob = room.remote_participants["bob"]
    pubs = bob.track_publications
    assert rec.take() == [
        ("participant_connected", (bob,)),
        ("track_published", (pubs["TR_1"], bob)),
        ("track_published", (pubs["TR_2"], bob)),
    ]

    engine.participants(person("bob", version=2, tracks=[track("TR_1"), track("TR_2")]))
    await rec.settle()
    assert rec.take() == [("participant_active", (bob,))]

    old_perm = pb.ParticipantPermission(can_subscribe=True)
    engine.participants(
        person("bob", version=3, tracks=[track("TR_1"), track("TR_2")], permission=old_perm)
    )
    await rec.settle()
    assert rec.take_typed() == [
        ev.ParticipantPermissionsChanged(
            participant=bob, old_permissions=None, permissions=old_perm
        )
    ]

    seen_inside: list[tuple[str, str, dict[str, str]]] = []

    @room.on("participant_metadata_changed")
    def _check(participant: RemoteParticipant, old: str, new: str) -> None:
        seen_inside.append((participant.name, participant.metadata, participant.attributes))

    new_perm = pb.ParticipantPermission(can_subscribe=True, can_publish=True)
    engine.participants(
        person(
            "bob",
            version=4,
            name="Bob",
            metadata="m1",
            attributes={"k": "v"},
            permission=new_perm,
            tracks=[track("TR_1"), track("TR_2")],
        )
    )
    await rec.settle()
    assert rec.take_typed() == [
        ev.ParticipantNameChanged(participant=bob, old_name="", new_name="Bob"),
        ev.ParticipantMetadataChanged(participant=bob, old_metadata="", metadata="m1"),
        ev.ParticipantAttributesChanged(changed_attributes={"k": "v"}, participant=bob),
        ev.ParticipantPermissionsChanged(
            participant=bob, old_permissions=old_perm, permissions=new_perm
        ),
    ]
    # the participant is updated before any handler runs (as in the official SDK)
    assert seen_inside == [("Bob", "m1", {"k": "v"})]
    assert (bob.name, bob.metadata, bob.attributes, bob.permissions) == (
        "Bob",
        "m1",
        {"k": "v"},
        new_perm,
    )

    engine.participants(
        person("bob", version=5, name="Bob", metadata="m1", permission=new_perm, attributes={})
    )
    await rec.settle()
    events = rec.take()
    assert events[0] == ("participant_attributes_changed", ({"k": ""}, bob)), "removed -> ''"
    assert names(events[1:]) == ["track_unpublished", "track_unpublished"]

    engine.participants(person("bob", version=6, state=DISCONNECTED))
    await rec.settle()
    assert rec.take() == [("participant_disconnected", (bob,))]
    assert "bob" not in room.remote_participants


async def test_leaving_participant_unpublishes_its_tracks_first(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    pub = alice.track_publications["TR_a"]
    engine.participants(person("alice", version=2, state=DISCONNECTED))
    await rec.settle()
    assert rec.take() == [
        ("track_unpublished", (pub, alice)),
        ("participant_disconnected", (alice,)),
    ]


async def test_rejoin_with_a_new_sid_replaces_the_participant(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    old = room.remote_participants["alice"]
    engine.participants(person("alice", sid="PA_alice2"))
    await rec.settle()
    new = room.remote_participants["alice"]
    assert new is not old
    assert new.sid == "PA_alice2"
    assert names(rec.take()) == [
        "track_unpublished",
        "participant_disconnected",
        "participant_connected",
        "participant_active",
    ]


async def test_disconnected_participant_reports_its_reason(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    inside: list[object] = []
    room.on("participant_disconnected", lambda p: inside.append(p.disconnect_reason))
    engine.participants(
        person("alice", version=2, state=DISCONNECTED, disconnect_reason=pb.PARTICIPANT_REMOVED)
    )
    await rec.settle()
    assert inside == [DisconnectReason.PARTICIPANT_REMOVED]
    assert alice.disconnect_reason is DisconnectReason.PARTICIPANT_REMOVED


# -- tracks ----------------------------------------------------------------------------------------


async def test_track_mute_events_carry_participant_then_publication(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    engine.participants(person("alice", version=2, tracks=[track("TR_a", muted=True)]))
    engine.participants(person("alice", version=3, tracks=[track("TR_a", muted=False)]))
    await rec.settle()
    events = rec.take()
    assert names(events) == ["track_muted", "track_unmuted"]
    for _, (participant, publication) in events:
        assert participant is alice
        assert getattr(publication, "sid", None) == "TR_a"


_STALE = (
    "bug: track-only roster events (TrackPublished/Unpublished/Muted/Unmuted) carry no "
    "ParticipantInfo, so Room never refreshes the participant and its track_publications"
)


async def test_muted_publication_reads_muted(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    pub = alice.track_publications["TR_a"]
    engine.participants(person("alice", version=2, tracks=[track("TR_a", muted=True)]))
    await rec.settle()
    assert rec.take() == [("track_muted", (alice, pub))]
    assert pub.muted is True


async def test_published_track_joins_track_publications(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    engine.participants(person("alice", version=2, tracks=[track("TR_a"), track("TR_b")]))
    await rec.settle()
    ((name, (publication, participant)),) = rec.take()
    assert (name, participant) == ("track_published", alice)
    assert alice.track_publications.get("TR_b") is publication


async def test_unpublished_track_leaves_track_publications(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    engine.participants(person("alice", version=2, tracks=[]))
    await rec.settle()
    assert names(rec.take()) == ["track_unpublished"]
    assert "TR_a" not in alice.track_publications


async def test_departed_participant_has_no_publications(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    engine.participants(person("alice", version=2, state=DISCONNECTED))
    await rec.settle()
    assert names(rec.take()) == ["track_unpublished", "participant_disconnected"]
    assert alice.track_publications == {}


# -- local participant -----------------------------------------------------------------------------


async def test_local_changes_are_announced_for_the_local_participant(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    me = room.local_participant
    engine.participants(person("me", version=2, name="Me", metadata="mine", attributes={"a": "1"}))
    await rec.settle()
    assert rec.take() == [
        ("participant_metadata_changed", (me, "", "mine")),
        ("participant_attributes_changed", ({"a": "1"}, me)),
    ]
    assert (me.metadata, me.attributes) == ("mine", {"a": "1"})


async def test_own_snapshot_with_an_old_version_is_ignored(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    engine.participants(person("me", version=5, name="Me", metadata="new"))
    engine.participants(person("me", version=4, name="Me", metadata="stale"))
    await rec.settle()
    assert names(rec.take()) == ["participant_metadata_changed"]
    assert room.local_participant.metadata == "new"


async def test_permissions_changed_args_match_the_official_sdk(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    got: list[object] = []

    @room.on("participant_permissions_changed")
    def _on(participant: object, permissions: object) -> None:
        got.append(permissions)

    perm = pb.ParticipantPermission(can_publish=True)
    engine.participants(person("alice", version=2, tracks=[track("TR_a")], permission=perm))
    await rec.settle()
    assert got == [perm]


# -- room ------------------------------------------------------------------------------------------


async def test_room_metadata_and_updates(connected: tuple[Room, FakeEngine, Recorder]) -> None:
    room, engine, rec = connected
    new_room = pb.Room(sid="RM_1", name="room", metadata="new", num_participants=5)
    engine.room_update(new_room)
    await rec.settle()
    typed = rec.take_typed()
    assert [(e.name, e.args()) for e in typed] == [
        ("room_metadata_changed", ("rm", "new")),
        ("room_updated", ()),
    ]
    assert isinstance(typed[1], ev.RoomUpdated)
    assert typed[1].room == new_room
    assert (room.metadata, room.num_participants) == ("new", 5)

    engine.room_update(pb.Room(sid="RM_1", name="room", metadata="new", active_recording=True))
    await rec.settle()
    assert names(rec.take()) == ["room_updated"]
    assert room.is_recording


# -- signal pass-through: quality, speakers, tokens ----------------------------------------------


def quality(*updates: tuple[str, int]) -> sg.ConnectionQualityChanged:
    infos = tuple(
        pb.ConnectionQualityInfo(participant_sid=sid, quality=cast("Any", q)) for sid, q in updates
    )
    return sg.ConnectionQualityChanged(
        updates=infos, message=pb.ConnectionQualityUpdate(updates=infos)
    )


async def test_connection_quality_updates_participants(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice, me = room.remote_participants["alice"], room.local_participant
    engine.signal(quality(("PA_alice", pb.EXCELLENT), ("PA_ghost", pb.GOOD), ("PA_me", pb.POOR)))
    await rec.settle()
    assert rec.take() == [
        ("connection_quality_changed", (alice, ConnectionQuality.QUALITY_EXCELLENT)),
        ("connection_quality_changed", (me, ConnectionQuality.QUALITY_POOR)),
    ]
    assert alice.connection_quality is ConnectionQuality.QUALITY_EXCELLENT
    assert me.connection_quality is ConnectionQuality.QUALITY_POOR

    engine.signal(quality(("PA_alice", pb.LOST)))
    await rec.settle()
    assert rec.take() == [("connection_quality_changed", (alice, ConnectionQuality.QUALITY_LOST))]


async def test_connection_quality_beyond_the_enum_still_yields_a_member(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    _, engine, rec = connected
    engine.signal(quality(("PA_alice", 9)))
    await rec.settle()
    ((_, (_, value)),) = rec.take()
    assert isinstance(value, ConnectionQuality)


def speakers(*infos: tuple[str, float, bool]) -> sg.SpeakersChanged:
    items = tuple(pb.SpeakerInfo(sid=sid, level=level, active=on) for sid, level, on in infos)
    return sg.SpeakersChanged(speakers=items, message=pb.SpeakersChanged(speakers=items))


async def test_active_speakers_are_merged_deltas_loudest_first(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice, me = room.remote_participants["alice"], room.local_participant

    engine.signal(speakers(("PA_alice", 0.3, True), ("PA_me", 0.8, True)))
    engine.signal(speakers(("PA_alice", 0.9, True)))
    engine.signal(speakers(("PA_me", 0.0, False), ("PA_ghost", 1.0, True)))
    await rec.settle()
    assert rec.take() == [
        ("active_speakers_changed", ([me, alice],)),
        ("active_speakers_changed", ([alice, me],)),
        ("active_speakers_changed", ([alice],)),
    ]

    engine.participants(person("alice", version=2, state=DISCONNECTED))
    engine.signal(speakers(("PA_me", 0.5, True)))
    await rec.settle()
    assert rec.take()[-1] == ("active_speakers_changed", ([me],))


async def test_token_refresh_has_no_handler_args_but_a_typed_token(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    _, engine, rec = connected
    engine.signal(sg.TokenRefreshed(token="t2"))
    await rec.settle()
    (typed,) = rec.take_typed()
    assert isinstance(typed, ev.TokenRefreshed)
    assert (typed.name, typed.args(), typed.token) == ("token_refreshed", (), "t2")


async def test_other_signal_events_are_not_room_events(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    _, engine, rec = connected
    engine.signal(sg.PongReceived(rtt_ms=3.0, message=pb.Pong()))
    await rec.settle()
    assert rec.take() == []


# -- data ------------------------------------------------------------------------------------------


async def test_user_packets_become_data_received(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    engine.data(
        pb.DataPacket(participant_identity="alice", user=pb.UserPacket(payload=b"hi", topic="t")),
        reliable=True,
    )
    engine.data(
        pb.DataPacket(participant_identity="ghost", user=pb.UserPacket(payload=b"lo")),
        reliable=False,
    )
    engine.data(pb.DataPacket(participant_identity="alice", rpc_ack=pb.RpcAck()), reliable=True)
    await rec.settle()
    assert rec.take() == [
        ("data_received", (DataPacket(b"hi", DataPacketKind.KIND_RELIABLE, alice, "t"),)),
        ("data_received", (DataPacket(b"lo", DataPacketKind.KIND_LOSSY, None, ""),)),
    ]


async def test_legacy_chat_packet_is_the_one_chat_message_type(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    chat = pb.ChatMessage(id="m1", timestamp=5, message="hey", generated=True)
    chat.edit_timestamp = 7
    engine.data(pb.DataPacket(participant_identity="alice", chat_message=chat), reliable=True)
    await rec.settle()
    message = ChatMessage(
        id="m1",
        timestamp=5,
        message="hey",
        sender_identity="alice",
        edit_timestamp=7,
        generated=True,
    )
    assert rec.take() == [("chat_message", (message, alice))]


# -- reconnection and disconnection ---------------------------------------------------------------


async def test_reconnecting_then_reconnected(connected: tuple[Room, FakeEngine, Recorder]) -> None:
    room, engine, rec = connected
    engine.on_event(en.EngineReconnecting(full=False))
    await rec.settle()
    assert rec.take() == [
        ("connection_state_changed", (ConnectionState.CONN_RECONNECTING,)),
        ("reconnecting", ()),
    ]
    assert state_of(room) is ConnectionState.CONN_RECONNECTING
    assert room.isconnected()

    # a full reconnect: a new JoinResponse (new local SID) goes through the roster first
    me2 = person("me", sid="PA_me2", name="Me", metadata="after")
    engine.emit_all(
        engine.roster.apply_join(join_response(person("alice", tracks=[track("TR_a")]), me=me2))
    )
    engine.on_event(en.EngineReconnected(full=True))
    await rec.settle()
    assert names(rec.take()) == [
        "participant_metadata_changed",
        "room_updated",
        "connection_state_changed",
        "reconnected",
    ]
    assert state_of(room) is ConnectionState.CONN_CONNECTED
    assert room.local_participant.sid == "PA_me2"
    assert room.local_participant.metadata == "after"


async def test_client_disconnect(connected: tuple[Room, FakeEngine, Recorder]) -> None:
    room, engine, rec = connected
    alice = room.remote_participants["alice"]
    pub = alice.track_publications["TR_a"]
    await room.disconnect()
    await rec.settle()
    assert rec.take() == [
        # lkproto reports the remotes it drops (Roster.clear); livekit.rtc drops them silently
        ("track_unpublished", (pub, alice)),
        ("participant_disconnected", (alice,)),
        ("connection_state_changed", (ConnectionState.CONN_DISCONNECTED,)),
        ("disconnected", (DisconnectReason.CLIENT_INITIATED,)),
    ]
    assert engine.left == [pb.CLIENT_INITIATED]
    assert not room.isconnected()
    assert room.engine is None
    assert room.remote_participants == {}
    assert rec.task is not None
    await asyncio.wait_for(rec.task, scaled(1))  # the typed stream ended after Disconnected

    await room.disconnect()  # no-op
    assert engine.left == [pb.CLIENT_INITIATED]


async def test_disconnect_reason_is_passed_to_the_engine(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    await room.disconnect(reason=DisconnectReason.USER_REJECTED)
    await rec.settle()
    assert rec.take()[-1] == ("disconnected", (DisconnectReason.USER_REJECTED,))
    assert engine.left == [pb.USER_REJECTED]


@pytest.mark.parametrize(
    ("wire", "expected"),
    [(pb.ROOM_DELETED, DisconnectReason.ROOM_DELETED), (77, 77)],
)
async def test_server_disconnect_reason(
    connected: tuple[Room, FakeEngine, Recorder], wire: int, expected: object
) -> None:
    room, engine, rec = connected
    engine.finish(wire)
    await rec.settle()
    typed = rec.take_typed()[-1]
    assert isinstance(typed, ev.Disconnected)
    assert typed.reason == expected
    assert type(typed.reason) is type(expected)
    assert state_of(room) is ConnectionState.CONN_DISCONNECTED


async def test_room_can_connect_again_after_disconnect(
    connected: tuple[Room, FakeEngine, Recorder], harness: Harness
) -> None:
    room, _, _ = connected
    await room.disconnect()
    await room.connect(URL, TOKEN)
    assert room.isconnected()
    assert len(harness.engines) == 2


# -- the typed stream ------------------------------------------------------------------------------


async def test_two_streams_see_the_same_events(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, rec = connected
    second: list[ev.RoomEvent] = []

    async def consume() -> None:
        async for event in room.events():
            second.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    engine.participants(person("bob"))
    await room.disconnect()
    await asyncio.wait_for(task, scaled(1))
    await rec.settle()
    assert second == rec.typed
    assert type(second[-1]) is ev.Disconnected


async def test_stream_subscribes_when_created(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, _ = connected
    stream = room.events()
    engine.participants(person("bob"))
    first = await asyncio.wait_for(anext(stream), scaled(0.2))
    assert isinstance(first, ev.ParticipantConnected)


async def test_a_lagging_reader_gets_what_it_held_then_an_overflow_error(
    connected: tuple[Room, FakeEngine, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    room, engine, rec = connected
    lagging = room.events(max_queue=3)
    keeping_up: list[ev.RoomEvent] = []
    unbounded = room.events(max_queue=None)
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        for n in range(10):
            engine.signal(sg.TokenRefreshed(token=f"t{n}"))
            # Another reader (the recorder) keeps up; it is not affected.
            await rec.settle()
    warnings = [r for r in caplog.records if "fell 3 events behind" in r.getMessage()]
    assert len(warnings) == 1
    held = [await asyncio.wait_for(anext(lagging), scaled(1)) for _ in range(3)]
    assert [cast("ev.TokenRefreshed", e).token for e in held] == ["t0", "t1", "t2"]
    with pytest.raises(EventQueueOverflowError) as info:
        await asyncio.wait_for(anext(lagging), scaled(1))
    assert info.value.max_queue == 3
    assert isinstance(info.value, LocalProtocolError)
    # The callbacks and the other readers saw all ten.
    assert [e.token for e in rec.take_typed() if isinstance(e, ev.TokenRefreshed)] == [
        f"t{n}" for n in range(10)
    ]
    await room.disconnect()
    async for event in unbounded:
        keeping_up.append(event)
    tokens = [e.token for e in keeping_up if isinstance(e, ev.TokenRefreshed)]
    assert tokens == [f"t{n}" for n in range(10)]
    assert type(keeping_up[-1]) is ev.Disconnected


async def test_default_bound_and_its_validation(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, _ = connected
    stream = room.events()
    for n in range(DEFAULT_EVENTS_MAX_QUEUE + 1):
        engine.signal(sg.TokenRefreshed(token=str(n)))
    for _ in range(DEFAULT_EVENTS_MAX_QUEUE):
        await anext(stream)
    with pytest.raises(EventQueueOverflowError):
        await anext(stream)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(LocalProtocolError, match="max_queue"):
            room.events(max_queue=bad)  # type: ignore[arg-type]


async def test_the_end_marker_is_not_counted_against_the_bound(
    connected: tuple[Room, FakeEngine, Recorder],
) -> None:
    room, engine, _ = connected
    stream = room.events(max_queue=5)
    engine.signal(sg.TokenRefreshed(token="a"))
    await room.disconnect()  # exactly 5 events (alice's track and alice go), then the end
    got = [event async for event in stream]
    assert [type(e) for e in got] == [
        ev.TokenRefreshed,
        ev.TrackUnpublished,
        ev.ParticipantDisconnected,
        ev.ConnectionStateChanged,
        ev.Disconnected,
    ]


def test_typed_events_are_frozen_slotted_kw_only() -> None:
    classes: list[type[ev.RoomEvent]] = [ev.RoomEvent, *_typed_event_classes()]
    for cls in classes:
        assert "__slots__" in cls.__dict__, cls
        fields = {f.name: object() for f in dataclasses.fields(cls)}
        event = cls(**fields)
        for field in fields:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(event, field, None)
        if fields:
            with pytest.raises(TypeError):
                cls(*fields.values())
        if cls is not ev.RoomEvent:
            assert cls.name in get_args(ev.EventTypes), cls


# Positional arguments livekit.rtc 1.2 passes to room.on(name) handlers (livekit/rtc/room.py
# ``_on_room_event`` and ``disconnect``); "connected" is listed there but never emitted.
OFFICIAL_ARITY = {
    "participant_connected": 1,
    "participant_disconnected": 1,
    "participant_active": 1,
    "track_published": 2,
    "track_unpublished": 2,
    "track_muted": 2,
    "track_unmuted": 2,
    "track_subscribed": 3,
    "track_unsubscribed": 3,
    "track_subscription_failed": 3,
    "local_track_published": 2,
    "local_track_unpublished": 1,
    "local_track_subscribed": 1,
    "local_track_republished": 2,
    "active_speakers_changed": 1,
    "room_metadata_changed": 2,
    "participant_metadata_changed": 3,
    "participant_name_changed": 3,
    "participant_attributes_changed": 2,
    "participant_permissions_changed": 2,
    "connection_quality_changed": 2,
    "data_received": 1,
    "connection_state_changed": 1,
    "connected": 0,
    "disconnected": 1,
    "reconnecting": 0,
    "reconnected": 0,
    "room_updated": 0,
    "token_refreshed": 0,
    "sip_dtmf_received": 1,
    "transcription_received": 3,
    "e2ee_state_changed": 2,
    "participant_encryption_status_changed": 2,
    "data_track_published": 1,
    "data_track_unpublished": 1,
    # lkproto extra (JS RoomEvent.ChatMessage(message, participant)); not in livekit.rtc
    "chat_message": 2,
}

# Event names lkproto emits that livekit.rtc does not have (documented extras).
LKPROTO_EXTRA_EVENTS = {"chat_message"}


def _typed_event_classes() -> list[type[ev.RoomEvent]]:
    out = []
    for name in ev.__all__:
        cls = getattr(ev, name)
        if isinstance(cls, type) and issubclass(cls, ev.RoomEvent) and cls is not ev.RoomEvent:
            out.append(cls)
    return out


@pytest.mark.parametrize(
    "cls",
    [pytest.param(c, id=c.name) for c in _typed_event_classes()],
)
def test_handler_arity_matches_the_official_sdk(cls: type[ev.RoomEvent]) -> None:
    dummy = {f.name: object() for f in dataclasses.fields(cls)}
    assert len(cls(**dummy).args()) == OFFICIAL_ARITY[cls.name]


def test_event_names_are_official() -> None:
    official = pytest.importorskip("livekit.rtc.room")
    ours = set(get_args(ev.EventTypes)) - LKPROTO_EXTRA_EVENTS
    assert ours <= set(get_args(official.EventTypes))


def test_every_official_event_name_type_checks() -> None:
    official = pytest.importorskip("livekit.rtc.room")
    assert set(get_args(official.EventTypes)) <= set(get_args(ev.EventTypes))
