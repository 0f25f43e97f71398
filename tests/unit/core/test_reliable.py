"""ReliableSender (stamping, trim, suspend/resume, bound) and ReliableReceiver (dedup, TTL).

Time is a plain float passed in; nothing here sleeps.
"""

from __future__ import annotations

import pytest

from lkproto.core.reliable import (
    DEFAULT_RESEND_BUFFER_MAX_BYTES,
    RELIABLE_RECEIVE_STATE_TTL_S,
    SEQUENCE_MAX,
    ReliableReceiver,
    ReliableSender,
    ResendBufferFullError,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import DATA_PACKET_MAX_BYTES, decode_data_packet, pb

T0 = 1000.0


def user(size: int = 10) -> pb.DataPacket:
    return pb.DataPacket(user=pb.UserPacket(payload=b"x" * size))


def stamped(sender: ReliableSender, count: int, size: int = 10) -> list[bytes]:
    return [sender.stamp(user(size)) for _ in range(count)]


def seq_of(data: bytes) -> int:
    return decode_data_packet(data).sequence


# -------------------------------------------------------------------------------- sender


def test_constants() -> None:
    assert RELIABLE_RECEIVE_STATE_TTL_S == 30.0
    assert SEQUENCE_MAX == 2**32 - 1
    assert DEFAULT_RESEND_BUFFER_MAX_BYTES >= DATA_PACKET_MAX_BYTES


def test_stamp_numbers_from_one_and_sets_the_packet() -> None:
    sender = ReliableSender()
    assert sender.next_sequence == 1
    packets = [user(), user(), user()]
    datas = [sender.stamp(p) for p in packets]
    assert [p.sequence for p in packets] == [1, 2, 3]
    assert [seq_of(d) for d in datas] == [1, 2, 3]
    assert decode_data_packet(datas[0]).user.payload == b"x" * 10
    assert sender.next_sequence == 4
    assert sender.buffered_sequences == [1, 2, 3]
    assert sender.buffered_count == 3
    assert sender.buffered_bytes == sum(len(d) for d in datas)


def test_stamp_overwrites_a_previous_sequence() -> None:
    sender = ReliableSender()
    packet = user()
    packet.sequence = 77
    assert seq_of(sender.stamp(packet)) == 1


def test_oversized_packet_is_refused_without_consuming_a_sequence() -> None:
    sender = ReliableSender()
    packet = user(DATA_PACKET_MAX_BYTES)
    packet.sequence = 5
    with pytest.raises(LocalProtocolError, match="64000"):
        sender.stamp(packet)
    assert packet.sequence == 5
    assert sender.next_sequence == 1
    assert sender.buffered_count == 0
    assert seq_of(sender.stamp(user())) == 1


def user_of_encoded_size(total: int, sequence: int) -> pb.DataPacket:
    """A user packet that encodes to exactly ``total`` bytes once stamped with ``sequence``.

    It carries its own nonce, which :meth:`ReliableSender.stamp` keeps, so its size is exact.
    """
    for size in range(max(total - 40, 0), total):
        packet = user(size)
        packet.user.nonce = bytes(range(16))
        packet.sequence = sequence
        if packet.ByteSize() == total:
            packet.sequence = 0
            return packet
    raise AssertionError(f"no packet of {total} bytes")


def test_largest_packet_fits_an_empty_minimal_buffer() -> None:
    sender = ReliableSender(max_buffer_bytes=DATA_PACKET_MAX_BYTES)
    data = sender.stamp(user_of_encoded_size(DATA_PACKET_MAX_BYTES, 1))
    assert len(data) == DATA_PACKET_MAX_BYTES
    assert sender.buffered_bytes == DATA_PACKET_MAX_BYTES


def test_full_buffer_refuses_and_recovers_after_trim() -> None:
    sender = ReliableSender(max_buffer_bytes=DATA_PACKET_MAX_BYTES)
    first = sender.stamp(user(30_000))
    second = sender.stamp(user(30_000))
    room = DATA_PACKET_MAX_BYTES - len(first) - len(second)
    packet = user(room)  # its encoding is larger than the room left
    with pytest.raises(ResendBufferFullError) as info:
        sender.stamp(packet)
    err = info.value
    assert isinstance(err, LocalProtocolError)
    assert err.buffered_bytes == len(first) + len(second)
    assert err.max_bytes == DATA_PACKET_MAX_BYTES
    assert err.size > room
    assert packet.sequence == 0
    assert sender.next_sequence == 3
    # The first packet left the channel's queue: room for the refused one.
    assert sender.on_buffered_amount(len(second)) == 1
    assert seq_of(sender.stamp(packet)) == 3


def test_exactly_full_buffer_is_accepted_one_byte_more_is_not() -> None:
    sender = ReliableSender(max_buffer_bytes=DATA_PACKET_MAX_BYTES)
    first = sender.stamp(user(30_000))
    rest = DATA_PACKET_MAX_BYTES - len(first)
    too_big = user_of_encoded_size(rest + 1, 2)
    with pytest.raises(ResendBufferFullError):
        sender.stamp(too_big)
    data = sender.stamp(user_of_encoded_size(rest, 2))
    assert sender.buffered_bytes == DATA_PACKET_MAX_BYTES == len(first) + len(data)
    with pytest.raises(ResendBufferFullError):
        sender.stamp(pb.DataPacket())


@pytest.mark.parametrize("bad", [DATA_PACKET_MAX_BYTES - 1, 0, -1, True, 1.5e6, "1000000"])
def test_bad_max_buffer_bytes(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_buffer_bytes"):
        ReliableSender(max_buffer_bytes=bad)  # type: ignore[arg-type]


def test_sequence_space_exhaustion() -> None:
    sender = ReliableSender()
    sender._next_sequence = SEQUENCE_MAX  # a shortcut past 4 billion stamps
    assert seq_of(sender.stamp(user())) == SEQUENCE_MAX
    packet = user()
    with pytest.raises(LocalProtocolError, match="exhausted"):
        sender.stamp(packet)
    assert packet.sequence == 0
    sender.reset()
    assert seq_of(sender.stamp(user())) == 1


def test_trim_drops_only_packets_whose_bytes_all_left() -> None:
    sender = ReliableSender()
    a, b, c = stamped(sender, 3)
    size = len(a)
    assert len(b) == len(c) == size
    total = 3 * size
    # Everything still queued, or part of the oldest still queued: nothing goes.
    assert sender.on_buffered_amount(total) == 0
    assert sender.on_buffered_amount(2 * size + 1) == 0
    assert sender.buffered_sequences == [1, 2, 3]
    # Exactly the oldest has left.
    assert sender.on_buffered_amount(2 * size) == 1
    assert sender.buffered_sequences == [2, 3]
    # One byte of the last one is still queued.
    assert sender.on_buffered_amount(1) == 1
    assert sender.buffered_sequences == [3]
    assert sender.on_buffered_amount(0) == 1
    assert sender.buffered_sequences == []
    assert sender.buffered_bytes == 0
    assert sender.on_buffered_amount(0) == 0


def test_trim_with_more_buffered_than_tracked_keeps_everything() -> None:
    sender = ReliableSender()
    stamped(sender, 2)
    assert sender.on_buffered_amount(10**9) == 0
    assert sender.buffered_count == 2


def test_negative_buffered_amount_is_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        ReliableSender().on_buffered_amount(-1)


def test_resume_drops_acknowledged_and_returns_rest_in_order() -> None:
    sender = ReliableSender()
    datas = stamped(sender, 5)
    assert sender.resume(2) == datas[2:]
    assert sender.buffered_sequences == [3, 4, 5]
    assert sender.lost_packets == 0
    assert sender.next_sequence == 6  # the counter survives a resume


def test_resume_with_nothing_acknowledged_returns_everything() -> None:
    sender = ReliableSender()
    datas = stamped(sender, 3)
    assert sender.resume(0) == datas


def test_resume_beyond_newest_empties_the_buffer() -> None:
    sender = ReliableSender()
    stamped(sender, 3)
    assert sender.resume(10) == []
    assert sender.buffered_count == 0
    assert sender.buffered_bytes == 0
    assert sender.lost_packets == 0


def test_resume_counts_trimmed_packets_the_server_never_got() -> None:
    sender = ReliableSender()
    datas = stamped(sender, 5)
    sender.on_buffered_amount(2 * len(datas[0]))  # 1..3 left the queue
    assert sender.buffered_sequences == [4, 5]
    assert sender.resume(1) == datas[3:]  # 2 and 3 were lost in flight
    assert sender.lost_packets == 2


def test_suspend_defers_and_resume_returns_deferred_too() -> None:
    sender = ReliableSender()
    before = stamped(sender, 2)
    sender.suspend()
    sender.suspend()  # idempotent
    assert sender.suspended
    during = stamped(sender, 2)
    # The old channel's queue says nothing while suspended.
    assert sender.on_buffered_amount(0) == 0
    assert sender.buffered_sequences == [1, 2, 3, 4]
    assert sender.resume(1) == before[1:] + during
    assert not sender.suspended
    # Now everything is on the new channel: trimming works again.
    assert sender.on_buffered_amount(0) == 3
    assert sender.lost_packets == 0


def test_after_resume_trim_counts_the_resent_bytes() -> None:
    sender = ReliableSender()
    datas = stamped(sender, 3)
    sender.suspend()
    resent = sender.resume(1)
    assert resent == datas[1:]
    new = sender.stamp(user())
    # The new channel queued 2, 3 and 4; only the last is still queued.
    assert sender.on_buffered_amount(len(new)) == 2
    assert sender.buffered_sequences == [4]


def test_resume_without_suspend() -> None:
    sender = ReliableSender()
    datas = stamped(sender, 2)
    assert sender.resume(1) == datas[1:]
    assert not sender.suspended


def test_reset_starts_a_new_session() -> None:
    sender = ReliableSender()
    stamped(sender, 3)
    sender.suspend()
    sender.reset()
    assert sender.next_sequence == 1
    assert sender.buffered_count == 0
    assert sender.buffered_bytes == 0
    assert not sender.suspended
    assert seq_of(sender.stamp(user())) == 1
    assert sender.max_buffer_bytes == DEFAULT_RESEND_BUFFER_MAX_BYTES


def payloads(packets: list[bytes]) -> list[bytes]:
    return [decode_data_packet(data).user.payload for data in packets]


def test_restart_keeps_what_the_old_channel_never_transmitted_renumbered() -> None:
    sender = ReliableSender()
    sent = [
        sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=bytes([i]) * 10))) for i in range(4)
    ]
    sender.on_buffered_amount(sum(len(d) for d in sent))  # all four still queued: nothing trimmed
    sender.suspend()
    later = sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=b"L" * 10)))  # never handed
    # The closed old channel had transmitted the first two; the last two never left its queue.
    dropped = sender.restart(len(sent[2]) + len(sent[3]))
    assert dropped == sender.abandoned_packets == 2
    assert sender.suspended
    assert sender.buffered_sequences == [1, 2, 3]
    assert sender.next_sequence == 4
    again = sender.resume(0)
    assert [seq_of(d) for d in again] == [1, 2, 3]
    assert payloads(again) == [b"\x02" * 10, b"\x03" * 10, payloads([later])[0]]
    assert not sender.suspended
    assert seq_of(sender.stamp(user())) == 4


