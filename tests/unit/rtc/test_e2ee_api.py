"""lkproto.rtc.e2ee: the public E2EE API has the official names, values and defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lkproto import rtc
from lkproto.errors import LocalProtocolError


def official() -> Any:
    return pytest.importorskip("livekit.rtc")


def test_enums_match_the_official_values() -> None:
    lrtc = official()
    for ours, theirs in (
        (rtc.EncryptionType, lrtc.EncryptionType),
        (rtc.EncryptionState, lrtc.EncryptionState),
        (rtc.KeyDerivationFunction, lrtc.KeyDerivationFunction),
    ):
        for member in ours:
            assert theirs.Value(member.name) == member.value, member
        assert {m.name for m in ours} == set(theirs.keys())


def test_option_defaults_match_the_official_ones() -> None:
    lrtc = official()
    ours, theirs = rtc.KeyProviderOptions(), lrtc.KeyProviderOptions()
    for f in dataclasses.fields(ours):
        assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    assert rtc.E2EEOptions().encryption_type == lrtc.E2EEOptions().encryption_type


def test_manager_without_options_has_no_keys() -> None:
    manager = rtc.E2EEManager(None)
    assert manager.key_provider is None
    assert not manager.enabled
    assert manager.frame_cryptors() == []
    with pytest.raises(LocalProtocolError):
        manager.set_enabled(True)
    manager.set_enabled(False)


def test_key_provider_methods() -> None:
    options = rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(shared_key=b"k", ratchet_window_size=0)
    )
    manager = rtc.E2EEManager(options)
    keys = manager.key_provider
    assert keys is not None
    assert manager.enabled
    assert keys.options is options.key_provider_options
    assert keys.export_shared_key(0) == b"k"
    ratcheted = keys.ratchet_shared_key(0)
    assert len(ratcheted) == 32
    assert keys.export_shared_key(0) == ratcheted
    keys.set_key("alice", b"a", 2)
    assert keys.export_key("alice", 2) == b"a"
    assert len(keys.ratchet_key("alice", 2)) == 32
    assert keys.export_key("bob", 0) == b""
    with pytest.raises(LocalProtocolError):
        keys.set_shared_key(b"k", 16)
    manager.set_enabled(False)
    assert not manager.enabled


def test_bad_key_options_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        rtc.E2EEManager(
            rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key="text"))  # type: ignore[arg-type]
        )
