"""Stateless helpers of data streams: UTF-8-safe splitting, chunking and raw DEFLATE.

No state machine, no clock, no I/O (PROTOCOL-MAP §5). The machines that use these live in
:mod:`lkproto.core.streams`.

* :func:`split_utf8` cuts UTF-8 text into pieces of at most ``max_bytes`` bytes, only between
  characters, as ``JS:src/room/utils.ts (splitUtf8)`` does: every text chunk must decode on its own
  because the JS reader decodes chunks separately (PROTOCOL-MAP §5 Sender rules).
* :func:`iter_chunks` cuts bytes into pieces of at most ``max_bytes``.
* :func:`deflate_raw` / :class:`RawDeflater` compress, :class:`BoundedInflater` decompresses the
  ``DEFLATE_RAW`` compression of data streams v2: raw deflate (zlib ``wbits=-15``, no zlib header or
  checksum), one continuous stream per data stream whose compressed bytes are sliced into chunks.

The inflater is the decompression-bomb guard: a compressed packet of 15 000 bytes can inflate to
about 15 MB (deflate's ratio tops out near 1032:1), a crafted stream to anything. It asks zlib for
at most ``cap + 1`` bytes per call (``max_length``), so output beyond the cap is never produced,
let alone allocated.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final, NoReturn

from lkproto.errors import DecodeError, LocalProtocolError

__all__ = [
    "DEFLATE_RAW_WBITS",
    "HEADER_MAX_BYTES",
    "STREAM_CHUNK_SIZE_BYTES",
    "BoundedInflater",
    "InflateError",
    "InflateLimitError",
    "RawDeflater",
    "deflate_raw",
    "iter_chunks",
    "split_utf8",
]

# PROTOCOL-MAP §5 Sender rules: chunk content size (JS ``STREAM_CHUNK_SIZE_BYTES``, Python
# ``STREAM_CHUNK_SIZE``), also the budget of a single-packet (inline) stream.
STREAM_CHUNK_SIZE_BYTES: Final = 15_000
# PROTOCOL-MAP §5 Sender rules: a serialized header packet larger than this is refused (JS
# ``sendHeaderPacket`` throws ``HeaderTooLarge``).
HEADER_MAX_BYTES: Final = 15_000
# PROTOCOL-MAP §5 Messages (``compression=DEFLATE_RAW``): raw deflate, 32 KiB window, no header.
DEFLATE_RAW_WBITS: Final = -15

# A UTF-8 character has at most 3 continuation bytes (RFC 3629).
_MAX_CONTINUATION_BYTES: Final = 3
# ``split_utf8`` needs room for the longest character (JS ``splitUtf8`` refuses n < 4).
_MIN_UTF8_PIECE_BYTES: Final = 4
# Input fed to zlib per call when compressing with an output budget.
_DEFLATE_STEP_BYTES: Final = 64 * 1024
# Output asked of zlib per call when inflating (and the largest piece of ``feed_pieces``).
_INFLATE_STEP_BYTES: Final = 256 * 1024


class InflateError(DecodeError):
    """Bytes that are not a valid raw-deflate stream (corrupt, truncated, or data after its end)."""

    def __init__(self, reason: str) -> None:
        super().__init__("deflate-raw", reason)


class InflateLimitError(InflateError):
    """Inflating would produce more than the allowed number of bytes; nothing beyond was produced.

    Attributes:
        limit: the number of bytes that was allowed.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"output exceeds {limit} bytes")
        self.limit = limit


