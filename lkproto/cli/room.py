"""``lkproto join``, ``send``, ``recv`` and ``rpc``: one participant in a room, from a shell."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Final

from lkproto.cli._common import (
    CliError,
    Progress,
    add_connection_arguments,
    clock,
    connect_room,
    preview,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from lkproto.rtc import ByteStreamReader, Room, TextStreamReader
    from lkproto.rtc.events import RoomEvent

__all__ = [
    "JOIN_EPILOG",
    "RECV_EPILOG",
    "RPC_EPILOG",
    "SEND_EPILOG",
    "add_join_arguments",
    "add_recv_arguments",
    "add_rpc_arguments",
    "add_send_arguments",
    "describe_event",
    "run_join",
    "run_recv",
    "run_rpc",
    "run_send",
]

# Reliable packets are queued in SCTP when the send call returns: give them time to leave before
# the peer connection closes.
DEFAULT_LINGER_S: Final = 1.0
DEFAULT_WAIT_S: Final = 10.0
_POLL_S: Final = 0.05

JOIN_EPILOG: Final = """\
examples:
  lkproto join --room demo --identity watcher          # demo key, ws://127.0.0.1:7880
  lkproto join --url wss://my.livekit.cloud --token "$TOKEN" --tap session.jsonl
  lkproto join --duration 30                           # leave after 30 s

Prints one line per room event (participants, tracks, data, speakers, quality...) until
Ctrl-C. --tap writes every signal message and data packet to a JSON Lines file (see `lkproto tap`).
"""

SEND_EPILOG: Final = """\
examples:
  lkproto send --payload 'hello' --topic chat            # one user data packet (reliable)
  lkproto send --payload 'ping' --lossy --to bob
  lkproto send --text 'a longer message' --topic lk.chat  # a text stream
  lkproto send --file ./report.pdf --to bob               # a byte stream, with progress bar

Waits (--wait, 10 s) until someone else (or every --to identity) is in the room: packets sent
to an empty room are dropped by the server.
"""

RECV_EPILOG: Final = """\
examples:
  lkproto recv                                    # data packets + streams on the empty topic
  lkproto recv --topic chat --topic files --out-dir ./downloads
  lkproto recv --count 1 --duration 30            # exit after the first item or 30 s

Data packets are shown whatever their topic (unless --topic filters them); text and byte
streams are only accepted on the --topic topics (streams need a handler per topic). Files from
byte streams are saved into --out-dir under their (sanitised) name.
"""

RPC_EPILOG: Final = """\
examples:
  lkproto rpc --to agent --method get_weather --payload '{"city": "Paris"}'
  lkproto rpc --to bob --method ping --timeout 5

