"""Data-track packets: the 12-byte header codec, frame packetising and frame reassembly.

Data tracks (PROTOCOL-MAP §12) carry application frames on the ``_data_track`` data channel as
compact binary packets, not protobuf. No state machine, no clock and no I/O here; the per-track
counters and the subscription bookkeeping live in :mod:`lkproto.core.data_track`.

Packet layout (version 0, as the pinned official SDK 1.2.1 writes it; PROTOCOL-MAP §12,
``S:pkg/rtc/datatrack/packet.go``), all integers big-endian::

    byte 0     version (3 bits) | start-of-frame | final-of-frame | extensions | 2 reserved bits
    byte 1     reserved
    bytes 2-3  track handle (non-zero: the publisher's handle upstream, the subscriber's downstream)
    bytes 4-5  sequence number (one per packet, wraps)
    bytes 6-7  frame number (one per frame, wraps)
    bytes 8-11 timestamp (90 kHz clock)
    if the extensions bit is set, an extension block of whole 32-bit words:
      2 bytes  the block's size in words minus one (the block includes these 2 bytes)
      then     (1-byte tag, 1-byte length, value) entries, then zero padding

Start and final both set mark a frame carried in one packet; neither set, a middle packet.
Extension tags: 1 = end-to-end encryption (key index byte + 12-byte IV), 2 = user timestamp
(u64). A zero byte where a tag is expected is padding; unknown tags are skipped by their length
so newer senders stay readable.

The layout of the extension block is the one the official SDK 1.2.1 sends and reads, checked on
the wire against it (``tests/interop/test_data_tracks.py``; a user timestamp packet carries
``0002 0208`` + the u64 after the base header). Newer upstream sources (``RS:livekit-datatrack``
``src/packet/``, ``JS:src/room/data-track/packet/``) have moved to 2-byte tags and lengths; the
server does not parse extensions, so it forwards either.

Every decoding failure raises :class:`~lkproto.errors.DecodeError` (message type
``DataTrackPacket``); nothing else escapes :func:`decode_packet`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from lkproto.errors import DecodeError, LocalProtocolError

__all__ = [
    "DATA_TRACK_MTU_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_FRAME_PACKETS",
    "EXT_TAG_E2EE",
    "EXT_TAG_USER_TIMESTAMP",
    "HEADER_BYTES",
    "MAX_HANDLE",
    "TIMESTAMP_CLOCK_HZ",
    "AssembledFrame",
    "DataTrackPacket",
    "E2eeExtension",
    "FrameAssembler",
    "decode_packet",
    "encode_packet",
    "header_size",
    "packetize",
]

HEADER_BYTES: Final = 12
"""Size of the base header (PROTOCOL-MAP §12)."""

DATA_TRACK_MTU_BYTES: Final = 16_000
"""Largest packet a sender builds: the transport MTU of the official SDKs
(``RS:livekit-datatrack/src/local/pipeline.rs (TRANSPORT_MTU)``; JS uses the same 16 000)."""

TIMESTAMP_CLOCK_HZ: Final = 90_000
"""Clock rate of the header timestamp, as RTP video (``RS:…/packet/mod.rs (Header.timestamp)``)."""

MAX_HANDLE: Final = 0xFFFF
"""Handles are non-zero u16: the server refuses 0 and anything above 65535
(``S:pkg/rtc/participant_data_track.go (HandlePublishDataTrackRequest)``)."""

EXT_TAG_E2EE: Final = 1
"""Extension tag of the end-to-end encryption parameters (``RS:…/packet/extension.rs``)."""

EXT_TAG_USER_TIMESTAMP: Final = 2
"""Extension tag of the application's u64 frame timestamp (``RS:…/packet/extension.rs``)."""

DEFAULT_MAX_FRAME_PACKETS: Final = 128
"""Packets one partial frame may hold before it is dropped (the Rust depacketizer's bound,
``RS:…/remote/depacketizer.rs (MAX_BUFFER_PACKETS)``): about 2 MB at the official MTU."""

DEFAULT_MAX_FRAME_BYTES: Final = DEFAULT_MAX_FRAME_PACKETS * DATA_TRACK_MTU_BYTES
"""Payload bytes one partial frame may hold before it is dropped."""

