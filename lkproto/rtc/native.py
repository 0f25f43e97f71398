"""Official names bound to libwebrtc's native audio stack, refused here by name.

The official SDK's ``AudioProcessingModule`` (echo cancellation, noise suppression, gain control),
``AudioFilter`` (native noise-cancellation plugins), ``PlatformAudio`` (the OS audio device module)
and ``MediaDevices`` (microphone/speaker I/O with the APM in the loop) all run inside the Rust FFI
library's libwebrtc. lkproto has no native audio stack: aiortc only encodes and decodes. A real
implementation would need a native DSP (no well-kept PyPI package provides WebRTC's APM) and a
device layer, so constructing any of these raises
:class:`~lkproto.errors.UnsupportedFeatureError` with the reason, instead of failing later with an
``AttributeError`` or quietly doing nothing. Capture and play audio with your own device library
(e.g. ``sounddevice``) through :class:`~lkproto.rtc.AudioSource` and
:class:`~lkproto.rtc.AudioStream`.
"""

from __future__ import annotations

from typing import Final, NoReturn

from lkproto.errors import UnsupportedFeatureError

__all__ = [
    "NATIVE_REASONS",
    "AudioFilter",
    "AudioProcessingModule",
    "MediaDevices",
    "PlatformAudio",
]

NATIVE_REASONS: Final[dict[str, str]] = {
    "AudioProcessingModule": (
        "WebRTC's audio processing (echo cancellation, noise suppression, high-pass filter, "
        "gain control) is native libwebrtc code; aiortc has none and no well-kept PyPI "
        "package provides it"
    ),
    "AudioFilter": (
        "audio filter plugins are native libraries loaded by the official SDK's FFI; lkproto "
        "has no plugin loader"
    ),
    "PlatformAudio": (
        "the OS audio device module is native libwebrtc code; use a device library (e.g. "
        "sounddevice) with AudioSource/AudioStream"
    ),
    "MediaDevices": (
        "device capture/playback with echo cancellation needs the native AudioProcessingModule; "
        "use a device library (e.g. sounddevice) with AudioSource/AudioStream"
    ),
}
"""Official class name -> why lkproto refuses it (also the compatibility table's reason)."""


def _refuse(name: str) -> NoReturn:
    raise UnsupportedFeatureError(f"rtc.{name}", NATIVE_REASONS[name])


class AudioProcessingModule:
    """Refused: see :data:`NATIVE_REASONS`.

    Raises:
        UnsupportedFeatureError: always, on construction.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _refuse("AudioProcessingModule")


class AudioFilter:
    """Refused: see :data:`NATIVE_REASONS`.

    Raises:
        UnsupportedFeatureError: always, on construction.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _refuse("AudioFilter")


class PlatformAudio:
    """Refused: see :data:`NATIVE_REASONS`.

    Raises:
        UnsupportedFeatureError: always, on construction.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _refuse("PlatformAudio")


class MediaDevices:
    """Refused: see :data:`NATIVE_REASONS`.

    Raises:
        UnsupportedFeatureError: always, on construction.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _refuse("MediaDevices")
