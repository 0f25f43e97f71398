"""Publishing local tracks: the AddTrackRequest we announce and its answer, as a sans-I/O machine.

Theory of operation
-------------------

Publishing a track (PROTOCOL-MAP §9 Publishing) starts with an ``AddTrackRequest`` naming the
track by its *cid*, the msid track id our SDP will carry. The server answers with a
``TrackPublishedResponse`` for that cid (the track now has a SID), or refuses with a
``RequestResponse`` (``NOT_ALLOWED``, ``UNSUPPORTED_TYPE``) echoing the request; JS gives up after
:data:`PUBLISH_TIMEOUT_S`.

:func:`build_add_track_request` turns a :class:`TrackDescription` (what the public API was asked
for, already reduced to plain values) into the request aiortc can honour. A
:class:`PublishTracker` keeps every request by cid from :meth:`~PublishTracker.request` until one
of three outcomes, each reported once as an event pulled with :meth:`~PublishTracker.next_event`:

* :class:`TrackPublished`: the matching ``TrackPublishedResponse`` arrived; the track joins
  :attr:`~PublishTracker.published`, the set announced in ``SyncState.publish_tracks`` on a
  resume and published again after a full reconnect (PROTOCOL-MAP §10);
* :class:`PublishRefused`: a ``RequestResponse`` refused the request;
* :class:`PublishTimedOut`: the deadline passed first.

A response for a cid nothing waits for (a duplicate, or one after the deadline) changes nothing
and is reported as ignored by the return value. The machine reads no clock: the deadline is given
by :meth:`~PublishTracker.get_timer` and fired by :meth:`~PublishTracker.handle_timer`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from lkproto.core.durations import positive_seconds
from lkproto.core.simulcast import SimulcastLayer
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "DEFAULT_VIDEO_BITRATE_BPS",
    "PUBLISHABLE_MIME_TYPES",
    "PUBLISH_TIMEOUT_S",
    "AnyPublishEvent",
    "PublishEvent",
    "PublishRefused",
    "PublishTimedOut",
    "PublishTracker",
    "PublishedTrack",
    "TrackDescription",
    "TrackPublished",
    "build_add_track_request",
]

# PROTOCOL-MAP §9 Publishing step 2: JS gives AddTrackRequest 10 s to be answered.
PUBLISH_TIMEOUT_S: Final = 10.0
# The official SDKs announce a single 640x480-ish camera layer in this range; aiortc's encoders
# follow REMB from their own start. Used only for the announced layer when no cap was asked for.
DEFAULT_VIDEO_BITRATE_BPS: Final = 1_700_000
# PROTOCOL-MAP §14: aiortc encodes Opus, VP8 and H.264 only.
PUBLISHABLE_MIME_TYPES: Final = frozenset({"audio/opus", "video/VP8", "video/H264"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackDescription:
    """A local track to announce, in plain values (the public API converts its options to this).

    Attributes:
        cid: the client track id; must equal the msid track id of our SDP (PROTOCOL-MAP §9).
        name: the track name.
        kind: ``"audio"`` or ``"video"``.
        source: ``pb.TrackSource`` value (CAMERA, MICROPHONE, ...).
        mime_type: the codec the section will negotiate, one of :data:`PUBLISHABLE_MIME_TYPES`.
        muted: publish muted.
        stream: the stream grouping name, ``""`` for the server's default.
        width: video width in pixels (0 unknown).
        height: video height in pixels (0 unknown).
        max_bitrate_bps: video: the announced layer's bitrate (0: the default).
        stereo: audio: two channels (``TF_STEREO``).
        preconnect_buffer: audio: the pre-connect buffer is sent (``TF_PRECONNECT_BUFFER``).
        encryption: ``pb.Encryption.Type`` of the frames (GCM when end-to-end encrypted, §11).
        simulcast_layers: video: the layers sent when more than one (see
            :func:`lkproto.core.simulcast.plan_layers`); empty or one: a single layer.
    """

    cid: str
    name: str
    kind: Literal["audio", "video"]
    source: int
    mime_type: str
    muted: bool = False
    stream: str = ""
    width: int = 0
    height: int = 0
    max_bitrate_bps: int = 0
    stereo: bool = False
    preconnect_buffer: bool = False
    encryption: int = 0
    simulcast_layers: tuple[SimulcastLayer, ...] = ()

    @property
    def simulcast(self) -> bool:
        """Whether the track is sent as several simulcast layers."""
        return self.kind == "video" and len(self.simulcast_layers) > 1


def build_add_track_request(description: TrackDescription) -> pb.AddTrackRequest:
    """The ``AddTrackRequest`` for ``description`` (PROTOCOL-MAP §9 Publishing step 1).

    Announces what lkproto sends: a video track's simulcast layers (``q``/``h``/``f``, see
    :mod:`lkproto.core.simulcast`) or one HIGH layer, no RED, no DTX (PROTOCOL-MAP §14).

    Raises:
        LocalProtocolError: no cid, a kind other than audio/video, or a codec aiortc cannot
            publish (or of the other kind).
    """
    d = description
    if not d.cid:
        raise LocalProtocolError("a published track needs a cid")
    if d.kind not in ("audio", "video"):
        raise LocalProtocolError(f"cannot publish a track of kind {d.kind!r}")
    if d.mime_type not in PUBLISHABLE_MIME_TYPES or not d.mime_type.startswith(f"{d.kind}/"):
        raise LocalProtocolError(
            f"aiortc can publish {sorted(PUBLISHABLE_MIME_TYPES)} only, not {d.mime_type!r} "
            f"for {d.kind}"
        )
    is_video = d.kind == "video"
    try:
        request = pb.AddTrackRequest(
            cid=d.cid,
            name=d.name,
            type=pb.VIDEO if is_video else pb.AUDIO,
            source=d.source,  # type: ignore[arg-type]
            muted=d.muted,
            disable_red=True,
            disable_dtx=True,
            stream=d.stream,
            encryption=d.encryption,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as exc:
        raise LocalProtocolError(f"cannot build AddTrackRequest: {exc}") from exc
    if not is_video:
        request.audio_features.append(pb.TF_NO_DTX)
        if d.stereo:
            request.audio_features.append(pb.TF_STEREO)
        if d.preconnect_buffer:
            request.audio_features.append(pb.TF_PRECONNECT_BUFFER)
        return request
    request.width, request.height = d.width, d.height
    if d.simulcast:
        layers = [layer.to_video_layer() for layer in d.simulcast_layers]
    else:
        layers = [
            pb.VideoLayer(
                quality=pb.HIGH,
                width=d.width,
                height=d.height,
                bitrate=d.max_bitrate_bps or DEFAULT_VIDEO_BITRATE_BPS,
            )
        ]
    request.layers.extend(layers)
    codec = request.simulcast_codecs.add(codec=d.mime_type.split("/")[1].lower(), cid=d.cid)
    codec.layers.extend(layers)
    return request


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedTrack:
    """A track the server accepted.

    Attributes:
        description: what was announced (``muted`` follows later mute changes).
        info: the server's TrackInfo (its SID).
    """

    description: TrackDescription
    info: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishEvent:
    """Base class of what a :class:`PublishTracker` reports."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished(PublishEvent):
    """The server accepted the track (``TrackPublishedResponse``).

    Attributes:
        cid: the track's cid.
        info: the TrackInfo with the new SID.
    """

    cid: str
    info: pb.TrackInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishRefused(PublishEvent):
    """The server refused the AddTrackRequest.

    Attributes:
        cid: the track's cid.
        reason: the ``RequestResponse.Reason`` name (``NOT_ALLOWED``, ``UNSUPPORTED_TYPE``, ...).
        message: the server's text.
    """

    cid: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishTimedOut(PublishEvent):
    """No answer within the publish timeout.

    Attributes:
        cid: the track's cid.
        timeout_s: the timeout that passed.
    """

    cid: str
    timeout_s: float