_VERSION: Final = 0
_VERSION_SHIFT: Final = 5
_START_BIT: Final = 0x10
_FINAL_BIT: Final = 0x08
_EXT_BIT: Final = 0x04
_BASE: Final = struct.Struct(">BBHHHI")
_EXT_ENTRY: Final = struct.Struct(">BB")
_EXT_SIZE_FIELD: Final = 2
_E2EE_IV_BYTES: Final = 12
_E2EE_BYTES: Final = 1 + _E2EE_IV_BYTES
_USER_TS: Final = struct.Struct(">Q")
_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF
_U64: Final = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class E2eeExtension:
    """End-to-end encryption parameters of a packet (extension tag 1).

    Attributes:
        key_index: index into the sender's key ring (0-255).
        iv: the 12-byte AES-GCM initialisation vector.
    """

    key_index: int
    iv: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTrackPacket:
    """One data-track packet, decoded.

    Attributes:
        handle: track handle (1-65535).
        sequence: packet sequence number (u16).
        frame_number: number of the frame this packet belongs to (u16).
        timestamp: 90 kHz timestamp (u32).
        start: first packet of its frame.
        final: last packet of its frame.
        payload: this packet's slice of the frame.
        user_timestamp: the frame's application timestamp (u64), if the sender attached one.
        e2ee: encryption parameters, if the payload is end-to-end encrypted.
    """

    handle: int
    sequence: int
    frame_number: int
    timestamp: int
    start: bool
    final: bool
    payload: bytes = b""
    user_timestamp: int | None = None
    e2ee: E2eeExtension | None = None


def _extensions_size(user_timestamp: int | None, e2ee: E2eeExtension | None) -> int:
    size = 0
    if e2ee is not None:
        size += _EXT_ENTRY.size + _E2EE_BYTES
    if user_timestamp is not None:
        size += _EXT_ENTRY.size + _USER_TS.size
    return size


