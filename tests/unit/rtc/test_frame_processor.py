"""rtc.FrameProcessor: the official abstract shape, accepted by AudioStream."""

from __future__ import annotations

import pytest

from lkproto import rtc
from lkproto.rtc import audio_stream
from lkproto.rtc.audio_frame import AudioFrame


class Silence(rtc.FrameProcessor[AudioFrame]):
    """Written as for the official SDK: every frame becomes silence while enabled."""

    def __init__(self) -> None:
        self._enabled = True
        self.closed = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def _process(self, frame: AudioFrame) -> AudioFrame:
        return AudioFrame.create(frame.sample_rate, frame.num_channels, frame.samples_per_channel)

    def _close(self) -> None:
        self.closed = True


def test_abstract_members_must_be_implemented() -> None:
    class Partial(rtc.FrameProcessor[AudioFrame]):
        def _close(self) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def test_a_subclass_is_what_audio_stream_takes() -> None:
    processor = Silence()
    assert isinstance(processor, audio_stream.FrameProcessor)
    chosen, auto_close = audio_stream._processor(
        {"noise_cancellation": processor, "auto_close_noise_cancellation": False}
    )
    assert chosen is processor
    assert auto_close is False


def test_official_hooks_exist_and_do_nothing() -> None:
    processor = Silence()
    processor._on_stream_info_updated(room_name="r", participant_identity="p", publication_sid="s")
    processor._on_stream_info_cleared()
    processor._on_credentials_updated(token="t", url="ws://x")
    processor._on_credentials_cleared()
    frame = AudioFrame(b"\x01\x00" * 480, 48_000, 1, 480)
    assert processor._process(frame).data.tobytes() == b"\x00" * 960
    processor.enabled = False
    assert not processor.enabled
