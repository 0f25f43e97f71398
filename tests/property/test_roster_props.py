"""Roster properties: state equals an independent model, events replay to the same state.

(a) After any sequence of snapshots the roster holds what a model computed independently says:
    declaratively (per identity, the last snapshot of maximal version, absent if any snapshot of
    it was DISCONNECTED, never yourself) for one session per identity, and by a small reference
    fold for the general case (several sessions per identity, anonymous snapshots, full
    reconnects).
(b) Replaying the emitted events onto empty dicts rebuilds the remote identities with their SIDs,
    tracks, mute states, names, metadata and attributes, and the local participant's fields.
(c) Nothing is raised for well-formed sequences, and arbitrary protobuf input raises at most the
    documented RemoteProtocolError (JoinResponse without a participant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto import errors
from lkproto.core.roster import (
    AnyRosterEvent,
    ParticipantActivated,
    ParticipantAttributesChanged,
    ParticipantConnected,
    ParticipantDisconnected,
    ParticipantMetadataChanged,
    ParticipantNameChanged,
    ParticipantPermissionsChanged,
    RoomMetadataChanged,
    RoomRecordingStatusChanged,
    RoomUpdated,
    Roster,
    TrackMuted,
    TrackPublished,
    TrackUnmuted,
    TrackUnpublished,
)
from lkproto.wire import pb
from tests._support.pbstrategies import messages

ME = "me"
PEERS = ("alice", "bob", "carol")
DISCONNECTED = pb.ParticipantInfo.DISCONNECTED
STATES = (
    pb.ParticipantInfo.JOINING,
    pb.ParticipantInfo.JOINED,
    pb.ParticipantInfo.ACTIVE,
    DISCONNECTED,
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_small = st.sampled_from(["", "x", "y"])
_attributes = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["a", "b"]))
_tracks = st.lists(
    st.builds(
        pb.TrackInfo,
        sid=st.sampled_from(["TR_1", "TR_2", "TR_3"]),
        muted=st.booleans(),
        type=st.just(pb.AUDIO),
    ),
    max_size=3,
    unique_by=lambda t: t.sid,
)
_permission = st.none() | st.builds(
    pb.ParticipantPermission, can_publish=st.booleans(), can_subscribe=st.booleans()
)


@st.composite
def snapshots(
    draw: st.DrawFn, *, identities: tuple[str, ...], sessions: int, anonymous: bool
) -> pb.ParticipantInfo:
    identity = draw(st.sampled_from(identities))
    sid = f"PA_{identity}{draw(st.integers(0, sessions - 1))}"
    if anonymous and draw(st.integers(0, 9)) == 0:
        identity = ""
    info = pb.ParticipantInfo(
        identity=identity,
        sid=sid,
        version=draw(st.integers(0, 4)),
        state=draw(st.sampled_from(STATES)),
        name=draw(_small),
        metadata=draw(_small),
        attributes=draw(_attributes),
        tracks=draw(_tracks),
        disconnect_reason=draw(st.sampled_from([pb.UNKNOWN_REASON, pb.CLIENT_INITIATED])),
    )
    permission = draw(_permission)
    if permission is not None:
        info.permission.CopyFrom(permission)
    return info


def _me(sid: str, version: int = 0) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(
        identity=ME, sid=sid, version=version, state=pb.ParticipantInfo.ACTIVE
    )


# -- (b) event replay -----------------------------------------------------------------------------


@dataclass
class Replayed:
    sid: str
    name: str
    metadata: str
    attributes: dict[str, str]
    tracks: dict[str, bool] = field(default_factory=dict)


class Replay:
    """Rebuilds the picture from events alone, asserting each event is consistent with it."""

    def __init__(self, local: pb.ParticipantInfo) -> None:
        self.remotes: dict[str, Replayed] = {}
        self.local = self._fresh(local)

    @staticmethod
    def _fresh(info: pb.ParticipantInfo) -> Replayed:
        return Replayed(info.sid, info.name, info.metadata, dict(info.attributes))

    def _who(self, identity: str, local: bool) -> Replayed:
        return self.local if local else self.remotes[identity]

    def feed(self, events: list[AnyRosterEvent]) -> None:
        for ev in events:
            match ev:
                case ParticipantConnected(info=info):
                    assert info.identity not in self.remotes
                    assert info.identity != ME
                    assert info.state != DISCONNECTED
                    self.remotes[info.identity] = self._fresh(info)
                case ParticipantDisconnected(info=info):
                    held = self.remotes.pop(info.identity)
                    assert held.sid == info.sid
                    assert held.tracks == {}, "tracks are unpublished before the disconnect"
                case ParticipantActivated(identity=identity, info=info):
                    assert identity in self.remotes
                    assert info.state == pb.ParticipantInfo.ACTIVE
                case TrackPublished(identity=identity, track=track):
                    tracks = self.remotes[identity].tracks
                    assert track.sid not in tracks
                    tracks[track.sid] = track.muted
                case TrackUnpublished(identity=identity, track=track):
                    del self.remotes[identity].tracks[track.sid]
                case TrackMuted(identity=identity, track=track):
                    assert self.remotes[identity].tracks[track.sid] is False
                    self.remotes[identity].tracks[track.sid] = True
                case TrackUnmuted(identity=identity, track=track):
                    assert self.remotes[identity].tracks[track.sid] is True
                    self.remotes[identity].tracks[track.sid] = False
                case ParticipantNameChanged(identity=identity, local=local, old=old, new=new):
                    who = self._who(identity, local)
                    assert (who.name, old != new) == (old, True)
                    who.name = new
                case ParticipantMetadataChanged(identity=identity, local=local, old=old, new=new):
                    who = self._who(identity, local)
                    assert (who.metadata, old != new) == (old, True)
                    who.metadata = new
                case ParticipantAttributesChanged(identity=identity, local=local, changed=changed):
                    who = self._who(identity, local)
                    assert changed
                    for key, value in changed.items():
                        assert who.attributes.get(key) != (value or None)
                        if value:
                            who.attributes[key] = value
                        else:
                            del who.attributes[key]
                case ParticipantPermissionsChanged(identity=identity, local=local):
                    self._who(identity, local)
                case RoomMetadataChanged() | RoomRecordingStatusChanged() | RoomUpdated():
                    pass
                case _:
                    raise AssertionError(f"unexpected event {ev!r}")

    def check(self, roster: Roster) -> None:
        assert set(self.remotes) == set(roster.remotes)
        for identity, info in roster.remotes.items():
            got = self.remotes[identity]
            first_muted: dict[str, bool] = {}
            for t in info.tracks:
                first_muted.setdefault(t.sid, t.muted)
            assert got == Replayed(
                info.sid, info.name, info.metadata, dict(info.attributes), first_muted
            )
        local = roster.local
        assert local is not None
        assert (self.local.name, self.local.metadata, self.local.attributes) == (
            local.name,
            local.metadata,
            dict(local.attributes),
        )


# -- (a) declarative model, one session per identity ----------------------------------------------


def _last_of_max_version(infos: list[pb.ParticipantInfo]) -> pb.ParticipantInfo:
    top = max(i.version for i in infos)
    return [i for i in infos if i.version == top][-1]


@SETTINGS
@given(
    others=st.lists(snapshots(identities=PEERS, sessions=1, anonymous=False), max_size=3),
    batches=st.lists(
        st.lists(snapshots(identities=(*PEERS, ME), sessions=1, anonymous=False), max_size=5),
        max_size=6,
    ),
    my_version=st.integers(0, 4),
)
def test_roster_holds_latest_version_per_identity(
    others: list[pb.ParticipantInfo],
    batches: list[list[pb.ParticipantInfo]],
    my_version: int,
) -> None:
    me = _me("PA_me0", my_version)
    roster = Roster()
    replay = Replay(me)
    replay.feed(roster.apply_join(pb.JoinResponse(participant=me, other_participants=others)))
    for batch in batches:
        replay.feed(roster.apply_participants(batch))

    seen = list(others) + [info for batch in batches for info in batch]
    expected: dict[str, pb.ParticipantInfo] = {}
    for identity in PEERS:
        mine = [i for i in seen if i.identity == identity]
        if mine and all(i.state != DISCONNECTED for i in mine):
            expected[identity] = _last_of_max_version(mine)
    assert dict(roster.remotes) == expected
    assert roster.local == _last_of_max_version([me] + [i for i in seen if i.identity == ME])
    for info in expected.values():
        assert roster.by_sid(info.sid) == info
    replay.check(roster)


# -- (a) reference fold for the general case ------------------------------------------------------


class Model:
    """The snapshot rules as a plain fold over state, with no events."""

    def __init__(self) -> None:
        self.remotes: dict[str, pb.ParticipantInfo] = {}
        self.local: pb.ParticipantInfo | None = None
        self.dead: set[str] = set()

    def identity_of(self, info: pb.ParticipantInfo) -> str:
        if info.identity:
            return info.identity
        for identity, held in self.remotes.items():
            if held.sid == info.sid:
                return identity
        assert self.local is not None
        return self.local.identity if info.sid == self.local.sid else ""

    def snapshot(self, info: pb.ParticipantInfo) -> None:
        assert self.local is not None
        if info.sid in self.dead:
            return
        identity = self.identity_of(info)
        if info.state == DISCONNECTED and identity != self.local.identity:
            self.dead.add(info.sid)
        if not identity:
            return
        named = pb.ParticipantInfo()
        named.CopyFrom(info)
        named.identity = identity
        if identity == self.local.identity:
            if info.sid == self.local.sid and info.version >= self.local.version:
                self.local = named
            return
        held = self.remotes.get(identity)
        if info.state == DISCONNECTED:
            if held is not None and held.sid == info.sid:
                del self.remotes[identity]
        elif held is None or held.sid != info.sid or info.version >= held.version:
            if held is not None and held.sid != info.sid:
                self.dead.add(held.sid)
            self.remotes[identity] = named

    def join(self, join: pb.JoinResponse) -> None:
        self.local = join.participant
        kept = set()
        for info in join.other_participants:
            alive = info.state != DISCONNECTED and info.sid not in self.dead
            if alive and self.identity_of(info) != ME:
                kept.add(info.sid)
        for identity, held in list(self.remotes.items()):
            if held.sid not in kept:
                self.dead.add(held.sid)
                del self.remotes[identity]
        for info in join.other_participants:
            self.snapshot(info)


_general = snapshots(identities=(*PEERS, ME), sessions=3, anonymous=True)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.lists(_general, max_size=4)),
        st.tuples(
            st.just("join"),
            st.tuples(st.integers(0, 2), st.integers(0, 4), st.lists(_general, max_size=4)),
        ),
        st.tuples(
            st.just("room"), st.builds(pb.Room, metadata=_small, active_recording=st.booleans())
        ),
    ),
    max_size=10,
)


@SETTINGS
@given(ops=_ops)
def test_roster_matches_reference_fold_and_replays(ops: list[tuple[str, Any]]) -> None:
    roster = Roster()
    model = Model()
    first = pb.JoinResponse(participant=_me("PA_me0"))
    roster.apply_join(first)
    model.join(first)
    replay = Replay(first.participant)
    for kind, arg in ops:
        if kind == "update":
            replay.feed(roster.apply_participants(arg))
            for info in arg:
                model.snapshot(info)
        elif kind == "join":
            session, version, others = arg
            # a full reconnect gets a SID never used before
            assert roster.local is not None
            old = int(roster.local.sid.removeprefix("PA_me"))
            join = pb.JoinResponse(
                participant=_me(f"PA_me{old + 1 + session}", version),
                other_participants=others,
            )
            replay.feed(roster.apply_join(join))
            model.join(join)
        else:
            events = roster.apply_room(arg)
            assert isinstance(events[-1], RoomUpdated)
            assert roster.room is arg
        assert dict(roster.remotes) == model.remotes
        assert roster.local == model.local
        assert ME not in roster.remotes
        replay.check(roster)
    events = roster.clear(pb.CLIENT_INITIATED)
    replay.feed(events)
    assert roster.remotes == {}
    assert replay.remotes == {}
    assert all(
        e.reason == pb.CLIENT_INITIATED for e in events if isinstance(e, ParticipantDisconnected)
    )


# -- (c) arbitrary input --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    join=messages(pb.JoinResponse.DESCRIPTOR, depth=3),
    updates=st.lists(messages(pb.ParticipantInfo.DESCRIPTOR, depth=2), max_size=6),
    room=messages(pb.Room.DESCRIPTOR, depth=1),
)
def test_arbitrary_messages_raise_only_documented_errors(
    join: pb.JoinResponse, updates: list[pb.ParticipantInfo], room: pb.Room
) -> None:
    roster = Roster()
    try:
        roster.apply_join(join)
    except errors.RemoteProtocolError:
        assert not join.participant.identity or not join.participant.sid
        roster.apply_join(pb.JoinResponse(participant=_me("PA_me0")))
    roster.apply_participants(updates)
    roster.apply_room(room)
    local = roster.local
    assert local is not None
    assert local.identity not in roster.remotes
    roster.clear(pb.UNKNOWN_REASON)
    assert roster.remotes == {}
