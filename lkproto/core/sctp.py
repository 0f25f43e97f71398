"""Timing decisions of lkproto's tuned SCTP association (sans-I/O).

lkproto's data channels run on aiortc's SCTP association, which :mod:`lkproto.asyncio._seam`
tunes for each of lkproto's own peer connections (issues 15 and 18). The two decisions that
matter for latency under loss and for per-packet cost are made here, without I/O or a clock:

- :class:`RtoEstimator`: the retransmission timeout (RFC 4960 §6.3.1, smoothing as RFC 6298),
  with WebRTC's bounds instead of the RFC's 1 s floor. aiortc 1.16 uses RTO.initial 3 s and
  RTO.min 1 s (``SCTP_RTO_INITIAL``/``SCTP_RTO_MIN`` in ``aiortc/rtcsctptransport.py``), so a
  lost message on a 1 ms loopback path waits at least a second; libwebrtc's dcsctp starts at
  500 ms and floors at a few hundred milliseconds (``DcSctpOptions::rto_initial``/``rto_min``
  in ``net/dcsctp/public/dcsctp_options.h``), just above a peer's 200 ms delayed-SACK timer.
  It also backs off on expiry (§6.3.3 E2), which aiortc does not, but only up to
  :data:`RTO_MAX_BACKOFF_S` as libwebrtc does, so recovery after a lossy spell is quick.
- :class:`SackScheduler`: when to acknowledge received DATA (RFC 4960 §6.2): at once when
  something is missing, duplicated, or the sender asked for it (the I bit, RFC 7053); else for
  every second packet, or when :data:`SACK_DELAY_S` has passed. aiortc sends one SACK per
  received packet, half of the packets this side sends in a bulk transfer.
- :func:`fast_retransmit_misses`: how many miss indications mark a chunk for fast
  retransmission: RFC 4960 §7.2.4's three, or fewer while fewer than four chunks are
  outstanding (Early Retransmit, RFC 5827 §3.2). With 20 % loss the congestion window
  rarely holds four chunks, so without it nearly every loss waited for the T3 timer
  (benchmarks/faults.py soak-20-short: 94 T3 expiries, 2 fast retransmissions).

Both report deadlines on the caller's clock (``now`` is an input; outputs are pulled), so the
driver (the seam) keeps one :class:`~lkproto.asyncio._timer.DeadlineTimer` for the SACK timer.
"""

from __future__ import annotations

from typing import Final

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError

__all__ = [
    "FAST_RETRANSMIT_MISSES",
    "RTO_ALPHA",
    "RTO_BETA",
    "RTO_INITIAL_S",
    "RTO_MAX_BACKOFF_S",
    "RTO_MAX_S",
    "RTO_MIN_S",
    "SACK_DELAY_S",
    "SACK_EVERY_PACKETS",
    "RtoEstimator",
    "SackScheduler",
    "fast_retransmit_misses",
]

RTO_INITIAL_S: Final = 0.5
"""RTO before the first round-trip measurement: dcsctp's ``rto_initial`` (RFC 4960: 3 s)."""

RTO_MIN_S: Final = 0.25
"""RTO floor. RFC 4960 says 1 s; dcsctp floors at 220-400 ms, "larger than an expected peer
delayed ack timeout" (``dcsctp_options.h``). The peers here are livekit-server's pion SCTP, whose
delayed-SACK timer is 200 ms (pion ``association.go``, ``ackInterval``), and lkproto itself
(:data:`SACK_DELAY_S`), so 250 ms stays clear of both: a message whose SACK is merely delayed is
not retransmitted."""

RTO_MAX_S: Final = 60.0
"""RTO ceiling for the back-off (RFC 4960 §15 RTO.Max)."""

RTO_MAX_BACKOFF_S: Final = 3.0
"""Ceiling of the timer back-off: libwebrtc gives dcsctp ``max_timer_backoff_duration`` 3 s
(``kMaxTimerBackoffDuration`` in ``media/sctp/dcsctp_transport.cc``), so that after a run of
losses the next retransmission is never more than 3 s away. Without it a 20 % loss both ways
doubled lkproto's RTO to 16 s within one transfer (benchmarks/faults.py loss-20)."""

RTO_ALPHA: Final = 1 / 8
"""SRTT gain (RFC 4960 §15 RTO.Alpha)."""

RTO_BETA: Final = 1 / 4
"""RTTVAR gain (RFC 4960 §15 RTO.Beta)."""

SACK_DELAY_S: Final = 0.05
"""Longest a SACK waits for a second packet. RFC 4960 §6.2 allows up to 200 ms (and requires
< 500 ms); a shorter delay keeps the peer's flight draining at the end of a burst, and the
delayed SACK still rides along with any DATA this side sends first."""

SACK_EVERY_PACKETS: Final = 2
"""RFC 4960 §6.2: "a SACK SHOULD be generated for at least every second packet"."""

FAST_RETRANSMIT_MISSES: Final = 3
"""Miss indications that mark a chunk for fast retransmission (RFC 4960 §7.2.4)."""


def fast_retransmit_misses(outstanding: int) -> int:
    """Miss indications that mark a chunk for fast retransmission, given the flight.

    Early Retransmit (RFC 5827 §3.2, for SCTP): when fewer than four chunks are outstanding
    and no new data can be sent, three miss indications can never arrive, so the threshold
    drops to one less than the outstanding count. The caller applies it only when no new
    data can be sent (nothing queued, or the congestion window is full).

    Args:
        outstanding: DATA chunks sent, not cumulatively acknowledged and not awaiting
            retransmission (gap-acknowledged ones included), each counted as one packet:
            bundling only makes this count larger than the packets', so the threshold errs
            towards the RFC 4960 value.

    Returns:
        The threshold, between 1 and :data:`FAST_RETRANSMIT_MISSES`; with one chunk
        outstanding nothing can report it missing, and the T3 timer stays the only way.
    """
    if outstanding < FAST_RETRANSMIT_MISSES + 1:
        return max(1, outstanding - 1)
    return FAST_RETRANSMIT_MISSES


