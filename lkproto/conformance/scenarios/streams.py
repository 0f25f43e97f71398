"""Text and byte streams in every form (classic, single-packet, compressed), both directions,
and malformed streams injected by lkproto (PROTOCOL-MAP §5, §15)."""

from __future__ import annotations

import os
import time
import uuid

from lkproto.conformance._context import Context
from lkproto.conformance._registry import Unsupported, scenario
from lkproto.conformance.adapters import Client, PeerClient, StreamMsg
from lkproto.conformance.scenarios._util import (
    WireTap,
    advertised,
    capability_reason,
    check,
    level_reason,
    require_level,
)
from lkproto.wire import pb

__all__: list[str] = []

_DEFLATE_CAP = 2  # ClientInfo.Capability CAP_COMPRESSION_DEFLATE_RAW (§1)
_DEFLATE = 1  # DataStream.CompressionType DEFLATE_RAW (§5)
_CHUNK = 15_000  # STREAM_CHUNK_SIZE_BYTES (§5)
# Multi-byte characters straddle the 15 000-byte chunk boundaries.
_BIG_TEXT = ("héllo wörld ✓ 🎉 " * 3000)[:40_000]
_COMPRESSIBLE_TEXT = "the quick brown fox jumps over the lazy dog. " * 1500
_SMALL_TEXT = "single packet ✓"


def _streams(who: Client, topic: str) -> list[StreamMsg]:
    return [s for s in who.streams if s.topic == topic]


async def _wait_stream(ctx: Context, who: Client, topic: str) -> StreamMsg:
    async def got() -> bool:
        await who.poll()
        return bool(_streams(who, topic))

    await ctx.until(got, f"a stream on {topic!r} at {who.identity}")
    return _streams(who, topic)[0]


def _headers(packets: list[pb.DataPacket], topic: str) -> list[pb.DataStream.Header]:
    return [
        p.stream_header
        for p in packets
        if p.WhichOneof("value") == "stream_header" and p.stream_header.topic == topic
    ]


def _chunks(packets: list[pb.DataPacket], stream_id: str) -> list[pb.DataStream.Chunk]:
    return [
        p.stream_chunk
        for p in packets
        if p.WhichOneof("value") == "stream_chunk" and p.stream_chunk.stream_id == stream_id
    ]


def _trailers(packets: list[pb.DataPacket], stream_id: str) -> list[pb.DataStream.Trailer]:
    return [
        p.stream_trailer
        for p in packets
        if p.WhichOneof("value") == "stream_trailer" and p.stream_trailer.stream_id == stream_id
    ]


def _form(packets: list[pb.DataPacket], topic: str) -> str:
    headers = _headers(packets, topic)
    if len(headers) != 1:
        return f"{len(headers)} headers"
    header = headers[0]
    form = "single_packet" if header.HasField("inline_content") else "classic"
    if header.compression == _DEFLATE:
        form += "+compressed"
    return form


# -- the peer sends, the client receives -------------------------------------------------------


async def _receive(ctx: Context, kind: str, form: str) -> None:
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"trace": tap})
    if form == "single_packet":
        require_level(peer, "client", 2)
    elif form == "compressed":
        require_level(peer, "client", 2, _DEFLATE_CAP)
    topic = f"{kind}-{form}"
    await (client.watch_text(topic) if kind == "text" else client.watch_bytes(topic))
    lp = peer.room.local_participant
    expected: bytes
    if kind == "text":
        text = {"classic": _BIG_TEXT, "single_packet": _SMALL_TEXT}.get(form, _COMPRESSIBLE_TEXT)
        expected = text.encode()
        if form == "classic":
            writer = await lp.stream_text(topic=topic, destination_identities=["client"])
            for start in range(0, len(text), 7_000):
                await writer.write(text[start : start + 7_000])
            await writer.aclose()
        else:
            await ctx.bounded(
                lp.send_text(text, topic=topic, compress=form == "compressed"), "send_text"
            )
    else:
        expected = (
            os.urandom(50_000)
            if form == "classic"
            else os.urandom(3_000)
            if form == "single_packet"
            else _COMPRESSIBLE_TEXT.encode()
        )
        if form == "classic":
            writer_b = await lp.stream_bytes(
                "blob.bin", destination_identities=["client"], topic=topic
            )
            for start in range(0, len(expected), 20_000):
                await writer_b.write(expected[start : start + 20_000])
            await writer_b.aclose()
        else:
            await ctx.bounded(
                lp.send_bytes(
                    expected, topic=topic, name="blob.bin", compress=form == "compressed"
                ),
                "send_bytes",
            )
    sent_form = _form(tap.sent, topic)
    want = {"classic": "classic", "single_packet": "single_packet"}.get(form)
    if want is not None:
        check(sent_form == want, f"lkproto sent {sent_form} (setup)")
    else:
        check("compressed" in sent_form, f"lkproto sent {sent_form} (setup)")
    got = await _wait_stream(ctx, client, topic)
    check(got.error is None, f"reader failed: {got.error}")
    check(got.data == expected, f"content differs ({len(got.data)} vs {len(expected)} bytes)")
    check(got.sender == "peer", f"sender {got.sender!r}")
    if kind == "bytes":
        check(got.name == "blob.bin", f"byte stream name {got.name!r}")


