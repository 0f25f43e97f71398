"""``lkproto decode``: turn one wire message (hex or base64) into JSON."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from typing import Final

from lkproto.cli._common import CliError

__all__ = ["DECODE_EPILOG", "add_decode_arguments", "parse_bytes", "run_decode"]

DECODE_EPILOG: Final = """\
examples:
  lkproto decode 120d120568656c6c6f220463686174     # guesses: DataPacket.user
  lkproto decode --type SignalRequest ggECCAE=       # base64, type given
  echo 120d120568656c6c6f220463686174 | lkproto decode -

Without --type the message is parsed as SignalResponse, SignalRequest and DataPacket, and the
parse with no unknown fields, a known oneof member and the most known fields wins.
Output: {"type": ..., "fields": {...}} (protobuf JSON mapping, bytes as base64).
"""

_HEX_RE: Final = re.compile(r"^(?:0x)?([0-9a-fA-F\s:]*)$")


def parse_bytes(text: str, encoding: str | None = None) -> bytes:
    """Hex (spaces, ``:`` and a ``0x`` prefix allowed) or base64 (standard or URL-safe).

    Raises:
        CliError: neither.
    """
    text = text.strip()
    if encoding in (None, "hex"):
        match = _HEX_RE.match(text)
        if match is not None:
            digits = re.sub(r"[\s:]", "", match.group(1))
            if len(digits) % 2 == 0:
                return bytes.fromhex(digits)
        if encoding == "hex":
            raise CliError("not hex: odd number of digits or a non-hex character")
    try:
        padded = text + "=" * (-len(text) % 4)
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CliError(f"neither hex nor base64: {exc}") from exc


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="HEX_OR_BASE64", help="the message ('-' reads stdin)")
    parser.add_argument(
        "--type",
        choices=["SignalRequest", "SignalResponse", "DataPacket"],
        default=None,
        help="message type (default: guess)",
    )
    parser.add_argument(
        "--encoding", choices=["hex", "base64"], default=None, help="input encoding (guess)"
    )
    parser.add_argument("--compact", action="store_true", help="one line of JSON")


def run_decode(args: argparse.Namespace) -> int:
    from lkproto.wire.tap import count_unknown_fields, decode_any, message_fields, message_type_name

    text = sys.stdin.read() if args.data == "-" else args.data
    data = parse_bytes(text, args.encoding)
    _, message = decode_any(data, args.type)
    out = {
        "type": message_type_name(message),
        "size": len(data),
        "unknown_fields": count_unknown_fields(message),
        "fields": message_fields(message),
    }
    print(json.dumps(out, indent=None if args.compact else 2, ensure_ascii=False))
    return 0
