"""AudioReorderBuffer properties over any arrival order with loss, duplication and reordering.

Whatever arrives: packets leave in strictly increasing (extended) sequence order, each at most
once, only packets that arrived leave, one packet in lets at most one out, at most ``depth`` are
held, and every packet that arrives before more than ``depth`` later-numbered ones is delivered
(by the final :meth:`~AudioReorderBuffer.drain` if it is still held).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto.core.jitter import AudioReorderBuffer

SETTINGS = settings(max_examples=300, deadline=None)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    depth = draw(st.integers(1, 8))
    start = draw(st.integers(0, 65535))
    count = draw(st.integers(0, 200))
    order: list[tuple[float, int]] = []
    for i in range(count):
        if draw(st.booleans()) and draw(st.integers(0, 9)) < 2:
            continue  # lost
        jitter = draw(st.integers(0, depth + 2))  # displaced up to a little past the depth
        order.append((i + jitter + 0.5 * draw(st.integers(0, 1)), i))
        if draw(st.integers(0, 19)) == 0:
            order.append((i + draw(st.integers(0, 3)) + 0.25, i))  # duplicated
    order.sort()
    return depth, start, [i for _, i in order]


@SETTINGS
@given(arrivals())
def test_order_once_bounded(case: tuple[int, int, list[int]]) -> None:
    depth, start, indexes = case
    buffer: AudioReorderBuffer[int] = AudioReorderBuffer(depth)
    out: list[int] = []
    for index in indexes:
        before = len(out)
        left = buffer.push((start + index) % 65536, index)
        if left is not None:
            out.append(left)
        assert len(out) - before <= 1
        assert buffer.held <= depth
    assert out == sorted(set(out))  # strictly increasing: in order, never twice
    assert set(out) <= set(indexes)
    # A packet is delivered (now or by the final drain) if at most `depth` distinct packets with
    # higher numbers arrived before it: its place cannot have been passed yet.
    seen: list[int] = []
    expected: set[int] = set()
    for index in indexes:
        if index not in seen and sum(1 for s in set(seen) if s > index) <= depth:
            expected.add(index)
        seen.append(index)
    drained = buffer.drain()
    assert buffer.held == 0
    everything = out + drained
    assert everything == sorted(set(everything))
    assert expected <= set(everything)
