"""TrackPublishOptions.simulcast in lkproto.rtc: honoured with the official layers (also with
end-to-end encryption), refused where lkproto cannot send layers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import pytest

from lkproto import rtc
from lkproto.rtc._options import _warned
from lkproto.rtc.participant import LocalParticipant, _track_description
from lkproto.wire import pb
from tests.unit.rtc.test_participant import info
from tests.unit.rtc.test_track import FakeSource

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine
    from lkproto.asyncio.rpc import RpcDriver
    from lkproto.core.publish import TrackDescription

__all__: list[str] = []


def _video(**attrs: object) -> rtc.LocalVideoTrack:
    return rtc.LocalVideoTrack.create_video_track("cam", FakeSource("video", **attrs))  # type: ignore[arg-type]


def test_simulcast_plans_the_official_layers_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        options = rtc.TrackPublishOptions(simulcast=True)
    assert not [r for r in caplog.records if "simulcast" in r.getMessage()]
    description = _track_description(_video(width=1280, height=720), options)
    assert description.simulcast
    assert [(x.rid, x.width, x.height) for x in description.simulcast_layers] == [
        ("q", 320, 180),
        ("h", 640, 360),
        ("f", 1280, 720),
    ]
    single = _track_description(
        _video(width=1280, height=720), rtc.TrackPublishOptions(simulcast=False)
    )
    assert not single.simulcast
    small = _track_description(_video(width=320, height=240), options)
    assert not small.simulcast  # one layer: sent as a plain track, as the official SDKs do


def test_simulcast_is_on_by_default_as_in_the_official_sdk() -> None:
    assert rtc.TrackPublishOptions().simulcast
    # The official presets: three layers from 960 px, two from 480 px, one below.
    for (width, height), rids in [
        ((1280, 720), ["q", "h", "f"]),
        ((640, 480), ["q", "h"]),
        ((320, 240), []),
    ]:
        description = _track_description(
            _video(width=width, height=height), rtc.TrackPublishOptions()
        )
        assert [x.rid for x in description.simulcast_layers if description.simulcast] == rids


def test_a_pre_encoded_source_sends_one_layer_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    track = _video(width=1280, height=720)
    track.source.codec = "vp8"  # type: ignore[attr-defined]
    _warned.discard("TrackPublishOptions.simulcast")
    with caplog.at_level(logging.WARNING):
        description = _track_description(track, rtc.TrackPublishOptions(simulcast=True))
    assert not description.simulcast
    assert [r for r in caplog.records if "pre-encoded" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        quiet = _track_description(track, rtc.TrackPublishOptions(simulcast=False))
    assert not quiet.simulcast
    assert not caplog.records


class _RecordingEngine:
    def __init__(self) -> None:
        self.published: list[TrackDescription] = []

    async def publish_track(
        self, description: TrackDescription, *args: object, **kwargs: object
    ) -> object:
        self.published.append(description)
        raise _Stop


class _Stop(Exception):
    pass


async def test_simulcast_with_end_to_end_encryption_is_published_encrypted() -> None:
    # Each layer sender gets the frame cryptor (lkproto.asyncio.e2ee, tests/unit/asyncio/
    # test_simulcast_e2ee.py), so an encrypted room publishes simulcast like the official SDKs.
    engine = _RecordingEngine()
    me = LocalParticipant(info("me"), cast("Engine", engine), cast("RpcDriver", None))
    me._set_encryption(pb.Encryption.GCM)
    track = _video(width=1280, height=720)
    with pytest.raises(_Stop):
        await me.publish_track(track, rtc.TrackPublishOptions(simulcast=True))
    [description] = engine.published
    assert description.simulcast
    assert description.encryption == pb.Encryption.GCM
