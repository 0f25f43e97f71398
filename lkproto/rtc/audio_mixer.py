"""Official ``AudioMixer``: several async streams of :class:`AudioFrame` summed into one.

Theory of operation. The mixer runs one task. Each round it needs ``blocksize`` samples per
channel from every input: it reads frames from each input (all inputs at once) until that much
is buffered, the input ends, or ``stream_timeout_ms`` passes. An input that is late contributes
what it has padded with silence, and its read in flight is kept for the next round (cancelling
it would finish an async generator for good). Contributions are summed in 32-bit and clipped to
int16; the round yields one frame if any input gave samples. An input that has ended leaves once
its buffer is drained. After :meth:`AudioMixer.end_input` the task ends when no input is left
(an input that stalls for :data:`MAX_STALLED_ROUNDS` rounds after that is dropped, so the drain
ends); :meth:`AudioMixer.aclose` stops at once. Frames of another rate or channel count than the
mixer's are skipped with a warning, as there is no resampling here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import numpy as np

from lkproto.errors import LocalProtocolError
from lkproto.rtc.audio_frame import AudioFrame

__all__ = ["MAX_STALLED_ROUNDS", "AudioMixer"]

_log = logging.getLogger("lkproto.media")

MAX_STALLED_ROUNDS: Final = 3
"""Rounds an input may time out in a row after ``end_input`` before it is dropped."""

_Input = AsyncIterator[AudioFrame]


class _InputState:
    __slots__ = ("buffer", "ended", "read", "stalled")

    def __init__(self, channels: int) -> None:
        self.buffer = np.empty((0, channels), dtype=np.int16)
        self.read: asyncio.Future[AudioFrame] | None = None
        self.ended = False
        self.stalled = 0


class AudioMixer:
    """Mix async iterators of :class:`AudioFrame` into one, iterated with ``async for``.

    Args:
        sample_rate: rate of the inputs and of the mixed frames, in Hz.
        num_channels: channel count of the inputs and of the mixed frames.
        blocksize: samples per channel in each mixed frame; 0 means 100 ms.
        stream_timeout_ms: how long a round waits for a late input.
        capacity: mixed frames kept for a slow reader before the mixer waits.

    Raises:
        ValueError: a non-positive rate, channel count, timeout or capacity, or a negative
            blocksize.
        RuntimeError: no running event loop.
    """

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        *,
        blocksize: int = 0,
        stream_timeout_ms: int = 100,
        capacity: int = 100,
    ) -> None:
        if sample_rate <= 0 or num_channels <= 0:
            raise ValueError(
                f"sample_rate and num_channels must be > 0: {sample_rate}, {num_channels}"
            )
        if blocksize < 0 or stream_timeout_ms <= 0 or capacity <= 0:
            raise ValueError("blocksize must be >= 0, stream_timeout_ms and capacity > 0")
        self._rate = sample_rate
        self._channels = num_channels
        self._block = blocksize or sample_rate // 10
        self._timeout_s = stream_timeout_ms / 1000
        self._inputs: dict[_Input, _InputState] = {}
        self._out: asyncio.Queue[AudioFrame | None] = asyncio.Queue(maxsize=capacity)
        self._changed = asyncio.Event()
        self._ending = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add_stream(self, stream: AsyncIterator[AudioFrame]) -> None:
        """Mix ``stream`` from the next round on.

        Raises:
            LocalProtocolError: after :meth:`end_input` or :meth:`aclose`.
        """
        if self._ending:
            raise LocalProtocolError("AudioMixer.add_stream after end_input() or aclose()")
        self._inputs.setdefault(stream, _InputState(self._channels))
        self._changed.set()

    def remove_stream(self, stream: AsyncIterator[AudioFrame]) -> None:
        """Stop mixing ``stream`` (its buffered samples are dropped; unknown streams ignored)."""
        state = self._inputs.pop(stream, None)
        if state is not None:
            _abandon(state.read)
        self._changed.set()

    def end_input(self) -> None:
        """No more inputs will be added: iteration ends once the current ones are drained."""
        self._ending = True
        self._changed.set()

    async def aclose(self) -> None:
        """Stop now: pending reads are cancelled and awaited, unread mixed frames dropped."""
        self._ending = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        reads = [s.read for s in self._inputs.values() if s.read is not None]
        self._inputs.clear()
        for read in reads:
            _abandon(read)
        await asyncio.gather(*reads, return_exceptions=True)

    def __aiter__(self) -> AudioMixer:
        return self

    async def __anext__(self) -> AudioFrame:
        frame = await self._out.get()
        if frame is None:
            self._out.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return frame

    async def _run(self) -> None:
        while True:
            if not self._inputs:
                if self._ending:
                    break
                self._changed.clear()
                await self._changed.wait()
                continue
            inputs = list(self._inputs.items())
            parts = await asyncio.gather(*(self._take(stream, s) for stream, s in inputs))
            for stream, state in inputs:
                if state.ended and not len(state.buffer) and self._inputs.get(stream) is state:
                    del self._inputs[stream]
            given = [block for block, fresh in parts if fresh]
            if not given:
                continue
            mixed = np.sum([block.astype(np.int32) for block, _ in parts], axis=0)
            pcm = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
            await self._out.put(AudioFrame(pcm, self._rate, self._channels, self._block))
        await self._out.put(None)

    async def _take(self, stream: _Input, state: _InputState) -> tuple[np.ndarray, bool]:
        """One round's block from ``stream`` and whether it held any real samples."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        while len(state.buffer) < self._block and not state.ended:
            if self._inputs.get(stream) is not state:
                break  # removed during the round
            if state.read is None:
                state.read = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({state.read}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                state.stalled += 1
                _log.warning("AudioMixer: an input gave nothing for %.0f ms", self._timeout_s * 1e3)
                state.ended = self._ending and state.stalled >= MAX_STALLED_ROUNDS
                break
            read, state.read = state.read, None
            state.stalled = 0
            try:
                frame = read.result()
            except StopAsyncIteration:
                state.ended = True
                break
            if frame.sample_rate != self._rate or frame.num_channels != self._channels:
                _log.warning(
                    "AudioMixer: skipped a frame of %d Hz x %d (the mixer runs %d Hz x %d)",
                    frame.sample_rate,
                    frame.num_channels,
                    self._rate,
                    self._channels,
                )
                continue
            samples = np.frombuffer(bytes(frame.data.cast("B")), dtype="<i2")
            state.buffer = np.concatenate((state.buffer, samples.reshape(-1, self._channels)))
        fresh = len(state.buffer) > 0
        block = state.buffer[: self._block]
        state.buffer = state.buffer[self._block :]
        if len(block) < self._block:
            silence = np.zeros((self._block - len(block), self._channels), dtype=np.int16)
            block = np.concatenate((block, silence))
        return block, fresh


def _abandon(read: asyncio.Future[AudioFrame] | None) -> None:
    """Cancel a read nobody will use, and retrieve its outcome so asyncio does not log it."""
    if read is None:
        return
    read.cancel()
    read.add_done_callback(lambda f: None if f.cancelled() else f.exception())
