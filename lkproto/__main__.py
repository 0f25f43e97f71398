"""Command line: ``python -m lkproto <command>`` (also installed as ``lkproto``).

Commands:
    server          run a loopback livekit-server in the foreground with the demo key.
    install-server  build (once) the pinned livekit-server and print its path.

Each command is a pair of functions registered in :data:`COMMANDS`: one adds its arguments to a
sub-parser, the other runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Final

from lkproto.errors import LkError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

__all__ = ["COMMANDS", "build_parser", "main"]

_SERVER_WATCH_INTERVAL_S: Final = 0.5


def _add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=7880, help="HTTP/signalling port (7880)")
    parser.add_argument("--udp-port", type=int, default=7882, help="ICE UDP port (7882)")
    parser.add_argument("--room", default="demo", help="room of the printed token (demo)")
    parser.add_argument("--identity", default="demo-user", help="identity of the token (demo-user)")
    parser.add_argument("--log-level", default="info", help="server log level (info)")
    parser.add_argument("--log-dir", default=None, help="keep the server log in this directory")


def _run_server(args: argparse.Namespace) -> int:
    from lkproto.testing.server import DEMO_API_KEY, DEMO_API_SECRET, LocalServer

    server = LocalServer(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        port=args.port,
        udp_port=args.udp_port,
        log_level=args.log_level,
        log_dir=args.log_dir,
    )
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        try:
            token = server.create_token(args.identity, args.room, name=args.identity)
            print(f"url:        {server.url}")
            print(f"api key:    {server.api_key}")
            print(f"api secret: {server.api_secret}")
            print(f"room:       {args.room}")
            print(f"identity:   {args.identity}")
            print(f"token:      {token}")
            print(f"log:        {server.log_path}")
            print("press Ctrl-C to stop", flush=True)
            while not stop_requested.wait(_SERVER_WATCH_INTERVAL_S):
                if not server.running:
                    print(f"livekit-server exited:\n{server.log_tail()}", file=sys.stderr)
                    return 1
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _add_install_args(parser: argparse.ArgumentParser) -> None:
    from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION

    parser.add_argument(
        "--version",
        dest="server_version",
        default=DEFAULT_LIVEKIT_SERVER_VERSION,
        help=f"release tag to build ({DEFAULT_LIVEKIT_SERVER_VERSION})",
    )
    parser.add_argument("--cache-dir", default=None, help="cache directory (~/.cache/lkproto)")


def _run_install(args: argparse.Namespace) -> int:
    from lkproto.testing.install import ensure_livekit_server

    print(ensure_livekit_server(args.server_version, args.cache_dir))
    return 0


COMMANDS: Final[
    dict[
        str,
        tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
    ]
] = {
    "server": ("run a loopback livekit-server with the demo key", _add_server_args, _run_server),
    "install-server": ("build the pinned livekit-server", _add_install_args, _run_install),
}
"""Sub-commands: name -> (help, add-arguments function, run function returning the status)."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per entry of :data:`COMMANDS`.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="lkproto", description="lkproto command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_args(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The exit status (errors from lkproto are printed, not raised).
    """
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except LkError as exc:
        print(f"lkproto {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
