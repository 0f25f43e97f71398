"""StreamSender.send_whole: the one inline-or-chunked rule for a payload known in full
(lkproto.asyncio.streams; PROTOCOL-MAP §5 data streams v2)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from lkproto.asyncio.streams import StreamSender
from lkproto.core import streams as core
from lkproto.wire import pb
from lkproto.wire.streams import STREAM_CHUNK_SIZE_BYTES

INLINE = core.StreamForm(inline_allowed=True, compression_allowed=False)
CLASSIC = core.StreamForm(inline_allowed=False, compression_allowed=False)


class RecordingEngine:
    def __init__(self) -> None:
        self.sent: list[pb.DataPacket] = []

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        assert reliable
        self.sent.append(packet)


def kinds(engine: RecordingEngine) -> list[str]:
    return [str(p.WhichOneof("value")) for p in engine.sent]


def stream(size: int) -> core.OutgoingByteStream:
    return core.OutgoingByteStream(
        stream_id="s1", timestamp_ms=1, topic="t", name="n", total_length=size
    )


async def send(payload: bytes, form: core.StreamForm) -> RecordingEngine:
    engine = RecordingEngine()
    sender = StreamSender(cast("Any", engine), stream(len(payload)))
    await sender.send_whole(payload, form)
    return engine


async def test_small_payload_to_v2_recipients_is_one_header_packet() -> None:
    engine = await send(b"hello", INLINE)
    assert kinds(engine) == ["stream_header"]
    assert engine.sent[0].stream_header.inline_content == b"hello"


@pytest.mark.parametrize(
    ("size", "form", "chunks"),
    [(5, CLASSIC, 1), (STREAM_CHUNK_SIZE_BYTES * 2 + 1, INLINE, 3)],
)
async def test_otherwise_header_chunks_trailer(
    size: int, form: core.StreamForm, chunks: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    engine = await send(payload, form)
    assert kinds(engine) == ["stream_header", *["stream_chunk"] * chunks, "stream_trailer"]
    assert not engine.sent[0].stream_header.inline_content
    assert b"".join(p.stream_chunk.content for p in engine.sent[1:-1]) == payload
