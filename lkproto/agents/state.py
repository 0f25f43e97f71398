"""Key-value state shared through participant attributes and room metadata.

The product page's "state synchronization": each participant owns the keys of its own
attributes (PROTOCOL-MAP §7: ``UpdateParticipantMetadata.attributes`` is a patch, a key set to
``""`` is deleted, the server acknowledges with ``RequestResponse`` and broadcasts full
``ParticipantInfo`` snapshots), and everyone reads everyone's. :class:`SharedState` stores values as
JSON text in those attributes (a value never encodes to ``""``, so it cannot be mistaken for a
deletion) and reads them back decoded; a value some other client wrote as plain text is returned
as that string. Room metadata is read-only for clients (§7 Room metadata: only the server API
changes it); :class:`SharedState` exposes it and its change event.

Limits are the server's: all attributes of one participant together ≤ 64 KiB
(``LIMIT_EXCEEDED``), and the token needs ``canUpdateOwnMetadata``.

Read-your-writes: after :meth:`SharedState.set` returns, :meth:`SharedState.get` of the local
participant returns the new value even if the server's snapshot of ourselves has not arrived yet
(the acknowledged value is kept as an overlay until a snapshot shows the key).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from lkproto.errors import LocalProtocolError
from lkproto.rtc.event_emitter import EventEmitter
from lkproto.rtc.participant import Participant
from lkproto.rtc.room import Room

__all__ = ["JsonValue", "SharedState", "SharedStateEvent", "decode_value", "encode_value"]

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""What :meth:`SharedState.set` stores and :meth:`SharedState.get` returns."""

SharedStateEvent = Literal["changed", "room_metadata_changed"]
"""The names :class:`SharedState` emits; each one's handler arguments are listed on the class."""

_MISSING = object()


def encode_value(value: JsonValue) -> str:
    """The attribute text for ``value``: compact JSON.

    Raises:
        LocalProtocolError: the value is not JSON-serialisable (or is NaN/infinite).
    """
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"state value is not JSON-serialisable: {exc}") from exc


def decode_value(text: str) -> JsonValue:
    """The value of attribute text: decoded JSON, or the text itself when it is not JSON."""
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


class SharedState(EventEmitter[SharedStateEvent]):
    """Participant attributes (JSON values) and room metadata as shared key-value state.

    Events (``state.on(name, handler)``):

    * ``"changed"``: ``(participant, changed_keys: list[str])`` whenever a participant's
      attributes changed (ours included); removed keys are listed too.
    * ``"room_metadata_changed"``: ``(old_metadata, metadata)``.

    Args:
        room: the room, connected or not yet.
    """

    def __init__(self, room: Room) -> None:
        super().__init__()
        self._room = room
        self._overlay: dict[str, str] = {}  # acknowledged local writes not yet in a snapshot
        room.on("participant_attributes_changed", self._on_attributes_changed)
        room.on("room_metadata_changed", self._on_room_metadata_changed)

    def close(self) -> None:
        """Stop following the room (no more events)."""
        self._room.off("participant_attributes_changed", self._on_attributes_changed)
        self._room.off("room_metadata_changed", self._on_room_metadata_changed)

    # ---------------------------------------------------------------- writing

    async def set(self, key: str, value: JsonValue) -> None:
        """Store ``value`` under ``key`` in our attributes; returns once the server accepted it.

        Raises:
            LocalProtocolError: an empty key, or a value that is not JSON-serialisable.
            lkproto.errors.RequestRejectedError: refused (``NOT_ALLOWED`` without
                ``canUpdateOwnMetadata``, ``LIMIT_EXCEEDED`` over 64 KiB) or not answered.
        """
        await self.update({key: value})

    async def update(self, values: Mapping[str, JsonValue]) -> None:
        """Store several keys in one request (all or nothing); see :meth:`set`."""
        encoded = {_key(k): encode_value(v) for k, v in values.items()}
        if not encoded:
            return
        await self._room.local_participant.set_attributes(encoded)
        self._overlay.update(encoded)

    async def delete(self, *keys: str) -> None:
        """Remove keys from our attributes (absent keys are fine); see :meth:`set`."""
        removal = {_key(k): "" for k in keys}
        if not removal:
            return
        await self._room.local_participant.set_attributes(removal)
        self._overlay.update(removal)

    # ---------------------------------------------------------------- reading

    def get(self, participant: Participant | str, key: str, default: JsonValue = None) -> JsonValue:
        """The decoded value of ``key`` for a participant (object or identity), else ``default``.

        Unknown identities give ``default``.
        """
        raw = self._raw(participant).get(key, "")
        return decode_value(raw) if raw else default

    def items(self, participant: Participant | str) -> dict[str, JsonValue]:
        """Every key of a participant, decoded."""
        return {k: decode_value(v) for k, v in self._raw(participant).items() if v}

    @property
    def room_metadata(self) -> str:
        """The room's metadata (server-controlled)."""
        return self._room.metadata

    # ---------------------------------------------------------------- internals

    def _raw(self, participant: Participant | str) -> dict[str, str]:
        identity = participant if isinstance(participant, str) else participant.identity
        try:
            local = self._room.local_participant
        except LocalProtocolError:
            local = None
        if local is not None and identity == local.identity:
            merged = dict(local.attributes)
            merged.update(self._overlay)
            return merged
        if isinstance(participant, Participant):
            return dict(participant.attributes)
        remote = self._room.remote_participants.get(identity)
        return dict(remote.attributes) if remote is not None else {}

    def _on_attributes_changed(self, changed: dict[str, str], participant: Participant) -> None:
        try:
            local_identity = self._room.local_participant.identity
        except LocalProtocolError:
            local_identity = None
        if participant.identity == local_identity:
            for key in changed:
                self._overlay.pop(key, None)
        self.emit("changed", participant, list(changed))

    def _on_room_metadata_changed(self, old: str, new: str) -> None:
        self.emit("room_metadata_changed", old, new)


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise LocalProtocolError(f"state keys must be non-empty strings, got {key!r}")
    return key
