"""AddTrackRequest building and the publish tracker (lkproto.core.publish)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkproto.core.publish import (
    DEFAULT_VIDEO_BITRATE_BPS,
    AnyPublishEvent,
    PublishRefused,
    PublishTimedOut,
    PublishTracker,
    TrackDescription,
    TrackPublished,
    build_add_track_request,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

MIC = TrackDescription(
    cid="c-mic", name="mic", kind="audio", source=pb.TrackSource.MICROPHONE, mime_type="audio/opus"
)
CAM = TrackDescription(
    cid="c-cam",
    name="cam",
    kind="video",
    source=pb.TrackSource.CAMERA,
    mime_type="video/H264",
    width=640,
    height=360,
    stream="s",
)


def drain(t: PublishTracker) -> list[AnyPublishEvent]:
    out = []
    while (ev := t.next_event()) is not None:
        out.append(ev)
    return out


def test_audio_request_announces_what_aiortc_sends() -> None:
    req = build_add_track_request(dataclasses.replace(MIC, stereo=True, preconnect_buffer=True))
    assert (req.cid, req.name, req.type, req.source) == ("c-mic", "mic", pb.AUDIO, 2)
    assert req.disable_red
    assert req.disable_dtx
    assert not req.muted
    assert list(req.audio_features) == [pb.TF_NO_DTX, pb.TF_STEREO, pb.TF_PRECONNECT_BUFFER]
    assert not req.layers
    plain = build_add_track_request(dataclasses.replace(MIC, muted=True))
    assert list(plain.audio_features) == [pb.TF_NO_DTX]
    assert plain.muted


def test_video_request_has_one_high_layer_and_its_codec() -> None:
    req = build_add_track_request(CAM)
    assert (req.type, req.width, req.height, req.stream) == (pb.VIDEO, 640, 360, "s")
    assert [(layer.quality, layer.bitrate) for layer in req.layers] == [
        (pb.HIGH, DEFAULT_VIDEO_BITRATE_BPS)
    ]
    assert [(c.codec, c.cid) for c in req.simulcast_codecs] == [("h264", "c-cam")]
    capped = build_add_track_request(dataclasses.replace(CAM, max_bitrate_bps=1_000_000))
    assert capped.layers[0].bitrate == 1_000_000
    assert capped.simulcast_codecs[0].layers[0].bitrate == 1_000_000


@pytest.mark.parametrize(
    "change",
    [
        {"cid": ""},
        {"mime_type": "video/VP9"},
        {"mime_type": "audio/opus"},  # audio codec on a video track
        {"kind": "data"},
        {"source": 10**12},
    ],
)
def test_unpublishable_descriptions_raise(change: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        build_add_track_request(dataclasses.replace(CAM, **change))  # type: ignore[arg-type]


def test_published_response_is_matched_by_cid_and_kept_for_sync_state() -> None:
    t = PublishTracker(timeout_s=10)
    req = t.request(MIC, 1.0)
    assert req.cid == "c-mic"
    assert t.pending == {"c-mic"}
    assert t.get_timer() == 11.0
    with pytest.raises(LocalProtocolError):
        t.request(MIC, 2.0)
    other = pb.TrackPublishedResponse(cid="other", track=pb.TrackInfo(sid="TR_x"))
    assert not t.track_published(other, 2.0)
    resp = pb.TrackPublishedResponse(cid="c-mic", track=pb.TrackInfo(sid="TR_a"))
    assert t.track_published(resp, 2.0)
    assert not t.track_published(resp, 2.0)  # duplicate
    assert drain(t) == [TrackPublished(cid="c-mic", info=resp.track)]
    assert t.get_timer() is None
    assert [(s.cid, s.track.sid) for s in t.sync_tracks()] == [("c-mic", "TR_a")]
    with pytest.raises(LocalProtocolError):
        t.request(MIC, 3.0)
    t.set_muted("c-mic", True)
    assert t.published["c-mic"].description.muted
    with pytest.raises(LocalProtocolError):
        t.set_muted("nope", True)
    again = t.take_for_republish()
    assert [p.info.sid for p in again] == ["TR_a"]
    assert not t.published
    assert t.remove("c-mic") is None


def test_refusal_and_timeout_end_the_request_once() -> None:
    t = PublishTracker(timeout_s=2)
    t.request(MIC, 0.0)
    t.request(CAM, 1.0)
    assert t.request_refused("c-cam", "NOT_ALLOWED", "no", 1.5)
    assert not t.request_refused("c-cam", "NOT_ALLOWED", "no", 1.5)
    t.handle_timer(1.99)
    assert drain(t) == [PublishRefused(cid="c-cam", reason="NOT_ALLOWED", message="no")]
    t.handle_timer(2.0)
    assert drain(t) == [PublishTimedOut(cid="c-mic", timeout_s=2.0)]
    late = pb.TrackPublishedResponse(cid="c-mic", track=pb.TrackInfo(sid="TR_late"))
    assert not t.track_published(late, 3.0)
    assert not t.published
    t.request(MIC, 4.0)
    t.cancel("c-mic")
    assert t.get_timer() is None
    with pytest.raises(LocalProtocolError):
        PublishTracker(timeout_s=0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["req", "ok", "no", "tick"]))))
def test_every_request_ends_exactly_once(steps: list[tuple[str, str]]) -> None:
    t = PublishTracker(timeout_s=1)
    now = 0.0
    requested = 0
    endings = 0
    for cid, action in steps:
        now += 0.3
        desc = dataclasses.replace(MIC, cid=cid)
        if action == "req":
            try:
                t.request(desc, now)
                requested += 1
            except LocalProtocolError:
                assert cid in t.pending or cid in t.published
        elif action == "ok":
            t.track_published(pb.TrackPublishedResponse(cid=cid, track=pb.TrackInfo()), now)
        elif action == "no":
            t.request_refused(cid, "NOT_ALLOWED", "", now)
            t.remove(cid)
        else:
            t.handle_timer(now)
        endings += len(drain(t))
        assert endings + len(t.pending) == requested
