"""User-packet nonces: ReliableSender gives them out, UserNonceFilter drops their repeats.

The scenario of issue 15: a sender's full reconnect resends packets the server had in fact
received, with a new SID and new sequences; the nonce is the only thing the copy shares with the
original. Time is a plain float; nonces come from an injected counter, so nothing is random.
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from lkproto.core.e2ee import DataDecrypted, KeyProvider
from lkproto.core.reconnect import (
    DEFAULT_RECONNECT_DELAYS_S,
    REJOIN_HOLD_S,
    TRANSPORT_SILENCE_S,
)
from lkproto.core.reliable import (
    USER_NONCE_BYTES,
    USER_NONCE_MAX_PER_IDENTITY,
    USER_NONCE_TTL_S,
    ReliableReceiver,
    ReliableSender,
    ResendBufferFullError,
    UserNonceFilter,
    random_nonce,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import DATA_PACKET_MAX_BYTES, decode_data_packet, encode_data_packet, pb
from lkproto.wire.e2ee import IV_LENGTH

T0 = 1000.0


def counter_nonces() -> itertools.count[int]:
    return itertools.count(1)


def injected() -> tuple[ReliableSender, list[bytes]]:
    """A sender whose nonces are 1, 2, 3, ... as 16 big-endian bytes; the list records them."""
    issued: list[bytes] = []
    numbers = counter_nonces()

    def source() -> bytes:
        nonce = next(numbers).to_bytes(USER_NONCE_BYTES, "big")
        issued.append(nonce)
        return nonce

    return ReliableSender(nonce_source=source), issued


def nonce_of(data: bytes) -> bytes:
    return decode_data_packet(data).user.nonce


# -------------------------------------------------------------------------------- sender


def test_random_nonce_is_a_fresh_version_4_uuid() -> None:
    first, second = random_nonce(), random_nonce()
    assert len(first) == USER_NONCE_BYTES == 16
    assert first != second
    assert uuid.UUID(bytes=first).version == 4


def test_stamp_gives_each_user_packet_its_own_nonce() -> None:
    sender, issued = injected()
    packets = [pb.DataPacket(user=pb.UserPacket(payload=b"p")) for _ in range(3)]
    datas = [sender.stamp(p) for p in packets]
    assert [nonce_of(d) for d in datas] == issued
    assert [p.user.nonce for p in packets] == issued  # set in place, as the sequence is
    assert len(set(issued)) == 3


def test_default_source_is_random() -> None:
    sender = ReliableSender()
    nonces = {nonce_of(sender.stamp(pb.DataPacket(user=pb.UserPacket()))) for _ in range(5)}
    assert len(nonces) == 5
    assert all(len(n) == USER_NONCE_BYTES for n in nonces)


def test_a_nonce_the_caller_set_is_kept_whatever_its_length() -> None:
    sender, issued = injected()
    for mine in (b"\xaa" * 16, b"short"):
        data = sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=b"p", nonce=mine)))
        assert nonce_of(data) == mine
    assert issued == []


@pytest.mark.parametrize(
    "packet",
    [
        pb.DataPacket(rpc_request=pb.RpcRequest(id="r")),
        pb.DataPacket(stream_chunk=pb.DataStream.Chunk(stream_id="s")),
        pb.DataPacket(sip_dtmf=pb.SipDTMF(code=1, digit="1")),
        pb.DataPacket(),
    ],
    ids=["rpc", "stream", "dtmf", "empty"],
)
def test_only_user_packets_get_a_nonce(packet: pb.DataPacket) -> None:
    sender, issued = injected()
    data = sender.stamp(packet)
    assert issued == []
    assert decode_data_packet(data).WhichOneof("value") == packet.WhichOneof("value")


def test_a_refused_stamp_takes_its_nonce_back_and_the_retry_gets_a_new_one() -> None:
    numbers = counter_nonces()
    sender = ReliableSender(
        max_buffer_bytes=DATA_PACKET_MAX_BYTES,
        nonce_source=lambda: next(numbers).to_bytes(USER_NONCE_BYTES, "big"),
    )
    first = sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=b"x" * 40_000)))
    big = pb.DataPacket(user=pb.UserPacket(payload=b"x" * 30_000))
    with pytest.raises(ResendBufferFullError):
        sender.stamp(big)
    assert (big.sequence, big.user.nonce) == (0, b"")  # nothing changed
    assert sender.on_buffered_amount(0) == 1
    assert nonce_of(first) == (1).to_bytes(USER_NONCE_BYTES, "big")
    assert nonce_of(sender.stamp(big)) == (3).to_bytes(USER_NONCE_BYTES, "big")


def test_a_nonce_that_would_exceed_the_size_limit_is_left_out() -> None:
    # The official SDKs accept any payload whose packet fits 64 000 bytes; so does lkproto: a
    # packet the 18 nonce bytes would push over the limit goes without one.
    sender, issued = injected()
    bare = pb.DataPacket(user=pb.UserPacket(payload=b""), sequence=1)
    payload = b"n" * (DATA_PACKET_MAX_BYTES - len(encode_data_packet(bare)) - 8)
    packet = pb.DataPacket(user=pb.UserPacket(payload=payload))
    data = sender.stamp(packet)
    assert len(data) <= DATA_PACKET_MAX_BYTES
    assert nonce_of(data) == b""
    assert packet.user.nonce == b""
    assert len(issued) == 1  # drawn, then left out
    # A smaller one still gets its nonce.
    assert nonce_of(sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=b"s")))) == issued[1]


def test_an_oversized_packet_is_refused_with_nonce_and_sequence_restored() -> None:
    sender, _ = injected()
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"x" * DATA_PACKET_MAX_BYTES))
    with pytest.raises(LocalProtocolError, match="64000"):
        sender.stamp(packet)
    assert (packet.sequence, packet.user.nonce) == (0, b"")
    assert sender.next_sequence == 1


@pytest.mark.parametrize("bad", [b"", b"x" * 15, b"x" * 17, "0123456789abcdef"])
def test_a_nonce_source_returning_anything_but_16_bytes_is_misuse(bad: object) -> None:
    sender = ReliableSender(nonce_source=lambda: bad)  # type: ignore[arg-type,return-value]
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"p"))
    with pytest.raises(LocalProtocolError, match="nonce_source"):
        sender.stamp(packet)
    assert (packet.sequence, packet.user.nonce, sender.next_sequence) == (0, b"", 1)


def test_the_resend_after_a_full_reconnect_repeats_the_original_nonces() -> None:
    sender, issued = injected()
    sent = [sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=bytes([i])))) for i in range(4)]
    sender.suspend()
    later = sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=b"L")))
    # The old association held the last two unacknowledged: kept, renumbered, same nonces.
    sender.restart(len(sent[2]) + len(sent[3]))
    again = sender.resume(0)
    assert [decode_data_packet(d).sequence for d in again] == [1, 2, 3]
    assert [nonce_of(d) for d in again] == [issued[2], issued[3], nonce_of(later)]
    assert len(issued) == 5  # restart drew none


def test_the_resend_after_a_signal_resume_repeats_the_original_nonces() -> None:
    sender, issued = injected()
    for i in range(3):
        sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=bytes([i]))))
    sender.suspend()
    assert [nonce_of(d) for d in sender.resume(1)] == issued[1:]


# -------------------------------------------------------------------------------- sealed (E2EE)


class Sealer:
    """Seals as an encrypted room does (real AES-GCM, shared key), one fresh IV per call."""

    def __init__(self, *, fail: bool = False) -> None:
        self.provider = KeyProvider(shared_key=b"nonce-test-key")
        self.ivs = (i.to_bytes(IV_LENGTH, "big") for i in itertools.count(1))
        self.fail = fail
        self.calls = 0

    def __call__(self, packet: pb.DataPacket) -> pb.DataPacket:
        self.calls += 1
        if self.fail:
            raise LocalProtocolError("no end-to-end encryption key set to encrypt data with")
        return self.provider.encrypt_packet(packet, "alice", next(self.ivs))

    def open(self, data: bytes, *, sid: str = "PA_old") -> pb.DataPacket:
        """``data`` as a receiver opens it after the server forwarded it from ``sid``."""
        received = decode_data_packet(data)
        received.participant_identity, received.participant_sid = "alice", sid
        result = self.provider.decrypt_packet(received)
        assert isinstance(result, DataDecrypted)
        return result.packet


def test_a_sealed_user_packet_carries_its_nonce_inside_the_ciphertext() -> None:
    sender, issued = injected()
    seal = Sealer()
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"secret"))
    wire, data = sender.stamp_sealed(packet, seal)
    assert decode_data_packet(data) == wire
    assert wire.WhichOneof("value") == "encrypted_packet"
    assert wire.sequence == packet.sequence == 1
    assert issued[0] not in data  # the server sees no nonce
    assert (packet.user.nonce, seal.open(data).user.nonce) == (issued[0], issued[0])
    # The next one gets its own.
    _, second = sender.stamp_sealed(pb.DataPacket(user=pb.UserPacket(payload=b"2")), seal)
    assert seal.open(second).user.nonce == issued[1] != issued[0]


def test_stamp_sealed_without_a_sealer_is_stamp() -> None:
    sender, issued = injected()
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"p"))
    wire, data = sender.stamp_sealed(packet, None)
    assert wire is packet
    assert nonce_of(data) == issued[0]


def test_a_sealed_packet_keeps_a_nonce_the_caller_set() -> None:
    sender, issued = injected()
    seal = Sealer()
    mine = b"\xaa" * USER_NONCE_BYTES
    _, data = sender.stamp_sealed(pb.DataPacket(user=pb.UserPacket(nonce=mine)), seal)
    assert seal.open(data).user.nonce == mine
    assert issued == []


def test_the_resend_of_a_sealed_packet_after_a_full_reconnect_repeats_its_nonce() -> None:
    sender, issued = injected()
    seal = Sealer()
    sent = [
        sender.stamp_sealed(pb.DataPacket(user=pb.UserPacket(payload=bytes([i]))), seal)[1]
        for i in range(3)
    ]
    sender.restart(len(sent[1]) + len(sent[2]))
    again = sender.resume(0)
    assert [decode_data_packet(d).sequence for d in again] == [1, 2]
    # The same ciphertext under new sequences: nothing is sealed again, so the nonces repeat.
    assert [decode_data_packet(d).encrypted_packet for d in again] == [
        decode_data_packet(d).encrypted_packet for d in sent[1:]
    ]
    opened = [seal.open(d, sid="PA_new").user.nonce for d in again]
    assert opened == issued[1:]
    assert seal.calls == 3


def test_a_withdrawn_sealed_packet_is_sealed_again_with_the_same_nonce() -> None:
    sender, issued = injected()
    seal = Sealer()
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"p"))
    first_wire, first = sender.stamp_sealed(packet, seal)
    sender.withdraw(packet.sequence)
    second_wire, second = sender.stamp_sealed(packet, seal)
    assert first_wire.encrypted_packet.iv != second_wire.encrypted_packet.iv
    assert seal.open(first).user.nonce == seal.open(second).user.nonce == issued[0]
    assert len(issued) == 1


def test_a_seal_that_raises_restores_the_packet_and_consumes_no_sequence() -> None:
    sender, issued = injected()
    packet = pb.DataPacket(user=pb.UserPacket(payload=b"p"))
    with pytest.raises(LocalProtocolError, match="no end-to-end encryption key"):
        sender.stamp_sealed(packet, Sealer(fail=True))
    assert (packet.sequence, packet.user.nonce, sender.next_sequence) == (0, b"", 1)
    assert sender.buffered_bytes == 0
    seal = Sealer()
    _, data = sender.stamp_sealed(packet, seal)
    assert decode_data_packet(data).sequence == 1
    assert seal.open(data).user.nonce == issued[1]  # the refused one's nonce went with it


def test_a_nonce_that_would_push_the_sealed_packet_past_the_limit_is_left_out() -> None:
    sender, issued = injected()
    seal = Sealer()
    # Measured near the limit, where every length prefix already takes its three bytes.
    probe = pb.DataPacket(user=pb.UserPacket(payload=b"n" * 60_000), sequence=1)
    overhead = len(encode_data_packet(seal(probe))) - 60_000
    payload = b"n" * (DATA_PACKET_MAX_BYTES - overhead - 8)
    packet = pb.DataPacket(user=pb.UserPacket(payload=payload))
    _, data = sender.stamp_sealed(packet, seal)
    assert len(data) <= DATA_PACKET_MAX_BYTES
    assert seal.open(data).user == pb.UserPacket(payload=payload)
    assert packet.user.nonce == b""
    assert len(issued) == 1  # drawn, then left out


def test_the_filter_drops_the_decrypted_resend_and_passes_nonce_less_inner_packets() -> None:
    sender, issued = injected()
    seal = Sealer()
    _, original = sender.stamp_sealed(pb.DataPacket(user=pb.UserPacket(payload=b"o")), seal)
    sender.restart(len(original))
    (resend,) = sender.resume(0)
    f = UserNonceFilter()
    assert seal.open(resend).user.nonce == issued[0]
    assert f.accept(seal.open(original, sid="PA_old"), T0)
    assert not f.accept(seal.open(resend, sid="PA_new"), T0 + 5)
    # Sealed by an official SDK: the inner UserPacket has no nonce; every copy passes.
    bare = seal(pb.DataPacket(user=pb.UserPacket(payload=b"sdk"), sequence=1))
    for _ in range(2):
        assert f.accept(seal.open(encode_data_packet(bare)), T0 + 6)
    assert f.duplicates_dropped == 1


# -------------------------------------------------------------------------------- receiver


def rx(identity: str, nonce: bytes, sid: str = "PA_1", sequence: int = 1) -> pb.DataPacket:
    """A user packet as the server forwards it (identity and SID filled in)."""
    return pb.DataPacket(
        participant_identity=identity,
        participant_sid=sid,
        sequence=sequence,
        user=pb.UserPacket(payload=b"p", nonce=nonce),
    )


def n(i: int) -> bytes:
    return i.to_bytes(USER_NONCE_BYTES, "big")


def test_constants() -> None:
    assert USER_NONCE_BYTES == 16
    # Longer than the way from a delivery to its resend: the silence that starts the reconnect,
    # the first five attempts' delays and the longest rejoin hold, with room for the attempts.
    first_five = sum(DEFAULT_RECONNECT_DELAYS_S[:5])
    assert TRANSPORT_SILENCE_S + first_five + REJOIN_HOLD_S + 10.0 <= USER_NONCE_TTL_S
    assert USER_NONCE_MAX_PER_IDENTITY >= 1024


def test_a_repeated_nonce_from_the_same_identity_is_dropped_whatever_its_sid() -> None:
    f = UserNonceFilter()
    assert f.accept(rx("alice", n(1), sid="PA_old", sequence=7), T0)
    assert not f.accept(rx("alice", n(1), sid="PA_new", sequence=1), T0 + 5)
    assert f.duplicates_dropped == 1
    assert f.accept(rx("alice", n(2), sid="PA_new", sequence=2), T0 + 5)


def test_the_sequence_filter_alone_lets_the_resend_through() -> None:
    # Why the nonce filter exists: the (SID, sequence) filter keys on the old session.
    r, f = ReliableReceiver(), UserNonceFilter()
    original, resend = rx("alice", n(1), "PA_old", 7), rx("alice", n(1), "PA_new", 1)
    assert r.accept(original, T0)
    assert f.accept(original, T0)
    assert r.accept(resend, T0 + 1)
    assert not f.accept(resend, T0 + 1)


def test_identities_never_interfere() -> None:
    f = UserNonceFilter(max_per_identity=2)
    assert f.accept(rx("alice", n(1)), T0)
    assert f.accept(rx("bob", n(1)), T0)  # same nonce, another sender: not a duplicate
    for i in range(2, 10):
        assert f.accept(rx("bob", n(i)), T0)  # bob's traffic does not evict alice's nonce
    assert not f.accept(rx("alice", n(1)), T0)
    assert f.held == 2 + 1


@pytest.mark.parametrize(
    "packet",
    [
        rx("alice", b""),
        rx("alice", b"x" * 15),
        rx("alice", b"x" * 17),
        pb.DataPacket(participant_identity="alice", rpc_request=pb.RpcRequest(id="x" * 16)),
        pb.DataPacket(participant_identity="alice"),
    ],
    ids=["none", "short", "long", "rpc", "empty"],
)
def test_packets_without_a_16_byte_user_nonce_pass_and_are_not_recorded(
    packet: pb.DataPacket,
) -> None:
    f = UserNonceFilter()
    assert f.accept(packet, T0)
    assert f.accept(packet, T0)
    assert f.held == 0
    assert f.duplicates_dropped == 0


def test_the_deprecated_identity_is_the_fallback_and_a_blank_one_is_a_sender_too() -> None:
    f = UserNonceFilter()
    legacy = pb.DataPacket(user=pb.UserPacket(nonce=n(1), participant_identity="alice"))
    assert f.accept(legacy, T0)
    assert not f.accept(rx("alice", n(1)), T0)
    # RoomService.SendData (no sender identity) with a nonce: deduplicated among its own.
    server = pb.DataPacket(user=pb.UserPacket(nonce=n(2)))
    assert f.accept(server, T0)
    assert not f.accept(server, T0)
    assert f.accept(rx("bob", n(2)), T0)


def test_a_nonce_expires_ttl_after_its_packet_even_without_a_timer() -> None:
    f = UserNonceFilter(ttl_s=10.0)
    assert f.accept(rx("alice", n(1)), T0)
    assert not f.accept(rx("alice", n(1)), T0 + 9.999)  # a duplicate does not extend it
    assert f.accept(rx("alice", n(1)), T0 + 10.0)
    assert not f.accept(rx("alice", n(1)), T0 + 19.0)


def test_the_count_bound_forgets_the_oldest_nonce_of_that_identity() -> None:
    f = UserNonceFilter(max_per_identity=3)
    for i in range(1, 5):
        assert f.accept(rx("alice", n(i)), T0 + i)
    assert f.held == 3
    assert not f.accept(rx("alice", n(2)), T0 + 5)
    assert f.accept(rx("alice", n(1)), T0 + 5)  # evicted: accepted again


def test_accept_forgets_senders_gone_quiet_so_memory_stays_bounded_without_a_timer() -> None:
    f = UserNonceFilter(ttl_s=10.0)
    for identity in ("a", "b", "c"):
        f.accept(rx(identity, n(1)), T0)
    f.accept(rx("b", n(2)), T0 + 5)
    assert f.held == 4
    f.accept(rx("d", n(1)), T0 + 10)  # a and c expired; b's newest has not
    assert f.identities == ["b", "d"]
    assert f.held == 3  # b's expired first nonce stays until b is handled or the timer runs
    f.accept(rx("b", n(3)), T0 + 11)
    assert f.held == 3  # b's first pruned, its third added


def test_timer_prunes_every_expired_nonce() -> None:
    f = UserNonceFilter(ttl_s=10.0)
    assert f.get_timer() is None
    f.accept(rx("a", n(1)), T0)
    f.accept(rx("b", n(1)), T0 + 2)
    f.accept(rx("a", n(2)), T0 + 4)
    assert f.get_timer() == T0 + 10
    f.handle_timer(T0 + 10)
    assert (f.held, f.identities, f.get_timer()) == (2, ["b", "a"], T0 + 12)
    f.handle_timer(T0 + 13.9)
    assert (f.held, f.identities, f.get_timer()) == (1, ["a"], T0 + 14)
    f.handle_timer(T0 + 14)
    assert (f.held, f.identities, f.get_timer()) == (0, [], None)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "30"])
def test_bad_ttl(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="ttl_s"):
        UserNonceFilter(ttl_s=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_bad_max_per_identity(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_per_identity"):
        UserNonceFilter(max_per_identity=bad)  # type: ignore[arg-type]
