"""The RFC 6464 audio level lkproto computes equals aiortc's for any 16-bit PCM frame.

:func:`lkproto.asyncio.audio.audio_level_dbov` replaces aiortc 1.16.0's per-sample
``aiortc.rtp.compute_audio_level_dbov`` on lkproto's senders (issue 18); it must put the same
value in every packet's header extension: silence, full scale (including -32768), the rounding
boundaries in between, mono and stereo, any frame length.
"""

from __future__ import annotations

import av
import numpy as np
from aiortc.rtp import compute_audio_level_dbov
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lkproto.asyncio.audio import audio_level_dbov


def _frame(pcm: np.ndarray, channels: int) -> av.AudioFrame:
    layout = "mono" if channels == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = 48_000
    return frame


@st.composite
def pcm_frames(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    channels = draw(st.sampled_from([1, 2]))
    samples = draw(st.sampled_from([1, 2, 160, 480, 960, 1920]))
    # Amplitude bounds from silence to full scale, so every level from -127 to 0 is reachable.
    bound = draw(st.sampled_from([0, 1, 3, 30, 300, 3_000, 20_000, 32_767]))
    pcm = draw(
        hnp.arrays(
            np.int16,
            samples * channels,
            elements=st.integers(-bound - (bound == 32_767), bound),
        )
    )
    return pcm, channels


@settings(max_examples=300, deadline=None)
@given(pcm_frames())
def test_level_equals_aiortcs(case: tuple[np.ndarray, int]) -> None:
    pcm, channels = case
    frame = _frame(pcm, channels)
    level = audio_level_dbov(frame)
    assert level == compute_audio_level_dbov(frame)
    assert -127 <= level <= 0


@settings(max_examples=100, deadline=None)
@given(st.integers(-32_768, 32_767), st.sampled_from([1, 2]))
def test_constant_frames_match_at_every_value(value: int, channels: int) -> None:
    frame = _frame(np.full(960 * channels, value, dtype=np.int16), channels)
    assert audio_level_dbov(frame) == compute_audio_level_dbov(frame)
