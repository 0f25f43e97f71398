"""What a frontend knows about "its" agent: a pure state machine deriving the agent state.

Theory of operation
-------------------
PROTOCOL-MAP §8 "Frontend-derived state". A LiveKit Agents session shows up in a room as a
remote participant of kind ``AGENT``; the framework publishes its conversational state in the
``lk.agent.state`` attribute. Frontends (``CJS:packages/react/src/hooks/useAgent.ts``) fold that
together with the room's connection state, the local microphone and a join deadline into one
:class:`AgentState`. :class:`AgentTracker` is that fold as a sans-I/O machine: the driver feeds it
room, microphone and participant facts (each with ``now``), re-arms a timer from
:meth:`~AgentTracker.get_timer`, calls :meth:`~AgentTracker.handle_timer` when it expires, and pulls
events with :meth:`~AgentTracker.next_event`. No clock, no I/O.

Who is the agent (§8): the first participant (in join order) of kind ``AGENT`` *without* the
``lk.publish_on_behalf`` attribute key. An ``AGENT`` participant whose ``lk.publish_on_behalf``
equals the agent's identity is its worker/avatar (:attr:`AgentTracker.worker_identity`); it is never
taken for the agent. Only ``AGENT`` participants are kept.

The derived state is a pure function of five facts (:func:`derive_agent_state`), first match wins:

1. ``failed`` if there is a failure reason;
2. ``disconnected`` if the room is disconnected;
3. the agent's ``lk.agent.state`` if an agent is present and has one;
4. ``pre-connect-buffering`` if a local microphone is published;
5. ``connecting``.

Failure reasons (texts as in ``useAgent.ts``), reported in this order:

* the **join deadline**: armed for :data:`DEFAULT_AGENT_CONNECT_TIMEOUT_S` (20 s,
  ``DEFAULT_AGENT_CONNECT_TIMEOUT_MILLISECONDS``) when the room leaves the disconnected state.
  When it expires with no agent: :data:`REASON_AGENT_DID_NOT_JOIN`; with an agent that is not yet
  connected (listening/thinking/speaking): :data:`REASON_AGENT_NOT_INITIALIZED`. Cleared when an
  agent (re)appears, as ``useAgent`` clears it whenever ``agentParticipant`` changes.
* **agent left**: the agent left while the room was not disconnected:
  :data:`REASON_AGENT_LEFT`. Sticky until the room disconnects, even if another agent joins.

A disconnected room clears both reasons, disarms the deadline and forgets every participant
(the agent, if any, "leaves" with ``expected=True``).

Every input first fires an expired deadline (so a join at 20.0 s is processed *after* the
deadline that expired at 20.0 s, the order the JS timers would have produced), then applies the
input, then emits, in this order: :class:`AgentLeft` / :class:`AgentJoined` (agent identity
changed), :class:`AgentFailed` (the failure reasons changed and are not empty),
:class:`AgentStateChanged` (the derived state changed; exactly one per change).

Decisions where ``useAgent.ts`` is silent or accidental:

* **Unknown ``lk.agent.state`` values** (anything but ``initializing``, ``idle``, ``listening``,
  ``thinking``, ``speaking``): upstream casts any non-empty string into the state. Here an unknown
  value keeps the last valid value *of the same agent* (a newer framework's state does not flip a
  UI back to "connecting"), or counts as absent if there was none. An empty or removed value
  counts as absent, as upstream's truthiness check does.
* **The deadline is disarmed as soon as the agent is connected** (listening/thinking/speaking).
  Upstream samples the state only when its 20 s timer fires, so an agent that was listening at
  5 s and ``idle`` at exactly 20 s would be failed there; here it is not.
* **Attributes of an agent already present** count at once. The legacy (pre-2026) hook only read
  the agent's attributes from later change events.
* **Disconnected dominates** the microphone and the agent attribute (rule 2). Upstream checks the
  room first but lets the microphone and attribute override it; that combination only arises
  transiently there (a disconnected room has no remote participants).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from lkproto.core.durations import positive_seconds

__all__ = [
    "ATTR_AGENT_NAME",
    "ATTR_AGENT_STATE",
    "ATTR_PUBLISH_ON_BEHALF",
    "ATTR_SEGMENT_ID",
    "ATTR_TRANSCRIBED_TRACK_ID",
    "ATTR_TRANSCRIPTION_FINAL",
    "CAN_LISTEN_STATES",
    "CONNECTED_STATES",
    "DEFAULT_AGENT_CONNECT_TIMEOUT_S",
    "FINISHED_STATES",
    "PENDING_STATES",
    "REASON_AGENT_DID_NOT_JOIN",
    "REASON_AGENT_LEFT",
    "REASON_AGENT_NOT_INITIALIZED",
    "SDK_STATES",
    "TOPIC_CHAT",
    "TOPIC_PRECONNECT_AUDIO",
    "TOPIC_TRANSCRIPTION",
    "AgentEvent",
    "AgentFailed",
    "AgentJoined",
    "AgentLeft",
    "AgentState",
    "AgentStateChanged",
    "AgentTracker",
    "AnyAgentEvent",
    "derive_agent_state",
]

# --------------------------------------------------------------------------------------------
# Attribute keys and topics (PROTOCOL-MAP §8 tables; AG:livekit-agents/livekit/agents/types.py,
# CJS:packages/core/src/helper/participant-attributes.ts)

#: On the agent participant: its conversational state (:data:`SDK_STATES`).
ATTR_AGENT_STATE: Final = "lk.agent.state"
#: On the agent participant: the agent's name, set by the framework on join.
ATTR_AGENT_NAME: Final = "lk.agent.name"
#: On a worker/avatar participant: identity of the agent it publishes for.
ATTR_PUBLISH_ON_BEHALF: Final = "lk.publish_on_behalf"
#: Text streams with agent and user transcripts.
TOPIC_TRANSCRIPTION: Final = "lk.transcription"
#: Text streams with typed user input and chat.
TOPIC_CHAT: Final = "lk.chat"
#: Byte stream with microphone audio captured before the agent joined.
TOPIC_PRECONNECT_AUDIO: Final = "lk.agent.pre-connect-audio-buffer"
#: Transcription stream attribute: stable id shared by the interim and final streams of a segment.
ATTR_SEGMENT_ID: Final = "lk.segment_id"
#: Transcription stream attribute: ``"true"`` on the final version of a segment.
ATTR_TRANSCRIPTION_FINAL: Final = "lk.transcription_final"
#: Transcription stream attribute: SID of the audio track transcribed (absent for text replies).
ATTR_TRANSCRIBED_TRACK_ID: Final = "lk.transcribed_track_id"

# PROTOCOL-MAP §8: ``DEFAULT_AGENT_CONNECT_TIMEOUT_MILLISECONDS = 20_000`` in useAgent.ts.
DEFAULT_AGENT_CONNECT_TIMEOUT_S: Final = 20.0

# Failure reasons, worded as useAgent.ts words them (``agentTimeoutFailureReason``,
# ``agentDisconnectedFailureReason``).
REASON_AGENT_DID_NOT_JOIN: Final = "Agent did not join the room."
REASON_AGENT_NOT_INITIALIZED: Final = "Agent joined the room but did not complete initializing."
"""Failure reason when the connect timeout fired with the agent in the room but not yet in a
connected state (useAgent.ts ``agentTimeoutFailureReason``, PROTOCOL-MAP §8)."""
REASON_AGENT_LEFT: Final = "Agent left the room unexpectedly."
"""Failure reason when the agent participant disconnected while our room was still connected
(useAgent.ts ``agentDisconnectedFailureReason``, PROTOCOL-MAP §8)."""


class AgentState(enum.StrEnum):
    """The agent state a frontend shows; values are the ``useAgent.ts`` strings (§8)."""

    DISCONNECTED = "disconnected"
    """The room is disconnected."""
    CONNECTING = "connecting"
    """The room is (being) connected; no agent state known yet."""
    PRE_CONNECT_BUFFERING = "pre-connect-buffering"
    """No agent state yet, but the local microphone is published (its audio is being buffered)."""
    INITIALIZING = "initializing"
    """Agent-reported: starting up."""
    IDLE = "idle"
    """Agent-reported: idle."""
    LISTENING = "listening"
    """Agent-reported: listening to the user."""
    THINKING = "thinking"
    """Agent-reported: generating a reply."""
    SPEAKING = "speaking"
    """Agent-reported: speaking."""
    FAILED = "failed"
    """A failure reason exists (see :attr:`AgentTracker.failure_reasons`)."""


_S = AgentState

#: The values an agent may put in ``lk.agent.state`` (``AgentSdkStates`` in useAgent.ts).
SDK_STATES: Final = frozenset({_S.INITIALIZING, _S.IDLE, _S.LISTENING, _S.THINKING, _S.SPEAKING})
#: ``isConnected``: the agent is ready for interaction (PROTOCOL-MAP §8 Getters).
CONNECTED_STATES: Final = frozenset({_S.LISTENING, _S.THINKING, _S.SPEAKING})
#: ``canListen``: user speech is being captured, by the agent or the pre-connect buffer.
CAN_LISTEN_STATES: Final = frozenset(
    {_S.PRE_CONNECT_BUFFERING, _S.LISTENING, _S.THINKING, _S.SPEAKING}
)
#: ``isFinished``: the conversation is over, expectedly or not.
FINISHED_STATES: Final = frozenset({_S.DISCONNECTED, _S.FAILED})
#: ``isPending``: waiting for the agent.
PENDING_STATES: Final = frozenset({_S.CONNECTING, _S.INITIALIZING, _S.IDLE})


def derive_agent_state(
    *,
    failed: bool,
    room_connected: bool,
    agent_state: AgentState | None,
    microphone_published: bool,
) -> AgentState:
    """The frontend agent state from its inputs (PROTOCOL-MAP §8 State; module docstring rules).

    Args:
        failed: some failure reason exists.
        room_connected: the room is connecting, connected or reconnecting (not disconnected).
        agent_state: the present agent's valid ``lk.agent.state``, None without agent or value.
        microphone_published: a local microphone publication exists.
    """
    if failed:
        return AgentState.FAILED
    if not room_connected:
        return AgentState.DISCONNECTED
    if agent_state is not None:
        return agent_state
    if microphone_published:
        return AgentState.PRE_CONNECT_BUFFERING
    return AgentState.CONNECTING


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEvent:
    """Base class of every event :class:`AgentTracker` emits."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged(AgentEvent):
    """The derived :class:`AgentState` changed.

    Attributes:
        old: the previous state.
        new: the current state.
    """

    old: AgentState
    new: AgentState


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentJoined(AgentEvent):
    """A participant became the agent (it joined, or the previous agent left and it remained).

    Attributes:
        identity: the agent's identity.
    """

    identity: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLeft(AgentEvent):
    """The participant that was the agent no longer is.

    Attributes:
        identity: its identity.
        expected: False when it left while the room was not disconnected (the
            :data:`REASON_AGENT_LEFT` failure); True when the room disconnected, or when it
            stopped qualifying as the agent without leaving (it gained ``lk.publish_on_behalf``).
    """

    identity: str
    expected: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFailed(AgentEvent):
    """The failure reasons changed and are not empty (the state is, or stays, ``failed``).

    Attributes:
        reasons: all current reasons, deadline reason first.
    """

    reasons: tuple[str, ...]


