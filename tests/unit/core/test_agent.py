"""AgentTracker: the frontend-derived agent state of PROTOCOL-MAP §8, with a fake clock.

Time is a plain float passed in; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from lkproto.core import agent as agent_module
from lkproto.core.agent import (
    ATTR_AGENT_STATE,
    ATTR_PUBLISH_ON_BEHALF,
    DEFAULT_AGENT_CONNECT_TIMEOUT_S,
    REASON_AGENT_DID_NOT_JOIN,
    REASON_AGENT_LEFT,
    REASON_AGENT_NOT_INITIALIZED,
    AgentFailed,
    AgentJoined,
    AgentLeft,
    AgentState,
    AgentStateChanged,
    AgentTracker,
    AnyAgentEvent,
    derive_agent_state,
)
from lkproto.errors import LocalProtocolError

T0 = 1000.0
DEADLINE = T0 + DEFAULT_AGENT_CONNECT_TIMEOUT_S
AGENT = "agent-1"
WORKER = "avatar-1"
S = AgentState


def events(tracker: AgentTracker) -> list[AnyAgentEvent]:
    out: list[AnyAgentEvent] = []
    while (event := tracker.next_event()) is not None:
        out.append(event)
    return out


def changed(old: AgentState, new: AgentState) -> AgentStateChanged:
    return AgentStateChanged(old=old, new=new)


def state_attr(value: str) -> dict[str, str]:
    return {ATTR_AGENT_STATE: value}


def connected(now: float = T0) -> AgentTracker:
    tracker = AgentTracker()
    tracker.room_state_changed(True, now)
    events(tracker)
    return tracker


def with_agent(state: str | None = "listening", now: float = T0 + 1) -> AgentTracker:
    tracker = connected()
    attributes = state_attr(state) if state is not None else {}
    tracker.participant_joined(AGENT, True, attributes, now)
    events(tracker)
    return tracker


# --------------------------------------------------------------------------------------------
# The enum, the getters and the pure function


def test_state_values_are_the_upstream_strings() -> None:
    assert [s.value for s in AgentState] == [
        "disconnected",
        "connecting",
        "pre-connect-buffering",
        "initializing",
        "idle",
        "listening",
        "thinking",
        "speaking",
        "failed",
    ]


def _in_disconnected() -> AgentTracker:
    return AgentTracker()


def _in_connecting() -> AgentTracker:
    return connected()


def _in_pre_connect() -> AgentTracker:
    tracker = connected()
    tracker.microphone_published(True, T0 + 0.5)
    return tracker


def _in_failed() -> AgentTracker:
    tracker = connected()
    tracker.handle_timer(DEADLINE)
    return tracker


def _reported(value: str) -> Callable[[], AgentTracker]:
    return lambda: with_agent(value)


# state -> (build, is_connected, can_listen, is_finished, is_pending), PROTOCOL-MAP §8 Getters.
GETTERS: dict[AgentState, tuple[Callable[[], AgentTracker], bool, bool, bool, bool]] = {
    S.DISCONNECTED: (_in_disconnected, False, False, True, False),
    S.CONNECTING: (_in_connecting, False, False, False, True),
    S.PRE_CONNECT_BUFFERING: (_in_pre_connect, False, True, False, False),
    S.INITIALIZING: (_reported("initializing"), False, False, False, True),
    S.IDLE: (_reported("idle"), False, False, False, True),
    S.LISTENING: (_reported("listening"), True, True, False, False),
    S.THINKING: (_reported("thinking"), True, True, False, False),
    S.SPEAKING: (_reported("speaking"), True, True, False, False),
    S.FAILED: (_in_failed, False, False, True, False),
}


def test_getters_table_covers_every_state() -> None:
    assert set(GETTERS) == set(AgentState)


@pytest.mark.parametrize("state", list(AgentState))
def test_every_state_is_reached_and_its_getters(state: AgentState) -> None:
    build, is_connected, can_listen, is_finished, is_pending = GETTERS[state]
    tracker = build()
    assert tracker.state is state
    assert tracker.is_connected is is_connected
    assert tracker.can_listen is can_listen
    assert tracker.is_finished is is_finished
    assert tracker.is_pending is is_pending


@pytest.mark.parametrize(
    ("failed", "room", "agent_state", "mic", "expected"),
    [
        (True, False, None, False, S.FAILED),
        (True, True, S.LISTENING, True, S.FAILED),
        (False, False, S.LISTENING, True, S.DISCONNECTED),
        (False, True, S.THINKING, True, S.THINKING),
        (False, True, S.IDLE, False, S.IDLE),
        (False, True, None, True, S.PRE_CONNECT_BUFFERING),
        (False, True, None, False, S.CONNECTING),
    ],
)
def test_derive_agent_state_priority(
    failed: bool, room: bool, agent_state: AgentState | None, mic: bool, expected: AgentState
) -> None:
    got = derive_agent_state(
        failed=failed, room_connected=room, agent_state=agent_state, microphone_published=mic
    )
    assert got is expected


def test_events_are_frozen_slotted_keyword_only() -> None:
    event = AgentLeft(identity=AGENT, expected=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.identity = "x"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    with pytest.raises(TypeError):
        AgentJoined(AGENT)  # type: ignore[call-arg]


def test_exports_attribute_and_topic_constants() -> None:
    assert agent_module.ATTR_AGENT_STATE == "lk.agent.state"
    assert agent_module.ATTR_PUBLISH_ON_BEHALF == "lk.publish_on_behalf"
    assert agent_module.ATTR_AGENT_NAME == "lk.agent.name"
    assert agent_module.TOPIC_TRANSCRIPTION == "lk.transcription"
    assert agent_module.TOPIC_CHAT == "lk.chat"
    assert agent_module.TOPIC_PRECONNECT_AUDIO == "lk.agent.pre-connect-audio-buffer"
    assert agent_module.ATTR_SEGMENT_ID == "lk.segment_id"
    assert agent_module.ATTR_TRANSCRIPTION_FINAL == "lk.transcription_final"
    assert agent_module.ATTR_TRANSCRIBED_TRACK_ID == "lk.transcribed_track_id"
    for name in agent_module.__all__:
        assert hasattr(agent_module, name)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "20"])
def test_timeout_must_be_positive_finite(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        AgentTracker(agent_connect_timeout_s=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The usual lifecycles


def test_starts_disconnected_and_quiet() -> None:
    tracker = AgentTracker()
    assert tracker.state is S.DISCONNECTED
    assert tracker.agent_identity is None
    assert tracker.worker_identity is None
    assert tracker.failure_reasons == ()
    assert dict(tracker.agent_attributes) == {}
    assert tracker.get_timer() is None
    assert events(tracker) == []


def test_lifecycle_with_preconnect_buffer() -> None:
    tracker = AgentTracker()
    tracker.room_state_changed(True, T0)
    assert tracker.get_timer() == DEADLINE
    tracker.microphone_published(True, T0 + 0.2)
    tracker.participant_joined(AGENT, True, {}, T0 + 3)
    tracker.attributes_changed(AGENT, state_attr("initializing"), T0 + 4)
    tracker.attributes_changed(AGENT, state_attr("listening"), T0 + 5)
    assert tracker.get_timer() is None  # connected: the deadline is disarmed
    tracker.attributes_changed(AGENT, state_attr("thinking"), T0 + 6)
    tracker.attributes_changed(AGENT, state_attr("speaking"), T0 + 7)
    tracker.attributes_changed(AGENT, state_attr("idle"), T0 + 8)
    tracker.room_state_changed(False, T0 + 9)
    assert events(tracker) == [
        changed(S.DISCONNECTED, S.CONNECTING),
        changed(S.CONNECTING, S.PRE_CONNECT_BUFFERING),
        AgentJoined(identity=AGENT),
        changed(S.PRE_CONNECT_BUFFERING, S.INITIALIZING),
        changed(S.INITIALIZING, S.LISTENING),
        changed(S.LISTENING, S.THINKING),
        changed(S.THINKING, S.SPEAKING),
        changed(S.SPEAKING, S.IDLE),
        AgentLeft(identity=AGENT, expected=True),
        changed(S.IDLE, S.DISCONNECTED),
    ]
    assert tracker.agent_identity is None
    assert tracker.failure_reasons == ()
    tracker.handle_timer(DEADLINE + 100)
    assert events(tracker) == []


def test_lifecycle_without_preconnect_buffer() -> None:
    tracker = connected()
    tracker.participant_joined(AGENT, True, state_attr("initializing"), T0 + 2)
    assert tracker.agent_identity == AGENT
    assert tracker.agent_attributes[ATTR_AGENT_STATE] == "initializing"
    tracker.attributes_changed(AGENT, state_attr("listening"), T0 + 3)
    assert events(tracker) == [
        AgentJoined(identity=AGENT),
        changed(S.CONNECTING, S.INITIALIZING),
        changed(S.INITIALIZING, S.LISTENING),
    ]


def test_microphone_toggles_pre_connect_only_without_agent_state() -> None:
    tracker = connected()
    tracker.microphone_published(True, T0 + 1)
    tracker.microphone_published(False, T0 + 2)
    tracker.participant_joined(AGENT, True, {}, T0 + 3)  # agent without state: still connecting
    tracker.microphone_published(True, T0 + 4)
    tracker.attributes_changed(AGENT, state_attr("listening"), T0 + 5)
    tracker.microphone_published(False, T0 + 6)  # the agent's state wins, nothing changes
    assert events(tracker) == [
        changed(S.CONNECTING, S.PRE_CONNECT_BUFFERING),
        changed(S.PRE_CONNECT_BUFFERING, S.CONNECTING),
        AgentJoined(identity=AGENT),
        changed(S.CONNECTING, S.PRE_CONNECT_BUFFERING),
        changed(S.PRE_CONNECT_BUFFERING, S.LISTENING),
    ]


def test_disconnected_room_dominates_microphone() -> None:
    tracker = AgentTracker()
    tracker.microphone_published(True, T0)
    assert tracker.state is S.DISCONNECTED
    tracker.room_state_changed(True, T0)
    assert events(tracker) == [changed(S.DISCONNECTED, S.PRE_CONNECT_BUFFERING)]


def test_repeated_room_state_is_a_no_op_and_reconnect_rearms() -> None:
    tracker = connected()
    tracker.room_state_changed(True, T0 + 10)  # reconnecting: still not disconnected
    assert tracker.get_timer() == DEADLINE
    tracker.room_state_changed(False, T0 + 11)
    tracker.room_state_changed(False, T0 + 12)
    assert tracker.get_timer() is None
    tracker.room_state_changed(True, T0 + 30)
    assert tracker.get_timer() == T0 + 30 + DEFAULT_AGENT_CONNECT_TIMEOUT_S
    assert events(tracker) == [
        changed(S.CONNECTING, S.DISCONNECTED),
        changed(S.DISCONNECTED, S.CONNECTING),
    ]


# --------------------------------------------------------------------------------------------
# The 20 s join deadline


def test_deadline_without_agent_fails() -> None:
    tracker = connected()
    tracker.handle_timer(DEADLINE - 0.001)
    assert events(tracker) == []
    assert tracker.get_timer() == DEADLINE
    tracker.handle_timer(DEADLINE)
    assert events(tracker) == [
        AgentFailed(reasons=(REASON_AGENT_DID_NOT_JOIN,)),
        changed(S.CONNECTING, S.FAILED),
    ]
    assert tracker.failure_reasons == (REASON_AGENT_DID_NOT_JOIN,)
    assert tracker.get_timer() is None
    assert tracker.is_finished
    tracker.handle_timer(DEADLINE + 1)
    assert events(tracker) == []


def test_deadline_with_custom_timeout() -> None:
    tracker = AgentTracker(agent_connect_timeout_s=5)
    tracker.room_state_changed(True, T0)
    assert tracker.get_timer() == T0 + 5
    tracker.handle_timer(T0 + 5)
    assert tracker.state is S.FAILED


def test_agent_arriving_at_19_9_s_ready_does_not_fail() -> None:
    tracker = connected()
    tracker.participant_joined(AGENT, True, state_attr("listening"), T0 + 19.9)
    assert tracker.get_timer() is None
    tracker.handle_timer(DEADLINE)
    tracker.handle_timer(DEADLINE + 60)
    assert events(tracker) == [AgentJoined(identity=AGENT), changed(S.CONNECTING, S.LISTENING)]
    assert tracker.state is S.LISTENING


def test_agent_arriving_at_19_9_s_still_initializing_at_20_s_fails() -> None:
    # useAgent.ts: at the deadline an agent that is present but not connected is a failure too.
    tracker = connected()
    tracker.participant_joined(AGENT, True, state_attr("initializing"), T0 + 19.9)
    assert tracker.get_timer() == DEADLINE
    tracker.handle_timer(DEADLINE)
    tracker.attributes_changed(AGENT, state_attr("listening"), DEADLINE + 1)
    assert events(tracker) == [
        AgentJoined(identity=AGENT),
        changed(S.CONNECTING, S.INITIALIZING),
        AgentFailed(reasons=(REASON_AGENT_NOT_INITIALIZED,)),
        changed(S.INITIALIZING, S.FAILED),
    ]
    # Sticky, as upstream: the reason is cleared only by a new agent or a disconnect.
    assert tracker.state is S.FAILED


def test_input_at_the_deadline_fires_the_deadline_first() -> None:
    tracker = connected()
    tracker.participant_joined(AGENT, True, state_attr("listening"), DEADLINE)
    assert events(tracker) == [
        AgentFailed(reasons=(REASON_AGENT_DID_NOT_JOIN,)),
        changed(S.CONNECTING, S.FAILED),
        AgentJoined(identity=AGENT),  # a new agent clears the deadline reason
        changed(S.FAILED, S.LISTENING),
    ]
    assert tracker.failure_reasons == ()


def test_late_agent_clears_the_deadline_failure() -> None:
    tracker = connected()
    tracker.handle_timer(DEADLINE)
    events(tracker)
    tracker.participant_joined(AGENT, True, {}, DEADLINE + 5)
    assert events(tracker) == [AgentJoined(identity=AGENT), changed(S.FAILED, S.CONNECTING)]


def test_deadline_disarmed_by_connected_agent_then_idle_does_not_fail() -> None:
    tracker = with_agent("listening")
    tracker.attributes_changed(AGENT, state_attr("idle"), DEADLINE - 1)
    tracker.handle_timer(DEADLINE)
    assert tracker.state is S.IDLE
    assert tracker.failure_reasons == ()


def test_disconnect_clears_deadline_failure() -> None:
    tracker = connected()
    tracker.handle_timer(DEADLINE)
    events(tracker)
    tracker.room_state_changed(False, DEADLINE + 1)
    assert events(tracker) == [changed(S.FAILED, S.DISCONNECTED)]
    assert tracker.failure_reasons == ()


# --------------------------------------------------------------------------------------------
# The agent leaving


def test_agent_leaving_while_connected_fails_and_finishes() -> None:
    tracker = with_agent("speaking")
    tracker.participant_left(AGENT, T0 + 30)
    assert events(tracker) == [
        AgentLeft(identity=AGENT, expected=False),
        AgentFailed(reasons=(REASON_AGENT_LEFT,)),
        changed(S.SPEAKING, S.FAILED),
    ]
    assert tracker.is_finished
    assert tracker.agent_identity is None
    # Sticky until the room disconnects, even if another agent joins.
    tracker.participant_joined("agent-2", True, state_attr("listening"), T0 + 31)
    assert events(tracker) == [AgentJoined(identity="agent-2")]
    assert tracker.state is S.FAILED
    tracker.room_state_changed(False, T0 + 32)
    assert events(tracker) == [
        AgentLeft(identity="agent-2", expected=True),
        changed(S.FAILED, S.DISCONNECTED),
    ]
    assert tracker.failure_reasons == ()


def test_agent_leaving_after_deadline_failure_adds_a_reason() -> None:
    tracker = with_agent("initializing")
    tracker.handle_timer(DEADLINE)
    tracker.participant_left(AGENT, DEADLINE + 1)
    assert events(tracker) == [
        AgentFailed(reasons=(REASON_AGENT_NOT_INITIALIZED,)),
        changed(S.INITIALIZING, S.FAILED),
        AgentLeft(identity=AGENT, expected=False),
        AgentFailed(reasons=(REASON_AGENT_NOT_INITIALIZED, REASON_AGENT_LEFT)),
    ]


def test_agent_leaving_after_room_disconnect_is_expected() -> None:
    tracker = with_agent("listening")
    tracker.room_state_changed(False, T0 + 5)
    tracker.participant_left(AGENT, T0 + 6)  # already forgotten
    assert events(tracker) == [
        AgentLeft(identity=AGENT, expected=True),
        changed(S.LISTENING, S.DISCONNECTED),
    ]


def test_agent_left_while_room_disconnected_is_expected() -> None:
    tracker = AgentTracker()
    tracker.participant_joined(AGENT, True, state_attr("listening"), T0)
    assert tracker.state is S.DISCONNECTED  # the room dominates
    tracker.participant_left(AGENT, T0 + 1)
    assert events(tracker) == [
        AgentJoined(identity=AGENT),
        AgentLeft(identity=AGENT, expected=True),
    ]


def test_next_agent_in_join_order_takes_over() -> None:
    tracker = connected()
    tracker.participant_joined(AGENT, True, state_attr("listening"), T0 + 1)
    tracker.participant_joined("agent-2", True, state_attr("thinking"), T0 + 2)
    assert tracker.agent_identity == AGENT  # the first one wins
    tracker.participant_left(AGENT, T0 + 3)
    assert tracker.agent_identity == "agent-2"
    assert events(tracker) == [
        AgentJoined(identity=AGENT),
        changed(S.CONNECTING, S.LISTENING),
        AgentLeft(identity=AGENT, expected=False),
        AgentJoined(identity="agent-2"),
        AgentFailed(reasons=(REASON_AGENT_LEFT,)),
        changed(S.LISTENING, S.FAILED),
    ]


# --------------------------------------------------------------------------------------------
# Workers / avatars and non-agents


def test_worker_is_never_taken_for_the_agent() -> None:
    tracker = connected()
    worker_attributes = {ATTR_PUBLISH_ON_BEHALF: AGENT, ATTR_AGENT_STATE: "speaking"}
    tracker.participant_joined(WORKER, True, worker_attributes, T0 + 1)
    assert tracker.agent_identity is None
    assert tracker.worker_identity is None  # no agent, no worker
    assert tracker.state is S.CONNECTING
    tracker.participant_joined(AGENT, True, state_attr("listening"), T0 + 2)
    assert tracker.agent_identity == AGENT
    assert tracker.worker_identity == WORKER
    tracker.participant_left(WORKER, T0 + 3)  # a worker leaving is no failure
    assert tracker.worker_identity is None
    assert events(tracker) == [AgentJoined(identity=AGENT), changed(S.CONNECTING, S.LISTENING)]


def test_worker_of_another_agent_is_not_our_worker() -> None:
    tracker = with_agent()
    tracker.participant_joined(WORKER, True, {ATTR_PUBLISH_ON_BEHALF: "someone-else"}, T0 + 2)
    assert tracker.worker_identity is None
    assert tracker.agent_identity == AGENT


def test_publish_on_behalf_key_even_empty_disqualifies() -> None:
    tracker = connected()
    tracker.participant_joined(WORKER, True, {ATTR_PUBLISH_ON_BEHALF: ""}, T0 + 1)
    assert tracker.agent_identity is None


def test_gaining_publish_on_behalf_stops_being_the_agent() -> None:
    tracker = with_agent("listening")
    tracker.attributes_changed(AGENT, {ATTR_PUBLISH_ON_BEHALF: "x", **state_attr("listening")}, 9)
    assert events(tracker) == [
        AgentLeft(identity=AGENT, expected=True),
        changed(S.LISTENING, S.CONNECTING),
    ]


def test_non_agent_participants_are_ignored() -> None:
    tracker = connected()
    tracker.participant_joined("user-2", False, state_attr("speaking"), T0 + 1)
    tracker.attributes_changed("user-2", state_attr("thinking"), T0 + 2)
    tracker.participant_left("user-2", T0 + 3)
    tracker.participant_left("nobody", T0 + 4)
    tracker.attributes_changed("nobody", {}, T0 + 5)
    assert tracker.agent_identity is None
    assert events(tracker) == []


def test_rejoin_as_non_agent_forgets_the_participant() -> None:
    tracker = with_agent("listening")
    tracker.participant_joined(AGENT, False, {}, T0 + 2)
    assert tracker.agent_identity is None
    assert events(tracker)[0] == AgentLeft(identity=AGENT, expected=True)


# --------------------------------------------------------------------------------------------
# The lk.agent.state attribute


def test_unknown_state_value_keeps_the_last_valid_one() -> None:
    tracker = with_agent("thinking")
    for value in ("dreaming", "failed", "connecting", "pre-connect-buffering", "LISTENING"):
        tracker.attributes_changed(AGENT, state_attr(value), T0 + 2)
        assert tracker.state is S.THINKING
    assert tracker.agent_attributes[ATTR_AGENT_STATE] == "LISTENING"  # raw value still visible
    assert events(tracker) == []


def test_unknown_state_value_without_previous_counts_as_absent() -> None:
    tracker = with_agent("dreaming")
    assert tracker.state is S.CONNECTING
    tracker.microphone_published(True, T0 + 2)
    assert events(tracker) == [changed(S.CONNECTING, S.PRE_CONNECT_BUFFERING)]


def test_empty_or_removed_state_counts_as_absent() -> None:
    tracker = with_agent("speaking")
    tracker.attributes_changed(AGENT, state_attr(""), T0 + 2)
    assert tracker.state is S.CONNECTING
    tracker.attributes_changed(AGENT, state_attr("speaking"), T0 + 3)
    tracker.attributes_changed(AGENT, {}, T0 + 4)
    tracker.attributes_changed(AGENT, state_attr("dreaming"), T0 + 5)  # nothing to keep now
    assert tracker.state is S.CONNECTING


def test_attributes_are_copied_and_read_only() -> None:
    attributes = state_attr("listening")
    tracker = connected()
    tracker.participant_joined(AGENT, True, attributes, T0 + 1)
    attributes[ATTR_AGENT_STATE] = "speaking"
    assert tracker.agent_attributes[ATTR_AGENT_STATE] == "listening"
    with pytest.raises(TypeError):
        tracker.agent_attributes[ATTR_AGENT_STATE] = "x"  # type: ignore[index]


def test_identical_update_emits_nothing() -> None:
    tracker = with_agent("listening")
    tracker.attributes_changed(AGENT, state_attr("listening"), T0 + 2)
    tracker.microphone_published(False, T0 + 3)
    assert events(tracker) == []