def _check_size(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise LocalProtocolError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def split_utf8(data: bytes, max_bytes: int) -> list[bytes]:
    """Split UTF-8 ``data`` into pieces of at most ``max_bytes``, cutting only between characters.

    The algorithm of ``JS:src/room/utils.ts (splitUtf8)`` and Rust ``Utf8AwareChunks``: cut at
    ``max_bytes`` and back off while the next byte is a continuation byte (``10xxxxxx``). For valid
    UTF-8 every piece is valid UTF-8 on its own. Invalid input is still split (and never loops):
    after backing off over 3 continuation bytes, the cut is made at ``max_bytes``.

    Args:
        data: UTF-8 bytes.
        max_bytes: the largest piece, at least 4 (the longest UTF-8 character).

    Returns:
        The pieces, in order, none empty; ``[]`` for empty ``data``.

    Raises:
        LocalProtocolError: ``max_bytes`` is not an int of at least 4.
    """
    _check_size("max_bytes", max_bytes, _MIN_UTF8_PIECE_BYTES)
    view = memoryview(data)
    pieces: list[bytes] = []
    start = 0
    end = len(view)
    while end - start > max_bytes:
        cut = start + max_bytes
        back = cut
        while back > cut - _MAX_CONTINUATION_BYTES and _is_continuation(view[back]):
            back -= 1
        if not _is_continuation(view[back]):
            cut = back
        pieces.append(bytes(view[start:cut]))
        start = cut
    if end > start:
        pieces.append(bytes(view[start:end]))
    return pieces


def iter_chunks(data: bytes | bytearray | memoryview, max_bytes: int) -> Iterator[bytes]:
    """Yield ``data`` in consecutive pieces of ``max_bytes`` (the last may be shorter).

    Nothing is yielded for empty ``data``.

    Raises:
        LocalProtocolError: ``max_bytes`` is not a positive int.
    """
    _check_size("max_bytes", max_bytes, 1)
    view = memoryview(data).cast("B")
    for start in range(0, len(view), max_bytes):
        yield bytes(view[start : start + max_bytes])


def deflate_raw(
    data: bytes | bytearray | memoryview, *, max_output_bytes: int | None = None
) -> bytes | None:
    """Compress ``data`` as one complete raw-deflate stream (zlib's default level, like JS's
    ``CompressionStream('deflate-raw')``).

    Args:
        data: the payload.
        max_output_bytes: if given, give up (return None) as soon as the compressed output
            exceeds this many bytes, without compressing the rest. Used to test whether a payload
            fits a single packet cheaply, whatever its size.

    Returns:
        The compressed bytes, or None when they would exceed ``max_output_bytes``.
    """
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, DEFLATE_RAW_WBITS)
    view = memoryview(data).cast("B")
    out = bytearray()
    for start in range(0, len(view), _DEFLATE_STEP_BYTES):
        out += compressor.compress(view[start : start + _DEFLATE_STEP_BYTES])
        if max_output_bytes is not None and len(out) > max_output_bytes:
            return None
    out += compressor.flush(zlib.Z_FINISH)
    if max_output_bytes is not None and len(out) > max_output_bytes:
        return None
    return bytes(out)


