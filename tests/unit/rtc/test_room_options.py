"""RoomOptions, RtcConfiguration and DataStreamOptions: every field is honoured (reaches the
engine or the stream driver), refused with UnsupportedFeatureError, or warned about once
(lkproto.rtc.room._engine_options / _stream_limits)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.core import streams as core
from lkproto.errors import LocalProtocolError, UnsupportedFeatureError
from lkproto.rtc import _options
from lkproto.rtc.room import _engine_options, _stream_limits


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


# -- every RoomOptions / RtcConfiguration field: honoured, refused, or one warning --------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process warnings as not yet given."""
    monkeypatch.setattr(_options, "_warned", set())


def hint_warnings(caplog: pytest.LogCaptureFixture, feature: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "lkproto.rtc" and r.levelno == logging.WARNING and feature in r.getMessage()
    ]


class NoEngine:
    """Stands in for the engine class: any construction means something started connecting."""

    def __init__(self, *args: object) -> None:
        raise AssertionError("the engine was created although the options were refused")


async def test_encryption_other_than_gcm_is_refused_before_anything_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(en, "Engine", NoEngine)
    room = rtc.Room()
    e2ee = rtc.E2EEOptions(encryption_type=rtc.EncryptionType.CUSTOM)
    with pytest.raises(UnsupportedFeatureError) as info:
        await room.connect("ws://127.0.0.1:1", "token", rtc.RoomOptions(encryption=e2ee))
    assert info.value.feature == "E2EEOptions.encryption_type"
    assert isinstance(info.value, LocalProtocolError)
    assert not room.isconnected()
    assert room.engine is None


async def test_deprecated_e2ee_warns_and_bad_key_options_refuse_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(en, "Engine", NoEngine)
    room = rtc.Room()
    bad = rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(key_ring_size=0))
    with (
        pytest.warns(DeprecationWarning, match="use RoomOptions.encryption"),
        pytest.raises(LocalProtocolError, match="key_ring_size"),
    ):
        await room.connect("ws://127.0.0.1:1", "token", rtc.RoomOptions(e2ee=bad))
    assert room.engine is None


def test_official_defaults() -> None:
    official = official_room()
    ours = rtc.RtcConfiguration()
    theirs = official.RtcConfiguration()
    assert int(ours.ice_transport_type) == int(theirs.ice_transport_type)
    assert int(ours.continual_gathering_policy) == int(theirs.continual_gathering_policy)
    assert ours.ice_transport_type == rtc.IceTransportType.TRANSPORT_ALL
    assert ours.continual_gathering_policy == rtc.ContinualGatheringPolicy.GATHER_CONTINUALLY
    for name in ("TRANSPORT_RELAY", "TRANSPORT_NOHOST", "TRANSPORT_ALL"):
        assert rtc.IceTransportType[name] == official.proto_room.IceTransportType.Value(name)
    for name in ("GATHER_ONCE", "GATHER_CONTINUALLY"):
        value = official.proto_room.ContinualGatheringPolicy.Value(name)
        assert rtc.ContinualGatheringPolicy[name] == value
    room_defaults = rtc.RoomOptions()
    theirs_room = official.RoomOptions()
    for name in (
        "auto_subscribe",
        "dynacast",
        "e2ee",
        "encryption",
        "rtc_config",
        "connect_timeout",
        "single_peer_connection",
        "data_stream",
    ):
        assert getattr(room_defaults, name) == getattr(theirs_room, name), name


def official_room() -> Any:
    return pytest.importorskip("livekit.rtc.room")


def test_auto_subscribe_single_pc_and_connect_timeout_reach_the_engine() -> None:
    opts = _engine_options(
        rtc.RoomOptions(auto_subscribe=False, single_peer_connection=True, connect_timeout=2.5)
    )
    assert (opts.auto_subscribe, opts.single_peer_connection, opts.connect_timeout_s) == (
        False,
        True,
        2.5,
    )
    assert _engine_options(rtc.RoomOptions()).connect_timeout_s == en.DEFAULT_CONNECT_TIMEOUT_S


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True])
def test_bad_connect_timeout_is_refused(value: float) -> None:
    with pytest.raises(LocalProtocolError, match=r"RoomOptions\.connect_timeout"):
        _engine_options(rtc.RoomOptions(connect_timeout=value))


