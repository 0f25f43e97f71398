"""Send a file to a room as a byte stream, with progress; or receive files and save them.

Shows byte streams: ``LocalParticipant.send_file`` (chunked into 15 kB packets on the reliable
data channel, PROTOCOL-MAP §5) with its ``on_progress`` callback (an lkproto extra), and
``Room.register_byte_stream_handler`` on the receiving side, reading chunks as they arrive.
Every stream carries the sender's SHA-256 of the file as an attribute, so the receiver can
check that it got identical bytes; it then confirms to the sender with an RPC
(``file_received``), and the sender leaves only after that confirmation.

Two terminals (same room, same topic)::

    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/file_sender.py receive --room my-room --out downloads/ --once
    python examples/file_sender.py send --room my-room photo.jpg

``send`` waits for someone else to be in the room (``--to IDENTITY`` to send to one participant
only), sends, and leaves; ``receive --once`` leaves after the first file, ``--duration N`` after
N seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import time
from pathlib import Path

import _shared

from lkproto import rtc

__all__ = ["TOPIC", "main"]

TOPIC = "files"
SHA256_ATTRIBUTE = "sha256"
CONFIRM_METHOD = "file_received"
PEER_TIMEOUT_S = 30.0
CONFIRM_TIMEOUT_S = 60.0


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


async def send(args: argparse.Namespace, room: rtc.Room) -> int:
    path = Path(args.file)
    peer_here = asyncio.Event()

    def check_peer(*_: object) -> None:
        present = room.remote_participants
        if (args.to in present) if args.to else bool(present):
            peer_here.set()

    room.on("participant_connected", check_peer)
    check_peer()
    try:
        await asyncio.wait_for(peer_here.wait(), PEER_TIMEOUT_S)
    except TimeoutError:
        _shared.fail(f"nobody to send to in room {room.name} after {PEER_TIMEOUT_S:g} s")

    started = time.monotonic()
    shown = -1

    def progress(sent: int, total: int) -> None:
        nonlocal shown
        percent = 100 * sent // total if total else 100
        if percent // 10 != shown // 10 or sent == total:
            shown = percent
            print(f"sent {sent}/{total} bytes ({percent}%)", flush=True)

    confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_confirm(data: rtc.RpcInvocationData) -> str:
        if not confirmed.done():
            confirmed.set_result(f"{data.caller_identity}: {data.payload}")
        return "thanks"

    room.local_participant.register_rpc_method(CONFIRM_METHOD, on_confirm)
    info = await room.local_participant.send_file(
        str(path),
        topic=TOPIC,
        destination_identities=[args.to] if args.to else None,
        attributes={SHA256_ATTRIBUTE: args.sha256},
        on_progress=progress,
    )
    seconds = time.monotonic() - started
    print(
        f"sent {path.name}: {args.size} bytes in {seconds:.2f} s, stream {info.stream_id}",
        flush=True,
    )
    # send_file returns once the stream is handed to the data channel, not once it arrived:
    # leaving the room at once would cut the tail off. Stay until the receiver confirms.
    try:
        confirmation = await asyncio.wait_for(confirmed, CONFIRM_TIMEOUT_S)
    except TimeoutError:
        _shared.fail(f"no confirmation from a receiver within {CONFIRM_TIMEOUT_S:g} s")
    print(f"confirmed by {confirmation}", flush=True)
    return 0


async def receive(args: argparse.Namespace, room: rtc.Room) -> int:
    out_dir = Path(args.out)
    received = asyncio.Event()
    failures: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def save(reader: rtc.ByteStreamReader, sender: str) -> None:
        info = reader.info
        target = out_dir / Path(info.name).name  # never a path chosen by the sender
        digest = hashlib.sha256()
        got = 0
        print(f"receiving {info.name} from {sender} ({info.size} bytes)", flush=True)
        with target.open("wb") as f:
            async for chunk in reader:
                f.write(chunk)
                digest.update(chunk)
                got += len(chunk)
        expected = (info.attributes or {}).get(SHA256_ATTRIBUTE)
        ok = expected is None or digest.hexdigest() == expected
        verdict = "sha256 ok" if ok else "SHA256 MISMATCH"
        print(f"saved {target}: {got} bytes, {verdict}", flush=True)
        if not ok:
            failures.append(info.name)
        # Tell the sender, which waits for this before leaving the room.
        with contextlib.suppress(rtc.RpcError):
            await room.local_participant.perform_rpc(
                destination_identity=sender,
                method=CONFIRM_METHOD,
                payload=f"{got} bytes, {verdict}",
            )
        received.set()

    def on_stream(reader: rtc.ByteStreamReader, sender: str) -> None:
        task = asyncio.ensure_future(save(reader, sender))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_byte_stream_handler(TOPIC, on_stream)
    print(f"receiver: ready in room {room.name}, saving to {out_dir}", flush=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.duration):
            if args.once:
                await received.wait()
            else:
                await asyncio.Event().wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    if failures or (args.once and not received.is_set()):
        return 1
    return 0


async def run(args: argparse.Namespace) -> int:
    """Do what the module docstring says with the parsed ``args``; returns the exit status."""
    room = rtc.Room()
    identity = args.identity or ("file-sender" if args.command == "send" else "file-receiver")
    await _shared.connect(room, args, identity)
    try:
        if args.command == "send":
            return await send(args, room)
        return await receive(args, room)
    finally:
        await room.disconnect()


def main() -> int:
    """Parse the command line and run; returns the exit status."""
    parser = _shared.new_parser(__doc__, server_args=False)
    commands = parser.add_subparsers(dest="command", required=True)
    send_cmd = commands.add_parser("send", help="send a file")
    send_cmd.add_argument("file", help="the file to send")
    send_cmd.add_argument("--to", help="only to this participant identity")
    recv_cmd = commands.add_parser("receive", help="save every file received")
    recv_cmd.add_argument("--out", default=".", help="directory to save into (.)")
    recv_cmd.add_argument("--once", action="store_true", help="leave after the first file")
    _shared.add_duration_arg(recv_cmd)
    for cmd in (send_cmd, recv_cmd):
        _shared.add_server_args(cmd)
        cmd.add_argument("--identity", help="participant identity")
    args = _shared.parse_args(parser)
    # blocking file work before the event loop starts
    if args.command == "send":
        args.size = Path(args.file).stat().st_size
        args.sha256 = sha256_of(Path(args.file))
    else:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    return _shared.run_until_interrupted(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
