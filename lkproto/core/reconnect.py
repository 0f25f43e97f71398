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

from lkproto.core.durations import optional_positive_seconds
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "ABANDONED_ATTEMPT_LEAVE_REASON",
    "ATTEMPT_ICE_WINDOW_S",
    "DEFAULT_RECONNECT_DELAYS_S",
    "DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT",
    "DEFAULT_RECONNECT_JITTER_S",
    "FATAL_JOIN_STATUSES",
    "LEAVE_ACTION_RECOVERY",
    "REJOIN_FRESH_S",
    "REJOIN_HOLD_S",
    "REJOIN_JOINING_BYTES",
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
    "RejoinHold",
    "choose_recovery",
    "recovery_for",
    "rejoined",
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

# A full-reconnect attempt whose peer connection is still not connected this long after its ICE
# checks began is abandoned (with its leave) and the next one made on the policy's schedule
# (issue 15; docs/reference/failure-behaviour.md "Recovery after long outages"). Why: after a
# UDP outage, the attempt made during it sometimes got no answer to any of its checks once the
# path was back (resent every second, _seam.keep_ice_checking; livekit-server's log counted 0
# requests received on that pair) and hung for the whole connect timeout, while the next attempt,
# on new sockets, connected within ~50 ms. Nothing an attempt sees tells that case from a path
# still down, so the window bounds both. 5 s: livekit-server's own pion agent (controlled) sends
# its checks on a new pair only during its first ~1.6 s (pion/ice v4.4.0 agent.go
# pingAllCandidates: maxBindingRequests 7 at defaultCheckInterval 200 ms) and afterwards only
# answers ours, so a path that works connects within about a second of our next resend; 5 s is
# also livekit-server's shortest ICE connect timeout (S:pkg/rtc/transport.go
# minTcpICEConnectTimeout) and the tick between the Rust SDK's attempts. The policy's last
# attempt keeps the whole connect timeout (Recoverer.ice_window), for a path slower than that,
# and one of the policy's attempts is up to three windows in a row (connect timeout / window;
# Recoverer.attempt_failed), so the schedule and how long an outage a recovery outlasts are
# what they were with every attempt bounded by the connect timeout.
ATTEMPT_ICE_WINDOW_S: Final = 5.0
"""Seconds a full-reconnect attempt's ICE may check before the attempt is abandoned."""

# -------------------------------------------------------------------------------------------
# After a full reconnect: holding reliable sends until the receivers are back

REJOIN_HOLD_S: Final = 20.0
"""Upper bound, in seconds, of :class:`RejoinHold` (reliable sends held after a full reconnect)."""
REJOIN_FRESH_S: Final = 2.0
"""A session still JOINED although it joined this many seconds before our own is a stuck attempt."""
REJOIN_JOINING_BYTES: Final = 32 * 1024
"""How much held data may go to receivers still joining in a new room (see :class:`RejoinHold`)."""

# A participant that left with one of these reasons does not come back by itself, so the hold
# stops waiting for it (PROTOCOL-MAP §1 LeaveRequest reasons: the client said goodbye, or it was
# removed through the API). Every other reason (timeouts, DUPLICATE_IDENTITY, JOIN_FAILURE, a
# closed signal, ...) is what a participant that is rejoining leaves behind.
_LEFT_FOR_GOOD: Final = frozenset({pb.CLIENT_INITIATED, pb.PARTICIPANT_REMOVED})

# A full-reconnect attempt that fails after its JoinResponse (its ICE never came up: a UDP outage)
# says goodbye with this reason. livekit-server turns a client's LeaveRequest into
# ParticipantCloseReasonClientRequestLeave, shown to the others as CLIENT_INITIATED, for every
# reason except USER_UNAVAILABLE and USER_REJECTED, whose close reasons are shown as themselves
# or as UNKNOWN_REASON, depending on the release (S:pkg/rtc/signalling/signalhandler.go
# (HandleMessage), S:pkg/rtc/types/interfaces.go (ParticipantCloseReason.ToDisconnectReason)).
# CLIENT_INITIATED would tell the other participants' rejoin holds that we left for good
# (_LEFT_FOR_GOOD), and they would release what they held for us while our next attempt is
# still coming; USER_UNAVAILABLE says only "not there now", which every hold waits through.
ABANDONED_ATTEMPT_LEAVE_REASON: Final = pb.USER_UNAVAILABLE
"""``LeaveRequest.reason`` of a failed reconnect attempt's goodbye (see the comment above)."""
_ACTIVE: Final = pb.ParticipantInfo.ACTIVE
_JOINING_STATES: Final = frozenset({pb.ParticipantInfo.JOINING, pb.ParticipantInfo.JOINED})


