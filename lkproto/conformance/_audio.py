"""Tone generation and pitch measurement for the media scenarios (numpy optional)."""

from __future__ import annotations

import array
import itertools
import math
from typing import Final

__all__ = ["AMPLITUDE", "FRAME_SAMPLES", "SAMPLE_RATE", "peak_frequency", "rms", "sine_frame"]

SAMPLE_RATE: Final = 48_000
FRAME_SAMPLES: Final = SAMPLE_RATE // 100  # 10 ms
AMPLITUDE: Final = 0.3  # of full scale


def sine_frame(freq: float, start: int, samples: int = FRAME_SAMPLES) -> bytes:
    """``samples`` int16 mono samples of a sine at ``freq`` Hz starting at sample ``start``."""
    scale = AMPLITUDE * 32767
    step = 2 * math.pi * freq / SAMPLE_RATE
    return array.array(
        "h", (int(scale * math.sin(step * (start + i))) for i in range(samples))
    ).tobytes()


def rms(pcm: bytes) -> float:
    """RMS of int16 samples, as a fraction of full scale."""
    values = array.array("h", pcm)
    if not values:
        return 0.0
    return math.sqrt(sum(v * v for v in values) / len(values)) / 32767


def peak_frequency(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> float:
    """Dominant frequency of int16 mono ``pcm``: FFT peak with numpy, else zero crossings."""
    try:
        import numpy as np
    except ImportError:
        values = array.array("h", pcm)
        crossings = sum(1 for a, b in itertools.pairwise(values) if (a < 0) != (b < 0))
        return crossings * sample_rate / (2 * max(len(values), 1))
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64) / 32767
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / sample_rate)[int(np.argmax(spectrum))])