class RtoEstimator:
    """Retransmission timeout from round-trip samples (RFC 4960 §6.3.1, §6.3.3).

    Args:
        initial_s: RTO before any sample.
        min_s: floor of the RTO.
        max_s: ceiling of the RTO.
        max_backoff_s: ceiling of the back-off: a timeout doubles the RTO up to this value
            (or keeps it, if the round trips already put it higher).

    Raises:
        LocalProtocolError: a bound is not a positive number of seconds, or ``min_s``
            exceeds ``max_s``.
    """

    __slots__ = ("_max", "_max_backoff", "_min", "_rto", "_rttvar", "_srtt")

    def __init__(
        self,
        *,
        initial_s: float = RTO_INITIAL_S,
        min_s: float = RTO_MIN_S,
        max_s: float = RTO_MAX_S,
        max_backoff_s: float = RTO_MAX_BACKOFF_S,
    ) -> None:
        self._min = positive_seconds("min_s", min_s)
        self._max = positive_seconds("max_s", max_s)
        self._max_backoff = positive_seconds("max_backoff_s", max_backoff_s)
        if self._min > self._max:
            raise LocalProtocolError(f"min_s {min_s} exceeds max_s {max_s}")
        self._rto = self._clamp(positive_seconds("initial_s", initial_s))
        self._srtt: float | None = None
        self._rttvar = 0.0

    @property
    def rto(self) -> float:
        """The current retransmission timeout, seconds."""
        return self._rto

    @property
    def srtt(self) -> float | None:
        """The smoothed round-trip time, or ``None`` before the first sample."""
        return self._srtt

    def on_rtt(self, rtt_s: float) -> float:
        """Take one round-trip sample (of a chunk sent once: Karn's rule is the caller's).

        A negative sample (a clock step) counts as zero. The back-off of :meth:`on_timeout`
        ends here: the RTO is recomputed from the smoothed values (§6.3.3 E2 / §6.3.1 C2).

        Returns:
            The new RTO.
        """
        rtt = max(0.0, rtt_s)
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = (1 - RTO_BETA) * self._rttvar + RTO_BETA * abs(self._srtt - rtt)
            self._srtt = (1 - RTO_ALPHA) * self._srtt + RTO_ALPHA * rtt
        self._rto = self._clamp(self._srtt + 4 * self._rttvar)
        return self._rto

    def on_timeout(self) -> float:
        """The retransmission timer expired: double the RTO (§6.3.3 E2), up to the back-off
        ceiling; an RTO already above it stays.

        Returns:
            The new RTO.
        """
        self._rto = max(self._rto, min(self._clamp(self._rto * 2), self._max_backoff))
        return self._rto

    def _clamp(self, value: float) -> float:
        return min(self._max, max(self._min, value))


class SackScheduler:
    """When to send a SACK for received DATA (RFC 4960 §6.2, RFC 7053).

    Feed every received packet that carried DATA (or FORWARD TSN) with :meth:`on_packet`; it
    says whether to acknowledge now. Otherwise the SACK is due at :meth:`get_timer`; call
    :meth:`handle_timer` then. Call :meth:`on_sack_sent` whenever a SACK goes out, alone or
    bundled with DATA, which ends the wait.

    Args:
        delay_s: how long an acknowledgement may wait for a second packet.
        every_packets: acknowledge at the latest on this many packets.

    Raises:
        LocalProtocolError: ``delay_s`` is not a positive number of seconds, or
            ``every_packets`` is below 1.
    """

    __slots__ = ("_deadline", "_delay", "_every", "_unacked")

    def __init__(
        self, *, delay_s: float = SACK_DELAY_S, every_packets: int = SACK_EVERY_PACKETS
    ) -> None:
        self._delay = positive_seconds("delay_s", delay_s)
        if (
            isinstance(every_packets, bool)
            or not isinstance(every_packets, int)
            or every_packets < 1
        ):
            raise LocalProtocolError(f"every_packets must be an int >= 1, got {every_packets!r}")
        self._every = every_packets
        self._unacked = 0
        self._deadline: float | None = None

    @property
    def pending(self) -> bool:
        """Whether received DATA is still unacknowledged."""
        return self._unacked > 0

    def on_packet(self, now: float, *, immediate: bool) -> bool:
        """One received packet that needs acknowledging.

        Args:
            now: the caller's clock.
            immediate: the packet revealed a gap or a duplicate (§6.2: "SHOULD send a SACK
                immediately"), carried a FORWARD TSN, or had a DATA chunk with the I bit.

        Returns:
            Whether to send the SACK now (then call :meth:`on_sack_sent`).
        """
        self._unacked += 1
        if immediate or self._unacked >= self._every:
            return True
        if self._deadline is None:
            self._deadline = now + self._delay
        return False

    def on_sack_sent(self) -> None:
        """A SACK covering everything received so far went out."""
        self._unacked = 0
        self._deadline = None

    def get_timer(self) -> float | None:
        """When the delayed SACK is due, or ``None``."""
        return self._deadline

    def handle_timer(self, now: float) -> bool:
        """Whether the delayed SACK is due at ``now`` (then send it, :meth:`on_sack_sent`)."""
        return self._deadline is not None and now >= self._deadline
