"""``lkproto server`` and ``lkproto install-server``: a loopback livekit-server for development."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "INSTALL_SERVER_EPILOG",
    "SERVER_EPILOG",
    "add_install_server_arguments",
    "add_server_arguments",
    "run_install_server",
    "run_server",
]

_SERVER_WATCH_INTERVAL_S: Final = 0.5

SERVER_EPILOG: Final = """\
examples:
  lkproto server                      # ws://127.0.0.1:7880, prints a demo token
  lkproto server --port 7890 --room test --log-dir /tmp/lk
"""

INSTALL_SERVER_EPILOG: Final = """\
examples:
  lkproto install-server              # builds the pinned version into ~/.cache/lkproto
  LKPROTO_LIVEKIT_SERVER=/usr/local/bin/livekit-server lkproto install-server
"""


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=7880, help="HTTP/signalling port (7880)")
    parser.add_argument("--udp-port", type=int, default=7882, help="ICE UDP port (7882)")
    parser.add_argument("--room", default="demo", help="room of the printed token (demo)")
    parser.add_argument("--identity", default="demo-user", help="identity of the token (demo-user)")
    parser.add_argument("--log-level", default="info", help="server log level (info)")
    parser.add_argument("--log-dir", default=None, help="keep the server log in this directory")


def run_server(args: argparse.Namespace) -> int:
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


def add_install_server_arguments(parser: argparse.ArgumentParser) -> None:
    from lkproto.testing.install import DEFAULT_LIVEKIT_SERVER_VERSION

    parser.add_argument(
        "--version",
        dest="server_version",
        default=DEFAULT_LIVEKIT_SERVER_VERSION,
        help=f"release tag to build ({DEFAULT_LIVEKIT_SERVER_VERSION})",
    )
    parser.add_argument("--cache-dir", default=None, help="cache directory (~/.cache/lkproto)")


def run_install_server(args: argparse.Namespace) -> int:
    from lkproto.testing.install import ensure_livekit_server

    print(ensure_livekit_server(args.server_version, args.cache_dir))
    return 0