def _receive_scenario(kind: str, form: str, rule: str) -> None:
    async def run(ctx: Context) -> None:
        await _receive(ctx, kind, form)

    run.__doc__ = (
        f"The client reads a {kind} stream that lkproto sends in the {form.replace('_', '-')} "
        f"form: {rule} The content, sender and name arrive intact (PROTOCOL-MAP §5)."
    )
    scenario(f"streams.{kind}.receive.{form}", needs={"streams"})(run)


_RECEIVE_RULES = {
    "classic": "header, 15 000-byte chunks (text cut on UTF-8 boundaries) and a trailer.",
    "single_packet": "the whole payload in ``Header.inline_content`` (data streams v2, only "
    "because the client advertises client_protocol >= 2).",
    "compressed": "DEFLATE_RAW content (only because the client advertises "
    "CAP_COMPRESSION_DEFLATE_RAW).",
}
for _kind in ("text", "bytes"):
    for _form_name, _rule in _RECEIVE_RULES.items():
        _receive_scenario(_kind, _form_name, _rule)


# -- the client sends, the peer receives -------------------------------------------------------


async def _send(ctx: Context, kind: str, form: str) -> None:
    tap = WireTap()
    level = 0 if form == "classic" else None
    client, peer = await ctx.pair(peer_args={"trace": tap, "client_protocol": level})
    got_level, caps = advertised(peer, "client")
    if form == "single_packet" and got_level < 2:
        raise Unsupported(level_reason(got_level, 2) + "; it may not inline")
    if form == "compressed" and _DEFLATE_CAP not in caps:
        raise Unsupported(capability_reason("CAP_COMPRESSION_DEFLATE_RAW"))
    topic = f"{kind}-{form}"
    await (peer.watch_text(topic) if kind == "text" else peer.watch_bytes(topic))
    payload: bytes
    if kind == "text":
        text = {"classic": _BIG_TEXT, "single_packet": _SMALL_TEXT}.get(form, _COMPRESSIBLE_TEXT)
        payload = text.encode()
        await ctx.bounded(
            client.send_text(text, topic=topic, attributes={"k": "v"}), "client send_text"
        )
    else:
        payload = (
            os.urandom(50_000)
            if form == "classic"
            else os.urandom(3_000)
            if form == "single_packet"
            else _COMPRESSIBLE_TEXT.encode()
        )
        await ctx.bounded(client.send_bytes(payload, topic=topic, name="up.bin"), "send_bytes")
    got = await _wait_stream(ctx, peer, topic)
    check(got.error is None, f"lkproto could not read the client's stream: {got.error}")
    check(got.data == payload, f"content differs ({len(got.data)} vs {len(payload)} bytes)")
    if kind == "text":
        check(got.attributes.get("k") == "v", f"attributes {got.attributes}")
    else:
        check(got.name == "up.bin", f"name {got.name!r}")
    sent_form = _form(tap.packets, topic)
    header = _headers(tap.packets, topic)[0]
    check(header.total_length == len(payload), f"total_length {header.total_length}")
    if form == "classic":
        check(sent_form == "classic", f"client sent {sent_form} to a client_protocol=0 peer")
        chunks = _chunks(tap.packets, header.stream_id)
        check(
            [c.chunk_index for c in chunks] == list(range(len(chunks))),
            "chunk indexes not 0..n-1",
        )
        check(all(len(c.content) <= _CHUNK for c in chunks), "a chunk exceeds 15 000 bytes")
        if kind == "text":
            for c in chunks:
                try:
                    c.content.decode()
                except UnicodeDecodeError:
                    raise AssertionError("a text chunk is not decodable UTF-8 on its own") from None
        trailers = _trailers(tap.packets, header.stream_id)
        check(len(trailers) == 1 and not trailers[0].reason, "missing or abnormal trailer")
    elif form == "single_packet":
        if sent_form != "single_packet":
            raise Unsupported(f"client sent {sent_form} (inline content is optional)")
    elif "compressed" not in sent_form:
        raise Unsupported(f"client sent {sent_form} (compression is optional)")


def _send_scenario(kind: str, form: str, rule: str) -> None:
    async def run(ctx: Context) -> None:
        await _send(ctx, kind, form)

    run.__doc__ = (
        f"The client sends a {kind} stream that lkproto reads; {rule} (PROTOCOL-MAP §5 sender "
        "rules, §15)."
    )
    scenario(f"streams.{kind}.send.{form}", needs={"streams"})(run)


