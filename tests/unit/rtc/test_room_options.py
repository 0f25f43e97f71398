"""RoomOptions.data_stream → StreamDriver limits (lkproto.rtc.room._stream_limits)."""

from __future__ import annotations

import pytest

from lkproto import rtc
from lkproto.core import streams as core
from lkproto.errors import LocalProtocolError
from lkproto.rtc.room import _stream_limits


def test_unset_options_keep_every_default() -> None:
    assert _stream_limits(None) == {}
    assert _stream_limits(rtc.DataStreamOptions()) == {}


def test_official_field_maps_to_max_stream_bytes() -> None:
    limits = _stream_limits(rtc.DataStreamOptions(max_payload_byte_length=1234))
    assert limits == {"max_stream_bytes": 1234}


def test_extras_map_and_zero_timeout_disables_the_timer() -> None:
    options = rtc.DataStreamOptions(
        max_open_streams=3, max_decompressed_bytes=10, max_buffered_bytes=99, stream_timeout=0
    )
    assert _stream_limits(options) == {
        "max_open_streams": 3,
        "max_decompressed_bytes": 10,
        "max_buffered_bytes": 99,
        "stream_timeout_s": None,
    }
    assert _stream_limits(rtc.DataStreamOptions(stream_timeout=2.5)) == {"stream_timeout_s": 2.5}


def test_wrong_type_is_a_typed_error() -> None:
    with pytest.raises(LocalProtocolError, match="DataStreamOptions"):
        _stream_limits({"max_payload_byte_length": 1})  # type: ignore[arg-type]


def test_defaults_match_the_core_receiver() -> None:
    # What an unset field means is documented on DataStreamOptions; keep the two in step.
    assert core.DEFAULT_MAX_OPEN_STREAMS == 256
    assert core.DEFAULT_MAX_STREAM_BYTES == 5_000_000_000
    assert core.DEFAULT_STREAM_TIMEOUT_S == 120.0
