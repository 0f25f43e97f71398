"""Port-test program: a voice-agent frontend in the official SDK's documented style.

Publishes a microphone track (silence), follows the agent participant (kind AGENT) through its
``lk.agent.state`` attribute, prints the agent's ``lk.transcription`` streams, asks it a
question by RPC and leaves after the first final agent segment. The agent is
examples/transcript_agent.py. Run by tests/interop/test_rtc_port.py twice: as written, and with
only the imports switched to lkproto.
"""

import asyncio
import os
import sys

from livekit import api, rtc


async def main(room_name: str) -> None:
    room = rtc.Room()
    agent_ready = asyncio.Event()
    answered = asyncio.Event()
    spoke = asyncio.Event()  # listening again after speaking
    states: list[str] = []
    readers: set[asyncio.Future[None]] = set()

    def track_agent(participant: rtc.Participant) -> None:
        if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return
        state = participant.attributes.get("lk.agent.state")
        if state and (not states or states[-1] != state):
            states.append(state)
            print(f"agent {participant.identity} is {state}", flush=True)
        if state == "listening":
            agent_ready.set()
            if "speaking" in states:
                spoke.set()

    @room.on("participant_connected")
    def on_participant_connected(participant: rtc.RemoteParticipant) -> None:
        print(f"participant connected: {participant.identity} ({participant.kind})", flush=True)
        track_agent(participant)

    @room.on("participant_attributes_changed")
    def on_attributes_changed(changed: dict[str, str], participant: rtc.Participant) -> None:
        track_agent(participant)

    async def read_transcript(reader: rtc.TextStreamReader, participant_identity: str) -> None:
        parts = []
        async for chunk in reader:
            parts.append(chunk)
        attributes = reader.info.attributes or {}
        final = attributes.get("lk.transcription_final")
        print(
            f"transcript from {participant_identity}: {''.join(parts)!r} final={final}", flush=True
        )
        if final == "true":
            answered.set()

    def on_transcript_stream(reader: rtc.TextStreamReader, participant_identity: str) -> None:
        readers.add(asyncio.ensure_future(read_transcript(reader, participant_identity)))

    room.register_text_stream_handler("lk.transcription", on_transcript_stream)

    token = (
        api.AccessToken()
        .with_identity("visitor")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    await room.connect(os.environ["LIVEKIT_URL"], token)
    for participant in room.remote_participants.values():
        track_agent(participant)
    # the microphone, as a voice frontend publishes it (silence here: the agent needs none)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)
    print(f"published {publication.name} ({publication.source})", flush=True)
    for _ in range(50):
        await source.capture_frame(rtc.AudioFrame.create(48000, 1, 480))
    await asyncio.wait_for(agent_ready.wait(), 30)
    agent = next(
        p
        for p in room.remote_participants.values()
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )
    reply = await room.local_participant.perform_rpc(
        destination_identity=agent.identity, method="ask", payload="what time is it?"
    )
    print(f"rpc reply: {reply}", flush=True)
    await asyncio.wait_for(answered.wait(), 30)
    await asyncio.wait_for(spoke.wait(), 30)
    await source.aclose()
    await room.disconnect()
    print("disconnected", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
