"""AudioReorderBuffer (lkproto.core.jitter): order restored, a lost packet skipped, no backlog."""

from __future__ import annotations

import random

import pytest

from lkproto.core.jitter import AUDIO_REORDER_DEPTH, AudioReorderBuffer
from lkproto.errors import LocalProtocolError


def feed(buffer: AudioReorderBuffer[int], sequences: list[int]) -> list[int]:
    """Push each sequence (the packet is its own number); what left, in order."""
    out = []
    for seq in sequences:
        left = buffer.push(seq, seq)
        if left is not None:
            out.append(left)
    return out


def test_in_order_packets_leave_depth_packets_later() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(4)
    assert feed(b, [100, 101, 102, 103]) == []
    assert b.held == 4
    assert feed(b, [104]) == [100]
    assert feed(b, list(range(105, 120))) == list(range(101, 116))
    assert (b.held, b.skipped, b.late, b.duplicates) == (4, 0, 0, 0)


def test_a_lost_packet_is_skipped_not_waited_for() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(4)
    arrived = [s for s in range(0, 40) if s not in (7, 20, 21)]
    out = feed(b, arrived)
    # Everything that arrived leaves in order, but the last `depth` still held.
    assert out == arrived[:-4]
    assert b.skipped == 3


def test_reordering_within_the_depth_is_undone() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(4)
    arrived = [0, 1, 3, 2, 4, 7, 5, 6, 8, 9, 10, 11, 12]
    assert feed(b, arrived) == list(range(0, 9))
    assert b.skipped == 0


def test_a_packet_later_than_the_depth_is_dropped_as_late() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(2)
    assert feed(b, [0, 1, 3, 4, 5]) == [0, 1, 3]  # 2 passed over when 5 arrived
    assert feed(b, [2]) == []
    assert (b.skipped, b.late) == (1, 1)


def test_duplicates_are_dropped() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(3)
    assert feed(b, [0, 1, 1, 2, 3, 3, 0, 4]) == [0, 1]
    assert (b.duplicates, b.late) == (2, 1)


def test_sequence_numbers_wrap() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(4)
    arrived = [65530 + i for i in range(6)] + list(range(0, 10))
    del arrived[7]  # 1 is lost, across the wrap
    out = feed(b, arrived)
    assert out == arrived[:-4]
    assert b.skipped == 1


def test_a_restarted_sequence_space_starts_again() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(2)
    assert feed(b, list(range(1000, 1010))) == list(range(1000, 1008))
    assert feed(b, [5, 6, 7, 8]) == [5, 6]
    assert b.restarts == 1


def test_one_packet_in_is_at_most_one_out_and_memory_is_bounded() -> None:
    rng = random.Random(7)
    b: AudioReorderBuffer[int] = AudioReorderBuffer()
    sent = 20_000
    arrived = [s % 65536 for s in range(sent) if rng.random() >= 0.2]
    out = feed(b, arrived)
    assert b.held == AUDIO_REORDER_DEPTH
    assert out == arrived[:-AUDIO_REORDER_DEPTH]  # everything that arrived, none lost to a stall
    # Skipped: every number up to the last one out that never arrived.
    assert b.skipped == (out[-1] - arrived[0] + 1) - len(out)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "4"])
def test_bad_depth(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        AudioReorderBuffer(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 65536])
def test_bad_sequence(bad: int) -> None:
    with pytest.raises(LocalProtocolError):
        AudioReorderBuffer[int]().push(bad, 0)


def test_a_packet_reordered_ahead_of_the_first_is_put_before_it() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(2)
    assert feed(b, [11, 10, 12, 13]) == [10, 11]
    assert b.late == 0


def test_drain_hands_out_the_rest_in_order_and_continues_after_it() -> None:
    b: AudioReorderBuffer[int] = AudioReorderBuffer(4)
    assert feed(b, [0, 1, 3, 2, 6]) == [0]
    assert b.drain() == [1, 2, 3, 6]
    assert b.skipped == 2  # 4 and 5
    assert feed(b, [5, 7, 8]) == []  # 5 is late; 7 and 8 are held
    assert b.late == 1
