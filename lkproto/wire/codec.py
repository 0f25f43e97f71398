"""Bytes <-> protobuf messages for the signalling socket and the data channels.

Decoding never lets a foreign exception through: anything that is not a valid message of the
expected type raises :class:`lkproto.errors.DecodeError`. Unknown fields and unknown oneof members
are *not* errors: newer servers and SDKs add them, and PROTOCOL-MAP §1 (Oneof field numbers) says
they must be ignored, so they are kept as unknown fields and ``WhichOneof`` reports ``None``.
"""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf.message import DecodeError as _PbDecodeError
from google.protobuf.message import Message

from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire import pb

__all__ = [
    "DATA_PACKET_MAX_BYTES",
    "decode",
    "decode_data_packet",
    "decode_signal_request",
    "decode_signal_response",
    "encode",
    "encode_data_packet",
    "encode_signal_request",
    "encode_signal_response",
    "which",
]

# PROTOCOL-MAP §3 Size limits: JS and Rust refuse data-channel messages above 64 000 bytes, and the
# server reads each channel with a 65 535-byte buffer, so no serialized packet may exceed this.
DATA_PACKET_MAX_BYTES: Final = 64_000

_M = TypeVar("_M", bound=Message)


def decode(message_type: type[_M], data: bytes | bytearray | memoryview | str) -> _M:
    """Parse ``data`` as ``message_type``.

    Args:
        message_type: a generated message class, e.g. ``pb.SignalResponse``.
        data: the received bytes. A ``str`` (a WebSocket text frame) is rejected: the server
            switches to JSON only if the client itself sent text (PROTOCOL-MAP §1 Framing).

    Raises:
        DecodeError: ``data`` is not a valid serialization of ``message_type``.
    """
    name = message_type.DESCRIPTOR.name
    if isinstance(data, str):
        raise DecodeError(name, "got a text frame, expected binary protobuf")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(name, f"expected bytes, got {type(data).__name__}")
    message = message_type()
    try:
        message.ParseFromString(bytes(data))
    except _PbDecodeError as exc:
        raise DecodeError(name, str(exc) or "malformed protobuf") from exc
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        # Not expected from upb, but no foreign exception may escape a decode.
        raise DecodeError(name, f"{type(exc).__name__}: {exc}") from exc
    return message


def encode(message: Message) -> bytes:
    """Serialize a message.

    Raises:
        LocalProtocolError: the message cannot be serialized (e.g. a proto2 required field unset).
    """
    try:
        return message.SerializeToString()
    except Exception as exc:  # upb raises EncodeError or plain errors depending on the cause
        raise LocalProtocolError(f"cannot encode {message.DESCRIPTOR.name}: {exc}") from exc


def which(message: Message, oneof: str) -> str | None:
    """Name of the set member of ``oneof`` in ``message``, or None (unset or unknown to us)."""
    name: str | None = message.WhichOneof(oneof)
    return name


def decode_signal_response(data: bytes | bytearray | memoryview | str) -> pb.SignalResponse:
    """Decode one server-to-client WebSocket frame."""
    return decode(pb.SignalResponse, data)


def decode_signal_request(data: bytes | bytearray | memoryview | str) -> pb.SignalRequest:
    """Decode one client-to-server WebSocket frame (for taps, fakes and conformance tests)."""
    return decode(pb.SignalRequest, data)


def encode_signal_request(request: pb.SignalRequest) -> bytes:
    """Encode one client-to-server WebSocket frame."""
    return encode(request)


def encode_signal_response(response: pb.SignalResponse) -> bytes:
    """Encode one server-to-client WebSocket frame (for fakes and conformance tests)."""
    return encode(response)


def decode_data_packet(data: bytes | bytearray | memoryview | str) -> pb.DataPacket:
    """Decode one message received on ``_reliable`` or ``_lossy``.

    Raises:
        DecodeError: not a DataPacket, or larger than :data:`DATA_PACKET_MAX_BYTES`.
    """
    if isinstance(data, bytes | bytearray | memoryview) and len(data) > DATA_PACKET_MAX_BYTES:
        raise DecodeError("DataPacket", f"{len(data)} bytes exceeds {DATA_PACKET_MAX_BYTES}")
    return decode(pb.DataPacket, data)


def encode_data_packet(packet: pb.DataPacket) -> bytes:
    """Encode one DataPacket for a data channel.

    Raises:
        LocalProtocolError: the serialized packet exceeds :data:`DATA_PACKET_MAX_BYTES`
            (PROTOCOL-MAP §3: nothing larger is ever handed to a data channel).
    """
    data = encode(packet)
    if len(data) > DATA_PACKET_MAX_BYTES:
        raise LocalProtocolError(
            f"DataPacket of {len(data)} bytes exceeds the {DATA_PACKET_MAX_BYTES}-byte limit"
        )
    return data
