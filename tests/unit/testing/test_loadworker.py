"""ToneMeter: what a load or soak listener reports of the tone it hears."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lkproto.testing.loadworker import ToneMeter

_RATE = 48_000
_FRAME = 480


def _frame(hz: float, index: int, amplitude: float = 0.3) -> bytes:
    t = (np.arange(_FRAME) + index * _FRAME) / _RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16).tobytes()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    # Only the worker's clock: the module's ``time`` becomes a stand-in with this one function.
    monkeypatch.setattr("lkproto.testing.loadworker.time", types.SimpleNamespace(monotonic=fake))
    return fake


def test_counts_audio_gaps_silence_and_the_peak(clock: _Clock) -> None:
    meter = ToneMeter()
    meter.on_frame(_frame(440, 0), _FRAME)  # not measuring yet: ignored
    meter.measuring = True
    for i in range(150):  # 1.5 s of tone, one frame every 10 ms
        clock.now += 0.01
        meter.on_frame(_frame(440, i), _FRAME)
    clock.now += 0.35  # a pause in the arrivals
    meter.on_frame(_frame(440, 150, amplitude=0.0), _FRAME)  # a silent frame after the tone
    for i in range(151, 160):
        clock.now += 0.01
        meter.on_frame(_frame(440, i), _FRAME)
    report = meter.report()
    assert report["frames"] == 160
    assert report["seconds"] == pytest.approx(1.6)
    assert report["gaps"] == 1
    assert report["longest_gap_s"] == pytest.approx(0.35)
    assert report["silent_frames"] == 1
    assert report["span_s"] == pytest.approx(1.49 + 0.35 + 0.09)
    # The last second only, so the window is ~1 s and the peak falls on 440 Hz within a bin.
    assert report["peak_hz"] == pytest.approx(440, abs=2)


def test_silence_before_the_tone_is_not_counted(clock: _Clock) -> None:
    meter = ToneMeter()
    meter.measuring = True
    for i in range(5):
        clock.now += 0.01
        meter.on_frame(_frame(440, i, amplitude=0.0), _FRAME)
    clock.now += 0.01
    meter.on_frame(_frame(440, 5), _FRAME)
    assert meter.report()["silent_frames"] == 0
    meter.measuring = False
    clock.now += 5.0
    meter.on_frame(_frame(440, 6), _FRAME)
    assert meter.report()["frames"] == 6
    assert meter.report()["gaps"] == 0