_SEND_RULES = {
    "classic": "towards a client_protocol=0 peer it must use the classic form: header with "
    "total_length, chunks indexed 0..n-1 of at most 15 000 bytes (each text chunk valid UTF-8 "
    "alone) and an empty-reason trailer",
    "single_packet": "towards a client_protocol=2 peer a small payload may ride in "
    "inline_content (checked when the client uses it)",
    "compressed": "towards a DEFLATE_RAW-capable peer a compressible payload may be "
    "compressed (checked when the client uses it; lkproto inflates it)",
}
for _kind in ("text", "bytes"):
    for _form_name, _rule in _SEND_RULES.items():
        _send_scenario(_kind, _form_name, _rule)


# -- malformed streams injected by lkproto -----------------------------------------------------


async def _inject(
    ctx: Context,
    peer: PeerClient,
    topic: str,
    *,
    chunks: list[tuple[int, bytes]],
    total: int,
    reason: str = "",
) -> None:
    stream_id = str(uuid.uuid4())
    dest = ["client"]
    header = pb.DataStream.Header(
        stream_id=stream_id,
        timestamp=int(time.time() * 1000),
        topic=topic,
        mime_type="text/plain",
        total_length=total,
        text_header=pb.DataStream.TextHeader(operation_type=pb.DataStream.CREATE),
    )
    packets = [pb.DataPacket(destination_identities=dest, stream_header=header)]
    packets += [
        pb.DataPacket(
            destination_identities=dest,
            stream_chunk=pb.DataStream.Chunk(stream_id=stream_id, chunk_index=i, content=c),
        )
        for i, c in chunks
    ]
    packets.append(
        pb.DataPacket(
            destination_identities=dest,
            stream_trailer=pb.DataStream.Trailer(stream_id=stream_id, reason=reason),
        )
    )
    for packet in packets:
        await ctx.bounded(peer.room.engine.send_data(packet, reliable=True), "inject packet")


async def _rejected(
    ctx: Context,
    chunks: list[tuple[int, bytes]],
    total: int,
    reason: str = "",
    dedup_ok: bytes | None = None,
) -> None:
    client, peer = await ctx.pair()
    topic = "bad"
    await client.watch_text(topic)
    await _inject(ctx, peer, topic, chunks=chunks, total=total, reason=reason)
    got = await _wait_stream(ctx, client, topic)
    if got.error is None and dedup_ok is not None and got.data == dedup_ok:
        return  # the duplicate was dropped and the intact content delivered
    check(
        got.error is not None,
        f"the reader accepted the malformed stream: {len(got.data)} bytes {got.data[:12]!r}…"
        f"{got.data[-12:]!r}",
    )


@scenario("streams.reject.gap", needs={"streams", "stream_errors"})
async def reject_gap(ctx: Context) -> None:
    """Chunks 0 and 2 then the trailer, ``total_length`` announcing three chunks: the reader
    must fail (gap / Incomplete), not return partial text (PROTOCOL-MAP §5 receiver rules)."""
    await _rejected(ctx, [(0, b"A" * 100), (2, b"C" * 100)], 300)


@scenario("streams.reject.duplicate_chunk", needs={"streams", "stream_errors"})
async def reject_duplicate(ctx: Context) -> None:
    """Chunk 0 twice, then chunk 1 and the trailer, ``total_length`` = two chunks: the reader
    must fail (duplicate / LengthExceeded) or drop the duplicate and deliver the intact text;
    returning the doubled text is the violation (PROTOCOL-MAP §5 receiver rules: ``total_length``
    is enforced, duplicates (index <= last) are dropped)."""
    await _rejected(
        ctx,
        [(0, b"A" * 100), (0, b"A" * 100), (1, b"B" * 100)],
        200,
        dedup_ok=b"A" * 100 + b"B" * 100,
    )


@scenario("streams.reject.out_of_order", needs={"streams", "stream_errors"})
async def reject_reorder(ctx: Context) -> None:
    """Chunk 1 before chunk 0 (right ``total_length``): chunks must arrive with indexes 0, 1, 2,
    …, so the reader must fail rather than return the text misordered (PROTOCOL-MAP §5: chunks
    are consumed in arrival order on an ordered channel; an index out of sequence means a lost or
    reordered chunk)."""
    await _rejected(ctx, [(1, b"B" * 100), (0, b"A" * 100)], 200)


@scenario("streams.reject.abnormal_trailer", needs={"streams", "stream_errors"})
async def reject_abnormal(ctx: Context) -> None:
    """A trailer with a non-empty ``reason`` ends the stream abnormally: the reader fails
    (AbnormalEnd) (PROTOCOL-MAP §5 receiver rules)."""
    await _rejected(ctx, [(0, b"A" * 100)], 100, reason="sender gave up")
