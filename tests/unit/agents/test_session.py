"""AgentSession's asyncio glue (lkproto.agents.session) against a fake room."""

from __future__ import annotations

import asyncio

import pytest

from lkproto import agents, rtc
from lkproto.core.agent import REASON_AGENT_DID_NOT_JOIN, REASON_AGENT_LEFT
from lkproto.rtc import ConnectionState, TrackSource
from tests.conftest import scaled
from tests.unit.agents._fakes import FakeReader, FakeRoom, remote, settle

S = agents.AgentState


def state(session: agents.AgentSession) -> agents.AgentState:
    # Read through a call where an earlier assert narrowed ``session.state``: mypy keeps the
    # narrowed literal and does not know that the events in between change the state.
    return session.state


async def test_states_follow_the_room_and_the_agent_attribute() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=60)
    changes: list[tuple[S, S]] = []
    session.on("state_changed", lambda old, new: changes.append((old, new)))
    joined: list[object] = []
    session.on("agent_joined", joined.append)
    assert session.state is S.DISCONNECTED
    room.connect()
    assert state(session) is S.CONNECTING
    assert session.is_pending
    room.join(remote("bob"))  # not an agent
    agent = remote("agent", agent=True)
    room.join(agent)
    assert joined == [agent]
    assert session.agent is agent
    room.change_attributes(agent, **{agents.ATTR_AGENT_STATE: "listening"})
    assert state(session) is S.LISTENING
    assert session.is_connected
    assert session.can_listen
    assert changes == [(S.DISCONNECTED, S.CONNECTING), (S.CONNECTING, S.LISTENING)]
    room.disconnect()
    assert session.state is S.DISCONNECTED
    assert session.is_finished
    await session.aclose()


async def test_attached_after_connect_sees_present_agent() -> None:
    room = FakeRoom()
    room.connection_state = ConnectionState.CONN_CONNECTED
    room.remote_participants["a"] = remote("a", agent=True, **{agents.ATTR_AGENT_STATE: "thinking"})
    session = agents.AgentSession(room.as_room())
    assert session.state is S.THINKING
    await session.aclose()


async def test_join_deadline_fails_the_session_and_wakes_waiters() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=scaled(0.05))
    failures: list[tuple[str, ...]] = []
    session.on("failed", failures.append)
    room.connect()
    with pytest.raises(agents.AgentSessionFailedError) as caught:
        await session.wait_for(S.LISTENING, timeout=scaled(5))
    assert caught.value.reasons == (REASON_AGENT_DID_NOT_JOIN,)
    assert failures == [(REASON_AGENT_DID_NOT_JOIN,)]
    # Already failed: waiting for anything else fails at once; waiting for failed returns.
    with pytest.raises(agents.AgentSessionFailedError):
        await session.wait_for(S.LISTENING)
    await session.wait_for("failed")
    await session.aclose()


async def test_agent_leaving_is_a_failure() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=60)
    left: list[tuple[str, bool]] = []
    session.on("agent_left", lambda identity, expected: left.append((identity, expected)))
    room.connect()
    room.join(remote("agent", agent=True, **{agents.ATTR_AGENT_STATE: "speaking"}))
    assert session.state is S.SPEAKING
    room.leave("agent")
    assert state(session) is S.FAILED
    assert session.failure_reasons == (REASON_AGENT_LEFT,)
    assert left == [("agent", False)]
    assert session.agent is None
    await session.aclose()


async def test_wait_for_timeout_disconnect_and_close() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=60)
    room.connect()
    with pytest.raises(TimeoutError):
        await session.wait_for(S.LISTENING, timeout=0)
    waiter = asyncio.ensure_future(session.wait_for(S.LISTENING))
    await settle()
    room.disconnect()
    with pytest.raises(agents.AgentSessionClosedError):
        await waiter
    room.connect()
    waiter = asyncio.ensure_future(session.wait_for(S.SPEAKING))
    await settle()
    await session.aclose()
    with pytest.raises(agents.AgentSessionClosedError):
        await waiter
    with pytest.raises(agents.AgentSessionClosedError):
        await session.wait_for(S.SPEAKING)
    await session.aclose()  # idempotent
    with pytest.raises(ValueError, match="not-a-state"):
        await session.wait_for("not-a-state")