class RawDeflater:
    """An incremental raw-deflate compressor: one continuous stream, fed piece by piece.

    Concatenating everything returned by :meth:`compress`, :meth:`flush` and :meth:`finish`
    gives one raw-deflate stream that :class:`BoundedInflater` (and a browser's
    ``DecompressionStream('deflate-raw')``) decodes to the concatenated input.
    """

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, DEFLATE_RAW_WBITS
        )
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` was called."""
        return self._finished

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ``data``; returns whatever compressed bytes zlib releases now (often none).

        Raises:
            LocalProtocolError: called after :meth:`finish`.
        """
        self._check_open()
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        """Sync-flush: returns bytes that let a receiver inflate everything fed so far.

        The stream continues (``Z_SYNC_FLUSH``, an empty stored block on a byte boundary).

        Raises:
            LocalProtocolError: called after :meth:`finish`.
        """
        self._check_open()
        return self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """End the stream (final block); returns the remaining compressed bytes.

        Raises:
            LocalProtocolError: called twice.
        """
        self._check_open()
        self._finished = True
        return self._compressor.flush(zlib.Z_FINISH)

    def _check_open(self) -> None:
        if self._finished:
            raise LocalProtocolError("the deflate stream is already finished")


class BoundedInflater:
    """An incremental raw-deflate decompressor that never produces more than it is allowed.

    Feed the compressed bytes of one stream in order with :meth:`feed`; call :meth:`finish` when
    the sender says the stream ended. Each :meth:`feed` may carry its own output allowance on top of
    the total one; zlib is asked for at most ``allowance + 1`` bytes per call (``max_length``), so
    an over-long output is detected after producing a single byte too many, never by producing it.

    After any exception the inflater is broken: every later call raises :class:`InflateError`.

    Args:
        max_output_bytes: total decompressed bytes this stream may produce.

    Raises:
        LocalProtocolError: ``max_output_bytes`` is not a non-negative int.
    """

    def __init__(self, max_output_bytes: int) -> None:
        self._max_total = _check_size("max_output_bytes", max_output_bytes, 0)
        self._decompressor = zlib.decompressobj(DEFLATE_RAW_WBITS)
        self._total_out = 0
        self._broken: str | None = None

    @property
    def total_out(self) -> int:
        """Decompressed bytes produced so far."""
        return self._total_out

    @property
    def eof(self) -> bool:
        """True once the final deflate block has been decoded."""
        return self._decompressor.eof

    def feed(self, data: bytes | bytearray | memoryview, *, max_bytes: int | None = None) -> bytes:
        """Decompress the next compressed bytes of the stream.

        Args:
            data: the next compressed bytes.
            max_bytes: at most this many bytes may come out of this call (besides the total cap).

        Returns:
            The decompressed bytes that ``data`` completes (possibly empty).

        Raises:
            InflateLimitError: the output would exceed ``max_bytes`` or the total cap.
            InflateError: ``data`` is not valid deflate, or arrives after the end of the stream.
        """
        pieces = self.feed_pieces(data, max_bytes=max_bytes)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def feed_pieces(
        self, data: bytes | bytearray | memoryview, *, max_bytes: int | None = None
    ) -> list[bytes]:
        """As :meth:`feed`, but the output comes as consecutive pieces of at most 256 KiB.

        Nothing is returned unless the whole of ``data`` was inflated within the limits, so the
        peak memory of a call is the allowed output plus one piece, and joining is left to the
        caller (a streaming consumer need not join at all).
        """
        self._check_usable()
        limit = self._max_total - self._total_out
        if max_bytes is not None:
            limit = min(limit, max(max_bytes, 0))
        if not data:
            return []
        if self._decompressor.eof:
            self._break(InflateError("data after the end of the deflate stream"))
        pieces: list[bytes] = []
        produced = 0
        pending: bytes | bytearray | memoryview = data
        try:
            while True:
                # Ask for one byte more than allowed: getting it proves the limit is exceeded.
                # Bounded steps: CPython's zlib briefly holds twice what one call returns.
                want = min(limit - produced + 1, _INFLATE_STEP_BYTES)
                piece = self._decompressor.decompress(pending, want)
                produced += len(piece)
                if produced > limit:
                    del piece, pieces
                    self._break(InflateLimitError(limit))
                if piece:
                    pieces.append(piece)
                tail = self._decompressor.unconsumed_tail
                # A full step may leave output pending inside zlib even with no input left.
                if self._decompressor.eof or (not tail and len(piece) < want):
                    break
                if not piece and len(tail) == len(pending):  # pragma: no cover - zlib stalled
                    self._break(InflateError("inflate made no progress"))
                pending = tail
        except zlib.error as exc:
            self._break(InflateError(str(exc)))
        if self._decompressor.unused_data:
            self._break(InflateError("data after the end of the deflate stream"))
        self._total_out += produced
        return pieces

    def finish(self) -> None:
        """Check that the stream ended with its final block.

        Raises:
            InflateError: the stream is truncated (or the inflater is broken).
        """
        self._check_usable()
        if not self._decompressor.eof:
            self._break(InflateError("truncated deflate stream"))

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise InflateError(f"inflater unusable after an earlier error: {self._broken}")

    def _break(self, error: InflateError) -> NoReturn:
        self._broken = error.reason
        raise error
