"""Wire-tap records: one JSON-ready record per signal message, data packet or RTP counter sample.

Pure functions, no I/O and no clock: callers pass the monotonic and wall-clock times in. The
asyncio driver (:mod:`lkproto.asyncio.tap`) builds records only when someone consumes them and
writes them as JSON Lines; ``lkproto tap FILE`` reads them back with :meth:`TapRecord.from_json`.

One line of a tap file (keys always present, ``null`` when not applicable)::

    {"time": "2025-01-01T12:00:00.123456+00:00", "mono": 8123.25, "direction": ">",
     "channel": "_reliable", "type": "DataPacket.user", "participant": "alice", "topic": "chat",
     "fields": {"user": {"payload": "aGk=", "topic": "chat"}, "sequence": 1},
     "raw": "EgYKAmhpIgRjaGF0gAEB", "error": null}

``fields`` is the protobuf JSON mapping of the whole message (``json_format.MessageToDict`` with
the ``.proto`` field names: bytes are base64, 64-bit integers are strings, enums are names);
``raw`` is the exact frame or packet, base64. Channels: ``signal``, ``_reliable``, ``_lossy``,
``_data_track`` (raw data-track packets, not protobuf: PROTOCOL-MAP §3) and ``rtp`` (per-track
counters, no raw bytes).
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from lkproto.errors import DecodeError
from lkproto.wire import pb
from lkproto.wire.channels import DATA_TRACK_LABEL
from lkproto.wire.codec import decode

__all__ = [
    "CHANNEL_DATA_TRACK",
    "CHANNEL_RTP",
    "CHANNEL_SIGNAL",
    "ENVELOPES",
    "JsonValue",
    "TapDirection",
    "TapRecord",
    "count_known_fields",
    "count_unknown_fields",
    "decode_any",
    "iso_time",
    "message_fields",
    "message_type_name",
    "packet_record",
    "rtp_record",
    "signal_record",
]

CHANNEL_SIGNAL: Final = "signal"
"""``TapRecord.channel`` of a signal frame on the websocket (PROTOCOL-MAP §1)."""
CHANNEL_DATA_TRACK: Final = DATA_TRACK_LABEL
"""``TapRecord.channel`` of a data track frame (the ``_data_track`` channel, PROTOCOL-MAP §12)."""
CHANNEL_RTP: Final = "rtp"
"""``TapRecord.channel`` of a track's cumulative RTP counters (packets and bytes, PROTOCOL-MAP §9);
the media itself is not captured."""

# The three top-level messages that travel on their own (signal frames both ways, data-channel
# packets), by name, in the order ``decode_any`` prefers them when two parse equally well.
ENVELOPES: Final[Mapping[str, type[Message]]] = {
    "SignalResponse": pb.SignalResponse,
    "SignalRequest": pb.SignalRequest,
    "DataPacket": pb.DataPacket,
}

TapDirection: TypeAlias = Literal["<", ">"]
"""``TapRecord.direction``: ``">"`` sent by the tapped client, ``"<"`` received by it."""
JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""Any value JSON can hold: what a record's decoded fields are made of."""

_ONEOFS: Final = ("message", "value")  # SignalRequest/SignalResponse, DataPacket


