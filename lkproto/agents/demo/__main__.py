"""``python -m lkproto.agents.demo [web]``: the voice-agent demo on 127.0.0.1.

Without a command: start a local livekit-server, dispatch the agent, run the Python frontend
through one spoken turn, the ``get_weather`` RPC and a chat message, print what the frontend
sees, check it, stop everything and exit (0 when every check passed).

``web``: start the server and serve the web page (``http://127.0.0.1:8080/``); each page session
gets a fresh room and its own agent. Runs until Ctrl-C (or ``--duration`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import time
from typing import TYPE_CHECKING, Final

from lkproto.agents.demo import (
    ANSWER_TEXT,
    CHAT_REPLY_TEXT,
    QUESTION_TEXT,
    USER_IDENTITY,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lkproto.agents.demo.frontend import FrontendReport
    from lkproto.testing import LocalServer

__all__ = ["check_report", "main"]

# The whole console conversation normally takes ~15 s; this bounds a hung run.
DEMO_TIMEOUT_S: Final = 90.0
AGENT_LEAVE_TIMEOUT_S: Final = 10.0
EXPECTED_STATES: Final = ("listening", "thinking", "speaking", "listening")


def _is_subsequence(needle: Sequence[str], haystack: Sequence[str]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


def check_report(report: FrontendReport) -> list[str]:
    """What went wrong in a console run (empty when everything the demo shows happened)."""
    problems: list[str] = []
    if not _is_subsequence(EXPECTED_STATES, report.states):
        problems.append(f"agent states {report.states}, expected {' -> '.join(EXPECTED_STATES)}")
    for speaker, text in (
        ("you", QUESTION_TEXT),
        ("agent", ANSWER_TEXT),
        ("agent", CHAT_REPLY_TEXT),
    ):
        if (speaker, text) not in report.final_segments:
            problems.append(f"no final transcript {speaker}: {text!r}")
    if report.interim_updates == 0:
        problems.append("no interim transcript")
    if not report.weather or report.weather.get("condition") != "sunny":
        problems.append(f"get_weather answered {report.weather}")
    if report.image is None or not report.image.sha256_ok or report.image.dimensions is None:
        problems.append(f"picture: {report.image}")
    return problems


def _log_note(args: argparse.Namespace) -> str:
    # without --log-dir the server log lives in a private directory removed on exit
    return f" (log in {args.log_dir})" if args.log_dir else ""


def _say(line: str) -> None:
    print(f"    (agent log) {line}", flush=True)


async def _start_server(log_dir: str | None) -> LocalServer:
    from lkproto.testing import LocalServer

    server = LocalServer(log_dir=log_dir)
    await asyncio.to_thread(server.start)
    return server


async def _console(args: argparse.Namespace) -> int:
    from lkproto.agents.demo.agent import MoonAgent, agent_token
    from lkproto.agents.demo.frontend import DemoFailed, run_frontend

    started = time.monotonic()
    server = await _start_server(args.log_dir)
    try:
        room = f"demo-{secrets.token_hex(4)}"
        print(f"demo: livekit-server {server.url}{_log_note(args)}", flush=True)
        agent = MoonAgent(say=_say if args.agent_log else None)
        agent_task: asyncio.Task[None] | None = None

        def dispatch() -> None:
            nonlocal agent_task
            print("demo: user joined; dispatching the agent", flush=True)
            token = agent_token(server.api_key, server.api_secret, room)
            agent_task = asyncio.ensure_future(agent.run(server.url, token))

        user_token = server.create_token(USER_IDENTITY, room, name="Demo user")
        try:
            report = await asyncio.wait_for(
                run_frontend(server.url, user_token, on_joined=dispatch), DEMO_TIMEOUT_S
            )
        except (DemoFailed, TimeoutError) as exc:
            print(f"demo: FAILED: {exc or 'timed out'}", flush=True)
            print(f"--- livekit-server log tail ---\n{server.log_tail()}", flush=True)
            return 1
        finally:
            if agent_task is not None:
                try:
                    await asyncio.wait_for(agent_task, AGENT_LEAVE_TIMEOUT_S)
                except TimeoutError:
                    print("demo: the agent did not leave in time", flush=True)
        problems = check_report(report)
        for problem in problems:
            print(f"demo: FAILED: {problem}", flush=True)
        if problems:
            return 1
        print(
            f"demo: ok: states {' -> '.join(report.states)}; "
            f"{len(report.final_segments)} final and {report.interim_updates} interim transcript "
            f"updates; picture {report.image.size if report.image else 0} bytes; "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        return 0
    finally:
        await asyncio.to_thread(server.stop)


async def _web(args: argparse.Namespace) -> int:
    from lkproto.agents.demo.web import BundleMissingError, WebDemo, check_bundle

    try:
        check_bundle()
    except BundleMissingError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    server = await _start_server(args.log_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with WebDemo(
            server.url,
            server.api_key,
            server.api_secret,
            host=args.host,
            port=args.port,
            say=_say if args.agent_log else None,
        ) as web:
            print(f"demo: livekit-server {server.url}{_log_note(args)}")
            print(f"demo: open {web.url} (each page load gets its own room and agent)")
            print("demo: press Ctrl-C to stop", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(server.stop)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m lkproto.agents.demo",
        description="A voice agent and its frontend on a local livekit-server (127.0.0.1).",
    )
    parser.add_argument("--log-dir", default=None, help="keep the server log in this directory")
    parser.add_argument(
        "--quiet-agent", dest="agent_log", action="store_false", help="hide the agent's log lines"
    )
    commands = parser.add_subparsers(dest="command")
    web = commands.add_parser("web", help="serve the web page instead of running the console demo")
    web.add_argument("--host", default="127.0.0.1", help="address to serve the page on")
    web.add_argument("--port", type=int, default=8080, help="port to serve the page on (8080)")
    web.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: never)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    args = build_parser().parse_args(argv)
    runner = _web if args.command == "web" else _console
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
