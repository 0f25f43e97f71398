"""Data streams (text and byte), sans-I/O: the sender's chunker and the receiver's reassembler.

Theory of operation
-------------------
A data stream is a header, chunks and a trailer, each its own ``DataPacket`` on ``_reliable``
with the same ``destination_identities`` (PROTOCOL-MAP §5 Messages); data streams v2 may instead
put the whole payload in the header (``inline_content``, one packet) and may compress it with raw
deflate (``compression = DEFLATE_RAW``). Nothing here reads a clock or draws random numbers: stream
ids, timestamps and ``now`` are passed in. Packets are return values (the driver stamps them with
:class:`~lkproto.core.reliable.ReliableSender` and sends them); received data comes out as events.

Sender
~~~~~~
:class:`OutgoingTextStream` and :class:`OutgoingByteStream` hold one outgoing stream. They are
built with every header field and validate it at once: a header packet over
:data:`~lkproto.wire.streams.HEADER_MAX_BYTES` raises :class:`StreamHeaderTooLargeError` (JS
``HeaderTooLarge``). Then either

* :meth:`~OutgoingStream.single_packet` (data streams v2, only if :func:`choose_form` allowed
  inline): the whole payload in ``Header.inline_content`` -- compressed when the stream allows
  compression *and* that makes it smaller -- if the serialized packet fits 15 000 bytes; it returns
  None otherwise and the stream stays unopened for the chunked form; or
* :meth:`~OutgoingStream.open` (the header), any number of :meth:`~OutgoingStream.write` (chunks
  of at most 15 000 content bytes, ``chunk_index`` 0, 1, 2, ...), optionally
  :meth:`~OutgoingStream.flush`, and :meth:`~OutgoingStream.close` (the last chunks and the
  trailer).

Text is split on UTF-8 character boundaries (``JS:src/room/utils.ts (splitUtf8)``): every
uncompressed text chunk decodes on its own, because the JS reader decodes each chunk separately.
:meth:`OutgoingTextStream.write` takes ``str`` or UTF-8 ``bytes``; an incomplete character at the
end of a ``bytes`` write is held back until the next write completes it. With compression, all
chunk contents are consecutive slices of *one* raw-deflate stream (PROTOCOL-MAP §5 Sender rules):
``write`` emits only full chunks, ``flush`` sync-flushes the compressor and emits what it has (for
latency), ``close`` finishes the deflate stream first. The official SDKs only compress one-shot
sends; their receivers accept any continuous stream, sync-flushed or not.

:func:`choose_form` applies the v2 rule to the recipients' ``ParticipantInfo.client_protocol`` and
``capabilities``: inline only if every recipient has ``client_protocol >= 2``, compression only if
every recipient also advertises ``CAP_COMPRESSION_DEFLATE_RAW``; an empty room counts as yes.

Receiver
~~~~~~~~
:class:`StreamReceiver` follows ``JS:src/room/data-stream/incoming/IncomingDataStreamManager.ts``
and ``StreamReader.ts`` (PROTOCOL-MAP §5 Receiver rules). It never buffers a stream: each chunk
is checked, decompressed and handed out as a :class:`StreamChunkReceived` at once; memory per open
stream is its bookkeeping plus, when compressed, one zlib inflater (about 40 KiB). Lifecycle of
one stream, as events pulled from :meth:`~StreamReceiver.next_event`::

    StreamOpened  StreamChunkReceived*  (StreamClosed | StreamFailed)

Every :class:`StreamClosed` / :class:`StreamFailed` follows the :class:`StreamOpened` of its id;
nothing is emitted for a stream whose header was ignored. Rules:

* **Dispatch.** The driver decides which topics it reads: ``handler_for(topic, is_text)``. No
  handler, a header with neither text nor byte header, or an unknown ``compression`` value (JS and
  Rust drop those) ⇒ the header is ignored, and chunks and trailer of that id are then silently
  dropped as unknown (PROTOCOL-MAP §5). Chunks and trailers are routed by ``stream_id`` only: an
  agent's chunks carry the agent's identity even when the header carried a user's (PROTOCOL-MAP §3
  inbound step 4).
* **Order.** Chunks must arrive with ``chunk_index`` 0, 1, 2, ... (reliable ordered channel; a
  stateful inflater cannot skip). A higher index fails the stream with ``GAP``, the index just
  delivered with ``DUPLICATE``, an older one with ``REORDER``. Stricter than JS and Rust, which
  drop duplicates of compressed streams (replays after a resume) and deliver those of uncompressed
  ones: here resume replays are already removed by sequence in
  :class:`~lkproto.core.reliable.ReliableReceiver`, so a repeated index is a sender error and
  delivering it would corrupt the data.
* **Chunk versions.** ``Chunk.version`` ("replaces an earlier chunk with the same index") is not
  honoured: no official sender sets it, JS uses it only in text-reader bookkeeping (and still
  appends the replacement's text), and a streaming receiver cannot take back data it delivered. A
  repeated index therefore fails the stream as above whatever its version; a first-time index is
  accepted whatever its version.
* **Length.** Payload bytes are counted after decompression (``total_length`` is the size before
  compression). More than ``total_length`` ⇒ ``LENGTH_EXCEEDED`` as soon as it happens; a normal
  trailer with fewer ⇒ ``INCOMPLETE``. A present ``total_length`` of 0 is enforced like any other
  value (Rust does; JS treats 0 as unknown). Without ``total_length`` a lost *last* chunk cannot be
  detected.
* **Limits.** ``max_stream_bytes`` bounds a stream's payload (``TOO_LARGE``; a header announcing
  more fails at once, as in Rust); ``max_decompressed_bytes`` bounds what one packet may inflate
  to (``DECOMPRESSION``), which bounds the memory a single :meth:`~StreamReceiver.receive` can
  allocate: the inflater stops one byte past the smallest applicable bound without producing more
  (:class:`~lkproto.wire.streams.BoundedInflater`). ``max_open_streams`` bounds concurrent
  chunked streams (``TOO_MANY_STREAMS``; inline streams never stay open).
* **End.** A trailer with a non-empty ``reason`` ⇒ ``ABNORMAL_END``; a compressed stream whose
  deflate data is corrupt, carries data after its end, or is truncated at the trailer ⇒
  ``DECOMPRESSION``. Attributes of :class:`StreamClosed` are the header's overlaid with the
  trailer's.
* **Encryption.** The driver says per packet whether it arrived in an ``EncryptedPacket``; a chunk
  or trailer that disagrees with its header ⇒ ``ENCRYPTION_MISMATCH`` (PROTOCOL-MAP §11).
* **Sender left.** :meth:`~StreamReceiver.participant_left` fails the streams whose header came
  from that identity (JS, Rust) or whose chunks were last carried by it (the agent case above)
  with ``SENDER_LEFT``, unless a new session of the identity replaced it (next rule).
* **Full reconnect** (issue 15; the departure half follows ``JS:src/room/Room.ts
  (handleParticipantDisconnected)`` and Rust ``AbortStreamsFrom``, which end such streams at
  once). A stream *straddles* a full reconnect when its sender's session is replaced
  (:meth:`~StreamReceiver.participant_left` with ``DUPLICATE_IDENTITY``, the reason
  livekit-server gives the old session when the same identity joins again) or when this room's
  own reconnect (:meth:`~StreamReceiver.reconnecting`) ends as a full one
  (:meth:`~StreamReceiver.reconnected` with ``full=True``). Part of such a stream may have been
  lost with the old session (what the server accepted and could not forward), so instead of
  failing it the receiver proves it whole or fails it with ``RECONNECTED``: its next packet must
  come within ``reconnect_grace_s`` (the sender resends what its old association never
  delivered, PROTOCOL-MAP §10); a chunk index it already has is that resend's replay and is
  dropped; a skipped index, a trailer before ``total_length`` bytes, or no packet within the
  grace ⇒ ``RECONNECTED``. While this room's reconnect runs (resume or full, not known yet), a
  skipped index is ``RECONNECTED`` too, and a trailer of a stream that was open when it began and
  has no ``total_length`` is held: it closes the stream once the reconnect turns out a resume,
  and fails it with ``RECONNECTED`` after a full one (a lost *last* chunk is invisible without
  ``total_length``). Nothing lost and the trailer seen ⇒ the stream completes.
* **Timeout.** No packet for ``stream_timeout_s`` ⇒ ``TIMEOUT``; :meth:`~StreamReceiver.get_timer`
  and :meth:`~StreamReceiver.handle_timer` as in aioquic. (The SDKs have no such timer; without
  it a lost trailer would hold a stream slot forever.)
* **Inline** headers produce ``StreamOpened``, the content as ``StreamChunkReceived`` (one event,
  or 256 KiB pieces when decompressed, see below; none if empty) and ``StreamClosed`` at once.
  All checks (decompression, length) pass before any data is handed out, else only
  ``StreamFailed`` follows the ``StreamOpened``.
* **Pieces.** Uncompressed content comes out one event per chunk. Decompressed content comes out
  in pieces of at most 256 KiB (one event each), so that the peak memory of a
  :meth:`~StreamReceiver.receive` stays near its output; a packet's pieces are handed out only
  once the whole packet inflated within the limits.
* **Text** payloads are delivered as UTF-8 bytes made of whole characters: the bytes are passed
  through an incremental decoder, so a character split across chunks (always the case for
  compressed text, PROTOCOL-MAP §5) comes out whole in a later event. Invalid UTF-8 is replaced
  with U+FFFD, as JS's non-fatal ``TextDecoder`` does.

Bad remote input never raises out of :meth:`~StreamReceiver.receive`: it fails the stream
concerned or is counted in :attr:`~StreamReceiver.ignored_packets`.
"""