@dataclass(frozen=True, slots=True, kw_only=True)
class TapRecord:
    """One message seen on the wire.

    Attributes:
        time: wall-clock time, ISO 8601 with UTC offset.
        mono: the event loop's monotonic time in seconds (``loop.time()``), for intervals.
        direction: ``>`` sent by us, ``<`` received.
        channel: ``signal``, ``_reliable``, ``_lossy``, ``_data_track`` or ``rtp``.
        type: ``SignalRequest.offer``, ``SignalResponse.join``, ``DataPacket.user``,
            ``RtpStats.outbound``...; ``<unknown>`` for a oneof member newer than our schema,
            ``<malformed>`` when the bytes did not decode.
        fields: the decoded message as a JSON object (None when it did not decode).
        raw: the exact bytes on the wire (empty for ``rtp`` records).
        participant: the sender's identity where the message carries one (data packets, our
            own identity in ``SignalResponse.join``).
        topic: the topic of user packets and data streams.
        error: why the bytes did not decode, else None.
        decrypted: for an end-to-end encrypted data packet the tap owner holds the key of, the
            packet it decrypts to (JSON, as ``fields``); None otherwise (PROTOCOL-MAP §11).
    """

    time: str
    mono: float
    direction: TapDirection
    channel: str
    type: str
    fields: dict[str, JsonValue] | None
    raw: bytes = b""
    participant: str | None = None
    topic: str | None = None
    error: str | None = None
    decrypted: dict[str, JsonValue] | None = None

    @property
    def decoded(self) -> bool:
        """True when the payload was understood (no decode error, no unknown oneof member)."""
        return self.error is None and "<" not in self.type

    def to_json(self) -> dict[str, JsonValue]:
        """The record as one JSON object (the format of a tap file line)."""
        out: dict[str, JsonValue] = {
            "time": self.time,
            "mono": self.mono,
            "direction": self.direction,
            "channel": self.channel,
            "type": self.type,
            "participant": self.participant,
            "topic": self.topic,
            "fields": self.fields,
            "raw": base64.b64encode(self.raw).decode("ascii"),
            "error": self.error,
        }
        if self.decrypted is not None:
            out["decrypted"] = self.decrypted
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> TapRecord:
        """Parse one tap file line (as loaded by ``json.loads``).

        Raises:
            DecodeError: a key is missing or has the wrong type.
        """
        try:
            direction = obj["direction"]
            if direction not in ("<", ">"):
                raise DecodeError("TapRecord", f"bad direction {direction!r}")
            fields = obj.get("fields")
            decrypted = obj.get("decrypted")
            raw = obj.get("raw") or ""
            mono = obj["mono"]
            if not isinstance(fields, dict | None) or not isinstance(raw, str):
                raise DecodeError("TapRecord", "fields must be an object, raw a string")
            if not isinstance(decrypted, dict | None):
                raise DecodeError("TapRecord", "decrypted must be an object")
            if not isinstance(mono, int | float):
                raise DecodeError("TapRecord", "mono must be a number")
            return cls(
                time=str(obj["time"]),
                mono=float(mono),
                direction="<" if direction == "<" else ">",
                channel=str(obj["channel"]),
                type=str(obj["type"]),
                fields=fields,
                raw=base64.b64decode(raw, validate=True),
                participant=_opt_str(obj.get("participant")),
                topic=_opt_str(obj.get("topic")),
                error=_opt_str(obj.get("error")),
                decrypted=decrypted,
            )
        except KeyError as exc:
            raise DecodeError("TapRecord", f"missing key {exc}") from exc
        except binascii.Error as exc:
            raise DecodeError("TapRecord", f"raw is not base64: {exc}") from exc


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def iso_time(wall: float) -> str:
    """``wall`` (seconds since the epoch) as ISO 8601 in UTC, microseconds included."""
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="microseconds")


def message_type_name(message: Message) -> str:
    """``SignalRequest.offer``, ``DataPacket.user``, ``SignalResponse.<unknown>``, ``Room``."""
    name: str = message.DESCRIPTOR.name
    for oneof in _ONEOFS:
        if oneof in message.DESCRIPTOR.oneofs_by_name:
            member = message.WhichOneof(oneof)
            return f"{name}.{member if member is not None else '<unknown>'}"
    return name


def message_fields(message: Message) -> dict[str, JsonValue]:
    """The protobuf JSON mapping of ``message`` with ``.proto`` field names (bytes as base64)."""
    fields: dict[str, JsonValue] = json_format.MessageToDict(
        message, preserving_proto_field_name=True
    )
    return fields


def _identity_and_topic(message: Message) -> tuple[str | None, str | None]:
    if isinstance(message, pb.DataPacket):
        identity = message.participant_identity or None
        topic: str | None = None
        member = message.WhichOneof("value")
        if member == "user":
            identity = identity or message.user.participant_identity or None
            topic = message.user.topic if message.user.HasField("topic") else None
        elif member == "stream_header":
            topic = message.stream_header.topic or None
        return identity, topic
    if isinstance(message, pb.SignalResponse) and message.WhichOneof("message") == "join":
        return message.join.participant.identity or None, None
    return None, None


def signal_record(
    direction: TapDirection,
    message: pb.SignalRequest | pb.SignalResponse | DecodeError,
    raw: bytes,
    *,
    mono: float,
    wall: float,
) -> TapRecord:
    """Record of one signalling frame (a decoded message, or the error that stopped it)."""
    return _record(direction, CHANNEL_SIGNAL, message, raw, mono=mono, wall=wall)


def packet_record(
    direction: TapDirection,
    channel: str,
    message: pb.DataPacket | DecodeError | None,
    raw: bytes,
    *,
    mono: float,
    wall: float,
) -> TapRecord:
    """Record of one data-channel message. ``_data_track`` payloads are not protobuf
    (PROTOCOL-MAP §3): pass ``message=None`` or the decode error; only the size is reported."""
    if channel == CHANNEL_DATA_TRACK and not isinstance(message, pb.DataPacket):
        return TapRecord(
            time=iso_time(wall),
            mono=mono,
            direction=direction,
            channel=channel,
            type="DataTrack.packet",
            fields={"size": len(raw)},
            raw=raw,
        )
    if message is None:
        message = DecodeError("DataPacket", "no message")
    return _record(direction, channel, message, raw, mono=mono, wall=wall)


