"""``lkproto decode``: turn one wire message (hex or base64) into JSON."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from typing import TYPE_CHECKING, Final

from lkproto.cli._common import CliError

if TYPE_CHECKING:
    from lkproto.core.e2ee import KeyProvider

__all__ = ["DECODE_EPILOG", "add_decode_arguments", "parse_bytes", "run_decode"]

DECODE_EPILOG: Final = """\
examples:
  lkproto decode 120d120568656c6c6f220463686174     # guesses: DataPacket.user
  lkproto decode --type SignalRequest ggECCAE=       # base64, type given
  echo 120d120568656c6c6f220463686174 | lkproto decode -

Without --type the message is parsed as SignalResponse, SignalRequest and DataPacket, and the
parse with no unknown fields, a known oneof member and the most known fields wins.
Output: {"type": ..., "fields": {...}} (protobuf JSON mapping, bytes as base64).

End-to-end encryption (PROTOCOL-MAP section 11):
  lkproto decode --frame vp8 FRAME_HEX               # clear header, ciphertext, IV, key index
  lkproto decode --frame opus --key secret FRAME_HEX # ... and the decrypted frame
  lkproto decode --key secret DATAPACKET_HEX         # an EncryptedPacket, decrypted
--key is the shared key as text (UTF-8), --kdf how it was derived (pbkdf2, the default, or hkdf).
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
    parser.add_argument(
        "--frame",
        choices=["opus", "vp8", "vp9", "h264"],
        default=None,
        help="explain an end-to-end encrypted media frame of this codec instead",
    )
    parser.add_argument("--key", default=None, help="shared E2EE key (text) to decrypt with")
    parser.add_argument(
        "--kdf", choices=["pbkdf2", "hkdf"], default="pbkdf2", help="key derivation (pbkdf2)"
    )


def _e2ee_provider(args: argparse.Namespace) -> KeyProvider:
    from lkproto.core.e2ee import KeyDerivationFunction, KeyOptions, KeyProvider

    kdf = KeyDerivationFunction.HKDF if args.kdf == "hkdf" else KeyDerivationFunction.PBKDF2
    options = KeyOptions(key_derivation_function=kdf, ratchet_window_size=0)
    return KeyProvider(options, shared_key=args.key.encode("utf-8"))


def _explain_frame(
    data: bytes, codec_name: str, key: str | None, provider: KeyProvider | None
) -> dict[str, object]:
    """The parts of an encrypted media frame (and, with a key, what it decrypts to).

    Raises:
        CliError: not an encrypted frame (too short, IV length byte not 12).
    """
    from lkproto.core.e2ee import FrameCryptor
    from lkproto.errors import DecodeError
    from lkproto.wire.e2ee import FrameCodec, parse_frame_trailer

    codec = FrameCodec(codec_name)
    try:
        parts = parse_frame_trailer(codec, data)
    except DecodeError as exc:
        raise CliError(f"not an encrypted {codec_name} frame: {exc}") from exc
    out: dict[str, object] = {
        "type": f"EncryptedFrame({codec_name})",
        "size": len(data),
        "clear_header": parts.header.hex(),
        "ciphertext_bytes": len(parts.ciphertext),
        "iv": parts.iv.hex(),
        "key_index": parts.key_index,
        "explained": str(parts),
    }
    if key is not None and provider is not None:
        cryptor = FrameCryptor(provider, participant_identity="", track_sid="", codec=codec)
        clear = cryptor.decrypt(data)
        out["decrypted"] = clear.hex() if clear is not None else None
    return out


def run_decode(args: argparse.Namespace) -> int:
    from lkproto.wire.tap import count_unknown_fields, decode_any, message_fields, message_type_name

    text = sys.stdin.read() if args.data == "-" else args.data
    data = parse_bytes(text, args.encoding)
    provider = _e2ee_provider(args) if args.key is not None else None
    if args.frame is not None:
        frame = _explain_frame(data, args.frame, args.key, provider)
        print(json.dumps(frame, indent=None if args.compact else 2, ensure_ascii=False))
        return 0
    _, message = decode_any(data, args.type)
    out: dict[str, object] = {
        "type": message_type_name(message),
        "size": len(data),
        "unknown_fields": count_unknown_fields(message),
        "fields": message_fields(message),
    }
    from lkproto.core.e2ee import DataDecrypted
    from lkproto.wire import pb

    if (
        provider is not None
        and isinstance(message, pb.DataPacket)
        and message.HasField("encrypted_packet")
    ):
        result = provider.decrypt_packet(message)
        out["decrypted"] = (
            message_fields(result.packet) if isinstance(result, DataDecrypted) else result.reason
        )
    print(json.dumps(out, indent=None if args.compact else 2, ensure_ascii=False))
    return 0
