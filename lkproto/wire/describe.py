"""One-line, human-readable renderings of wire messages for DEBUG logs and wire taps."""

from __future__ import annotations

from typing import Final

from google.protobuf import text_format
from google.protobuf.message import Message

__all__ = ["DESCRIBE_MAX_CHARS", "describe"]

# Long SDPs and big participant lists would flood a log line; the trace callback gets it all.
DESCRIBE_MAX_CHARS: Final = 600


def describe(message: Message, *, max_chars: int = DESCRIBE_MAX_CHARS) -> str:
    """``Type.member {fields}`` for a oneof envelope, ``Type {fields}`` otherwise.

    Envelopes are SignalRequest / SignalResponse (oneof ``message``: only the member is shown)
    and DataPacket (oneof ``value``: the whole packet is shown, since sequence and destinations
    sit outside the oneof); the set member names the message, as in ``SignalResponse.join {...}``.
    """
    name = message.DESCRIPTOR.name
    body: Message = message
    for oneof in ("message", "value"):
        if oneof in message.DESCRIPTOR.oneofs_by_name:
            member = message.WhichOneof(oneof)
            if member is None:
                name = f"{name}.<unknown>"
                break
            name = f"{name}.{member}"
            value = getattr(message, member)
            if oneof == "value":
                break
            if isinstance(value, Message):
                body = value
            else:
                return f"{name} {{{value!r}}}"
            break
    text = text_format.MessageToString(body, as_one_line=True, as_utf8=True)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return f"{name} {{{text}}}"
