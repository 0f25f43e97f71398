"""The refuse / warn-once policy for options (lkproto.rtc._options)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lkproto.errors import LocalProtocolError, UnsupportedFeatureError
from lkproto.rtc import _options


def test_refuse_names_the_feature_and_is_local_misuse() -> None:
    with pytest.raises(UnsupportedFeatureError) as info:
        _options.refuse("RoomOptions.e2ee", "not implemented")
    assert (info.value.feature, info.value.reason) == ("RoomOptions.e2ee", "not implemented")
    assert isinstance(info.value, LocalProtocolError)
    assert "RoomOptions.e2ee" in str(info.value)


def test_warn_once_per_feature_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_options, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        assert _options.warn_once("A.x", "ignored")
        assert not _options.warn_once("A.x", "ignored")
        assert _options.warn_once("A.y", "ignored")
    messages = [r.getMessage() for r in caplog.records if r.name == "lkproto.rtc"]
    assert messages == [
        "A.x is a hint lkproto does not apply: ignored",
        "A.y is a hint lkproto does not apply: ignored",
    ]


def test_check_loop_without_a_running_loop_accepts_any() -> None:
    loop = asyncio.new_event_loop()
    try:
        _options.check_loop("X.loop", loop)  # nothing to compare with yet
        _options.check_loop("X.loop", None)
    finally:
        loop.close()
