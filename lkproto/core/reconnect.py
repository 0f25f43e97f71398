"""When to retry a broken session, and how: resume it or join anew (PROTOCOL-MAP §10).

Three pieces, no clock and no randomness of their own:

* :class:`ReconnectPolicy` says how long to wait before retry number ``attempt`` (0-based), or
  that it is time to give up. Randomness for the jitter is injected.
* :func:`choose_recovery` says what kind of recovery the current situation calls for.
* :class:`Recoverer`, a sans-I/O machine, is the one place every trouble of a connected session
  is reported (:class:`RecoveryCause`: signal lost, peer connection failed, a ``leave`` with any
  action, a refused resume, a full reconnect asked for). It decides with
  :func:`choose_recovery`, escalates (a full reconnect, once chosen, is never downgraded to a
  resume; giving up beats both), schedules the attempts with the policy's delays and gives up
  when the policy runs out. See its docstring for the theory of operation.

Recovery, in the terms of PROTOCOL-MAP §10:

* **Resume** keeps the participant SID, the peer connections and subscriptions: reconnect the
  signal socket with the reconnect flag, answer the server's ICE-restart offer, send ``SyncState``.
  It is the default for any loss, including a *failed* peer connection: the server itself asks for
  it on transport failure (``LeaveRequest{CONNECTION_TIMEOUT, RESUME}``) and the resume's ICE
  restart is what repairs the transport (``S:pkg/rtc/participant.go (onAnyTransportFailed)``;
  ``JS:src/room/RTCEngine.ts (handleDisconnect, attemptReconnect)`` resumes after
  ``peerconnection failed``). That is the JS table :func:`choose_recovery` keeps; lkproto's own
  mapping, :func:`recovery_for`, turns both a failed peer connection and the server's
  ``leave{RESUME}`` into full reconnects, because aiortc cannot ICE-restart.
* **Full reconnect** tears everything down and joins again (new SID, republish). JS goes there on
  ``LeaveRequest.action == RECONNECT``, after a refused resume (the server's first frame is a
  ``LeaveRequest``), when ``client_configuration.resume_connection == DISABLED``, and when the
  peer connections cannot be resumed at all (JS: transport manager state ``new``, e.g. closed by a
  sleep or never connected).
* **Give up** on ``LeaveRequest.action == DISCONNECT`` (the server ended the session), or when the
  policy runs out of attempts.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "DEFAULT_RECONNECT_DELAYS_S",
    "DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT",
    "DEFAULT_RECONNECT_JITTER_S",
    "FATAL_JOIN_STATUSES",
    "LEAVE_ACTION_RECOVERY",
    "RECEIVERS_WAIT_S",
    "TRANSPORT_SILENCE_S",
    "UNREACHABLE_RETRIES",
    "UNREACHABLE_RETRY_S",
    "AnyRecoveryEvent",
    "AttemptDue",
    "GaveUp",
    "ReconnectPolicy",
    "Recovered",
    "Recoverer",
    "Recovery",
    "RecoveryCause",
    "RecoveryEvent",
    "RecoveryStarted",
    "RecoveryState",
    "choose_recovery",
    "receivers_ready",
    "receivers_wait_s",
    "recovery_for",
    "transport_stalled",
]

# PROTOCOL-MAP §10 Full reconnect: JS DefaultReconnectPolicy waits 0, 300, 1200, 2700, 4800 ms
# (n*n*300 ms), then 7000 ms five times; ten retries, then it gives up.
DEFAULT_RECONNECT_DELAYS_S: Final[tuple[float, ...]] = (0.0, 0.3, 1.2, 2.7, 4.8) + (7.0,) * 5
# PROTOCOL-MAP §10: "+ up to 1 s jitter from the 3rd" (JS: Math.random() * 1000 ms when
# retryCount > 1, i.e. from 0-based attempt 2).
DEFAULT_RECONNECT_JITTER_S: Final = 1.0
DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT: Final = 2
"""First 0-based attempt whose delay gets the random jitter: the third (see the comment above)."""


class Recovery(enum.Enum):
    """What to do about the state of the connection."""

    NONE = "none"
    """Nothing is broken: carry on."""
    RESUME = "resume"
    """Reconnect the signal socket with the reconnect flag and keep the session."""
    FULL_RECONNECT = "full_reconnect"
    """Leave, close everything and join again (new participant SID)."""
    GIVE_UP = "give_up"
    """The session is over: disconnect for good."""


# PROTOCOL-MAP §1 LeaveRequest and `JS:src/room/RTCEngine.ts (onLeave)`. Unknown actions (the enum
# is open) are ignored like JS's `switch` does, leaving the decision to the connection state.
LEAVE_ACTION_RECOVERY: Final[Mapping[int, Recovery]] = MappingProxyType(
    {
        pb.LeaveRequest.DISCONNECT: Recovery.GIVE_UP,
        pb.LeaveRequest.RESUME: Recovery.RESUME,
        pb.LeaveRequest.RECONNECT: Recovery.FULL_RECONNECT,
    }
)
"""``LeaveRequest.action`` → what the server asks for."""


def choose_recovery(
    *,
    signal_ok: bool,
    peer_ok: bool,
    leave_action: int | None = None,
    resume_refused: bool = False,
    resume_disabled: bool = False,
    peer_resumable: bool = True,
) -> Recovery:
    """Decide how to recover, first matching row wins.

    ======================================================  ===================
    Situation                                               Recovery
    ======================================================  ===================
    leave ``DISCONNECT``                                    ``GIVE_UP``
    leave ``RECONNECT``                                     ``FULL_RECONNECT``
    ``resume_refused``                                      ``FULL_RECONNECT``
    no (known) leave, signal and peer both fine             ``NONE``
    ``resume_disabled`` or not ``peer_resumable``           ``FULL_RECONNECT``
    anything else (leave ``RESUME``, lost signal or peer)   ``RESUME``
    ======================================================  ===================

    Args:
        signal_ok: the signal socket is open and answering pings.
        peer_ok: the peer connection(s) are connected.
        leave_action: ``LeaveRequest.action`` just received, ``None`` if none.
        resume_refused: a resume attempt was answered with a ``LeaveRequest`` as its first frame
            (PROTOCOL-MAP §10 Resume, step 5), or otherwise failed other than by losing the socket.
        resume_disabled: ``client_configuration.resume_connection == DISABLED``.
        peer_resumable: the peer connections can be ICE-restarted: they were connected once and
            are not closed. A *failed* connection is still resumable.

    Returns:
        The recovery to perform.
    """
    from_leave = LEAVE_ACTION_RECOVERY.get(leave_action) if leave_action is not None else None
    if from_leave is Recovery.GIVE_UP:
        return Recovery.GIVE_UP
    if from_leave is Recovery.FULL_RECONNECT or resume_refused:
        return Recovery.FULL_RECONNECT
    if from_leave is None and signal_ok and peer_ok:
        return Recovery.NONE
    if resume_disabled or not peer_resumable:
        return Recovery.FULL_RECONNECT
    return Recovery.RESUME


# Issue 15 floor (never CONNECTED while nothing moves): how long the peer may stay silent before
# the transport counts as dead. aiortc notices a dead SCTP association only after its
# retransmissions give up, aioice fails ICE consent after ~30 s, and livekit-server sends its
# leave{RESUME} ~16 s into a UDP outage. An idle livekit-server connection still brings a datagram
# at least every 2 s (measured: its ICE keepalives and the answers to aioice's consent checks), and
# a busy one far more, so 8 s without a single datagram is an outage, not loss (at 20 % loss both
# ways it takes four keepalives and the consent traffic lost in a row); a 5 s outage stays a stall
# that recovers by itself, as before.
TRANSPORT_SILENCE_S: Final = 8.0
"""Seconds without a single datagram from the peer after which the transport counts as dead."""


def transport_stalled(*, now: float, last_heard: float | None, silence_s: float) -> bool:
    """Whether the data transport counts as dead: nothing has arrived for ``silence_s``.

    Report it as :attr:`RecoveryCause.PEER_FAILED` (a full reconnect: aiortc cannot ICE-restart).
    Sender and receiver alike: a receiver that waited for the server's ``leave`` came back to the
    room seconds after the senders, and the server replays only its last 2 s of reliable packets
    to a participant that joins (PROTOCOL-MAP §3), so what was sent in between was lost.

    Args:
        now: current monotonic time in seconds.
        last_heard: when anything last arrived from the peer on the transport (None: unknown).
        silence_s: how long a silence counts as an outage (:data:`TRANSPORT_SILENCE_S`).
    """
    if last_heard is None:
        return False
    return now - last_heard >= silence_s


# Retrying a server that refused the connection (nothing listening: being restarted), outside the
# policy's schedule; 20 x 0.25 s covers a restart on this machine many times over, and a server
# down for longer falls back to the policy (Recoverer.attempt_failed).
UNREACHABLE_RETRIES: Final = 20
"""How many refused connections a recovery retries quickly before the policy takes over."""
UNREACHABLE_RETRY_S: Final = 0.25
"""Seconds between those retries of an unreachable server."""

# After a full reconnect, how long the resend (and every later reliable send) may wait for the
# room's other participants to be able to receive (see receivers_ready).
RECEIVERS_WAIT_S: Final = 5.0
"""Upper bound of the wait for the other participants before a full reconnect's resend."""


