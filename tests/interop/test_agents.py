"""lkproto.agents against a real server and the official SDK (PROTOCOL-MAP §8).

* lkproto frontend (:class:`~lkproto.agents.AgentSession`) following an agent written with the
  official SDK the way the agents framework behaves (kind ``agent``, ``lk.agent.state``
  attribute, ``lk.transcription`` streams with interim→final updates, ``lk.chat``);
* lkproto agent (:class:`~lkproto.agents.AgentPresence`, :class:`~lkproto.agents.
  TranscriptionPublisher`, :func:`~lkproto.agents.on_chat`) seen by an official frontend;
* the pre-connect buffer from lkproto's session to lkproto's agent;
* failures (agent never joins, agent leaves) and :class:`~lkproto.agents.SharedState`.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import agents, rtc
from lkproto.core.agent import REASON_AGENT_DID_NOT_JOIN, REASON_AGENT_LEFT
from lkproto.testing import scaled
from tests.interop._helpers import (
    connect_official,
    connect_ours,
    disconnect_all,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

STATE_TIMEOUT_S = 15.0
S = agents.AgentState
AGENT_GRANTS: dict[str, Any] = {"kind": "agent", "can_update_own_metadata": True}


@dataclass
class Received:
    """Text streams an official room received on one topic, read whole, in arrival order."""

    entries: list[list[Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def streams(self) -> list[tuple[str, dict[str, str], str]]:
        """``(sender, final attributes, text)`` of the streams read completely so far, in the
        order their headers arrived (a stream still being read ends the list)."""
        done = []
        for identity, attributes, text in self.entries:
            if text is None:
                break
            done.append((identity, attributes, text))
        return done

    def handler(self, reader: lrtc.TextStreamReader, identity: str) -> None:
        entry: list[Any] = [identity, {}, None]
        self.entries.append(entry)

        async def read() -> None:
            text = await reader.read_all()
            entry[1:] = [dict(reader.info.attributes or {}), text]

        task = asyncio.ensure_future(read())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def test_frontend_follows_an_official_agent(livekit_server: LocalServer) -> None:
    name = unique_room("agents-frontend")
    room = rtc.Room()
    session = agents.AgentSession(room, agent_connect_timeout=scaled(60))
    states: list[agents.AgentState] = []
    session.on("state_changed", lambda old, new: states.append(new))
    updates: list[agents.TranscriptSegment] = []
    session.on("transcript_updated", updates.append)
    chats: list[agents.ChatMessage] = []
    session.on("chat_received", chats.append)
    agent = lrtc.Room()
    agent_chat = Received()
    agent.register_text_stream_handler(agents.TOPIC_CHAT, agent_chat.handler)
    try:
        await connect_ours(livekit_server, "user", name, room=room)
        assert session.state is S.CONNECTING
        await connect_official(livekit_server, "agent-1", name, room=agent, **AGENT_GRANTS)
        for state in ("initializing", "listening", "thinking", "speaking", "listening"):
            await agent.local_participant.set_attributes({agents.ATTR_AGENT_STATE: state})
            await session.wait_for(state, timeout=scaled(STATE_TIMEOUT_S))
        assert states == [
            S.CONNECTING,
            S.INITIALIZING,
            S.LISTENING,
            S.THINKING,
            S.SPEAKING,
            S.LISTENING,
        ]
        assert session.agent is not None
        assert session.agent.identity == "agent-1"
        assert session.is_connected
        assert session.can_listen

        # User speech, on the user's behalf: interim streams then a final one, one segment id.
        lp = agent.local_participant
        for text, final in (("what", "false"), ("what is", "false"), ("what is up?", "true")):
            writer = await lp.stream_text(
                topic=agents.TOPIC_TRANSCRIPTION,
                sender_identity="user",
                attributes={
                    agents.ATTR_SEGMENT_ID: "SG_user",
                    agents.ATTR_TRANSCRIPTION_FINAL: final,
                },
            )
            await writer.write(text)
            await writer.aclose()
        # Agent speech in delta mode: one stream, the final flag in the trailer.
        writer = await lp.stream_text(
            topic=agents.TOPIC_TRANSCRIPTION,
            attributes={
                agents.ATTR_SEGMENT_ID: "SG_agent",
                agents.ATTR_TRANSCRIPTION_FINAL: "false",
            },
        )
        for delta in ("Not ", "much, ", "you?"):
            await writer.write(delta)
        await writer.aclose(attributes={agents.ATTR_TRANSCRIPTION_FINAL: "true"})

        await wait_for(
            lambda: [s.final for s in session.transcript] == [True, True],
            STATE_TIMEOUT_S,
            "two final segments",
        )
        user_segment, agent_segment = session.transcript
        assert (user_segment.id, user_segment.text) == ("SG_user", "what is up?")
        assert user_segment.participant_identity == "user"
        assert not user_segment.is_agent
        assert (agent_segment.id, agent_segment.text) == ("SG_agent", "Not much, you?")
        assert agent_segment.participant_identity == "agent-1"
        assert agent_segment.is_agent
        user_texts = [u.text for u in updates if u.id == "SG_user"]
        assert user_texts[-1] == "what is up?"
        assert "what" in user_texts  # the interim was shown, then replaced

        # Chat both ways.
        sent = await session.send_chat("hello agent")
        await wait_for(lambda: agent_chat.streams, STATE_TIMEOUT_S, "chat at the agent")
        assert agent_chat.streams[0][0] == "user"
        assert agent_chat.streams[0][2] == "hello agent"
        assert sent.sender_identity == "user"
        await agent.local_participant.send_text("hello user", topic=agents.TOPIC_CHAT)
        await wait_for(lambda: chats, STATE_TIMEOUT_S, "chat at the frontend")
        assert (chats[0].message, chats[0].sender_identity) == ("hello user", "agent-1")
    finally:
        await session.aclose()
        await disconnect_all(room, agent)


async def test_official_frontend_sees_an_lkproto_agent(livekit_server: LocalServer) -> None:
    name = unique_room("agents-agent")
    frontend = lrtc.Room()
    transcripts = Received()
    frontend.register_text_stream_handler(agents.TOPIC_TRANSCRIPTION, transcripts.handler)
    replies = Received()
    frontend.register_text_stream_handler(agents.TOPIC_CHAT, replies.handler)
    room = rtc.Room()
    chats: list[agents.ChatMessage] = []
    agents.on_chat(room, chats.append)
    try:
        await connect_official(livekit_server, "user", name, room=frontend)
        await connect_ours(livekit_server, "agent-2", name, room=room, **AGENT_GRANTS)
        await wait_for(lambda: "agent-2" in frontend.remote_participants, what="agent at frontend")
        seen = frontend.remote_participants["agent-2"]
        assert seen.kind == lrtc.ParticipantKind.PARTICIPANT_KIND_AGENT

        presence = agents.AgentPresence(room)
        for state in ("initializing", "listening", "thinking", "speaking"):
            # (the default argument binds this iteration's state; mypy infers no lambda with one)
            def frontend_sees(s: str = state) -> bool:
                return seen.attributes.get(agents.ATTR_AGENT_STATE) == s

            await presence.set_state(state)
            await wait_for(frontend_sees, STATE_TIMEOUT_S, f"state {state} at the frontend")
        assert presence.state is S.SPEAKING

        tx = agents.TranscriptionPublisher(room)
        segment = await tx.publish(
            "hel", participant_identity="user", final=False, track_sid="TR_mic"
        )
        assert (
            await tx.publish(
                "hello", participant_identity="user", segment_id=segment, track_sid="TR_mic"
            )
            == segment
        )
        async with await tx.stream() as writer:
            await writer.write("Hi ")
            await writer.write("there")
        await wait_for(lambda: len(transcripts.streams) == 3, STATE_TIMEOUT_S, "3 transcripts")
        (i_who, i_attrs, i_text), (f_who, f_attrs, f_text), (a_who, a_attrs, a_text) = (
            transcripts.streams
        )
        assert (i_who, f_who) == ("user", "user")  # published on the user's behalf
        assert (i_text, f_text) == ("hel", "hello")
        assert i_attrs == {
            agents.ATTR_SEGMENT_ID: segment,
            agents.ATTR_TRANSCRIPTION_FINAL: "false",
            agents.ATTR_TRANSCRIBED_TRACK_ID: "TR_mic",
        }
        assert f_attrs[agents.ATTR_TRANSCRIPTION_FINAL] == "true"
        assert f_attrs[agents.ATTR_SEGMENT_ID] == segment
        assert (a_who, a_text) == ("agent-2", "Hi there")
        assert a_attrs[agents.ATTR_SEGMENT_ID] == writer.segment_id
        assert a_attrs[agents.ATTR_TRANSCRIPTION_FINAL] == "true"  # from the trailer
        assert agents.ATTR_TRANSCRIBED_TRACK_ID not in a_attrs  # the agent has no microphone

        await frontend.local_participant.send_text("typed input", topic=agents.TOPIC_CHAT)
        await wait_for(lambda: chats, STATE_TIMEOUT_S, "chat at the agent")
        assert (chats[0].message, chats[0].sender_identity) == ("typed input", "user")
        await agents.send_chat(room, "reply")
        await wait_for(lambda: replies.streams, STATE_TIMEOUT_S, "chat at the frontend")
        assert replies.streams[0][0::2] == ("agent-2", "reply")
    finally:
        await disconnect_all(room, frontend)


def _ramp_frame(index: int, samples: int, sample_rate: int) -> rtc.AudioFrame:
    data = struct.pack(f"<{samples}h", *((index * samples + i) % 30000 for i in range(samples)))
    return rtc.AudioFrame(data, sample_rate, 1, samples)


async def test_preconnect_buffer_reaches_the_agent(livekit_server: LocalServer) -> None:
    name = unique_room("agents-preconnect")
    rate, samples, count = 16000, 320, 25  # 25 x 20 ms = 0.5 s
    room = rtc.Room()
    session = agents.AgentSession(room, agent_connect_timeout=scaled(60))
    agent = rtc.Room()
    got: list[tuple[agents.PreconnectFrames, str]] = []
    agents.on_preconnect_audio(
        agent, lambda frames, who: got.append((frames, who)), timeout=scaled(20)
    )
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    try:
        await connect_ours(livekit_server, "user", name, room=room)
        buffer = await session.start_preconnect_buffer(track)
        assert buffer.publication is not None
        assert rtc.TrackSource(buffer.publication.source) is rtc.TrackSource.SOURCE_MICROPHONE
        assert 6 in buffer.publication.info.audio_features  # TF_PRECONNECT_BUFFER
        await session.wait_for(S.PRE_CONNECT_BUFFERING, timeout=scaled(STATE_TIMEOUT_S))
        expected = bytearray()
        for index in range(count):
            frame = _ramp_frame(index, samples, rate)
            expected += frame.data.cast("B")
            await source.capture_frame(frame)
        assert buffer.recorded_seconds == pytest.approx(0.5)

        await connect_ours(livekit_server, "agent-3", name, room=agent, **AGENT_GRANTS)
        assert await asyncio.wait_for(buffer.wait(), scaled(30)) == "agent-3"
        await wait_for(lambda: got, STATE_TIMEOUT_S, "pre-connect audio at the agent")
        frames, sender = got[0]
        assert sender == "user"
        assert frames.track_id == buffer.publication.sid
        assert (frames.sample_rate, frames.num_channels) == (rate, 1)
        assert frames.duration == pytest.approx(0.5)
        assert {f.sample_rate for f in frames} == {rate}
        assert b"".join(bytes(f.data.cast("B")) for f in frames) == bytes(expected)
        assert not buffer.recording
    finally:
        await session.aclose()
        await source.aclose()
        await disconnect_all(room, agent)


async def test_agent_that_never_joins_fails_the_session(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    session = agents.AgentSession(room, agent_connect_timeout=scaled(2))
    reasons: list[tuple[str, ...]] = []
    session.on("failed", reasons.append)
    try:
        await connect_ours(livekit_server, "user", unique_room("agents-nojoin"), room=room)
        with pytest.raises(agents.AgentSessionFailedError) as caught:
            await session.wait_for(S.LISTENING, timeout=scaled(STATE_TIMEOUT_S))
        assert caught.value.reasons == (REASON_AGENT_DID_NOT_JOIN,)
        assert session.state is S.FAILED
        assert session.is_finished
        assert reasons == [(REASON_AGENT_DID_NOT_JOIN,)]
    finally:
        await session.aclose()
        await disconnect_all(room)


async def test_agent_leaving_fails_the_session(livekit_server: LocalServer) -> None:
    name = unique_room("agents-leave")
    room = rtc.Room()
    session = agents.AgentSession(room, agent_connect_timeout=scaled(60))
    agent = lrtc.Room()
    try:
        await connect_ours(livekit_server, "user", name, room=room)
        await connect_official(livekit_server, "agent-4", name, room=agent, **AGENT_GRANTS)
        await agent.local_participant.set_attributes({agents.ATTR_AGENT_STATE: "listening"})
        await session.wait_for(S.LISTENING, timeout=scaled(STATE_TIMEOUT_S))
        await agent.disconnect()
        await session.wait_for(S.FAILED, timeout=scaled(STATE_TIMEOUT_S))
        assert session.is_finished
        assert session.failure_reasons == (REASON_AGENT_LEFT,)
        assert session.agent is None
    finally:
        await session.aclose()
        await disconnect_all(room, agent)


async def test_shared_state_across_clients(livekit_server: LocalServer) -> None:
    name = unique_room("agents-state")
    a, b = rtc.Room(), rtc.Room()
    official = lrtc.Room()
    try:
        await connect_ours(livekit_server, "alice", name, room=a, can_update_own_metadata=True)
        await connect_ours(livekit_server, "bob", name, room=b, can_update_own_metadata=True)
        await connect_official(
            livekit_server, "carol", name, room=official, can_update_own_metadata=True
        )
        state_a, state_b = agents.SharedState(a), agents.SharedState(b)
        changes: list[tuple[str, list[str]]] = []
        state_b.on("changed", lambda p, keys: changes.append((p.identity, keys)))
        await wait_for(lambda: "alice" in b.remote_participants, what="alice at bob")

        value: agents.JsonValue = {"x": 1, "path": [2.5, "three", None], "ok": True}
        await state_a.set("cursor", value)
        await state_a.update({"mode": "draw", "count": 3})
        assert state_a.get("alice", "cursor") == value  # read-your-writes
        await wait_for(
            lambda: state_b.get("alice", "count") == 3, STATE_TIMEOUT_S, "alice's state at bob"
        )
        assert state_b.get("alice", "cursor") == value
        assert state_b.get(b.remote_participants["alice"], "mode") == "draw"
        assert state_b.get("alice", "missing", default="d") == "d"
        assert state_b.get("nobody", "cursor") is None
        assert {k for who, keys in changes if who == "alice" for k in keys} >= {
            "cursor",
            "mode",
            "count",
        }

        await state_a.delete("mode")
        await wait_for(
            lambda: state_b.get("alice", "mode") is None, STATE_TIMEOUT_S, "mode removed"
        )
        assert state_b.items("alice") == {"cursor": value, "count": 3}

        await official.local_participant.set_attributes({"note": "plain text"})
        await wait_for(
            lambda: state_b.get("carol", "note") == "plain text", STATE_TIMEOUT_S, "carol's note"
        )
        assert state_b.room_metadata == b.metadata
        state_a.close()
        state_b.close()
    finally:
        await disconnect_all(a, b, official)


async def test_on_behalf_transcript_is_marked_generated(livekit_server: LocalServer) -> None:
    """``stream_text(sender_identity=...)`` from an AGENT: receivers see the user's identity and
    the server's ``generated`` flag; from a non-agent the server puts the sender's own identity
    back (PROTOCOL-MAP §3 inbound rules, §8)."""
    name = unique_room("agents-on-behalf")
    frontend = await connect_ours(livekit_server, "user", name)
    agent = await connect_ours(livekit_server, "agent-x", name, kind="agent")
    plain = await connect_ours(livekit_server, "plain", name)
    got: list[tuple[str, Any, str]] = []
    tasks: list[asyncio.Future[None]] = []

    def handler(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            got.append((identity, reader.info, await reader.read_all()))

        tasks.append(asyncio.ensure_future(read()))

    frontend.register_text_stream_handler("lk.transcription", handler)
    try:
        await wait_for(lambda: len(frontend.remote_participants) == 2, 15, "both joined")
        for sender in (agent, plain):
            writer = await sender.local_participant.stream_text(
                topic="lk.transcription", sender_identity="user"
            )
            await writer.write("what is the weather")
            await writer.aclose()
        await wait_for(lambda: len(got) == 2, 10, "two transcripts")
        by_text = sorted(got, key=lambda g: g[1].generated, reverse=True)
        assert (by_text[0][0], by_text[0][1].generated) == ("user", True)
        assert (by_text[1][0], by_text[1][1].generated) == ("plain", False)
        assert [g[2] for g in got] == ["what is the weather"] * 2
    finally:
        await disconnect_all(frontend, agent, plain)
