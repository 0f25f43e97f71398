"""The rest of ``livekit.rtc`` across the wire, against the official SDK on a real server.

RPC interceptors: the same interceptor, written once against the official ``RpcInterceptor``
interface, runs in whichever SDK the peer uses (``lkproto.rtc.RpcInterceptor`` or
``livekit.rtc.RpcInterceptor``), so each check holds in both directions.

``AudioStream.from_participant``: one stream follows the official participant's microphone
across an unpublish and a new publication.

Encoded video: a publisher written in the official SDK's documented pre-encoded style
(``EncodedVideoSource(width, height)``, ``capture_frame``, ``take_feedback``) reaches an official
subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as official

from lkproto import rtc
from lkproto.core.rpc import RpcErrorCode
from lkproto.testing import scaled
from tests.interop._data_helpers import DIRECTIONS, Peer, data_room
from tests.interop._helpers import wait_for
from tests.interop.test_media import (
    COLOURS,
    SAMPLE_RATE,
    VIDEO_H,
    VIDEO_W,
    assert_in_order,
    colour_sequence,
    pair,
    publish_tone,
    subscribed_track,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

_CALL_TIMEOUT_S = 15.0


def _interceptor(peer: Peer, seen: list[str], done: asyncio.Event | None = None) -> Any:
    """An interceptor of ``peer``'s SDK that tags payloads and records what it sees."""
    base: Any = official.RpcInterceptor if peer.official else rtc.RpcInterceptor

    class Tag(base):  # type: ignore[misc]
        async def intercept_outgoing(self, call: Any, next: Any) -> str:
            seen.append(f"out {call.method} {call.payload}")
            response: str = await next(dataclasses.replace(call, payload=call.payload + "+out"))
            return response + "+back"

        async def intercept_incoming(self, invocation: Any, next: Any) -> str | None:
            seen.append(f"in {invocation.method} {invocation.caller_identity}")
            try:
                result: str | None = await next(invocation)
            finally:
                reason = invocation.cancel_reason
                seen.append(f"reason {None if reason is None else int(reason)}")
                if done is not None:
                    done.set()
            return None if result is None else result + "+in"

    return Tag()


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_interceptors_wrap_both_ends_of_a_call(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "rpc-icpt") as room:
        caller, callee = room.pair(direction)
        caller_seen: list[str] = []
        callee_seen: list[str] = []
        caller.local.add_rpc_interceptor(_interceptor(caller, caller_seen))
        callee.local.add_rpc_interceptor(_interceptor(callee, callee_seen))
        callee.local.register_rpc_method("echo", lambda data: f"got {data.payload}")
        result = await asyncio.wait_for(
            caller.local.perform_rpc(
                destination_identity=callee.identity, method="echo", payload="hi"
            ),
            scaled(_CALL_TIMEOUT_S),
        )
        assert result == "got hi+out+in+back"
        assert caller_seen == ["out echo hi"]
        assert callee_seen == [f"in echo {caller.identity}", "reason None"]


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_the_callee_chain_learns_it_overran_the_deadline(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "rpc-icpt-late") as room:
        caller, callee = room.pair(direction)
        seen: list[str] = []
        unwound = asyncio.Event()
        callee.local.add_rpc_interceptor(_interceptor(callee, seen, unwound))

        async def hang(data: Any) -> str:
            await asyncio.Event().wait()
            return "never"

        callee.local.register_rpc_method("hang", hang)
        with pytest.raises(caller.rpc_error) as info:
            await asyncio.wait_for(
                caller.local.perform_rpc(
                    destination_identity=callee.identity,
                    method="hang",
                    payload="",
                    response_timeout=2.0,
                ),
                scaled(_CALL_TIMEOUT_S),
            )
        error: Any = info.value
        assert int(error.code) == RpcErrorCode.RESPONSE_TIMEOUT
        # The callee's deadline (max(response_timeout, ack latency + 1 s)) may be later.
        await asyncio.wait_for(unwound.wait(), scaled(_CALL_TIMEOUT_S))
        assert seen == [
            f"in hang {caller.identity}",
            f"reason {int(RpcErrorCode.RESPONSE_TIMEOUT)}",
        ]