def _record(
    direction: TapDirection,
    channel: str,
    message: Message | DecodeError,
    raw: bytes,
    *,
    mono: float,
    wall: float,
) -> TapRecord:
    if isinstance(message, DecodeError):
        return TapRecord(
            time=iso_time(wall),
            mono=mono,
            direction=direction,
            channel=channel,
            type=f"{message.message_type}.<malformed>",
            fields=None,
            raw=raw,
            error=str(message),
        )
    participant, topic = _identity_and_topic(message)
    return TapRecord(
        time=iso_time(wall),
        mono=mono,
        direction=direction,
        channel=channel,
        type=message_type_name(message),
        fields=message_fields(message),
        raw=raw,
        participant=participant,
        topic=topic,
    )


def rtp_record(
    direction: TapDirection,
    *,
    track_sid: str,
    kind: str,
    packets: int,
    bytes_: int | None,
    mono: float,
    wall: float,
    final: bool = False,
) -> TapRecord:
    """Cumulative RTP counters of one track: ``>`` sent (outbound), ``<`` received (inbound).

    Args:
        bytes_: None when the stack does not count bytes (aiortc's receivers do not).
        final: the last sample of the track (unpublished, unsubscribed or disconnected).
    """
    fields: dict[str, JsonValue] = {"track_sid": track_sid, "kind": kind, "final": final}
    if direction == ">":
        fields["packets_sent"] = packets
        fields["bytes_sent"] = bytes_
    else:
        fields["packets_received"] = packets
        fields["bytes_received"] = bytes_
    return TapRecord(
        time=iso_time(wall),
        mono=mono,
        direction=direction,
        channel=CHANNEL_RTP,
        type="RtpStats.outbound" if direction == ">" else "RtpStats.inbound",
        fields=fields,
    )


# -- guessing the type of a bare message (``lkproto decode``, golden vectors) --------------------


def _submessages(message: Message) -> list[Message]:
    out: list[Message] = []
    for field, value in message.ListFields():
        entry = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or entry is None:
            continue
        if entry.GetOptions().map_entry:
            if entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                out.extend(value.values())
        elif field.is_repeated:
            out.extend(value)
        else:
            out.append(value)
    return out


def count_unknown_fields(message: Message) -> int:
    """Unknown fields in ``message`` and every message nested in it."""
    total = len(UnknownFieldSet(message))
    for sub in _submessages(message):
        total += count_unknown_fields(sub)
    return total


def count_known_fields(message: Message) -> int:
    """Set fields (repeated fields count once) in ``message`` and every nested message."""
    total = len(message.ListFields())
    for sub in _submessages(message):
        total += count_known_fields(sub)
    return total


_SDP_TYPES: Final = frozenset({"offer", "answer", "pranswer", "rollback"})


def _plausible(message: Message) -> bool:
    """False for parses that are valid protobuf but not a real message of that type."""
    if isinstance(message, pb.SignalRequest | pb.SignalResponse):
        member = message.WhichOneof("message")
        if member in ("offer", "answer"):
            return getattr(message, member).type in _SDP_TYPES
    return True


def decode_any(
    data: bytes, type_name: str | None = None
) -> tuple[str, pb.SignalRequest | pb.SignalResponse | pb.DataPacket]:
    """Decode a bare message as ``type_name``, or guess which of :data:`ENVELOPES` it is.

    The guess keeps the types that parse, prefers one with no unknown fields anywhere, then one
    whose oneof member is known and plausible (a ``SessionDescription.type`` that is an SDP
    type), then the most known fields; ties go to the order of :data:`ENVELOPES`. Some bytes
    are genuinely both: ``LeaveRequest`` is member 8 of either envelope.

    Returns:
        ``(type name, message)``.

    Raises:
        DecodeError: the bytes are not that type (or none of them), or ``type_name`` is unknown.
    """
    if type_name is not None:
        cls = ENVELOPES.get(type_name)
        if cls is None:
            raise DecodeError(type_name, f"unknown type (choose from {', '.join(ENVELOPES)})")
        return type_name, decode(cls, data)  # type: ignore[return-value]
    best: tuple[tuple[bool, bool, int], str, Message] | None = None
    errors: list[str] = []
    for name, cls in ENVELOPES.items():
        try:
            message = decode(cls, data)
        except DecodeError as exc:
            errors.append(exc.reason.rsplit(": ", 1)[-1])
            continue
        known_member = "<unknown>" not in message_type_name(message) and _plausible(message)
        score = (count_unknown_fields(message) == 0, known_member, count_known_fields(message))
        if best is None or score > best[0]:
            best = (score, name, message)
    if best is None:
        reasons = ", ".join(dict.fromkeys(errors))
        raise DecodeError(" / ".join(ENVELOPES), f"none of them parses ({reasons})")
    return best[1], best[2]  # type: ignore[return-value]
