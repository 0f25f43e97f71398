"""An agent that answers RPCs and chat and streams its answer as a live transcript.

Shows the agent side of LiveKit's agent conventions with :mod:`lkproto.agents`:

- it joins with participant kind ``agent`` and ``lk.agent.state = initializing`` in the token,
  then moves through ``listening`` -> ``thinking`` -> ``speaking`` -> ``listening``
  (:class:`~lkproto.agents.AgentPresence`);
- it registers an RPC method ``ask`` (``register_rpc_method``) that returns a JSON answer, and
  answers ``lk.chat`` messages (:func:`~lkproto.agents.on_chat`);
- while "speaking" it streams the answer word by word on ``lk.transcription``
  (:class:`~lkproto.agents.TranscriptionPublisher`), which frontends show as a growing segment.

It has no language model: the answer is a fixed sentence around the question. Pair it with
``examples/agent_frontend.py``::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/transcript_agent.py --room my-room &
    python examples/agent_frontend.py --room my-room --ask "what is lkproto?" --once

``--once`` leaves after the first answer (once the frontend has left, at most 10 s later: leaving
drops transcript data still queued for sending), ``--duration N`` after N seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Coroutine
from typing import Any

import _shared

from lkproto import agents, rtc

__all__ = ["AGENT_IDENTITY", "RPC_ASK", "answer_for", "main"]

AGENT_IDENTITY = "example-agent"
RPC_ASK = "ask"
WORD_DELAY_S = 0.05
THINK_S = 0.3


def answer_for(question: str) -> str:
    """The agent's answer to ``question`` (no language model: a fixed sentence)."""
    return f"You asked: {question.strip()} I am an example agent, so I can only repeat it."


class ExampleAgent:
    """One agent in one room: answers one question at a time."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.presence = agents.AgentPresence(self.room)
        self.transcripts = agents.TranscriptionPublisher(self.room)
        self.answered = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, args: argparse.Namespace) -> None:
        await _shared.connect(
            self.room,
            args,
            AGENT_IDENTITY,
            name="Example agent",
            kind="agent",
            # In the token, so the very first thing frontends see is "initializing".
            attributes={agents.ATTR_AGENT_STATE: agents.AgentState.INITIALIZING.value},
        )
        self.room.local_participant.register_rpc_method(RPC_ASK, self._on_ask)
        agents.on_chat(self.room, self._on_chat)
        await self.presence.set_state(agents.AgentState.LISTENING)
        print(f"agent: listening in room {self.room.name} as {AGENT_IDENTITY}", flush=True)

    async def _on_ask(self, data: rtc.RpcInvocationData) -> str:
        print(f"agent: rpc {data.method}({data.payload!r}) from {data.caller_identity}", flush=True)
        answer = answer_for(data.payload)
        self._spawn(self._speak(answer))
        return json.dumps({"answer": answer})

    def _on_chat(self, message: agents.ChatMessage) -> None:
        print(f"agent: chat {message.message!r} from {message.sender_identity}", flush=True)
        self._spawn(self._speak(answer_for(message.message)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _speak(self, answer: str) -> None:
        async with self._lock:  # one answer at a time, as a voice agent talks
            await self.presence.set_state(agents.AgentState.THINKING)
            await asyncio.sleep(THINK_S)
            await self.presence.set_state(agents.AgentState.SPEAKING)
            # track_sid="" : a text-only answer, not tied to an audio track
            async with await self.transcripts.stream(track_sid="") as writer:
                for i, word in enumerate(answer.split(" ")):
                    await writer.write(word if i == 0 else " " + word)
                    await asyncio.sleep(WORD_DELAY_S)
            await self.presence.set_state(agents.AgentState.LISTENING)
            print(f"agent: said {answer!r}", flush=True)
            self.answered.set()

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    agent = ExampleAgent()
    await agent.start(args)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                if args.once:
                    await agent.answered.wait()
                    await _shared.wait_until_alone(agent.room)
                else:
                    await asyncio.Event().wait()
    finally:
        await agent.stop()
    print("agent: left", flush=True)
    return 0 if agent.answered.is_set() or not args.once else 1


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__)
    parser.add_argument("--once", action="store_true", help="leave after the first answer")
    _shared.add_duration_arg(parser)
    args = _shared.parse_args(parser)
    return _shared.run_until_interrupted(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