def receivers_ready(remotes: Mapping[str, pb.ParticipantInfo], before: Mapping[str, str]) -> bool:
    """Whether the room's other participants can get reliable data now (after a full reconnect).

    livekit-server forwards a sequenced reliable packet only to participants whose primary
    transport is fully established (``ParticipantInfo.state`` ACTIVE) and replays the last 2 s
    (~100 kB) of them to one that becomes so later (PROTOCOL-MAP §3, server steps 5 and 8). After
    an outage the other participants are often rejoining too, a little after us: resending the
    undelivered packets at once would hand most of them to nobody (issue 15, 15 s outage: 236 of
    500 lost on the receiving side). Ready means: everyone who was in the room before is back,
    and each is ACTIVE or has just joined anew (a new SID, which the replay serves; the update
    announcing ACTIVE can come seconds later). A driver with packets to resend waits for this,
    at most :func:`receivers_wait_s`.

    Args:
        remotes: the remote participants the new session sees, by identity.
        before: identity -> SID of the remote participants before the reconnect.
    """
    if any(identity not in remotes for identity in before):
        return False
    for identity, info in remotes.items():
        fresh = info.state == pb.ParticipantInfo.JOINED and before.get(identity) != info.sid
        if info.state != pb.ParticipantInfo.ACTIVE and not fresh:
            return False
    return True


