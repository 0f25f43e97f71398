"""Helpers shared by the commands: errors, connection arguments, progress bar, timestamps."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from lkproto.rtc import Room

__all__ = [
    "DEFAULT_URL",
    "CliError",
    "Progress",
    "add_connection_arguments",
    "clock",
    "connect_room",
    "mint_token",
    "preview",
]

DEFAULT_URL: Final = "ws://127.0.0.1:7880"
# The official CLI's environment variables (livekit-cli): same names, same meaning.
ENV_URL: Final = "LIVEKIT_URL"
ENV_TOKEN: Final = "LIVEKIT_TOKEN"
ENV_API_KEY: Final = "LIVEKIT_API_KEY"
ENV_API_SECRET: Final = "LIVEKIT_API_SECRET"
PREVIEW_CHARS: Final = 80
PROGRESS_INTERVAL_S: Final = 0.1


class CliError(Exception):
    """A failure to report as one line on stderr, with exit ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def clock() -> str:
    """Local wall-clock time for log lines, ``HH:MM:SS.mmm``."""
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


def preview(data: bytes | str, limit: int = PREVIEW_CHARS) -> str:
    """Printable one-line preview: text as ``repr``-like quoted string, binary as hex."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            hexed = data[: limit // 2].hex()
            return f"0x{hexed}…" if len(data) > limit // 2 else f"0x{hexed}"
    else:
        text = data
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(shown)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` or the credentials to mint one, ``--tap`` and ICE options."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url", default=None, help=f"server URL (${ENV_URL}, else {DEFAULT_URL})", metavar="URL"
    )
    group.add_argument(
        "--token", default=None, help=f"access token (${ENV_TOKEN}); else one is minted"
    )
    group.add_argument(
        "--api-key", default=None, help=f"key to mint with (${ENV_API_KEY}, else the demo key)"
    )
    group.add_argument("--api-secret", default=None, help=f"its secret (${ENV_API_SECRET})")
    group.add_argument("--identity", default=None, help="identity (default: lkproto-cli-XXXX)")
    group.add_argument("--room", default="demo", help="room to join (demo)")
    group.add_argument("--name", default=None, help="display name")
    group.add_argument(
        "--connect-timeout", type=float, default=15.0, metavar="S", help="seconds (15)"
    )
    group.add_argument(
        "--tap", default=None, metavar="FILE", help="append a JSON Lines wire tap to FILE"
    )
    group.add_argument(
        "--ice-address",
        action="append",
        default=None,
        metavar="IP",
        help="gather ICE candidates on IP only (repeatable; loopback for a loopback URL)",
    )


def mint_token(
    *,
    api_key: str | None,
    api_secret: str | None,
    identity: str,
    room: str,
    name: str | None = None,
) -> str:
    """A join token for ``identity`` in ``room`` (demo credentials unless given)."""
    from lkproto.api.access_token import AccessToken, VideoGrants
    from lkproto.testing.server import DEMO_API_KEY, DEMO_API_SECRET

    key = api_key or os.environ.get(ENV_API_KEY) or DEMO_API_KEY
    secret = api_secret or os.environ.get(ENV_API_SECRET) or DEMO_API_SECRET
    token = AccessToken(key, secret).with_identity(identity)
    if name:
        token = token.with_name(name)
    return token.with_grants(VideoGrants(room_join=True, room=room)).to_jwt()


def _is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def connect_room(args: argparse.Namespace) -> Room:
    """Join with the connection arguments; the caller disconnects.

    Raises:
        LkError: the server refused or could not be reached.
        OSError: the tap file cannot be opened.
    """
    from lkproto import rtc

    url = args.url or os.environ.get(ENV_URL) or DEFAULT_URL
    token = args.token or os.environ.get(ENV_TOKEN)
    if not token:
        identity = args.identity or f"lkproto-cli-{uuid.uuid4().hex[:4]}"
        token = mint_token(
            api_key=args.api_key,
            api_secret=args.api_secret,
            identity=identity,
            room=args.room,
            name=args.name,
        )
    addresses = args.ice_address or (["127.0.0.1"] if _is_loopback_url(url) else None)
    options = rtc.RoomOptions(
        connect_timeout=args.connect_timeout,
        rtc_config=rtc.RtcConfiguration(ice_addresses=addresses) if addresses else None,
        tap_file=args.tap,
    )
    room = rtc.Room()
    await room.connect(url, token, options)
    return room


class Progress:
    """A one-line progress bar on stderr: percentage, bytes, rate and ETA.

    Redrawn at most every :data:`PROGRESS_INTERVAL_S` (and always at 100 %); on a terminal the
    line is rewritten in place, elsewhere each redraw is a new line only at the end.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._tty = self._stream.isatty()
        self.done = 0

    def update(self, done: int, total: int | None = None) -> None:
        """Report ``done`` bytes (of ``total`` if it changed)."""
        if total is not None:
            self.total = total
        self.done = done
        now = time.monotonic()
        finished = done >= self.total
        if not finished and now - self._last_draw < PROGRESS_INTERVAL_S:
            return
        self._last_draw = now
        if self._tty or finished:
            end = "\n" if finished else ""
            print("\r" + self.render(now), end=end, file=self._stream, flush=True)

    def render(self, now: float | None = None) -> str:
        """The bar as text (no newline)."""
        elapsed = max((now if now is not None else time.monotonic()) - self._start, 1e-6)
        fraction = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(width * min(fraction, 1.0))
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = "--" if remaining == float("inf") else f"{remaining:.0f}s"
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} "
            f"{_size(self.done)}/{_size(self.total)} {_size(rate)}/s ETA {eta}"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
