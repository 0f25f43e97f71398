"""The sans-I/O signal session: one LiveKit signalling WebSocket, as a state machine.

Theory of operation
-------------------

A :class:`SignalSession` is fed by a driver that owns the WebSocket and a clock. The driver calls
the *transport inputs* (:meth:`~SignalSession.connection_opened`,
:meth:`~SignalSession.receive_data`, :meth:`~SignalSession.connection_lost`,
:meth:`~SignalSession.handle_timer`), the engine and the user call the *send inputs*
(:meth:`~SignalSession.send_offer`, :meth:`~SignalSession.update_metadata`, ...), and after every
input the driver pulls the outputs: frames from :meth:`~SignalSession.requests_to_send`, events from
:meth:`~SignalSession.next_event`, and the next deadline from :meth:`~SignalSession.get_timer`. The
session never reads a clock: every input carries ``now`` (monotonic seconds).

The connection moves through five states::

    IDLE ──OPEN──> CONNECTING ──JOIN / RESUMED──> CONNECTED
                    │    ^                          │
     LOST, timeout, │    │ OPEN / OPEN_RESUME       │ LOST, PING_TIMEOUT,
     leave(RESUME/  v    │                          │ leave(RESUME/RECONNECT)
     RECONNECT)    DISCONNECTED <───────────────────┘

    leave(DISCONNECT) from CONNECTING/CONNECTED, or send_leave() from anywhere ──> CLOSED

Every state change goes through :data:`SIGNAL_TRANSITIONS`, a ``(state, input) -> state`` table in
the style of h11's ``_state.py``. A pair that is not in the table is handled in one of three ways:

* it is in :data:`SIGNAL_IGNORED`: a harmless no-op (the socket the driver is tearing down reports
  ``connection_lost`` after a ping timeout; ``send_leave`` twice; ``flush_queued`` while no socket
  is up);
* it is a *local* input (an API call): :class:`~lkproto.errors.LocalProtocolError` is raised at once
  and nothing changes (``send_offer`` before ``connection_opened`` or after CLOSED,
  ``connection_opened`` twice, ``flush_queued`` after CLOSED, ...); ``receive_data`` before any
  ``connection_opened`` is driver misuse too;
* it is a *remote* input (a frame): the frame is dropped and a :class:`ProtocolViolated` event is
  queued. Bad remote input never raises out of :meth:`~SignalSession.receive_data`.

Two guards sit beside the table: ``connection_opened(resume=True)`` needs a session that once joined
(there is nothing to resume otherwise), and the first frame must match the kind of connection
(``join`` on a fresh one, ``reconnect`` on a resume). Frames that arrive in DISCONNECTED or CLOSED
come from a socket the session no longer listens to and are dropped undecoded.

After a loss the *same* session object is reused: ``connection_opened(now, resume=True)`` for a
resume (PROTOCOL-MAP §10 Resume), or ``connection_opened(now)`` for a full reconnect on a new
socket. Pending request deadlines keep running across both.

Queueing rule (PROTOCOL-MAP §10 Resume step 4, after JS ``SignalClient.sendRequest``):

* *pass-through* kinds (offer, answer, trickle, sync_state, simulate and our pings) are sent at
  once when the state is CONNECTED (the JoinResponse or ReconnectResponse of the current socket
  has arrived). In any other state they are dropped, reported by a :class:`RequestDropped` event:
  an SDP or candidate meant for a dead socket is stale by the time a new one is up. ``leave`` is
  sent whenever a socket is open (CONNECTING or CONNECTED) and then closes the session.
* every other kind is sent at once only when CONNECTED *and* no resume is pending; otherwise it is
  queued, in order. The queue is flushed automatically when a fresh JoinResponse arrives; after a
  loss it is *held* (even once the ReconnectResponse arrived, so that sync_state and the ICE-restart
  offer go first) until the driver calls :meth:`~SignalSession.flush_queued`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from lkproto.core.durations import positive_seconds
from lkproto.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from lkproto.wire import decode_signal_response, encode_signal_request, pb

__all__ = [
    "DEFAULT_JOIN_TIMEOUT_S",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "FIRST_PROTOCOL_ANSWERING_OK",
    "PASS_THROUGH_KINDS",
    "SIGNAL_IGNORED",
    "SIGNAL_TRANSITIONS",
    "AnswerReceived",
    "AnySignalEvent",
    "ConnectionQualityChanged",
    "JoinTimedOut",
    "Joined",
    "LeaveReceived",
    "MediaSectionsRequired",
    "MessageReceived",
    "OfferReceived",
    "ParticipantsUpdated",
    "PongReceived",
    "ProtocolViolated",
    "RequestAnswered",
    "RequestDropped",
    "RequestTimedOut",
    "Resumed",
    "RoomUpdated",
    "SignalEvent",
    "SignalInput",
    "SignalLost",
    "SignalSession",
    "SignalState",
    "SpeakersChanged",
    "TokenRefreshed",
    "TrickleReceived",
    "metadata_applied",
    "sdp_msid_track_ids",
]

# PROTOCOL-MAP §1 Framing: JS waits 5 s for the first frame (JOIN_RESPONSE_TIMEOUT), but the server
# may need up to 3 + 6 + 9 s of relay attempts before it upgrades; 10 s sits between the two.
DEFAULT_JOIN_TIMEOUT_S: Final = 10.0
# PROTOCOL-MAP §7 UpdateParticipantMetadata: JS gives a metadata update 5 s to be answered.
DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0

# PROTOCOL-MAP §10 Resume step 4 (JS ``passThroughQueueSignals``), plus our own pings: never queued.
PASS_THROUGH_KINDS: Final = frozenset(
    {"offer", "answer", "trickle", "sync_state", "simulate", "leave", "ping", "ping_req"}
)

# PROTOCOL-MAP §7: a server answers a successful request with RequestResponse{OK} only from
# protocol 15 (S:pkg/rtc/types/protocol_version.go SupportsNonErrorSignalResponse, `v > 14`).
# Older releases (v1.7.x reports protocol 14) send only errors, as ErrorResponse in the same
# field 22, and show a success by re-sending our ParticipantInfo.
FIRST_PROTOCOL_ANSWERING_OK: Final = 15

_UINT32_MAX: Final = 2**32 - 1

_Builder: TypeAlias = Callable[[], pb.SignalRequest]


class SignalState(enum.Enum):
    """Where the signal connection is."""

    IDLE = "idle"
    """No socket has been opened yet."""
    CONNECTING = "connecting"
    """A socket is open; waiting for its first frame (JoinResponse / ReconnectResponse)."""
    CONNECTED = "connected"
    """The first frame arrived; pinging and exchanging messages."""
    DISCONNECTED = "disconnected"
    """The socket is gone or must be dropped; the session may be resumed or rejoined."""
    CLOSED = "closed"
    """The session is over (we left or the server sent ``leave`` with ``DISCONNECT``). Terminal."""


class SignalInput(enum.Enum):
    """Inputs that the transition table knows about."""

    OPEN = "open"
    """``connection_opened(resume=False)``: a socket for a fresh join."""
    OPEN_RESUME = "open_resume"
    """``connection_opened(resume=True)``: a socket for a resume."""
    JOIN = "join"
    """Frame: ``join`` (JoinResponse)."""
    RESUMED = "resumed"
    """Frame: ``reconnect`` (ReconnectResponse)."""
    LEAVE_DISCONNECT = "leave_disconnect"
    """Frame: ``leave`` with action DISCONNECT."""
    LEAVE_RETRY = "leave_retry"
    """Frame: ``leave`` with action RESUME, RECONNECT or a value newer than our schema."""
    MESSAGE = "message"
    """Frame: any other known oneof member."""
    LOST = "lost"
    """``connection_lost()``."""
    JOIN_TIMEOUT = "join_timeout"
    """Timer: no first frame within ``join_timeout_s``."""
    PING_TIMEOUT = "ping_timeout"
    """Timer: no frame at all within the server's ``ping_timeout``."""
    CLIENT_LEAVE = "client_leave"
    """``send_leave()`` (or ``send()`` of a ``leave``)."""
    SEND = "send"
    """Any other send call."""
    FLUSH = "flush"
    """``flush_queued()``."""


