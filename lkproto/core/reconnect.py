"""When to retry a broken session, and how: resume it or join anew (PROTOCOL-MAP §10).

Two pure pieces, no clock and no randomness of their own:

* :class:`ReconnectPolicy` says how long to wait before retry number ``attempt`` (0-based), or
  that it is time to give up. Randomness for the jitter is injected.
* :func:`choose_recovery` says what kind of recovery the current situation calls for.

Recovery, in the terms of PROTOCOL-MAP §10:

* **Resume** keeps the participant SID, the peer connections and subscriptions: reconnect the
  signal socket with the reconnect flag, answer the server's ICE-restart offer, send ``SyncState``.
  It is the default for any loss, including a *failed* peer connection: the server itself asks for
  it on transport failure (``LeaveRequest{CONNECTION_TIMEOUT, RESUME}``) and the resume's ICE
  restart is what repairs the transport (``S:pkg/rtc/participant.go (onAnyTransportFailed)``;
  ``JS:src/room/RTCEngine.ts (handleDisconnect, attemptReconnect)`` resumes after
  ``peerconnection failed``).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from lkproto.errors import LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "DEFAULT_RECONNECT_DELAYS_S",
    "DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT",
    "DEFAULT_RECONNECT_JITTER_S",
    "LEAVE_ACTION_RECOVERY",
    "ReconnectPolicy",
    "Recovery",
    "choose_recovery",
]

# PROTOCOL-MAP §10 Full reconnect: JS DefaultReconnectPolicy waits 0, 300, 1200, 2700, 4800 ms
# (n*n*300 ms), then 7000 ms five times; ten retries, then it gives up.
DEFAULT_RECONNECT_DELAYS_S: Final[tuple[float, ...]] = (0.0, 0.3, 1.2, 2.7, 4.8) + (7.0,) * 5
# PROTOCOL-MAP §10: "+ up to 1 s jitter from the 3rd" (JS: Math.random() * 1000 ms when
# retryCount > 1, i.e. from 0-based attempt 2).
DEFAULT_RECONNECT_JITTER_S: Final = 1.0
DEFAULT_RECONNECT_JITTER_FROM_ATTEMPT: Final = 2


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