Prints the response on stdout; an RPC error is one line on stderr (with its code), exit 1.
"""


# -- shared ------------------------------------------------------------------------------------


def _add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="IDENTITY",
        help="destination identity (repeatable; default: everyone)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"seconds to wait for the recipients to be in the room ({DEFAULT_WAIT_S:g}; 0: no)",
    )


def _run(coro: Coroutine[object, object, int]) -> int:
    return asyncio.run(coro)


async def _wait_for_peers(room: Room, identities: list[str], timeout_s: float) -> None:
    if timeout_s <= 0:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        present = {p.identity for p in room.remote_participants.values()}
        if (identities and set(identities) <= present) or (not identities and present):
            return
        if loop.time() >= deadline:
            missing = sorted(set(identities) - present) if identities else ["anyone"]
            raise CliError(f"{', '.join(missing)} did not join within {timeout_s:g} s")
        await asyncio.sleep(_POLL_S)


def describe_event(event: RoomEvent) -> str | None:
    """One readable line for a room event (without timestamp); None to skip it."""
    from lkproto.rtc import events as ev

    match event:
        case ev.ParticipantConnected(participant=p):
            return f"+ {p.identity} joined ({p.sid})"
        case ev.ParticipantDisconnected(participant=p):
            return f"- {p.identity} left"
        case ev.TrackPublished(publication=pub, participant=p):
            return f"{p.identity} published {pub.kind.name.lower()} track {pub.sid} ({pub.name})"
        case ev.TrackUnpublished(publication=pub, participant=p):
            return f"{p.identity} unpublished track {pub.sid}"
        case ev.TrackSubscribed(publication=pub, participant=p):
            return f"subscribed to {p.identity}'s track {pub.sid}"
        case ev.TrackUnsubscribed(publication=pub, participant=p):
            return f"unsubscribed from {p.identity}'s track {pub.sid}"
        case ev.TrackMuted(publication=pub, participant=p):
            return f"{p.identity} muted {pub.sid}"
        case ev.TrackUnmuted(publication=pub, participant=p):
            return f"{p.identity} unmuted {pub.sid}"
        case ev.DataReceived(packet=pkt):
            # None: the server itself, or a sender whose ParticipantUpdate has not arrived yet.
            sender = pkt.participant.identity if pkt.participant else "(unknown)"
            topic = f" topic={pkt.topic}" if pkt.topic else ""
            return f"data from {sender}{topic} ({len(pkt.data)} B): {preview(pkt.data)}"
        case ev.ChatMessageReceived(message=msg, participant=p):
            return f"chat from {p.identity if p else 'server'}: {preview(msg.message)}"
        case ev.ActiveSpeakersChanged(speakers=speakers):
            return f"speakers: {', '.join(s.identity for s in speakers) or '(none)'}"
        case ev.ConnectionQualityChanged(participant=p, quality=q):
            return f"{p.identity} connection quality {getattr(q, 'name', q)}"
        case ev.ParticipantMetadataChanged(participant=p, metadata=m):
            return f"{p.identity} metadata: {preview(m)}"
        case ev.ParticipantNameChanged(participant=p, new_name=n):
            return f"{p.identity} is now called {n!r}"
        case ev.ParticipantAttributesChanged(participant=p, changed_attributes=a):
            return f"{p.identity} attributes: {a}"
        case ev.RoomMetadataChanged(metadata=m):
            return f"room metadata: {preview(m)}"
        case ev.Reconnecting():
            return "reconnecting…"
        case ev.Reconnected():
            return "reconnected"
        case ev.Disconnected(reason=r):
            return f"disconnected ({getattr(r, 'name', r)})"
        case ev.ConnectionStateChanged() | ev.TokenRefreshed() | ev.RoomUpdated():
            return None
    return event.name.replace("_", " ")


def _print(line: str) -> None:
    print(f"{clock()} {line}", flush=True)


def _announce(room: Room) -> None:
    me = room.local_participant
    others = ", ".join(p.identity for p in room.remote_participants.values()) or "nobody else"
    _print(f"connected to room {room.name!r} as {me.identity} ({me.sid}); here: {others}")


# -- join --------------------------------------------------------------------------------------


def add_join_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="leave after S seconds"
    )


def run_join(args: argparse.Namespace) -> int:
    return _run(_join(args))


async def _join(args: argparse.Namespace) -> int:
    room = await connect_room(args)
    try:
        events = room.events()
        _announce(room)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                async for event in events:
                    line = describe_event(event)
                    if line is not None:
                        _print(line)
    finally:
        await room.disconnect()
    return 0


# -- send --------------------------------------------------------------------------------------


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--payload", default=None, help="send one user data packet (UTF-8 text)")
    what.add_argument("--text", default=None, help="send a text stream")
    what.add_argument("--file", default=None, metavar="PATH", help="send a file (byte stream)")
    parser.add_argument("--topic", default="", help="topic (default: none)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--reliable", dest="reliable", action="store_true", default=True, help="(default)"
    )
    mode.add_argument(
        "--lossy", dest="reliable", action="store_false", help="data packet on the lossy channel"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=DEFAULT_LINGER_S,
        metavar="S",
        help=f"stay connected S seconds after sending ({DEFAULT_LINGER_S:g})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_wait_arguments(parser)
    add_connection_arguments(parser)


def run_send(args: argparse.Namespace) -> int:
    if args.file is not None and not os.path.isfile(args.file):
        raise CliError(f"no such file: {args.file}")
    args.file_size = os.path.getsize(args.file) if args.file is not None else 0
    return _run(_send(args))


async def _send(args: argparse.Namespace) -> int:
    room = await connect_room(args)
    try:
        await _wait_for_peers(room, args.to, args.wait)
        lp = room.local_participant
        if args.payload is not None:
            await lp.publish_data(
                args.payload,
                reliable=args.reliable,
                destination_identities=args.to,
                topic=args.topic,
            )
            what = f"{len(args.payload.encode())} B packet"
        elif args.text is not None:
            info = await lp.send_text(
                args.text, topic=args.topic, destination_identities=args.to or None
            )
            what = f"text stream {info.stream_id}"
        else:
            size = args.file_size
            bar = None if args.quiet else Progress(size, os.path.basename(args.file))
            binfo = await lp.send_file(
                args.file,
                topic=args.topic,
                destination_identities=args.to or None,
                on_progress=bar.update if bar is not None else None,
            )
            if bar is not None and bar.done < size:
                bar.update(size)
            what = f"file {binfo.name!r} ({size} B, stream {binfo.stream_id})"
        await asyncio.sleep(args.linger)
        print(f"sent {what}", file=sys.stderr)
    finally:
        await room.disconnect()
    return 0


# -- recv --------------------------------------------------------------------------------------


def add_recv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic",
        action="append",
        default=None,
        help="accept streams (and show packets) on this topic (repeatable; default: '')",
    )
    parser.add_argument("--out-dir", default=".", metavar="DIR", help="where received files go (.)")
    parser.add_argument(
        "--count", type=int, default=None, metavar="N", help="exit after N packets/streams"
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="exit after S seconds"
    )
    add_connection_arguments(parser)


def run_recv(args: argparse.Namespace) -> int:
    os.makedirs(args.out_dir, exist_ok=True)
    return _run(_recv(args))


def _safe_path(out_dir: str, name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")) or "unnamed"
    if base in (".", ".."):
        base = "unnamed"
    stem, ext = os.path.splitext(base)
    path = os.path.join(out_dir, base)
    n = 1
    while os.path.exists(path):
        path = os.path.join(out_dir, f"{stem}.{n}{ext}")
        n += 1
    return path


async def _recv(args: argparse.Namespace) -> int:
    from lkproto.rtc import events as ev

    topics: list[str] = args.topic if args.topic is not None else [""]
    room = await connect_room(args)
    received = 0
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def count() -> None:
        nonlocal received
        received += 1
        if args.count is not None and received >= args.count:
            done.set()

    async def read_text(reader: TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        topic = reader.info.topic
        _print(f"text from {identity} topic={topic!r} ({len(text)} chars): {preview(text)}")
        count()

    async def read_bytes(reader: ByteStreamReader, identity: str) -> None:
        info = reader.info
        path = _safe_path(args.out_dir, info.name)
        size = 0
        out = await asyncio.to_thread(open, path, "wb")
        try:
            async for chunk in reader:
                out.write(chunk)  # a page-cache write of <= 15 kB: not worth a thread hop
                size += len(chunk)
        finally:
            out.close()
        _print(f"file {info.name!r} from {identity} ({size} B) saved to {path}")
        count()

    def spawn(coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for topic in topics:
        room.register_text_stream_handler(topic, lambda r, i: spawn(read_text(r, i)))
        room.register_byte_stream_handler(topic, lambda r, i: spawn(read_bytes(r, i)))

    async def watch() -> None:
        async for event in room.events():
            if isinstance(event, ev.DataReceived):
                if args.topic is not None and (event.packet.topic or "") not in topics:
                    continue
                line = describe_event(event)
                if line:
                    _print(line)
                count()
            elif isinstance(event, ev.Disconnected):
                done.set()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        _announce(room)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                await done.wait()
    finally:
        watcher.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)
        await room.disconnect()
    return 0


# -- rpc ---------------------------------------------------------------------------------------


def add_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="IDENTITY", help="callee identity")
    parser.add_argument("--method", required=True, help="method name")
    parser.add_argument("--payload", default="", help="request payload (string)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help="seconds to wait for the callee to be present and then for the response (10)",
    )
    add_connection_arguments(parser)


def run_rpc(args: argparse.Namespace) -> int:
    return _run(_rpc(args))


async def _rpc(args: argparse.Namespace) -> int:
    from lkproto.rtc import RpcError

    room = await connect_room(args)
    try:
        await _wait_for_peers(room, [args.to], args.timeout)
        try:
            response = await room.local_participant.perform_rpc(
                destination_identity=args.to,
                method=args.method,
                payload=args.payload,
                response_timeout=args.timeout,
            )
        except RpcError as exc:
            raise CliError(f"RPC error {exc.code}: {exc.message}") from exc
        print(response, flush=True)
    finally:
        await room.disconnect()
    return 0
