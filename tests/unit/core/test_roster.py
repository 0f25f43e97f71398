"""Roster: snapshot rules, event order, joins and full reconnects (lkproto.core.roster)."""

from __future__ import annotations

from typing import Any

import pytest

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

ACTIVE = pb.ParticipantInfo.ACTIVE
JOINED = pb.ParticipantInfo.JOINED
DISCONNECTED = pb.ParticipantInfo.DISCONNECTED


def track(sid: str, *, muted: bool = False, name: str = "") -> pb.TrackInfo:
    return pb.TrackInfo(sid=sid, muted=muted, name=name or sid, type=pb.AUDIO)


def person(
    identity: str,
    sid: str | None = None,
    *,
    version: int = 1,
    state: Any = ACTIVE,
    tracks: tuple[pb.TrackInfo, ...] = (),
    permission: pb.ParticipantPermission | None = None,
    **kw: Any,
) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(
        identity=identity,
        sid=sid if sid is not None else f"PA_{identity}",
        version=version,
        state=state,
        tracks=tracks,
        permission=permission,
        **kw,
    )


def join(
    me: pb.ParticipantInfo | None = None,
    *others: pb.ParticipantInfo,
    room: pb.Room | None = None,
) -> pb.JoinResponse:
    return pb.JoinResponse(
        participant=me if me is not None else person("me"),
        other_participants=others,
        room=room if room is not None else pb.Room(sid="RM_1", name="r"),
    )


