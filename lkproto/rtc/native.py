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

from dataclasses import dataclass, field
from typing import Final, NoReturn

from lkproto.errors import UnsupportedFeatureError

__all__ = [
    "NATIVE_REASONS",
    "AudioDeviceInfo",
    "AudioFilter",
    "AudioProcessingModule",
    "MediaDevices",
    "NoiseCancellationOptions",
    "PlatformAudio",
    "PlatformAudioError",
    "PlatformAudioOptions",
    "PlatformAudioSource",
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


class PlatformAudioError(UnsupportedFeatureError):
    """What constructing :class:`PlatformAudio` or :class:`PlatformAudioSource` raises.

    The official SDK raises ``PlatformAudioError`` when the device module fails; here the
    module never exists, so code that catches it (or :class:`UnsupportedFeatureError`) handles
    the refusal.
    """


def _refuse(name: str) -> NoReturn:
    if name == "PlatformAudio":
        raise PlatformAudioError(f"rtc.{name}", NATIVE_REASONS[name])
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


class PlatformAudioSource:
    """Refused: the official SDK's microphone source of :class:`PlatformAudio`.

    Raises:
        PlatformAudioError: always, on construction.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _refuse("PlatformAudio")


@dataclass
class AudioDeviceInfo:
    """An audio device, as the official ``PlatformAudio`` lists them (data only).

    lkproto lists no devices (see :data:`NATIVE_REASONS`); the class exists so code that
    annotates or builds it imports.

    Attributes:
        index: the device's index in its list.
        name: its human-readable name.
        id: its platform identifier.
    """

    index: int
    name: str
    id: str


@dataclass
class PlatformAudioOptions:
    """The official ``PlatformAudio`` processing options (data only: nothing here takes them).

    Attributes:
        echo_cancellation: acoustic echo cancellation.
        noise_suppression: noise suppression.
        auto_gain_control: automatic gain control.
        prefer_hardware: prefer the device's own processing.
    """

    echo_cancellation: bool = True
    noise_suppression: bool = True
    auto_gain_control: bool = True
    prefer_hardware: bool = False


@dataclass
class NoiseCancellationOptions:
    """The official options naming a native noise-cancellation module (data only).

    ``AudioStream(noise_cancellation=NoiseCancellationOptions(...))`` raises
    :class:`UnsupportedFeatureError`: the module is a native plugin lkproto cannot load (see
    :data:`NATIVE_REASONS` ``AudioFilter``). Pass a :class:`~lkproto.rtc.FrameProcessor`
    instead.

    Attributes:
        module_id: the plugin module's id.
        options: its options.
    """

    module_id: str
    options: dict[str, object] = field(default_factory=dict)