def test_dynacast_is_honoured_without_a_warning(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    # It pauses unwatched simulcast layers (tests/interop/test_simulcast.py).
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        _engine_options(rtc.RoomOptions(dynacast=False))
        _engine_options(rtc.RoomOptions(dynacast=True))
    assert hint_warnings(caplog, "RoomOptions.dynacast") == []


def test_relay_only_is_honoured_and_all_is_the_default(fresh_warnings: None) -> None:
    once = rtc.ContinualGatheringPolicy.GATHER_ONCE
    relay = rtc.RtcConfiguration(
        ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY, continual_gathering_policy=once
    )
    assert _engine_options(rtc.RoomOptions(rtc_config=relay)).relay_only is True
    every = rtc.RtcConfiguration(continual_gathering_policy=once)
    assert _engine_options(rtc.RoomOptions(rtc_config=every)).relay_only is False
    assert _engine_options(rtc.RoomOptions()).relay_only is False


async def test_relay_only_reaches_aiortc(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiortc

    from lkproto.asyncio.peer import PeerConnection, PeerOptions

    seen: list[object] = []
    real = aiortc.RTCConfiguration

    def record(**kwargs: Any) -> Any:
        seen.append(kwargs["iceTransportPolicy"])
        return real(**kwargs)

    monkeypatch.setattr(aiortc, "RTCConfiguration", record)
    for relay_only in (True, False):
        pc = PeerConnection(PeerOptions(relay_only=relay_only))
        await pc.close()
    assert seen == [aiortc.RTCIceTransportPolicy.RELAY, aiortc.RTCIceTransportPolicy.ALL]


async def test_engine_passes_relay_only_to_its_peers() -> None:
    engine = en.Engine(lambda event: None)
    engine._opts = en.EngineOptions(relay_only=True)
    assert engine._peer_options(None).relay_only is True


def test_nohost_is_refused() -> None:
    config = rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_NOHOST)
    with pytest.raises(UnsupportedFeatureError) as info:
        _engine_options(rtc.RoomOptions(rtc_config=config))
    assert info.value.feature == "RtcConfiguration.ice_transport_type"


def test_unknown_enum_values_are_local_misuse() -> None:
    for config in (
        rtc.RtcConfiguration(ice_transport_type=7),
        rtc.RtcConfiguration(continual_gathering_policy=9),
    ):
        with pytest.raises(LocalProtocolError, match="RtcConfiguration"):
            _engine_options(rtc.RoomOptions(rtc_config=config))


def test_continual_gathering_is_a_hint_with_one_warning(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    feature = "RtcConfiguration.continual_gathering_policy"
    once = rtc.RtcConfiguration(continual_gathering_policy=rtc.ContinualGatheringPolicy.GATHER_ONCE)
    with caplog.at_level(logging.WARNING, logger="lkproto.rtc"):
        _engine_options(rtc.RoomOptions(rtc_config=once))
        _engine_options(rtc.RoomOptions())  # no rtc_config: nothing asked for
        assert hint_warnings(caplog, feature) == []
        # Left at the (official) default: the caller asked for nothing, no warning.
        _engine_options(rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[])))
        assert hint_warnings(caplog, feature) == []
        every = rtc.ContinualGatheringPolicy.GATHER_CONTINUALLY
        explicit = rtc.RtcConfiguration(continual_gathering_policy=every)
        _engine_options(rtc.RoomOptions(rtc_config=explicit))
    assert len(hint_warnings(caplog, feature)) == 1


def test_ice_servers_and_addresses_reach_the_engine() -> None:
    server = SimpleNamespace(urls=["turn:t.example:3478"], username="u", password="p")
    config = rtc.RtcConfiguration(ice_servers=[server], ice_addresses=["127.0.0.1"])
    opts = _engine_options(rtc.RoomOptions(rtc_config=config))
    assert opts.ice_addresses == ("127.0.0.1",)
    assert opts.ice_servers is not None
    assert [(s.urls, s.username, s.credential) for s in opts.ice_servers] == [
        (("turn:t.example:3478",), "u", "p")
    ]
    assert _engine_options(rtc.RoomOptions()).ice_servers is None  # the server's list


def test_data_stream_timeout_uses_the_duration_rule() -> None:
    for value in (-1, float("inf"), True):
        with pytest.raises(LocalProtocolError, match=r"DataStreamOptions\.stream_timeout"):
            _stream_limits(rtc.DataStreamOptions(stream_timeout=value))


async def test_room_loop_must_be_the_running_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(en, "Engine", NoEngine)
    other = asyncio.new_event_loop()
    try:
        room = rtc.Room(loop=other)
        with pytest.raises(UnsupportedFeatureError) as info:
            await room.connect("ws://127.0.0.1:1", "token")
        assert info.value.feature == "Room(loop=...)"
    finally:
        other.close()
    # The running loop is accepted (the engine is then created: NoEngine says so).
    with pytest.raises(AssertionError, match="engine was created"):
        await rtc.Room(loop=asyncio.get_running_loop()).connect("ws://127.0.0.1:1", "token")
