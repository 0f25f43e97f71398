"""Offer/answer bookkeeping for the peer connection we offer on, as a sans-I/O machine.

Theory of operation
-------------------

On ``/rtc/v1`` the client always offers on its single peer connection, on ``/rtc`` (v0) it offers
on its publisher (PROTOCOL-MAP §2 Modes). Each offer carries an id that increments per offer and
the server's answer echoes it (PROTOCOL-MAP §2 SessionDescription / offer ids). A
:class:`Negotiator` keeps that bookkeeping; creating and applying SDP is left to the driver
(aiortc does it asynchronously), which reports back with the inputs below.

A *round* is one offer and its answer. The driver asks for a round with :meth:`request`, which
returns a *ticket*: the number of the round whose completion covers the request. A request made
while a round is in flight (its offer is being created, sent, or its answer applied) cannot be
served by that round, since the offer was already cut; it is merged into **one** follow-up round,
however many requests arrive meanwhile (JS ``PCTransport.negotiate`` does the same with its
``renegotiate`` flag). Rounds move through four states::

    IDLE ──request──> OFFERING ──offer_created──> AWAITING_ANSWER ──matching answer──> APPLYING
      ^                  ^                              │                                │
      │                  └──── answer_applied, a follow-up was requested ────────────────┤
      └──────────── answer_applied (none requested) / failed / answer timeout ───────────┘

Every state change goes through :data:`NEGOTIATION_TRANSITIONS`. Outside the table:

* ``request`` while busy is a self-loop that only sets the follow-up flag;
* an answer that does not match the offer awaited (another id, or none awaited) is remote input:
  it is dropped and reported by :class:`AnswerIgnored`, never raised. An answer with id 0 answers
  the offer awaited: servers before SessionDescription ids (seen: v1.7.2) leave it unset, and
  livekit-client only drops an answer whose id is non-zero and differs
  (``JS:src/room/PCTransport.ts (setRemoteDescription)``);
* ``offer_created`` / ``answer_applied`` in the wrong state are driver misuse and raise
  :class:`~lkproto.errors.LocalProtocolError`, changing nothing;
* ``failed`` in IDLE does nothing.

Outputs are pulled with :meth:`Negotiator.next_event`: :class:`OfferWanted` (create an offer now),
:class:`NegotiationCompleted` (every ticket up to ``round`` is served) and
:class:`NegotiationFailed` (every ticket up to ``round`` failed). The machine never reads a
clock: the answer deadline (:data:`NEGOTIATION_TIMEOUT_S` after the offer was sent) is reported by
:meth:`~Negotiator.get_timer` and fired by :meth:`~Negotiator.handle_timer`.

The last offer we sent and the answer we applied, and the last server offer with our answer
(v0 subscriber), are kept for ``SyncState`` on a resume (PROTOCOL-MAP §10 Resume step 3).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from lkproto.core.durations import optional_positive_seconds
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "NEGOTIATION_TIMEOUT_S",
    "NEGOTIATION_TRANSITIONS",
    "AnswerIgnored",
    "AnyNegotiationEvent",
    "NegotiationCompleted",
    "NegotiationEvent",
    "NegotiationFailed",
    "NegotiationInput",
    "NegotiationState",
    "Negotiator",
    "OfferWanted",
]

# PROTOCOL-MAP §2 ICE/DTLS details: the server gives a negotiation 15 s; JS RTCEngine.negotiate
# rejects after its peerConnectionTimeout (15 s) as well.
NEGOTIATION_TIMEOUT_S: Final = 15.0


class NegotiationState(enum.Enum):
    """Where the current round is."""

    IDLE = "idle"
    """No round in flight."""
    OFFERING = "offering"
    """The driver is creating the offer."""
    AWAITING_ANSWER = "awaiting_answer"
    """The offer was sent; waiting for the answer with its id."""
    APPLYING = "applying"
    """The matching answer arrived; the driver is applying it."""


class NegotiationInput(enum.Enum):
    """Inputs that change the state."""

    REQUEST = "request"
    OFFER_CREATED = "offer_created"
    ANSWER = "answer"
    """A server answer with the id of the offer awaited."""
    ANSWER_APPLIED = "answer_applied"
    FOLLOW_UP = "follow_up"
    """``answer_applied`` while a follow-up round was requested."""
    FAILED = "failed"
    TIMEOUT = "timeout"


_S = NegotiationState
_I = NegotiationInput

#: Every legal state change. ``request`` while busy is a self-loop handled beside the table.
NEGOTIATION_TRANSITIONS: Final[
    Mapping[tuple[NegotiationState, NegotiationInput], NegotiationState]
] = {
    (_S.IDLE, _I.REQUEST): _S.OFFERING,
    (_S.OFFERING, _I.OFFER_CREATED): _S.AWAITING_ANSWER,
    (_S.OFFERING, _I.FAILED): _S.IDLE,
    (_S.AWAITING_ANSWER, _I.ANSWER): _S.APPLYING,
    (_S.AWAITING_ANSWER, _I.FAILED): _S.IDLE,
    (_S.AWAITING_ANSWER, _I.TIMEOUT): _S.IDLE,
    (_S.APPLYING, _I.ANSWER_APPLIED): _S.IDLE,
    (_S.APPLYING, _I.FOLLOW_UP): _S.OFFERING,
    (_S.APPLYING, _I.FAILED): _S.IDLE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationEvent:
    """Base class of what a :class:`Negotiator` reports."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferWanted(NegotiationEvent):
    """Create an offer now and report it with :meth:`Negotiator.offer_created`.

    Attributes:
        round: the round the offer belongs to.
    """

    round: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationCompleted(NegotiationEvent):
    """Round ``round`` is answered and applied: every ticket ``<= round`` is served.

    Attributes:
        round: the round that completed.
        offer_id: the id of its offer.
    """

    round: int
    offer_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationFailed(NegotiationEvent):
    """Every ticket ``<= round`` failed (the round in flight and a merged follow-up).

    Attributes:
        round: the highest ticket that failed.
        reason: what went wrong, for the error shown to callers.
        timed_out: no answer arrived within the deadline.
    """

    round: int
    reason: str
    timed_out: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerIgnored(NegotiationEvent):
    """An answer that matches no offer awaited was dropped (stale id or unsolicited).

    Attributes:
        answer_id: the id it carried.
        awaited_id: the offer id awaited, or None.
    """

    answer_id: int
    awaited_id: int | None


