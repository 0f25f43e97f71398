"""lkproto.asyncio.video simulcast layers: one source read once, scaled per layer, pausable."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lkproto.asyncio.video import VIDEO_CLOCK_RATE_HZ, SimulcastSplitter
from tests.conftest import scaled

__all__: list[str] = []


class Source(MediaStreamTrack):
    """1280x720 yuv420p frames 1/30 s apart (in pts), as fast as asked; ends after ``count``."""

    kind = "video"

    def __init__(self, count: int = 10_000) -> None:
        super().__init__()
        self.read = 0
        self.count = count

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0.001)
        if self.read >= self.count:
            raise MediaStreamError
        self.read += 1
        pixels = np.zeros((720, 1280, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = self.read * VIDEO_CLOCK_RATE_HZ // 30
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE_HZ)
        return frame


async def test_each_layer_gets_its_size_and_frame_rate() -> None:
    source = Source()
    splitter = SimulcastSplitter(source)
    low, full = splitter.layer(320, 180, 15), splitter.layer(1280, 720)
    got: dict[str, list[av.VideoFrame]] = {"low": [], "full": []}

    async def pull(name: str, track: MediaStreamTrack) -> None:
        while len(got[name]) < 6:
            got[name].append(await track.recv())  # type: ignore[arg-type]

    async with asyncio.timeout(scaled(10)):
        await asyncio.gather(pull("low", low), pull("full", full))
    splitter.stop()
    assert {(f.width, f.height, f.format.name) for f in got["low"]} == {(320, 180, "yuv420p")}
    assert {(f.width, f.height) for f in got["full"]} == {(1280, 720)}
    # 15 fps from a 30 fps source: consecutive low frames are at least 1/15 s apart.
    gaps = [
        int(b.pts or 0) - int(a.pts or 0) for a, b in zip(got["low"], got["low"][1:], strict=False)
    ]
    assert min(gaps) >= VIDEO_CLOCK_RATE_HZ // 15 - VIDEO_CLOCK_RATE_HZ // 1000, gaps
    assert got["low"][0].time_base == fractions.Fraction(1, VIDEO_CLOCK_RATE_HZ)


async def test_a_paused_layer_gets_no_frames_and_all_paused_stops_reading() -> None:
    source = Source()
    splitter = SimulcastSplitter(source)
    low, full = splitter.layer(320, 180), splitter.layer(1280, 720)
    async with asyncio.timeout(scaled(10)):
        await full.recv()
    low.set_running(False)
    assert not low.running
    waiting = asyncio.ensure_future(low.recv())
    async with asyncio.timeout(scaled(10)):
        for _ in range(5):
            await full.recv()
    assert not waiting.done()  # nothing was offered to the paused layer
    full.set_running(False)
    await asyncio.sleep(0.05)
    read = source.read
    await asyncio.sleep(0.2)
    assert source.read <= read + 1  # with every layer paused the source is not read
    low.set_running(True)
    async with asyncio.timeout(scaled(10)):
        frame = await waiting
    assert (frame.width, frame.height) == (320, 180)
    splitter.stop()


async def test_layers_end_with_their_source() -> None:
    splitter = SimulcastSplitter(Source(count=2))
    layer = splitter.layer(640, 360)
    async with asyncio.timeout(scaled(10)):
        await layer.recv()
        await layer.recv()
        with pytest.raises(MediaStreamError):
            await layer.recv()