AnyAgentEvent: TypeAlias = AgentStateChanged | AgentJoined | AgentLeft | AgentFailed
"""Every concrete agent event, for exhaustive ``match`` with ``assert_never``."""


# --------------------------------------------------------------------------------------------
# Tracker


@dataclass(slots=True)
class _Peer:
    attributes: Mapping[str, str]
    # The last valid lk.agent.state of this participant (module docstring, unknown values).
    sdk_state: AgentState | None


def _sdk_state(attributes: Mapping[str, str], previous: AgentState | None) -> AgentState | None:
    raw = attributes.get(ATTR_AGENT_STATE, "")
    if not raw:
        # useAgent.ts tests the attribute for truthiness: empty means absent.
        return None
    try:
        state = AgentState(raw)
    except ValueError:
        return previous
    return state if state in SDK_STATES else previous


def _frozen(attributes: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(attributes))


class AgentTracker:
    """The frontend's view of its agent: who it is, its worker, and the derived state.

    See the module docstring for the rules. Inputs: :meth:`room_state_changed`,
    :meth:`microphone_published`, :meth:`participant_joined`, :meth:`attributes_changed`,
    :meth:`participant_left`, :meth:`handle_timer`. Outputs: :meth:`next_event`,
    :meth:`get_timer` and the read-only properties.

    Args:
        agent_connect_timeout_s: how long after the room starts connecting an agent must be
            connected (useAgent's ``agentConnectTimeoutMilliseconds``).

    Raises:
        LocalProtocolError: ``agent_connect_timeout_s`` is not a positive finite number.
    """

    def __init__(self, *, agent_connect_timeout_s: float = DEFAULT_AGENT_CONNECT_TIMEOUT_S) -> None:
        self._timeout_s = positive_seconds("agent_connect_timeout_s", agent_connect_timeout_s)
        self._room_connected = False
        self._microphone = False
        self._peers: dict[str, _Peer] = {}
        self._agent: str | None = None
        self._deadline: float | None = None
        self._timeout_reason: str | None = None
        self._left_reason: str | None = None
        self._reported_reasons: tuple[str, ...] = ()
        self._state = AgentState.DISCONNECTED
        self._events: deque[AnyAgentEvent] = deque()

    # ---------------------------------------------------------------- state (read-only)

    @property
    def state(self) -> AgentState:
        """The derived agent state."""
        return self._state

    @property
    def agent_identity(self) -> str | None:
        """Identity of the agent participant, None when there is none."""
        return self._agent

    @property
    def worker_identity(self) -> str | None:
        """Identity of the agent's worker/avatar (first ``AGENT`` participant whose
        ``lk.publish_on_behalf`` is the agent's identity), None without agent or worker."""
        if self._agent is None:
            return None
        for identity, peer in self._peers.items():
            if peer.attributes.get(ATTR_PUBLISH_ON_BEHALF) == self._agent:
                return identity
        return None

    @property
    def agent_attributes(self) -> Mapping[str, str]:
        """The agent's current attributes (empty without agent); read-only."""
        if self._agent is None:
            return MappingProxyType({})
        return self._peers[self._agent].attributes

    @property
    def failure_reasons(self) -> tuple[str, ...]:
        """Why the state is ``failed``; empty otherwise."""
        return tuple(r for r in (self._timeout_reason, self._left_reason) if r is not None)

    @property
    def is_connected(self) -> bool:
        """``isConnected``: the state is listening, thinking or speaking."""
        return self._state in CONNECTED_STATES

    @property
    def can_listen(self) -> bool:
        """``canListen``: the state is pre-connect-buffering, listening, thinking or speaking."""
        return self._state in CAN_LISTEN_STATES

    @property
    def is_finished(self) -> bool:
        """``isFinished``: the state is disconnected or failed."""
        return self._state in FINISHED_STATES

    @property
    def is_pending(self) -> bool:
        """``isPending``: the state is connecting, initializing or idle."""
        return self._state in PENDING_STATES

    # ---------------------------------------------------------------- inputs

    def room_state_changed(self, connected: bool, now: float) -> None:
        """The room's connection state changed.

        Args:
            connected: True for connecting, connected or reconnecting; False for disconnected.
                Repeating the current value is a no-op (reconnecting does not re-arm).
            now: the current time in seconds.
        """
        self._advance(now)
        if connected and not self._room_connected:
            # useAgent.ts startAgentTimeout: a fresh deadline and no timeout reason.
            self._deadline = now + self._timeout_s
            self._timeout_reason = None
        elif not connected and self._room_connected:
            # clearAgentTimeout, and the disconnect reason is cleared "when the room
            # disconnects"; a disconnected room has no remote participants.
            self._deadline = None
            self._timeout_reason = None
            self._left_reason = None
            self._peers.clear()
        self._room_connected = connected
        self._settle()

    def microphone_published(self, published: bool, now: float) -> None:
        """A local microphone publication appeared (True) or went away (False)."""
        self._advance(now)
        self._microphone = published
        self._settle()

    def participant_joined(
        self, identity: str, kind_is_agent: bool, attributes: Mapping[str, str], now: float
    ) -> None:
        """A remote participant joined (or its kind/attributes are known anew).

        Args:
            identity: its identity.
            kind_is_agent: ``ParticipantInfo.kind == AGENT``; other participants are ignored.
            attributes: its full attribute map.
            now: the current time in seconds.
        """
        self._advance(now)
        if kind_is_agent:
            previous = self._peers.get(identity)
            self._peers[identity] = _Peer(
                attributes=_frozen(attributes),
                sdk_state=_sdk_state(attributes, previous.sdk_state if previous else None),
            )
        else:
            self._peers.pop(identity, None)
        self._settle()

    def attributes_changed(self, identity: str, attributes: Mapping[str, str], now: float) -> None:
        """A remote participant's attributes changed.

        Args:
            identity: whose.
            attributes: the **full** current map (not a diff); unknown identities are ignored.
            now: the current time in seconds.
        """
        self._advance(now)
        peer = self._peers.get(identity)
        if peer is not None:
            peer.attributes = _frozen(attributes)
            peer.sdk_state = _sdk_state(attributes, peer.sdk_state)
        self._settle()

    def participant_left(self, identity: str, now: float) -> None:
        """A remote participant left the room (unknown identities are ignored)."""
        self._advance(now)
        unexpected = False
        if self._peers.pop(identity, None) is not None and identity == self._agent:
            # useAgent.ts: ParticipantDisconnected of the agent is a failure unless the room
            # itself is disconnected (which clears the reason).
            unexpected = self._room_connected
            if unexpected:
                self._left_reason = REASON_AGENT_LEFT
        self._settle(left_unexpectedly=unexpected)

    def handle_timer(self, now: float) -> None:
        """Fire the join deadline if it has passed at ``now`` (calling early is harmless)."""
        self._advance(now)

    def get_timer(self) -> float | None:
        """The join deadline, or None when it is not armed."""
        return self._deadline

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyAgentEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- internals

    def _advance(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        # useAgent.ts startAgentConnectedTimeout: no agent, or an agent not yet connected.
        if self._agent is None:
            self._timeout_reason = REASON_AGENT_DID_NOT_JOIN
        elif self._state not in CONNECTED_STATES:
            self._timeout_reason = REASON_AGENT_NOT_INITIALIZED
        self._settle()

    def _find_agent(self) -> str | None:
        # §8: kind AGENT (only those are kept) and no lk.publish_on_behalf *key*.
        for identity, peer in self._peers.items():
            if ATTR_PUBLISH_ON_BEHALF not in peer.attributes:
                return identity
        return None

    def _settle(self, *, left_unexpectedly: bool = False) -> None:
        agent = self._find_agent()
        if agent != self._agent:
            if self._agent is not None:
                self._events.append(AgentLeft(identity=self._agent, expected=not left_unexpectedly))
            if agent is not None:
                # useAgent.ts clears the timeout reason whenever agentParticipant changes.
                self._timeout_reason = None
                self._events.append(AgentJoined(identity=agent))
            self._agent = agent
        agent_state = self._peers[agent].sdk_state if agent is not None else None
        if self._deadline is not None and agent_state in CONNECTED_STATES:
            self._deadline = None  # module docstring: disarmed once the agent is connected
        reasons = self.failure_reasons
        if reasons != self._reported_reasons:
            self._reported_reasons = reasons
            if reasons:
                self._events.append(AgentFailed(reasons=reasons))
        state = derive_agent_state(
            failed=bool(reasons),
            room_connected=self._room_connected,
            agent_state=agent_state,
            microphone_published=self._microphone,
        )
        if state != self._state:
            self._events.append(AgentStateChanged(old=self._state, new=state))
            self._state = state