_S = SignalState
_I = SignalInput

#: Every legal state change, including self-loops for inputs that are legal without one.
SIGNAL_TRANSITIONS: Final[Mapping[tuple[SignalState, SignalInput], SignalState]] = {
    (_S.IDLE, _I.OPEN): _S.CONNECTING,
    (_S.IDLE, _I.CLIENT_LEAVE): _S.CLOSED,
    (_S.CONNECTING, _I.JOIN): _S.CONNECTED,
    (_S.CONNECTING, _I.RESUMED): _S.CONNECTED,
    # PROTOCOL-MAP §10 Resume step 5: a refused resume is a leave as the first and only frame.
    (_S.CONNECTING, _I.LEAVE_RETRY): _S.DISCONNECTED,
    (_S.CONNECTING, _I.LEAVE_DISCONNECT): _S.CLOSED,
    (_S.CONNECTING, _I.LOST): _S.DISCONNECTED,
    (_S.CONNECTING, _I.JOIN_TIMEOUT): _S.DISCONNECTED,
    (_S.CONNECTING, _I.CLIENT_LEAVE): _S.CLOSED,
    (_S.CONNECTING, _I.SEND): _S.CONNECTING,
    (_S.CONNECTED, _I.MESSAGE): _S.CONNECTED,
    # PROTOCOL-MAP §1 LeaveRequest: RESUME / RECONNECT ask us to come back, DISCONNECT ends it.
    (_S.CONNECTED, _I.LEAVE_RETRY): _S.DISCONNECTED,
    (_S.CONNECTED, _I.LEAVE_DISCONNECT): _S.CLOSED,
    (_S.CONNECTED, _I.LOST): _S.DISCONNECTED,
    # PROTOCOL-MAP §1 Ping/Pong: ping_timeout expiry is treated as signal loss.
    (_S.CONNECTED, _I.PING_TIMEOUT): _S.DISCONNECTED,
    (_S.CONNECTED, _I.CLIENT_LEAVE): _S.CLOSED,
    (_S.CONNECTED, _I.SEND): _S.CONNECTED,
    (_S.CONNECTED, _I.FLUSH): _S.CONNECTED,
    (_S.DISCONNECTED, _I.OPEN): _S.CONNECTING,
    (_S.DISCONNECTED, _I.OPEN_RESUME): _S.CONNECTING,
    (_S.DISCONNECTED, _I.CLIENT_LEAVE): _S.CLOSED,
    (_S.DISCONNECTED, _I.SEND): _S.DISCONNECTED,
}