async def test_microphone_publication_means_preconnect_buffering() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=60)
    room.connect()
    pub = type(
        "Pub",
        (),
        {"source": TrackSource.SOURCE_MICROPHONE},
    )()
    room.local_participant.track_publications["TR_1"] = pub
    room.emit("local_track_published", pub, None)
    assert session.state is S.PRE_CONNECT_BUFFERING
    del room.local_participant.track_publications["TR_1"]
    room.emit("local_track_unpublished", pub)
    assert state(session) is S.CONNECTING
    await session.aclose()


async def test_transcript_merges_interim_and_final_streams() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room(), agent_connect_timeout=60)
    updates: list[agents.TranscriptSegment] = []
    session.on("transcript_updated", updates.append)
    room.connect()
    room.join(remote("agent", agent=True))
    topic = agents.TOPIC_TRANSCRIPTION
    seg = {agents.ATTR_SEGMENT_ID: "SG_1", agents.ATTR_TRANSCRIBED_TRACK_ID: "TR_u"}
    room.stream(
        topic, FakeReader("s1", ["hel"], {**seg, agents.ATTR_TRANSCRIPTION_FINAL: "false"}), "me"
    )
    await settle()
    room.stream(
        topic, FakeReader("s2", ["hello"], {**seg, agents.ATTR_TRANSCRIPTION_FINAL: "true"}), "me"
    )
    await settle()
    room.stream(
        topic,
        FakeReader(
            "s3",
            ["Hi ", "there"],
            {agents.ATTR_SEGMENT_ID: "SG_2", agents.ATTR_TRANSCRIPTION_FINAL: "false"},
            trailer={agents.ATTR_TRANSCRIPTION_FINAL: "true"},
        ),
        "agent",
    )
    room.stream(
        topic, FakeReader("s4", ["lost"], {agents.ATTR_SEGMENT_ID: "SG_3"}, error="gone"), "agent"
    )
    await settle()
    user, reply, broken = session.transcript
    assert (user.id, user.text, user.final, user.track_id, user.is_agent) == (
        "SG_1",
        "hello",
        True,
        "TR_u",
        False,
    )
    assert user.first_received_ms <= user.last_received_ms
    assert (reply.text, reply.final, reply.is_agent, reply.track_id) == (
        "Hi there",
        True,
        True,
        None,
    )
    assert (broken.text, broken.final) == ("lost", False)
    assert [u.text for u in updates if u.id == "SG_1"] == ["hel", "hello"]
    room.disconnect()
    assert session.transcript == []
    await session.aclose()
    assert topic not in room.text_handlers


async def test_chat_both_ways_and_shared_topic_handlers() -> None:
    room = FakeRoom()
    session = agents.AgentSession(room.as_room())
    received: list[agents.ChatMessage] = []
    session.on("chat_received", received.append)
    also: list[agents.ChatMessage] = []
    detach = agents.on_chat(room.as_room(), also.append)  # shares the lk.chat handler
    room.connect()
    room.stream(agents.TOPIC_CHAT, FakeReader("c1", ["hi ", "you"]), "agent")
    await settle()
    assert (
        received
        == also
        == [agents.ChatMessage(id="c1", message="hi you", sender_identity="agent", timestamp=1234)]
    )
    sent = await session.send_chat("hello")
    assert sent == agents.ChatMessage(
        id="ST_sent", message="hello", sender_identity="me", timestamp=99
    )
    assert agents.ChatMessage is rtc.ChatMessage  # one public type
    assert room.local_participant.sent == [(agents.TOPIC_CHAT, "hello")]
    await session.aclose()
    assert agents.TOPIC_CHAT in room.text_handlers  # on_chat still listens
    detach()
    detach()
    assert agents.TOPIC_CHAT not in room.text_handlers


async def test_foreign_handler_on_a_topic_is_refused() -> None:
    room = FakeRoom()
    room.register_text_stream_handler(agents.TOPIC_CHAT, lambda reader, who: None)
    with pytest.raises(ValueError, match="already set"):
        agents.AgentSession(room.as_room())
    assert agents.TOPIC_TRANSCRIPTION not in room.text_handlers
