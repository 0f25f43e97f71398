"""What every example shares: the command line, join tokens, loopback-aware room options, the run.

Not an example itself. Each example puts its own directory first on ``sys.path`` (Python does
that for ``python examples/<name>.py``), so ``import _shared`` finds this file.

The server comes from ``--url`` / ``--api-key`` / ``--api-secret`` or, as in LiveKit's own
examples, from ``LIVEKIT_URL`` / ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``. ``lkproto server``
prints the three variables for a development server on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from lkproto import api, rtc

__all__ = [
    "LEAVE_GRACE_S",
    "add_duration_arg",
    "add_server_args",
    "check_server_args",
    "connect",
    "fail",
    "new_parser",
    "parse_args",
    "room_options",
    "run_until_interrupted",
    "token_for",
    "wait_until_alone",
]

# How long a program that has said its last word stays for its listeners (see wait_until_alone).
LEAVE_GRACE_S = 10.0


def add_server_args(
    parser: argparse.ArgumentParser, *, room: str | None = "lkproto-examples"
) -> None:
    """Add ``--url``, ``--api-key``, ``--api-secret`` (and ``--room`` unless ``room`` is None)."""
    env = os.environ.get
    parser.add_argument("--url", default=env("LIVEKIT_URL"), help="ws(s):// URL ($LIVEKIT_URL)")
    parser.add_argument("--api-key", default=env("LIVEKIT_API_KEY"), help="($LIVEKIT_API_KEY)")
    parser.add_argument(
        "--api-secret", default=env("LIVEKIT_API_SECRET"), help="($LIVEKIT_API_SECRET)"
    )
    if room is not None:
        parser.add_argument("--room", default=room, help=f"room to join ({room})")


def new_parser(
    doc: str | None, *, server_args: bool = True, room: str | None = "lkproto-examples"
) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the example's module docstring).

    Args:
        doc: the example's ``__doc__``.
        server_args: add :func:`add_server_args` (False: the example adds them itself, e.g. to
            each subcommand).
        room: the ``--room`` default, as in :func:`add_server_args`.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    if server_args:
        add_server_args(parser, room=room)
    return parser


def add_duration_arg(parser: argparse.ArgumentParser, *, verb: str = "leave") -> None:
    """Add ``--duration N`` (seconds; None, the default, runs until Ctrl-C)."""
    parser.add_argument("--duration", type=float, default=None, help=f"{verb} after N seconds")


def check_server_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error when the server URL or a key is missing."""
    missing = [n for n in ("url", "api_key", "api_secret") if not getattr(args, n)]
    if missing:
        names = ", ".join("--" + n.replace("_", "-") for n in missing)
        parser.error(f"missing {names} (or the LIVEKIT_* environment variables)")


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; exit with a usage error when the server URL or a key is missing
    (:func:`check_server_args`)."""
    args = parser.parse_args()
    check_server_args(parser, args)
    return args


def token_for(
    args: argparse.Namespace,
    identity: str,
    *,
    name: str | None = None,
    kind: str | None = None,
    attributes: dict[str, str] | None = None,
) -> str:
    """A join token for ``args.room`` signed with the key from the arguments."""
    token = api.AccessToken(args.api_key, args.api_secret).with_identity(identity)
    if name is not None:
        token = token.with_name(name)
    if kind is not None:
        token = token.with_kind(kind)
    if attributes is not None:
        token = token.with_attributes(attributes)
    grants = api.VideoGrants(room_join=True, room=args.room, can_update_own_metadata=True)
    return token.with_grants(grants).to_jwt()


def room_options(url: str) -> rtc.RoomOptions:
    """Room options for ``url``: on a loopback server, ICE gathers on 127.0.0.1 only.

    aioice leaves loopback addresses out of its host candidates, so a server on this machine is
    otherwise reached over another interface after the STUN wait (PROTOCOL-MAP §17 "ICE on
    loopback"). ``ice_addresses`` is an lkproto extra of ``RtcConfiguration``.
    """
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return rtc.RoomOptions()
    return rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))


async def connect(
    room: rtc.Room,
    args: argparse.Namespace,
    identity: str,
    *,
    name: str | None = None,
    kind: str | None = None,
    attributes: dict[str, str] | None = None,
) -> None:
    """Join ``args.room`` on ``args.url`` as ``identity`` (the other keywords go into the token,
    see :func:`token_for`), with :func:`room_options` for that server."""
    token = token_for(args, identity, name=name, kind=kind, attributes=attributes)
    await room.connect(args.url, token, room_options(args.url))


def run_until_interrupted(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace
) -> int:
    """``asyncio.run(main(args))``; Ctrl-C ends the program quietly with status 0."""
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main(args))
    return 0


def fail(message: str) -> None:
    """Print ``message`` to stderr and exit with status 1."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


async def wait_until_alone(room: rtc.Room, within: float = LEAVE_GRACE_S) -> None:
    """Return once nobody else is in ``room``, or after ``within`` seconds.

    ``publish_data``, ``send_text`` and a stream writer's ``aclose`` return once the data is
    queued on the data channel, not once it arrived, and ``Room.disconnect`` drops what is still
    queued (the official SDK behaves the same). A program that leaves right after its last reply
    can therefore lose that reply; staying until the people it answered have left (they leave
    once they have it) cannot.
    """
    alone = asyncio.Event()

    def check(*_: object) -> None:
        if not room.remote_participants:
            alone.set()

    room.on("participant_disconnected", check)
    try:
        check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(alone.wait(), within)
    finally:
        room.off("participant_disconnected", check)