from __future__ import annotations

import abc
import codecs
import enum
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

from lkproto.core.durations import optional_positive_seconds, positive_seconds
from lkproto.core.reconnect import REJOIN_HOLD_S
from lkproto.errors import LocalProtocolError, RemoteProtocolError
from lkproto.wire import pb
from lkproto.wire.streams import (
    HEADER_MAX_BYTES,
    STREAM_CHUNK_SIZE_BYTES,
    BoundedInflater,
    InflateError,
    InflateLimitError,
    RawDeflater,
    deflate_raw,
    iter_chunks,
    split_utf8,
)

__all__ = [
    "CLIENT_PROTOCOL_DATA_STREAM_V2",
    "DEFAULT_BYTE_MIME_TYPE",
    "DEFAULT_BYTE_STREAM_NAME",
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "DEFAULT_MAX_OPEN_STREAMS",
    "DEFAULT_MAX_STREAM_BYTES",
    "DEFAULT_RECONNECT_GRACE_S",
    "DEFAULT_STREAM_TIMEOUT_S",
    "DEFAULT_TEXT_MIME_TYPE",
    "AnyStreamEvent",
    "OutgoingByteStream",
    "OutgoingStream",
    "OutgoingTextStream",
    "StreamChunkReceived",
    "StreamClosed",
    "StreamError",
    "StreamErrorKind",
    "StreamEvent",
    "StreamFailed",
    "StreamForm",
    "StreamHeaderTooLargeError",
    "StreamInfo",
    "StreamOpened",
    "StreamReceiver",
    "choose_form",
]

# PROTOCOL-MAP §5 Sender rules (data streams v2): recipients at or above this client_protocol take
# single-packet streams (JS ``CLIENT_PROTOCOL_DATA_STREAM_V2``).
CLIENT_PROTOCOL_DATA_STREAM_V2: Final = 2
# PROTOCOL-MAP §5 Sender rules: defaults of the official SDKs.
DEFAULT_TEXT_MIME_TYPE: Final = "text/plain"
DEFAULT_BYTE_MIME_TYPE: Final = "application/octet-stream"
"""MIME type a byte stream is sent with when the caller gives none (the official SDKs' default)."""
DEFAULT_BYTE_STREAM_NAME: Final = "unknown"
"""``ByteHeader.name`` a byte stream is sent with when the caller gives no name."""

# Receiver limits (STYLE "limits are configuration"). Chunked streams open at once; the SDKs have
# no bound, this one keeps per-stream state (an inflater is ~40 KiB) bounded.
DEFAULT_MAX_OPEN_STREAMS: Final = 256
# Payload bytes of one stream: JS ``DEFAULT_MAX_PAYLOAD_BYTE_LENGTH`` and Rust's default (5 GB).
# Not a memory bound: nothing is buffered here, the driver's reader bounds its own queue.
DEFAULT_MAX_STREAM_BYTES: Final = 5_000_000_000
# What one packet may inflate to. A legitimate 15 000-byte chunk or inline header inflates to at
# most ~15.5 MB (deflate's ~1032:1 ceiling), so this never refuses a conforming sender while
# bounding what a single receive() allocates (a crafted 64 000-byte packet could reach ~66 MB).
DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024
# No packet on an open stream for this long fails it (the SDKs wait forever).
DEFAULT_STREAM_TIMEOUT_S: Final = 120.0
DEFAULT_RECONNECT_GRACE_S: Final = REJOIN_HOLD_S + 5.0
"""After a full reconnect (the sender's or ours), how long a stream it straddles waits for its
next packet before failing with ``RECONNECTED``. A replaced lkproto sender holds its resend until
every participant from before the fault is back, at most ``lkproto.core.reconnect.REJOIN_HOLD_S``
(20 s) after its join; 5 s more leaves room for a loaded machine without letting a stream whose
end was lost hang until ``stream_timeout_s``."""
# livekit-server closes the old session of an identity that joins again with this reason; for
# a participant that is the sign of its full reconnect (observed on v1.13.5 for lkproto and the
# official SDK alike: the old SID leaves with DUPLICATE_IDENTITY as the new one joins).
_REPLACED: Final = pb.DUPLICATE_IDENTITY

_UINT64_MAX: Final = 2**64 - 1
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UTF8_MIN_PIECE_BYTES: Final = 4
_COMPRESSION_NONE: Final = pb.DataStream.NONE
_COMPRESSION_DEFLATE_RAW: Final = pb.DataStream.DEFLATE_RAW
_CAP_DEFLATE_RAW: Final = pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW


# --------------------------------------------------------------------------------------------
# Errors


class StreamHeaderTooLargeError(LocalProtocolError):
    """The stream's header packet would exceed :data:`~lkproto.wire.streams.HEADER_MAX_BYTES`.

    Almost always the attributes (JS ``DataStreamErrorReason.HeaderTooLarge``). Nothing was built.

    Attributes:
        size: the serialized size of the header packet.
        max_bytes: the limit.
    """

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(
            f"data stream header packet of {size} bytes exceeds the {max_bytes}-byte limit; "
            "reduce attribute size"
        )
        self.size = size
        self.max_bytes = max_bytes


