"""``AudioStream.from_participant`` / ``VideoStream.from_participant``: a stream that follows
whichever track of one source a remote participant has.

The official SDK's FFI stream waits until the participant has a subscribed track of that
source (``TrackSource.SOURCE_MICROPHONE``, say), yields its frames, and when the track goes away
(unpublished, unsubscribed) goes on with the next one of that source, until it is closed. This
module does the same on top of lkproto's track streams: it watches the participant's
publications (:meth:`~lkproto.rtc.RemoteParticipant._watch_tracks`) and opens a new
:class:`~lkproto.rtc.AudioStream` / :class:`~lkproto.rtc.VideoStream` on each track it follows.

Difference: the object returned is a :class:`ParticipantStream`, not an ``AudioStream`` /
``VideoStream`` instance (same iteration and ``aclose``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from lkproto.errors import LocalProtocolError
from lkproto.rtc.track import TrackKind

if TYPE_CHECKING:
    from lkproto.rtc.participant import Participant
    from lkproto.rtc.track import RemoteTrack

__all__ = ["ParticipantStream"]

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class _TrackStream(Protocol[E_co]):
    def __aiter__(self) -> AsyncIterator[E_co]: ...

    async def __anext__(self) -> E_co: ...

    async def aclose(self) -> None: ...


class ParticipantStream(Generic[E]):
    """The frames of a remote participant's track of one source, across track changes.

    Iterate it as an ``AudioStream``/``VideoStream``; iteration ends only after :meth:`aclose`.

    Args:
        participant: a remote participant.
        track_source: the official ``TrackSource`` number to follow.
        kind: the kind of track to follow (tracks of the other kind are ignored).
        open_stream: makes the stream of one track (e.g. ``AudioStream(track, ...)``).
        on_close: called once by :meth:`aclose` (closes a frame processor the track streams
            share).

    Raises:
        LocalProtocolError: ``participant`` is not a remote participant.
    """

    def __init__(
        self,
        participant: Participant,
        track_source: int,
        kind: TrackKind,
        open_stream: Callable[[RemoteTrack], _TrackStream[E]],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        watch = getattr(participant, "_watch_tracks", None)
        if watch is None:
            raise LocalProtocolError("from_participant needs a remote participant")
        self._participant = participant
        self._source = int(track_source)
        self._kind = kind
        self._open = open_stream
        self._on_close = on_close
        self._changed = asyncio.Event()
        self._unwatch: Callable[[], None] = watch(self._on_change)
        self._closing: set[asyncio.Task[None]] = set()
        self._stream: _TrackStream[E] | None = None
        self._track: RemoteTrack | None = None
        self._finished: RemoteTrack | None = None
        self._closed = False

    def __aiter__(self) -> ParticipantStream[E]:
        return self

    async def __anext__(self) -> E:
        while not self._closed:
            stream = self._stream
            if stream is None:
                track = self._find()
                if track is None:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                stream = self._stream = self._open(track)
                self._track = track
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                if self._stream is stream:
                    # That track ended; do not reopen it while its publication still shows it.
                    self._finished, self._track, self._stream = self._track, None, None
                    await stream.aclose()
        raise StopAsyncIteration

    def _on_change(self) -> None:
        self._changed.set()
        track, stream = self._track, self._stream
        if track is None or stream is None or self._attached(track):
            return
        # The room detached the track (unpublished, unsubscribed) but its media may never end
        # (a transceiver is kept for reuse), so its stream is closed here: the pending read ends
        # and iteration goes on with the next track of the source.
        self._finished, self._track, self._stream = track, None, None
        task = asyncio.get_running_loop().create_task(stream.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _attached(self, track: RemoteTrack) -> bool:
        publications = self._participant.track_publications.values()
        return any(getattr(pub, "track", None) is track for pub in publications)

    def _find(self) -> RemoteTrack | None:
        for publication in self._participant.track_publications.values():
            track = getattr(publication, "track", None)
            if (
                track is not None
                and track is not self._finished
                and int(publication.source) == self._source
                and track.kind == self._kind
            ):
                return track  # type: ignore[no-any-return]
        return None

    async def aclose(self) -> None:
        """Stop following: iteration ends and the current track's stream is closed."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self._changed.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
        if self._on_close is not None:
            self._on_close()
