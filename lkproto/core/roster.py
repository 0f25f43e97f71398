"""The room model as a pure state machine: who is here, with what, and what changed.

Theory of operation
-------------------
The server never sends deltas about participants. Every ``ParticipantInfo`` it sends (in the
``JoinResponse``, in ``SignalResponse.update``) is a **full snapshot**: complete attribute map,
complete track list (PROTOCOL-MAP §7 ParticipantUpdate). :class:`Roster` keeps the latest accepted
snapshot per identity, replaces it wholesale, and *diffs* old against new to produce typed
:data:`AnyRosterEvent` values for the caller to dispatch. It holds no clock, does no I/O and never
looks at anything but its inputs.

Snapshot rules (applied to each ``ParticipantInfo`` in arrival order):

1. **Departed SIDs never return.** A SID seen with ``state == DISCONNECTED``, or replaced by a new
   SID for the same identity, is remembered; any later snapshot for it is ignored. The server mints
   a fresh ``PA_…`` SID for every session, so a late snapshot of an old session can only be stale.
   This also stops a late ``DISCONNECTED`` of an *old* session from removing the *new* one (the JS
   SDK matches disconnects by identity only and would drop the rejoined peer).
2. **Missing identity.** Servers before 1.5.2 leave ``identity`` empty in disconnect updates; it is
   recovered from the SID, as JS does (``JS:src/room/Room.ts (handleParticipantUpdates)``,
   ``sidToIdentity``). A snapshot whose identity stays unknown is ignored.
3. **Yourself.** A snapshot whose identity equals ``local.identity`` updates :attr:`Roster.local`
   (events carry ``local=True``) and never enters :attr:`Roster.remotes`. One with your identity but
   another SID belongs to a different session of your identity (the one about to replace you with
   ``DUPLICATE_IDENTITY``) and is ignored; JS would adopt its SID.
4. **Disconnected.** ``state == DISCONNECTED`` removes the participant holding that SID, whatever
   the version (JS checks the state before any version), emitting ``TrackUnpublished`` for each
   of its tracks and then ``ParticipantDisconnected(reason=snapshot.disconnect_reason)``, the
   order of ``JS:src/room/Room.ts (handleParticipantDisconnected)``. Your own disconnected
   snapshot is applied like any other update: leaving is signalled by the session's
   ``LeaveRequest``, not by the roster.
5. **Versions.** For the *same* SID a snapshot with a lower ``version`` than the one held is
   ignored. An *equal* version is accepted and diffed (normally yielding no events), exactly as
   ``JS:src/room/participant/Participant.ts (updateInfo)`` skips only when ``held.version >
   new.version``. A different SID is a different session and is never compared by version.
6. **Rejoin.** Same identity, new SID (duplicate identity, or a rejoin whose disconnect we missed):
   the old session is removed as in rule 4 with reason ``DUPLICATE_IDENTITY`` (the reason the
   server gives the session it replaces, PROTOCOL-MAP §1 LeaveRequest), then the new one is added.

Event order (deterministic; a list is returned per call)
--------------------------------------------------------
Snapshots are processed in the order given; the events of one snapshot are contiguous.

* **New participant**: ``ParticipantConnected``, then ``ParticipantActivated`` if it is already
  ``ACTIVE``, then ``TrackPublished`` per track in snapshot order. JS emits ``ParticipantConnected``
  "before the initial track events" and then runs ``updateInfo``, which emits ``Active`` and one
  ``TrackPublished`` per track (``JS:src/room/Room.ts (getOrCreateParticipant)``,
  ``JS:src/room/participant/RemoteParticipant.ts (updateInfo)``). No name/metadata/attribute/
  permission events for a newcomer: its snapshot *is* the initial state. (JS also fires a
  ``ParticipantPermissionsChanged`` there, an artefact of comparing against ``undefined``.)
* **Leaving participant**: ``TrackUnpublished`` per held track in held order, then
  ``ParticipantDisconnected`` (info = the last snapshot held, so tracks and attributes are still
  visible; ``reason`` from the disconnect snapshot, or as documented per method).
* **Changed participant** (same SID): ``ParticipantNameChanged``, ``ParticipantMetadataChanged``,
  ``ParticipantAttributesChanged``, ``ParticipantActivated`` (remote only), then
  ``ParticipantPermissionsChanged``: the order of ``Participant.updateInfo``. Then, remote only,
  the track diff of ``RemoteParticipant.updateInfo``: ``TrackMuted``/``TrackUnmuted`` for kept
  tracks in new-snapshot order, ``TrackUnpublished`` for vanished tracks in held order,
  ``TrackPublished`` for new tracks in new-snapshot order. Tracks are keyed by ``TrackInfo.sid``;
  a repeated SID inside one snapshot counts once (first occurrence).
* **Room**: ``RoomMetadataChanged``, ``RoomRecordingStatusChanged``, then always ``RoomUpdated``
  (``JS:src/room/Room.ts (handleRoomUpdate)``).

Your own tracks produce no track events: publications are owned by the local publish flow (JS
``LocalParticipant.updateInfo`` only reconciles mute state with the server).

Deliberate differences from JS, all for a full reconnect and final disconnect: JS unwinds every
remote participant when a full reconnect starts and recreates them from the new ``JoinResponse``;
:meth:`Roster.apply_join` instead diffs, so a peer that stayed (same SID) only yields change
events. JS's final disconnect clears the participants silently; :meth:`Roster.clear` reports each
one as disconnected. JS compares a fixed subset of permission fields; this compares the whole
message. JS suppresses events while a first connect is in progress (``emitWhenConnected``); this
module returns them and leaves that policy to the caller.

The roster keeps references to the snapshots it is given and puts them in events: treat them as
read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from lkproto.errors import LocalProtocolError, RemoteProtocolError
from lkproto.wire import pb

__all__ = [
    "DEFAULT_MAX_DEPARTED_SIDS",
    "AnyRosterEvent",
    "ParticipantActivated",
    "ParticipantAttributesChanged",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "ParticipantMetadataChanged",
    "ParticipantNameChanged",
    "ParticipantPermissionsChanged",
    "RoomMetadataChanged",
    "RoomRecordingStatusChanged",
    "RoomUpdated",
    "Roster",
    "RosterEvent",
    "TrackMuted",
    "TrackPublished",
    "TrackUnmuted",
    "TrackUnpublished",
]

# How many departed participant SIDs are remembered to ignore late snapshots of ended sessions
# (module docstring, rule 1). The oldest is forgotten first; a late snapshot only ever trails the
# disconnect by one server batch, so a few thousand is generous even in very busy rooms.
DEFAULT_MAX_DEPARTED_SIDS: Final = 4096

_DISCONNECTED: Final = pb.ParticipantInfo.DISCONNECTED
_ACTIVE: Final = pb.ParticipantInfo.ACTIVE
# PROTOCOL-MAP §1 LeaveRequest: the server closes the older session of a duplicated identity with
# this reason; it is the reason reported when a new SID replaces a held one.
_REPLACED_REASON: Final = pb.DUPLICATE_IDENTITY
# A peer missing from the JoinResponse of a full reconnect left while we were away: no reason known.
_GONE_REASON: Final = pb.UNKNOWN_REASON


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterEvent:
    """Base class of every event :class:`Roster` emits."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantConnected(RosterEvent):
    """A remote participant appeared.

    Attributes:
        info: its first snapshot.
    """

    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDisconnected(RosterEvent):
    """A remote participant left (its ``TrackUnpublished`` events come just before).

    Attributes:
        info: the last snapshot held for it.
        reason: ``pb.DisconnectReason`` value: the snapshot's ``disconnect_reason``,
            ``DUPLICATE_IDENTITY`` when a new session replaced it, ``UNKNOWN_REASON`` when a full
            reconnect found it gone, or the reason given to :meth:`Roster.clear`.
    """

    info: pb.ParticipantInfo
    reason: pb.DisconnectReason.ValueType


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantMetadataChanged(RosterEvent):
    """A participant's ``metadata`` changed.

    Attributes:
        identity: whose.
        local: ``True`` for yourself.
        old: previous metadata.
        new: current metadata.
        info: the snapshot that carried the change.
    """

    identity: str
    local: bool
    old: str
    new: str
    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantNameChanged(RosterEvent):
    """A participant's display ``name`` changed.

    Attributes:
        identity: whose.
        local: ``True`` for yourself.
        old: previous name.
        new: current name.
        info: the snapshot that carried the change.
    """

    identity: str
    local: bool
    old: str
    new: str
    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantAttributesChanged(RosterEvent):
    """Some of a participant's attributes were set, changed or removed.

    Attributes:
        identity: whose.
        local: ``True`` for yourself.
        changed: key → new value for keys set or changed, key → ``""`` for keys removed (the
            shape of JS ``diffAttributes``), in key order.
        info: the snapshot that carried the change.
    """

    identity: str
    local: bool
    changed: dict[str, str]
    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantPermissionsChanged(RosterEvent):
    """A participant's permissions changed.

    Attributes:
        identity: whose.
        local: ``True`` for yourself.
        old: previous permissions, ``None`` if the previous snapshot carried none.
        new: current permissions.
        info: the snapshot that carried the change.
    """

    identity: str
    local: bool
    old: pb.ParticipantPermission | None
    new: pb.ParticipantPermission
    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantActivated(RosterEvent):
    """A remote participant reached ``state == ACTIVE`` (its primary peer connection is up).

    Attributes:
        identity: whose.
        info: the snapshot in state ``ACTIVE``.
    """

    identity: str
    info: pb.ParticipantInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished(RosterEvent):
    """A remote participant has a track it did not have before (or is new with it).

    Attributes:
        identity: the publisher.
        track: the track as announced.
    """

    identity: str
    track: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnpublished(RosterEvent):
    """A remote track is gone (unpublished, or its publisher left).

    Attributes:
        identity: the publisher.
        track: the last description held.
    """

    identity: str
    track: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackMuted(RosterEvent):
    """A remote track became muted.

    Attributes:
        identity: the publisher.
        track: the new description.
    """

    identity: str
    track: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnmuted(RosterEvent):
    """A remote track became unmuted.

    Attributes:
        identity: the publisher.
        track: the new description.
    """

    identity: str
    track: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomMetadataChanged(RosterEvent):
    """The room's metadata changed (not emitted for the first room description).

    Attributes:
        old: previous metadata.
        new: current metadata.
        room: the new room description.
    """

    old: str
    new: str
    room: pb.Room


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomRecordingStatusChanged(RosterEvent):
    """The room started or stopped recording (or is already recording when first described).

    Attributes:
        active: ``Room.active_recording`` now.
        room: the new room description.
    """

    active: bool
    room: pb.Room


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomUpdated(RosterEvent):
    """A new room description was applied; always last among the room events of one update.

    Attributes:
        room: the new room description.
    """

    room: pb.Room