def _joined_ms(info: pb.ParticipantInfo) -> int:
    # joined_at_ms (field 17) is newer than joined_at (seconds, field 6); both: the server's clock.
    return info.joined_at_ms or info.joined_at * 1000


def rejoined(
    info: pb.ParticipantInfo | None,
    *,
    before_sid: str,
    own: pb.ParticipantInfo | None,
    joining_counts: bool = False,
    fresh_s: float = REJOIN_FRESH_S,
) -> bool:
    """Whether a participant that was in the room before our full reconnect can get our data now.

    See :class:`RejoinHold` for the evidence behind each rule. Back means: its session is ACTIVE
    (its primary transport is up, so the server writes our packets to it; the old SID counts too,
    since nothing tells a live old session from a dead one the server has not noticed yet). With
    ``joining_counts``, also a *new* session still JOINING/JOINED that joined less than
    ``fresh_s`` before our own session (on the server's clock) or after it: a client still
    setting up, for which the server holds our packets and replays them once it is established.
    A new session JOINED for longer than that is an attempt that never came up.

    Args:
        info: its current snapshot in the new session's roster (None: not in the room).
        before_sid: its SID before the reconnect.
        own: our own snapshot in the new session (its join time), None if unknown.
        joining_counts: whether a session still joining counts (see :class:`RejoinHold`).
        fresh_s: :data:`REJOIN_FRESH_S`.
    """
    if info is None:
        return False
    if info.state == _ACTIVE:
        return True
    if not joining_counts or info.state not in _JOINING_STATES or info.sid == before_sid:
        return False
    theirs, ours = _joined_ms(info), _joined_ms(own) if own is not None else 0
    if not theirs or not ours:
        return True  # a server that does not say when: a new session counts
    return theirs >= ours - fresh_s * 1000


