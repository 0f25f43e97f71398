"""Data tracks, sans-I/O: publications, subscriptions and frames (PROTOCOL-MAP §12).

One :class:`DataTrackManager` per session holds everything a client keeps about data tracks:

* **Publishing.** :meth:`DataTrackManager.publish` picks a handle (non-zero u16, unique among this
  participant's pending and published tracks: ``S:pkg/rtc/participant_data_track.go``) and returns
  the ``PublishDataTrackRequest`` to send. The server answers with a ``PublishDataTrackResponse``
  carrying the track's SID, or a ``RequestResponse`` naming the request and a reason
  (``NOT_ALLOWED``, ``INVALID_HANDLE``, ``INVALID_NAME``, ``DUPLICATE_HANDLE``,
  ``DUPLICATE_NAME``, ...). Both become events keyed by the handle. An
  ``UnpublishDataTrackResponse`` ends a publication, whether we asked for it or the server did.
* **Sending.** :meth:`DataTrackManager.packetize` turns a frame of a published track into packets,
  keeping the per-track sequence and frame counters and a 90 kHz timestamp that starts at a
  random value, as the official packetizer does (``RS:livekit-datatrack/src/local/packetizer.rs``).
* **Remote tracks.** :meth:`DataTrackManager.sync_remotes` diffs the ``data_tracks`` of the
  remote ``ParticipantInfo`` snapshots and reports tracks that appeared or went away.
* **Subscribing.** :meth:`DataTrackManager.subscribe` / :meth:`~DataTrackManager.unsubscribe`
  count readers per track and return the ``UpdateDataSubscription`` to send on the first and the
  last. The server then sends ``DataTrackSubscriberHandles``: the handle it will write into the
  packets it forwards to us, per track (it rewrites the publisher's handle). Updates are merged.
* **Receiving.** :meth:`DataTrackManager.receive_packet` decodes a packet, maps its handle to a
  subscribed track and reassembles frames with one bounded
  :class:`~lkproto.wire.data_track.FrameAssembler` per track. Malformed packets and packets for
  unknown or unsubscribed handles are counted and dropped, never raised: they are remote input.
* **End-to-end encryption.** In a room with E2EE a :class:`DataTrackCipher` is given: tracks are
  published with ``encryption = GCM`` and every frame is encrypted whole, before packetising,
  exactly as a data packet's value is (AES-128-GCM, no AAD, the sender's current key, a 12-byte
  IV), the key index and IV travelling in every packet's E2EE extension
  (``RS:livekit-datatrack/src/local/pipeline.rs (encrypt_if_needed)``,
  ``RS:livekit/src/room/e2ee/data_track.rs``, which calls the same ``encrypt_data`` /
  ``decrypt_data`` as data packets). A remote encrypted frame is decrypted with its publisher's
  key ring; one without the extension or that does not decrypt is dropped and counted, and the
  subscription goes on (``RS:…/remote/pipeline.rs (decrypt_if_needed)``).
* **Full reconnect.** :meth:`DataTrackManager.republish_requests` asks the new session for every
  live track again with the same handle, name and encryption; until the answer the track stays
  published but refuses frames, then it carries the new SID
  (``RS:livekit-datatrack/src/local/manager.rs (on_republish_tracks)``). A subscriber of the
  official SDK recognises the track by publisher identity and handle and keeps its subscription
  (``RS:…/remote/manager.rs (handle_sid_reassigned)``).
* **A remote publisher's full reconnect.** Its old session leaves with ``DUPLICATE_IDENTITY``
  (or is displaced by a snapshot of the same identity under a new SID, roster rule 6) and its
  new session publishes the same tracks again under new SIDs. Such a publisher's tracks are
  held for :data:`REMOTE_REPUBLISH_GRACE_S` instead of being reported gone; a track of the same
  publisher identity and name that appears meanwhile takes the held one's place
  (:class:`RemoteDataTrackRepublished`: readers, reassembly settings and the subscription carry
  over to the new SID, which must be subscribed to again). A held track that does not come back
  within the grace is reported gone by :meth:`DataTrackManager.handle_timer`. The official SDK
  keeps its ``RemoteDataTrack`` and the subscriber's stream the same way.

The only deadline is that grace: :meth:`DataTrackManager.get_timer` /
:meth:`DataTrackManager.handle_timer`.

No clock is kept: ``now`` (seconds, any monotonic origin) is passed where a timestamp is made.
Randomness is injected (``random_u32``) so tests are deterministic.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from lkproto.core.reconnect import REJOIN_HOLD_S
from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire import pb
from lkproto.wire.data_track import (
    DATA_TRACK_MTU_BYTES,
    MAX_HANDLE,
    TIMESTAMP_CLOCK_HZ,
    E2eeExtension,
    FrameAssembler,
    decode_packet,
    packetize,
)

if TYPE_CHECKING:
    from lkproto.core.e2ee import KeyProvider

__all__ = [
    "MAX_NAME_CHARS",
    "REMOTE_REPUBLISH_GRACE_S",
    "AnyDataTrackEvent",
    "DataTrackCipher",
    "DataTrackEvent",
    "DataTrackManager",
    "FrameReceived",
    "LocalDataTrackRepublished",
    "LocalDataTrackUnpublished",
    "PublishAccepted",
    "PublishRefused",
    "RemoteDataTrackPublished",
    "RemoteDataTrackRepublished",
    "RemoteDataTrackUnpublished",
]

MAX_NAME_CHARS: Final = 256
"""Longest track name the server accepts (``S:pkg/rtc/participant_data_track.go``: 1-256)."""

REMOTE_REPUBLISH_GRACE_S: Final = REJOIN_HOLD_S + 5.0
"""How long (25 s) the tracks of a remote publisher whose session was replaced wait for its new
session to publish them again. The same bound as a byte stream's reconnect grace
(:data:`lkproto.core.streams.DEFAULT_RECONNECT_GRACE_S`): the rejoin hold of a full reconnect
(:data:`lkproto.core.reconnect.REJOIN_HOLD_S`, 20 s) plus the time to publish again."""

_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackEvent:
    """Base of the data-track events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishAccepted(DataTrackEvent):
    """The server accepted our ``PublishDataTrackRequest``.

    Attributes:
        handle: the handle we chose.
        info: the track as the server registered it (SID ``DTR_...``).
    """

    handle: int
    info: pb.DataTrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishRefused(DataTrackEvent):
    """The server refused our ``PublishDataTrackRequest`` (a ``RequestResponse``).

    Attributes:
        handle: the handle we chose.
        reason: the ``RequestResponse.Reason`` name (``DUPLICATE_NAME``, ``NOT_ALLOWED``, ...).
        message: the server's explanation.
    """

    handle: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDataTrackUnpublished(DataTrackEvent):
    """One of our data tracks is no longer published (we asked, or the server ended it).

    Attributes:
        handle: its handle.
        sid: its SID.
    """

    handle: int
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDataTrackRepublished(DataTrackEvent):
    """The session that replaced ours (full reconnect) accepted one of our tracks again.

    Attributes:
        handle: its handle (unchanged).
        previous_sid: the SID the old session had given it.
        info: the track as the new session registered it (new SID).
    """

    handle: int
    previous_sid: str
    info: pb.DataTrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteDataTrackPublished(DataTrackEvent):
    """A remote participant's data track appeared in a roster snapshot.

    Attributes:
        publisher_identity: the publisher's identity.
        publisher_sid: the publisher's participant SID.
        info: the track.
    """

    publisher_identity: str
    publisher_sid: str
    info: pb.DataTrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteDataTrackUnpublished(DataTrackEvent):
    """A remote data track went away (unpublished, or its publisher left).

    Attributes:
        publisher_identity: the publisher's identity.
        sid: the track's SID.
    """

    publisher_identity: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteDataTrackRepublished(DataTrackEvent):
    """A held remote track came back from its publisher's new session (full reconnect).

    The track keeps its readers; from now on it is known by ``info.sid``. If it had readers,
    :meth:`DataTrackManager.resubscribe_request` gives the subscription to send for the new SID.

    Attributes:
        publisher_identity: the publisher's identity (unchanged).
        publisher_sid: the participant SID of the publisher's new session.
        previous_sid: the SID the track had in the old session.
        info: the track as the new session announced it.
    """

    publisher_identity: str
    publisher_sid: str
    previous_sid: str
    info: pb.DataTrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReceived(DataTrackEvent):
    """A complete frame of a subscribed track.

    Attributes:
        track_sid: the track's SID.
        payload: the frame's bytes.
        user_timestamp: the sender's application timestamp, if any.
    """

    track_sid: str
    payload: bytes
    user_timestamp: int | None


