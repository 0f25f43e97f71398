"""Property: the tuned association's running count of unacknowledged bytes equals the full scan.

:func:`lkproto.asyncio._seam.sctp_unacknowledged_bytes` answers for a tuned association from a
per-stream record kept as chunks are queued and acknowledged (issue 18); for a stock one it walks
aiortc's sent and outbound queues. Over the lossy, duplicating, reordering in-memory link of
:mod:`tests._support.sctp_link`, with messages on two streams, the two answers must agree after
every send and every loop turn of the transfer, and reach zero once everything is acknowledged.
"""

from __future__ import annotations

import asyncio

import aiortc
import aiortc.rtcsctptransport as sctp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto.asyncio import _seam
from lkproto.testing import scaled
from tests._support.sctp_link import Impairment, sctp_pair, until

_CHUNK = sctp.USERDATA_MAX_LENGTH
sizes = st.one_of(
    st.integers(min_value=1, max_value=200),
    st.sampled_from([_CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 1]),
    st.integers(min_value=1, max_value=8_000),
)
impairments = st.builds(
    Impairment,
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.2]),
)


def _both(transport: aiortc.RTCSctpTransport, stream_id: int) -> tuple[int, int]:
    return (
        _seam.sctp_unacknowledged_bytes(transport, stream_id),
        _seam._scan_unacknowledged_bytes(transport, stream_id),
    )


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(st.tuples(st.booleans(), sizes), min_size=1, max_size=12),
    impairment=impairments,
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_running_count_equals_the_scan_throughout_a_lossy_transfer(
    messages: list[tuple[bool, int]], impairment: Impairment, seed: int
) -> None:
    async def run() -> list[tuple[int, int]]:
        async with sctp_pair(seed=seed) as pair:
            client = pair.client
            second = aiortc.RTCDataChannel(
                client,
                aiortc.RTCDataChannelParameters(label="y", negotiated=True, id=3, ordered=True),
            )
            aiortc.RTCDataChannel(
                pair.server,
                aiortc.RTCDataChannelParameters(label="y", negotiated=True, id=3, ordered=True),
            )
            pair.impair(impairment)
            streams = (1, 3)
            seen: list[tuple[int, int]] = []
            for on_second, size in messages:
                (second if on_second else pair.client_channel).send(b"x" * size)
                seen.extend(_both(client, s) for s in streams)
                await asyncio.sleep(0)
                seen.extend(_both(client, s) for s in streams)

            def drained() -> bool:
                seen.extend(_both(client, s) for s in streams)
                return all(_both(client, s) == (0, 0) for s in streams)

            await until(drained, scaled(60))
            return seen

    loop = asyncio.new_event_loop()
    try:
        seen = loop.run_until_complete(run())
    finally:
        loop.close()
    mismatches = [pair for pair in seen if pair[0] != pair[1]]
    assert not mismatches, mismatches[:5]
    assert any(fast > 0 for fast, _ in seen)  # the transfer was observed in flight
