"""Room administration with the server API: create, list, inspect, mute, remove, delete.

Shows :class:`lkproto.api.LiveKitAPI`, call-compatible with the official ``livekit-api``: each
method of ``lkapi.room`` takes the request message (``api.CreateRoomRequest(...)``, ...) and
returns the server's response message. Errors from the server arrive as ``api.TwirpError`` with
the Twirp code (``not_found``, ``permission_denied``, ...).

::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/room_admin.py create my-room --max-participants 10
    python examples/room_admin.py list
    python examples/room_admin.py participants my-room
    python examples/room_admin.py mute my-room alice            # every track of alice
    python examples/room_admin.py mute my-room alice --unmute --track TR_xxx
    python examples/room_admin.py remove my-room alice
    python examples/room_admin.py delete my-room

Each command makes its calls and exits (status 1 with the server's error on failure).
"""

from __future__ import annotations

import argparse
import asyncio

import _shared

from lkproto import api

__all__ = ["main"]


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    async with api.LiveKitAPI(args.url, args.api_key, args.api_secret) as lkapi:
        try:
            return await COMMANDS[args.command](lkapi, args)
        except api.TwirpError as exc:
            print(f"server error: {exc.code} ({exc.status}): {exc.message}", flush=True)
            return 1


async def create(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    room = await lkapi.room.create_room(
        api.CreateRoomRequest(
            name=args.room,
            empty_timeout=args.empty_timeout,
            max_participants=args.max_participants,
        )
    )
    print(
        f"created {room.name} ({room.sid}), empty timeout {room.empty_timeout} s, "
        f"max participants {room.max_participants}",
        flush=True,
    )
    return 0


async def list_rooms(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    del args
    res = await lkapi.room.list_rooms(api.ListRoomsRequest())
    for room in sorted(res.rooms, key=lambda r: r.name):
        print(
            f"{room.name}: {room.num_participants} participants, {room.num_publishers} publishing",
            flush=True,
        )
    print(f"{len(res.rooms)} rooms", flush=True)
    return 0


async def participants(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    res = await lkapi.room.list_participants(api.ListParticipantsRequest(room=args.room))
    for p in sorted(res.participants, key=lambda p: p.identity):
        tracks = ", ".join(
            f"{t.sid} {t.name or '-'}{' (muted)' if t.muted else ''}" for t in p.tracks
        )
        print(f"{p.identity}: {len(p.tracks)} tracks{': ' + tracks if tracks else ''}", flush=True)
    print(f"{len(res.participants)} participants", flush=True)
    return 0


async def mute(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    who = await lkapi.room.get_participant(
        api.RoomParticipantIdentity(room=args.room, identity=args.identity)
    )
    sids = [args.track] if args.track else [t.sid for t in who.tracks]
    if not sids:
        print(f"{args.identity} publishes no track", flush=True)
        return 1
    for sid in sids:
        res = await lkapi.room.mute_published_track(
            api.MuteRoomTrackRequest(
                room=args.room, identity=args.identity, track_sid=sid, muted=not args.unmute
            )
        )
        print(
            f"{'unmuted' if args.unmute else 'muted'} {res.track.sid} of {args.identity}",
            flush=True,
        )
    return 0


async def remove(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    await lkapi.room.remove_participant(
        api.RoomParticipantIdentity(room=args.room, identity=args.identity)
    )
    print(f"removed {args.identity} from {args.room}", flush=True)
    return 0


async def delete(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> int:
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=args.room))
    print(f"deleted {args.room}", flush=True)
    return 0


COMMANDS = {
    "create": create,
    "list": list_rooms,
    "participants": participants,
    "mute": mute,
    "remove": remove,
    "delete": delete,
}


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__, room=None)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("create", help="create a room")
    cmd.add_argument("room")
    cmd.add_argument("--empty-timeout", type=int, default=300, help="seconds (300)")
    cmd.add_argument("--max-participants", type=int, default=0, help="0 = no limit")
    commands.add_parser("list", help="list the rooms")
    cmd = commands.add_parser("participants", help="list a room's participants and tracks")
    cmd.add_argument("room")
    cmd = commands.add_parser("mute", help="mute (or unmute) a participant's tracks")
    cmd.add_argument("room")
    cmd.add_argument("identity")
    cmd.add_argument("--track", help="only this track SID")
    cmd.add_argument("--unmute", action="store_true")
    cmd = commands.add_parser("remove", help="remove a participant")
    cmd.add_argument("room")
    cmd.add_argument("identity")
    cmd = commands.add_parser("delete", help="delete a room (everyone in it is disconnected)")
    cmd.add_argument("room")
    args = _shared.parse_args(parser)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
