"""Port-test program: a video publisher in the official SDK's documented style.

Publishes a 320x240 camera track fed with RGBA frames (a moving bar) for three seconds, then
leaves. Run by tests/interop/test_rtc_port.py twice: as written, and with only the imports
switched to lkproto.
"""

import asyncio
import os
import sys

from livekit import api, rtc

WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 15, 3.0


async def main(room_name: str) -> None:
    room = rtc.Room()
    token = (
        api.AccessToken()
        .with_identity("camera")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    await room.connect(os.environ["LIVEKIT_URL"], token)
    print(f"connected as {room.local_participant.identity}", flush=True)

    source = rtc.VideoSource(WIDTH, HEIGHT)
    track = rtc.LocalVideoTrack.create_video_track("bar", source)
    options = rtc.TrackPublishOptions()
    options.source = rtc.TrackSource.SOURCE_CAMERA
    options.video_encoding.max_bitrate = 500_000
    options.video_encoding.max_framerate = FPS
    publication = await room.local_participant.publish_track(track, options)
    print(
        f"published {publication.kind} track {publication.name!r} source {publication.source}",
        flush=True,
    )

    argb = bytearray(WIDTH * HEIGHT * 4)
    frames = int(SECONDS * FPS)
    for n in range(frames):
        argb[:] = bytes((30, 30, 90, 255)) * (WIDTH * HEIGHT)
        x = (n * 8) % WIDTH
        for y in range(HEIGHT):
            start = (y * WIDTH + x) * 4
            argb[start : start + 32] = b"\xff" * 32
        frame = rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, argb)
        source.capture_frame(frame)
        await asyncio.sleep(1 / FPS)
    print(f"captured {frames} frames", flush=True)
    await room.disconnect()
    print("disconnected", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