def test_restart_with_nothing_queued_keeps_only_the_unsent() -> None:
    sender = ReliableSender()
    stamped(sender, 3)
    sender.suspend()
    stamped(sender, 2)
    assert sender.restart(0) == 3
    assert [seq_of(d) for d in sender.resume(0)] == [1, 2]


def test_restart_after_a_resume_counts_the_resent_as_handed() -> None:
    sender = ReliableSender()
    stamped(sender, 2)
    sender.suspend()
    stamped(sender, 1)
    sender.resume(0)  # all three handed to the new channel
    sender.suspend()
    assert sender.restart(0) == 3
    assert sender.buffered_count == 0


def test_restart_keeps_a_packet_partly_undelivered() -> None:
    # SCTP acknowledged the first fragments of packet 2 only: the server never had all of it.
    sender = ReliableSender()
    sent = stamped(sender, 3, size=3000)
    sender.suspend()
    assert sender.restart(len(sent[2]) + 1) == 1
    assert sender.buffered_count == 2
    assert payloads(sender.resume(0)) == payloads(sent[1:])


def test_restart_with_more_undelivered_than_buffered_keeps_everything() -> None:
    sender = ReliableSender()
    stamped(sender, 2)
    sender.suspend()
    assert sender.restart(10**6) == 0
    assert [seq_of(d) for d in sender.resume(0)] == [1, 2]