class StreamErrorKind(enum.StrEnum):
    """Why an incoming stream failed (PROTOCOL-MAP §5 Receiver rules)."""

    GAP = "gap"
    """A chunk index was skipped (a chunk lost or reordered)."""
    DUPLICATE = "duplicate"
    """The chunk just delivered came again (or a second header for an open stream)."""
    REORDER = "reorder"
    """A chunk index older than the last one delivered arrived."""
    LENGTH_EXCEEDED = "length_exceeded"
    """More payload bytes than the header's ``total_length`` (JS ``LengthExceeded``)."""
    INCOMPLETE = "incomplete"
    """The trailer came before ``total_length`` bytes (JS ``Incomplete``)."""
    ABNORMAL_END = "abnormal_end"
    """The trailer carried a non-empty ``reason`` (JS ``AbnormalEnd``)."""
    SENDER_LEFT = "sender_left"
    """The sender left the room mid-stream (JS reports ``AbnormalEnd``)."""
    TIMEOUT = "timeout"
    """No packet for the stream within ``stream_timeout_s``."""
    TOO_LARGE = "too_large"
    """The payload exceeds ``max_stream_bytes`` (JS ``PayloadTooLarge``)."""
    TOO_MANY_STREAMS = "too_many_streams"
    """``max_open_streams`` chunked streams were already open."""
    DECOMPRESSION = "decompression"
    """Corrupt or truncated deflate data, or one packet inflating beyond
    ``max_decompressed_bytes``."""
    ENCRYPTION_MISMATCH = "encryption_mismatch"
    """A chunk or trailer was (not) encrypted unlike its header (JS ``EncryptionTypeMismatch``)."""
    RECONNECTED = "reconnected"
    """The stream straddled a full reconnect (its sender's or this room's) and part of it was
    lost with the old session, or could not be proven complete (JS and Rust report
    ``AbnormalEnd`` for every such stream)."""


class StreamError(RemoteProtocolError):
    """An incoming stream broke the data-stream rules; carried by :class:`StreamFailed`.

    Attributes:
        kind: what went wrong.
        stream_id: the stream.
        detail: human-readable specifics (for ``ABNORMAL_END``: the trailer's reason).
    """

    def __init__(self, kind: StreamErrorKind, stream_id: str, detail: str = "") -> None:
        message = f"data stream {stream_id!r} failed: {kind.value}"
        super().__init__(message + (f" ({detail})" if detail else ""))
        self.kind = kind
        self.stream_id = stream_id
        self.detail = detail

    def __repr__(self) -> str:
        return f"StreamError({self.kind.name}, {self.stream_id!r}, {self.detail!r})"


# --------------------------------------------------------------------------------------------
# Sender


class StreamForm(NamedTuple):
    """What a send may use, from :func:`choose_form`.

    Attributes:
        inline_allowed: the single-packet form (``inline_content``) may be used.
        compression_allowed: ``DEFLATE_RAW`` may be used.
    """

    inline_allowed: bool
    compression_allowed: bool


def choose_form(recipients: Iterable[tuple[int, Iterable[int]]]) -> StreamForm:
    """Which data-streams-v2 features every recipient supports (PROTOCOL-MAP §5 Sender rules, §15).

    Args:
        recipients: ``(client_protocol, capabilities)`` of each recipient, from its
            ``ParticipantInfo``: the named destinations, or every remote participant when
            broadcasting. Empty (nobody to receive) counts as yes, as in JS.

    Returns:
        ``inline_allowed`` when every ``client_protocol >= 2``; ``compression_allowed`` when,
        in addition, every recipient lists ``CAP_COMPRESSION_DEFLATE_RAW`` (JS requires both).
    """
    inline = True
    compression = True
    for client_protocol, capabilities in recipients:
        if client_protocol < CLIENT_PROTOCOL_DATA_STREAM_V2:
            inline = False
        if _CAP_DEFLATE_RAW not in set(capabilities):
            compression = False
    return StreamForm(inline_allowed=inline, compression_allowed=inline and compression)


