"""``lkproto tap FILE``: pretty-print and filter a JSON Lines wire tap."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Final

from lkproto.cli._common import CliError

if TYPE_CHECKING:
    from lkproto.wire.tap import TapRecord

__all__ = ["TAP_EPILOG", "add_tap_arguments", "format_record", "matches", "run_tap"]

FOLLOW_POLL_S: Final = 0.2
FIELDS_PREVIEW_CHARS: Final = 160

TAP_EPILOG: Final = """\
examples:
  lkproto tap session.jsonl                            # every record, one line each
  lkproto tap session.jsonl --type 'DataPacket.*' --direction in
  lkproto tap session.jsonl --type SignalRequest.offer --type SignalResponse.answer -v
  lkproto tap session.jsonl --participant alice --topic chat --follow
  lkproto tap session.jsonl --channel rtp --json       # matching records as JSON Lines

Record a tap with `lkproto join --tap FILE`, RoomOptions(tap_file=FILE) or LKPROTO_TAP=FILE.
--type takes shell patterns (SignalResponse.*, *.user) or a bare prefix (DataPacket).
"""

_DIRECTIONS: Final = {"in": "<", "<": "<", "out": ">", ">": ">"}


def add_tap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="JSON Lines tap file ('-' for stdin)")
    parser.add_argument(
        "--type", action="append", default=None, metavar="PATTERN", help="message type"
    )
    parser.add_argument(
        "--direction", choices=sorted(_DIRECTIONS), default=None, help="in (<) or out (>)"
    )
    parser.add_argument(
        "--channel", action="append", default=None, help="signal, _reliable, _lossy, rtp..."
    )
    parser.add_argument("--participant", default=None, help="identity on the record")
    parser.add_argument("--topic", default=None, help="topic on the record")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep reading as the file grows (tail -f)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print matching records as JSON Lines, unchanged"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="print the decoded fields in full"
    )


def matches(record: TapRecord, args: argparse.Namespace) -> bool:
    """Whether ``record`` passes the filters in ``args``."""
    if args.type and not any(
        fnmatch.fnmatchcase(record.type, p) or record.type.startswith(p + ".") or record.type == p
        for p in args.type
    ):
        return False
    if args.direction and record.direction != _DIRECTIONS[args.direction]:
        return False
    if args.channel and record.channel not in args.channel:
        return False
    if args.participant is not None and record.participant != args.participant:
        return False
    return args.topic is None or record.topic == args.topic


def format_record(record: TapRecord, *, verbose: bool = False) -> str:
    """``HH:MM:SS.mmm > signal    SignalRequest.offer  who/topic {fields…}``."""
    clock = record.time[11:23] if len(record.time) >= 23 else record.time
    extra = ""
    if record.participant:
        extra += f" from={record.participant}" if record.direction == "<" else ""
    if record.topic:
        extra += f" topic={record.topic}"
    if record.error:
        body = f"ERROR {record.error} ({len(record.raw)} B)"
    elif verbose:
        body = "\n" + json.dumps(record.fields, indent=2, ensure_ascii=False)
    else:
        body = json.dumps(record.fields, separators=(",", ":"), ensure_ascii=False)
        if len(body) > FIELDS_PREVIEW_CHARS:
            body = body[: FIELDS_PREVIEW_CHARS - 1] + "…"
    size = f" {len(record.raw)}B" if record.raw else ""
    return (
        f"{clock} {record.direction} {record.channel:<10} {record.type}{size}{extra} {body}"
    ).rstrip()


def _lines(stream: IO[str], follow: bool) -> Iterator[str]:
    pending = ""
    while True:
        line = stream.readline()
        if line:
            pending += line
            if pending.endswith("\n"):
                yield pending
                pending = ""
            continue
        if not follow:
            if pending:
                yield pending
            return
        time.sleep(FOLLOW_POLL_S)


def run_tap(args: argparse.Namespace) -> int:
    from lkproto.errors import DecodeError
    from lkproto.wire.tap import TapRecord

    stream: IO[str] = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(_lines(stream, args.follow), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise DecodeError("TapRecord", "not a JSON object")
                record = TapRecord.from_json(obj)
            except (ValueError, DecodeError) as exc:
                raise CliError(f"{args.file}:{number}: not a tap record: {exc}") from exc
            if not matches(record, args):
                continue
            if args.json:
                print(line.rstrip("\n"), flush=args.follow)
            else:
                print(format_record(record, verbose=args.verbose), flush=args.follow)
    finally:
        if stream is not sys.stdin:
            stream.close()
    return 0
