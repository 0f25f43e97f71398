"""Reliable sequencing properties, checked against a simulated channel and a model receiver.

Sender: random stamp / drain / report / suspend / resume / reset sequences run against a FIFO model
of the channel's send queue. After every step the sender holds exactly the packets that are not
acknowledged by a resume and not reported (by ``bufferedAmount``) as fully out of the queue; so
every packet with a byte still queued is held (nothing is trimmed early), and :meth:`resume`
returns exactly the unacknowledged suffix, in order.

Receiver: for any arrival order of (sid, sequence) the receiver never accepts the same pair twice,
accepts every packet whose sequence is above everything seen from its sender, and with a clock it
agrees with a small model of the 30 s state TTL.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.core.reliable import ReliableReceiver, ReliableSender, ResendBufferFullError
from lkproto.wire import DATA_PACKET_MAX_BYTES, decode_data_packet, pb

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("stamp"), st.integers(0, 20_000)),
        st.tuples(st.just("drain"), st.integers(0, 50_000)),
        st.tuples(st.just("report"), st.integers(0, 0)),
        st.tuples(st.just("suspend"), st.integers(0, 0)),
        # resume's argument: offset from the newest sequence (negative = some unacknowledged).
        st.tuples(st.just("resume"), st.integers(-12, 3)),
        st.tuples(st.just("reset"), st.integers(0, 0)),
    ),
    max_size=60,
)


@dataclass
class Model:
    next_seq: int = 1
    held: dict[int, bytes] = field(default_factory=dict)  # seq -> encoded, in order
    queue: deque[list[int]] = field(default_factory=deque)  # [seq, bytes still queued]
    drained: set[int] = field(default_factory=set)  # fully out of the current queue
    suspended: bool = False
    lost: int = 0

    def queued_bytes(self) -> int:
        return sum(remaining for _, remaining in self.queue)


@SETTINGS
@given(ops=_ops, max_bytes=st.sampled_from([DATA_PACKET_MAX_BYTES, 100_000, 10**7]))
def test_sender_holds_exactly_the_unacknowledged_unsent(
    ops: list[tuple[str, int]], max_bytes: int
) -> None:
    sender = ReliableSender(max_buffer_bytes=max_bytes)
    m = Model()
    for op, arg in ops:
        if op == "stamp":
            # A nonce of its own (stamp keeps it), so the model knows the encoded size.
            packet = pb.DataPacket(user=pb.UserPacket(payload=b"u" * arg, nonce=bytes(16)))
            packet.sequence = m.next_seq
            size = packet.ByteSize()
            packet.sequence = 0
            if sum(len(d) for d in m.held.values()) + size > max_bytes:
                try:
                    sender.stamp(packet)
                except ResendBufferFullError:
                    pass
                else:
                    raise AssertionError("stamp over the bound was accepted")
                assert packet.sequence == 0
            else:
                data = sender.stamp(packet)
                assert len(data) == size
                assert decode_data_packet(data).sequence == m.next_seq
                m.held[m.next_seq] = data
                if not m.suspended:
                    m.queue.append([m.next_seq, size])
                m.next_seq += 1
        elif op == "drain":
            left = arg
            while left and m.queue:
                head = m.queue[0]
                take = min(left, head[1])
                head[1] -= take
                left -= take
                if head[1] == 0:
                    m.drained.add(head[0])
                    m.queue.popleft()
        elif op == "report":
            amount = m.queued_bytes()
            dropped = sender.on_buffered_amount(amount)
            if m.suspended:
                assert dropped == 0
            else:
                gone = [s for s in m.held if s in m.drained]
                assert dropped == len(gone)
                for s in gone:
                    del m.held[s]
        elif op == "suspend":
            sender.suspend()
            m.suspended = True
            m.queue.clear()  # the old channel: its queue is meaningless now
            m.drained.clear()
        elif op == "resume":
            last = max(m.next_seq - 1 + arg, 0)
            expected = [d for s, d in m.held.items() if s > last]
            unacked = max(m.next_seq - 1 - last, 0)
            m.lost += unacked - len(expected)
            assert sender.resume(last) == expected
            m.held = {s: d for s, d in m.held.items() if s > last}
            m.suspended = False
            m.queue = deque([s, len(d)] for s, d in m.held.items())
            m.drained.clear()
        else:
            sender.reset()
            m.next_seq = 1
            m.held.clear()
            m.queue.clear()
            m.drained.clear()
            m.suspended = False
        # Invariants after every step.
        assert sender.buffered_sequences == list(m.held)
        assert sender.buffered_bytes == sum(len(d) for d in m.held.values())
        assert sender.buffered_bytes <= max_bytes
        assert sender.next_sequence == m.next_seq
        assert sender.suspended == m.suspended
        assert sender.lost_packets == m.lost
        # Contiguous and ending at the newest stamp.
        if m.held:
            assert list(m.held) == list(range(min(m.held), m.next_seq))
        # Safety: nothing with a byte still in the channel's queue was trimmed.
        assert {s for s, remaining in m.queue if remaining} <= set(m.held)


_arrivals = st.lists(
    st.tuples(st.sampled_from(["PA_a", "PA_b", "PA_c", ""]), st.integers(0, 12)), max_size=80
)


@SETTINGS
@given(arrivals=_arrivals)
def test_receiver_never_accepts_twice_and_accepts_every_new_high(
    arrivals: list[tuple[str, int]],
) -> None:
    receiver = ReliableReceiver()
    accepted: set[tuple[str, int]] = set()
    high: dict[str, int] = {}
    for sid, seq in arrivals:
        ok = receiver.accept(pb.DataPacket(participant_sid=sid, sequence=seq), 0.0)
        if seq == 0 or not sid:
            assert ok
            continue
        if seq > high.get(sid, 0):
            assert ok
        if ok:
            assert (sid, seq) not in accepted
            accepted.add((sid, seq))
            high[sid] = seq
        else:
            assert seq <= high[sid]
    assert sorted((s.publisher_sid, s.last_seq) for s in receiver.receive_states()) == sorted(
        high.items()
    )


@SETTINGS
@given(
    arrivals=st.lists(
        st.tuples(
            st.sampled_from(["PA_a", "PA_b"]),
            st.integers(1, 6),
            st.floats(0, 20, allow_nan=False),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_receiver_agrees_with_a_ttl_model(
    arrivals: list[tuple[str, int, float, bool]],
) -> None:
    ttl = 30.0
    receiver = ReliableReceiver(state_ttl_s=ttl)
    model: dict[str, tuple[int, float]] = {}
    now = 0.0
    for sid, seq, dt, fire_timer in arrivals:
        now += dt
        if fire_timer:
            timer = receiver.get_timer()
            if timer is not None and timer <= now:
                receiver.handle_timer(now)
                after = receiver.get_timer()
                assert after is None or after > now
        state = model.get(sid)
        live = state is not None and now < state[1] + ttl
        expected = not live or seq > state[0]  # type: ignore[index]
        assert receiver.accept(pb.DataPacket(participant_sid=sid, sequence=seq), now) == expected
        if expected:
            model[sid] = (seq, now)
        seq_now, at = model.get(sid, (None, 0.0))
        assert receiver.last_sequence(sid, now) == (seq_now if now < at + ttl else None)
    live_states = sorted((sid, seq) for sid, (seq, at) in model.items() if now < at + ttl)
    assert (
        sorted((s.publisher_sid, s.last_seq) for s in receiver.receive_states(now)) == live_states
    )
