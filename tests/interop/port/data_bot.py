"""Port-test program: a data bot in the official SDK's documented style.

Answers one chat text stream (``lk.chat``), one data packet (topic ``chat``) and one RPC
(``reverse``), then leaves. Run by tests/interop/test_rtc_port.py twice: as written, and with
only ``from livekit import ...`` switched to ``from lkproto import ...``.
"""

import asyncio
import os
import sys

from livekit import api, rtc

ANSWERS = 3


async def main(room_name: str) -> None:
    room = rtc.Room()
    done = asyncio.Event()
    user_left = asyncio.Event()
    answered: list[str] = []
    pending: set[asyncio.Future[None]] = set()

    def answer(kind: str, text: str) -> None:
        print(f"{kind}: {text}", flush=True)
        answered.append(kind)
        if len(answered) == ANSWERS:
            done.set()

    async def on_chat(reader: rtc.TextStreamReader, participant_identity: str) -> None:
        text = await reader.read_all()
        await room.local_participant.send_text(
            f"echo: {text}", topic="lk.chat", destination_identities=[participant_identity]
        )
        answer("stream", f"{text} from {participant_identity} on {reader.info.topic}")

    @room.on("participant_connected")
    def on_participant_connected(participant: rtc.RemoteParticipant) -> None:
        print(f"participant connected: {participant.identity}", flush=True)

    @room.on("participant_disconnected")
    def on_participant_disconnected(participant: rtc.RemoteParticipant) -> None:
        print(f"participant disconnected: {participant.identity}", flush=True)
        user_left.set()

    @room.on("data_received")
    def on_data_received(packet: rtc.DataPacket) -> None:
        if packet.topic != "chat" or packet.participant is None:
            return
        sender = packet.participant.identity

        async def reply() -> None:
            await room.local_participant.publish_data(
                b"pong", reliable=True, topic="chat", destination_identities=[sender]
            )
            answer("packet", f"{packet.data.decode()} from {sender} kind {packet.kind}")

        pending.add(asyncio.ensure_future(reply()))

    def on_chat_stream(reader: rtc.TextStreamReader, participant_identity: str) -> None:
        pending.add(asyncio.ensure_future(on_chat(reader, participant_identity)))

    room.register_text_stream_handler("lk.chat", on_chat_stream)

    token = (
        api.AccessToken()
        .with_identity("bot")
        .with_name("Data bot")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    await room.connect(os.environ["LIVEKIT_URL"], token)

    # livekit's register_rpc_method returns Union[F, Callable[[F], F]], which mypy cannot call
    # as a decorator (F is unsolved: "expected Never"); the decorator form is the documented one.
    @room.local_participant.register_rpc_method("reverse")  # type: ignore[arg-type]
    async def reverse(data: rtc.RpcInvocationData) -> str:
        answer("rpc", f"{data.method}({data.payload}) from {data.caller_identity}")
        return data.payload[::-1]

    print(f"connected to {room.name} as {room.local_participant.identity}", flush=True)
    await asyncio.wait_for(done.wait(), 60)
    # Replies are only queued when publish_data / send_text return: stay until the user has them
    # and leaves.
    await asyncio.wait_for(user_left.wait(), 30)
    await room.disconnect()
    print("disconnected", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
