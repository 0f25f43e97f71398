"""A voice-agent frontend in a terminal: prints the agent's state and the live transcript.

Shows the frontend side of LiveKit's agent conventions with :class:`lkproto.agents.AgentSession`,
which does what the ``useAgent`` / ``useTranscriptions`` hooks of the web components do: it
derives the agent's state (``connecting``, ``initializing``, ``listening``, ``thinking``,
``speaking``, ...) from the agent participant's ``lk.agent.state`` attribute, and merges the
``lk.transcription`` text streams into segments that grow and become final.

Once the agent listens, the frontend can ask it something by RPC (``--ask``, the ``ask`` method
of ``examples/transcript_agent.py``) and/or send a chat message (``--chat``)::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/transcript_agent.py --room my-room &
    python examples/agent_frontend.py --room my-room --ask "what is lkproto?" --once

It works the same with a real LiveKit agent (dispatched to the room), without ``--ask``.
``--once`` leaves after the agent's first final transcript segment, ``--duration N`` after N
seconds. Output lines: ``[agent: <state>]``, ``<speaker>: <text> ...`` (interim) and
``<speaker>: <text>`` (final).
"""

from __future__ import annotations

import argparse
import asyncio

import _shared

from lkproto import agents, rtc

__all__ = ["main"]

USER_IDENTITY = "frontend-user"
AGENT_TIMEOUT_S = 20.0


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    room = rtc.Room()
    session = agents.AgentSession(room, agent_connect_timeout=AGENT_TIMEOUT_S)
    agent_answered = asyncio.Event()

    def on_state(old: agents.AgentState, new: agents.AgentState) -> None:
        del old
        print(f"[agent: {new.value}]", flush=True)

    def on_segment(segment: agents.TranscriptSegment) -> None:
        who = "you" if segment.participant_identity == USER_IDENTITY else "agent"
        if not segment.is_agent and who != "you":
            who = segment.participant_identity
        print(f"{who}: {segment.text}{'' if segment.final else ' ...'}", flush=True)
        if segment.final and segment.is_agent:
            agent_answered.set()

    session.on("state_changed", on_state)
    session.on("transcript_updated", on_segment)
    session.on("failed", lambda reasons: print(f"agent failed: {'; '.join(reasons)}", flush=True))

    await _shared.connect(room, args, USER_IDENTITY, name="User")
    print(f"frontend: joined room {room.name} as {USER_IDENTITY}", flush=True)
    status = 0
    try:
        async with asyncio.timeout(args.duration):
            await session.wait_for(agents.AgentState.LISTENING, timeout=AGENT_TIMEOUT_S)
            agent = session.agent
            if args.ask and agent is not None:
                result = await room.local_participant.perform_rpc(
                    destination_identity=agent.identity, method="ask", payload=args.ask
                )
                print(f"rpc ask -> {result}", flush=True)
            if args.chat:
                await session.send_chat(args.chat)
            if args.once:
                await agent_answered.wait()
            else:
                await asyncio.Event().wait()
    except TimeoutError:
        # --duration passed, or the agent was not listening within AGENT_TIMEOUT_S
        if args.once:
            print("frontend: no answer from the agent in time", flush=True)
            status = 1
    except agents.AgentSessionError as exc:
        print(f"frontend: {exc}", flush=True)
        status = 1
    finally:
        await session.aclose()
        await room.disconnect()
    print("frontend: left", flush=True)
    return status


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__)
    parser.add_argument("--ask", help="ask the agent this by RPC (method 'ask') once it listens")
    parser.add_argument("--chat", help="send this chat message once the agent listens")
    parser.add_argument(
        "--once", action="store_true", help="leave after the agent's first final segment"
    )
    _shared.add_duration_arg(parser)
    args = _shared.parse_args(parser)
    return _shared.run_until_interrupted(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
