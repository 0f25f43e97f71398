"""lkproto.core.e2ee: key derivation, ratchet, key ring, data and frame cryptors.

The vectors were sent by the official Python SDK 1.2.1 (livekit-ffi) through livekit-server
v1.13.5 with ``shared_key=b"secret-key"`` and captured by an lkproto room (2026-12-06):
``DataPacket`` bytes from its trace, with PBKDF2 (the default) and with HKDF, each time a user
packet, an inline text stream header, and a user packet after ``ratchet_shared_key(0)``; the
ratchet outputs are what that SDK's ``ratchet_shared_key`` returned; and media frames as they
reached lkproto's decoder hook (an Opus frame of a 440 Hz tone, a VP8 delta frame of a solid
colour), encrypted by the SDK's libwebrtc frame cryptor.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import threading
from typing import Any

import pytest

from lkproto.core import e2ee
from lkproto.core.e2ee import (
    DataDecrypted,
    DataNotDecrypted,
    EncryptionState,
    EncryptionStateChanged,
    FrameCryptor,
    KeyDerivationFunction,
    KeyOptions,
    KeyProvider,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb
from lkproto.wire.e2ee import FrameCodec, h264_slice_ids

SECRET = b"secret-key"

PBKDF2_RATCHET = "6ddaa2a9241fb3c9e93806f70516aa9d088137f55a14262ecd83e8c14b7806fd"
PBKDF2_PACKETS = (
    "220373646b8001018a010f50415f577a78416e456145536737429201340801120c8f5e826a00211a400020e3f1"
    "22225e87430409eceb6ffef57cb0a234031788950bac128628bd49d49751b72f4cea1fa2",
    "220373646b8001028a010f50415f577a78416e456145536737429201700801120cc8bc65c700211a460020e3f6"
    "225e5d01e508a1670f30f4a6538bfdde0c61019da2c0802aedef1e35a4210f4134aff8c55c0af5af8f26701c88"
    "58bfb9cc24142081066533409e6c99f62361ccb705ad1f821b669e2fd20d770a4b6f8bf470368229309fd5d171"
    "1b1a6154243b",
    "220373646b8001038a010f50415f577a78416e456145536737429201360801120cae8dbd1d00211e8c0020e83b"
    "2224df5ab07993fa7892d5650ee66f2f5b5bbe436389fbcaba5e8552df237222daf7a5b3ab34",
)
OFFICIAL_OPUS_FRAME = (
    "f8b3d4856e0f98a5d60b3c28ec427f946fd320fe1921116b24ef03e0ad3d89e0cd1c4211986fd16ee7749a7f6c8d"
    "b56657f2a120202e65cf16e3d8d4c9393c7a4c7d648da60c67cef0594303741b75453c7cdf074059d61d207e6a"
    "331866ac34c1636b7bb714201ceb2e3918ed25025a6beffad437688d9d49e34c5d14a8c9ce54ab88d4fe048aa2cc"
    "1a2a623e56b6735256b6734d0c00"
)
OFFICIAL_VP8_DELTA_FRAME = (
    "510300f7d106ef902b56642616999a4db071425f01d80a3911fc5c4c85be8cb27a85927443092841ab47376415"
    "9203ecce4e666a02a4666a02820c00"
)
HKDF_RATCHET = "bdf35d251b491dc7b2b2128a568f0de0aa8dbde2eb442aad9b7e6516043266f6"
HKDF_PACKETS = (
    "220373646b8001018a010f50415f5464506b5a42565a6b5851339201340801120c33cecbdc002169d20021601a"
    "2222ab06a27fe2803e055733f44ad101e1453b2c24ebea1e542ecded3bf9f2c0c0da3b17",
    "220373646b8001028a010f50415f5464506b5a42565a6b5851339201700801120c60d10223002169d30021601a"
    "225eb19da54582b1ad194b010d4acb5bd7ee5198a2e9944981a3c5d71edaf47d437136570b629f1c885c3d2042"
    "c44398512b4cbf564bd18c50935c354c460ed4c1e2807f0fd333ec090e35b7436ff531f28adf6600dab555ca4f"
    "f37b382857bd",
    "220373646b8001038a010f50415f5464506b5a42565a6b5851339201360801120c846cc67900216dc1002164072"
    "224d2a1af056082b062dc231f8b1c0166d20e8073dc0dd5ef0565342e6239cdb5b591a7db20",
)


class FakeCrypto:
    """Cheap, deterministic stand-ins so ratchet logic tests do not run 100 000 iterations.

    The "cipher" is a keyed XOR stream with an HMAC tag over AAD and ciphertext: a wrong key, IV,
    AAD or byte fails the tag exactly as AES-GCM would.
    """

    def __init__(self) -> None:
        self.derivations = 0

    def pbkdf2_sha256(self, material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        self.derivations += 1
        return hashlib.sha256(b"p" + salt + material + bytes([length])).digest()[:length]

    def hkdf_sha256(self, material: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        self.derivations += 1
        return hashlib.sha256(b"h" + salt + material + bytes([length])).digest()[:length]

    @staticmethod
    def _stream(key: bytes, iv: bytes, n: int) -> bytes:
        out = b"".join(
            hashlib.sha256(key + iv + i.to_bytes(4, "big")).digest() for i in range(n // 32 + 1)
        )
        return out[:n]

    def aes_gcm_encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        body = bytes(
            a ^ b for a, b in zip(plaintext, self._stream(key, iv, len(plaintext)), strict=False)
        )
        return body + hmac.digest(key, iv + aad + body, "sha256")[:16]

    def aes_gcm_decrypt(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
        body, tag = ciphertext[:-16], ciphertext[-16:]
        if not hmac.compare_digest(tag, hmac.digest(key, iv + aad + body, "sha256")[:16]):
            return None
        return bytes(a ^ b for a, b in zip(body, self._stream(key, iv, len(body)), strict=False))


def _packet(hexed: str) -> pb.DataPacket:
    packet = pb.DataPacket()
    packet.ParseFromString(bytes.fromhex(hexed))
    return packet


def _events(provider: KeyProvider) -> list[EncryptionStateChanged]:
    return list(iter(provider.next_event, None))


IV = bytes(range(12))


# -- official vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kdf", "packets", "ratchet"),
    [
        (KeyDerivationFunction.PBKDF2, PBKDF2_PACKETS, PBKDF2_RATCHET),
        (KeyDerivationFunction.HKDF, HKDF_PACKETS, HKDF_RATCHET),
    ],
)
def test_official_packets_decrypt(
    kdf: KeyDerivationFunction, packets: tuple[str, ...], ratchet: str
) -> None:
    provider = KeyProvider(KeyOptions(key_derivation_function=kdf), shared_key=SECRET)
    first = provider.decrypt_packet(_packet(packets[0]))
    assert isinstance(first, DataDecrypted)
    assert first.packet.user.payload == b"hello world"
    assert first.packet.user.topic == "t"
    assert first.packet.participant_identity == "sdk"
    assert not first.packet.HasField("encrypted_packet")
    stream = provider.decrypt_packet(_packet(packets[1]))
    assert isinstance(stream, DataDecrypted)
    assert stream.packet.stream_header.inline_content == b"some text"
    # The SDK ratcheted: our ratchet of the same material gives its output ...
    assert provider.ratchet_shared_key(0).hex() == ratchet
    after = provider.decrypt_packet(_packet(packets[2]))
    assert isinstance(after, DataDecrypted)
    assert after.packet.user.payload == b"after ratchet"


@pytest.mark.parametrize(
    ("codec", "hexed", "clear"),
    [(FrameCodec.OPUS, OFFICIAL_OPUS_FRAME, 1), (FrameCodec.VP8, OFFICIAL_VP8_DELTA_FRAME, 3)],
)
def test_official_media_frames_decrypt(codec: FrameCodec, hexed: str, clear: int) -> None:
    frame = bytes.fromhex(hexed)
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=SECRET)
    cryptor = FrameCryptor(provider, participant_identity="sdk", track_sid="TR", codec=codec)
    plain = cryptor.decrypt(frame)
    assert plain is not None  # the GCM tag verified: same key, AAD (clear header) and layout
    assert plain[:clear] == frame[:clear]
    assert len(plain) == len(frame) - 16 - 14
    assert frame[-2:] == bytes((12, 0))  # IV length, key index
    if codec is FrameCodec.VP8:
        assert plain[0] & 1 == 1  # a delta frame: 3 clear bytes is the rule that matched
    # a wrong clear header (AAD) fails the tag
    tampered = bytes([frame[0] ^ 0x04]) + frame[1:]
    assert cryptor.decrypt(tampered) is None


def test_receiver_that_did_not_ratchet_follows_within_the_window() -> None:
    provider = KeyProvider(KeyOptions(ratchet_window_size=1), shared_key=SECRET)
    result = provider.decrypt_packet(_packet(PBKDF2_PACKETS[2]))
    assert isinstance(result, DataDecrypted)
    assert provider.export_shared_key(0).hex() == PBKDF2_RATCHET
    assert provider.state("sdk") is EncryptionState.OK


def test_our_packets_decrypt_with_the_other_kdf_only_when_configured_alike() -> None:
    ours = KeyProvider(shared_key=SECRET)
    packet = pb.DataPacket(participant_identity="lk")
    packet.user.payload = b"x"
    sealed = ours.encrypt_packet(packet, "lk", IV)
    other = KeyProvider(
        KeyOptions(key_derivation_function=KeyDerivationFunction.HKDF, ratchet_window_size=0),
        shared_key=SECRET,
    )
    assert isinstance(other.decrypt_packet(sealed), DataNotDecrypted)
    assert isinstance(KeyProvider(shared_key=SECRET).decrypt_packet(sealed), DataDecrypted)


# -- data packets ------------------------------------------------------------------------------


def _provider(**options: Any) -> KeyProvider:
    return KeyProvider(KeyOptions(**options), crypto=FakeCrypto())


def test_encrypt_packet_moves_the_value_and_keeps_the_envelope() -> None:
    provider = _provider()
    provider.set_shared_key(SECRET, 3)
    packet = pb.DataPacket(participant_identity="lk", destination_identities=["b"], sequence=7)
    packet.rpc_request.id = "r1"
    sealed = provider.encrypt_packet(packet, "lk", IV)
    assert sealed.WhichOneof("value") == "encrypted_packet"
    assert sealed.encrypted_packet.key_index == 3
    assert sealed.encrypted_packet.iv == IV
    assert sealed.encrypted_packet.encryption_type == pb.Encryption.GCM
    assert list(sealed.destination_identities) == ["b"]
    assert sealed.sequence == 7
    assert packet.rpc_request.id == "r1"  # the caller's packet is untouched
    opened = provider.decrypt_packet(sealed)
    assert isinstance(opened, DataDecrypted)
    assert opened.packet == packet


def test_clear_values_are_not_encrypted() -> None:
    provider = _provider()
    provider.set_shared_key(SECRET)
    packet = pb.DataPacket()
    packet.sip_dtmf.digit = "1"
    assert provider.encrypt_packet(packet, "lk", IV) is packet


def test_encrypt_without_key_refuses_instead_of_sending_clear() -> None:
    provider = _provider()
    packet = pb.DataPacket()
    packet.user.payload = b"secret"
    with pytest.raises(LocalProtocolError):
        provider.encrypt_packet(packet, "lk", IV)
    assert _events(provider) == [
        EncryptionStateChanged(
            participant_identity="lk", track_sid="", state=EncryptionState.MISSING_KEY
        )
    ]


def _sealed(provider: KeyProvider, identity: str = "a") -> pb.DataPacket:
    packet = pb.DataPacket(participant_identity=identity)
    packet.user.payload = b"payload"
    return provider.encrypt_packet(packet, identity, IV)


def test_missing_and_wrong_key_are_reported_then_recover() -> None:
    sender = _provider()
    sender.set_key("a", b"right")
    receiver = _provider(ratchet_window_size=0)
    missing = receiver.decrypt_packet(_sealed(sender))
    assert isinstance(missing, DataNotDecrypted)
    assert missing.state is EncryptionState.MISSING_KEY
    receiver.set_key("a", b"wrong")
    wrong = receiver.decrypt_packet(_sealed(sender))
    assert isinstance(wrong, DataNotDecrypted)
    assert wrong.state is EncryptionState.DECRYPTION_FAILED
    receiver.set_key("a", b"right")
    assert isinstance(receiver.decrypt_packet(_sealed(sender)), DataDecrypted)
    assert [e.state for e in _events(receiver)] == [
        EncryptionState.MISSING_KEY,
        EncryptionState.DECRYPTION_FAILED,
        EncryptionState.OK,
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.encrypted_packet.__setattr__("iv", bytes(12)),
        lambda p: p.encrypted_packet.__setattr__("iv", b"short"),
        lambda p: p.encrypted_packet.__setattr__("key_index", 5),
        lambda p: p.encrypted_packet.__setattr__("key_index", 4000),
        lambda p: p.encrypted_packet.__setattr__("encrypted_value", b"\x00" * 3),
        lambda p: p.encrypted_packet.__setattr__(
            "encrypted_value", b"\x01" + p.encrypted_packet.encrypted_value[1:]
        ),
    ],
)
def test_damaged_packets_fail_cleanly(damage: object) -> None:
    provider = _provider(ratchet_window_size=2)
    provider.set_shared_key(SECRET)
    sealed = _sealed(provider)
    damage(sealed)  # type: ignore[operator]
    result = provider.decrypt_packet(sealed)
    assert isinstance(result, DataNotDecrypted)
    assert provider.export_shared_key(0) == SECRET  # a failure never moves the key


def test_payload_that_is_not_a_payload_fails_cleanly() -> None:
    crypto = FakeCrypto()
    provider = KeyProvider(shared_key=SECRET, crypto=crypto)
    packet = pb.DataPacket(participant_identity="a")
    key = provider.handler_for("a").key(0)  # type: ignore[union-attr]
    assert key is not None
    packet.encrypted_packet.iv = IV
    packet.encrypted_packet.encrypted_value = crypto.aes_gcm_encrypt(key, IV, b"\xff\xff", b"")
    result = provider.decrypt_packet(packet)
    assert isinstance(result, DataNotDecrypted)
    assert result.state is EncryptionState.DECRYPTION_FAILED


# -- key ring, ratchet, failure tolerance --------------------------------------------------------


def test_ratchet_is_deterministic_and_matches_derive() -> None:
    crypto = FakeCrypto()
    options = KeyOptions()
    a, b = KeyProvider(options, crypto=crypto), KeyProvider(options, crypto=crypto)
    a.set_key("p", SECRET, 2)
    b.set_key("p", SECRET, 2)
    chain_a = [a.ratchet_key("p", 2) for _ in range(3)]
    chain_b = [b.ratchet_key("p", 2) for _ in range(3)]
    assert chain_a == chain_b
    assert chain_a[0] == e2ee.ratchet_material(crypto, SECRET, options)
    assert len(set(chain_a)) == 3


def test_unset_slots_export_empty_and_ratchet_to_empty() -> None:
    provider = _provider()
    assert provider.export_shared_key(0) == b""
    assert provider.ratchet_shared_key(0) == b""
    assert provider.export_key("nobody", 1) == b""
    assert provider.ratchet_key("nobody", 1) == b""


def test_key_index_outside_ring_is_local_misuse() -> None:
    provider = _provider(key_ring_size=4)
    with pytest.raises(LocalProtocolError):
        provider.set_shared_key(SECRET, 4)
    with pytest.raises(LocalProtocolError):
        provider.set_key("p", b"", 0)


@pytest.mark.parametrize(
    "options",
    [
        {"key_ring_size": 0},
        {"key_ring_size": 257},
        {"ratchet_window_size": -1},
        {"ratchet_window_size": True},
        {"failure_tolerance": 1.5},
        {"ratchet_salt": "text"},
        {"key_derivation_function": 7},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        KeyOptions(**options)


def test_failure_tolerance_turns_failures_into_missing_key_until_a_key_is_set() -> None:
    sender = _provider()
    sender.set_key("a", b"right")
    receiver = _provider(ratchet_window_size=0, failure_tolerance=1)
    receiver.set_key("a", b"wrong")
    states = []
    for _ in range(3):
        result = receiver.decrypt_packet(_sealed(sender))
        assert isinstance(result, DataNotDecrypted)
        states.append(result.state)
    assert states == [
        EncryptionState.DECRYPTION_FAILED,
        EncryptionState.DECRYPTION_FAILED,
        EncryptionState.MISSING_KEY,
    ]
    receiver.set_key("a", b"right")
    assert isinstance(receiver.decrypt_packet(_sealed(sender)), DataDecrypted)


def test_window_ratchets_are_derived_once_per_material() -> None:
    crypto = FakeCrypto()
    sender = KeyProvider(shared_key=b"right", crypto=crypto)
    receiver = KeyProvider(KeyOptions(ratchet_window_size=4), shared_key=b"wrong", crypto=crypto)
    before = crypto.derivations
    for _ in range(5):
        assert isinstance(receiver.decrypt_packet(_sealed(sender)), DataNotDecrypted)
    # 4 ratchets x (material + key), not 5 x that
    assert crypto.derivations - before == 8


def test_sender_ratchets_ahead_and_receiver_catches_up_with_state() -> None:
    sender = _provider()
    receiver = _provider(ratchet_window_size=3)
    sender.set_shared_key(SECRET)
    receiver.set_shared_key(SECRET)
    for _ in range(2):
        sender.ratchet_shared_key(0)
    result = receiver.decrypt_packet(_sealed(sender))
    assert isinstance(result, DataDecrypted)
    assert receiver.export_shared_key(0) == sender.export_shared_key(0)
    # a data packet reports OK; the catch-up shows in the material, frames report KEY_RATCHETED
    for _ in range(4):
        sender.ratchet_shared_key(0)
    assert isinstance(receiver.decrypt_packet(_sealed(sender)), DataNotDecrypted)


def test_per_participant_keys_are_separate_and_shared_mode_overrides() -> None:
    provider = _provider()
    provider.set_key("a", b"ka")
    provider.set_key("b", b"kb")
    ha, hb = provider.handler_for("a"), provider.handler_for("b")
    assert ha is not None
    assert hb is not None
    assert ha.key(0) != hb.key(0)
    assert provider.handler_for("c") is None
    provider.set_shared_key(b"shared")
    assert provider.handler_for("a") is provider.handler_for("c")
    assert provider.shared


def test_sender_uses_the_slot_set_last() -> None:
    provider = _provider()
    provider.set_key("lk", b"k0", 0)
    provider.set_key("lk", b"k5", 5)
    assert _sealed(provider, "lk").encrypted_packet.key_index == 5


# -- frames ------------------------------------------------------------------------------------

VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01]) + bytes(range(40))
VP8_DELTA = bytes([0x31, 0x02, 0x00]) + bytes(range(30))
OPUS = bytes([0xFC]) + bytes(range(60))
H264 = (
    b"\x00\x00\x00\x01\x67\x42\xc0\x1f"  # SPS
    + b"\x00\x00\x00\x01\x68\xce\x3c\x80"  # PPS
    + b"\x00\x00\x00\x01\x65\x88"  # IDR slice header: NAL header + first byte stay clear
    + bytes(range(256)) * 2
)


def _cryptors(codec: FrameCodec, **options: Any) -> tuple[FrameCryptor, FrameCryptor, KeyProvider]:
    tx = _provider(**options)
    rx = _provider(**options)
    tx.set_key("a", SECRET)
    rx.set_key("a", SECRET)
    send = FrameCryptor(tx, participant_identity="a", track_sid="TR_1", codec=codec)
    receive = FrameCryptor(rx, participant_identity="a", track_sid="TR_1", codec=codec)
    return send, receive, rx


@pytest.mark.parametrize(
    ("codec", "frame", "clear"),
    [
        (FrameCodec.VP8, VP8_KEY, 10),
        (FrameCodec.VP8, VP8_DELTA, 3),
        (FrameCodec.OPUS, OPUS, 1),
        (FrameCodec.VP9, VP8_DELTA, 0),
        (FrameCodec.H264, H264, 20),
    ],
)
def test_frame_round_trip_keeps_the_clear_header(
    codec: FrameCodec, frame: bytes, clear: int
) -> None:
    send, receive, rx = _cryptors(codec)
    sealed = send.encrypt(frame, IV)
    assert sealed is not None
    assert sealed[:clear] == frame[:clear]
    assert sealed[-2:] == bytes((12, 0))
    assert frame[clear:] not in sealed
    assert receive.decrypt(sealed) == frame
    assert rx.state("a", "TR_1") is EncryptionState.OK


def test_h264_encrypted_part_has_no_start_code() -> None:
    send, receive, _ = _cryptors(FrameCodec.H264)
    for iv in (bytes(12), b"\x00\x00\x01" * 4):
        sealed = send.encrypt(H264, iv)
        assert sealed is not None
        assert b"\x00\x00\x01" not in sealed[20:]
        assert b"\x00\x00\x00" not in sealed[20:]
        assert receive.decrypt(sealed) == H264


# An x264 IDR access unit: SPS, PPS, then an I slice whose PPS id (0, the bit ``1`` at the top
# of 0x84) is the first bit after the two clear bytes 65 88.
X264_IDR = H264[:16] + b"\x00\x00\x00\x01\x65\x88\x84" + bytes(range(1, 256)) * 2


def test_h264_key_frame_keeps_its_pps_id_readable_for_libwebrtc_receivers() -> None:
    # Issue 16: the official SDK dropped every encrypted x264 key frame whose ciphertext began
    # with a 0 bit ("No PPS with id << N received", h264_sps_pps_tracker.cc) and asked for
    # another. The cryptor draws IVs until the first slice's ids read as in the clear frame.
    send, receive, _ = _cryptors(FrameCodec.H264)
    assert h264_slice_ids(X264_IDR) == (0, 0)
    drawn: list[bytes] = []

    def next_iv() -> bytes:
        drawn.append(len(drawn).to_bytes(12, "big"))
        return drawn[-1]

    for _ in range(32):
        sealed = send.encrypt(X264_IDR, next_iv)
        assert sealed is not None
        assert h264_slice_ids(sealed) == (0, 0)
        assert receive.decrypt(sealed) == X264_IDR
    # About half the IVs spell another id: some frames needed a second one (or more).
    assert 32 < len(drawn) <= 32 * e2ee.H264_MAX_IV_DRAWS
    # The ids are what the draws are for: with one fixed IV some frames come out unreadable.
    fixed = [send.encrypt(X264_IDR, iv) for iv in drawn[:32]]
    assert any(f is not None and h264_slice_ids(f) != (0, 0) for f in fixed)


def test_frames_whose_ids_are_in_clear_take_one_iv() -> None:
    send, _, keys = _cryptors(FrameCodec.H264)
    p_slice = H264[:16] + b"\x00\x00\x00\x01\x41\x9a" + bytes(range(1, 200))
    drawn: list[bytes] = []
    for n in range(8):
        drawn.append(n.to_bytes(12, "big"))
        sealed = send.encrypt(p_slice, lambda: drawn[-1])
        assert sealed is not None
        assert sealed == send.encrypt(p_slice, drawn[-1])
        assert h264_slice_ids(sealed) == (0, 0)
    vp8 = FrameCryptor(keys, participant_identity="a", track_sid="T", codec=FrameCodec.VP8)
    ivs = iter([IV, bytes(12)])
    assert vp8.encrypt(VP8_DELTA, lambda: next(ivs)) == vp8.encrypt(VP8_DELTA, IV)


def test_frame_with_tampered_header_or_trailer_is_dropped() -> None:
    send, receive, rx = _cryptors(FrameCodec.VP8, ratchet_window_size=1)
    sealed = send.encrypt(VP8_DELTA, IV)
    assert sealed is not None
    for damaged in (
        b"\x30" + sealed[1:],  # clear header is authenticated
        sealed[:-2] + b"\x0b" + sealed[-1:],  # IV length byte
        sealed[:-1] + b"\x07",  # empty key slot
        sealed[:-3] + bytes([sealed[-3] ^ 1]) + sealed[-2:],  # IV
        sealed[:20],
        b"",
    ):
        assert receive.decrypt(damaged) in (None, b"")
    assert rx.state("a", "TR_1") in (EncryptionState.DECRYPTION_FAILED, EncryptionState.MISSING_KEY)
    assert receive.decrypt(sealed) == VP8_DELTA


def test_frame_receiver_catches_a_ratchet_and_reports_it() -> None:
    send, receive, rx = _cryptors(FrameCodec.OPUS, ratchet_window_size=2)
    send_provider = send._provider
    send_provider.ratchet_key("a", 0)
    sealed = send.encrypt(OPUS, IV)
    assert sealed is not None
    assert receive.decrypt(sealed) == OPUS
    assert [e.state for e in _events(rx)] == [EncryptionState.KEY_RATCHETED]
    assert receive.decrypt(send.encrypt(OPUS, IV) or b"") == OPUS
    assert [e.state for e in _events(rx)] == [EncryptionState.OK]


def test_frame_without_key_is_not_sent_and_server_injected_frames_pass() -> None:
    provider = _provider()
    send = FrameCryptor(provider, participant_identity="me", track_sid="TR", codec=FrameCodec.OPUS)
    assert send.encrypt(OPUS, IV) is None
    assert provider.state("me", "TR") is EncryptionState.MISSING_KEY
    provider.sif_trailer = b"\xaa\xbb\xcc"
    assert send.decrypt(b"\xf8\xff\xfe\xaa\xbb\xcc") == b"\xf8\xff\xfe"


def test_disabled_cryptor_passes_frames_and_key_index_is_checked() -> None:
    send, _, _ = _cryptors(FrameCodec.VP8, key_ring_size=4)
    send.set_enabled(False)
    assert send.encrypt(VP8_DELTA, IV) == VP8_DELTA
    with pytest.raises(LocalProtocolError):
        send.set_key_index(4)
    send.set_enabled(True)
    send.set_key_index(3)
    assert send.encrypt(VP8_DELTA, IV) is None  # slot 3 is empty: dropped, never clear
    with pytest.raises(LocalProtocolError):
        send.encrypt(VP8_DELTA, b"short")


def test_frame_iv_layout() -> None:
    iv = e2ee.frame_iv(0x01020304, 0x10, 0x11)
    assert iv == bytes.fromhex("0102030400000010ffffffff")
    ivs = {e2ee.data_iv(lambda n: b"\x00" * n, c) for c in itertools.islice(itertools.count(), 50)}
    assert len(ivs) == 50
    assert all(len(i) == 12 for i in ivs)


def test_real_backend_round_trips_a_frame() -> None:
    provider = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=SECRET)
    cryptor = FrameCryptor(provider, participant_identity="x", track_sid="T", codec=FrameCodec.VP8)
    sealed = cryptor.encrypt(VP8_KEY, IV)
    assert sealed is not None
    assert len(sealed) == len(VP8_KEY) + 16 + 14
    assert cryptor.decrypt(sealed) == VP8_KEY


def test_peek_decrypts_without_touching_state() -> None:
    sender = _provider()
    sender.set_shared_key(SECRET)
    receiver = _provider(ratchet_window_size=4)
    receiver.set_shared_key(SECRET)
    sealed = _sealed(sender)
    opened = receiver.peek_packet(sealed, "a")
    assert opened is not None
    assert opened.user.payload == b"payload"
    assert receiver.next_event() is None  # nothing reported
    sender.ratchet_shared_key(0)
    # a ratchet ahead is not found by peeking (nothing derived), nor does peeking move the key
    assert receiver.peek_packet(_sealed(sender), "a") is None
    assert receiver.export_shared_key(0) == SECRET
    assert receiver.peek_packet(sealed, "nobody-in-shared-mode-is-still-shared") is not None
    assert _provider().peek_packet(sealed, "a") is None  # no keys at all


# -- key derivations and threads (issue 16: the event loop never waits for one) -----------------


class _BlockingOffMainCrypto(FakeCrypto):
    """Derivations on any thread but the main one wait for ``gate`` (a slow PBKDF2)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def pbkdf2_sha256(self, material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        if threading.current_thread() is not threading.main_thread():
            self.waiting.set()
            self.gate.wait(10.0)
        return super().pbkdf2_sha256(material, salt, iterations, length)


def test_keys_change_while_another_thread_derives_ratchets() -> None:
    # A decoder thread trying the ratchet window of a wrong key used to hold the key ring's
    # lock for the whole derivation (0.7 s with the defaults), so set_key on the event loop
    # waited for it. Now only the finished ratchets are installed under the lock.
    crypto = _BlockingOffMainCrypto()
    provider = KeyProvider(KeyOptions(ratchet_window_size=4), crypto=crypto)
    provider.set_key("a", b"old")
    right = _provider()
    right.set_key("a", b"new")
    sealed = FrameCryptor(right, participant_identity="a", track_sid="T", codec=FrameCodec.OPUS)
    frame = sealed.encrypt(OPUS, IV)
    receive = FrameCryptor(provider, participant_identity="a", track_sid="T", codec=FrameCodec.OPUS)
    results: list[bytes | None] = []
    worker = threading.Thread(target=lambda: results.append(receive.decrypt(frame or b"")))
    worker.start()
    try:
        assert crypto.waiting.wait(10.0)
        provider.set_key("a", b"new")  # on the "loop" while the worker derives
        provider.ratchet_key("a")
        provider.set_key("a", b"new")
        assert worker.is_alive()  # still deriving: the calls above did not wait for it
    finally:
        crypto.gate.set()
        worker.join(10.0)
    # The worker's frame failed the old key's ratchets, then met the key set meanwhile.
    assert results == [OPUS]


def test_window_is_derived_once_and_reported_ready() -> None:
    provider = _provider(ratchet_window_size=3)
    provider.set_shared_key(SECRET)
    handler = provider.handler_for("anyone")
    assert handler is not None
    assert not handler.window_derived(0)
    assert handler.window_derived(1)  # empty slot: nothing to derive
    handler.derive_window(0)
    assert handler.window_derived(0)
    sender = _provider()
    sender.set_shared_key(SECRET)
    sender.ratchet_shared_key(0)
    user = pb.DataPacket()
    user.user.payload = b"x"
    packet = sender.encrypt_packet(user, "b", IV)
    packet.participant_identity = "b"
    assert not provider.derivation_needed(packet)  # the derived ratchets open it
    assert isinstance(provider.decrypt_packet(packet), e2ee.DataDecrypted)
