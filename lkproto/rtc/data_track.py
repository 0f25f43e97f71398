"""Data tracks with the official ``livekit.rtc`` shape (PROTOCOL-MAP §12).

A data track carries application frames (telemetry, sensor readings, ...) with low latency and
no retransmission: frames may be lost, and arrive in whatever order the network delivers them.

Publish with :meth:`LocalParticipant.publish_data_track(name=...)
<lkproto.rtc.participant.LocalParticipant.publish_data_track>` and send with
:meth:`LocalDataTrack.try_push`; remote tracks arrive with the room's ``data_track_published``
event as :class:`RemoteDataTrack`, and :meth:`RemoteDataTrack.subscribe` returns a
:class:`DataTrackStream` of :class:`DataTrackFrame`.

In a room with end-to-end encryption (``RoomOptions(encryption=...)``) tracks are published
encrypted and encrypted remote tracks are decrypted with the room's keys, as the official SDK
does; a frame that does not decrypt is dropped. After a full reconnect our tracks are published
again under their names (``info.sid`` changes) and subscriptions are restored. When a remote
publisher's session is replaced by its full reconnect (it rejoins without leaving first, and
the server closes the old session with ``DUPLICATE_IDENTITY``), its tracks wait up to 25 s
(:data:`lkproto.core.data_track.REMOTE_REPUBLISH_GRACE_S`) for its new session to publish them
again under the same name: the same :class:`RemoteDataTrack` then carries the new SID and its
streams go on, with no unpublished/published events, as in the official SDK.

Not built yet: frame encodings and schemas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lkproto.errors import LkError, LocalProtocolError, RequestRejectedError

if TYPE_CHECKING:
    from lkproto.asyncio.data_track import DataTrackDriver, FrameQueue

__all__ = [
    "DataTrackFrame",
    "DataTrackInfo",
    "DataTrackStream",
    "LocalDataTrack",
    "PublishDataTrackError",
    "PushFrameError",
    "RemoteDataTrack",
    "SubscribeDataTrackError",
]


class SubscribeDataTrackError(LkError):
    """A subscription to a data track ended abnormally (raised when its stream ends).

    Attributes:
        message: why.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PushFrameError(LocalProtocolError):
    """A frame could not be pushed: the track is unpublished, the room is not connected, or
    frames are pushed faster than the channel drains (it is then dropped, as a lossy track must).

    Attributes:
        message: why.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PublishDataTrackError(RequestRejectedError):
    """The data track could not be published (official ``livekit.rtc.participant`` name).

    Attributes:
        message: why.
        reason: the server's ``RequestResponse`` reason name (``DUPLICATE_NAME``,
            ``NOT_ALLOWED``, ``INVALID_NAME``, ...), ``TIMEOUT``, or ``INVALID_NAME`` /
            ``DISCONNECTED`` when refused before asking the server.
    """

    def __init__(self, message: str, *, reason: str = "UNKNOWN") -> None:
        super().__init__(reason, message)
        self.args = (message,)


@dataclass
class DataTrackInfo:
    """Information about a published data track.

    Attributes:
        sid: the track's SID, given by the server (``DTR_...``); it may change after a
            reconnect, ``name`` does not.
        name: the name the publisher gave it.
        uses_e2ee: whether its frames are end-to-end encrypted.
    """

    sid: str
    name: str
    uses_e2ee: bool


@dataclass
class DataTrackFrame:
    """One frame of a data track.

    Attributes:
        payload: the frame's bytes.
        user_timestamp: an application timestamp travelling with the frame (u64), if any.
    """

    payload: bytes
    user_timestamp: int | None = None


class LocalDataTrack:
    """A data track published by the local participant.

    Made by :meth:`LocalParticipant.publish_data_track
    <lkproto.rtc.participant.LocalParticipant.publish_data_track>`, not by hand.
    """

    def __init__(self, info: DataTrackInfo, handle: int, driver: DataTrackDriver) -> None:
        self._info = info
        self._handle = handle
        self._driver = driver

    @property
    def info(self) -> DataTrackInfo:
        """Information about the track (its ``sid`` is the current one: a full reconnect
        publishes the track again under a new SID, as the official SDK does)."""
        sid = self._driver.local_sid(self._handle)
        if sid is not None:
            self._info.sid = sid
        return self._info

    def try_push(self, frame: DataTrackFrame) -> None:
        """Send one frame to the track's subscribers, now (never waits).

        Frames larger than the 16 000-byte transport MTU are split into packets and put back
        together by each subscriber; a frame with a lost packet is dropped whole.

        Args:
            frame: the frame to send.

        Raises:
            PushFrameError: the track is unpublished, the room is not connected or is publishing
                the track again after a full reconnect, no end-to-end encryption key is set, or
                the channel is full (the frame is dropped).
        """
        try:
            queued = self._driver.push(self._handle, bytes(frame.payload), frame.user_timestamp)
        except LocalProtocolError as exc:
            raise PushFrameError(str(exc)) from exc
        if not queued:
            raise PushFrameError(
                "frame dropped: the room is not connected or frames are pushed too fast"
            )

    def is_published(self) -> bool:
        """Whether the track is still published."""
        return self._driver.is_published(self._handle)

    async def unpublish(self) -> None:
        """Unpublish the track; later pushes raise :class:`PushFrameError`."""
        self._driver.unpublish(self._handle)

    def __repr__(self) -> str:
        return f"rtc.LocalDataTrack(sid={self.info.sid}, name={self._info.name})"


class RemoteDataTrack:
    """A data track published by a remote participant (from ``data_track_published``)."""

    def __init__(self, info: DataTrackInfo, publisher_identity: str, driver: DataTrackDriver):
        self._info = info
        self._publisher_identity = publisher_identity
        self._driver = driver

    @property
    def info(self) -> DataTrackInfo:
        """Information about the track (its ``sid`` is the current one: a publisher's full
        reconnect publishes the track again under a new SID, as the official SDK reports)."""
        self._info.sid = self._driver.resolve_remote_sid(self._info.sid)
        return self._info

    @property
    def publisher_identity(self) -> str:
        """Identity of the participant who published the track."""
        return self._publisher_identity

    def subscribe(self, *, buffer_size: int | None = None) -> DataTrackStream:
        """Start receiving the track's frames.

        The first subscription asks the server for the track; more subscriptions share it. A
        subscription receives the frames that arrive after it started.

        Args:
            buffer_size: frames this stream may fall behind before its oldest frame is dropped;
                ``None`` for the default (16); 0 counts as 1.

        Returns:
            A stream of :class:`DataTrackFrame`; if the subscription fails or ends abnormally,
            iterating it raises :class:`SubscribeDataTrackError` at the end.
        """
        from lkproto.asyncio.data_track import DEFAULT_FRAME_BUFFER

        size = DEFAULT_FRAME_BUFFER if buffer_size is None else buffer_size
        return DataTrackStream(self._driver.subscribe(self.info.sid, buffer_size=size))

    def is_published(self) -> bool:
        """Whether the track is still published."""
        return self._driver.is_remote_published(self.info.sid)

    def set_pipeline_options(self, *, max_partial_frames: int | None = None) -> None:
        """Tune how received packets are put back into frames (for current and later streams).

        Args:
            max_partial_frames: incomplete frames kept at once while their packets arrive
                (default 1); more tolerates more reordering from fast senders at the cost of
                memory. 0 counts as 1; ``None`` keeps the current value.
        """
        if max_partial_frames is not None:
            self._driver.set_max_partial_frames(self.info.sid, max(1, max_partial_frames))

    def __repr__(self) -> str:
        return (
            f"rtc.RemoteDataTrack(sid={self.info.sid}, name={self._info.name}, "
            f"publisher_identity={self._publisher_identity})"
        )


class DataTrackStream:
    """The frames of one subscription to a remote data track.

    Iterate it (``async for frame in stream``) or call :meth:`read`; close it to unsubscribe.
    The stream ends when the track is unpublished or the room disconnects.
    """

    def __init__(self, queue: FrameQueue) -> None:
        self._queue = queue

    async def read(self) -> DataTrackFrame | None:
        """The next frame, or ``None`` once the stream has ended.

        Raises:
            SubscribeDataTrackError: the subscription failed or ended abnormally.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    def __aiter__(self) -> AsyncIterator[DataTrackFrame]:
        return self

    async def __anext__(self) -> DataTrackFrame:
        frame = await self._queue.get()
        if frame is None:
            error = self._queue.error
            self._queue.close()
            if error is not None:
                raise SubscribeDataTrackError(error)
            raise StopAsyncIteration
        return DataTrackFrame(payload=frame.payload, user_timestamp=frame.user_timestamp)

    def close(self) -> None:
        """Stop receiving; the last stream of a track unsubscribes from it."""
        self._queue.close()

    async def aclose(self) -> None:
        """Same as :meth:`close`, for ``contextlib.aclosing``."""
        self.close()