AnyRosterEvent: TypeAlias = (
    ParticipantConnected
    | ParticipantDisconnected
    | ParticipantMetadataChanged
    | ParticipantNameChanged
    | ParticipantAttributesChanged
    | ParticipantPermissionsChanged
    | ParticipantActivated
    | TrackPublished
    | TrackUnpublished
    | TrackMuted
    | TrackUnmuted
    | RoomMetadataChanged
    | RoomRecordingStatusChanged
    | RoomUpdated
)
"""Every concrete roster event, for exhaustive ``match`` with ``assert_never``."""


def _tracks(info: pb.ParticipantInfo) -> dict[str, pb.TrackInfo]:
    """Tracks by SID, first occurrence wins, in snapshot order."""
    out: dict[str, pb.TrackInfo] = {}
    for track in info.tracks:
        out.setdefault(track.sid, track)
    return out


def _attribute_changes(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    return {
        key: new.get(key, "") for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
    }


class Roster:
    """Room, local participant and remote participants, updated from server snapshots.

    Feed it the ``JoinResponse`` (:meth:`apply_join`), every ``SignalResponse.update``
    (:meth:`apply_participants`) and ``SignalResponse.room_update`` (:meth:`apply_room`); call
    :meth:`clear` when the session ends for good. Each call returns the events it caused, in the
    order documented in the module docstring.

    Args:
        max_departed_sids: how many ended SIDs to remember (rule 1 of the module docstring).

    Raises:
        LocalProtocolError: ``max_departed_sids`` is negative.
    """

    __slots__ = ("_departed", "_local", "_max_departed", "_remotes", "_room", "_sid_index")

    def __init__(self, *, max_departed_sids: int = DEFAULT_MAX_DEPARTED_SIDS) -> None:
        if max_departed_sids < 0:
            raise LocalProtocolError(f"max_departed_sids must be >= 0, got {max_departed_sids}")
        self._max_departed = max_departed_sids
        self._room: pb.Room | None = None
        self._local: pb.ParticipantInfo | None = None
        self._remotes: dict[str, pb.ParticipantInfo] = {}
        self._sid_index: dict[str, str] = {}
        # insertion-ordered set: the oldest departed SID is forgotten first
        self._departed: dict[str, None] = {}

    # -- views ---------------------------------------------------------------------------------

    @property
    def room(self) -> pb.Room | None:
        """The latest room description, ``None`` before the first join."""
        return self._room

    @property
    def local(self) -> pb.ParticipantInfo | None:
        """Your own latest snapshot, ``None`` before the first join."""
        return self._local

    @property
    def remotes(self) -> Mapping[str, pb.ParticipantInfo]:
        """Remote participants by identity, in order of arrival (a read-only live view)."""
        return MappingProxyType(self._remotes)

    def by_sid(self, sid: str) -> pb.ParticipantInfo | None:
        """The participant (remote or yourself) currently holding participant SID ``sid``."""
        if self._local is not None and sid and self._local.sid == sid:
            return self._local
        identity = self._sid_index.get(sid)
        return None if identity is None else self._remotes[identity]

    # -- inputs --------------------------------------------------------------------------------

    def apply_join(self, join: pb.JoinResponse) -> list[AnyRosterEvent]:
        """Take the picture of a ``JoinResponse``: first join, or a full reconnect.

        The result is diffed against what was held before. Order: held peers whose SID is not
        among ``other_participants`` (they left, or rejoined with a new SID, while we were away;
        also any held peer with your new identity) leave, with reason ``UNKNOWN_REASON``; then
        your own changes (``local=True``) against the previous local snapshot, if any (the new
        local has a new SID: it is replaced, not version-compared); then ``other_participants``
        in order under the snapshot rules (a peer still there with the same SID yields only
        change events, a new SID connects); then the room events of :meth:`apply_room`. This is
        JS's order (local, others, room: ``JS:src/room/Room.ts (applyJoinResponse)``) with the
        departures, which JS emits when the restart begins, moved to the front.

        On a first join every peer yields ``ParticipantConnected`` (+ activation and tracks); JS
        swallows these because the room is not yet connected, a caller mirroring it may drop them.

        Raises:
            RemoteProtocolError: the response lacks your participant (no identity or no SID).
        """
        me = join.participant
        if not join.HasField("participant") or not me.identity or not me.sid:
            raise RemoteProtocolError("JoinResponse without participant identity and sid")
        previous = self._local
        self._local = me
        out: list[AnyRosterEvent] = []

        staying = {
            info.sid
            for info in join.other_participants
            if info.state != _DISCONNECTED
            and info.sid not in self._departed
            and (info.identity or self._sid_index.get(info.sid, "")) != me.identity
        }
        for identity, held in list(self._remotes.items()):
            if identity == me.identity or held.sid not in staying:
                self._remove(held, _GONE_REASON, out)

        if previous is not None:
            self._diff_common(previous, me, local=True, out=out)
        for info in join.other_participants:
            self._apply_snapshot(info, out)
        if join.HasField("room"):
            out.extend(self.apply_room(join.room))
        return out

    def apply_participants(self, infos: Sequence[pb.ParticipantInfo]) -> list[AnyRosterEvent]:
        """Apply a ``ParticipantUpdate``'s snapshots in order (rules in the module docstring).

        Raises:
            LocalProtocolError: called before :meth:`apply_join` (the local identity is unknown).
        """
        if self._local is None:
            raise LocalProtocolError("apply_join must come first: the local identity is unknown")
        out: list[AnyRosterEvent] = []
        for info in infos:
            self._apply_snapshot(info, out)
        return out

    def apply_room(self, room: pb.Room) -> list[AnyRosterEvent]:
        """Replace the room description (``SignalResponse.room_update``).

        Emits ``RoomMetadataChanged`` if metadata changed (never for the first description, as
        JS), ``RoomRecordingStatusChanged`` if ``active_recording`` changed (or is already on in
        the first description), and always ``RoomUpdated`` last.
        """
        old = self._room
        self._room = room
        out: list[AnyRosterEvent] = []
        if old is not None and old.metadata != room.metadata:
            out.append(RoomMetadataChanged(old=old.metadata, new=room.metadata, room=room))
        was_recording = old is not None and old.active_recording
        if was_recording != room.active_recording:
            out.append(RoomRecordingStatusChanged(active=room.active_recording, room=room))
        out.append(RoomUpdated(room=room))
        return out

    def clear(self, reason: pb.DisconnectReason.ValueType) -> list[AnyRosterEvent]:
        """Report every remote participant as gone, with ``reason`` (the session ended).

        The room and local snapshots are kept for inspection; a later :meth:`apply_join` starts
        over from them.
        """
        out: list[AnyRosterEvent] = []
        for held in list(self._remotes.values()):
            self._remove(held, reason, out)
        return out

    # -- machinery -----------------------------------------------------------------------------

    def _apply_snapshot(self, info: pb.ParticipantInfo, out: list[AnyRosterEvent]) -> None:
        local = self._local
        assert local is not None
        if info.sid in self._departed:
            return
        identity = info.identity or self._sid_index.get(info.sid, "")
        if not identity and info.sid and info.sid == local.sid:
            identity = local.identity
        if not identity:
            if info.state == _DISCONNECTED:
                self._depart(info.sid)
            return
        if info.identity != identity:
            filled = pb.ParticipantInfo()
            filled.CopyFrom(info)
            filled.identity = identity
            info = filled

        if identity == local.identity:
            if info.sid == local.sid and info.version >= local.version:
                self._local = info
                self._diff_common(local, info, local=True, out=out)
            return

        held = self._remotes.get(identity)
        if info.state == _DISCONNECTED:
            self._depart(info.sid)
            if held is not None and held.sid == info.sid:
                self._remove(held, info.disconnect_reason, out)
            return
        if held is None:
            self._add(info, out)
        elif held.sid != info.sid:
            self._remove(held, _REPLACED_REASON, out)
            self._add(info, out)
        elif info.version >= held.version:
            self._remotes[identity] = info
            self._diff_common(held, info, local=False, out=out)
            self._diff_tracks(held, info, out)

    def _add(self, info: pb.ParticipantInfo, out: list[AnyRosterEvent]) -> None:
        self._remotes[info.identity] = info
        self._sid_index[info.sid] = info.identity
        out.append(ParticipantConnected(info=info))
        if info.state == _ACTIVE:
            out.append(ParticipantActivated(identity=info.identity, info=info))
        out.extend(TrackPublished(identity=info.identity, track=t) for t in _tracks(info).values())

    def _remove(
        self,
        held: pb.ParticipantInfo,
        reason: pb.DisconnectReason.ValueType,
        out: list[AnyRosterEvent],
    ) -> None:
        del self._remotes[held.identity]
        self._sid_index.pop(held.sid, None)
        self._depart(held.sid)
        out.extend(
            TrackUnpublished(identity=held.identity, track=t) for t in _tracks(held).values()
        )
        out.append(ParticipantDisconnected(info=held, reason=reason))

    def _depart(self, sid: str) -> None:
        if not sid or self._max_departed == 0:
            return
        self._departed.pop(sid, None)
        self._departed[sid] = None
        while len(self._departed) > self._max_departed:
            del self._departed[next(iter(self._departed))]

    @staticmethod
    def _diff_common(
        old: pb.ParticipantInfo,
        new: pb.ParticipantInfo,
        *,
        local: bool,
        out: list[AnyRosterEvent],
    ) -> None:
        identity = new.identity
        if old.name != new.name:
            out.append(
                ParticipantNameChanged(
                    identity=identity, local=local, old=old.name, new=new.name, info=new
                )
            )
        if old.metadata != new.metadata:
            out.append(
                ParticipantMetadataChanged(
                    identity=identity, local=local, old=old.metadata, new=new.metadata, info=new
                )
            )
        changed = _attribute_changes(old.attributes, new.attributes)
        if changed:
            out.append(
                ParticipantAttributesChanged(
                    identity=identity, local=local, changed=changed, info=new
                )
            )
        if not local and new.state == _ACTIVE and old.state != _ACTIVE:
            out.append(ParticipantActivated(identity=identity, info=new))
        # JS only looks at permissions a snapshot carries (``if (info.permission)``)
        if new.HasField("permission"):
            had = old.HasField("permission")
            if not had or old.permission != new.permission:
                out.append(
                    ParticipantPermissionsChanged(
                        identity=identity,
                        local=local,
                        old=old.permission if had else None,
                        new=new.permission,
                        info=new,
                    )
                )

    @staticmethod
    def _diff_tracks(
        old: pb.ParticipantInfo, new: pb.ParticipantInfo, out: list[AnyRosterEvent]
    ) -> None:
        identity = new.identity
        before = _tracks(old)
        after = _tracks(new)
        for sid, track in after.items():
            prev = before.get(sid)
            if prev is not None and prev.muted != track.muted:
                event = TrackMuted if track.muted else TrackUnmuted
                out.append(event(identity=identity, track=track))
        out.extend(
            TrackUnpublished(identity=identity, track=t)
            for sid, t in before.items()
            if sid not in after
        )
        out.extend(
            TrackPublished(identity=identity, track=t)
            for sid, t in after.items()
            if sid not in before
        )
