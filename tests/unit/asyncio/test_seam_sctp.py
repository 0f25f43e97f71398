"""The seam's SCTP acknowledgement count (issue 15), run against aiortc's real chunking and SACKs.

Chunks are made by aiortc's own ``RTCSctpTransport._send`` (fragmentation, flags, TSNs) and
acknowledged by its own ``_receive_sack_chunk`` (cumulative TSN and gap blocks), so a release
that reworks either fails here. Only the wire is missing: ``_transmit`` is replaced on the
instance by one that moves the outbound chunks to the sent queue as a transmission would.
Every test runs on a stock association (the count walks aiortc's queues) and on one tuned by
``tune_sctp`` (the count is kept as chunks are queued and acknowledged; chunks are then made by
the tuned association's own queueing, as ``RTCDataChannel.send`` would).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiortc
import aiortc.rtcsctptransport as sctp
import pytest

from lkproto.asyncio import _seam
from lkproto.errors import LkError

_RELIABLE = 1
_OTHER = 3
_PPID_BINARY = 53
_MAX = sctp.USERDATA_MAX_LENGTH


@pytest.fixture(params=[False, True], ids=["stock", "tuned"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[aiortc.RTCSctpTransport]:
    pc = aiortc.RTCPeerConnection()
    pc.createDataChannel("x")
    assert pc.sctp is not None
    if request.param:
        _seam.tune_sctp(pc.sctp)
    try:
        yield pc.sctp
    finally:
        await pc.close()


async def _queue(transport: aiortc.RTCSctpTransport, *messages: tuple[int, int]) -> list[int]:
    """Chunk ``(stream, size)`` messages with aiortc's ``_send``; return each one's first TSN."""

    async def no_wire() -> None:
        pass

    transport._transmit = no_wire  # type: ignore[method-assign]
    tuned = getattr(transport, "_lkproto_tuned", None)
    firsts = []
    for stream, size in messages:
        firsts.append(transport._local_tsn)
        if tuned is None:
            await transport._send(stream, _PPID_BINARY, b"m" * size)
        else:
            tuned._enqueue(stream, _PPID_BINARY, b"m" * size, None, None, ordered=True)
    return firsts


def _transmit_all(transport: aiortc.RTCSctpTransport) -> None:
    while transport._outbound_queue:
        transport._sent_queue.append(transport._outbound_queue.popleft())


async def _sack(
    transport: aiortc.RTCSctpTransport, cumulative: int, *gaps: tuple[int, int]
) -> None:
    chunk = sctp.SackChunk()
    chunk.cumulative_tsn = cumulative % (1 << 32)
    chunk.gaps = list(gaps)
    await transport._receive_sack_chunk(chunk)


async def test_nothing_sent_counts_every_message_of_the_stream(
    transport: aiortc.RTCSctpTransport,
) -> None:
    await _queue(transport, (_RELIABLE, 3000), (_OTHER, 10), (_RELIABLE, 100))
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 3100
    assert _seam.sctp_unacknowledged_bytes(transport, _OTHER) == 10
    _transmit_all(transport)
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 3100


async def test_cumulatively_acknowledged_messages_are_not_counted(
    transport: aiortc.RTCSctpTransport,
) -> None:
    _first, second = await _queue(transport, (_RELIABLE, 3000), (_RELIABLE, 100))
    _transmit_all(transport)
    await _sack(transport, second - 1)  # the whole first message
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 100
    await _sack(transport, second)
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 0


async def test_a_partly_acknowledged_message_counts_the_fragments_still_held(
    transport: aiortc.RTCSctpTransport,
) -> None:
    first, _second = await _queue(transport, (_RELIABLE, 3000), (_RELIABLE, 100))
    _transmit_all(transport)
    # First fragment cumulatively acknowledged, the third and the next message by a gap block:
    # the second fragment is missing, so neither message was delivered (ordered stream).
    await _sack(transport, first, (2, 3))
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 3000 - _MAX + 100


async def test_a_complete_message_behind_another_streams_hole_counts_as_delivered(
    transport: aiortc.RTCSctpTransport,
) -> None:
    other, _first, _second = await _queue(
        transport, (_OTHER, 10), (_RELIABLE, 3000), (_RELIABLE, 100)
    )
    _transmit_all(transport)
    # The other stream's chunk is missing; the first reliable message arrived complete (gap
    # block over its three fragments), the second did not arrive.
    await _sack(transport, other - 1, (2, 4))
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 100
    assert _seam.sctp_unacknowledged_bytes(transport, _OTHER) == 10


@pytest.mark.parametrize("tuned", [False, True], ids=["stock", "tuned"])
async def test_the_count_survives_closing_the_association(tuned: bool) -> None:
    pc = aiortc.RTCPeerConnection()
    pc.createDataChannel("x")
    transport = pc.sctp
    assert transport is not None
    if tuned:
        _seam.tune_sctp(transport)
    await _queue(transport, (_RELIABLE, 500))
    await pc.close()
    assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 500


def test_missing_internals_raise() -> None:
    class NotAnAssociation:
        pass

    with pytest.raises(LkError, match="_sent_queue"):
        _seam.sctp_unacknowledged_bytes(NotAnAssociation(), _RELIABLE)  # type: ignore[arg-type]


async def test_the_tuned_count_forgets_chunks_once_acknowledged() -> None:
    pc = aiortc.RTCPeerConnection()
    pc.createDataChannel("x")
    transport = pc.sctp
    assert transport is not None
    _seam.tune_sctp(transport)
    try:
        _first, second = await _queue(transport, (_RELIABLE, 3000), (_RELIABLE, 100))
        _transmit_all(transport)
        tuned = transport._lkproto_tuned  # type: ignore[attr-defined]
        assert len(tuned._held[_RELIABLE]) == 4  # three fragments and one
        # The SACK alone releases them: nothing keeps acknowledged chunks until the next ask.
        await _sack(transport, second)
        assert len(tuned._held[_RELIABLE]) == 0
        assert _seam.sctp_unacknowledged_bytes(transport, _RELIABLE) == 0
    finally:
        await pc.close()