def header_size(*, user_timestamp: int | None = None, e2ee: E2eeExtension | None = None) -> int:
    """Size in bytes of a header carrying these extensions (base, word count, padding included)."""
    ext = _extensions_size(user_timestamp, e2ee)
    if ext == 0:
        return HEADER_BYTES
    return HEADER_BYTES + -(-(_EXT_SIZE_FIELD + ext) // 4) * 4


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LocalProtocolError(f"{name} must be an int in [{low}, {high}], got {value!r}")


def encode_packet(packet: DataTrackPacket) -> bytes:
    """Serialize a packet.

    Raises:
        LocalProtocolError: a field is out of its range (handle 0, an IV that is not 12 bytes, ...).
    """
    _check_range("handle", packet.handle, 1, MAX_HANDLE)
    _check_range("sequence", packet.sequence, 0, _U16)
    _check_range("frame_number", packet.frame_number, 0, _U16)
    _check_range("timestamp", packet.timestamp, 0, _U32)
    first = _VERSION << _VERSION_SHIFT
    if packet.start:
        first |= _START_BIT
    if packet.final:
        first |= _FINAL_BIT
    ext = bytearray()
    if packet.e2ee is not None:
        _check_range("e2ee.key_index", packet.e2ee.key_index, 0, 0xFF)
        if len(packet.e2ee.iv) != _E2EE_IV_BYTES:
            raise LocalProtocolError(f"e2ee.iv must be {_E2EE_IV_BYTES} bytes")
        ext += _EXT_ENTRY.pack(EXT_TAG_E2EE, _E2EE_BYTES)
        ext.append(packet.e2ee.key_index)
        ext += packet.e2ee.iv
    if packet.user_timestamp is not None:
        _check_range("user_timestamp", packet.user_timestamp, 0, _U64)
        ext += _EXT_ENTRY.pack(EXT_TAG_USER_TIMESTAMP, _USER_TS.size)
        ext += _USER_TS.pack(packet.user_timestamp)
    if ext:
        first |= _EXT_BIT
        words = -(-(_EXT_SIZE_FIELD + len(ext)) // 4)
        padding = words * 4 - _EXT_SIZE_FIELD - len(ext)
        ext = bytearray((words - 1).to_bytes(2, "big")) + ext + bytes(padding)
    out = bytearray(
        _BASE.pack(first, 0, packet.handle, packet.sequence, packet.frame_number, packet.timestamp)
    )
    out += ext
    out += packet.payload
    return bytes(out)


def _fail(reason: str) -> DecodeError:
    return DecodeError("DataTrackPacket", reason)


def decode_packet(data: bytes) -> DataTrackPacket:
    """Parse one packet received on ``_data_track``.

    Raises:
        DecodeError: too short, an unknown version, handle 0, or a malformed extension block.
    """
    view = memoryview(data)
    if len(view) < HEADER_BYTES:
        raise _fail(f"{len(view)} bytes is shorter than the {HEADER_BYTES}-byte header")
    first, _reserved, handle, sequence, frame_number, timestamp = _BASE.unpack_from(view)
    version = first >> _VERSION_SHIFT
    if version != _VERSION:
        raise _fail(f"unsupported version {version}")
    if handle == 0:
        raise _fail("track handle 0")
    offset = HEADER_BYTES
    user_timestamp: int | None = None
    e2ee: E2eeExtension | None = None
    if first & _EXT_BIT:
        if len(view) < offset + _EXT_SIZE_FIELD:
            raise _fail("extension flag set but no extension size")
        words = int.from_bytes(view[offset : offset + _EXT_SIZE_FIELD], "big") + 1
        end = offset + words * 4
        if end > len(view):
            raise _fail(f"extension block of {words} words overruns the packet")
        pos = offset + _EXT_SIZE_FIELD
        while pos < end:
            tag = view[pos]
            pos += 1
            if tag == 0:
                continue  # padding
            if pos >= end:
                raise _fail(f"extension {tag} has no length")
            size = view[pos]
            pos += 1
            if pos + size > end:
                raise _fail(f"extension {tag} of {size} bytes overruns the extension block")
            if tag == EXT_TAG_E2EE:
                if size != _E2EE_BYTES:
                    raise _fail(f"E2EE extension of {size} bytes, expected {_E2EE_BYTES}")
                e2ee = E2eeExtension(
                    key_index=view[pos], iv=bytes(view[pos + 1 : pos + _E2EE_BYTES])
                )
            elif tag == EXT_TAG_USER_TIMESTAMP:
                if size != _USER_TS.size:
                    raise _fail(f"user timestamp extension of {size} bytes, expected 8")
                (user_timestamp,) = _USER_TS.unpack_from(view, pos)
            pos += size
        offset = end
    return DataTrackPacket(
        handle=handle,
        sequence=sequence,
        frame_number=frame_number,
        timestamp=timestamp,
        start=bool(first & _START_BIT),
        final=bool(first & _FINAL_BIT),
        payload=bytes(view[offset:]),
        user_timestamp=user_timestamp,
        e2ee=e2ee,
    )


def packetize(
    payload: bytes,
    *,
    handle: int,
    first_sequence: int,
    frame_number: int,
    timestamp: int,
    user_timestamp: int | None = None,
    e2ee: E2eeExtension | None = None,
    mtu: int = DATA_TRACK_MTU_BYTES,
) -> list[bytes]:
    """Cut one frame into serialized packets of at most ``mtu`` bytes.

    Every packet repeats the frame's extensions, as the official packetizer does, so a receiver
    can read them from whichever packet starts the frame. Sequence numbers run from
    ``first_sequence`` (wrapping at 65536). An empty payload still makes one packet, so an empty
    frame reaches the subscriber.

    Raises:
        LocalProtocolError: ``mtu`` leaves no room for payload, or a header field is out of range.
    """
    room = mtu - header_size(user_timestamp=user_timestamp, e2ee=e2ee)
    if room <= 0:
        raise LocalProtocolError(f"an MTU of {mtu} bytes leaves no room for payload")
    pieces = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    last = len(pieces) - 1
    return [
        encode_packet(
            DataTrackPacket(
                handle=handle,
                sequence=(first_sequence + index) & _U16,
                frame_number=frame_number,
                timestamp=timestamp,
                start=index == 0,
                final=index == last,
                payload=piece,
                user_timestamp=user_timestamp,
                e2ee=e2ee,
            )
        )
        for index, piece in enumerate(pieces)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssembledFrame:
    """A complete frame put back together from its packets.

    Attributes:
        payload: the frame's bytes.
        user_timestamp: the application timestamp of the frame's first packet, if any.
        e2ee: the encryption parameters of the frame's first packet, if any.
        frame_number: the frame number the packets carried.
    """

    payload: bytes
    user_timestamp: int | None
    e2ee: E2eeExtension | None
    frame_number: int


@dataclass(slots=True)
class _Partial:
    start: DataTrackPacket | None = None
    final_sequence: int | None = None
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class FrameAssembler:
    """Reassembles the frames of one track from packets that may arrive out of order or not at all.

    The channel is unordered and never retransmits (PROTOCOL-MAP §3), so a frame is delivered
    only when its start packet, its final packet and every sequence number in between arrived;
    a frame that can no longer complete is dropped silently (counted in :attr:`dropped_frames`).
    Memory is bounded: at most ``max_partial_frames`` incomplete frames, each of at most
    ``max_frame_packets`` packets and ``max_frame_bytes`` bytes; a new frame beyond the first
    bound evicts the oldest incomplete one.

    Args:
        max_partial_frames: incomplete frames kept at once (the official default is 1).
        max_frame_packets: packets one frame may span.
        max_frame_bytes: payload bytes one frame may hold.

    Raises:
        LocalProtocolError: a bound is not a positive int.
    """

    __slots__ = (
        "_last_completed",
        "_max_bytes",
        "_max_packets",
        "_max_partial",
        "_partials",
        "dropped_frames",
    )

    def __init__(
        self,
        *,
        max_partial_frames: int = 1,
        max_frame_packets: int = DEFAULT_MAX_FRAME_PACKETS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        for name, value in (
            ("max_partial_frames", max_partial_frames),
            ("max_frame_packets", max_frame_packets),
            ("max_frame_bytes", max_frame_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LocalProtocolError(f"{name} must be a positive int, got {value!r}")
        self._max_partial = max_partial_frames
        self._max_packets = max_frame_packets
        self._max_bytes = max_frame_bytes
        # insertion-ordered: the oldest incomplete frame is evicted first
        self._partials: dict[int, _Partial] = {}
        # A packet of the frame just delivered is a late duplicate, not the start of a new frame
        # (the frame number only comes round again after 65 535 other frames).
        self._last_completed: int | None = None
        self.dropped_frames = 0
        """Incomplete frames given up (evicted, over a bound, or interrupted)."""

    @property
    def max_partial_frames(self) -> int:
        """How many incomplete frames are kept at once."""
        return self._max_partial

    @max_partial_frames.setter
    def max_partial_frames(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LocalProtocolError(f"max_partial_frames must be a positive int, got {value!r}")
        self._max_partial = value
        self._evict(keep=value)

    @property
    def pending_frames(self) -> int:
        """Incomplete frames currently held."""
        return len(self._partials)

    def push(self, packet: DataTrackPacket) -> AssembledFrame | None:
        """Take one packet; return the frame it completes, if any."""
        number = packet.frame_number
        if number == self._last_completed:
            return None
        if packet.start and packet.final:
            self._last_completed = number
            return AssembledFrame(
                payload=packet.payload,
                user_timestamp=packet.user_timestamp,
                e2ee=packet.e2ee,
                frame_number=packet.frame_number,
            )
        partial = self._partials.get(number)
        if partial is None:
            self._evict(keep=self._max_partial - 1)
            partial = self._partials[number] = _Partial()
        if packet.sequence in partial.pieces:
            return None  # a duplicate changes nothing
        partial.pieces[packet.sequence] = packet.payload
        partial.size += len(packet.payload)
        if packet.start:
            partial.start = packet
        if packet.final:
            partial.final_sequence = packet.sequence
        if len(partial.pieces) > self._max_packets or partial.size > self._max_bytes:
            del self._partials[number]
            self.dropped_frames += 1
            return None
        return self._complete(number, partial)

    def _complete(self, number: int, partial: _Partial) -> AssembledFrame | None:
        start, final = partial.start, partial.final_sequence
        if start is None or final is None:
            return None
        count = ((final - start.sequence) & _U16) + 1
        if count != len(partial.pieces):
            if count < len(partial.pieces):
                # Sequence numbers outside [start, final]: not one frame, give it up.
                del self._partials[number]
                self.dropped_frames += 1
            return None
        seq = start.sequence
        chunks: list[bytes] = []
        for _ in range(count):
            piece = partial.pieces.get(seq)
            if piece is None:
                return None
            chunks.append(piece)
            seq = (seq + 1) & _U16
        del self._partials[number]
        self._last_completed = number
        return AssembledFrame(
            payload=b"".join(chunks),
            user_timestamp=start.user_timestamp,
            e2ee=start.e2ee,
            frame_number=number,
        )

    def _evict(self, *, keep: int) -> None:
        while len(self._partials) > max(keep, 0):
            del self._partials[next(iter(self._partials))]
            self.dropped_frames += 1

    def clear(self) -> None:
        """Forget every incomplete frame (not counted as dropped)."""
        self._partials.clear()
        self._last_completed = None