AnyPublishEvent: TypeAlias = TrackPublished | PublishRefused | PublishTimedOut
"""Every event :class:`PublishTracker` hands out; match it exhaustively (``assert_never``)."""


class PublishTracker:
    """Pending AddTrackRequests by cid, their deadline, and the tracks published.

    Args:
        timeout_s: how long an AddTrackRequest may wait for its answer.

    Raises:
        LocalProtocolError: ``timeout_s`` is not a positive number of seconds.
    """

    def __init__(self, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self._timeout_s = positive_seconds("publish timeout", timeout_s)
        self._pending: dict[str, tuple[TrackDescription, float]] = {}
        self._published: dict[str, PublishedTrack] = {}
        self._events: deque[AnyPublishEvent] = deque()

    @property
    def published(self) -> Mapping[str, PublishedTrack]:
        """The accepted tracks by cid (a read-only view)."""
        return self._published

    @property
    def pending(self) -> frozenset[str]:
        """The cids waiting for an answer."""
        return frozenset(self._pending)

    # ---------------------------------------------------------------- inputs

    def request(self, description: TrackDescription, now: float) -> pb.AddTrackRequest:
        """Start publishing: returns the AddTrackRequest to send; its deadline starts now.

        Raises:
            LocalProtocolError: the cid is already pending or published, or the description
                cannot be announced (see :func:`build_add_track_request`).
        """
        cid = description.cid
        if cid in self._pending or cid in self._published:
            raise LocalProtocolError(f"track {cid!r} is already published (or being published)")
        request = build_add_track_request(description)
        self._pending[cid] = (description, now + self._timeout_s)
        return request

    def track_published(self, response: pb.TrackPublishedResponse, now: float) -> bool:
        """A ``TrackPublishedResponse`` arrived; True when a pending request was answered."""
        del now
        entry = self._pending.pop(response.cid, None)
        if entry is None:
            return False
        info = pb.TrackInfo()
        info.CopyFrom(response.track)
        self._published[response.cid] = PublishedTrack(description=entry[0], info=info)
        self._events.append(TrackPublished(cid=response.cid, info=info))
        return True

    def request_refused(self, cid: str, reason: str, message: str, now: float) -> bool:
        """A ``RequestResponse`` refused the AddTrackRequest of ``cid``; True if it was pending."""
        del now
        if self._pending.pop(cid, None) is None:
            return False
        self._events.append(PublishRefused(cid=cid, reason=reason, message=message))
        return True

    def cancel(self, cid: str) -> None:
        """Stop waiting for ``cid`` (the caller gave up); a later answer is ignored."""
        self._pending.pop(cid, None)

    def remove(self, cid: str) -> PublishedTrack | None:
        """Forget a published (or pending) track: unpublished, or could not be attached."""
        self._pending.pop(cid, None)
        return self._published.pop(cid, None)

    def set_muted(self, cid: str, muted: bool) -> None:
        """Record a mute change, so a republish announces the current state.

        Raises:
            LocalProtocolError: ``cid`` is not published.
        """
        track = self._published.get(cid)
        if track is None:
            raise LocalProtocolError(f"track {cid!r} is not published")
        description = dataclasses.replace(track.description, muted=muted)
        self._published[cid] = PublishedTrack(description=description, info=track.info)

    def take_for_republish(self) -> list[PublishedTrack]:
        """Empty the published set and return what was in it, for a full reconnect.

        The new session knows none of our tracks (PROTOCOL-MAP §10 Full reconnect): each is
        requested again, possibly under a new cid, and waits for a new SID.
        """
        tracks = list(self._published.values())
        self._published.clear()
        return tracks

    def sync_tracks(self) -> list[pb.TrackPublishedResponse]:
        """``SyncState.publish_tracks``: every published track with its known SID (§10 step 3)."""
        return [
            pb.TrackPublishedResponse(cid=cid, track=track.info)
            for cid, track in self._published.items()
        ]

    def handle_timer(self, now: float) -> None:
        """Time out every request whose deadline is due at ``now``, oldest deadline first."""
        due = sorted(
            (deadline, cid) for cid, (_, deadline) in self._pending.items() if now >= deadline
        )
        for _, cid in due:
            del self._pending[cid]
            self._events.append(PublishTimedOut(cid=cid, timeout_s=self._timeout_s))

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or None."""
        return min((deadline for _, deadline in self._pending.values()), default=None)

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyPublishEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None
