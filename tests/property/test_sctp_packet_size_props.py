"""Property: any SCTP packet size the seam allows delivers every message exactly once, in order.

Two real aiortc associations over the in-memory link of :mod:`tests._support.sctp_link`; the
sender is tuned and sends packets of a size hypothesis picks between aiortc's 1,189 bytes and
:data:`lkproto.asyncio._seam.SCTP_MAX_PACKET_BYTES` (``set_sctp_packet_bytes``), against a tuned
or a stock receiver, with messages sized across that size's fragment edges, loss, duplication
and reordering. The receiver gets the sent list, and no packet is larger than the chosen size.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.asyncio import _seam
from lkproto.testing import scaled
from tests._support.sctp_link import Impairment, sctp_pair, until

impairments = st.builds(
    Impairment,
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.1]),
)


@st.composite
def sized_messages(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A packet size and message lengths around its chunk's edges."""
    packet = draw(
        st.integers(_seam.SCTP_DEFAULT_PACKET_BYTES, _seam.SCTP_MAX_PACKET_BYTES),
    )
    chunk = (packet - 28) // 4 * 4
    edges = st.sampled_from([chunk - 1, chunk, chunk + 1, 2 * chunk, 2 * chunk + 1])
    lengths = draw(
        st.lists(
            st.one_of(st.integers(1, 200), edges, st.integers(1, 20_000)), min_size=1, max_size=20
        )
    )
    return packet, lengths


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sized=sized_messages(),
    impairment=impairments,
    seed=st.integers(min_value=0, max_value=2**16),
    tune_server=st.booleans(),
)
def test_any_packet_size_delivers_the_sent_messages_once_in_order(
    sized: tuple[int, list[int]], impairment: Impairment, seed: int, tune_server: bool
) -> None:
    packet, lengths = sized
    messages = [bytes([i % 251]) * n for i, n in enumerate(lengths)]

    async def run() -> tuple[list[bytes], int]:
        async with sctp_pair(seed=seed, tune_server=tune_server) as pair:
            _seam.set_sctp_packet_bytes(pair.client, packet)
            pair.impair(impairment)
            for message in messages:
                pair.client_channel.send(message)
            await until(lambda: len(pair.received) >= len(messages), scaled(60))
            await asyncio.sleep(0.02)  # a late duplicate must not be delivered again
            return list(pair.received), max(len(p) for p in pair.client_link.sent)

    # A private loop, not asyncio.run: that would leave the thread without a current loop.
    loop = asyncio.new_event_loop()
    try:
        received, largest = loop.run_until_complete(run())
    finally:
        loop.close()
    assert received == messages
    assert largest <= packet
