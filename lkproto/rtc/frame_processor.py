"""The official frame-processing hook, ``FrameProcessor``, as an abstract base class.

An object of this shape given to :class:`~lkproto.rtc.AudioStream` as ``noise_cancellation``
sees every yielded frame while it is ``enabled`` (a failing ``_process`` passes the frame
through), and is closed with the stream unless ``auto_close_noise_cancellation=False``; see
:mod:`lkproto.rtc.audio_stream`. Subclassing this class is optional there (the stream checks the
shape), but it documents and type-checks the contract, as in the official SDK
(livekit.rtc ``frame_processor.py``).

One difference: the official stream tells its processor which room, participant and track it
serves and the room's URL and token (``_on_stream_info_updated``, ``_on_credentials_updated``),
which cloud noise-cancellation plugins use to authenticate; lkproto's streams never call these
hooks, so such plugins get no credentials here. The hooks exist (doing nothing) so subclasses
written for the official SDK still import and run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from lkproto.rtc.audio_frame import AudioFrame
    from lkproto.rtc.video_frame import VideoFrame

__all__ = ["FrameProcessor"]

T = TypeVar("T", bound="AudioFrame | VideoFrame")


class FrameProcessor(Generic[T], ABC):
    """Transforms the frames of a stream (e.g. noise cancellation of received audio).

    Subclasses implement :attr:`enabled` (getter and setter), :meth:`_process` and
    :meth:`_close`; the underscore names are the official SDK's, kept so one subclass serves
    both.
    """

    @property
    @abstractmethod
    def enabled(self) -> bool:
        """Whether frames go through :meth:`_process` (a disabled processor passes them on)."""

    @enabled.setter
    @abstractmethod
    def enabled(self, value: bool) -> None: ...

    def _on_stream_info_updated(
        self, *, room_name: str, participant_identity: str, publication_sid: str
    ) -> None:
        """Official hook: the stream's room, participant and track. Never called by lkproto."""

    def _on_stream_info_cleared(self) -> None:
        """Official hook: the stream lost its track. Never called by lkproto."""

    def _on_credentials_updated(self, *, token: str, url: str) -> None:
        """Official hook: the room's access token and URL. Never called by lkproto."""

    def _on_credentials_cleared(self) -> None:
        """Official hook: the room disconnected. Never called by lkproto."""

    @abstractmethod
    def _process(self, frame: T) -> T:
        """Return the processed frame (may be ``frame`` itself)."""

    @abstractmethod
    def _close(self) -> None:
        """Release what the processor holds; called once, when the stream closes."""