AnyDataTrackEvent = (
    PublishAccepted
    | PublishRefused
    | LocalDataTrackUnpublished
    | LocalDataTrackRepublished
    | RemoteDataTrackPublished
    | RemoteDataTrackUnpublished
    | RemoteDataTrackRepublished
    | FrameReceived
)
"""Every event :class:`DataTrackManager` returns."""


@dataclass(slots=True)
class _Outgoing:
    name: str
    sid: str
    encrypted: bool = False
    live: bool = True  # False once we asked to unpublish: no more frames
    republishing: bool = False  # asked again of a new session, not answered yet: no frames
    sequence: int = 0
    frame_number: int = 0


class DataTrackCipher:
    """End-to-end encryption of data-track frames with the room's key provider (§11, §12).

    A frame is sealed as a data packet's value is (``KeyProvider.encrypt_packet``): AES-GCM
    under the key of the sender's current slot, no AAD, a fresh 12-byte IV (8 random bytes and
    a counter, :func:`lkproto.core.e2ee.data_iv`'s layout). Opening tries the slot's key and,
    once derived, its next ratchets (:meth:`lkproto.core.e2ee.KeyHandler.open`). Deriving
    ratchets costs up to 32 key derivations, so :meth:`open` never derives: it records the
    wanted derivation (:meth:`take_derivations`) for the driver to run off the event loop, and
    drops the frame meanwhile (a data track is lossy by contract).

    Args:
        provider: the room's keys.
        local_identity: the local participant's identity (known once joined).
        random_bytes: IV randomness (``os.urandom`` in a room; tests inject a fixed source).
    """

    __slots__ = ("_counter", "_local_identity", "_random_bytes", "_wanted", "provider")

    def __init__(
        self,
        provider: KeyProvider,
        *,
        local_identity: Callable[[], str],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.provider = provider
        self._local_identity = local_identity
        self._random_bytes = random_bytes
        self._counter = int.from_bytes(random_bytes(4), "big")
        self._wanted: set[tuple[str, int]] = set()

    def seal(self, payload: bytes) -> tuple[bytes, E2eeExtension]:
        """Encrypt one of our frames; returns the ciphertext (with its tag) and the extension.

        Raises:
            LocalProtocolError: no key is set to encrypt with (nothing goes out in clear text).
        """
        handler = self.provider.handler_for(self._local_identity())
        index = 0 if handler is None else handler.current_index
        key = None if handler is None else handler.key(index)
        if key is None:
            raise LocalProtocolError("no end-to-end encryption key set to encrypt frames with")
        self._counter = (self._counter + 1) & _U32
        iv = self._random_bytes(8) + struct.pack(">I", self._counter)
        sealed = self.provider.crypto.aes_gcm_encrypt(key, iv, payload, b"")
        return sealed, E2eeExtension(key_index=index, iv=iv)

    def open(self, identity: str, payload: bytes, e2ee: E2eeExtension) -> bytes | None:
        """Decrypt a frame of ``identity``'s; ``None`` when it does not open (yet)."""
        handler = self.provider.handler_for(identity)
        if handler is None:
            return None
        crypto = self.provider.crypto
        iv, index = e2ee.iv, e2ee.key_index

        def attempt(key: bytes) -> bytes | None:
            return crypto.aes_gcm_decrypt(key, iv, payload, b"")

        if not handler.window_derived(index):
            plain = handler.peek(index, attempt)
            if plain is None:
                self._wanted.add((identity, index))
            return plain
        plain, _state = handler.open(index, attempt)
        return plain

    def take_derivations(self) -> list[tuple[str, int]]:
        """The (identity, key index) pairs whose ratchets :meth:`open` wanted since last asked."""
        wanted = sorted(self._wanted)
        self._wanted.clear()
        return wanted

    def derive(self, identity: str, key_index: int) -> None:
        """Derive the ratchets of ``identity``'s slot ``key_index`` (slow; any thread)."""
        handler = self.provider.handler_for(identity)
        if handler is not None:
            handler.derive_window(key_index)


@dataclass(slots=True)
class _Remote:
    publisher_identity: str
    info: pb.DataTrackInfo
    publisher_sid: str = ""
    held_until: float | None = None  # set while waiting for the publisher's new session


def _random_u32() -> int:
    return secrets.randbits(32)


class DataTrackManager:
    """Client-side data-track state of one session (see the module docstring).

    Args:
        random_u32: source of the random start of the 90 kHz timestamp (default: ``secrets``).
        mtu: largest packet built, in bytes (default: the official 16 000).
        max_partial_frames: incomplete frames kept per subscribed track (official default 1).
        cipher: the room's end-to-end encryption, if it has it: our tracks are then published
            encrypted, and encrypted remote tracks can be subscribed to.

    Raises:
        LocalProtocolError: ``mtu`` or ``max_partial_frames`` is not a positive int.
    """

    __slots__ = (
        "_abandoned",
        "_aliases",
        "_assemblers",
        "_cipher",
        "_clock_base",
        "_max_partial",
        "_mtu",
        "_next_handle",
        "_outgoing",
        "_pending",
        "_readers",
        "_remotes",
        "_sub_handles",
        "malformed_packets",
        "undecryptable_frames",
        "unrouted_packets",
    )

    def __init__(
        self,
        *,
        random_u32: Callable[[], int] = _random_u32,
        mtu: int = DATA_TRACK_MTU_BYTES,
        max_partial_frames: int = 1,
        cipher: DataTrackCipher | None = None,
    ) -> None:
        for name, value in (("mtu", mtu), ("max_partial_frames", max_partial_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LocalProtocolError(f"{name} must be a positive int, got {value!r}")
        self._mtu = mtu
        self._max_partial = max_partial_frames
        self._cipher = cipher
        self._clock_base = random_u32() & _U32
        self._next_handle = 1
        self._pending: dict[int, str] = {}  # handle -> name, awaiting the server's answer
        # handle -> name of requests nobody waits for any more; a late acceptance still
        # creates the track at the server, so it is reported (and taken back by the driver).
        self._abandoned: dict[int, str] = {}
        self._outgoing: dict[int, _Outgoing] = {}  # handle -> published track
        self._remotes: dict[str, _Remote] = {}  # track SID -> remote track
        # previous SID -> the SID a republished remote track took (see resolve_sid)
        self._aliases: dict[str, str] = {}
        self._readers: dict[str, int] = {}  # track SID -> subscribers here
        self._sub_handles: dict[int, str] = {}  # subscriber handle -> track SID
        self._assemblers: dict[str, FrameAssembler] = {}
        self.malformed_packets = 0
        """Packets dropped because they did not decode."""
        self.unrouted_packets = 0
        """Packets dropped because no subscribed track holds their handle."""
        self.undecryptable_frames = 0
        """Frames of encrypted tracks dropped: no E2EE extension, or they did not decrypt."""

    @property
    def cipher(self) -> DataTrackCipher | None:
        """The room's end-to-end encryption of frames, if any."""
        return self._cipher

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, name: str) -> tuple[int, pb.SignalRequest]:
        """Start publishing a data track named ``name``.

        Returns:
            The handle chosen and the ``SignalRequest`` to send. The answer arrives as
            :class:`PublishAccepted` or :class:`PublishRefused` for that handle.

        Raises:
            LocalProtocolError: ``name`` is empty or longer than 256 characters (the server
                would refuse it with ``INVALID_NAME``), or every handle is in use.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise LocalProtocolError(
                f"a data track name must be 1-{MAX_NAME_CHARS} characters, got {name!r}"
            )
        handle = self._allocate_handle()
        self._pending[handle] = name
        return handle, self._publish_request(handle, name, encrypted=self._cipher is not None)

    @staticmethod
    def _publish_request(handle: int, name: str, *, encrypted: bool) -> pb.SignalRequest:
        # The official SDK asks for GCM exactly when the room has E2EE on
        # (RS:livekit-datatrack/src/local/manager.rs (on_publish_request), local/proto.rs).
        encryption = pb.Encryption.GCM if encrypted else pb.Encryption.NONE
        return pb.SignalRequest(
            publish_data_track_request=pb.PublishDataTrackRequest(
                pub_handle=handle, name=name, encryption=encryption
            )
        )

    def _allocate_handle(self) -> int:
        # Handles advance and wrap rather than reuse the lowest free one, so a late packet or
        # answer for an old track is never mistaken for a new one.
        for _ in range(MAX_HANDLE):
            handle = self._next_handle
            self._next_handle = handle % MAX_HANDLE + 1
            if not (
                handle in self._pending or handle in self._outgoing or handle in self._abandoned
            ):
                return handle
        raise LocalProtocolError("all 65 535 data track handles are in use")

    def unpublish(self, handle: int) -> pb.SignalRequest | None:
        """Ask the server to end the publication of ``handle``.

        The track stops sending at once; :class:`LocalDataTrackUnpublished` follows the server's
        ``UnpublishDataTrackResponse``. Returns ``None`` when the handle is not published.
        """
        track = self._outgoing.get(handle)
        if track is None or not track.live:
            return None
        track.live = False  # the entry itself goes when the server confirms
        return pb.SignalRequest(
            unpublish_data_track_request=pb.UnpublishDataTrackRequest(pub_handle=handle)
        )

    def is_published(self, handle: int) -> bool:
        """Whether frames may be sent on ``handle``."""
        track = self._outgoing.get(handle)
        return track is not None and track.live

    def packetize(
        self, handle: int, payload: bytes, user_timestamp: int | None, now: float
    ) -> list[bytes]:
        """Cut one frame of the published track ``handle`` into serialized packets.

        Args:
            handle: the track's handle.
            payload: the frame.
            user_timestamp: the application's u64 timestamp for the frame, if any.
            now: current time in seconds (drives the 90 kHz header timestamp).

        Raises:
            LocalProtocolError: ``handle`` is not published, is being published again after a
                full reconnect (the official SDK refuses frames then too), the track is
                encrypted and no key is set, or ``user_timestamp`` is not a u64.
        """
        track = self._outgoing.get(handle)
        if track is None or not track.live:
            raise LocalProtocolError(f"data track handle {handle} is not published")
        if track.republishing:
            raise LocalProtocolError(
                f"data track handle {handle} is being published again after a reconnect"
            )
        timestamp = (self._clock_base + int(now * TIMESTAMP_CLOCK_HZ)) & _U32
        body, e2ee = bytes(payload), None
        if track.encrypted:
            if self._cipher is None:
                raise LocalProtocolError("the track is encrypted but the room has no E2EE")
            body, e2ee = self._cipher.seal(body)
        packets = packetize(
            body,
            handle=handle,
            first_sequence=track.sequence,
            frame_number=track.frame_number,
            timestamp=timestamp,
            user_timestamp=user_timestamp,
            e2ee=e2ee,
            mtu=self._mtu,
        )
        track.sequence = (track.sequence + len(packets)) & _U16
        track.frame_number = (track.frame_number + 1) & _U16
        return packets

    # -- signal input --------------------------------------------------------------------------

    def receive_signal(self, response: pb.SignalResponse) -> list[AnyDataTrackEvent]:
        """Take a ``SignalResponse``; the data-track ones change state, the rest are ignored."""
        kind = response.WhichOneof("message")
        if kind == "publish_data_track_response":
            return self._published(response.publish_data_track_response.info)
        if kind == "unpublish_data_track_response":
            return self._unpublished(response.unpublish_data_track_response.info.pub_handle)
        if kind == "data_track_subscriber_handles":
            for handle, track in response.data_track_subscriber_handles.sub_handles.items():
                self._sub_handles[handle] = track.track_sid
            return []
        if kind == "request_response":
            return self.receive_request_response(response.request_response)
        return []

    def receive_request_response(self, rr: pb.RequestResponse) -> list[AnyDataTrackEvent]:
        """Take a ``RequestResponse``; only those naming a data-track request matter here."""
        which = rr.WhichOneof("request")
        if rr.reason == pb.RequestResponse.OK:
            return []
        if which == "publish_data_track":
            handle = rr.publish_data_track.pub_handle
            self._abandoned.pop(handle, None)
            again = self._outgoing.get(handle)
            if again is not None and again.republishing:
                # The new session refused it again (the official SDK then drops the track).
                return self._unpublished(handle)
            if self._pending.pop(handle, None) is None:
                return []
            reason = pb.RequestResponse.Reason.Name(rr.reason)
            return [PublishRefused(handle=handle, reason=reason, message=rr.message)]
        if which == "unpublish_data_track":
            # NOT_FOUND: the server no longer has it; it is gone either way.
            return self._unpublished(rr.unpublish_data_track.pub_handle)
        return []

    def _published(self, info: pb.DataTrackInfo) -> list[AnyDataTrackEvent]:
        handle = info.pub_handle
        again = self._outgoing.get(handle)
        if again is not None and again.republishing:
            previous, again.sid, again.republishing = again.sid, info.sid, False
            return [LocalDataTrackRepublished(handle=handle, previous_sid=previous, info=info)]
        name = self._pending.pop(handle, None)
        if name is None:
            name = self._abandoned.pop(handle, None)
        if name is None:
            return []  # not ours
        self._outgoing[handle] = _Outgoing(
            name=name, sid=info.sid, encrypted=info.encryption != pb.Encryption.NONE
        )
        return [PublishAccepted(handle=handle, info=info)]

    def _unpublished(self, handle: int) -> list[AnyDataTrackEvent]:
        track = self._outgoing.pop(handle, None)
        if track is None:
            return []
        return [LocalDataTrackUnpublished(handle=handle, sid=track.sid)]

    def abandon(self, handle: int) -> None:
        """Stop waiting for the answer to the publish request of ``handle`` (timed out or
        cancelled). A late acceptance is still reported as :class:`PublishAccepted`, so that the
        caller can unpublish what the server created; the handle is not reused before that."""
        name = self._pending.pop(handle, None)
        if name is not None:
            self._abandoned[handle] = name

    def republish_requests(self) -> tuple[list[AnyDataTrackEvent], list[pb.SignalRequest]]:
        """A full reconnect replaced the session: the new server knows none of our tracks.

        Every live track is asked for again with its handle, name and encryption (it refuses
        frames until answered, then :class:`LocalDataTrackRepublished` gives its new SID).
        Tracks we were unpublishing end; requests still unanswered, or abandoned, are forgotten
        (the old session cannot answer them any more). Subscriber handles and incomplete frames
        go with the old session. Returns the events and the requests to send.
        """
        events: list[AnyDataTrackEvent] = []
        requests: list[pb.SignalRequest] = []
        for handle, track in list(self._outgoing.items()):
            if not track.live:
                del self._outgoing[handle]
                events.append(LocalDataTrackUnpublished(handle=handle, sid=track.sid))
                continue
            track.republishing = True
            requests.append(self._publish_request(handle, track.name, encrypted=track.encrypted))
        self._pending.clear()
        self._abandoned.clear()
        self._sub_handles.clear()
        for assembler in self._assemblers.values():
            assembler.clear()
        return events, requests

    def reset_session(self) -> list[AnyDataTrackEvent]:
        """The session ended: the server forgot our tracks and our subscriber handles, so
        every publication ends and incomplete frames go."""
        out: list[AnyDataTrackEvent] = [
            LocalDataTrackUnpublished(handle=h, sid=t.sid) for h, t in self._outgoing.items()
        ]
        self._outgoing.clear()
        self._pending.clear()
        self._abandoned.clear()
        self._sub_handles.clear()
        for assembler in self._assemblers.values():
            assembler.clear()
        return out

    # -- remote tracks -------------------------------------------------------------------------

    def sync_remotes(
        self,
        participants: Iterable[pb.ParticipantInfo],
        *,
        now: float,
        replaced: Collection[str] = (),
    ) -> list[AnyDataTrackEvent]:
        """Diff the remote participants' ``data_tracks`` against what was known.

        Pass every current remote participant (the roster's full view); tracks of participants
        not passed are reported gone, except those of a publisher whose session was replaced
        (full reconnect: its identity is in ``replaced``, or it is present under another SID),
        which are held for :data:`REMOTE_REPUBLISH_GRACE_S`. Departures come first, then
        arrivals in snapshot order; an arrival with a held track's publisher identity and name
        takes its place (:class:`RemoteDataTrackRepublished`).

        Args:
            participants: the current remote participants.
            now: current time in seconds (starts a hold's grace).
            replaced: identities whose old session left with ``DUPLICATE_IDENTITY`` since the
                last call (the ``disconnect_reason`` of their ``DISCONNECTED`` snapshot).
        """
        seen: dict[str, tuple[pb.ParticipantInfo, pb.DataTrackInfo]] = {}
        present: dict[str, str] = {}  # identity -> participant SID
        for participant in participants:
            if participant.state == pb.ParticipantInfo.DISCONNECTED:
                continue
            present[participant.identity] = participant.sid
            for info in participant.data_tracks:
                seen[info.sid] = (participant, info)
        out: list[AnyDataTrackEvent] = []
        for sid, remote in list(self._remotes.items()):
            if sid in seen or remote.held_until is not None:
                continue
            current = present.get(remote.publisher_identity)
            if remote.publisher_identity in replaced or (
                current is not None and current != remote.publisher_sid
            ):
                # The publisher's new session will publish it again (official subscriber:
                # RS:livekit-datatrack/src/remote/manager.rs (handle_sid_reassigned)). The old
                # session's subscriber handles and partial frames die with it.
                remote.held_until = now + REMOTE_REPUBLISH_GRACE_S
                self._drop_handles(sid)
                assembler = self._assemblers.get(sid)
                if assembler is not None:
                    assembler.clear()
                continue
            out.append(self._end_remote(sid))
        held = {
            (r.publisher_identity, r.info.name): sid
            for sid, r in self._remotes.items()
            if r.held_until is not None
        }
        for sid, (participant, info) in seen.items():
            if sid in self._remotes:
                continue
            previous = held.pop((participant.identity, info.name), None)
            if previous is not None:
                out.append(self._take_over(previous, participant, info))
                continue
            self._remotes[sid] = _Remote(
                publisher_identity=participant.identity, info=info, publisher_sid=participant.sid
            )
            out.append(
                RemoteDataTrackPublished(
                    publisher_identity=participant.identity,
                    publisher_sid=participant.sid,
                    info=info,
                )
            )
        return out

    def get_timer(self) -> float | None:
        """When the earliest held track's grace ends (:meth:`handle_timer`), or ``None``."""
        deadlines = [r.held_until for r in self._remotes.values() if r.held_until is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[AnyDataTrackEvent]:
        """End the held tracks whose publisher did not publish them again in time."""
        return [
            self._end_remote(sid)
            for sid, remote in list(self._remotes.items())
            if remote.held_until is not None and remote.held_until <= now
        ]

    def _end_remote(self, sid: str) -> RemoteDataTrackUnpublished:
        # The server ends our subscription with the track: nothing to send for it.
        remote = self._remotes.pop(sid)
        self._assemblers.pop(sid, None)
        self._readers.pop(sid, None)
        self._drop_handles(sid)
        for old in [old for old, cur in self._aliases.items() if cur == sid]:
            del self._aliases[old]
        return RemoteDataTrackUnpublished(publisher_identity=remote.publisher_identity, sid=sid)

    def _take_over(
        self, previous: str, participant: pb.ParticipantInfo, info: pb.DataTrackInfo
    ) -> RemoteDataTrackRepublished:
        remote = self._remotes.pop(previous)
        remote.info, remote.publisher_sid, remote.held_until = info, participant.sid, None
        self._remotes[info.sid] = remote
        readers = self._readers.pop(previous, None)
        if readers is not None:
            self._readers[info.sid] = readers
        assembler = self._assemblers.pop(previous, None)
        if assembler is not None:
            self._assemblers[info.sid] = assembler  # keeps its max_partial_frames
        for old, cur in self._aliases.items():
            if cur == previous:
                self._aliases[old] = info.sid
        self._aliases[previous] = info.sid
        return RemoteDataTrackRepublished(
            publisher_identity=participant.identity,
            publisher_sid=participant.sid,
            previous_sid=previous,
            info=info,
        )

    def _drop_handles(self, sid: str) -> None:
        for handle in [h for h, s in self._sub_handles.items() if s == sid]:
            del self._sub_handles[handle]

    def resolve_sid(self, sid: str) -> str:
        """The current SID of the remote track first known as ``sid`` (a track republished
        after its publisher's full reconnect has a new one)."""
        return self._aliases.get(sid, sid)

    def resubscribe_request(self, sid: str) -> pb.SignalRequest | None:
        """The subscription to send for a republished track that has readers, else ``None``."""
        remote = self._remotes.get(sid)
        if remote is None or remote.held_until is not None or not self._readers.get(sid):
            return None
        return _subscription(sid, subscribe=True)

    def local_sid(self, handle: int) -> str | None:
        """The current SID of our track ``handle`` (it changes after a full reconnect)."""
        track = self._outgoing.get(handle)
        return None if track is None else track.sid

    def is_remote_published(self, sid: str) -> bool:
        """Whether the remote track ``sid`` is still in the roster."""
        return sid in self._remotes

    def remote_info(self, sid: str) -> pb.DataTrackInfo | None:
        """The remote track ``sid`` as last announced, or ``None``."""
        remote = self._remotes.get(sid)
        return None if remote is None else remote.info

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, sid: str) -> pb.SignalRequest | None:
        """Add a reader of remote track ``sid``; returns the request to send for the first one.

        Raises:
            LocalProtocolError: no remote track ``sid`` is published.
        """
        if sid not in self._remotes:
            raise LocalProtocolError(f"no remote data track {sid!r} is published")
        count = self._readers.get(sid, 0)
        self._readers[sid] = count + 1
        if count:
            return None
        self._assemblers[sid] = FrameAssembler(max_partial_frames=self._max_partial)
        if self._remotes[sid].held_until is not None:
            return None  # the old session is gone: subscribed when the track comes back
        return _subscription(sid, subscribe=True)

    def unsubscribe(self, sid: str) -> pb.SignalRequest | None:
        """Remove a reader of ``sid``; returns the request to send when it was the last one."""
        count = self._readers.get(sid, 0)
        if count == 0:
            return None
        if count > 1:
            self._readers[sid] = count - 1
            return None
        del self._readers[sid]
        self._assemblers.pop(sid, None)
        self._drop_handles(sid)
        remote = self._remotes.get(sid)
        if remote is None or remote.held_until is not None:
            return None  # the server already dropped the subscription with the track
        return _subscription(sid, subscribe=False)

    def resubscribe_requests(self) -> list[pb.SignalRequest]:
        """The requests that restore every subscription after a full reconnect."""
        return [
            _subscription(sid, subscribe=True)
            for sid in self._readers
            if sid in self._remotes and self._remotes[sid].held_until is None
        ]

    def set_max_partial_frames(self, sid: str, value: int) -> None:
        """Set how many incomplete frames the assembler of ``sid`` keeps (now and later).

        Raises:
            LocalProtocolError: ``value`` is not a positive int.
        """
        assembler = self._assemblers.get(sid)
        if assembler is not None:
            assembler.max_partial_frames = value
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LocalProtocolError(f"max_partial_frames must be a positive int, got {value!r}")

    # -- packets -------------------------------------------------------------------------------

    def receive_packet(self, data: bytes) -> FrameReceived | None:
        """Take one message of the ``_data_track`` channel; return the frame it completes."""
        try:
            packet = decode_packet(data)
        except DecodeError:
            self.malformed_packets += 1
            return None
        sid = self._sub_handles.get(packet.handle)
        assembler = self._assemblers.get(sid) if sid is not None else None
        if sid is None or assembler is None:
            self.unrouted_packets += 1
            return None
        frame = assembler.push(packet)
        if frame is None:
            return None
        payload = frame.payload
        remote = self._remotes.get(sid)
        if remote is not None and remote.info.encryption != pb.Encryption.NONE:
            opened = (
                None
                if self._cipher is None or frame.e2ee is None
                else self._cipher.open(remote.publisher_identity, payload, frame.e2ee)
            )
            if opened is None:
                self.undecryptable_frames += 1
                return None
            payload = opened
        return FrameReceived(track_sid=sid, payload=payload, user_timestamp=frame.user_timestamp)


def _subscription(sid: str, *, subscribe: bool) -> pb.SignalRequest:
    update = pb.UpdateDataSubscription.Update(track_sid=sid, subscribe=subscribe)
    return pb.SignalRequest(update_data_subscription=pb.UpdateDataSubscription(updates=[update]))
