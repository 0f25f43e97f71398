"""``lkproto tap FILE``: pretty-print and filter a JSON Lines wire tap, or draw it as a page.

``--html`` renders the matching records with :func:`lkproto.wire.explorer.render_html` into one
self-contained HTML file (``-o``, default stdout): a sequence diagram with the decoded fields and
raw bytes of each message on click.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
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
  lkproto tap session.jsonl --html -o session.html     # the wire explorer page

Record a tap with `lkproto join --tap FILE`, RoomOptions(tap_file=FILE) or LKPROTO_TAP=FILE.
--type takes shell patterns (SignalResponse.*, *.user) or a bare prefix (DataPacket).
"""

_EXIT_USAGE: Final = 2  # argparse's status for a usage error, as for unknown options

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
    parser.add_argument(
        "--html",
        action="store_true",
        help="write the matching records as one self-contained explorer page (sequence diagram)",
    )
    parser.add_argument(
        "--output", "-o", default="-", metavar="PAGE", help="where --html writes ('-': stdout)"
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=None,
        metavar="N",
        help="records drawn by --html (default 5000; the page notes any left out)",
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
    if args.html:
        return _run_html(args)
    if args.max_records is not None or args.output != "-":
        raise CliError("--max-records and --output go with --html", _EXIT_USAGE)
    for line, record in _records(args):
        if args.json:
            print(line.rstrip("\n"), flush=args.follow)
        else:
            print(format_record(record, verbose=args.verbose), flush=args.follow)
    return 0


def _records(args: argparse.Namespace) -> Iterator[tuple[str, TapRecord]]:
    """``(line, record)`` of every record in ``args.file`` that passes the filters."""
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
            if matches(record, args):
                yield line, record
    finally:
        if stream is not sys.stdin:
            stream.close()


def _run_html(args: argparse.Namespace) -> int:
    from lkproto.errors import LocalProtocolError
    from lkproto.wire.explorer import ExplorerLimits, render_html

    if args.follow:
        raise CliError(
            "--follow cannot be used with --html (the page is written once)", _EXIT_USAGE
        )
    if args.json:
        raise CliError("--json cannot be used with --html", _EXIT_USAGE)
    try:
        limits = (
            ExplorerLimits()
            if args.max_records is None
            else ExplorerLimits(max_records=args.max_records)
        )
    except LocalProtocolError as exc:
        raise CliError(str(exc), _EXIT_USAGE) from exc
    title = "stdin" if args.file == "-" else os.path.basename(args.file)
    page = render_html(
        (record for _, record in _records(args)), title=f"{title} · lkproto", limits=limits
    )
    if args.output == "-":
        sys.stdout.write(page)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(page)
    return 0
