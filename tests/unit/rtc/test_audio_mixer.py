"""AudioMixer (lkproto.rtc.audio_mixer): sums, clipping, late and ending inputs, closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from lkproto import rtc
from lkproto.errors import LocalProtocolError
from tests.conftest import scaled

__all__: list[str] = []

RATE = 8000
BLOCK = 80  # 10 ms


def _frame(value: int, samples: int, channels: int = 1, rate: int = RATE) -> rtc.AudioFrame:
    data = np.full(samples * channels, value, dtype="<i2").tobytes()
    return rtc.AudioFrame(data, rate, channels, samples)


async def _constant(value: int, frames: int, samples: int = 40) -> AsyncIterator[rtc.AudioFrame]:
    for _ in range(frames):
        yield _frame(value, samples)


async def _collect(mixer: rtc.AudioMixer) -> list[np.ndarray]:
    async def run() -> list[np.ndarray]:
        return [np.frombuffer(bytes(f.data.cast("B")), dtype="<i2") async for f in mixer]

    return await asyncio.wait_for(run(), scaled(5.0))


async def test_inputs_are_summed_block_by_block() -> None:
    mixer = rtc.AudioMixer(RATE, 1, blocksize=BLOCK)
    mixer.add_stream(_constant(1000, 8))  # 320 samples
    mixer.add_stream(_constant(-250, 8))
    mixer.end_input()
    blocks = await _collect(mixer)
    assert len(blocks) == 4
    assert all(len(b) == BLOCK and (b == 750).all() for b in blocks)


@pytest.mark.parametrize(("value", "clipped"), [(30_000, 32_767), (-30_000, -32_768)])
async def test_sum_is_clipped_to_int16(value: int, clipped: int) -> None:
    mixer = rtc.AudioMixer(RATE, 2, blocksize=BLOCK)

    async def loud() -> AsyncIterator[rtc.AudioFrame]:
        yield _frame(value, BLOCK, 2)

    mixer.add_stream(loud())
    mixer.add_stream(loud())
    mixer.end_input()
    [block] = await _collect(mixer)
    assert len(block) == 2 * BLOCK
    assert (block == clipped).all()


async def test_a_shorter_input_is_padded_with_silence() -> None:
    mixer = rtc.AudioMixer(RATE, 1, blocksize=BLOCK)
    mixer.add_stream(_constant(100, 4))  # 160 samples: two blocks
    mixer.add_stream(_constant(10, 1))  # 40 samples: half a block
    mixer.end_input()
    blocks = await _collect(mixer)
    assert [b.tolist() for b in blocks] == [[110] * 40 + [100] * 40, [100] * 80]


async def test_late_input_contributes_silence_and_is_closed_by_aclose() -> None:
    gate = asyncio.Event()
    closed = asyncio.Event()

    async def stuck() -> AsyncIterator[rtc.AudioFrame]:
        try:
            await gate.wait()
            yield _frame(5, BLOCK)
        finally:
            closed.set()

    mixer = rtc.AudioMixer(RATE, 1, blocksize=BLOCK, stream_timeout_ms=20)
    mixer.add_stream(stuck())
    mixer.add_stream(_constant(7, 2, samples=BLOCK))
    first = await asyncio.wait_for(anext(mixer), scaled(5.0))
    assert (np.frombuffer(bytes(first.data.cast("B")), dtype="<i2") == 7).all()
    await asyncio.wait_for(mixer.aclose(), scaled(5.0))
    assert closed.is_set()


async def test_a_stalled_input_is_dropped_after_end_input() -> None:
    async def never() -> AsyncIterator[rtc.AudioFrame]:
        await asyncio.Event().wait()
        yield _frame(0, BLOCK)

    mixer = rtc.AudioMixer(RATE, 1, blocksize=BLOCK, stream_timeout_ms=10)
    mixer.add_stream(never())
    mixer.add_stream(_constant(3, 1, samples=BLOCK))
    mixer.end_input()
    blocks = await _collect(mixer)
    assert [b.tolist() for b in blocks] == [[3] * BLOCK]
    await mixer.aclose()


async def test_frames_of_another_shape_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def mixed_shapes() -> AsyncIterator[rtc.AudioFrame]:
        yield _frame(9, BLOCK, rate=16_000)
        yield _frame(9, BLOCK, channels=2)
        yield _frame(4, BLOCK)

    mixer = rtc.AudioMixer(RATE, 1, blocksize=BLOCK)
    mixer.add_stream(mixed_shapes())
    mixer.end_input()
    blocks = await _collect(mixer)
    assert [b.tolist() for b in blocks] == [[4] * BLOCK]
    assert caplog.text.count("skipped a frame") == 2


async def test_misuse_is_refused() -> None:
    mixer = rtc.AudioMixer(RATE, 1)
    mixer.end_input()
    with pytest.raises(LocalProtocolError, match="after end_input"):
        mixer.add_stream(_constant(1, 1))
    assert await _collect(mixer) == []
    assert await _collect(mixer) == []  # ended stays ended
    with pytest.raises(ValueError, match="must be > 0"):
        rtc.AudioMixer(0, 1)
    with pytest.raises(ValueError, match="capacity"):
        rtc.AudioMixer(RATE, 1, capacity=0)
