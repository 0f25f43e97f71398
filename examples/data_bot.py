"""A data bot: joins a room and answers chat messages.

Shows text streams (``register_text_stream_handler`` / ``send_text``) on the ``lk.chat`` topic that
LiveKit's chat components use, and plain data packets (``data_received`` / ``publish_data``) on
the ``chat`` topic, for clients that send packets instead of streams. The bot answers

- ``/who`` with the identities in the room,
- ``/time`` with the time (UTC),
- anything else with ``echo: <message>``,

to the sender only, the same way the message came (stream or packet).

Run it against a server (``lkproto server`` starts one here and prints the variables)::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/data_bot.py --room my-room            # until Ctrl-C
    python examples/data_bot.py --room my-room --once     # leave after one answer
    python examples/data_bot.py --room my-room --answers 3

After its last answer the bot stays until the others have left (at most 10 s), because leaving
the room drops replies still queued for sending.
    python examples/data_bot.py --room my-room --duration 60

Then talk to it, e.g. ``lkproto room send --room my-room --topic lk.chat --text hello`` or from the
LiveKit Meet chat box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
from collections.abc import Coroutine
from typing import Any

import _shared

from lkproto import rtc

__all__ = ["CHAT_TOPIC", "PACKET_TOPIC", "answer", "main"]

CHAT_TOPIC = "lk.chat"
PACKET_TOPIC = "chat"
BOT_IDENTITY = "data-bot"


def answer(room: rtc.Room, text: str) -> str:
    """The bot's reply to ``text``."""
    command = text.strip()
    if command == "/who":
        return "here: " + ", ".join(sorted([BOT_IDENTITY, *room.remote_participants]))
    if command == "/time":
        return datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S UTC")
    return f"echo: {text}"


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    room = rtc.Room()
    answered = asyncio.Event()  # set after the last answer --answers asks for
    answers = 0
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def count_answer() -> None:
        nonlocal answers
        answers += 1
        if args.answers is not None and answers >= args.answers:
            answered.set()

    async def reply_to_stream(reader: rtc.TextStreamReader, sender: str) -> None:
        text = await reader.read_all()
        reply = answer(room, text)
        await room.local_participant.send_text(
            reply, topic=CHAT_TOPIC, destination_identities=[sender]
        )
        print(f"stream from {sender}: {text!r} -> {reply!r}", flush=True)
        count_answer()

    async def reply_to_packet(packet: rtc.DataPacket) -> None:
        # A packet can arrive before the roster update announcing its sender (the server
        # batches those for participants that publish no track, PROTOCOL-MAP §7); the
        # participant is then unknown and the answer goes to everyone.
        sender = packet.participant.identity if packet.participant is not None else None
        text = packet.data.decode("utf-8", errors="replace")
        reply = answer(room, text)
        await room.local_participant.publish_data(
            reply.encode(),
            reliable=True,
            topic=PACKET_TOPIC,
            destination_identities=[sender] if sender else [],
        )
        print(f"packet from {sender or '(unknown)'}: {text!r} -> {reply!r}", flush=True)
        count_answer()

    def on_packet(packet: rtc.DataPacket) -> None:
        if packet.topic == PACKET_TOPIC:
            spawn(reply_to_packet(packet))

    room.register_text_stream_handler(
        CHAT_TOPIC, lambda reader, sender: spawn(reply_to_stream(reader, sender))
    )
    room.on("data_received", on_packet)
    room.on("participant_connected", lambda p: print(f"joined: {p.identity}", flush=True))

    await _shared.connect(room, args, BOT_IDENTITY, name="Data bot")
    print(f"data-bot: ready in room {room.name} as {BOT_IDENTITY}", flush=True)
    try:
        # None = no limit; the bot then runs until Ctrl-C.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                if args.answers is not None:
                    await answered.wait()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await _shared.wait_until_alone(room)
                else:
                    await asyncio.Event().wait()
        # Let a reply still being sent finish before leaving.
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await room.disconnect()
    print("data-bot: left", flush=True)
    return 0 if answered.is_set() or args.answers is None else 1


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__)
    parser.add_argument(
        "--once", dest="answers", action="store_const", const=1, help="leave after one answer"
    )
    parser.add_argument("--answers", type=int, help="leave after N answers")
    _shared.add_duration_arg(parser)
    args = _shared.parse_args(parser)
    return _shared.run_until_interrupted(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
