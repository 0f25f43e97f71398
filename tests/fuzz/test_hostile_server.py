"""A hostile server (issue 15 item 5): mutated golden signal frames at a connected Room.

The in-memory :class:`~lkproto.testing.SignalPeer` (real aiortc peer connection on loopback) lets a
:class:`lkproto.rtc.Room` join, then :meth:`~lkproto.testing.signal_peer.SignalConnection.send_raw`
feeds it the server-to-client ``SignalResponse`` frames of the golden vectors (tests/vectors,
recorded from livekit-server v1.13.5), mutated: truncated, bytes flipped, the oneof tag swapped for
another member's (wrong oneof), a huge length prefix, every enum set to an unknown value, replayed
out of order, a second JoinResponse, text frames, and a flood of thousands of frames.

The invariant for every input (:func:`_bombard`):

* nothing escapes: the event loop's exception handler is never called (no task died with an
  exception nobody retrieved, no callback raised);
* nothing hangs: every await is bounded, and the client reads every frame it was sent (the
  transport backlog drains);
* the room ends in a documented state: still CONNECTED and answering (a metadata update is
  accepted by the server), or DISCONNECTED with its ``disconnected`` event; a ``reconnecting``
  is always followed by ``reconnected`` or ``disconnected``;
* after ``disconnect()`` the loop holds no more tasks than before the room existed.

The data-channel test sends the golden DataPackets, mutated the same ways, from the server's
peer connection; the room must still deliver afterwards.

The flood test also checks the client's memory (``tracemalloc``) stays bounded while it reads
5,000 frames.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.asyncio.peer import LOSSY_LABEL, RELIABLE_LABEL
from lkproto.errors import LkError
from lkproto.rtc import room as room_module
from lkproto.testing import SignalPeer, scaled
from lkproto.wire import pb

_VECTORS_DIR: Final = Path(__file__).resolve().parent.parent / "vectors"
_SETTLE_S: Final = 15.0
_FLOOD_FRAMES: Final = 5_000
_FLOOD_GROWTH_LIMIT_BYTES: Final = 2 * 1024 * 1024
"""How much more the process may hold once the flood was read (frames kept would be more)."""


def _golden_frames(prefix: str) -> list[bytes]:
    """Every golden vector whose type starts with ``prefix``, in recorded order."""
    frames: list[bytes] = []
    for path in sorted(_VECTORS_DIR.glob("*.json")):
        for vector in json.loads(path.read_text(encoding="utf-8")):
            if vector["type"].startswith(prefix):
                frames.append(bytes.fromhex(vector["hex"]))
    return frames


GOLDEN: Final = _golden_frames("SignalResponse.")
"""The server-to-client signal frames."""
GOLDEN_PACKETS: Final = _golden_frames("DataPacket.")
"""Data packets, both directions (a hostile server can forward anything on the channels)."""
_ONEOF_NUMBERS: Final = tuple(
    f.number for f in pb.SignalResponse.DESCRIPTOR.oneofs_by_name["message"].fields
)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _split_top(frame: bytes) -> tuple[int, int, int]:
    """(field number, offset of the length varint, offset of the body) of the frame's oneof.

    Every golden frame is one length-delimited field (a SignalResponse oneof member).
    """
    tag = 0
    shift = 0
    index = 0
    while True:
        byte = frame[index]
        tag |= (byte & 0x7F) << shift
        index += 1
        shift += 7
        if not byte & 0x80:
            break
    length_at = index
    while frame[index] & 0x80:
        index += 1
    return tag >> 3, length_at, index + 1


def wrong_oneof(frame: bytes, pick: int) -> bytes:
    """The frame's body under another oneof member's field number."""
    number, length_at, _ = _split_top(frame)
    others = [n for n in _ONEOF_NUMBERS if n != number]
    other = others[pick % len(others)]
    return _varint(other << 3 | 2) + frame[length_at:]


def huge_length(frame: bytes, pick: int) -> bytes:
    """The frame with its top-level length prefix replaced by a huge one."""
    number, _, body_at = _split_top(frame)
    huge = (2**31 - 1, 2**32 + 7, 2**63 - 1, 2**64 - 1, len(frame) * 1000)[pick % 5]
    return _varint(number << 3 | 2) + _varint(huge) + frame[body_at:]


def _unknown_enums(message: Any, value: int) -> None:
    for descriptor, field_value in message.ListFields():
        if descriptor.message_type is not None:
            if descriptor.is_repeated:
                if descriptor.message_type.GetOptions().map_entry:
                    continue
                for item in field_value:
                    _unknown_enums(item, value)
            else:
                _unknown_enums(field_value, value)
        elif descriptor.enum_type is not None and not descriptor.is_repeated:
            setattr(message, descriptor.name, value)
    for descriptor in message.DESCRIPTOR.fields:
        if descriptor.enum_type is not None and not descriptor.is_repeated:
            setattr(message, descriptor.name, value)


def unknown_enums(frame: bytes, pick: int, message_type: Any = pb.SignalResponse) -> bytes:
    """The frame decoded, every singular enum (set or not) given an unknown value, re-encoded."""
    message = message_type.FromString(frame)
    _unknown_enums(message, (77, 999, 2**31 - 1, -1)[pick % 4])
    return bytes(message.SerializeToString())


def truncated(frame: bytes, pick: int) -> bytes:
    """The first ``pick`` bytes, cut before the end."""
    return frame[: pick % len(frame)]


def flipped(frame: bytes, pick: int) -> bytes:
    """One byte inverted."""
    data = bytearray(frame)
    data[pick % len(data)] ^= 0xFF
    return bytes(data)


def verbatim(frame: bytes, pick: int) -> bytes:
    """The frame as recorded (replayed out of its order, or a second JoinResponse)."""
    del pick
    return frame


MUTATIONS: Final[dict[str, Callable[[bytes, int], bytes]]] = {
    "truncated": truncated,
    "flipped": flipped,
    "wrong_oneof": wrong_oneof,
    "huge_length": huge_length,
    "unknown_enums": unknown_enums,
    "verbatim": verbatim,
}


def test_the_mutations_change_what_they_say() -> None:
    join = GOLDEN[0]
    assert pb.SignalResponse.FromString(join).WhichOneof("message") == "join"
    for pick in range(len(_ONEOF_NUMBERS) - 1):
        mutated = wrong_oneof(join, pick)
        assert _split_top(mutated)[0] not in (_split_top(join)[0],)
        assert mutated.endswith(join[_split_top(join)[2] :])
    with pytest.raises(Exception, match=r"(?i)truncated|error parsing"):
        pb.SignalResponse.FromString(huge_length(join, 0))
    enums = pb.SignalResponse.FromString(unknown_enums(join, 1))
    assert enums.join.participant.state == 999
    assert len(truncated(join, 10)) == 10
    assert flipped(join, 3)[3] == join[3] ^ 0xFF


@dataclasses.dataclass(slots=True)
class _Watch:
    """What a bombarded room showed."""

    events: list[str] = dataclasses.field(default_factory=list)
    loop_errors: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> list[SignalPeer]:
    """Rooms built in the test join the in-memory peer appended to the returned list."""
    peers: list[SignalPeer] = []
    build = room_module._engine_options

    def with_peer(opts: Any) -> en.EngineOptions:
        return dataclasses.replace(
            build(opts), transport_factory=peers[-1].connect, ice_addresses=("127.0.0.1",)
        )

    monkeypatch.setattr(room_module, "_engine_options", with_peer)
    return peers


async def _drained(peer: SignalPeer) -> None:
    """Until the client read everything sent on the current connection (or it closed)."""
    while not peer.current.closed and peer.current.unread:  # noqa: ASYNC110 - a queue size, no event
        await asyncio.sleep(0.01)


async def _bombard(
    peers: list[SignalPeer],
    frames: list[bytes | str],
    *,
    pace: int = 1,
    memory: list[int] | None = None,
) -> _Watch:
    """Connect a room, send ``frames``, check the invariant; returns what was seen.

    ``memory``, when given (tracemalloc running), gets the traced size once connected and again
    once every frame was read.
    """
    loop = asyncio.get_running_loop()
    watch = _Watch()
    loop.set_exception_handler(lambda _loop, context: watch.loop_errors.append(str(context)))
    tasks_before = len(asyncio.all_tasks())
    peer = SignalPeer(identity="target")
    peers.append(peer)
    room = rtc.Room()
    for name in ("disconnected", "reconnecting", "reconnected"):
        room.on(name, lambda *_args, name=name: watch.events.append(name))
    try:
        async with asyncio.timeout(scaled(20)):
            await room.connect("ws://hostile.invalid", "token")
        if memory is not None:
            memory.append(tracemalloc.get_traced_memory()[0])
        async with asyncio.timeout(scaled(_SETTLE_S)):
            for index, frame in enumerate(frames):
                peer.current.send_raw(frame)
                if index % pace == 0:
                    await asyncio.sleep(0)
            await _drained(peer)
            if memory is not None:
                memory.append(tracemalloc.get_traced_memory()[0])
            await _settled(room, watch)
    finally:
        async with asyncio.timeout(scaled(10)):
            await room.disconnect()
            await peer.close()
            while len(asyncio.all_tasks()) > tasks_before:  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.01)
    assert watch.loop_errors == [], watch.loop_errors
    return watch


async def _settled(room: rtc.Room, watch: _Watch) -> None:
    """Until the room is answering again, or disconnected with its event (the caller bounds it)."""
    while True:
        if room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED:
            assert "disconnected" in watch.events
            return
        if room.connection_state == rtc.ConnectionState.CONN_CONNECTED:
            try:
                async with asyncio.timeout(scaled(2)):
                    await room.local_participant.set_metadata("still here")
            except (TimeoutError, LkError) as exc:
                if room.connection_state == rtc.ConnectionState.CONN_CONNECTED:
                    raise AssertionError(f"connected but not answering: {exc!r}") from exc
                continue
            if watch.events.count("reconnecting") <= watch.events.count("reconnected"):
                return
        await asyncio.sleep(0.05)


def _run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


_steps = st.lists(
    st.tuples(
        st.integers(0, len(GOLDEN) - 1),
        st.sampled_from(sorted(MUTATIONS)),
        st.integers(0, 2**16),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=_steps)
def test_mutated_golden_frames_end_in_a_documented_state(
    in_memory: list[SignalPeer], steps: list[tuple[int, str, int]]
) -> None:
    frames: list[bytes | str] = [MUTATIONS[kind](GOLDEN[i], pick) for i, kind, pick in steps]
    _run(lambda: _bombard(in_memory, frames))


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_every_golden_frame_under_each_mutation(in_memory: list[SignalPeer], kind: str) -> None:
    rng = random.Random(kind)
    frames: list[bytes | str] = [MUTATIONS[kind](frame, rng.randrange(2**16)) for frame in GOLDEN]
    _run(lambda: _bombard(in_memory, frames))


def test_a_second_join_response_and_shuffled_replays(in_memory: list[SignalPeer]) -> None:
    join = next(
        f for f in GOLDEN if pb.SignalResponse.FromString(f).WhichOneof("message") == "join"
    )
    shuffled = list(GOLDEN)
    random.Random(5).shuffle(shuffled)
    frames: list[bytes | str] = [join, join, *shuffled, join, "a text frame", ""]
    _run(lambda: _bombard(in_memory, frames))


def test_a_flood_is_read_with_bounded_memory(
    in_memory: list[SignalPeer], caplog: pytest.LogCaptureFixture
) -> None:
    kinds = {pb.SignalResponse.FromString(f).WhichOneof("message"): f for f in GOLDEN}
    # Frames a server may send any number of times: pongs, quality, speakers, room updates,
    # token refreshes; plus garbage the client must drop.
    menu = [kinds[k] for k in ("pong_resp", "connection_quality", "room_update", "refresh_token")]
    menu += [truncated(kinds["join"], 40), wrong_oneof(kinds["update"], 3)]
    frames: list[bytes | str] = [menu[i % len(menu)] for i in range(_FLOOD_FRAMES)]
    # pytest keeps every captured log record, and each malformed frame logs a warning: that
    # would be the test's memory, not the client's.
    caplog.set_level(logging.ERROR, logger="lkproto")
    memory: list[int] = []
    tracemalloc.start()
    try:
        _run(lambda: _bombard(in_memory, frames, pace=50, memory=memory))
    finally:
        tracemalloc.stop()
    connected, drained = memory
    assert drained - connected < _FLOOD_GROWTH_LIMIT_BYTES, (connected, drained)


_PACKET_MUTATIONS: Final[dict[str, Callable[[bytes, int], bytes]]] = {
    "truncated": truncated,
    "flipped": flipped,
    "unknown_enums": lambda frame, pick: unknown_enums(frame, pick, pb.DataPacket),
    "verbatim": verbatim,
}


@pytest.mark.parametrize("kind", sorted(_PACKET_MUTATIONS))
def test_mutated_golden_packets_on_the_data_channels(
    in_memory: list[SignalPeer], kind: str
) -> None:
    """The same invariant for the data channels: the server's peer connection sends the golden
    DataPackets mutated on ``_reliable`` and ``_lossy``; afterwards the room still delivers."""
    rng = random.Random(kind)
    packets = [_PACKET_MUTATIONS[kind](p, rng.randrange(2**16)) for p in GOLDEN_PACKETS]
    rng.shuffle(packets)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(str(context)))
        peer = SignalPeer(identity="target")
        in_memory.append(peer)
        room = rtc.Room()
        try:
            async with asyncio.timeout(scaled(20)):
                await room.connect("ws://hostile.invalid", "token")
                await room.local_participant.publish_data(b"first", topic="probe")
                await peer.wait_until(lambda: len(peer.data_packets) >= 1)
                server = peer.peer_connection
                assert server is not None
                for index, packet in enumerate(packets):
                    server.send(RELIABLE_LABEL if index % 2 else LOSSY_LABEL, packet)
                    await asyncio.sleep(0)
                await room.local_participant.publish_data(b"second", topic="probe")
                await peer.wait_until(
                    lambda: any(p.user.payload == b"second" for _, p in peer.data_packets)
                )
            assert room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        finally:
            async with asyncio.timeout(scaled(10)):
                await room.disconnect()
                await peer.close()
        assert errors == [], errors

    _run(go)