#: Pairs that are accepted and do nothing (no state change, no output, no error).
SIGNAL_IGNORED: Final[frozenset[tuple[SignalState, SignalInput]]] = frozenset(
    {
        # The driver may report the end of a socket the session already gave up on.
        (_S.IDLE, _I.LOST),
        (_S.DISCONNECTED, _I.LOST),
        (_S.CLOSED, _I.LOST),
        # Leaving is idempotent.
        (_S.CLOSED, _I.CLIENT_LEAVE),
        # Nothing to flush into while no socket is up; the queue is kept.
        (_S.IDLE, _I.FLUSH),
        (_S.CONNECTING, _I.FLUSH),
        (_S.DISCONNECTED, _I.FLUSH),
    }
)


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvent:
    """Base class of every event a :class:`SignalSession` produces."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(SignalEvent):
    """The JoinResponse arrived: state CONNECTED, pinging started.

    Attributes:
        message: the JoinResponse.
    """

    message: pb.JoinResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(SignalEvent):
    """The ReconnectResponse arrived on a resume: state CONNECTED, queue still held.

    Send ``sync_state`` next, then call :meth:`SignalSession.flush_queued` (PROTOCOL-MAP §10).

    Attributes:
        message: the ReconnectResponse (``last_message_seq`` drives the data-packet resend).
    """

    message: pb.ReconnectResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinTimedOut(SignalEvent):
    """No first frame within ``join_timeout_s``: state DISCONNECTED; close the socket.

    Attributes:
        resume: whether the timed-out connection was a resume attempt.
    """

    resume: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalLost(SignalEvent):
    """The signal connection is gone (socket closed, or ping timeout): state DISCONNECTED.

    On ``reason == "ping timeout"`` the socket may still be open: the driver closes it.

    Attributes:
        reason: ``"ping timeout"`` or the reason given to :meth:`SignalSession.connection_lost`.
    """

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveReceived(SignalEvent):
    """The server sent ``leave`` (PROTOCOL-MAP §1 LeaveRequest).

    State is CLOSED for DISCONNECT, DISCONNECTED for anything else (RESUME: resume now;
    RECONNECT: join anew).

    Attributes:
        reason: why, passed through unchanged (numbers our schema does not name included).
        action: what to do next.
        message: the LeaveRequest (``regions`` for cloud reconnects).
    """

    reason: pb.DisconnectReason.ValueType
    action: pb.LeaveRequest.Action.ValueType
    message: pb.LeaveRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class PongReceived(SignalEvent):
    """A ``pong_resp`` arrived; :attr:`SignalSession.rtt_ms` was updated.

    Attributes:
        rtt_ms: round-trip time of the echoed ping, in milliseconds.
        message: the Pong.
    """

    rtt_ms: float
    message: pb.Pong


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefreshed(SignalEvent):
    """The server sent a fresh JWT; use it for later resumes (PROTOCOL-MAP §1 RefreshToken).

    Attributes:
        token: the new token (also in :attr:`SignalSession.refresh_token`).
    """

    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAnswered(SignalEvent):
    """A ``request_response`` arrived (PROTOCOL-MAP §7).

    Also produced for responses that match no pending request (``request_id`` 0 for errors about
    trickles and other requests without an id).

    Attributes:
        request_id: the id the server echoed.
        reason: ``OK`` or why the request failed.
        message_text: the server's human-readable message.
        message: the RequestResponse (its ``request`` oneof echoes the failed request).
    """

    request_id: int
    reason: pb.RequestResponse.Reason.ValueType
    message_text: str
    message: pb.RequestResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestTimedOut(SignalEvent):
    """A request from :meth:`SignalSession.update_metadata` got no answer in time.

    Attributes:
        request_id: the id :meth:`SignalSession.update_metadata` returned.
    """

    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestDropped(SignalEvent):
    """A pass-through request was not sent because no socket was usable (see module docstring).

    Attributes:
        kind: the request's oneof member (``offer``, ``trickle``, ...).
        request: the request that was dropped.
    """

    kind: str
    request: pb.SignalRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferReceived(SignalEvent):
    """The server offers an SDP (PROTOCOL-MAP §2 SessionDescription / offer ids).

    Attributes:
        sdp: the SDP text.
        offer_id: answer with this id.
        mid_to_track_id: downstream m-line mid -> track SID (from the offer's msid lines when the
            server sends no mapping, see :func:`sdp_msid_track_ids`).
        message: the SessionDescription.
    """

    sdp: str
    offer_id: int
    mid_to_track_id: dict[str, str]
    message: pb.SessionDescription


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerReceived(SignalEvent):
    """The server answers our offer (PROTOCOL-MAP §2 SessionDescription / offer ids).

    Attributes:
        sdp: the SDP text.
        answer_id: the id of the offer it answers.
        mid_to_track_id: downstream m-line mid -> track SID.
        message: the SessionDescription.
    """

    sdp: str
    answer_id: int
    mid_to_track_id: dict[str, str]
    message: pb.SessionDescription


@dataclass(frozen=True, slots=True, kw_only=True)
class TrickleReceived(SignalEvent):
    """A server ICE candidate (PROTOCOL-MAP §2 Trickle).

    Attributes:
        candidate_init: W3C ``RTCIceCandidateInit`` JSON.
        target: PUBLISHER or SUBSCRIBER, from the client's point of view.
        final: set on the server's last candidate.
        message: the TrickleRequest.
    """

    candidate_init: str
    target: pb.SignalTarget.ValueType
    final: bool
    message: pb.TrickleRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantsUpdated(SignalEvent):
    """Full participant snapshots (PROTOCOL-MAP §7 ParticipantUpdate).

    Attributes:
        participants: the snapshots, in server order.
        message: the ParticipantUpdate.
    """

    participants: tuple[pb.ParticipantInfo, ...]
    message: pb.ParticipantUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomUpdated(SignalEvent):
    """The room's state changed (PROTOCOL-MAP §7 Room metadata).

    Attributes:
        room: the new Room.
        message: the RoomUpdate.
    """

    room: pb.Room
    message: pb.RoomUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakersChanged(SignalEvent):
    """Active-speaker deltas.

    Attributes:
        speakers: the changed speakers.
        message: the SpeakersChanged message.
    """

    speakers: tuple[pb.SpeakerInfo, ...]
    message: pb.SpeakersChanged


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionQualityChanged(SignalEvent):
    """Connection quality of some participants.

    Attributes:
        updates: one entry per participant.
        message: the ConnectionQualityUpdate.
    """

    updates: tuple[pb.ConnectionQualityInfo, ...]
    message: pb.ConnectionQualityUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSectionsRequired(SignalEvent):
    """Single PC: add recvonly transceivers and offer again (PROTOCOL-MAP §2).

    Attributes:
        num_audios: audio sections to add (may be 0).
        num_videos: video sections to add (may be 0).
        message: the MediaSectionsRequirement.
    """

    num_audios: int
    num_videos: int
    message: pb.MediaSectionsRequirement


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(SignalEvent):
    """Any other known server message (``track_published``, ``mute``, ``subscription_response``...).

    Attributes:
        kind: the oneof member name.
        message: the whole SignalResponse.
    """

    kind: str
    message: pb.SignalResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolated(SignalEvent):
    """A frame was dropped: undecodable, a text frame, or not allowed in the current state.

    The session carries on; the driver decides whether to give up on the socket.

    Attributes:
        error: a :class:`~lkproto.errors.DecodeError` for undecodable frames, else a
            :class:`~lkproto.errors.RemoteProtocolError` naming the unexpected message.
        message: the decoded frame, when it could be decoded.
    """

    error: RemoteProtocolError
    message: pb.SignalResponse | None = None


AnySignalEvent: TypeAlias = (
    Joined
    | Resumed
    | JoinTimedOut
    | SignalLost
    | LeaveReceived
    | PongReceived
    | TokenRefreshed
    | RequestAnswered
    | RequestTimedOut
    | RequestDropped
    | OfferReceived
    | AnswerReceived
    | TrickleReceived
    | ParticipantsUpdated
    | RoomUpdated
    | SpeakersChanged
    | ConnectionQualityChanged
    | MediaSectionsRequired
    | MessageReceived
    | ProtocolViolated
)
"""Every event :class:`SignalSession` hands out; match it exhaustively (``assert_never``)."""


# --------------------------------------------------------------------------------------------
# The session


# The one positive-duration rule (STYLE rule 11), under the name this module's callers use.
_positive_seconds = positive_seconds


class SignalSession:
    """Sans-I/O state machine of one LiveKit signal session (see the module docstring).

    Args:
        join_timeout_s: how long a new socket may wait for its first frame.
        request_timeout_s: how long an :meth:`update_metadata` request waits for its answer.

    Raises:
        LocalProtocolError: a timeout is not a positive finite number.
    """

    def __init__(
        self,
        *,
        join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self._join_timeout_s = _positive_seconds("join_timeout_s", join_timeout_s)
        self._request_timeout_s = _positive_seconds("request_timeout_s", request_timeout_s)
        self._state = SignalState.IDLE
        self._resuming = False
        # Set on every loss, cleared by a fresh open or flush_queued(); holds the queue.
        self._holding = False
        self._events: deque[AnySignalEvent] = deque()
        self._outgoing: list[tuple[pb.SignalRequest, bytes]] = []
        self._queued: list[tuple[pb.SignalRequest, bytes]] = []
        self._join_response: pb.JoinResponse | None = None
        self._reconnect_response: pb.ReconnectResponse | None = None
        self._refresh_token: str | None = None
        self._rtt_ms: float | None = None
        self._ping_interval_s: float | None = None
        self._ping_timeout_s: float | None = None
        self._join_deadline: float | None = None
        self._ping_base: float = 0.0
        self._ping_count = 0
        self._next_ping_at: float | None = None
        self._ping_deadline: float | None = None
        self._next_request_id = 1
        self._pending: dict[int, float] = {}
        self._unknown_ignored = 0
        self._last_received: pb.SignalResponse | None = None

    # ---------------------------------------------------------------- state (read-only)

    @property
    def state(self) -> SignalState:
        """The current :class:`SignalState`."""
        return self._state

    @property
    def join_response(self) -> pb.JoinResponse | None:
        """The JoinResponse of the current server session (replaced by a full reconnect)."""
        return self._join_response

    @property
    def reconnect_response(self) -> pb.ReconnectResponse | None:
        """The ReconnectResponse of the latest resume, None since the latest JoinResponse."""
        return self._reconnect_response

    @property
    def refresh_token(self) -> str | None:
        """The latest token from ``refresh_token``; use it for resumes (PROTOCOL-MAP §1)."""
        return self._refresh_token

    @property
    def rtt_ms(self) -> float | None:
        """Latest signalling round-trip time in milliseconds, None before the first pong."""
        return self._rtt_ms

    @property
    def participant_sid(self) -> str | None:
        """Our participant SID (``PA_…``) from the JoinResponse, None before joining."""
        if self._join_response is None:
            return None
        return self._join_response.participant.sid or None

    @property
    def ping_interval_s(self) -> float | None:
        """The server's ``ping_interval``; None before joining or when the server disables it."""
        return self._ping_interval_s

    @property
    def ping_timeout_s(self) -> float | None:
        """The server's ``ping_timeout``; None before joining or when the server disables it."""
        return self._ping_timeout_s

    @property
    def server_answers_ok(self) -> bool:
        """Whether this server answers a successful request with ``RequestResponse{OK}``.

        False before joining, and for a server whose ``ServerInfo.protocol`` is below
        :data:`FIRST_PROTOCOL_ANSWERING_OK` (or absent): a driver then completes a metadata update
        when our own ParticipantInfo shows it (see :func:`metadata_applied`) and calls
        :meth:`settle_request`.
        """
        join = self._join_response
        return join is not None and join.server_info.protocol >= FIRST_PROTOCOL_ANSWERING_OK

    def settle_request(self, request_id: int) -> None:
        """Forget a pending request the driver saw take effect without an answer (old servers).

        Its deadline is dropped, so no :class:`RequestTimedOut` follows; an unknown id is ignored.
        """
        self._pending.pop(request_id, None)

    @property
    def pending_request_ids(self) -> frozenset[int]:
        """Ids of :meth:`update_metadata` requests still waiting for an answer."""
        return frozenset(self._pending)

    @property
    def queued_count(self) -> int:
        """Number of requests waiting for :meth:`flush_queued` (or the next JoinResponse)."""
        return len(self._queued)

    @property
    def unknown_messages_ignored(self) -> int:
        """Frames whose oneof member our schema does not know (ignored per PROTOCOL-MAP §1)."""
        return self._unknown_ignored

    @property
    def last_received(self) -> pb.SignalResponse | None:
        """The message the latest :meth:`receive_data` decoded; None if that frame did not decode
        or arrived on a closed session. Lets a wire tap avoid decoding each frame twice."""
        return self._last_received

    # ---------------------------------------------------------------- table machinery

    def _lookup(self, input_: SignalInput) -> SignalState | None:
        """Target state of a local input; None if ignored. Raises LocalProtocolError on misuse."""
        key = (self._state, input_)
        target = SIGNAL_TRANSITIONS.get(key)
        if target is not None:
            return target
        if key in SIGNAL_IGNORED:
            return None
        raise LocalProtocolError(
            f"{input_.value} is not allowed while the signal session is {self._state.value}"
        )

    def _set_state(self, new: SignalState) -> None:
        self._state = new
        if new is not SignalState.CONNECTING:
            self._join_deadline = None
        if new is not SignalState.CONNECTED:
            self._next_ping_at = None
            self._ping_deadline = None
        if new is SignalState.DISCONNECTED:
            self._holding = True
        if new is SignalState.CLOSED:
            # The session is over: nothing will be sent or answered any more. Frames already
            # produced (e.g. our leave) stay in the outgoing list for the driver.
            self._queued.clear()
            self._pending.clear()

    def _violation(self, text: str, message: pb.SignalResponse | None = None) -> None:
        self._events.append(ProtocolViolated(error=RemoteProtocolError(text), message=message))

    # ---------------------------------------------------------------- transport inputs

    def connection_opened(self, now: float, *, resume: bool = False) -> None:
        """The driver's WebSocket is up; its first frame must arrive within ``join_timeout_s``.

        Args:
            now: current monotonic time in seconds.
            resume: True if the socket was opened with the reconnect flag (PROTOCOL-MAP §10);
                the first frame is then a ReconnectResponse instead of a JoinResponse.

        Raises:
            LocalProtocolError: a socket is already open (CONNECTING/CONNECTED), the session is
                CLOSED, or ``resume`` is requested for a session that never joined.
        """
        target = self._lookup(SignalInput.OPEN_RESUME if resume else SignalInput.OPEN)
        assert target is not None  # no OPEN pair is in SIGNAL_IGNORED
        if resume and self._join_response is None:
            raise LocalProtocolError("cannot resume: this session never received a JoinResponse")
        self._set_state(target)
        self._resuming = resume
        if not resume:
            # A fresh join starts a new server session: nothing is waiting for a sync_state.
            self._holding = False
        self._join_deadline = now + self._join_timeout_s

    def receive_data(self, data: bytes | bytearray | memoryview | str, now: float) -> None:
        """Feed one WebSocket frame. Never raises on bad remote input.

        Args:
            data: the frame; a ``str`` (text frame) is reported as :class:`ProtocolViolated`.
            now: current monotonic time in seconds.

        Raises:
            LocalProtocolError: no socket was ever opened (state IDLE).
        """
        self._last_received = None
        state = self._state
        if state is SignalState.IDLE:
            raise LocalProtocolError("receive_data() before connection_opened()")
        if state is SignalState.DISCONNECTED or state is SignalState.CLOSED:
            return  # a socket we no longer listen to
        if state is SignalState.CONNECTED and self._ping_timeout_s is not None:
            # PROTOCOL-MAP §1 Ping/Pong: any inbound frame proves the connection is alive.
            self._ping_deadline = now + self._ping_timeout_s
        try:
            response = decode_signal_response(data)
        except DecodeError as exc:
            self._events.append(ProtocolViolated(error=exc))
            return
        self._last_received = response
        kind = response.WhichOneof("message")
        if kind is None:
            # PROTOCOL-MAP §1 Oneof field numbers: unknown cases must be ignored.
            self._unknown_ignored += 1
            return
        if kind == "join":
            input_ = SignalInput.JOIN
        elif kind == "reconnect":
            input_ = SignalInput.RESUMED
        elif kind == "leave":
            disconnect = response.leave.action == pb.LeaveRequest.DISCONNECT
            input_ = SignalInput.LEAVE_DISCONNECT if disconnect else SignalInput.LEAVE_RETRY
        else:
            input_ = SignalInput.MESSAGE
        target = SIGNAL_TRANSITIONS.get((state, input_))
        if target is None:
            self._violation(f"unexpected {kind} while {state.value}", response)
            return
        if input_ is SignalInput.JOIN:
            if self._resuming:
                self._violation("join on a resumed connection (expected reconnect)", response)
                return
            self._on_join(response.join, now)
        elif input_ is SignalInput.RESUMED:
            if not self._resuming:
                self._violation("reconnect on a fresh connection (expected join)", response)
                return
            self._on_resumed(response.reconnect, now)
        elif input_ is SignalInput.MESSAGE:
            self._on_message(kind, response, now)
        else:
            leave = response.leave
            self._set_state(target)
            self._events.append(
                LeaveReceived(reason=leave.reason, action=leave.action, message=leave)
            )

    def connection_lost(self, now: float, reason: str) -> None:
        """The driver's WebSocket closed or failed.

        Produces :class:`SignalLost` if the session was using the socket; ignored when the session
        had already given up on it (DISCONNECTED, CLOSED) or never opened one (IDLE).

        Args:
            now: current monotonic time in seconds.
            reason: human-readable cause, copied into :class:`SignalLost`.
        """
        target = self._lookup(SignalInput.LOST)
        if target is None:
            return
        self._set_state(target)
        self._events.append(SignalLost(reason=reason))

    def handle_timer(self, now: float) -> None:
        """Fire every deadline that is due at ``now``.

        Connection deadlines (join timeout, ping timeout, next ping) are handled first, then request
        timeouts in deadline order. Afterwards :meth:`get_timer` is None or later than ``now``.

        Args:
            now: current monotonic time in seconds.
        """
        if self._join_deadline is not None and now >= self._join_deadline:
            target = SIGNAL_TRANSITIONS[(self._state, SignalInput.JOIN_TIMEOUT)]
            self._set_state(target)
            self._events.append(JoinTimedOut(resume=self._resuming))
        if self._ping_deadline is not None and now >= self._ping_deadline:
            target = SIGNAL_TRANSITIONS[(self._state, SignalInput.PING_TIMEOUT)]
            self._set_state(target)
            self._events.append(SignalLost(reason="ping timeout"))
        if self._next_ping_at is not None and now >= self._next_ping_at:
            self._send_ping(now)
        if self._pending:
            due = sorted(
                (deadline, request_id)
                for request_id, deadline in self._pending.items()
                if now >= deadline
            )
            for _, request_id in due:
                del self._pending[request_id]
                self._events.append(RequestTimedOut(request_id=request_id))

    def get_timer(self) -> float | None:
        """The next deadline (same clock as ``now``), or None when nothing is scheduled."""
        deadlines = [
            d
            for d in (self._join_deadline, self._next_ping_at, self._ping_deadline)
            if d is not None
        ]
        if self._pending:
            deadlines.append(min(self._pending.values()))
        return min(deadlines) if deadlines else None

    # ---------------------------------------------------------------- outputs

    def requests_to_send(self) -> list[tuple[pb.SignalRequest, bytes]]:
        """Frames to write, in order, each with its binary encoding. Drains the list."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> AnySignalEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- user / engine inputs

    def send_offer(self, sdp: str, offer_id: int, now: float) -> None:
        """Send our SDP offer (pass-through: dropped unless CONNECTED).

        Raises:
            LocalProtocolError: state IDLE or CLOSED, or bad arguments.
        """
        self._submit(lambda: pb.SignalRequest(offer=_sdp("offer", sdp, offer_id)), now)

    def send_answer(self, sdp: str, answer_id: int, now: float) -> None:
        """Answer a server offer, echoing its id (pass-through: dropped unless CONNECTED).

        Raises:
            LocalProtocolError: state IDLE or CLOSED, or bad arguments.
        """
        self._submit(lambda: pb.SignalRequest(answer=_sdp("answer", sdp, answer_id)), now)

    def send_trickle(
        self,
        candidate_init: str,
        target: pb.SignalTarget.ValueType,
        now: float,
        *,
        final: bool = False,
    ) -> None:
        """Send one local ICE candidate (pass-through: dropped unless CONNECTED).

        Args:
            candidate_init: W3C ``RTCIceCandidateInit`` JSON (PROTOCOL-MAP §2 Trickle).
            target: PUBLISHER or SUBSCRIBER (single PC: always PUBLISHER).
            now: current monotonic time in seconds.
            final: mark the last candidate.

        Raises:
            LocalProtocolError: state IDLE or CLOSED, or bad arguments.
        """
        self._submit(
            lambda: pb.SignalRequest(
                trickle=pb.TrickleRequest(candidateInit=candidate_init, target=target, final=final)
            ),
            now,
        )

    def send_leave(
        self,
        now: float,
        *,
        reason: pb.DisconnectReason.ValueType = pb.CLIENT_INITIATED,
        action: pb.LeaveRequest.Action.ValueType = pb.LeaveRequest.DISCONNECT,
    ) -> None:
        """End the session: send ``leave`` if a socket is open (CONNECTING/CONNECTED), then CLOSED.

        Idempotent: a second call does nothing. The server only reads ``reason``
        (PROTOCOL-MAP §1 LeaveRequest).

        Raises:
            LocalProtocolError: bad arguments.
        """
        request = _build(
            lambda: pb.SignalRequest(leave=pb.LeaveRequest(reason=reason, action=action))
        )
        self._leave(request)

    def update_metadata(
        self,
        now: float,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> int:
        """Ask the server to change our name, metadata and/or attributes (PROTOCOL-MAP §7).

        Empty strings mean "unchanged"; attributes are a patch (value ``""`` deletes a key). The
        request is queued while not connected or while a resume is pending. Its answer comes as
        :class:`RequestAnswered`, or :class:`RequestTimedOut` ``request_timeout_s`` after this call
        (the deadline keeps running across a resume).

        Returns:
            The request id (uint32, from 1, incrementing, wrapping to 1).

        Raises:
            LocalProtocolError: state IDLE or CLOSED, or bad arguments.
        """
        self._lookup(SignalInput.SEND)
        request_id = self._next_request_id

        def build() -> pb.SignalRequest:
            return pb.SignalRequest(
                update_metadata=pb.UpdateParticipantMetadata(
                    name=name or "",
                    metadata=metadata or "",
                    attributes=dict(attributes) if attributes is not None else None,
                    request_id=request_id,
                )
            )

        self._submit(build, now)
        self._next_request_id = 1 if request_id >= _UINT32_MAX else request_id + 1
        self._pending[request_id] = now + self._request_timeout_s
        return request_id

    def send_sync_state(self, sync: pb.SyncState, now: float) -> None:
        """Send SyncState after a ReconnectResponse (PROTOCOL-MAP §10 Resume step 3).

        Pass-through: dropped unless CONNECTED.

        Raises:
            LocalProtocolError: state IDLE or CLOSED.
        """
        self._submit(lambda: pb.SignalRequest(sync_state=sync), now)

    def send_simulate(self, scenario: pb.SimulateScenario, now: float) -> None:
        """Ask the server to simulate a failure (PROTOCOL-MAP §10 SimulateScenario).

        Pass-through: dropped unless CONNECTED.

        Raises:
            LocalProtocolError: state IDLE or CLOSED.
        """
        self._submit(lambda: pb.SignalRequest(simulate=scenario), now)

    def send(self, request: pb.SignalRequest, now: float) -> None:
        """Send any request under the queueing rule of its kind (module docstring).

        A ``leave`` behaves like :meth:`send_leave`. An ``update_metadata`` sent this way is not
        tracked for timeouts; use :meth:`update_metadata` for that. The request is copied.

        Raises:
            LocalProtocolError: the request is empty, cannot be encoded, or the state is IDLE or
                CLOSED.
        """
        copy = pb.SignalRequest()
        copy.CopyFrom(request)
        if copy.WhichOneof("message") == "leave":
            self._leave(copy)
            return
        self._submit(lambda: copy, now)

    def flush_queued(self, now: float) -> None:
        """Send the requests queued during an outage, in order, and stop holding new ones.

        Call it once the resume is complete (PROTOCOL-MAP §10 Resume step 4). A no-op unless
        CONNECTED (the queue is kept for later).

        Raises:
            LocalProtocolError: the session is CLOSED.
        """
        if self._lookup(SignalInput.FLUSH) is None:
            return
        self._flush()

    # ---------------------------------------------------------------- internals

    def _flush(self) -> None:
        self._outgoing.extend(self._queued)
        self._queued.clear()
        self._holding = False

    def _submit(self, build: _Builder, now: float) -> None:
        target = self._lookup(SignalInput.SEND)
        assert target is self._state  # every SEND edge is a self-loop
        request = _build(build)
        kind = request.WhichOneof("message")
        if kind is None:
            raise LocalProtocolError("cannot send an empty SignalRequest")
        data = encode_signal_request(request)
        connected = self._state is SignalState.CONNECTED
        if kind in PASS_THROUGH_KINDS:
            if connected:
                self._outgoing.append((request, data))
            else:
                self._events.append(RequestDropped(kind=kind, request=request))
        elif connected and not self._holding:
            self._outgoing.append((request, data))
        else:
            self._queued.append((request, data))

    def _leave(self, request: pb.SignalRequest) -> None:
        target = self._lookup(SignalInput.CLIENT_LEAVE)
        if target is None:
            return
        data = encode_signal_request(request)
        # PROTOCOL-MAP §10 Full reconnect: "send leave if the socket is alive".
        if self._state in (SignalState.CONNECTING, SignalState.CONNECTED):
            self._outgoing.append((request, data))
        self._set_state(target)

    def _on_join(self, join: pb.JoinResponse, now: float) -> None:
        self._join_response = join
        self._reconnect_response = None
        # PROTOCOL-MAP §1 JoinResponse: ping_timeout=10 (15 s), ping_interval=11 (5 s); a server
        # that sends 0 (or a nonsensical negative) does not want pings, as JS treats it.
        self._ping_interval_s = float(join.ping_interval) if join.ping_interval > 0 else None
        self._ping_timeout_s = float(join.ping_timeout) if join.ping_timeout > 0 else None
        self._set_state(SIGNAL_TRANSITIONS[(self._state, SignalInput.JOIN)])
        self._start_pinging(now)
        self._events.append(Joined(message=join))
        self._flush()

    def _on_resumed(self, reconnect: pb.ReconnectResponse, now: float) -> None:
        self._reconnect_response = reconnect
        self._set_state(SIGNAL_TRANSITIONS[(self._state, SignalInput.RESUMED)])
        # The ping settings of the JoinResponse still apply; the queue stays held (module doc).
        self._start_pinging(now)
        self._events.append(Resumed(message=reconnect))

    def _start_pinging(self, now: float) -> None:
        if self._ping_interval_s is not None:
            self._ping_base = now
            self._ping_count = 1
            self._next_ping_at = now + self._ping_interval_s
        if self._ping_timeout_s is not None:
            self._ping_deadline = now + self._ping_timeout_s

    def _send_ping(self, now: float) -> None:
        interval = self._ping_interval_s
        assert interval is not None
        # PROTOCOL-MAP §1 Ping/Pong: Ping{timestamp=our clock in ms, rtt=last measured rtt in ms}.
        rtt = round(self._rtt_ms) if self._rtt_ms is not None else 0
        # Floor, so that a pong can never look older than its ping.
        stamp = math.floor(now * 1000)
        request = pb.SignalRequest(ping_req=pb.Ping(timestamp=stamp, rtt=rtt))
        self._outgoing.append((request, encode_signal_request(request)))
        # Stay on the grid join_time + k * interval (no drift); skip the slots a late timer missed.
        count = max(self._ping_count + 1, math.floor((now - self._ping_base) / interval) + 1)
        while self._ping_base + count * interval <= now:
            count += 1
        self._ping_count = count
        self._next_ping_at = self._ping_base + count * interval

    def _on_message(self, kind: str, response: pb.SignalResponse, now: float) -> None:
        event: AnySignalEvent | None
        if kind == "pong_resp":
            pong = response.pong_resp
            rtt_ms = now * 1000 - pong.last_ping_timestamp
            if rtt_ms < 0:
                self._violation("pong_resp echoes a timestamp we have not reached yet", response)
                return
            self._rtt_ms = rtt_ms
            event = PongReceived(rtt_ms=rtt_ms, message=pong)
        elif kind == "pong":
            event = None  # legacy int64 pong: liveness only (PROTOCOL-MAP §1 Ping/Pong)
        elif kind == "refresh_token":
            self._refresh_token = response.refresh_token
            event = TokenRefreshed(token=response.refresh_token)
        elif kind == "request_response":
            rr = response.request_response
            self._pending.pop(rr.request_id, None)
            event = RequestAnswered(
                request_id=rr.request_id, reason=rr.reason, message_text=rr.message, message=rr
            )
        elif kind == "offer":
            sd = response.offer
            event = OfferReceived(
                sdp=sd.sdp,
                offer_id=sd.id,
                # A release without SessionDescription.mid_to_track_id (v1.7.2) names each
                # section's track only in its msid; see sdp_msid_track_ids.
                mid_to_track_id=dict(sd.mid_to_track_id) or sdp_msid_track_ids(sd.sdp),
                message=sd,
            )
        elif kind == "answer":
            sd = response.answer
            event = AnswerReceived(
                sdp=sd.sdp, answer_id=sd.id, mid_to_track_id=dict(sd.mid_to_track_id), message=sd
            )
        elif kind == "trickle":
            tr = response.trickle
            event = TrickleReceived(
                candidate_init=tr.candidateInit, target=tr.target, final=tr.final, message=tr
            )
        elif kind == "update":
            pu = response.update
            event = ParticipantsUpdated(participants=tuple(pu.participants), message=pu)
        elif kind == "room_update":
            ru = response.room_update
            event = RoomUpdated(room=ru.room, message=ru)
        elif kind == "speakers_changed":
            sc = response.speakers_changed
            event = SpeakersChanged(speakers=tuple(sc.speakers), message=sc)
        elif kind == "connection_quality":
            cq = response.connection_quality
            event = ConnectionQualityChanged(updates=tuple(cq.updates), message=cq)
        elif kind == "media_sections_requirement":
            ms = response.media_sections_requirement
            event = MediaSectionsRequired(
                num_audios=ms.num_audios, num_videos=ms.num_videos, message=ms
            )
        else:
            event = MessageReceived(kind=kind, message=response)
        if event is not None:
            self._events.append(event)


def metadata_applied(
    info: pb.ParticipantInfo,
    *,
    name: str | None,
    metadata: str | None,
    attributes: Mapping[str, str] | None,
) -> bool:
    """Whether ``info`` already shows an UpdateParticipantMetadata with these arguments.

    Follows the request's own rules (PROTOCOL-MAP §7): an empty or absent name/metadata means
    "unchanged", an attribute patch value ``""`` deletes the key. This is how livekit-client
    completes an update on a server that sends no ``RequestResponse{OK}``
    (JS:src/room/participant/LocalParticipant.ts requestMetadataUpdate).

    Args:
        info: our own latest ParticipantInfo.
        name: the requested name, as passed to :meth:`SignalSession.update_metadata`.
        metadata: the requested metadata.
        attributes: the requested attribute patch.

    Returns:
        True when every requested change is visible in ``info``.
    """
    if name and info.name != name:
        return False
    if metadata and info.metadata != metadata:
        return False
    for key, value in (attributes or {}).items():
        if value == "":
            if key in info.attributes:
                return False
        elif info.attributes.get(key) != value:
            return False
    return True


def sdp_msid_track_ids(sdp: str) -> dict[str, str]:
    """mid -> track SID from the ``a=msid:<stream> <track>`` line of each section of ``sdp``.

    The server's offer names a downstream section's track in its msid (PROTOCOL-MAP §9); newer
    releases also send ``SessionDescription.mid_to_track_id``, older ones (v1.7.2) do not. aiortc
    cannot be asked instead: it takes a track id from the msid only when the session's
    ``msid-semantic`` lists the stream, and pion writes ``a=msid-semantic:WMS*`` (no space), which
    aiortc reads as a semantic named ``WMS*``. Only ``TR_`` SIDs are taken; the first msid of a
    section wins.
    """
    out: dict[str, str] = {}
    mid: str | None = None
    track: str | None = None

    def close_section() -> None:
        if mid is not None and track is not None:
            out[mid] = track

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close_section()
            mid = track = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip() or None
        elif line.startswith("a=msid:") and track is None:
            bits = line[len("a=msid:") :].split()
            if len(bits) >= 2 and bits[1].startswith("TR_"):
                track = bits[1]
    close_section()
    return out


def _build(build: _Builder) -> pb.SignalRequest:
    """Run a request constructor, mapping protobuf's argument errors to LocalProtocolError."""
    try:
        return build()
    except (ValueError, TypeError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot build SignalRequest: {exc}") from exc


def _sdp(kind: str, sdp: str, sdp_id: int) -> pb.SessionDescription:
    return pb.SessionDescription(type=kind, sdp=sdp, id=sdp_id)