def test_withdraw_gives_the_newest_sequence_back_and_is_never_resent() -> None:
    sender = ReliableSender()
    kept = sender.stamp(user())
    failed = sender.stamp(user())
    sender.withdraw(seq_of(failed))
    assert sender.buffered_sequences == [1]
    assert sender.buffered_bytes == len(kept)
    assert sender.next_sequence == 2
    # Not counted as handed: a full reconnect that thinks nothing arrived keeps only packet 1.
    sender.suspend()
    assert sender.restart(10**6) == 0
    assert payloads(sender.resume(0)) == payloads([kept])


def test_withdraw_only_the_newest() -> None:
    sender = ReliableSender()
    stamped(sender, 2)
    with pytest.raises(LocalProtocolError, match="newest"):
        sender.withdraw(1)
    with pytest.raises(LocalProtocolError, match="newest"):
        ReliableSender().withdraw(1)
    assert sender.buffered_sequences == [1, 2]


def test_restart_rejects_negative_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        ReliableSender().restart(-1)


# -------------------------------------------------------------------------------- receiver


def rx(sid: str, seq: int) -> pb.DataPacket:
    return pb.DataPacket(participant_sid=sid, sequence=seq, user=pb.UserPacket(payload=b"p"))


def test_receiver_drops_duplicates_and_older() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", 1), T0)
    assert not r.accept(rx("PA_a", 1), T0)
    assert r.accept(rx("PA_a", 3), T0)  # gaps are fine: the server may have dropped some
    assert not r.accept(rx("PA_a", 2), T0)
    assert r.accept(rx("PA_a", 4), T0)
    assert r.duplicates_dropped == 2
    assert r.last_sequence("PA_a", T0) == 4


