"""User-packet nonce properties: each nonce delivered once, senders independent, memory bounded.

The stream a receiver sees after senders' full reconnects: originals and their resends (same
identity and nonce, another SID and sequence) in any interleaving. The filter is checked against
a small model that never prunes, so pruning (by :meth:`accept` or the timer) cannot change a
result, and against the bounds it promises.
"""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.core.reliable import USER_NONCE_BYTES, ReliableSender, UserNonceFilter
from lkproto.wire import decode_data_packet, pb

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDENTITIES = ("alice", "bob", "carol")


def packet(identity: str, nonce: int, copy: int) -> pb.DataPacket:
    """Copy ``copy`` of a user packet: 0 is the original, others resends from later sessions."""
    return pb.DataPacket(
        participant_identity=identity,
        participant_sid=f"PA_{identity}_{copy}",
        sequence=nonce + 1,
        user=pb.UserPacket(payload=b"p", nonce=nonce.to_bytes(USER_NONCE_BYTES, "big")),
    )


@st.composite
def resend_streams(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """Originals of each sender, each repeated 0-2 times, in any interleaving."""
    arrivals = []
    for identity in IDENTITIES:
        for nonce in range(draw(st.integers(0, 12))):
            copies = draw(st.integers(1, 3))
            arrivals += [(identity, nonce, copy) for copy in range(copies)]
    return draw(st.permutations(arrivals))


@SETTINGS
@given(stream=resend_streams(), step=st.floats(0.0, 1.0))
def test_within_the_ttl_each_nonce_of_each_sender_is_delivered_exactly_once(
    stream: list[tuple[str, int, int]], step: float
) -> None:
    f = UserNonceFilter(ttl_s=120.0)
    delivered: list[tuple[str, int]] = []
    for i, (identity, nonce, copy) in enumerate(stream):
        if f.accept(packet(identity, nonce, copy), 1000.0 + i * step):
            delivered.append((identity, nonce))
    assert sorted(delivered) == sorted({(identity, nonce) for identity, nonce, _ in stream})
    assert f.duplicates_dropped == len(stream) - len(delivered)


class Model:
    """Per identity: nonce -> expiry in insertion order, never pruned; the count bound evicts."""

    def __init__(self, ttl: float, cap: int) -> None:
        self.ttl, self.cap = ttl, cap
        self.seen: dict[str, OrderedDict[int, float]] = {}

    def accept(self, identity: str, nonce: int, now: float) -> bool:
        seen = self.seen.setdefault(identity, OrderedDict())
        live = OrderedDict((k, e) for k, e in seen.items() if now < e)
        if nonce in live:
            return False
        live[nonce] = now + self.ttl
        while len(live) > self.cap:
            live.popitem(last=False)
        self.seen[identity] = live
        return True


_ops = st.lists(
    st.tuples(
        st.sampled_from(IDENTITIES),
        st.integers(0, 9),  # small nonce space: many repeats
        st.floats(0.0, 4.0),  # time step before this arrival
        st.booleans(),  # run the timer before it
    ),
    max_size=80,
)


@SETTINGS
@given(ops=_ops, ttl=st.sampled_from([1.0, 5.0, 30.0]), cap=st.integers(1, 6))
def test_agrees_with_a_model_that_never_prunes_and_stays_bounded(
    ops: list[tuple[str, int, float, bool]], ttl: float, cap: int
) -> None:
    f = UserNonceFilter(ttl_s=ttl, max_per_identity=cap)
    model = Model(ttl, cap)
    now = 1000.0
    for identity, nonce, dt, timer in ops:
        now += dt
        if timer:
            f.handle_timer(now)
            deadline = f.get_timer()
            assert deadline is None or deadline > now
        assert f.accept(packet(identity, nonce, 0), now) == model.accept(identity, nonce, now)
        # Memory: at most ``cap`` per identity, and only identities heard within the TTL.
        assert f.held <= cap * len(f.identities)
        assert set(f.identities) <= set(IDENTITIES)
    f.handle_timer(now + ttl)
    assert (f.held, f.identities, f.get_timer()) == (0, [], None)


@SETTINGS
@given(ops=_ops, cap=st.integers(1, 6))
def test_other_senders_never_change_what_one_sender_gets(
    ops: list[tuple[str, int, float, bool]], cap: int
) -> None:
    # Alice's packets get the same verdicts whether or not the others' are interleaved.
    mixed, alone = (
        UserNonceFilter(ttl_s=5.0, max_per_identity=cap),
        UserNonceFilter(ttl_s=5.0, max_per_identity=cap),
    )
    now = 1000.0
    for identity, nonce, dt, _ in ops:
        now += dt
        verdict = mixed.accept(packet(identity, nonce, 0), now)
        if identity == "alice":
            assert verdict == alone.accept(packet(identity, nonce, 0), now)


@SETTINGS
@given(
    payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=20),
    undelivered=st.integers(0, 2000),
)
def test_sender_and_filter_end_to_end_across_a_full_reconnect(
    payloads: list[bytes], undelivered: int
) -> None:
    # Whatever restart keeps, the receiver that got every original before the fault gets no
    # resent copy: each payload is delivered once.
    sender = ReliableSender()
    originals = [sender.stamp(pb.DataPacket(user=pb.UserPacket(payload=p))) for p in payloads]
    sender.suspend()
    sender.restart(undelivered)
    resent = sender.resume(0)
    f = UserNonceFilter()
    delivered = []
    for session, datas in (("PA_old", originals), ("PA_new", resent)):
        for data in datas:
            received = decode_data_packet(data)
            received.participant_identity, received.participant_sid = "alice", session
            if f.accept(received, 1000.0):
                delivered.append(received.user.payload)
    assert delivered == payloads
    assert f.duplicates_dropped == len(resent)
