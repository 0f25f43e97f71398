"""The official pre-encoded video names (lkproto.rtc.encoded) and EncodedVideoSource's official
call shape: capture_frame, take_feedback, the codec fixed by the first frame or the publication."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from livekit import rtc as official

from lkproto import rtc
from lkproto.errors import LocalProtocolError, UnsupportedFeatureError
from lkproto.rtc import _options
from lkproto.rtc.participant import _track_description

IDR = b"\x00\x00\x00\x01\x65\x88"
DELTA = b"\x00\x00\x01\x41\x9a"
KEY = rtc.EncodedFrameType.ENCODED_FRAME_KEY
DELTA_TYPE = rtc.EncodedFrameType.ENCODED_FRAME_DELTA


def frame(
    data: bytes, frame_type: int, timestamp_us: int, codec: int = rtc.VideoCodec.H264
) -> rtc.EncodedVideoFrame:
    return rtc.EncodedVideoFrame(data, 64, 48, codec, frame_type, timestamp_us)


@pytest.mark.parametrize(
    "name", ["EncodedFrameType", "VideoEncoderBackend", "FrameMetadataFeature"]
)
def test_proto_enums_have_the_official_names_and_numbers(name: str) -> None:
    ours = getattr(rtc, name)
    assert dict(ours.items()) == dict(getattr(official, name).items())


def test_degradation_preference_matches_the_official_enum() -> None:
    assert {m.name: int(m) for m in rtc.DegradationPreference} == {
        m.name: int(m) for m in official.DegradationPreference
    }


@pytest.mark.parametrize(
    "name", ["EncodedVideoFrame", "EncodedRateControl", "EncodedVideoSourceFeedback"]
)
def test_data_classes_have_the_official_fields(name: str) -> None:
    ours = [f.name for f in dataclasses.fields(getattr(rtc, name))]
    assert ours == [f.name for f in dataclasses.fields(getattr(official, name))]


def test_frame_metadata_has_the_official_fields() -> None:
    fields = [f.name for f in dataclasses.fields(rtc.FrameMetadata)]
    assert fields == list(official.FrameMetadata.DESCRIPTOR.fields_by_name)


def test_encoded_frame_checks_like_the_official_one() -> None:
    with pytest.raises(TypeError, match="bytes"):
        rtc.EncodedVideoFrame(bytearray(IDR), 64, 48, 1, KEY, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        rtc.EncodedVideoFrame(b"", 64, 48, 1, KEY, 0)
    with pytest.raises(ValueError, match="positive"):
        rtc.EncodedVideoFrame(IDR, 0, 48, 1, KEY, 0)


def test_both_constructor_shapes() -> None:
    assert rtc.EncodedVideoSource(64, 48).codec is None
    source = rtc.EncodedVideoSource(width=64, height=48)
    assert (source.codec, source.width, source.height) == (None, 64, 48)
    assert rtc.EncodedVideoSource("VP8", 64, 48).codec == "vp8"
    assert rtc.EncodedVideoSource(codec="h264", width=64, height=48).codec == "h264"
    make: Any = rtc.EncodedVideoSource
    for args, kwargs in [((64,), {}), ((64, 48, 1), {}), (("vp8", 64), {}), ((64, 48), {"x": 1})]:
        with pytest.raises(TypeError):
            make(*args, **kwargs)
    with pytest.raises(ValueError, match="unsupported codec"):
        rtc.EncodedVideoSource("av1", 64, 48)


async def test_capture_frame_queues_for_the_track_and_reports_drops() -> None:
    source = rtc.EncodedVideoSource(64, 48)
    assert source.capture_frame(frame(DELTA, DELTA_TYPE, 1)) is False  # no keyframe yet
    assert source.codec == "h264"  # fixed by the first frame
    assert source.capture_frame(frame(IDR, KEY, 1_000_000)) is True
    assert source.capture_frame(frame(DELTA, DELTA_TYPE, 1_033_333)) is True
    track = source._media_track()
    key, delta = await track.recv(), await track.recv()
    assert (bytes(key), key.is_keyframe) == (IDR, True)
    assert (bytes(delta), delta.is_keyframe) == (DELTA, False)
    await source.aclose()
    with pytest.raises(LocalProtocolError):
        source.capture_frame(frame(IDR, KEY, 2_000_000))


def test_capture_frame_refuses_what_lkproto_cannot_send() -> None:
    source = rtc.EncodedVideoSource(64, 48)
    with pytest.raises(UnsupportedFeatureError):
        source.capture_frame(frame(IDR, KEY, 1, codec=rtc.VideoCodec.AV1))
    with_metadata = dataclasses.replace(frame(IDR, KEY, 1), metadata=rtc.FrameMetadata(frame_id=7))
    with pytest.raises(UnsupportedFeatureError, match="metadata"):
        source.capture_frame(with_metadata)
    assert source.codec is None  # nothing was accepted
    source.capture_frame(frame(IDR, KEY, 1))
    with pytest.raises(LocalProtocolError, match="fixed"):
        source.capture_frame(frame(b"\x10\x02", KEY, 2, codec=rtc.VideoCodec.VP8))
    with pytest.raises(ValueError, match="Annex-B"):
        source.capture_frame(frame(b"\x65\x88", KEY, 3))


def test_lkproto_capture_needs_a_codec() -> None:
    with pytest.raises(LocalProtocolError, match="codec"):
        rtc.EncodedVideoSource(64, 48).capture_encoded(IDR, timestamp_us=1, keyframe=True)


def test_take_feedback_reports_keyframe_requests_once() -> None:
    source = rtc.EncodedVideoSource(64, 48)
    assert source.take_feedback() == rtc.EncodedVideoSourceFeedback(
        keyframe_requested=False, rate_control=None
    )
    source._media_track()  # a new track with nothing to send asks for a keyframe
    assert source.take_feedback().keyframe_requested
    assert not source.take_feedback().keyframe_requested
    source._feed.request_keyframe()  # as a server PLI does
    feedback = source.take_feedback()
    assert feedback.keyframe_requested
    assert feedback.rate_control is None


def test_the_publication_fixes_the_codec_of_an_official_source() -> None:
    source = rtc.EncodedVideoSource(64, 48)
    track = rtc.LocalVideoTrack.create_video_track("enc", source)
    options = rtc.TrackPublishOptions(
        video_codec=rtc.VideoCodec.VP8,
        video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED,
    )
    assert _track_description(track, options).mime_type == "video/VP8"
    assert source.codec == "vp8"
    with pytest.raises(LocalProtocolError, match="fixed"):
        source.capture_frame(frame(IDR, KEY, 1))
    # simulcast (on by default) is a hint for a pre-encoded source: one layer (rtc.participant).
    assert not _track_description(
        rtc.LocalVideoTrack.create_video_track("enc2", rtc.EncodedVideoSource(1280, 720)),
        rtc.TrackPublishOptions(simulcast=True),
    ).simulcast


def test_video_encoder_option() -> None:
    for backend in ("AUTO", "SOFTWARE", "PRE_ENCODED"):
        value = rtc.VideoEncoderBackend.Value(f"ENCODER_BACKEND_{backend}")
        assert rtc.TrackPublishOptions(video_encoder=value).video_encoder == value
    with pytest.raises(UnsupportedFeatureError, match="software"):
        rtc.TrackPublishOptions(video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_NVENC)
    with pytest.raises(LocalProtocolError, match="unknown"):
        rtc.TrackPublishOptions(video_encoder=99)


def test_degradation_preference_is_a_hint(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_options, "_warned", set())
    with caplog.at_level(logging.WARNING):
        rtc.TrackPublishOptions(degradation_preference=rtc.DegradationPreference.BALANCED)
        assert not caplog.records
        opts = rtc.TrackPublishOptions()
        opts.degradation_preference = rtc.DegradationPreference.MAINTAIN_FRAMERATE
    assert [r.getMessage() for r in caplog.records if "degradation" in r.getMessage()]
    with pytest.raises(LocalProtocolError, match="unknown"):
        rtc.TrackPublishOptions(degradation_preference=3)