async def test_official_style_pre_encoded_publisher_reaches_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    import av
    import numpy as np
    from av.video.frame import PictureType

    async with pair(livekit_server, "encoded-official") as (ours, theirs):
        source = rtc.EncodedVideoSource(VIDEO_W, VIDEO_H)
        track = rtc.LocalVideoTrack.create_video_track("encoded", source)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            video_codec=rtc.VideoCodec.VP8,
            video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED,
            simulcast=False,
        )
        await ours.local_participant.publish_track(track, options)
        assert source.codec == "vp8"
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height, encoder.pix_fmt = VIDEO_W, VIDEO_H, "yuv420p"
        encoder.time_base = fractions.Fraction(1, 30)
        # No periodic keyframes: after the first, only the feedback asks for one.
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": "100000"}
        frames = [
            av.VideoFrame.from_ndarray(
                np.full((VIDEO_H, VIDEO_W, 3), c, dtype=np.uint8), format="rgb24"
            ).reformat(format="yuv420p")
            for c in COLOURS
        ]
        answered: list[bool] = []
        accepted: list[bool] = []

        async def feed() -> None:
            n = 0
            while True:
                feedback = source.take_feedback()
                assert feedback.rate_control is None
                frame = frames[(n // 30) % len(COLOURS)]
                frame.pts = n
                frame.pict_type = PictureType.I if feedback.keyframe_requested else 0
                if feedback.keyframe_requested:
                    answered.append(True)
                for packet in encoder.encode(frame):
                    accepted.append(
                        source.capture_frame(
                            rtc.EncodedVideoFrame(
                                bytes(packet),
                                VIDEO_W,
                                VIDEO_H,
                                rtc.VideoCodec.VP8,
                                rtc.EncodedFrameType.ENCODED_FRAME_KEY
                                if packet.is_keyframe
                                else rtc.EncodedFrameType.ENCODED_FRAME_DELTA,
                                int(n * 1_000_000 / 30),
                            )
                        )
                    )
                n += 1
                await asyncio.sleep(1 / 30)

        task = asyncio.ensure_future(feed())
        try:
            remote = await subscribed_track(theirs, "video")
            seen = await colour_sequence(official, remote, changes=3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert_in_order(seen)
        assert answered  # the new track asked for a keyframe at least once
        assert accepted[0] is True  # the encoder's first frame is a keyframe


async def _dominant_hz(stream: Any, seconds: float) -> float:
    """The strongest frequency in the next ``seconds`` of audible frames of ``stream``."""
    import numpy as np

    parts: list[Any] = []
    need = int(SAMPLE_RATE * seconds)
    while sum(len(p) for p in parts) < need:
        event = await stream.__anext__()
        samples = np.frombuffer(bytes(event.frame.data), dtype=np.int16).astype(np.float64)
        if np.sqrt(np.mean(samples**2)) > 100:  # skip silence (before the tone, after it)
            parts.append(samples)
    pcm = np.concatenate(parts)[:need]
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(pcm))


async def test_audio_stream_from_participant_follows_a_republished_microphone(
    livekit_server: LocalServer,
) -> None:
    async with pair(livekit_server, "from-participant") as (ours, theirs):
        await wait_for(lambda: "sdk" in ours.remote_participants, 20, "the official peer")
        stream = rtc.AudioStream.from_participant(
            participant=ours.remote_participants["sdk"],
            track_source=rtc.TrackSource.SOURCE_MICROPHONE,
            sample_rate=SAMPLE_RATE,
        )
        try:
            first = await publish_tone(official, theirs, 440)
            try:
                hz = await asyncio.wait_for(_dominant_hz(stream, 0.5), scaled(30))
            finally:
                await first.stop()
            assert abs(hz - 440) <= 10, hz
            await theirs.local_participant.unpublish_track(first.publication.sid)
            second = await publish_tone(official, theirs, 880, name="tone2")
            try:
                # The same stream, now on the new track (the old one's tail may come first).
                async def hear_880() -> float:
                    while True:
                        hz = await _dominant_hz(stream, 0.5)
                        if abs(hz - 880) <= 10:
                            return hz

                await asyncio.wait_for(hear_880(), scaled(30))
            finally:
                await second.stop()
        finally:
            await stream.aclose()
