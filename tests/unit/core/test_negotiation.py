"""Offer ids, merged renegotiations and answer matching (lkproto.core.negotiation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkproto.core.negotiation import (
    NEGOTIATION_TRANSITIONS,
    AnswerIgnored,
    AnyNegotiationEvent,
    NegotiationCompleted,
    NegotiationFailed,
    NegotiationState,
    Negotiator,
    OfferWanted,
)
from lkproto.errors import LocalProtocolError


def drain(n: Negotiator) -> list[AnyNegotiationEvent]:
    out = []
    while (ev := n.next_event()) is not None:
        out.append(ev)
    return out


def test_one_round_offer_ids_and_descriptions_kept_for_sync_state() -> None:
    n = Negotiator(answer_timeout_s=5)
    assert n.request(0.0) == 1
    assert drain(n) == [OfferWanted(round=1)]
    assert n.offer_created("o1", 0.0) == 1
    assert n.get_timer() == 5.0
    assert n.answer_received("a1", 1, 1.0)
    assert n.get_timer() is None
    n.answer_applied(1.0)
    assert drain(n) == [NegotiationCompleted(round=1, offer_id=1)]
    assert n.state is NegotiationState.IDLE
    assert n.last_local_offer is not None
    assert n.last_local_offer.sdp == "o1"
    assert n.last_remote_answer is not None
    assert n.last_remote_answer.id == 1
    assert n.request(2.0) == 2
    assert n.offer_created("o2", 2.0) == 2


def test_requests_during_a_round_merge_into_one_follow_up() -> None:
    n = Negotiator()
    first = n.request(0.0)
    n.offer_created("o1", 0.0)
    tickets = {n.request(0.1) for _ in range(5)}
    assert tickets == {first + 1}
    assert n.answer_received("a1", 1, 0.2)
    assert n.request(0.3) == first + 1  # still merged while applying
    drain(n)
    n.answer_applied(0.4)
    assert drain(n) == [NegotiationCompleted(round=1, offer_id=1), OfferWanted(round=2)]
    assert n.offer_created("o2", 0.5) == 2
    assert n.answer_received("a2", 2, 0.6)
    n.answer_applied(0.7)
    assert drain(n) == [NegotiationCompleted(round=2, offer_id=2)]
    assert n.state is NegotiationState.IDLE


def test_stale_and_unsolicited_answers_are_ignored_not_raised() -> None:
    n = Negotiator()
    assert not n.answer_received("x", 7, 0.0)
    n.request(0.0)
    n.offer_created("o1", 0.0)
    n.request(0.0)
    assert n.answer_received("a1", 1, 0.0)
    n.answer_applied(0.0)
    n.offer_created("o2", 0.0)
    assert not n.answer_received("late", 1, 0.0)  # answers offer 1, offer 2 is awaited
    events = drain(n)
    assert AnswerIgnored(answer_id=7, awaited_id=None) in events
    assert AnswerIgnored(answer_id=1, awaited_id=2) in events
    assert n.last_remote_answer is not None
    assert n.last_remote_answer.sdp == "a1"


def test_an_unnumbered_answer_answers_the_offer_awaited() -> None:
    # Servers before SessionDescription ids (v1.7.2) answer with id 0.
    n = Negotiator()
    assert not n.answer_received("early", 0, 0.0)  # nothing awaited: still ignored
    n.request(0.0)
    n.offer_created("o1", 0.0)
    assert n.answer_received("a1", 0, 0.1)
    n.answer_applied(0.2)
    assert drain(n) == [
        AnswerIgnored(answer_id=0, awaited_id=None),
        OfferWanted(round=1),
        NegotiationCompleted(round=1, offer_id=1),
    ]


def test_timeout_fails_the_round_and_its_follow_up() -> None:
    n = Negotiator(answer_timeout_s=2)
    n.request(0.0)
    n.offer_created("o1", 1.0)
    assert n.request(1.5) == 2
    n.handle_timer(2.9)
    assert n.state is NegotiationState.AWAITING_ANSWER
    n.handle_timer(3.0)
    events = drain(n)
    assert events[-1] == NegotiationFailed(
        round=2, reason="no answer to offer 1 within 2.0 s", timed_out=True
    )
    assert n.state.value == "idle"
    assert not n.answer_received("a1", 1, 4.0)
    assert n.request(5.0) == 3


def test_failure_while_offering_and_misuse() -> None:
    n = Negotiator(answer_timeout_s=None)
    n.failed("nothing in flight", 0.0)
    assert drain(n) == []
    with pytest.raises(LocalProtocolError):
        n.offer_created("o", 0.0)
    with pytest.raises(LocalProtocolError):
        n.answer_applied(0.0)
    n.request(0.0)
    n.offer_created("o1", 0.0)
    assert n.get_timer() is None
    with pytest.raises(LocalProtocolError):
        n.offer_created("o", 0.0)
    n.failed("boom", 0.0)
    assert drain(n)[-1] == NegotiationFailed(round=1, reason="boom", timed_out=False)
    with pytest.raises(LocalProtocolError):
        Negotiator(answer_timeout_s=0)


def test_remote_offer_and_our_answer_are_kept() -> None:
    n = Negotiator()
    n.remote_offer_received("ro", 4)
    n.local_answer_sent("la", 4)
    assert n.last_remote_offer is not None
    assert n.last_remote_offer.id == 4
    assert n.last_local_answer is not None
    assert n.last_local_answer.sdp == "la"


_ACTIONS = st.lists(
    st.sampled_from(["request", "offer", "answer", "stale", "applied", "fail", "tick"]),
    max_size=60,
)


@given(_ACTIONS)
def test_any_input_sequence_moves_legally_and_serves_every_ticket(actions: list[str]) -> None:
    n = Negotiator(answer_timeout_s=1)
    now = 0.0
    tickets: list[int] = []
    served = 0
    offer_ids: list[int] = []
    for action in actions:
        now += 0.4
        before = n.state
        try:
            if action == "request":
                tickets.append(n.request(now))
            elif action == "offer":
                offer_ids.append(n.offer_created("o", now))
            elif action == "answer":
                n.answer_received("a", n.offer_id, now)
            elif action == "stale":
                assert not n.answer_received("a", n.offer_id + 1, now)
            elif action == "applied":
                n.answer_applied(now)
            elif action == "fail":
                n.failed("x", now)
            else:
                n.handle_timer(now)
        except LocalProtocolError:
            assert n.state is before
        after = n.state
        assert after is before or (before, after) in {
            (k[0], v) for k, v in NEGOTIATION_TRANSITIONS.items()
        }
        for ev in drain(n):
            if isinstance(ev, NegotiationCompleted | NegotiationFailed):
                assert ev.round >= served
                served = ev.round
        if n.state is NegotiationState.IDLE:
            # Nothing in flight: every ticket handed out is answered.
            assert all(t <= served for t in tickets)
    assert offer_ids == sorted(set(offer_ids))
    assert offer_ids == list(range(1, len(offer_ids) + 1))
