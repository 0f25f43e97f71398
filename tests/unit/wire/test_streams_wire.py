"""lkproto.wire.streams: UTF-8 splitting, chunking, raw deflate and the bounded inflater."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire.streams import (
    DEFLATE_RAW_WBITS,
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


def test_constants() -> None:
    assert STREAM_CHUNK_SIZE_BYTES == 15_000
    assert HEADER_MAX_BYTES == 15_000
    assert DEFLATE_RAW_WBITS == -15


# ------------------------------------------------------------------ split_utf8


def test_split_utf8_empty_and_short() -> None:
    assert split_utf8(b"", 4) == []
    assert split_utf8(b"abc", 4) == [b"abc"]
    assert split_utf8(b"abcd", 4) == [b"abcd"]


def test_split_utf8_ascii_exact_pieces() -> None:
    assert split_utf8(b"abcdefghij", 4) == [b"abcd", b"efgh", b"ij"]


@pytest.mark.parametrize("size", [4, 5, 6, 7, 8, 13])
def test_split_utf8_never_cuts_a_character(size: int) -> None:
    text = "aé€😀" * 7 + "x̧̀" + "😀"
    pieces = split_utf8(text.encode(), size)
    assert all(0 < len(piece) <= size for piece in pieces)
    assert "".join(piece.decode("utf-8") for piece in pieces) == text


def test_split_utf8_backs_off_to_the_lead_byte() -> None:
    data = "ab😀".encode()  # 2 + 4 bytes; a cut at 4 would land inside the emoji
    assert split_utf8(data, 4) == [b"ab", "😀".encode()]


def test_split_utf8_matches_js_algorithm() -> None:
    # JS splitUtf8("Hello, 世界!", 5)
    assert split_utf8("Hello, 世界!".encode(), 5) == [
        b"Hello",
        ", 世".encode(),
        "界!".encode(),
    ]


def test_split_utf8_invalid_input_terminates() -> None:
    data = b"\x80" * 20  # only continuation bytes: hard cuts, never empty pieces
    pieces = split_utf8(data, 4)
    assert b"".join(pieces) == data
    assert all(len(piece) == 4 for piece in pieces)


@pytest.mark.parametrize("bad", [3, 0, -1, True, 4.0])
def test_split_utf8_refuses_small_sizes(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        split_utf8(b"abc", bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ iter_chunks


def test_iter_chunks() -> None:
    assert list(iter_chunks(b"", 3)) == []
    assert list(iter_chunks(b"abcdefg", 3)) == [b"abc", b"def", b"g"]
    assert list(iter_chunks(bytearray(b"ab"), 1)) == [b"a", b"b"]
    assert list(iter_chunks(memoryview(b"abcdef"), 6)) == [b"abcdef"]


def test_iter_chunks_refuses_non_positive() -> None:
    with pytest.raises(LocalProtocolError):
        list(iter_chunks(b"abc", 0))


# ------------------------------------------------------------------ deflate


def _inflate(data: bytes) -> bytes:
    return zlib.decompress(data, DEFLATE_RAW_WBITS)


def test_deflate_raw_is_raw_deflate() -> None:
    payload = b"hello hello hello hello"
    compressed = deflate_raw(payload)
    assert compressed is not None
    assert _inflate(compressed) == payload
    # No zlib header: a zlib-wrapped decoder refuses it.
    with pytest.raises(zlib.error):
        zlib.decompress(compressed)


def test_deflate_raw_output_budget() -> None:
    payload = bytes(range(256)) * 1000  # poorly compressible at the start
    assert deflate_raw(payload, max_output_bytes=10) is None
    full = deflate_raw(payload)
    assert full is not None
    assert deflate_raw(payload, max_output_bytes=len(full)) == full
    assert deflate_raw(payload, max_output_bytes=len(full) - 1) is None


def test_raw_deflater_is_one_continuous_stream() -> None:
    deflater = RawDeflater()
    out = deflater.compress(b"abc" * 100)
    out += deflater.flush()
    assert _inflate_partial(out) == b"abc" * 100  # a sync flush makes everything decodable
    out += deflater.compress(b"xyz" * 100)
    out += deflater.finish()
    assert deflater.finished
    assert _inflate(out) == b"abc" * 100 + b"xyz" * 100
    calls: tuple[Callable[[], bytes], ...] = (
        lambda: deflater.compress(b"x"),
        deflater.flush,
        deflater.finish,
    )
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call()


def _inflate_partial(data: bytes) -> bytes:
    return zlib.decompressobj(DEFLATE_RAW_WBITS).decompress(data)


# ------------------------------------------------------------------ BoundedInflater


def test_inflater_round_trip_in_pieces() -> None:
    payload = b"The quick brown fox " * 500
    compressed = deflate_raw(payload)
    assert compressed is not None
    inflater = BoundedInflater(len(payload))
    out = b"".join(inflater.feed(piece) for piece in iter_chunks(compressed, 7))
    assert not inflater.feed(b"")
    inflater.finish()
    assert out == payload
    assert inflater.eof
    assert inflater.total_out == len(payload)


def test_inflater_exact_cap_is_allowed() -> None:
    payload = b"\0" * 100_000
    compressed = deflate_raw(payload)
    assert compressed is not None
    inflater = BoundedInflater(100_000)
    assert inflater.feed(compressed) == payload
    inflater.finish()


def test_inflater_total_cap() -> None:
    compressed = deflate_raw(b"\0" * 100_001)
    assert compressed is not None
    inflater = BoundedInflater(100_000)
    with pytest.raises(InflateLimitError) as info:
        inflater.feed(compressed)
    assert info.value.limit == 100_000
    assert isinstance(info.value, DecodeError)
    # Broken from then on.
    with pytest.raises(InflateError):
        inflater.feed(b"x")
    with pytest.raises(InflateError):
        inflater.finish()


def test_inflater_total_cap_across_feeds() -> None:
    compressed = deflate_raw(b"a" * 5_000)
    assert compressed is not None
    inflater = BoundedInflater(4_000)
    pieces = list(iter_chunks(compressed, 5))
    with pytest.raises(InflateLimitError):  # noqa: PT012
        for piece in pieces:
            inflater.feed(piece)
    assert inflater.total_out <= 4_000


def test_inflater_per_call_cap() -> None:
    compressed = deflate_raw(b"\0" * 10_000)
    assert compressed is not None
    with pytest.raises(InflateLimitError) as info:
        BoundedInflater(10**9).feed(compressed, max_bytes=9_999)
    assert info.value.limit == 9_999
    assert BoundedInflater(10**9).feed(compressed, max_bytes=10_000) == b"\0" * 10_000
    with pytest.raises(InflateLimitError):
        BoundedInflater(10**9).feed(compressed, max_bytes=-5)


def test_inflater_zero_cap_accepts_empty_payload() -> None:
    compressed = deflate_raw(b"")
    assert compressed is not None
    inflater = BoundedInflater(0)
    assert inflater.feed(compressed) == b""
    inflater.finish()


def test_inflater_corrupt_data() -> None:
    inflater = BoundedInflater(1000)
    with pytest.raises(InflateError) as info:
        inflater.feed(b"\xff\xff\xff\xff")
    assert info.value.message_type == "deflate-raw"


def test_inflater_truncated() -> None:
    compressed = deflate_raw(b"hello world" * 50)
    assert compressed is not None
    inflater = BoundedInflater(10_000)
    inflater.feed(compressed[:-3])
    with pytest.raises(InflateError, match="truncated"):
        inflater.finish()


def test_inflater_trailing_garbage() -> None:
    compressed = deflate_raw(b"hello")
    assert compressed is not None
    with pytest.raises(InflateError, match="after the end"):
        BoundedInflater(100).feed(compressed + b"junk")
    inflater = BoundedInflater(100)
    inflater.feed(compressed)
    with pytest.raises(InflateError, match="after the end"):
        inflater.feed(b"more")


def test_inflater_refuses_bad_cap() -> None:
    with pytest.raises(LocalProtocolError):
        BoundedInflater(-1)


def test_inflater_pieces_are_bounded() -> None:
    payload = bytes(range(256)) * 12_000  # 3 MB, compressible
    compressed = deflate_raw(payload)
    assert compressed is not None
    inflater = BoundedInflater(len(payload))
    pieces = inflater.feed_pieces(compressed)
    assert len(pieces) > 1
    assert all(0 < len(piece) <= 256 * 1024 for piece in pieces)
    assert b"".join(pieces) == payload
    inflater.finish()
    assert inflater.feed_pieces(b"") == []


@pytest.mark.parametrize("cap", [256 * 1024, 256 * 1024 - 1, 2 * 256 * 1024, 600_000])
def test_inflater_exact_limit_across_steps(cap: int) -> None:
    payload = b"\0" * cap
    compressed = deflate_raw(payload)
    assert compressed is not None
    inflater = BoundedInflater(cap)
    assert inflater.feed(compressed) == payload  # exactly at the cap, in several steps
    inflater.finish()
    over = deflate_raw(payload + b"\0")
    assert over is not None
    with pytest.raises(InflateLimitError):
        BoundedInflater(cap).feed(over)