def receivers_wait_s(recovery_s: float) -> float:
    """How long a sender that recovered in ``recovery_s`` waits for :func:`receivers_ready`.

    As long as its own recovery took, at most :data:`RECEIVERS_WAIT_S`: participants that met
    the same fault recover on the same schedule, and the server's 2 s replay covers one that is
    a little behind. After a server restart (recovered in ~0.5 s) the update announcing a peer
    back can take ~3 s, and waiting for it would triple the recovery time for nothing; after a
    15 s outage the peers may be seconds apart, and the wait keeps their packets.
    """
    return min(RECEIVERS_WAIT_S, max(recovery_s, 0.0))


def _check_seconds(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Delays between reconnect attempts, as JS ``DefaultReconnectPolicy`` by default.

    Args:
        delays_s: wait before attempt ``i`` (0-based); attempts past the end reuse the last one.
        max_attempts: how many attempts in total; ``None`` means ``len(delays_s)``.
        jitter_s: upper bound of the random extra wait.
        jitter_from_attempt: first 0-based attempt that gets jitter.

    Raises:
        LocalProtocolError: empty ``delays_s``, a negative or non-finite duration, or a negative
            count.
    """

    delays_s: Sequence[float] = DEFAULT_RECONNECT_DELAYS_S
    max_attempts: int | None = None
    jitter_s: float = DEFAULT_RECONNECT_JITTER_S
    jitter_from_attempt: int = DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT

    def __post_init__(self) -> None:
        delays = tuple(float(d) for d in self.delays_s)
        if not delays:
            raise LocalProtocolError("delays_s must not be empty")
        for delay in delays:
            _check_seconds("every delay", delay)
        _check_seconds("jitter_s", self.jitter_s)
        if self.max_attempts is not None and self.max_attempts < 0:
            raise LocalProtocolError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if self.jitter_from_attempt < 0:
            raise LocalProtocolError(
                f"jitter_from_attempt must be >= 0, got {self.jitter_from_attempt}"
            )
        object.__setattr__(self, "delays_s", delays)

    @property
    def attempts(self) -> int:
        """How many attempts this policy allows."""
        return len(self.delays_s) if self.max_attempts is None else self.max_attempts

    def next_delay(self, attempt: int, *, random: float) -> float | None:
        """Seconds to wait before attempt ``attempt``, or ``None`` to give up.

        Args:
            attempt: 0-based number of the attempt about to be made (JS ``retryCount``: failed
                attempts so far).
            random: a uniform sample from ``[0, 1)``; scales the jitter.

        Raises:
            LocalProtocolError: ``attempt`` is negative or ``random`` is outside ``[0, 1)``.
        """
        if attempt < 0:
            raise LocalProtocolError(f"attempt must be >= 0, got {attempt}")
        if not 0.0 <= random < 1.0:
            raise LocalProtocolError(f"random must be in [0, 1), got {random!r}")
        if attempt >= self.attempts:
            return None
        delay = self.delays_s[min(attempt, len(self.delays_s) - 1)]
        if attempt >= self.jitter_from_attempt:
            delay += random * self.jitter_s
        return delay


# -------------------------------------------------------------------------------------------
# The recovery machine

# PROTOCOL-MAP §1 Rejections: a bad token (401), a grant that no longer allows the room (403) or a
# room that is gone (404) will not get better by retrying; JS stops on these as well.
FATAL_JOIN_STATUSES: Final = frozenset({401, 403, 404})

# Escalation order: a stronger recovery replaces a weaker one, never the reverse.
_STRENGTH: Final[Mapping[Recovery, int]] = MappingProxyType(
    {Recovery.NONE: 0, Recovery.RESUME: 1, Recovery.FULL_RECONNECT: 2, Recovery.GIVE_UP: 3}
)


class RecoveryCause(enum.Enum):
    """What went wrong with a connected session."""

    SIGNAL_LOST = "signal_lost"
    """The signal socket closed or stopped answering pings (the peer connection may be fine)."""
    PEER_FAILED = "peer_failed"
    """The peer connection failed."""
    LEAVE = "leave"
    """The server sent ``leave``; its action is given alongside."""
    RESUME_REFUSED = "resume_refused"
    """A resume was answered with ``leave`` as its first frame (PROTOCOL-MAP §10 step 5)."""
    FULL_REQUESTED = "full_requested"
    """The application asked for a full reconnect (``SIMULATE_FULL_RECONNECT``)."""


def recovery_for(
    cause: RecoveryCause, *, leave_action: int | None = None, resume_supported: bool = True
) -> Recovery:
    """The recovery one cause calls for, through :func:`choose_recovery`.

    A failed peer connection means a full reconnect: aiortc cannot ICE-restart (PROTOCOL-MAP §14),
    so the resume's repair step is not available to us. The same holds for a ``leave`` with action
    RESUME: livekit-server sends it only when its own side of our transport failed
    (``S:pkg/rtc/participant.go (onAnyTransportFailed)``, PROTOCOL-MAP §10 Server-side timeouts)
    and expects the resume's ICE restart; a signal-only resume would leave a room that says
    CONNECTED over a dead transport (issue 15, 20 s UDP outage). Without resume support (``/rtc``
    v0 here) everything that is not giving up is a full reconnect.

    Args:
        cause: what went wrong.
        leave_action: ``LeaveRequest.action`` when ``cause`` is LEAVE.
        resume_supported: the session can be resumed at all.
    """
    transport_failed = cause is RecoveryCause.PEER_FAILED or (
        cause is RecoveryCause.LEAVE and leave_action == pb.LeaveRequest.RESUME
    )
    return choose_recovery(
        signal_ok=cause not in (RecoveryCause.SIGNAL_LOST, RecoveryCause.LEAVE),
        peer_ok=not transport_failed,
        leave_action=leave_action if cause is RecoveryCause.LEAVE else None,
        resume_refused=cause in (RecoveryCause.RESUME_REFUSED, RecoveryCause.FULL_REQUESTED),
        resume_disabled=not resume_supported,
        peer_resumable=not transport_failed,
    )


class RecoveryState(enum.Enum):
    """Where a :class:`Recoverer` is."""

    IDLE = "idle"
    """Nothing to recover."""
    WAITING = "waiting"
    """Waiting for the policy's delay before the next attempt."""
    ATTEMPTING = "attempting"
    """The driver is running an attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryEvent:
    """Base class of what a :class:`Recoverer` reports."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryStarted(RecoveryEvent):
    """A connected session broke: the room is reconnecting.

    Attributes:
        full: the plan is a full reconnect (else a resume).
    """

    full: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptDue(RecoveryEvent):
    """Run attempt ``number`` now; ask :meth:`Recoverer.attempt_kind` which kind.

    Attributes:
        number: 1-based attempt number.
    """

    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered(RecoveryEvent):
    """An attempt succeeded.

    Attributes:
        full: it was a full reconnect.
        attempts: how many attempts it took.
    """

    full: bool
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp(RecoveryEvent):
    """The session is over: the server said so, a join was refused, or attempts ran out.

    Attributes:
        reason: a human-readable explanation for logs.
    """

    reason: str


AnyRecoveryEvent: TypeAlias = RecoveryStarted | AttemptDue | Recovered | GaveUp
"""Every event :class:`Recoverer` hands out; match it exhaustively (``assert_never``)."""


class Recoverer:
    """Decides, schedules and counts recovery attempts for one room (PROTOCOL-MAP §10).

    Theory of operation: the driver reports every trouble with :meth:`trouble`. In IDLE a trouble
    that needs recovering starts one (:class:`RecoveryStarted`) and schedules attempt 1 after the
    policy's first delay; a trouble during a recovery only escalates the plan. When the delay
    passes, :meth:`handle_timer` emits :class:`AttemptDue`; the driver asks
    :meth:`attempt_kind` (a resume needs a usable peer connection, else it becomes a full
    reconnect for good), runs the attempt and reports :meth:`attempt_succeeded` or
    :meth:`attempt_failed` (which schedules the next one, or gives up when the policy has no more
    delays or the server refused the join for good). A failure that turns the plan from a resume
    into a full reconnect (the server refused the resume) schedules the full reconnect at once:
    the server answered, so it is up, and only the session is gone (after a server restart,
    waiting the policy's delay made lkproto take 2 s to recover where the official SDK takes
    0.3 s, issue 15); it still counts against the policy's attempts. :class:`GaveUp` ends the
    recovery: the driver disconnects. :meth:`cancel` (the user disconnected) returns to IDLE
    silently.

    Args:
        policy: the retry delays.
        random: a source of uniform samples in ``[0, 1)`` for the jitter.
        resume_supported: False for sessions that cannot be resumed (every recovery is full).
    """

    def __init__(
        self,
        policy: ReconnectPolicy,
        *,
        random: Callable[[], float],
        resume_supported: bool = True,
    ) -> None:
        self._policy = policy
        self._random = random
        self.resume_supported = resume_supported
        """Can the current session be resumed (set by the driver per connection)."""
        self._state = RecoveryState.IDLE
        self._plan = Recovery.NONE
        self._failed = 0
        self._unreachable = 0
        self._deadline: float | None = None
        self._events: deque[AnyRecoveryEvent] = deque()

    @property
    def state(self) -> RecoveryState:
        """Where the machine is."""
        return self._state

    @property
    def plan(self) -> Recovery:
        """The recovery planned (NONE when IDLE)."""
        return self._plan

    # ---------------------------------------------------------------- inputs

    def trouble(
        self, cause: RecoveryCause, now: float, *, leave_action: int | None = None
    ) -> Recovery:
        """Report what went wrong; returns the plan afterwards.

        Args:
            cause: what went wrong.
            now: current monotonic time in seconds.
            leave_action: ``LeaveRequest.action`` when ``cause`` is LEAVE.
        """
        wanted = recovery_for(
            cause, leave_action=leave_action, resume_supported=self.resume_supported
        )
        if wanted is Recovery.GIVE_UP:
            self._give_up(f"the server ended the session ({cause.value})")
            return Recovery.GIVE_UP
        if wanted is Recovery.NONE:
            return self._plan
        if self._state is RecoveryState.IDLE:
            self._plan = wanted
            self._failed = 0
            self._unreachable = 0
            self._events.append(RecoveryStarted(full=wanted is Recovery.FULL_RECONNECT))
            self._schedule(now)
        else:
            self._escalate(wanted)
        return self._plan

    def attempt_kind(self, *, peer_usable: bool) -> Recovery:
        """RESUME or FULL_RECONNECT for the attempt that is due.

        Args:
            peer_usable: the peer connection is still connected; a resume keeps it, so without
                it only a full reconnect can work (JS: transport state ``new``/closed).

        Raises:
            LocalProtocolError: no attempt is running.
        """
        if self._state is not RecoveryState.ATTEMPTING:
            raise LocalProtocolError(f"no recovery attempt is running ({self._state.value})")
        if not peer_usable or not self.resume_supported:
            self._escalate(Recovery.FULL_RECONNECT)
        return self._plan

    def attempt_succeeded(self, now: float) -> None:
        """The attempt worked: back to IDLE with :class:`Recovered`.

        Raises:
            LocalProtocolError: no attempt is running.
        """
        del now
        if self._state is not RecoveryState.ATTEMPTING:
            raise LocalProtocolError(f"no recovery attempt is running ({self._state.value})")
        self._events.append(
            Recovered(full=self._plan is Recovery.FULL_RECONNECT, attempts=self._failed + 1)
        )
        self._reset()

    def attempt_failed(
        self,
        now: float,
        *,
        cause: RecoveryCause | None = None,
        status: int | None = None,
        unreachable: bool = False,
    ) -> None:
        """The attempt failed; the next one is scheduled, or the recovery gives up.

        Args:
            now: current monotonic time in seconds.
            cause: why, when it calls for a different recovery (RESUME_REFUSED, a LEAVE...).
            status: the HTTP status when the server refused the join.
            unreachable: nothing listened at the server's address (connection refused). The
                first :data:`UNREACHABLE_RETRIES` such failures of a recovery are retried every
                :data:`UNREACHABLE_RETRY_S` without counting against the policy: a server being
                restarted is back within a second or two, and the policy's growing delays made
                lkproto return seconds after the official SDK (issue 15).

        Raises:
            LocalProtocolError: no attempt is running.
        """
        if self._state is not RecoveryState.ATTEMPTING:
            raise LocalProtocolError(f"no recovery attempt is running ({self._state.value})")
        if status is not None and status in FATAL_JOIN_STATUSES:
            self._give_up(f"the server refused the join (HTTP {status})")
            return
        if unreachable and cause is None and self._unreachable < UNREACHABLE_RETRIES:
            self._unreachable += 1
            self._state = RecoveryState.WAITING
            self._deadline = now + UNREACHABLE_RETRY_S
            return
        self._failed += 1
        before = self._plan
        if cause is not None:
            wanted = recovery_for(cause, resume_supported=self.resume_supported)
            if wanted is Recovery.GIVE_UP:
                self._give_up(f"the server ended the session ({cause.value})")
                return
            self._escalate(wanted)
        # The server answered and refused the session: a full reconnect now (class docstring).
        now_full = before is Recovery.RESUME and self._plan is Recovery.FULL_RECONNECT
        self._schedule(now, immediate=now_full)

    def cancel(self) -> None:
        """Stop recovering without an event (the user disconnected)."""
        self._reset()

    def handle_timer(self, now: float) -> None:
        """Start the attempt whose delay has passed at ``now``."""
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._state = RecoveryState.ATTEMPTING
            self._events.append(AttemptDue(number=self._failed + self._unreachable + 1))

    def get_timer(self) -> float | None:
        """When the next attempt is due, or None."""
        return self._deadline

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyRecoveryEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- internals

    def _escalate(self, wanted: Recovery) -> None:
        if _STRENGTH[wanted] > _STRENGTH[self._plan]:
            self._plan = wanted

    def _schedule(self, now: float, *, immediate: bool = False) -> None:
        delay = self._policy.next_delay(self._failed, random=self._random())
        if delay is None:
            self._give_up(f"no reconnect attempt succeeded ({self._failed} made)")
            return
        self._state = RecoveryState.WAITING
        self._deadline = now if immediate else now + delay

    def _give_up(self, reason: str) -> None:
        self._reset()
        self._events.append(GaveUp(reason=reason))

    def _reset(self) -> None:
        self._state = RecoveryState.IDLE
        self._plan = Recovery.NONE
        self._failed = 0
        self._unreachable = 0
        self._deadline = None