AnyNegotiationEvent: TypeAlias = (
    OfferWanted | NegotiationCompleted | NegotiationFailed | AnswerIgnored
)
"""Every event :class:`Negotiator` hands out; match it exhaustively (``assert_never``)."""


class Negotiator:
    """Offer ids, merged renegotiations and the descriptions kept for ``SyncState``.

    Args:
        answer_timeout_s: how long an offer may wait for its answer; None: no deadline.

    Raises:
        LocalProtocolError: ``answer_timeout_s`` is not a positive number of seconds.
    """

    def __init__(self, *, answer_timeout_s: float | None = NEGOTIATION_TIMEOUT_S) -> None:
        self._answer_timeout_s = optional_positive_seconds("answer_timeout_s", answer_timeout_s)
        self._state = NegotiationState.IDLE
        self._round = 0
        self._follow_up = False
        self._offer_id = 0
        self._deadline: float | None = None
        self._events: deque[AnyNegotiationEvent] = deque()
        self.last_local_offer: pb.SessionDescription | None = None
        """The last offer we sent (PROTOCOL-MAP §10: ``SyncState.offer`` on single PC)."""
        self.last_remote_answer: pb.SessionDescription | None = None
        """The last answer matched to our offer (``SyncState.answer`` on single PC)."""
        self.last_remote_offer: pb.SessionDescription | None = None
        """The last server offer (v0 subscriber)."""
        self.last_local_answer: pb.SessionDescription | None = None
        """Our answer to :attr:`last_remote_offer`."""

    @property
    def state(self) -> NegotiationState:
        """Where the current round is."""
        return self._state

    @property
    def offer_id(self) -> int:
        """The id of the last offer created (0 before the first)."""
        return self._offer_id

    @property
    def round(self) -> int:
        """The number of the round in flight, or of the last one when IDLE."""
        return self._round

    # ---------------------------------------------------------------- inputs

    def request(self, now: float) -> int:
        """Ask for a round; returns the ticket whose completion or failure answers the request.

        Args:
            now: current monotonic time in seconds (unused; inputs carry the clock uniformly).
        """
        del now
        if self._state is NegotiationState.IDLE:
            self._start_round(NEGOTIATION_TRANSITIONS[(self._state, NegotiationInput.REQUEST)])
            return self._round
        # The offer in flight was cut before this request: one follow-up round serves it.
        self._follow_up = True
        return self._round + 1

    def offer_created(self, sdp: str, now: float) -> int:
        """The driver created the offer of the current round; returns the id to send it with.

        Raises:
            LocalProtocolError: no offer was wanted (state is not OFFERING).
        """
        target = self._lookup(NegotiationInput.OFFER_CREATED)
        self._offer_id += 1
        self.last_local_offer = pb.SessionDescription(type="offer", sdp=sdp, id=self._offer_id)
        self._state = target
        if self._answer_timeout_s is not None:
            self._deadline = now + self._answer_timeout_s
        return self._offer_id

    def answer_received(self, sdp: str, answer_id: int, now: float) -> bool:
        """A server answer arrived. True when it answers the offer awaited (its id, or 0 from a
        server that does not number them): apply it, then call :meth:`answer_applied`.
        Otherwise it is dropped with an :class:`AnswerIgnored` event."""
        del now
        awaiting = self._state is NegotiationState.AWAITING_ANSWER
        if not awaiting or answer_id not in (0, self._offer_id):
            self._events.append(
                AnswerIgnored(answer_id=answer_id, awaited_id=self._offer_id if awaiting else None)
            )
            return False
        self.last_remote_answer = pb.SessionDescription(type="answer", sdp=sdp, id=answer_id)
        self._state = NEGOTIATION_TRANSITIONS[(self._state, NegotiationInput.ANSWER)]
        self._deadline = None
        return True

    def answer_applied(self, now: float) -> None:
        """The matching answer is applied: the round is complete (a follow-up may start).

        Raises:
            LocalProtocolError: no answer was being applied.
        """
        del now
        follow_up = self._follow_up
        target = self._lookup(
            NegotiationInput.FOLLOW_UP if follow_up else NegotiationInput.ANSWER_APPLIED
        )
        self._events.append(NegotiationCompleted(round=self._round, offer_id=self._offer_id))
        self._state = NegotiationState.IDLE
        if follow_up:
            self._start_round(target)

    def failed(self, reason: str, now: float) -> None:
        """Creating or applying SDP failed: the round and any merged follow-up fail."""
        del now
        if self._state is NegotiationState.IDLE:
            return
        self._fail(NEGOTIATION_TRANSITIONS[(self._state, NegotiationInput.FAILED)], reason, False)

    def remote_offer_received(self, sdp: str, offer_id: int) -> None:
        """Remember a server offer (v0 subscriber) for ``SyncState``."""
        self.last_remote_offer = pb.SessionDescription(type="offer", sdp=sdp, id=offer_id)

    def local_answer_sent(self, sdp: str, offer_id: int) -> None:
        """Remember our answer to a server offer for ``SyncState``."""
        self.last_local_answer = pb.SessionDescription(type="answer", sdp=sdp, id=offer_id)

    def handle_timer(self, now: float) -> None:
        """Fail the round whose answer is overdue at ``now``."""
        if self._deadline is not None and now >= self._deadline:
            target = NEGOTIATION_TRANSITIONS[(self._state, NegotiationInput.TIMEOUT)]
            what = f"no answer to offer {self._offer_id} within {self._answer_timeout_s} s"
            self._fail(target, what, True)

    def get_timer(self) -> float | None:
        """The answer deadline of the offer awaited, or None."""
        return self._deadline

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyNegotiationEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- internals

    def _lookup(self, event: NegotiationInput) -> NegotiationState:
        target = NEGOTIATION_TRANSITIONS.get((self._state, event))
        if target is None:
            raise LocalProtocolError(
                f"negotiation input {event.value} is not allowed in state {self._state.value}"
            )
        return target

    def _start_round(self, target: NegotiationState) -> None:
        self._round += 1
        self._follow_up = False
        self._state = target
        self._events.append(OfferWanted(round=self._round))

    def _fail(self, target: NegotiationState, reason: str, timed_out: bool) -> None:
        last = self._round + 1 if self._follow_up else self._round
        # The merged follow-up is failed with its round, so the next request starts afresh.
        self._round = last
        self._follow_up = False
        self._deadline = None
        self._state = target
        self._events.append(NegotiationFailed(round=last, reason=reason, timed_out=timed_out))