def _nonempty(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise LocalProtocolError(f"{name} must be an int in {low}..{high}, got {value!r}")
    return value


def _str_map(name: str, value: Mapping[str, str] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LocalProtocolError(f"{name} must be a mapping of str to str")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise LocalProtocolError(f"{name} must map str to str, got {key!r}: {item!r}")
        out[key] = item
    return out


def _str_list(name: str, value: Sequence[str]) -> list[str]:
    if isinstance(value, str | bytes) or not all(isinstance(item, str) for item in value):
        raise LocalProtocolError(f"{name} must be a sequence of str, got {value!r}")
    return list(value)


def _as_bytes(name: str, data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise LocalProtocolError(f"{name} must be bytes-like, got {type(data).__name__}")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class OutgoingStream(abc.ABC):
    """One outgoing data stream; use :class:`OutgoingTextStream` or :class:`OutgoingByteStream`.

    See the module docstring. Lifecycle: new → (:meth:`single_packet` | :meth:`open` →
    :meth:`write`* → :meth:`close`) → closed. Every packet returned carries the stream's
    ``destination_identities``; send them in order on ``_reliable``.
    """

    def __init__(
        self,
        *,
        is_text: bool,
        stream_id: str,
        timestamp_ms: int,
        topic: str,
        mime_type: str,
        total_length: int | None,
        attributes: Mapping[str, str] | None,
        destination_identities: Sequence[str],
        compression: bool,
        chunk_size_bytes: int,
    ) -> None:
        self._is_text = is_text
        self._stream_id = _nonempty("stream_id", stream_id)
        self._timestamp_ms = _int_in("timestamp_ms", timestamp_ms, _INT64_MIN, _INT64_MAX)
        if not isinstance(topic, str) or not isinstance(mime_type, str):
            raise LocalProtocolError("topic and mime_type must be str")
        self._topic = topic
        self._mime_type = mime_type
        self._total_length = (
            None if total_length is None else _int_in("total_length", total_length, 0, _UINT64_MAX)
        )
        self._attributes = _str_map("attributes", attributes)
        self._destinations = _str_list("destination_identities", destination_identities)
        self._compression = bool(compression)
        minimum = _UTF8_MIN_PIECE_BYTES if is_text else 1
        self._chunk_size = _int_in(
            "chunk_size_bytes", chunk_size_bytes, minimum, STREAM_CHUNK_SIZE_BYTES
        )
        self._state = _State.NEW
        self._next_index = 0
        self._bytes_sent = 0
        self._partial = b""  # text: an incomplete trailing character, held for the next write
        self._deflater = RawDeflater() if self._compression else None
        self._pending_out = bytearray()  # compressed bytes not yet in a chunk
        # Build (and so validate) the header now: nothing half-made exists after a refusal.
        self._header_packet = self._header(compressed=self._compression, inline=None)
        size = self._header_packet.ByteSize()
        if size > HEADER_MAX_BYTES:
            raise StreamHeaderTooLargeError(size, HEADER_MAX_BYTES)

    # ---------------------------------------------------------------- state (read-only)

    @property
    def stream_id(self) -> str:
        """The stream id."""
        return self._stream_id

    @property
    def is_text(self) -> bool:
        """True for a text stream."""
        return self._is_text

    @property
    def topic(self) -> str:
        """The topic."""
        return self._topic

    @property
    def destination_identities(self) -> list[str]:
        """Recipients (empty: everyone else in the room)."""
        return list(self._destinations)

    @property
    def compression(self) -> bool:
        """Whether compression was allowed at construction (chunks are compressed if so)."""
        return self._compression

    @property
    def total_length(self) -> int | None:
        """The announced payload size in bytes (before compression), if any."""
        return self._total_length

    @property
    def bytes_sent(self) -> int:
        """Payload bytes (before compression) accepted so far, an incomplete trailing character
        of a text ``bytes`` write included."""
        return self._bytes_sent

    @property
    def progress(self) -> float | None:
        """``bytes_sent / total_length``; 1.0 once closed with a zero total; None without one."""
        if self._total_length is None:
            return None
        if self._total_length == 0:
            return 1.0 if self._state is _State.CLOSED else 0.0
        return self._bytes_sent / self._total_length

    @property
    def next_chunk_index(self) -> int:
        """The ``chunk_index`` the next chunk will carry (= chunks produced so far)."""
        return self._next_index

    @property
    def opened(self) -> bool:
        """True after :meth:`open` (or a successful :meth:`single_packet`)."""
        return self._state is not _State.NEW

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or a successful :meth:`single_packet`)."""
        return self._state is _State.CLOSED

    # ---------------------------------------------------------------- inputs

    def open(self) -> pb.DataPacket:
        """Start the chunked form: returns the header packet (send it first).

        Raises:
            LocalProtocolError: the stream was already opened or sent as a single packet.
        """
        if self._state is not _State.NEW:
            raise LocalProtocolError(
                f"data stream {self._stream_id!r} is already {self._state.value}"
            )
        self._state = _State.OPEN
        return self._header_packet

    def single_packet(
        self,
        payload: bytes | bytearray | memoryview | str,
        *,
        max_packet_bytes: int = STREAM_CHUNK_SIZE_BYTES,
    ) -> pb.DataPacket | None:
        """Data streams v2: the whole payload inline in the header, if it fits one packet.

        Use only when :func:`choose_form` allowed inline. The content is compressed with
        ``DEFLATE_RAW`` when the stream allows compression and the result is smaller (JS keeps
        the compressed form only if it shrinks the payload). ``total_length`` is set to the
        payload size (before compression).

        Args:
            payload: the complete payload (``str`` or UTF-8 bytes for a text stream).
            max_packet_bytes: the largest serialized packet accepted (15 000 by default).

        Returns:
            The packet (the stream is then closed), or None when it does not fit: the stream is
            unchanged and may be sent in the chunked form.

        Raises:
            LocalProtocolError: the stream is not new, the payload is not valid (UTF-8 for
                text), or its size differs from a ``total_length`` given at construction.
        """
        if self._state is not _State.NEW:
            raise LocalProtocolError(
                f"data stream {self._stream_id!r} is already {self._state.value}"
            )
        data = self._whole_payload(payload)
        if self._total_length is not None and len(data) != self._total_length:
            raise LocalProtocolError(
                f"payload of {len(data)} bytes differs from total_length {self._total_length}"
            )
        content, compressed = data, False
        if self._compression:
            # Compressing beyond the packet budget is wasted work: give up as soon as it exceeds.
            squeezed = deflate_raw(data, max_output_bytes=min(len(data) - 1, max_packet_bytes))
            if squeezed is not None and len(squeezed) < len(data):
                content, compressed = squeezed, True
        if len(content) > max_packet_bytes:
            return None
        packet = self._header(compressed=compressed, inline=content, total_length=len(data))
        if packet.ByteSize() > max_packet_bytes:
            return None
        self._bytes_sent = len(data)
        self._state = _State.CLOSED
        return packet

    def write(self, data: bytes | bytearray | memoryview | str) -> list[pb.DataPacket]:
        """Append payload; returns the chunk packets it completes (possibly none).

        Raises:
            LocalProtocolError: the stream is not open, ``data`` has the wrong type or is not
                valid UTF-8 (text), or it would exceed ``total_length``. Nothing changed then.
        """
        self._check_open()
        raw, complete, partial = self._accept(data)
        if self._total_length is not None and self._bytes_sent + len(raw) > self._total_length:
            raise LocalProtocolError(
                f"writing {len(raw)} bytes exceeds total_length {self._total_length} "
                f"({self._bytes_sent} already written)"
            )
        self._bytes_sent += len(raw)
        self._partial = partial
        if self._deflater is not None:
            self._pending_out += self._deflater.compress(complete)
            return self._drain(final=False)
        return self._chunks(complete)

    def flush(self) -> list[pb.DataPacket]:
        """Send what the compressor holds (``Z_SYNC_FLUSH``), for latency; no-op uncompressed.

        Raises:
            LocalProtocolError: the stream is not open.
        """
        self._check_open()
        if self._deflater is None:
            return []
        self._pending_out += self._deflater.flush()
        return self._drain(final=True)

    def close(
        self, reason: str = "", attributes: Mapping[str, str] | None = None
    ) -> list[pb.DataPacket]:
        """End the stream: returns the remaining chunks (compressed streams) and the trailer.

        Args:
            reason: empty for a normal end; anything else tells the receivers the stream was
                aborted (they fail it with ``AbnormalEnd``) and drops unsent data.
            attributes: trailer attributes, merged over the header's by receivers.

        Raises:
            LocalProtocolError: the stream is not open; or, for a normal end, fewer bytes than
                ``total_length`` were written or a text stream ends inside a character (close
                with a ``reason`` to abort instead). Nothing changed then.
        """
        self._check_open()
        if not isinstance(reason, str):
            raise LocalProtocolError(f"reason must be a str, got {type(reason).__name__}")
        if not reason:
            if self._partial:
                raise LocalProtocolError("text stream ends inside a UTF-8 character")
            if self._total_length is not None and self._bytes_sent < self._total_length:
                raise LocalProtocolError(
                    f"only {self._bytes_sent} of total_length {self._total_length} bytes written"
                )
        try:
            trailer = pb.DataPacket(
                destination_identities=self._destinations,
                stream_trailer=pb.DataStream.Trailer(
                    stream_id=self._stream_id,
                    reason=reason,
                    attributes=_str_map("attributes", attributes),
                ),
            )
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"cannot build the trailer: {exc}") from exc
        size = trailer.ByteSize()
        if size > HEADER_MAX_BYTES:
            raise LocalProtocolError(
                f"trailer packet of {size} bytes exceeds the {HEADER_MAX_BYTES}-byte limit"
            )
        packets: list[pb.DataPacket] = []
        if self._deflater is not None and not reason:
            self._pending_out += self._deflater.finish()
            packets = self._drain(final=True)
        self._partial = b""
        self._pending_out.clear()
        self._deflater = None
        self._state = _State.CLOSED
        packets.append(trailer)
        return packets

    # ---------------------------------------------------------------- internals

    def _accept(self, data: object) -> tuple[bytes, bytes, bytes]:
        """``(raw, complete, partial)`` for a write of ``data``: its bytes, what is ready to
        chunk, and what to hold back. Validates, changes nothing."""
        raw = _as_bytes("data", data)
        return raw, raw, b""

    def _whole_payload(self, payload: object) -> bytes:
        return _as_bytes("payload", payload)

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            what = "not opened" if self._state is _State.NEW else "closed"
            raise LocalProtocolError(f"data stream {self._stream_id!r} is {what}")

    def _header(
        self, *, compressed: bool, inline: bytes | None, total_length: int | None = None
    ) -> pb.DataPacket:
        length = self._total_length if total_length is None else total_length
        try:
            header = pb.DataStream.Header(
                stream_id=self._stream_id,
                timestamp=self._timestamp_ms,
                topic=self._topic,
                mime_type=self._mime_type,
                total_length=length,
                attributes=self._attributes,
                inline_content=inline,
                compression=_COMPRESSION_DEFLATE_RAW if compressed else _COMPRESSION_NONE,
            )
            self._content_header(header)
            return pb.DataPacket(destination_identities=self._destinations, stream_header=header)
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise LocalProtocolError(f"cannot build the stream header: {exc}") from exc

    @abc.abstractmethod
    def _content_header(self, header: pb.DataStream.Header) -> None:
        """Fill the text or byte header of ``header``."""

    def _chunk_packet(self, content: bytes) -> pb.DataPacket:
        packet = pb.DataPacket(
            destination_identities=self._destinations,
            stream_chunk=pb.DataStream.Chunk(
                stream_id=self._stream_id, chunk_index=self._next_index, content=content
            ),
        )
        self._next_index += 1
        return packet

    def _chunks(self, complete: bytes) -> list[pb.DataPacket]:
        pieces = (
            split_utf8(complete, self._chunk_size)
            if self._is_text
            else iter_chunks(complete, self._chunk_size)
        )
        return [self._chunk_packet(piece) for piece in pieces]

    def _drain(self, *, final: bool) -> list[pb.DataPacket]:
        """Chunks of the compressed bytes: full ones only, or everything when ``final``."""
        size = self._chunk_size
        pending = self._pending_out
        end = len(pending) if final else len(pending) - len(pending) % size
        packets = [
            self._chunk_packet(bytes(pending[start : min(start + size, end)]))
            for start in range(0, end, size)
        ]
        del pending[:end]
        return packets


class OutgoingTextStream(OutgoingStream):
    """An outgoing text stream (``text_header``); chunks are split on character boundaries.

    Args:
        stream_id: a fresh unique id (the SDKs use a random UUID v4 string).
        timestamp_ms: creation time, milliseconds since the Unix epoch.
        topic: the topic receivers dispatch on.
        mime_type: ``text/plain`` by default.
        total_length: the payload size in UTF-8 bytes, if known (the SDKs set it for one-shot
            sends); enforced by receivers.
        attributes: header attributes.
        destination_identities: recipients; empty for everyone else in the room.
        compression: compress the chunks (``DEFLATE_RAW``) and allow compressing the inline
            content; only if :func:`choose_form` allowed it.
        operation_type: ``pb.DataStream.CREATE`` (default), ``UPDATE``, ``DELETE``, ``REACTION``.
        version: the text header's version (int32; used with ``UPDATE``).
        reply_to_stream_id: the stream this one replies to.
        attached_stream_ids: ids of byte streams sent as attachments of this one.
        generated: the ``generated`` flag (normally set by the server for agent transcripts).
        chunk_size_bytes: largest chunk content, 4..15 000 (smaller values are for tests).

    Raises:
        LocalProtocolError: a field has the wrong type or range.
        StreamHeaderTooLargeError: the header packet exceeds 15 000 bytes.
    """

    def __init__(
        self,
        *,
        stream_id: str,
        timestamp_ms: int,
        topic: str = "",
        mime_type: str = DEFAULT_TEXT_MIME_TYPE,
        total_length: int | None = None,
        attributes: Mapping[str, str] | None = None,
        destination_identities: Sequence[str] = (),
        compression: bool = False,
        operation_type: pb.DataStream.OperationType.ValueType = pb.DataStream.CREATE,
        version: int = 0,
        reply_to_stream_id: str = "",
        attached_stream_ids: Sequence[str] = (),
        generated: bool = False,
        chunk_size_bytes: int = STREAM_CHUNK_SIZE_BYTES,
    ) -> None:
        self._operation_type = _int_in("operation_type", operation_type, 0, 2**31 - 1)
        self._version = _int_in("version", version, -(2**31), 2**31 - 1)
        if not isinstance(reply_to_stream_id, str):
            raise LocalProtocolError("reply_to_stream_id must be a str")
        self._reply_to = reply_to_stream_id
        self._attached = _str_list("attached_stream_ids", attached_stream_ids)
        self._generated = bool(generated)
        super().__init__(
            is_text=True,
            stream_id=stream_id,
            timestamp_ms=timestamp_ms,
            topic=topic,
            mime_type=mime_type,
            total_length=total_length,
            attributes=attributes,
            destination_identities=destination_identities,
            compression=compression,
            chunk_size_bytes=chunk_size_bytes,
        )

    def _content_header(self, header: pb.DataStream.Header) -> None:
        header.text_header.operation_type = self._operation_type  # type: ignore[assignment]
        header.text_header.version = self._version
        header.text_header.reply_to_stream_id = self._reply_to
        header.text_header.attached_stream_ids.extend(self._attached)
        header.text_header.generated = self._generated

    def write(self, data: bytes | bytearray | memoryview | str) -> list[pb.DataPacket]:
        """Append text (``str``, or UTF-8 bytes possibly ending inside a character).

        Returns:
            The chunk packets completed; each uncompressed chunk is valid UTF-8 on its own.

        Raises:
            LocalProtocolError: not open; ``str`` with lone surrogates; bytes that are not UTF-8
                (given what is held from the previous write); over ``total_length``.
        """
        return super().write(data)

    def _accept(self, data: object) -> tuple[bytes, bytes, bytes]:
        if isinstance(data, str):
            try:
                raw = data.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LocalProtocolError(f"text is not valid Unicode: {exc}") from exc
            if not self._partial:
                return raw, raw, b""
        else:
            raw = _as_bytes("data", data)
        combined = self._partial + raw
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            decoder.decode(combined, final=False)
        except UnicodeDecodeError as exc:
            raise LocalProtocolError(f"text is not valid UTF-8: {exc}") from exc
        held = len(decoder.getstate()[0])
        cut = len(combined) - held
        return raw, combined[:cut], combined[cut:]

    def _whole_payload(self, payload: object) -> bytes:
        if isinstance(payload, str):
            try:
                return payload.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LocalProtocolError(f"text is not valid Unicode: {exc}") from exc
        data = _as_bytes("payload", payload)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LocalProtocolError(f"text is not valid UTF-8: {exc}") from exc
        return data


class OutgoingByteStream(OutgoingStream):
    """An outgoing byte stream (``byte_header``).

    Args:
        stream_id: a fresh unique id (the SDKs use a random UUID v4 string).
        timestamp_ms: creation time, milliseconds since the Unix epoch.
        topic: the topic receivers dispatch on.
        mime_type: ``application/octet-stream`` by default.
        name: the byte header's name (``unknown`` by default, as in the SDKs).
        total_length: the payload size in bytes, if known; enforced by receivers.
        attributes: header attributes.
        destination_identities: recipients; empty for everyone else in the room.
        compression: compress the chunks (``DEFLATE_RAW``) and allow compressing the inline
            content; only if :func:`choose_form` allowed it.
        chunk_size_bytes: largest chunk content, 1..15 000 (smaller values are for tests).

    Raises:
        LocalProtocolError: a field has the wrong type or range.
        StreamHeaderTooLargeError: the header packet exceeds 15 000 bytes.
    """

    def __init__(
        self,
        *,
        stream_id: str,
        timestamp_ms: int,
        topic: str = "",
        mime_type: str = DEFAULT_BYTE_MIME_TYPE,
        name: str = DEFAULT_BYTE_STREAM_NAME,
        total_length: int | None = None,
        attributes: Mapping[str, str] | None = None,
        destination_identities: Sequence[str] = (),
        compression: bool = False,
        chunk_size_bytes: int = STREAM_CHUNK_SIZE_BYTES,
    ) -> None:
        if not isinstance(name, str):
            raise LocalProtocolError("name must be a str")
        self._name = name
        super().__init__(
            is_text=False,
            stream_id=stream_id,
            timestamp_ms=timestamp_ms,
            topic=topic,
            mime_type=mime_type,
            total_length=total_length,
            attributes=attributes,
            destination_identities=destination_identities,
            compression=compression,
            chunk_size_bytes=chunk_size_bytes,
        )

    def _content_header(self, header: pb.DataStream.Header) -> None:
        header.byte_header.name = self._name

    def write(self, data: bytes | bytearray | memoryview | str) -> list[pb.DataPacket]:
        """Append bytes (a ``str`` is refused: use a text stream).

        Returns:
            The chunk packets completed.

        Raises:
            LocalProtocolError: not open, not bytes-like, or over ``total_length``.
        """
        return super().write(data)


# --------------------------------------------------------------------------------------------
# Receiver events


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """What the header of an incoming stream said.

    Attributes:
        stream_id: the stream id.
        topic: the topic.
        mime_type: the MIME type.
        timestamp_ms: creation time, milliseconds since the Unix epoch.
        total_length: payload size in bytes before compression, None when not announced.
        attributes: the header's attributes.
        sender_identity: ``participant_identity`` of the header packet (for an agent speaking on
            a user's behalf, the user; empty for hidden senders).
        is_text: text (``text_header``) or byte (``byte_header``) stream.
        operation_type: text streams: ``pb.DataStream.OperationType`` value (0 for byte streams).
        version: text streams: the header's version.
        reply_to_stream_id: text streams: the stream replied to.
        attached_stream_ids: text streams: ids of attached byte streams.
        generated: text streams: set by the server for agent-generated text.
        name: byte streams: the name (empty for text streams).
        compressed: the payload is ``DEFLATE_RAW``-compressed on the wire.
        inline: a single-packet stream (the payload came in the header).
        encrypted: the header arrived end-to-end encrypted.
    """

    stream_id: str
    topic: str
    mime_type: str
    timestamp_ms: int
    total_length: int | None
    attributes: dict[str, str]
    sender_identity: str
    is_text: bool
    operation_type: int = 0
    version: int = 0
    reply_to_stream_id: str = ""
    attached_stream_ids: tuple[str, ...] = ()
    generated: bool = False
    name: str = ""
    compressed: bool = False
    inline: bool = False
    encrypted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """Base class of the events of :class:`StreamReceiver`.

    Attributes:
        stream_id: the stream concerned.
    """

    stream_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened(StreamEvent):
    """A stream with a handler started (inline streams too).

    Attributes:
        info: what its header said.
        message: the header.
    """

    info: StreamInfo
    message: pb.DataStream.Header


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamChunkReceived(StreamEvent):
    """Payload of an open stream, in order.

    Attributes:
        data: the next payload bytes, decompressed; for text streams UTF-8 made of whole
            characters (invalid sequences replaced by U+FFFD). Never empty; at most 256 KiB
            (plus a held-back partial character) when decompressed.
        index: 0, 1, 2, ... per stream, counting these events (not the wire ``chunk_index``:
            empty chunks, held-back partial characters and decompression re-frame the data).
        message: the chunk that produced the data; None for inline content and for the final
            replacement character of a text stream ending mid-character.
    """

    data: bytes
    index: int
    message: pb.DataStream.Chunk | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClosed(StreamEvent):
    """A stream ended normally; all its data was delivered.

    Attributes:
        attributes: the header's attributes overlaid with the trailer's.
        reason: the trailer's reason, always empty here (a non-empty one fails the stream
            with ``ABNORMAL_END``).
        message: the trailer; None for an inline stream.
    """

    attributes: dict[str, str]
    reason: str = ""
    message: pb.DataStream.Trailer | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamFailed(StreamEvent):
    """A stream ended with an error; data delivered before it must not be trusted as complete.

    Attributes:
        error: what happened (:attr:`StreamError.kind`).
    """

    error: StreamError


AnyStreamEvent: TypeAlias = StreamOpened | StreamChunkReceived | StreamClosed | StreamFailed
"""Every concrete stream event, for exhaustive ``match`` with ``assert_never``."""


# --------------------------------------------------------------------------------------------
# Receiver


@dataclass(slots=True)
class _Incoming:
    info: StreamInfo
    carrier: str  # identity on the latest packet of the stream (the agent case, module doc)
    order: int
    deadline: float | None
    inflater: BoundedInflater | None
    text: codecs.IncrementalDecoder | None
    next_index: int = 0
    received: int = 0  # payload bytes, after decompression
    emitted: int = 0
    # Issue 15 (module docstring "Full reconnect"): a full reconnect happened during the stream.
    straddled: bool = False
    # ... and its first packet since then has not come yet (deadline = the grace).
    awaiting: bool = False
    # Open when this room's reconnect began (reconnecting() .. reconnected()).
    marked: bool = False
    # A trailer held until the reconnect's kind is known (no total_length to prove the end).
    held: pb.DataStream.Trailer | None = None


def _text_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class StreamReceiver:
    """Reassembly of incoming data streams; see the module docstring for the rules.

    Inputs: :meth:`receive` for every ``stream_header`` / ``stream_chunk`` / ``stream_trailer``
    packet (after reliable dedup and decryption), :meth:`participant_left`, :meth:`reconnecting`,
    :meth:`reconnected`, :meth:`handle_timer`, :meth:`fail_all`. Outputs: :meth:`next_event`,
    :meth:`get_timer`.

    Args:
        handler_for: ``(topic, is_text) -> bool``, asked once per header: does the driver read
            this stream? (One handler per topic and kind, as in the SDKs.)
        max_open_streams: chunked streams open at once (default 256).
        max_stream_bytes: payload bytes of one stream after decompression (default 5 GB, as JS
            and Rust).
        max_decompressed_bytes: bytes one packet may inflate to (default 16 MiB); bounds what a
            single :meth:`receive` allocates.
        stream_timeout_s: an open stream with no packet for this long fails with ``TIMEOUT``
            (default 120 s); None disables the timer.
        reconnect_grace_s: after a full reconnect, how long a stream it straddles waits for its
            next packet before failing with ``RECONNECTED`` (default
            :data:`DEFAULT_RECONNECT_GRACE_S`).

    Raises:
        LocalProtocolError: a limit of the wrong type or range, or ``handler_for`` not callable.
    """

    def __init__(
        self,
        *,
        handler_for: Callable[[str, bool], bool],
        max_open_streams: int = DEFAULT_MAX_OPEN_STREAMS,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
        stream_timeout_s: float | None = DEFAULT_STREAM_TIMEOUT_S,
        reconnect_grace_s: float = DEFAULT_RECONNECT_GRACE_S,
    ) -> None:
        if not callable(handler_for):
            raise LocalProtocolError("handler_for must be callable")
        self._handler_for = handler_for
        self._max_open = _int_in("max_open_streams", max_open_streams, 1, 2**63)
        self._max_stream = _int_in("max_stream_bytes", max_stream_bytes, 0, _UINT64_MAX)
        self._max_packet = _int_in("max_decompressed_bytes", max_decompressed_bytes, 1, 2**63)
        self._timeout_s = optional_positive_seconds("stream_timeout_s", stream_timeout_s)
        self._grace_s = positive_seconds("reconnect_grace_s", reconnect_grace_s)
        self._open: dict[str, _Incoming] = {}
        self._events: deque[AnyStreamEvent] = deque()
        self._order = 0
        self._ignored = 0

    # ---------------------------------------------------------------- state (read-only)

    @property
    def open_stream_ids(self) -> list[str]:
        """Ids of the open chunked streams, oldest first."""
        return list(self._open)

    @property
    def ignored_packets(self) -> int:
        """Stream packets dropped: headers without a handler (or unusable), chunks and trailers
        of unknown streams, second headers of open streams."""
        return self._ignored

    # ---------------------------------------------------------------- inputs

    def receive(self, packet: pb.DataPacket, now: float, *, encrypted: bool = False) -> None:
        """Feed one received packet; only stream headers, chunks and trailers are looked at.

        Never raises for anything the remote side sent.

        Args:
            packet: the packet (``participant_identity`` as set by the server).
            now: current monotonic time in seconds.
            encrypted: the packet arrived as an ``EncryptedPacket`` (decrypted by the driver).
        """
        kind = packet.WhichOneof("value")
        if kind == "stream_header":
            self._on_header(packet.stream_header, packet.participant_identity, now, encrypted)
        elif kind == "stream_chunk":
            self._on_chunk(packet.stream_chunk, packet.participant_identity, now, encrypted)
        elif kind == "stream_trailer":
            self._on_trailer(packet.stream_trailer, packet.participant_identity, now, encrypted)

    def participant_left(
        self,
        identity: str,
        now: float,
        *,
        reason: pb.DisconnectReason.ValueType = pb.UNKNOWN_REASON,
    ) -> None:
        """A session of ``identity`` ended: its open streams fail with ``SENDER_LEFT``, oldest
        first, unless ``reason`` says a new session of the same identity replaced it (a full
        reconnect): then they straddle it (module docstring, "Full reconnect").

        Args:
            identity: whose session ended.
            now: current monotonic time in seconds.
            reason: the departed ``ParticipantInfo.disconnect_reason``.
        """
        gone = [
            (stream_id, st)
            for stream_id, st in self._open.items()
            if identity in (st.info.sender_identity, st.carrier)
        ]
        for stream_id, st in gone:
            if reason == _REPLACED:
                self._straddle(st, now)
            else:
                self._fail(stream_id, StreamErrorKind.SENDER_LEFT, f"{identity!r} left the room")

    def reconnecting(self, now: float) -> None:
        """This room began recovering (resume or full reconnect): mark the open streams."""
        del now
        for st in self._open.values():
            st.marked = True

    def reconnected(self, now: float, *, full: bool) -> None:
        """This room's recovery ended; after a ``full`` reconnect the marked streams straddle it.

        A held trailer (module docstring) closes its stream after a resume and fails it with
        ``RECONNECTED`` after a full reconnect.
        """
        for stream_id, st in list(self._open.items()):
            if not st.marked:
                continue
            st.marked = False
            held, st.held = st.held, None
            if held is not None and full:
                self._fail(
                    stream_id,
                    StreamErrorKind.RECONNECTED,
                    "trailer arrived during a full reconnect; without total_length the end "
                    "cannot be proven whole",
                )
            elif held is not None:
                del self._open[stream_id]
                lost = StreamErrorKind.RECONNECTED if st.straddled else StreamErrorKind.INCOMPLETE
                self._close(st, held, lost=lost)
            elif full:
                self._straddle(st, now)

    def fail_all(self, kind: StreamErrorKind, detail: str = "") -> None:
        """Fail every open stream with ``kind`` (e.g. ``ABNORMAL_END`` when the room closes)."""
        for stream_id in list(self._open):
            self._fail(stream_id, kind, detail)

    def handle_timer(self, now: float) -> None:
        """Fail the streams whose timeout passed at ``now``, earliest deadline first."""
        due = sorted(
            (st.deadline, st.order, stream_id)
            for stream_id, st in self._open.items()
            if st.deadline is not None and st.deadline <= now
        )
        for _, _, stream_id in due:
            if self._open[stream_id].awaiting:
                detail = f"no packet within {self._grace_s} s of a full reconnect"
                self._fail(stream_id, StreamErrorKind.RECONNECTED, detail)
            else:
                self._fail(stream_id, StreamErrorKind.TIMEOUT, f"no packet for {self._timeout_s} s")

    def get_timer(self) -> float | None:
        """The earliest stream deadline, or None (no open stream, or no timeout configured)."""
        deadlines = [st.deadline for st in self._open.values() if st.deadline is not None]
        return min(deadlines) if deadlines else None

    # ---------------------------------------------------------------- outputs

    def next_event(self) -> AnyStreamEvent | None:
        """The oldest pending event, or None. Drains one event."""
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- internals

    def _deadline(self, now: float) -> float | None:
        return None if self._timeout_s is None else now + self._timeout_s

    def _straddle(self, st: _Incoming, now: float) -> None:
        st.straddled = True
        if st.held is None:
            st.awaiting = True
            st.deadline = now + self._grace_s

    def _on_header(
        self, header: pb.DataStream.Header, identity: str, now: float, encrypted: bool
    ) -> None:
        content = header.WhichOneof("content_header")
        if content is None or header.compression not in (
            _COMPRESSION_NONE,
            _COMPRESSION_DEFLATE_RAW,
        ):
            self._ignored += 1
            return
        is_text = content == "text_header"
        if not self._handler_for(header.topic, is_text):
            self._ignored += 1  # PROTOCOL-MAP §5: no handler, header ignored
            return
        stream_id = header.stream_id
        if stream_id in self._open:
            self._ignored += 1
            self._fail(stream_id, StreamErrorKind.DUPLICATE, "second header for an open stream")
            return
        compressed = header.compression == _COMPRESSION_DEFLATE_RAW
        inline = header.HasField("inline_content")
        text = header.text_header
        info = StreamInfo(
            stream_id=stream_id,
            topic=header.topic,
            mime_type=header.mime_type,
            timestamp_ms=header.timestamp,
            total_length=header.total_length if header.HasField("total_length") else None,
            attributes=dict(header.attributes),
            sender_identity=identity,
            is_text=is_text,
            operation_type=text.operation_type if is_text else 0,
            version=text.version if is_text else 0,
            reply_to_stream_id=text.reply_to_stream_id if is_text else "",
            attached_stream_ids=tuple(text.attached_stream_ids) if is_text else (),
            generated=text.generated if is_text else False,
            name="" if is_text else header.byte_header.name,
            compressed=compressed,
            inline=inline,
            encrypted=encrypted,
        )
        self._events.append(StreamOpened(stream_id=stream_id, info=info, message=header))
        if info.total_length is not None and info.total_length > self._max_stream:
            self._emit_failed(
                stream_id,
                StreamErrorKind.TOO_LARGE,
                f"total_length {info.total_length} exceeds {self._max_stream}",
            )
            return
        self._order += 1
        st = _Incoming(
            info=info,
            carrier=identity,
            order=self._order,
            deadline=self._deadline(now),
            inflater=BoundedInflater(self._max_stream) if compressed else None,
            text=_text_decoder() if is_text else None,
        )
        if inline:
            self._on_inline(st, header.inline_content)
            return
        if len(self._open) >= self._max_open:
            self._emit_failed(
                stream_id,
                StreamErrorKind.TOO_MANY_STREAMS,
                f"{len(self._open)} streams already open",
            )
            return
        self._open[stream_id] = st

    def _on_inline(self, st: _Incoming, content: bytes) -> None:
        # All or nothing: every check passes before the data is handed out.
        pieces = self._consume(st, content)
        if pieces is None:
            return
        tail = self._finish(st)
        if tail is None:
            return
        for piece in [*pieces, tail]:
            self._emit_data(st, piece, None)
        attributes = dict(st.info.attributes)
        self._events.append(StreamClosed(stream_id=st.info.stream_id, attributes=attributes))

    def _on_chunk(
        self, chunk: pb.DataStream.Chunk, identity: str, now: float, encrypted: bool
    ) -> None:
        stream_id = chunk.stream_id
        st = self._open.get(stream_id)
        if st is None or st.held is not None:
            self._ignored += 1  # PROTOCOL-MAP §5: chunks of unknown or ignored streams
            return
        if encrypted != st.info.encrypted:
            self._fail(stream_id, StreamErrorKind.ENCRYPTION_MISMATCH, _mismatch(encrypted))
            return
        index = chunk.chunk_index
        expected = st.next_index
        if index < expected and st.straddled:
            # The replaced sender's resend repeats what we had (module docstring): drop it.
            self._ignored += 1
            st.awaiting = False
            st.deadline = self._deadline(now)
            return
        if index != expected:
            if index > expected and (st.straddled or st.marked):
                kind = StreamErrorKind.RECONNECTED
            elif index > expected:
                kind = StreamErrorKind.GAP
            elif index == expected - 1:
                kind = StreamErrorKind.DUPLICATE
            else:
                kind = StreamErrorKind.REORDER
            self._fail(stream_id, kind, f"expected chunk {expected}, got {index}")
            return
        st.next_index += 1
        if identity:
            st.carrier = identity
        st.awaiting = False
        st.deadline = self._deadline(now)
        pieces = self._consume(st, chunk.content)
        if pieces is None:
            del self._open[stream_id]
            return
        for piece in pieces:
            self._emit_data(st, piece, chunk)

    def _on_trailer(
        self, trailer: pb.DataStream.Trailer, identity: str, now: float, encrypted: bool
    ) -> None:
        stream_id = trailer.stream_id
        st = self._open.get(stream_id)
        if st is None or st.held is not None:
            self._ignored += 1
            return
        if encrypted != st.info.encrypted:
            self._fail(stream_id, StreamErrorKind.ENCRYPTION_MISMATCH, _mismatch(encrypted))
            return
        if not trailer.reason and st.marked and st.info.total_length is None:
            st.held = trailer  # until reconnected() says resume or full (module docstring)
            st.awaiting = False
            st.deadline = self._deadline(now)
            return
        del self._open[stream_id]
        if trailer.reason:
            self._emit_failed(stream_id, StreamErrorKind.ABNORMAL_END, trailer.reason)
            return
        lost = StreamErrorKind.INCOMPLETE
        if st.straddled or st.marked:
            lost = StreamErrorKind.RECONNECTED
        self._close(st, trailer, lost=lost)

    def _close(
        self, st: _Incoming, trailer: pb.DataStream.Trailer, *, lost: StreamErrorKind
    ) -> None:
        """The trailer ends a stream already removed from the open ones; ``lost`` is the kind
        for fewer than ``total_length`` bytes."""
        tail = self._finish(st, lost=lost)
        if tail is None:
            return
        self._emit_data(st, tail, None)
        attributes = dict(st.info.attributes)
        attributes.update(trailer.attributes)
        self._events.append(
            StreamClosed(stream_id=st.info.stream_id, attributes=attributes, message=trailer)
        )

    def _consume(self, st: _Incoming, content: bytes) -> list[bytes] | None:
        """Check and decompress one packet's content: the pieces to hand out (text: whole
        characters, maybe empty), or None when the stream failed (the event is queued)."""
        stream_id = st.info.stream_id
        total = st.info.total_length
        # The binding bound decides the error; a tie goes to the most specific.
        bounds = [(self._max_stream - st.received, StreamErrorKind.TOO_LARGE)]
        if total is not None:
            bounds.insert(0, (total - st.received, StreamErrorKind.LENGTH_EXCEEDED))
        if st.inflater is not None:
            bounds.append((self._max_packet, StreamErrorKind.DECOMPRESSION))
            allowance, kind = min(bounds, key=lambda bound: bound[0])
            try:
                pieces = st.inflater.feed_pieces(content, max_bytes=allowance)
            except InflateLimitError:
                self._emit_failed(stream_id, kind, _limit_detail(kind, allowance, st.received))
                return None
            except InflateError as exc:
                self._emit_failed(stream_id, StreamErrorKind.DECOMPRESSION, exc.reason)
                return None
        else:
            pieces = [content]
            allowance, kind = min(bounds, key=lambda bound: bound[0])
            if len(content) > allowance:
                self._emit_failed(stream_id, kind, _limit_detail(kind, allowance, st.received))
                return None
        st.received += sum(len(piece) for piece in pieces)
        if st.text is not None:
            pieces = [st.text.decode(piece).encode("utf-8") for piece in pieces]
        return pieces

    def _finish(
        self, st: _Incoming, *, lost: StreamErrorKind = StreamErrorKind.INCOMPLETE
    ) -> bytes | None:
        """End-of-stream checks: the text decoder's tail (maybe empty) to hand out, or None when
        the stream failed (the event is queued)."""
        stream_id = st.info.stream_id
        total = st.info.total_length
        if total is not None and st.received < total:
            self._emit_failed(
                stream_id,
                lost,
                f"{st.received} of {total} bytes received",
            )
            return None
        if st.inflater is not None:
            try:
                st.inflater.finish()
            except InflateError as exc:
                self._emit_failed(stream_id, StreamErrorKind.DECOMPRESSION, exc.reason)
                return None
        if st.text is not None:
            return st.text.decode(b"", final=True).encode("utf-8")
        return b""

    def _emit_data(self, st: _Incoming, data: bytes, chunk: pb.DataStream.Chunk | None) -> None:
        if not data:
            return
        self._events.append(
            StreamChunkReceived(
                stream_id=st.info.stream_id, data=data, index=st.emitted, message=chunk
            )
        )
        st.emitted += 1

    def _fail(self, stream_id: str, kind: StreamErrorKind, detail: str) -> None:
        del self._open[stream_id]
        self._emit_failed(stream_id, kind, detail)

    def _emit_failed(self, stream_id: str, kind: StreamErrorKind, detail: str) -> None:
        error = StreamError(kind, stream_id, detail)
        self._events.append(StreamFailed(stream_id=stream_id, error=error))


def _mismatch(encrypted: bool) -> str:
    if encrypted:
        return "encrypted packet on an unencrypted stream"
    return "unencrypted packet on an encrypted stream"


def _limit_detail(kind: StreamErrorKind, allowance: int, received: int) -> str:
    if kind is StreamErrorKind.DECOMPRESSION:
        return f"one packet inflates beyond {allowance} bytes"
    return f"more than {received + allowance} bytes"
