"""``lkproto token``: mint an access token (JWT) with room grants."""

from __future__ import annotations

import argparse
import datetime
import os
import re
from typing import Final

from lkproto.cli._common import ENV_API_KEY, ENV_API_SECRET, CliError

__all__ = ["TOKEN_EPILOG", "add_token_arguments", "parse_duration", "run_token"]

TOKEN_EPILOG: Final = """\
examples:
  lkproto token --identity alice --room demo              # demo key of `lkproto server`
  lkproto token --identity bot --kind agent --ttl 10m --attribute role=helper
  lkproto token --identity viewer --no-publish --no-publish-data --hidden
  lkproto token --api-key KEY --api-secret SECRET --identity admin --admin --create --list

Credentials default to $LIVEKIT_API_KEY / $LIVEKIT_API_SECRET, else the demo key of
`lkproto server`. The token is printed on stdout.
"""

_DURATION_RE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """``90``, ``90s``, ``10m``, ``6h``, ``1d`` as a timedelta.

    Raises:
        argparse.ArgumentTypeError: not a positive duration.
    """
    match = _DURATION_RE.match(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90, 90s, 10m, 6h, 1d)")
    return datetime.timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def _attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", default=None, help=f"API key (${ENV_API_KEY}, else demo)")
    parser.add_argument("--api-secret", default=None, help=f"API secret (${ENV_API_SECRET})")
    parser.add_argument("--identity", default=None, help="participant identity (needed to join)")
    parser.add_argument("--room", default="demo", help="room the grants apply to (demo)")
    parser.add_argument("--name", default=None, help="display name")
    parser.add_argument("--metadata", default=None, help="participant metadata")
    parser.add_argument(
        "--attribute",
        type=_attribute,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="participant attribute (repeatable)",
    )
    parser.add_argument(
        "--ttl", type=parse_duration, default=None, metavar="DURATION", help="lifetime (6h)"
    )
    parser.add_argument(
        "--kind", default=None, help="participant kind: standard, agent, sip, ingress, egress"
    )
    grants = parser.add_argument_group("grants")
    grants.add_argument("--no-join", action="store_true", help="no roomJoin grant")
    grants.add_argument("--no-publish", action="store_true", help="may not publish tracks")
    grants.add_argument("--no-subscribe", action="store_true", help="may not subscribe")
    grants.add_argument("--no-publish-data", action="store_true", help="may not send data")
    grants.add_argument(
        "--sources",
        default=None,
        metavar="LIST",
        help="allowed track sources, comma separated (camera,microphone,screen_share,...)",
    )
    grants.add_argument(
        "--update-own-metadata", action="store_true", help="may change own name/metadata"
    )
    grants.add_argument("--hidden", action="store_true", help="invisible to others")
    grants.add_argument("--agent", action="store_true", help="agent grant")
    grants.add_argument("--admin", action="store_true", help="roomAdmin")
    grants.add_argument("--create", action="store_true", help="roomCreate")
    grants.add_argument("--list", action="store_true", help="roomList")
    grants.add_argument("--record", action="store_true", help="roomRecord")


def run_token(args: argparse.Namespace) -> int:
    from lkproto.api.access_token import AccessToken, VideoGrants
    from lkproto.testing.server import DEMO_API_KEY, DEMO_API_SECRET

    join = not args.no_join
    if join and not args.identity:
        raise CliError("--identity is required for a join token (or pass --no-join)", 2)
    key = args.api_key or os.environ.get(ENV_API_KEY) or DEMO_API_KEY
    secret = args.api_secret or os.environ.get(ENV_API_SECRET) or DEMO_API_SECRET
    grants = VideoGrants(
        room_join=True if join else None,
        room=args.room,
        can_publish=not args.no_publish,
        can_subscribe=not args.no_subscribe,
        can_publish_data=not args.no_publish_data,
        can_publish_sources=[s.strip() for s in args.sources.split(",") if s.strip()]
        if args.sources
        else None,
        can_update_own_metadata=True if args.update_own_metadata else None,
        hidden=True if args.hidden else None,
        agent=True if args.agent else None,
        room_admin=True if args.admin else None,
        room_create=True if args.create else None,
        room_list=True if args.list else None,
        room_record=True if args.record else None,
    )
    token = AccessToken(key, secret)
    if args.identity:
        token = token.with_identity(args.identity)
    if args.name:
        token = token.with_name(args.name)
    if args.metadata:
        token = token.with_metadata(args.metadata)
    if args.attribute:
        token = token.with_attributes(dict(args.attribute))
    if args.kind:
        token = token.with_kind(args.kind)
    if args.ttl is not None:
        token = token.with_ttl(args.ttl)
    print(token.with_grants(grants).to_jwt())
    return 0
