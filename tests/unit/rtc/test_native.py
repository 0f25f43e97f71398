"""Native-audio names (lkproto.rtc.native): refused by name; data classes with official fields."""

from __future__ import annotations

import dataclasses

import pytest
from livekit import rtc as official

from lkproto import rtc
from lkproto.errors import UnsupportedFeatureError
from lkproto.rtc.native import NATIVE_REASONS


@pytest.mark.parametrize("name", ["PlatformAudio", "PlatformAudioSource"])
def test_platform_audio_refuses_with_platform_audio_error(name: str) -> None:
    with pytest.raises(rtc.PlatformAudioError) as info:
        getattr(rtc, name)()
    assert isinstance(info.value, UnsupportedFeatureError)
    assert info.value.feature == "rtc.PlatformAudio"
    assert info.value.reason == NATIVE_REASONS["PlatformAudio"]


@pytest.mark.parametrize("name", ["AudioDeviceInfo", "PlatformAudioOptions"])
def test_data_classes_have_the_official_fields_and_defaults(name: str) -> None:
    theirs = getattr(official, name)
    ours = getattr(rtc, name)
    assert [(f.name, f.default) for f in dataclasses.fields(ours)] == [
        (f.name, f.default) for f in dataclasses.fields(theirs)
    ]


def test_platform_audio_options_defaults() -> None:
    assert rtc.PlatformAudioOptions() == rtc.PlatformAudioOptions(
        echo_cancellation=True, noise_suppression=True, auto_gain_control=True
    )
    assert not rtc.PlatformAudioOptions().prefer_hardware


def test_noise_cancellation_options_are_data_and_refused_by_audio_stream() -> None:
    from lkproto.rtc.audio_stream import _processor

    options = rtc.NoiseCancellationOptions(module_id="krisp", options={"level": 1})
    assert options.options == {"level": 1}
    assert rtc.NoiseCancellationOptions("m").options == {}
    with pytest.raises(UnsupportedFeatureError) as info:
        _processor({"noise_cancellation": options})
    assert info.value.feature == "AudioStream.noise_cancellation"
