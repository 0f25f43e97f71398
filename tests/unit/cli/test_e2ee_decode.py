"""``lkproto decode`` on end-to-end encrypted frames and packets (--frame, --key, --kdf)."""

from __future__ import annotations

import json

import pytest

from lkproto.__main__ import main
from lkproto.core.e2ee import FrameCryptor, KeyOptions, KeyProvider
from lkproto.wire.e2ee import FrameCodec

# A DataPacket the official Python SDK 1.2.1 sent with shared_key=b"secret-key" (PBKDF2); the
# same vector as tests/unit/core/test_e2ee.py.
OFFICIAL_PACKET = (
    "220373646b8001018a010f50415f577a78416e456145536737429201340801120c8f5e826a00211a400020e3f1"
    "22225e87430409eceb6ffef57cb0a234031788950bac128628bd49d49751b72f4cea1fa2"
)


def _frame() -> bytes:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=b"secret-key")
    cryptor = FrameCryptor(provider, participant_identity="p", track_sid="T", codec=FrameCodec.VP8)
    sealed = cryptor.encrypt(b"\x31\x02\x00" + b"delta frame payload", bytes(range(12)))
    assert sealed is not None
    return sealed


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["decode", "--compact", *argv]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_frame_trailer_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "--frame", "vp8", _frame().hex())
    assert out["clear_header"] == "310200"
    assert out["iv"] == bytes(range(12)).hex()
    assert out["key_index"] == 0
    assert out["ciphertext_bytes"] == len(b"delta frame payload") + 16
    assert "decrypted" not in out


def test_frame_is_decrypted_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "--frame", "vp8", "--key", "secret-key", _frame().hex())
    assert out["decrypted"] == (b"\x31\x02\x00" + b"delta frame payload").hex()
    out = _run(capsys, "--frame", "vp8", "--key", "wrong", _frame().hex())
    assert out["decrypted"] is None


def test_not_a_frame_is_a_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--frame", "opus", "fc0102"]) != 0
    assert "not an encrypted opus frame" in capsys.readouterr().err


def test_official_encrypted_packet_is_decrypted(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "--key", "secret-key", OFFICIAL_PACKET)
    assert out["type"] == "DataPacket.encrypted_packet"
    decrypted = out["decrypted"]
    assert isinstance(decrypted, dict)
    assert decrypted["user"]["payload"] == "aGVsbG8gd29ybGQ="  # b"hello world"
    wrong = _run(capsys, "--key", "other", OFFICIAL_PACKET)
    assert isinstance(wrong["decrypted"], str)