def kinds(events: list[AnyRosterEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def joined(*others: pb.ParticipantInfo, me: pb.ParticipantInfo | None = None) -> Roster:
    roster = Roster()
    roster.apply_join(join(me, *others))
    return roster


# -- first join -----------------------------------------------------------------------------------


def test_first_join_announces_peers_with_their_tracks_then_the_room() -> None:
    roster = Roster()
    assert roster.local is None
    assert roster.room is None
    events = roster.apply_join(
        join(
            person("me", metadata="m"),
            person("alice", tracks=(track("TR_a1"), track("TR_a2"))),
            person("bob", state=JOINED),
        )
    )
    assert kinds(events) == [
        "ParticipantConnected",
        "ParticipantActivated",
        "TrackPublished",
        "TrackPublished",
        "ParticipantConnected",
        "RoomUpdated",
    ]
    assert [e.track.sid for e in events if isinstance(e, TrackPublished)] == ["TR_a1", "TR_a2"]
    assert list(roster.remotes) == ["alice", "bob"]
    assert roster.local is not None
    assert roster.local.identity == "me"
    assert roster.room is not None
    assert roster.room.sid == "RM_1"


def test_join_without_local_participant_is_a_remote_error() -> None:
    with pytest.raises(errors.RemoteProtocolError):
        Roster().apply_join(pb.JoinResponse(room=pb.Room(sid="RM_1")))
    with pytest.raises(errors.RemoteProtocolError):
        Roster().apply_join(pb.JoinResponse(participant=pb.ParticipantInfo(identity="me")))


def test_updates_before_join_are_misuse() -> None:
    with pytest.raises(errors.LocalProtocolError):
        Roster().apply_participants([person("alice")])


def test_negative_departed_memory_is_misuse() -> None:
    with pytest.raises(errors.LocalProtocolError):
        Roster(max_departed_sids=-1)


def test_remotes_is_a_read_only_view() -> None:
    roster = joined(person("alice"))
    view = roster.remotes
    with pytest.raises(TypeError):
        view["x"] = person("x")  # type: ignore[index]
    roster.apply_participants([person("bob")])
    assert "bob" in view


def test_by_sid_finds_remotes_and_yourself() -> None:
    roster = joined(person("alice"))
    alice = roster.by_sid("PA_alice")
    assert alice is not None
    assert alice.identity == "alice"
    me = roster.by_sid("PA_me")
    assert me is not None
    assert me.identity == "me"
    assert roster.by_sid("PA_nobody") is None
    assert roster.by_sid("") is None


# -- participant updates --------------------------------------------------------------------------


def test_new_participant_gets_only_connected_activation_and_tracks() -> None:
    roster = joined()
    info = person(
        "alice",
        name="Alice",
        metadata="md",
        attributes={"k": "v"},
        permission=pb.ParticipantPermission(can_publish=True),
        tracks=(track("TR_1", muted=True),),
    )
    events = roster.apply_participants([info])
    assert events == [
        ParticipantConnected(info=info),
        ParticipantActivated(identity="alice", info=info),
        TrackPublished(identity="alice", track=info.tracks[0]),
    ]


def test_change_events_come_in_js_order() -> None:
    old = person(
        "alice",
        version=1,
        state=JOINED,
        name="A",
        metadata="m1",
        attributes={"keep": "1", "change": "old", "drop": "x"},
        permission=pb.ParticipantPermission(can_publish=False),
        tracks=(track("TR_keep"), track("TR_mute"), track("TR_gone", muted=True)),
    )
    roster = joined(old)
    new = person(
        "alice",
        version=2,
        state=ACTIVE,
        name="B",
        metadata="m2",
        attributes={"keep": "1", "change": "new", "add": "y"},
        permission=pb.ParticipantPermission(can_publish=True),
        tracks=(track("TR_new"), track("TR_mute", muted=True), track("TR_keep")),
    )
    events = roster.apply_participants([new])
    assert events == [
        ParticipantNameChanged(identity="alice", local=False, old="A", new="B", info=new),
        ParticipantMetadataChanged(identity="alice", local=False, old="m1", new="m2", info=new),
        ParticipantAttributesChanged(
            identity="alice",
            local=False,
            changed={"add": "y", "change": "new", "drop": ""},
            info=new,
        ),
        ParticipantActivated(identity="alice", info=new),
        ParticipantPermissionsChanged(
            identity="alice", local=False, old=old.permission, new=new.permission, info=new
        ),
        TrackMuted(identity="alice", track=new.tracks[1]),
        TrackUnpublished(identity="alice", track=old.tracks[2]),
        TrackPublished(identity="alice", track=new.tracks[0]),
    ]
    assert list(ParticipantAttributesChanged.__dataclass_fields__) == [
        "identity",
        "local",
        "changed",
        "info",
    ]
    assert roster.remotes["alice"] is new


def test_unmute_and_no_change_at_equal_version() -> None:
    roster = joined(person("alice", tracks=(track("TR_1", muted=True),)))
    same = person("alice", tracks=(track("TR_1", muted=True),))
    assert roster.apply_participants([same]) == []
    assert roster.remotes["alice"] is same  # equal version is accepted (JS: skip only if older)
    unmuted = person("alice", version=2, tracks=(track("TR_1"),))
    assert roster.apply_participants([unmuted]) == [
        TrackUnmuted(identity="alice", track=unmuted.tracks[0])
    ]


def test_equal_version_with_different_content_is_applied() -> None:
    roster = joined(person("alice", metadata="a"))
    events = roster.apply_participants([person("alice", metadata="b")])
    assert kinds(events) == ["ParticipantMetadataChanged"]


def test_stale_version_is_ignored() -> None:
    roster = joined(person("alice", version=5, metadata="new"))
    assert roster.apply_participants([person("alice", version=4, metadata="old")]) == []
    assert roster.remotes["alice"].metadata == "new"


def test_activation_fires_only_on_the_transition() -> None:
    roster = joined(person("alice", state=JOINED))
    events = roster.apply_participants([person("alice", version=2, state=ACTIVE)])
    assert kinds(events) == ["ParticipantActivated"]
    assert roster.apply_participants([person("alice", version=3, state=ACTIVE)]) == []


def test_permission_change_detection() -> None:
    roster = joined(person("alice"))  # no permission at all
    granted = person("alice", version=2, permission=pb.ParticipantPermission(can_subscribe=True))
    (event,) = roster.apply_participants([granted])
    assert isinstance(event, ParticipantPermissionsChanged)
    assert event.old is None
    assert event.new.can_subscribe
    # a snapshot without permission leaves the question open (JS: `if (info.permission)`)
    assert roster.apply_participants([person("alice", version=3)]) == []
    # any field counts, including ones JS does not compare
    roster.apply_participants([granted])
    updated = person(
        "alice",
        version=4,
        permission=pb.ParticipantPermission(can_subscribe=True, can_update_metadata=True),
    )
    assert kinds(roster.apply_participants([updated])) == ["ParticipantPermissionsChanged"]


def test_duplicate_track_sids_count_once() -> None:
    roster = joined()
    info = person("alice", tracks=(track("TR_1"), track("TR_1", muted=True)))
    events = roster.apply_participants([info])
    assert [e.track.muted for e in events if isinstance(e, TrackPublished)] == [False]


def test_disconnected_snapshot_unwinds_tracks_then_disconnects() -> None:
    held = person("alice", tracks=(track("TR_1"), track("TR_2")))
    roster = joined(held)
    gone = person("alice", version=0, state=DISCONNECTED, disconnect_reason=pb.CLIENT_INITIATED)
    events = roster.apply_participants([gone])
    assert events == [
        TrackUnpublished(identity="alice", track=held.tracks[0]),
        TrackUnpublished(identity="alice", track=held.tracks[1]),
        ParticipantDisconnected(info=held, reason=pb.CLIENT_INITIATED),
    ]
    assert "alice" not in roster.remotes
    assert roster.by_sid("PA_alice") is None


def test_disconnected_snapshot_without_identity_is_matched_by_sid() -> None:
    roster = joined(person("alice"))
    anonymous = pb.ParticipantInfo(sid="PA_alice", state=DISCONNECTED)
    assert kinds(roster.apply_participants([anonymous])) == ["ParticipantDisconnected"]
    assert roster.remotes == {}


def test_update_without_identity_is_matched_by_sid_and_filled_in() -> None:
    roster = joined(person("alice"))
    events = roster.apply_participants([pb.ParticipantInfo(sid="PA_alice", version=2, name="A")])
    assert kinds(events) == ["ParticipantNameChanged"]
    assert roster.remotes["alice"].identity == "alice"
    assert roster.remotes["alice"].name == "A"


def test_snapshot_without_identity_or_known_sid_is_ignored() -> None:
    roster = joined()
    assert roster.apply_participants([pb.ParticipantInfo(sid="PA_x", state=ACTIVE)]) == []
    assert roster.apply_participants([pb.ParticipantInfo(sid="PA_y", state=DISCONNECTED)]) == []
    assert roster.apply_participants([pb.ParticipantInfo(sid="PA_y", identity="y")]) == []
    assert roster.remotes == {}


def test_unknown_disconnect_is_silent_and_final() -> None:
    roster = joined()
    assert roster.apply_participants([person("ghost", state=DISCONNECTED)]) == []
    assert roster.apply_participants([person("ghost", version=9)]) == []
    assert roster.remotes == {}


def test_departed_sid_never_comes_back() -> None:
    roster = joined(person("alice"))
    roster.apply_participants([person("alice", state=DISCONNECTED)])
    assert roster.apply_participants([person("alice", version=7)]) == []
    assert "alice" not in roster.remotes


def test_departed_memory_is_bounded_and_can_be_off() -> None:
    roster = Roster(max_departed_sids=1)
    roster.apply_join(join())
    roster.apply_participants([person("a", state=DISCONNECTED), person("b", state=DISCONNECTED)])
    # "a" was forgotten, "b" is still remembered
    assert kinds(roster.apply_participants([person("a")])) == [
        "ParticipantConnected",
        "ParticipantActivated",
    ]
    assert roster.apply_participants([person("b")]) == []
    off = Roster(max_departed_sids=0)
    off.apply_join(join())
    off.apply_participants([person("a", state=DISCONNECTED)])
    assert kinds(off.apply_participants([person("a")]))[0] == "ParticipantConnected"


def test_identity_rejoin_with_new_sid_disconnects_then_connects() -> None:
    first = person("alice", "PA_1", version=9, tracks=(track("TR_old"),))
    roster = joined(first)
    second = person("alice", "PA_2", version=1, tracks=(track("TR_new"),))
    events = roster.apply_participants([second])
    assert events == [
        TrackUnpublished(identity="alice", track=first.tracks[0]),
        ParticipantDisconnected(info=first, reason=pb.DUPLICATE_IDENTITY),
        ParticipantConnected(info=second),
        ParticipantActivated(identity="alice", info=second),
        TrackPublished(identity="alice", track=second.tracks[0]),
    ]
    assert roster.remotes["alice"] is second
    assert roster.by_sid("PA_1") is None
    # late news about the replaced session changes nothing (JS would drop the new session here)
    late = person("alice", "PA_1", version=10, state=DISCONNECTED)
    assert roster.apply_participants([late, person("alice", "PA_1", version=11)]) == []
    assert roster.remotes["alice"].sid == "PA_2"


def test_events_of_a_batch_follow_snapshot_order() -> None:
    roster = joined(person("alice"))
    events = roster.apply_participants(
        [
            person("bob"),
            person("alice", state=DISCONNECTED),
            person("carol", state=JOINED),
        ]
    )
    assert kinds(events) == [
        "ParticipantConnected",
        "ParticipantActivated",
        "ParticipantDisconnected",
        "ParticipantConnected",
    ]
    assert list(roster.remotes) == ["bob", "carol"]


# -- yourself -------------------------------------------------------------------------------------


def test_self_updates_change_local_and_never_the_remotes() -> None:
    roster = joined(me=person("me", name="Me", attributes={"a": "1"}))
    new = person(
        "me",
        version=2,
        name="Me2",
        metadata="x",
        attributes={"b": "2"},
        permission=pb.ParticipantPermission(can_publish=True),
        tracks=(track("TR_mine"),),
    )
    events = roster.apply_participants([new])
    assert events == [
        ParticipantNameChanged(identity="me", local=True, old="Me", new="Me2", info=new),
        ParticipantMetadataChanged(identity="me", local=True, old="", new="x", info=new),
        ParticipantAttributesChanged(
            identity="me", local=True, changed={"a": "", "b": "2"}, info=new
        ),
        ParticipantPermissionsChanged(
            identity="me", local=True, old=None, new=new.permission, info=new
        ),
    ]
    assert roster.local is new
    assert roster.remotes == {}


def test_self_stale_foreign_sid_and_disconnected_snapshots() -> None:
    roster = joined(me=person("me", version=5, metadata="now"))
    assert roster.apply_participants([person("me", version=4, metadata="then")]) == []
    # another session of our identity (the one about to replace us): not us, not a remote
    assert roster.apply_participants([person("me", "PA_other", version=9, metadata="x")]) == []
    assert roster.local is not None
    assert roster.local.metadata == "now"
    assert roster.remotes == {}
    # our own DISCONNECTED snapshot is just an update; the LeaveRequest ends the session
    bye = person("me", version=6, state=DISCONNECTED, metadata="now")
    assert roster.apply_participants([bye]) == []
    assert roster.local.state == DISCONNECTED
    # an anonymous snapshot with our SID is ours
    anonymous = pb.ParticipantInfo(sid="PA_me", version=7, name="N", metadata="now")
    events = roster.apply_participants([anonymous])
    assert kinds(events) == ["ParticipantNameChanged"]
    assert roster.local.identity == "me"


def test_self_never_becomes_active_event() -> None:
    roster = joined(me=person("me", state=JOINED))
    assert roster.apply_participants([person("me", version=2, state=ACTIVE)]) == []


# -- room -----------------------------------------------------------------------------------------


def test_room_metadata_and_recording() -> None:
    roster = Roster()
    first = pb.Room(sid="RM_1", metadata="a")
    assert roster.apply_room(first) == [RoomUpdated(room=first)]
    second = pb.Room(sid="RM_1", metadata="b", active_recording=True)
    assert roster.apply_room(second) == [
        RoomMetadataChanged(old="a", new="b", room=second),
        RoomRecordingStatusChanged(active=True, room=second),
        RoomUpdated(room=second),
    ]
    third = pb.Room(sid="RM_1", metadata="b", num_participants=3)
    assert roster.apply_room(third) == [
        RoomRecordingStatusChanged(active=False, room=third),
        RoomUpdated(room=third),
    ]
    assert roster.room is third


def test_first_room_already_recording() -> None:
    room = pb.Room(sid="RM_1", active_recording=True)
    assert kinds(Roster().apply_room(room)) == ["RoomRecordingStatusChanged", "RoomUpdated"]


# -- full reconnect and final disconnect ----------------------------------------------------------


def test_full_reconnect_diffs_against_the_previous_picture() -> None:
    stay = person("stay", "PA_s", version=3, metadata="m1", tracks=(track("TR_s"),))
    gone = person("gone", "PA_g", tracks=(track("TR_g"),))
    moved = person("moved", "PA_m1")
    roster = Roster()
    roster.apply_join(
        join(person("me", "PA_me1", name="x"), stay, gone, moved, room=pb.Room(metadata="r1"))
    )

    stay2 = person("stay", "PA_s", version=4, metadata="m2", tracks=(track("TR_s"),))
    moved2 = person("moved", "PA_m2")
    fresh = person("fresh", "PA_f", state=JOINED)
    me2 = person("me", "PA_me2", name="y")
    room2 = pb.Room(metadata="r2")
    events = roster.apply_join(join(me2, moved2, stay2, fresh, room=room2))
    assert events == [
        TrackUnpublished(identity="gone", track=gone.tracks[0]),
        ParticipantDisconnected(info=gone, reason=pb.UNKNOWN_REASON),
        ParticipantDisconnected(info=moved, reason=pb.UNKNOWN_REASON),
        ParticipantNameChanged(identity="me", local=True, old="x", new="y", info=me2),
        ParticipantConnected(info=moved2),
        ParticipantActivated(identity="moved", info=moved2),
        ParticipantMetadataChanged(identity="stay", local=False, old="m1", new="m2", info=stay2),
        ParticipantConnected(info=fresh),
        RoomMetadataChanged(old="r1", new="r2", room=room2),
        RoomUpdated(room=room2),
    ]
    assert roster.local == me2
    assert list(roster.remotes) == ["stay", "moved", "fresh"]
    # updates for the old local SID are not ours any more
    assert roster.apply_participants([person("me", "PA_me1", version=99, name="z")]) == []


def test_full_reconnect_drops_a_remote_that_now_has_our_identity() -> None:
    roster = joined(person("twin", "PA_t"), me=person("me", "PA_me1"))
    events = roster.apply_join(join(person("twin", "PA_me2"), person("twin", "PA_t")))
    assert kinds(events) == ["ParticipantDisconnected", "RoomUpdated"]
    assert roster.remotes == {}
    assert roster.local is not None
    assert roster.local.sid == "PA_me2"


def test_join_ignores_disconnected_and_departed_entries() -> None:
    roster = joined(person("a", "PA_a"))
    roster.apply_participants([person("a", "PA_a", state=DISCONNECTED)])
    events = roster.apply_join(
        join(person("me", "PA_me2"), person("a", "PA_a"), person("b", state=DISCONNECTED))
    )
    assert kinds(events) == ["RoomUpdated"]
    assert roster.remotes == {}


def test_clear_disconnects_everyone_with_the_reason() -> None:
    a = person("a", tracks=(track("TR_a"),))
    b = person("b")
    roster = joined(a, b)
    events = roster.clear(pb.ROOM_DELETED)
    assert events == [
        TrackUnpublished(identity="a", track=a.tracks[0]),
        ParticipantDisconnected(info=a, reason=pb.ROOM_DELETED),
        ParticipantDisconnected(info=b, reason=pb.ROOM_DELETED),
    ]
    assert roster.remotes == {}
    assert roster.local is not None
    assert roster.room is not None
    assert roster.clear(pb.ROOM_DELETED) == []


def test_events_are_frozen_slotted_keyword_only() -> None:
    event = TrackPublished(identity="a", track=track("TR_1"))
    with pytest.raises(AttributeError):
        event.identity = "b"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    with pytest.raises(TypeError):
        TrackPublished("a", track("TR_1"))  # type: ignore[call-arg]
