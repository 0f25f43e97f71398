"""lkproto.asyncio.streams across full reconnects (issue 15): what a reader sees.

The rules are lkproto.core.streams' ("Full reconnect"); here the driver passes the room's
departures and recoveries to them and the public reader raises ``StreamError(RECONNECTED)``.
"""

from __future__ import annotations

import asyncio

import pytest

from lkproto import rtc
from lkproto.asyncio.streams import IncomingStream, StreamDriver
from lkproto.core import streams as cs
from lkproto.wire import pb

_BOUND_S = 5.0


def _packets(text: str, stream_id: str) -> list[pb.DataPacket]:
    data = text.encode()
    stream = cs.OutgoingTextStream(
        stream_id=stream_id, timestamp_ms=1, topic="t", total_length=len(data)
    )
    packets = [stream.open()]
    for i in range(0, len(data), 2):
        packets.extend(stream.write(data[i : i + 2]))
    packets.extend(stream.close())
    for packet in packets:
        packet.participant_identity = "bob"
    return packets


def _driver(
    reconnect_grace_s: float = cs.DEFAULT_RECONNECT_GRACE_S,
) -> tuple[StreamDriver, list[IncomingStream]]:
    opened: list[IncomingStream] = []
    drv = StreamDriver(
        handler_for=lambda t, _: True,
        on_opened=opened.append,
        reconnect_grace_s=reconnect_grace_s,
    )
    return drv, opened


async def test_sender_full_reconnect_with_a_lost_chunk_fails_the_reader() -> None:
    drv, opened = _driver()
    header, c0, _lost, c2, trailer = _packets("aabbcc", "s1")
    for p in (header, c0):
        drv.receive(p)
    drv.participant_left("bob", pb.DUPLICATE_IDENTITY)
    drv.receive(c2)
    drv.receive(trailer)  # of a failed stream: ignored
    reader = rtc.TextStreamReader(opened[0])
    async with asyncio.timeout(_BOUND_S):
        assert await reader.__anext__() == "aa"
        with pytest.raises(rtc.StreamError) as info:
            await reader.__anext__()
    assert info.value.kind is cs.StreamErrorKind.RECONNECTED
    drv.close()


async def test_sender_full_reconnect_with_its_resend_completes() -> None:
    drv, opened = _driver()
    header, c0, c1, c2, trailer = _packets("aabbcc", "s1")
    for p in (header, c0, c1):
        drv.receive(p)
    drv.participant_left("bob", pb.DUPLICATE_IDENTITY)
    for p in (c1, c2, trailer):  # c1 again: the sender's resend overlaps what we have
        drv.receive(p)
    async with asyncio.timeout(_BOUND_S):
        assert await rtc.TextStreamReader(opened[0]).read_all() == "aabbcc"
    drv.close()


async def test_our_full_reconnect_fails_a_silent_stream_within_the_grace() -> None:
    drv, opened = _driver(reconnect_grace_s=0.05)
    header, c0, *_ = _packets("aabbcc", "s1")
    drv.receive(header)
    drv.receive(c0)
    drv.reconnecting()
    drv.reconnected(full=True)
    reader = rtc.TextStreamReader(opened[0])
    async with asyncio.timeout(_BOUND_S):
        with pytest.raises(rtc.StreamError) as info:
            await reader.read_all()
    assert info.value.kind is cs.StreamErrorKind.RECONNECTED
    drv.close()


async def test_after_a_resume_the_stream_goes_on() -> None:
    drv, opened = _driver(reconnect_grace_s=0.05)
    header, c0, c1, c2, trailer = _packets("aabbcc", "s1")
    drv.receive(header)
    drv.receive(c0)
    drv.reconnecting()
    drv.reconnected(full=False)
    await asyncio.sleep(0.1)  # past the grace: it must not apply after a resume
    for p in (c1, c2, trailer):
        drv.receive(p)
    async with asyncio.timeout(_BOUND_S):
        assert await rtc.TextStreamReader(opened[0]).read_all() == "aabbcc"
    drv.close()
