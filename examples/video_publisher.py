"""Publish a video track from a file (decoded with PyAV), or a generated test pattern.

Shows media publishing: a :class:`~lkproto.rtc.VideoSource` of the video's size, a
``LocalVideoTrack`` published as the camera (``publish_track``), and ``capture_frame`` fed at the
file's frame rate with RGBA :class:`~lkproto.rtc.VideoFrame`\\ s (the encoder converts to I420).
Without ``--file`` it sends a moving colour bar, 320x240 at 15 fps. The file loops until
``--duration`` ends.

::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/video_publisher.py --room my-room --file clip.mp4 --duration 30
    python examples/video_publisher.py --room my-room --duration 10     # test pattern

Watch it in LiveKit Meet, or with ``lkproto room join --room my-room``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import _shared
import av

from lkproto import rtc

__all__ = ["main"]

PATTERN_SIZE = (320, 240)
PATTERN_FPS = 15


def pattern_frames(width: int, height: int) -> Iterator[bytes]:
    """RGBA frames of a white bar sweeping across a dark blue background, forever."""
    background = bytes((20, 30, 90, 255)) * width
    bar_width = max(1, width // 10)
    n = 0
    while True:
        x = (n * 4) % width
        row = bytearray(background)
        end = min(width, x + bar_width)
        row[x * 4 : end * 4] = bytes((255, 255, 255, 255)) * (end - x)
        yield bytes(row) * height
        n += 1


def file_frames(path: Path) -> tuple[int, int, float, Iterator[bytes]]:
    """Size, frame rate and RGBA frames of the first video stream of ``path``, looping."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or Fraction(PATTERN_FPS)

    def frames() -> Iterator[bytes]:
        while True:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    rgba = frame.reformat(width=width, height=height, format="rgba")
                    plane = rgba.planes[0]
                    row_bytes = width * 4
                    data = bytes(plane)
                    if plane.line_size == row_bytes:
                        yield data[: row_bytes * height]
                    else:  # rows are padded to the decoder's alignment: drop the padding
                        stride = plane.line_size
                        yield b"".join(
                            data[y * stride : y * stride + row_bytes] for y in range(height)
                        )

    return width, height, float(rate), frames()


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    if args.file:
        width, height, fps, frames = file_frames(Path(args.file))
    else:
        width, height = PATTERN_SIZE
        fps, frames = PATTERN_FPS, pattern_frames(width, height)

    room = rtc.Room()
    await _shared.connect(room, args, args.identity)
    source = rtc.VideoSource(width, height)
    sent = 0
    try:
        track = rtc.LocalVideoTrack.create_video_track("video", source)
        publication = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        )
        what = Path(args.file).name if args.file else "test pattern"
        print(
            f"publishing {what}: track {publication.sid}, {width}x{height} at {fps:g} fps",
            flush=True,
        )
        started = time.monotonic()
        end = None if args.duration is None else started + args.duration
        for data in frames:
            now = time.monotonic()
            if end is not None and now >= end:
                break
            source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data))
            sent += 1
            # pace by the frame rate, without drift: frame n goes out at started + n / fps
            await asyncio.sleep(max(0.0, started + sent / fps - time.monotonic()))
    finally:
        await room.disconnect()
    print(f"sent {sent} frames", flush=True)
    return 0


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__)
    parser.add_argument("--file", help="a video file (any format FFmpeg reads); default: pattern")
    parser.add_argument("--identity", default="video-publisher", help="participant identity")
    _shared.add_duration_arg(parser, verb="stop")
    args = _shared.parse_args(parser)
    return _shared.run_until_interrupted(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
