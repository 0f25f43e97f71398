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

No clock is kept: ``now`` (seconds, any monotonic origin) is passed where a timestamp is made.
Randomness is injected (``random_u32``) so tests are deterministic.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire import pb
from lkproto.wire.data_track import (
    DATA_TRACK_MTU_BYTES,
    MAX_HANDLE,
    TIMESTAMP_CLOCK_HZ,
    FrameAssembler,
    decode_packet,
    packetize,
)

__all__ = [
    "MAX_NAME_CHARS",
    "AnyDataTrackEvent",
    "DataTrackEvent",
    "DataTrackManager",
    "FrameReceived",
    "LocalDataTrackUnpublished",
    "PublishAccepted",
    "PublishRefused",
    "RemoteDataTrackPublished",
    "RemoteDataTrackUnpublished",
]

MAX_NAME_CHARS: Final = 256
"""Longest track name the server accepts (``S:pkg/rtc/participant_data_track.go``: 1-256)."""

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
    | RemoteDataTrackPublished
    | RemoteDataTrackUnpublished
    | FrameReceived
)
"""Every event :class:`DataTrackManager` returns."""


@dataclass(slots=True)
class _Outgoing:
    name: str
    sid: str
    live: bool = True  # False once we asked to unpublish: no more frames
    sequence: int = 0
    frame_number: int = 0


@dataclass(slots=True)
class _Remote:
    publisher_identity: str
    info: pb.DataTrackInfo


def _random_u32() -> int:
    return secrets.randbits(32)


class DataTrackManager:
    """Client-side data-track state of one session (see the module docstring).

    Args:
        random_u32: source of the random start of the 90 kHz timestamp (default: ``secrets``).
        mtu: largest packet built, in bytes (default: the official 16 000).
        max_partial_frames: incomplete frames kept per subscribed track (official default 1).

    Raises:
        LocalProtocolError: ``mtu`` or ``max_partial_frames`` is not a positive int.
    """

    __slots__ = (
        "_abandoned",
        "_assemblers",
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
        "unrouted_packets",
    )

    def __init__(
        self,
        *,
        random_u32: Callable[[], int] = _random_u32,
        mtu: int = DATA_TRACK_MTU_BYTES,
        max_partial_frames: int = 1,
    ) -> None:
        for name, value in (("mtu", mtu), ("max_partial_frames", max_partial_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LocalProtocolError(f"{name} must be a positive int, got {value!r}")
        self._mtu = mtu
        self._max_partial = max_partial_frames
        self._clock_base = random_u32() & _U32
        self._next_handle = 1
        self._pending: dict[int, str] = {}  # handle -> name, awaiting the server's answer
        # handle -> name of requests nobody waits for any more; a late acceptance still
        # creates the track at the server, so it is reported (and taken back by the driver).
        self._abandoned: dict[int, str] = {}
        self._outgoing: dict[int, _Outgoing] = {}  # handle -> published track
        self._remotes: dict[str, _Remote] = {}  # track SID -> remote track
        self._readers: dict[str, int] = {}  # track SID -> subscribers here
        self._sub_handles: dict[int, str] = {}  # subscriber handle -> track SID
        self._assemblers: dict[str, FrameAssembler] = {}
        self.malformed_packets = 0
        """Packets dropped because they did not decode."""
        self.unrouted_packets = 0
        """Packets dropped because no subscribed track holds their handle."""

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
        request = pb.SignalRequest(
            publish_data_track_request=pb.PublishDataTrackRequest(pub_handle=handle, name=name)
        )
        return handle, request

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
            LocalProtocolError: ``handle`` is not published, or ``user_timestamp`` is not a u64.
        """
        track = self._outgoing.get(handle)
        if track is None or not track.live:
            raise LocalProtocolError(f"data track handle {handle} is not published")
        timestamp = (self._clock_base + int(now * TIMESTAMP_CLOCK_HZ)) & _U32
        packets = packetize(
            bytes(payload),
            handle=handle,
            first_sequence=track.sequence,
            frame_number=track.frame_number,
            timestamp=timestamp,
            user_timestamp=user_timestamp,
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
        name = self._pending.pop(handle, None)
        if name is None:
            name = self._abandoned.pop(handle, None)
        if name is None:
            return []  # not ours
        self._outgoing[handle] = _Outgoing(name=name, sid=info.sid)
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

    def reset_session(self) -> list[AnyDataTrackEvent]:
        """The session ended or was replaced by a full reconnect: the server forgot our tracks
        and our subscriber handles, so every publication ends and incomplete frames go."""
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

    def sync_remotes(self, participants: Iterable[pb.ParticipantInfo]) -> list[AnyDataTrackEvent]:
        """Diff the remote participants' ``data_tracks`` against what was known.

        Pass every current remote participant (the roster's full view); tracks of participants
        not passed are reported gone. Departures come first, then arrivals in snapshot order.
        """
        seen: dict[str, tuple[pb.ParticipantInfo, pb.DataTrackInfo]] = {}
        for participant in participants:
            if participant.state == pb.ParticipantInfo.DISCONNECTED:
                continue
            for info in participant.data_tracks:
                seen[info.sid] = (participant, info)
        out: list[AnyDataTrackEvent] = []
        for sid, remote in list(self._remotes.items()):
            if sid not in seen:
                # The server ends our subscription with the track: nothing to send for it.
                del self._remotes[sid]
                self._assemblers.pop(sid, None)
                self._readers.pop(sid, None)
                for handle in [h for h, s in self._sub_handles.items() if s == sid]:
                    del self._sub_handles[handle]
                out.append(
                    RemoteDataTrackUnpublished(
                        publisher_identity=remote.publisher_identity, sid=sid
                    )
                )
        for sid, (participant, info) in seen.items():
            if sid not in self._remotes:
                self._remotes[sid] = _Remote(publisher_identity=participant.identity, info=info)
                out.append(
                    RemoteDataTrackPublished(
                        publisher_identity=participant.identity,
                        publisher_sid=participant.sid,
                        info=info,
                    )
                )
        return out

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
        for handle in [h for h, s in self._sub_handles.items() if s == sid]:
            del self._sub_handles[handle]
        if sid not in self._remotes:
            return None  # the server already dropped the subscription with the track
        return _subscription(sid, subscribe=False)

    def resubscribe_requests(self) -> list[pb.SignalRequest]:
        """The requests that restore every subscription after a full reconnect."""
        return [_subscription(sid, subscribe=True) for sid in self._readers if sid in self._remotes]

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
        return FrameReceived(
            track_sid=sid, payload=frame.payload, user_timestamp=frame.user_timestamp
        )


def _subscription(sid: str, *, subscribe: bool) -> pb.SignalRequest:
    update = pb.UpdateDataSubscription.Update(track_sid=sid, subscribe=subscribe)
    return pb.SignalRequest(update_data_subscription=pb.UpdateDataSubscription(updates=[update]))
