"""lkproto.core.simulcast: the official layer plan, the offer rewrite, the dynacast reading."""

from __future__ import annotations

import pytest

from lkproto.core.publish import TrackDescription, build_add_track_request
from lkproto.core.simulcast import (
    RID_EXTENSION_URI,
    SimulcastLayer,
    announce_simulcast,
    plan_layers,
    quality_of_rid,
    rid_extension_id,
    wanted_rids,
)
from lkproto.wire import pb

__all__: list[str] = []


def _sizes(layers: tuple[SimulcastLayer, ...]) -> list[tuple[str, int, int, int, float]]:
    return [(x.rid, x.width, x.height, x.bitrate_bps, x.max_framerate) for x in layers]


def test_a_720p_camera_gets_the_official_three_layers() -> None:
    # rust-sdks options.rs: h180 and h360 presets under the source, which takes the encoding of
    # the first preset wider than it (h1080, 3 Mbps).
    assert _sizes(plan_layers(1280, 720)) == [
        ("q", 320, 180, 160_000, 15),
        ("h", 640, 360, 450_000, 20),
        ("f", 1280, 720, 3_000_000, 0),
    ]
    assert [x.quality for x in plan_layers(1280, 720)] == [pb.LOW, pb.MEDIUM, pb.HIGH]


def test_the_asked_bitrate_is_the_full_layers() -> None:
    assert plan_layers(1280, 720, 1_200_000)[-1].bitrate_bps == 1_200_000


def test_smaller_sources_get_fewer_layers_and_4_3_presets() -> None:
    # Longer side >= 480: the mid preset and the source (rids q, h); below: one layer.
    assert _sizes(plan_layers(640, 480)) == [
        ("q", 480, 360, 225_000, 20),
        ("h", 640, 480, 450_000, 0),
    ]
    assert len(plan_layers(320, 240)) == 1


def test_portrait_sources_keep_their_orientation() -> None:
    assert [(x.width, x.height) for x in plan_layers(720, 1280)] == [
        (180, 320),
        (360, 640),
        (720, 1280),
    ]


def test_a_source_without_a_size_cannot_be_planned() -> None:
    with pytest.raises(ValueError, match="source size"):
        plan_layers(0, 720)


def test_rid_qualities_are_the_official_ones() -> None:
    assert [quality_of_rid(r) for r in ("q", "h", "f", "")] == [
        pb.LOW,
        pb.MEDIUM,
        pb.HIGH,
        pb.HIGH,
    ]


def test_the_add_track_request_announces_every_layer() -> None:
    layers = plan_layers(1280, 720)
    description = TrackDescription(
        cid="cid-1",
        name="cam",
        kind="video",
        source=pb.CAMERA,
        mime_type="video/VP8",
        width=1280,
        height=720,
        simulcast_layers=layers,
    )
    request = build_add_track_request(description)
    announced = [(x.quality, x.width, x.height, x.bitrate, x.rid) for x in request.layers]
    assert announced == [
        (pb.LOW, 320, 180, 160_000, "q"),
        (pb.MEDIUM, 640, 360, 450_000, "h"),
        (pb.HIGH, 1280, 720, 3_000_000, "f"),
    ]
    assert list(request.simulcast_codecs[0].layers) == list(request.layers)
    single = TrackDescription(
        cid="c", name="n", kind="video", source=0, mime_type="video/VP8", width=320, height=240
    )
    assert [x.quality for x in build_add_track_request(single).layers] == [pb.HIGH]


_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:0",
        "a=sendonly",
        "a=msid:s audio-cid",
        "a=ssrc:11 cname:x",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98",
        "a=mid:1",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=sendonly",
        "a=msid:s video-cid",
        "a=rtpmap:97 VP8/90000",
        "a=ssrc-group:FID 22 23",
        "a=ssrc:22 cname:x",
        "a=ssrc:23 cname:x",
        "m=video 9 UDP/TLS/RTP/SAVPF 97",
        "a=mid:2",
        "a=recvonly",
        "a=msid:s video-cid",
        "",
    ]
)


def test_the_offer_announces_the_layers_of_its_sendonly_video_section() -> None:
    layers = plan_layers(1280, 720)
    out = announce_simulcast(_OFFER, {"video-cid": layers})
    sections = out.split("\r\nm=")
    audio, video, recv = sections[1], sections[2], sections[3]
    assert audio in _OFFER  # other sections are untouched, their ssrc lines kept
    assert recv in _OFFER
    assert "a=ssrc" not in video
    assert video.split("\r\n")[-5:] == [
        f"a=extmap:14 {RID_EXTENSION_URI}",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
    ]
    assert out.endswith("\r\n")
    # Announcing again (a later offer of the same section) gives the same text.
    assert announce_simulcast(out, {"video-cid": layers}) == out


def test_single_layer_and_unknown_tracks_leave_the_offer_alone() -> None:
    assert announce_simulcast(_OFFER, {}) == _OFFER
    assert announce_simulcast(_OFFER, {"video-cid": plan_layers(320, 240)}) == _OFFER
    assert announce_simulcast(_OFFER, {"other": plan_layers(1280, 720)}) == _OFFER


def test_the_rid_extension_takes_a_free_id_or_keeps_its_own() -> None:
    # The top of the range: lower ids are what aiortc gives other sections of the bundle.
    assert rid_extension_id("a=extmap:1 x\na=extmap:3 y") == 14
    assert rid_extension_id("a=extmap:1 x\na=extmap:14 y") == 13
    assert rid_extension_id(f"a=extmap:1 x\na=extmap:7 {RID_EXTENSION_URI}") == 7


def _update(**qualities: bool) -> pb.SubscribedQualityUpdate:
    names = {"LOW": pb.LOW, "MEDIUM": pb.MEDIUM, "HIGH": pb.HIGH}
    update = pb.SubscribedQualityUpdate(track_sid="TR_x")
    codec = update.subscribed_codecs.add(codec="vp8")
    for name, enabled in qualities.items():
        codec.qualities.add(quality=names[name], enabled=enabled)
    return update


def test_dynacast_wants_the_enabled_qualities_of_the_tracks_codec() -> None:
    layers = plan_layers(1280, 720)
    update = _update(LOW=True, MEDIUM=False, HIGH=False)
    assert wanted_rids(update, "video/VP8", layers) == {"q"}
    # A quality the update does not mention keeps going; another codec's list does not apply.
    assert wanted_rids(_update(LOW=False), "video/VP8", layers) == {"h", "f"}
    assert wanted_rids(update, "video/H264", layers) == {"q", "h", "f"}


def test_dynacast_reads_the_deprecated_list_of_older_servers() -> None:
    update = pb.SubscribedQualityUpdate(track_sid="TR_x")
    update.subscribed_qualities.add(quality=pb.HIGH, enabled=False)
    assert wanted_rids(update, "video/VP8", plan_layers(1280, 720)) == {"q", "h"}
