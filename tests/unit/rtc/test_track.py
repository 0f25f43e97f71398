"""Tracks, publish options → AddTrackRequest, and the engine's mid → SID subscription diff."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.asyncio import publish as asyncio_publish
from lkproto.core import signal as sg
from lkproto.core.publish import build_add_track_request
from lkproto.errors import LocalProtocolError, UnsupportedFeatureError
from lkproto.rtc import _options
from lkproto.rtc.participant import _track_description
from lkproto.rtc.track import kind_from_wire
from lkproto.wire import pb


def _add_track_request(
    track: rtc.LocalTrack, options: rtc.TrackPublishOptions
) -> tuple[pb.AddTrackRequest, tuple[str, ...]]:
    """What publish_track announces for ``track`` (rtc describes it, core builds the request)."""
    description = _track_description(track, options)
    return build_add_track_request(description), (description.mime_type,)


@dataclass
class FakeMedia:
    kind: str
    id: str = "cid-1"


class FakeSource:
    def __init__(self, kind: str, **attrs: int) -> None:
        self._media = FakeMedia(kind)
        for k, v in attrs.items():
            setattr(self, k, v)

    def _media_track(self) -> FakeMedia:
        return self._media


def test_official_enum_values() -> None:
    assert (rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO) == (1, 2)
    assert rtc.TrackSource.SOURCE_MICROPHONE.value == pb.MICROPHONE
    assert rtc.TrackSource.SOURCE_SCREENSHARE.value == pb.SCREEN_SHARE
    assert (rtc.VideoCodec.VP8, rtc.VideoCodec.H264) == (0, 1)
    assert kind_from_wire(pb.AUDIO) is rtc.TrackKind.KIND_AUDIO
    assert kind_from_wire(pb.VIDEO) is rtc.TrackKind.KIND_VIDEO
    assert kind_from_wire(pb.DATA) is rtc.TrackKind.KIND_UNKNOWN


def test_local_track_cid_is_the_media_track_id() -> None:
    track = rtc.LocalAudioTrack.create_audio_track("mic", FakeSource("audio", num_channels=1))
    assert track.cid == "cid-1"
    assert (track.sid, track.name, track.kind, track.muted) == (
        "",
        "mic",
        rtc.TrackKind.KIND_AUDIO,
        False,
    )
    track.mute()  # unpublished: only the local flag changes
    assert track.muted


@pytest.mark.parametrize(("channels", "stereo"), [(1, False), (2, True)])
def test_audio_announcement_matches_what_aiortc_sends(channels: int, stereo: bool) -> None:
    track = rtc.LocalAudioTrack.create_audio_track(
        "mic", FakeSource("audio", num_channels=channels)
    )
    options = rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_MICROPHONE, red=True, dtx=True, preconnect_buffer=True
    )
    request, codecs = _add_track_request(track, options)
    assert codecs == ("audio/opus",)
    assert (request.cid, request.name, request.type, request.source) == (
        "cid-1",
        "mic",
        pb.AUDIO,
        pb.MICROPHONE,
    )
    # aiortc has neither RED nor DTX: announced off even when asked for (PROTOCOL-MAP §14).
    assert request.disable_red
    assert pb.TF_NO_DTX in request.audio_features
    assert (pb.TF_STEREO in request.audio_features) is stereo
    assert pb.TF_PRECONNECT_BUFFER in request.audio_features


@pytest.mark.parametrize(("codec", "mime"), [("VP8", "video/VP8"), ("H264", "video/H264")])
def test_video_announcement_is_one_high_layer(codec: str, mime: str) -> None:
    track = rtc.LocalVideoTrack.create_video_track(
        "cam", FakeSource("video", width=640, height=480)
    )
    options = rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        video_codec=rtc.VideoCodec[codec],
        simulcast=False,
        video_encoding=rtc.VideoEncoding(max_bitrate=900_000, max_framerate=30),
    )
    request, codecs = _add_track_request(track, options)
    assert codecs == (mime,)
    assert (request.type, request.width, request.height) == (pb.VIDEO, 640, 480)
    assert [(lay.quality, lay.width, lay.height, lay.bitrate) for lay in request.layers] == [
        (pb.HIGH, 640, 480, 900_000)
    ]
    assert [(c.codec, c.cid) for c in request.simulcast_codecs] == [(codec.lower(), "cid-1")]


def test_codecs_aiortc_cannot_send_are_refused() -> None:
    track = rtc.LocalVideoTrack.create_video_track("cam", FakeSource("video", width=2, height=2))
    with pytest.raises(LocalProtocolError, match="VP8 or H264"):
        _add_track_request(track, rtc.TrackPublishOptions(video_codec=rtc.VideoCodec.AV1))


class FakePc:
    def __init__(self) -> None:
        self.sections: dict[str, Any] = {}

    def receiving(self) -> dict[str, Any]:
        return dict(self.sections)


async def test_subscription_diff_follows_mid_reuse() -> None:
    """A section reused for another track reads as ended + received (PROTOCOL-MAP §14)."""
    events: list[Any] = []
    engine = en.Engine(events.append)
    link = en._Link(sg.SignalSession(), single_pc=True)
    pc = FakePc()
    a, v = FakeMedia("audio", "TR_first"), FakeMedia("video", "whatever")
    pc.sections = {"1": a, "2": v}
    link.mid_to_track_id = {"1": "TR_a", "2": "TR_v"}
    engine._sync_receiving(link, pc)  # type: ignore[arg-type]
    assert [(type(e).__name__, e.sid, e.mid) for e in events] == [
        ("MediaTrackReceived", "TR_a", "1"),
        ("MediaTrackReceived", "TR_v", "2"),
    ]
    assert events[0].track is a
    events.clear()
    engine._sync_receiving(link, pc)  # type: ignore[arg-type]
    assert events == []  # same mapping: nothing new
    link.mid_to_track_id = {"1": "TR_b"}
    engine._sync_receiving(link, pc)  # type: ignore[arg-type]
    assert [(type(e).__name__, e.sid, e.mid) for e in events] == [
        ("MediaTrackEnded", "TR_a", "1"),
        ("MediaTrackEnded", "TR_v", "2"),
        ("MediaTrackReceived", "TR_b", "1"),
    ]


async def test_msid_stands_in_only_without_any_mapping() -> None:
    events: list[Any] = []
    engine = en.Engine(events.append)
    link = en._Link(sg.SignalSession(), single_pc=False)
    pc = FakePc()
    pc.sections = {"0": FakeMedia("audio", "TR_from_msid"), "1": FakeMedia("audio", "not-a-sid")}
    engine._sync_receiving(link, pc)  # type: ignore[arg-type]
    assert [(e.sid, e.mid) for e in events] == [("TR_from_msid", "0")]


# -- every TrackPublishOptions / VideoEncoding / AudioEncoding field ------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_options, "_warned", set())


def warned(caplog: pytest.LogCaptureFixture, feature: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "lkproto.rtc" and r.levelno == logging.WARNING and feature in r.getMessage()
    )


def audio_track() -> rtc.LocalAudioTrack:
    return rtc.LocalAudioTrack.create_audio_track("mic", FakeSource("audio", num_channels=1))


def video_track() -> rtc.LocalVideoTrack:
    return rtc.LocalVideoTrack.create_video_track("cam", FakeSource("video", width=4, height=2))


@pytest.mark.parametrize("field", ["red", "dtx"])
def test_hints_warn_once_on_construction_or_assignment(
    field: str, fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    feature = f"TrackPublishOptions.{field}"
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        options = rtc.TrackPublishOptions()
        assert warned(caplog, feature) == 0
        setattr(options, field, True)
        rtc.TrackPublishOptions(**{field: True})  # type: ignore[arg-type]
    assert warned(caplog, feature) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_codec", rtc.VideoCodec.AV1),
        ("video_codec", rtc.VideoCodec.VP9),
        ("video_codec", rtc.VideoCodec.H265),
        ("frame_metadata_features", [0]),
        ("scalability_mode", "L3T3_KEY"),
    ],
)
def test_unsupported_values_are_refused_at_once(field: str, value: object) -> None:
    with pytest.raises(UnsupportedFeatureError) as info:
        rtc.TrackPublishOptions(**{field: value})  # type: ignore[arg-type]
    assert info.value.feature == f"TrackPublishOptions.{field}"
    options = rtc.TrackPublishOptions()
    with pytest.raises(UnsupportedFeatureError):
        setattr(options, field, value)


def test_single_layer_scalability_mode_is_what_is_sent() -> None:
    options = rtc.TrackPublishOptions(scalability_mode="L1T1")
    request, _ = _add_track_request(video_track(), options)
    assert len(request.layers) == 1


def test_bad_values_are_local_misuse() -> None:
    for make in (
        lambda: rtc.TrackPublishOptions(video_codec=42),
        lambda: rtc.TrackPublishOptions(video_encoding=rtc.AudioEncoding()),  # type: ignore[arg-type]
        lambda: rtc.TrackPublishOptions(audio_encoding=rtc.VideoEncoding()),  # type: ignore[arg-type]
        lambda: rtc.VideoEncoding(max_bitrate=-1),
        lambda: rtc.VideoEncoding(max_framerate=-1),
        lambda: rtc.VideoEncoding(max_framerate=float("nan")),
        lambda: rtc.AudioEncoding(max_bitrate=1.5),  # type: ignore[arg-type]
    ):
        with pytest.raises(LocalProtocolError):
            make()


def test_max_framerate_is_a_hint_with_one_warning(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        rtc.VideoEncoding(max_bitrate=1)
        assert warned(caplog, "VideoEncoding.max_framerate") == 0
        rtc.VideoEncoding(max_framerate=30)
        rtc.VideoEncoding(max_framerate=15)
    assert warned(caplog, "VideoEncoding.max_framerate") == 1


def test_source_stream_and_preconnect_buffer_are_announced() -> None:
    options = rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_MICROPHONE, stream="s1", preconnect_buffer=True
    )
    request, _ = _add_track_request(audio_track(), options)
    assert (request.source, request.stream) == (pb.MICROPHONE, "s1")
    assert pb.TF_PRECONNECT_BUFFER in request.audio_features
    plain, _ = _add_track_request(audio_track(), rtc.TrackPublishOptions())
    assert pb.TF_PRECONNECT_BUFFER not in plain.audio_features
    assert not plain.stream


def test_encodings_reach_the_senders(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(
        asyncio_publish,
        "install_opus_encoder",
        lambda sender, *, channels, bitrate: seen.append(("audio", bitrate)),
    )
    monkeypatch.setattr(
        asyncio_publish,
        "install_video_encoder",
        lambda sender, *, mime_type, bitrate: seen.append((mime_type, bitrate)),
    )
    audio = rtc.TrackPublishOptions(audio_encoding=rtc.AudioEncoding(max_bitrate=24_000))
    asyncio_publish.prepare_sender(object(), _track_description(audio_track(), audio))
    video = rtc.TrackPublishOptions(video_encoding=rtc.VideoEncoding(max_bitrate=800_000))
    asyncio_publish.prepare_sender(object(), _track_description(video_track(), video))
    assert seen == [("audio", 24_000), ("video/VP8", 800_000)]


def test_publish_options_take_the_official_mutation_style(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(
        asyncio_publish,
        "install_video_encoder",
        lambda sender, *, mime_type, bitrate: seen.append((mime_type, bitrate)),
    )
    monkeypatch.setattr(
        asyncio_publish,
        "install_opus_encoder",
        lambda sender, *, channels, bitrate: seen.append(("audio", bitrate)),
    )
    # The zero encoding a default TrackPublishOptions carries installs no video encoder (the
    # aiortc default rate), as None did.
    defaults = rtc.TrackPublishOptions()
    asyncio_publish.prepare_sender(object(), _track_description(video_track(), defaults))
    assert seen == []
    options = rtc.TrackPublishOptions()
    assert options.video_encoding is not None
    assert options.audio_encoding is not None
    options.video_encoding.max_bitrate = 700_000
    options.audio_encoding.max_bitrate = 32_000
    asyncio_publish.prepare_sender(object(), _track_description(video_track(), options))
    asyncio_publish.prepare_sender(object(), _track_description(audio_track(), options))
    assert seen == [("video/VP8", 700_000), ("audio", 32_000)]
    with pytest.raises(LocalProtocolError, match="max_bitrate"):
        options.video_encoding.max_bitrate = -1