class RejoinHold:
    """Reliable sends held after a full reconnect until the room's earlier participants are back.

    Why. After a full reconnect lkproto resends what the old session never delivered, and the
    caller goes on publishing. livekit-server hands a sequenced reliable packet to each *other
    participant in the room at that moment*: written at once to one whose primary transport is
    fully established; held for one that is still joining and replayed to it from the room's
    cache once it is established, as far as the cache reaches (2 s, 100 000 bytes for the whole
    room; the replay starts at the first packet held for *that* session); and to nobody for an
    identity that is not in the room (PROTOCOL-MAP §3, server steps 5 and 8;
    ``S:pkg/rtc/participant.go (SendDataMessage, replayJoiningReliableMessages)``,
    ``S:pkg/rtc/room.go (dataMessageCacheSize)``). When an outage hits both sides, both rejoin,
    and what reaches the server while the receiver's live session is not established is lost
    (issue 15, measured with DEBUG logs of both workers and the server):

    * sent to a join attempt the receiver had given up: its attempt made during a 15 s outage was
      still listed, JOINED, when the sender rejoined 20-40 ms before the receiver's next attempt
      (25 of 500 lost in the fresh-clone CI run);
    * held for a live session still joining: the ~170 kB resend of a 15 s outage overflowed the
      room's 100 kB cache before the receiver was established (240 of 500 lost, with a rule that
      counted a new JOINED session as back);
    * sent to nobody: the room moved to another node and the receiver was not back yet (~440
      lost). (A receiver that noticed the outage a second after us is listed with its old SID,
      ACTIVE, in our ``JoinResponse``; its new session's update replaces that long before our own
      join completes after the network is back, so the old SID is no trap in practice.)

    What. From the new session's join, every reliable send (the resend first, then new ones, in
    order) waits until each participant that was in the room before the fault is back
    (:func:`rejoined`: ACTIVE) or has left for good (``DISCONNECTED`` with reason CLIENT_INITIATED
    or PARTICIPANT_REMOVED), at most ``bound_s``. A receiver still joining counts only when the
    room was created anew (a server restart or a dead node: no attempt of the outage can be
    listed) and what is held is at most :data:`REJOIN_JOINING_BYTES`, a third of the server's
    cache: that is a server restart, and the replay covers it without waiting the up to 3 s in
    which the server batches a non-publisher's participant updates
    (``S:pkg/rtc/room.go (subscriberUpdateInterval)``), which is how we hear that it is ACTIVE.

    The bound, :data:`REJOIN_HOLD_S` = 20 s, covers a receiver whose own attempt made during the
    outage hangs for its connect timeout (15 s, the engine's default) before the next one
    succeeds, plus those 3 s of batching; it is also livekit-server's default
    ``departure_timeout``. Past it the hold is released anyway and the packets go to whoever is in
    the room, as any packet would.

    Driver contract: create it when the new session has joined (the roster holds the
    ``JoinResponse``), call :meth:`check` then and after every participant update, report
    departures with :meth:`participant_left`, keep :meth:`get_timer` armed and call
    :meth:`handle_timer`; once :attr:`released`, send what was held, in order, then let new sends
    through. :meth:`release` ends it early (the caller is disconnecting).

    Args:
        before: identity -> SID of the remote participants before the fault.
        now: when the new session joined (monotonic seconds).
        room_changed: the new session's room has another SID than the one before the fault.
        held_bytes: the encoded size of what the sender keeps for the new session.
        bound_s: the hold's upper bound.
        fresh_s: see :func:`rejoined`.

    Raises:
        LocalProtocolError: ``bound_s`` or ``fresh_s`` is negative or not finite.
    """

    def __init__(
        self,
        before: Mapping[str, str],
        *,
        now: float,
        room_changed: bool = False,
        held_bytes: int = 0,
        bound_s: float = REJOIN_HOLD_S,
        fresh_s: float = REJOIN_FRESH_S,
    ) -> None:
        _check_seconds("bound_s", bound_s)
        _check_seconds("fresh_s", fresh_s)
        self._before: Mapping[str, str] = MappingProxyType(dict(before))
        self._joining_counts = room_changed and held_bytes <= REJOIN_JOINING_BYTES
        self._fresh_s = fresh_s
        self._deadline = now + bound_s
        self._left: set[str] = set()
        self._released_by: str | None = None

    @property
    def before(self) -> Mapping[str, str]:
        """Identity -> SID of the participants it waits for (as given)."""
        return self._before

    @property
    def released(self) -> bool:
        """True once sends may go: everyone is back, the bound passed, or :meth:`release`."""
        return self._released_by is not None

    @property
    def released_by(self) -> str | None:
        """``"ready"``, ``"deadline"`` or the reason given to :meth:`release`; None while held."""
        return self._released_by

    def waiting_for(
        self, remotes: Mapping[str, pb.ParticipantInfo], own: pb.ParticipantInfo | None
    ) -> list[str]:
        """The identities not back yet (and not gone for good), in ``before`` order."""
        return [
            identity
            for identity, sid in self._before.items()
            if identity not in self._left
            and not rejoined(
                remotes.get(identity),
                before_sid=sid,
                own=own,
                joining_counts=self._joining_counts,
                fresh_s=self._fresh_s,
            )
        ]

    def check(
        self, remotes: Mapping[str, pb.ParticipantInfo], own: pb.ParticipantInfo | None
    ) -> bool:
        """Look at the new session's roster and release when everyone is back.

        Args:
            remotes: the remote participants by identity (the roster's view).
            own: our own snapshot in the new session.

        Returns:
            :attr:`released`.
        """
        if self._released_by is None and not self.waiting_for(remotes, own):
            self._released_by = "ready"
        return self.released

    def participant_left(self, identity: str, reason: int) -> None:
        """A participant's session ended with ``reason`` (``pb.DisconnectReason``)."""
        if reason in _LEFT_FOR_GOOD:
            self._left.add(identity)

    def release(self, why: str) -> None:
        """End the hold now (no-op once released).

        Args:
            why: recorded in :attr:`released_by`, for logs.
        """
        if self._released_by is None:
            self._released_by = why

    def get_timer(self) -> float | None:
        """When the bound passes, or None once released."""
        return None if self._released_by is not None else self._deadline

    def handle_timer(self, now: float) -> None:
        """Release at the bound."""
        if self._released_by is None and now >= self._deadline:
            self._released_by = "deadline"


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
        ice_window_s: how long a full-reconnect attempt's ICE may check before the driver
            abandons the attempt (:meth:`ice_window`); None leaves it to the connect timeout.
        attempt_timeout_s: the driver's connect timeout, which bounds an attempt without a
            window. Attempts abandoned by their window count against the policy together, one
            per ``attempt_timeout_s / ice_window_s`` of them (rounded, at least 1; see
            :meth:`attempt_failed`), so the window does not shorten the outage a recovery
            outlasts.

    Raises:
        LocalProtocolError: ``ice_window_s`` or ``attempt_timeout_s`` is not a positive finite
            number of seconds.
    """

    def __init__(
        self,
        policy: ReconnectPolicy,
        *,
        random: Callable[[], float],
        resume_supported: bool = True,
        ice_window_s: float | None = ATTEMPT_ICE_WINDOW_S,
        attempt_timeout_s: float | None = None,
    ) -> None:
        self._policy = policy
        self._ice_window_s = optional_positive_seconds("ice_window_s", ice_window_s)
        timeout_s = optional_positive_seconds("attempt_timeout_s", attempt_timeout_s)
        self._windows_per_attempt = (
            1
            if self._ice_window_s is None or timeout_s is None
            else max(1, round(timeout_s / self._ice_window_s))
        )
        self._random = random
        self.resume_supported = resume_supported
        """Can the current session be resumed (set by the driver per connection)."""
        self._state = RecoveryState.IDLE
        self._plan = Recovery.NONE
        self._failed = 0
        self._unreachable = 0
        self._windowed = 0  # attempts abandoned by their window since the last one counted
        self._uncounted = 0  # such attempts this recovery that the policy did not count
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
            self._windowed = 0
            self._uncounted = 0
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

    def ice_window(self) -> float | None:
        """Seconds the running attempt's ICE may check before the attempt is abandoned, or None.

        The driver starts the window when a full reconnect's checks begin (its answer is
        applied) and, if the peer connection is not connected when it ends, fails the attempt
        as it fails one that timed out: leave, close, :meth:`attempt_failed`
        (:data:`ATTEMPT_ICE_WINDOW_S` says why). None for the policy's last attempt, which only
        the connect timeout bounds, so that a path whose ICE needs longer than the window still
        gets one attempt that can succeed.

        Raises:
            LocalProtocolError: no attempt is running.
        """
        if self._state is not RecoveryState.ATTEMPTING:
            raise LocalProtocolError(f"no recovery attempt is running ({self._state.value})")
        if self._failed + 1 >= self._policy.attempts:
            return None
        return self._ice_window_s

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
        ice_window: bool = False,
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
            ice_window: the driver abandoned the attempt when its ICE window ended. One of
                the policy's attempts is then up to ``attempt_timeout_s / ice_window_s``
                windows in a row (three with the defaults: 15 s / 5 s), each on new sockets
                and started at once; only the last of them counts against the policy. So the
                schedule and the outage a recovery outlasts stay those of attempts bounded by
                the connect timeout (JS and the Rust SDK wait up to 15 s per attempt), while a
                path that comes back mid-way is found within a window.

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
        if ice_window and cause is None and self._windowed + 1 < self._windows_per_attempt:
            self._windowed += 1
            self._uncounted += 1
            self._schedule(now, immediate=True)  # the same policy attempt, on new sockets
            return
        self._windowed = 0
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
            made = self._failed + self._unreachable + self._uncounted
            self._events.append(AttemptDue(number=made + 1))

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
        self._windowed = 0
        self._uncounted = 0
        self._deadline = None