def test_receiver_first_packet_of_a_sender_is_accepted_whatever_its_sequence() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", 500), T0)
    assert not r.accept(rx("PA_a", 1), T0)


def test_receiver_senders_are_independent() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", 5), T0)
    assert r.accept(rx("PA_b", 1), T0)
    assert r.accept(rx("PA_b", 2), T0)
    assert not r.accept(rx("PA_a", 5), T0)


def test_receiver_unsequenced_or_anonymous_always_accepted() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", 0), T0)
    assert r.accept(rx("PA_a", 0), T0)
    assert r.accept(rx("", 3), T0)
    assert r.accept(rx("", 3), T0)
    assert r.accept(pb.DataPacket(), T0)
    assert r.receive_states() == []
    assert r.get_timer() is None
    assert r.duplicates_dropped == 0


def test_receiver_state_expires_after_ttl_even_without_timer() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", 5), T0)
    assert not r.accept(rx("PA_a", 5), T0 + 29.999)
    assert r.last_sequence("PA_a", T0 + 29.999) == 5
    assert r.last_sequence("PA_a", T0 + 30) is None
    assert r.accept(rx("PA_a", 5), T0 + 30)


def test_receiver_duplicates_do_not_extend_ttl_but_accepts_do() -> None:
    r = ReliableReceiver()
    r.accept(rx("PA_a", 5), T0)
    assert not r.accept(rx("PA_a", 4), T0 + 20)
    assert r.get_timer() == T0 + 30
    assert r.accept(rx("PA_a", 6), T0 + 25)
    assert r.get_timer() == T0 + 55
    assert not r.accept(rx("PA_a", 6), T0 + 54)


def test_receiver_timer_prunes_in_expiry_order() -> None:
    r = ReliableReceiver(state_ttl_s=10)
    r.accept(rx("PA_a", 1), T0)
    r.accept(rx("PA_b", 1), T0 + 1)
    r.accept(rx("PA_c", 1), T0 + 2)
    r.accept(rx("PA_a", 2), T0 + 3)  # a is refreshed to T0 + 13
    assert r.get_timer() == T0 + 11
    r.handle_timer(T0 + 10.5)
    assert {s.publisher_sid for s in r.receive_states()} == {"PA_a", "PA_b", "PA_c"}
    r.handle_timer(T0 + 11)
    assert [s.publisher_sid for s in r.receive_states()] == ["PA_c", "PA_a"]
    assert r.get_timer() == T0 + 12
    r.handle_timer(T0 + 100)
    assert r.receive_states() == []
    assert r.get_timer() is None


def test_receiver_memory_bounded_without_a_timer() -> None:
    # A long-lived room: 3,000 senders come and go, one a second, and nobody runs the timer.
    r = ReliableReceiver(state_ttl_s=30)
    for i in range(3000):
        assert r.accept(rx(f"PA_{i}", 1), T0 + i)
    held = r.receive_states()
    assert len(held) == 30  # only the senders heard from within the TTL
    assert held[0].publisher_sid == "PA_2970"
    # An expired sender is new again; a live one is still deduplicated.
    assert r.accept(rx("PA_0", 1), T0 + 3000)
    assert not r.accept(rx("PA_2999", 1), T0 + 3000)


def test_receive_states_for_sync_state() -> None:
    r = ReliableReceiver()
    r.accept(rx("PA_a", 7), T0)
    r.accept(rx("PA_b", 3), T0 + 10)
    states = r.receive_states()
    assert states == [
        pb.DataChannelReceiveState(publisher_sid="PA_a", last_seq=7),
        pb.DataChannelReceiveState(publisher_sid="PA_b", last_seq=3),
    ]
    assert r.receive_states(T0 + 35) == [
        pb.DataChannelReceiveState(publisher_sid="PA_b", last_seq=3)
    ]
    sync = pb.SyncState(datachannel_receive_states=states)
    assert len(sync.datachannel_receive_states) == 2


def test_receiver_reset_forgets_everything() -> None:
    r = ReliableReceiver()
    r.accept(rx("PA_a", 7), T0)
    r.reset()
    assert r.receive_states() == []
    assert r.accept(rx("PA_a", 7), T0)


def test_receiver_max_sequence() -> None:
    r = ReliableReceiver()
    assert r.accept(rx("PA_a", SEQUENCE_MAX), T0)
    assert not r.accept(rx("PA_a", SEQUENCE_MAX), T0)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "30"])
def test_receiver_bad_ttl(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="state_ttl_s"):
        ReliableReceiver(state_ttl_s=bad)  # type: ignore[arg-type]
