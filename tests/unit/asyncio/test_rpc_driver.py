"""RpcDriver over RPC v2: how requests and responses are framed, and the caller's deadline timer.

Two drivers are wired through an engine stand-in that forwards each sent packet to the other
side on the next loop turn, stamped with the sender's identity as the server would: stream
packets to the other side's :class:`~lkproto.asyncio.streams.StreamDriver` (whose internal-topic
hook is the driver's ``on_stream``), the rest to its ``on_packet``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import pytest

from lkproto.asyncio.rpc import RpcDriver, RpcInvocationData
from lkproto.asyncio.streams import StreamDriver
from lkproto.core.rpc import RpcError, RpcErrorCode
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

BOUND_S = 5.0
"""Upper bound on any await here; a correct driver finishes far sooner."""


class _Roster:
    def __init__(self) -> None:
        self.remotes: dict[str, pb.ParticipantInfo] = {}


class _Wire:
    """One side's engine stand-in; ``sent`` keeps every packet it sent, in order."""

    join_response = None
    client_protocol = 2

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.roster = _Roster()
        self.sent: list[pb.DataPacket] = []
        self.peer: _Side | None = None

    @property
    def kinds(self) -> list[str]:
        return [str(packet.WhichOneof("value")) for packet in self.sent]

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        assert reliable
        peer = self.peer
        assert peer is not None
        sent = pb.DataPacket()
        sent.CopyFrom(packet)
        sent.participant_identity = self.identity
        self.sent.append(sent)
        loop = asyncio.get_running_loop()
        if str(sent.WhichOneof("value")).startswith("stream_"):
            loop.call_soon(peer.streams.receive, sent)
        else:
            loop.call_soon(peer.rpc.on_packet, sent)


class _Side:
    def __init__(self, identity: str) -> None:
        self.wire = _Wire(identity)
        self.rpc = RpcDriver(cast("Engine", self.wire))
        self.streams = StreamDriver(
            handler_for=lambda _topic, _text: False,
            on_opened=lambda _stream: None,
            on_internal=self.rpc.on_stream,
        )

    def sees(self, other: _Side, client_protocol: int) -> None:
        identity = other.wire.identity
        self.wire.roster.remotes[identity] = pb.ParticipantInfo(
            identity=identity, client_protocol=client_protocol
        )
        self.wire.peer = other

    def close(self) -> None:
        self.rpc.close()
        self.streams.close()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[_Side, _Side]]:
    """Alice (caller) and Bob (callee), both seeing the other with ``client_protocol`` 2."""
    alice, bob = _Side("alice"), _Side("bob")
    alice.sees(bob, 2)
    bob.sees(alice, 2)
    bob.rpc.register("echo", lambda data: data.payload)
    yield alice, bob
    alice.close()
    bob.close()


async def _call(caller: _Side, payload: str, **kw: float) -> str:
    async with asyncio.timeout(BOUND_S):
        return await caller.rpc.perform("bob", "echo", payload, 15.0, **kw)


def _header(packet: pb.DataPacket) -> pb.DataStream.Header:
    assert packet.WhichOneof("value") == "stream_header"
    return packet.stream_header


async def test_small_call_to_a_data_streams_v2_peer_is_one_packet_each_way(
    pair: tuple[_Side, _Side],
) -> None:
    alice, bob = pair
    assert await _call(alice, "héllo") == "héllo"
    # PROTOCOL-MAP §5 inline streams, §6 v2 flow: request and response each one header packet
    # carrying the payload; the ack is a packet.
    assert alice.wire.kinds == ["stream_header"]
    assert bob.wire.kinds == ["rpc_ack", "stream_header"]
    request = _header(alice.wire.sent[0])
    assert request.topic == "lk.rpc_request"
    assert request.inline_content == "héllo".encode()
    assert request.total_length == len("héllo".encode())
    assert request.attributes["lk.rpc_request_method"] == "echo"
    assert request.attributes["lk.rpc_request_version"] == "2"
    assert request.compression == pb.DataStream.NONE
    response = _header(bob.wire.sent[1])
    assert response.topic == "lk.rpc_response"
    assert response.inline_content == "héllo".encode()
    assert response.attributes["lk.rpc_request_id"] == request.attributes["lk.rpc_request_id"]


async def test_call_to_an_rpc_v2_only_peer_uses_classic_streams(
    pair: tuple[_Side, _Side],
) -> None:
    alice, bob = pair
    alice.sees(bob, 1)  # RPC v2, but no data streams v2: no inline content for Bob
    assert await _call(alice, "héllo") == "héllo"
    assert alice.wire.kinds == ["stream_header", "stream_chunk", "stream_trailer"]
    assert not _header(alice.wire.sent[0]).HasField("inline_content")
    # Bob still sees Alice with client_protocol 2, so his answer is inline.
    assert bob.wire.kinds == ["rpc_ack", "stream_header"]


async def test_payload_over_one_chunk_is_chunked_even_for_a_v2_peer(
    pair: tuple[_Side, _Side],
) -> None:
    alice, bob = pair
    payload = "€" * 20_000  # 60 000 UTF-8 bytes: four chunks
    assert await _call(alice, payload) == payload
    kinds = alice.wire.kinds
    assert kinds[0] == "stream_header"
    assert kinds[-1] == "stream_trailer"
    assert kinds.count("stream_chunk") == 4
    assert bob.wire.kinds[0] == "rpc_ack"
    assert bob.wire.kinds.count("stream_chunk") == 4


async def test_sequential_calls_do_not_re_arm_the_caller_timer(
    pair: tuple[_Side, _Side],
) -> None:
    alice, _bob = pair
    await _call(alice, "1")
    armed = alice.rpc._timer.when
    assert armed is not None
    for payload in ("2", "3", "4"):
        assert await _call(alice, payload) == payload
        # Each call's deadlines are later than the armed one: nothing moves.
        assert alice.rpc._timer.when == armed


async def test_a_shorter_deadline_than_the_armed_one_still_fails_the_call(
    pair: tuple[_Side, _Side],
) -> None:
    alice, bob = pair
    await _call(alice, "warm")  # arms the timer 7 s ahead (the ack deadline)
    never = asyncio.Event()

    async def stall(_data: RpcInvocationData) -> str:
        await never.wait()
        return "late"

    bob.rpc.register("stall", stall)
    with pytest.raises(RpcError) as info:
        async with asyncio.timeout(BOUND_S):
            await alice.rpc.perform("bob", "stall", "x", 0.2)
    assert info.value.code == RpcErrorCode.RESPONSE_TIMEOUT


async def test_an_early_wake_up_fails_no_call_that_is_not_due(
    pair: tuple[_Side, _Side],
) -> None:
    alice, bob = pair
    # A call with a short ack allowance arms the timer 0.05 s ahead; it is answered at once.
    assert await _call(alice, "quick", max_round_trip_latency_s=0.05) == "quick"
    release = asyncio.Event()

    async def slow(data: RpcInvocationData) -> str:
        await release.wait()
        return data.payload

    bob.rpc.register("slow", slow)
    call = asyncio.ensure_future(alice.rpc.perform("bob", "slow", "kept", 15.0))
    await asyncio.sleep(0)  # the call starts
    armed = alice.rpc._timer.when
    deadline = alice.rpc._client.get_timer()
    assert armed is not None
    assert deadline is not None
    assert armed < deadline  # the early timer was kept, not moved to the call's deadline
    loop = asyncio.get_running_loop()
    await asyncio.sleep(armed - loop.time() + 0.05)  # the armed timer fires first
    assert not call.done()
    # It moved on to the call's own deadline (the response's by now: the ack came).
    assert alice.rpc._timer.when == alice.rpc._client.get_timer()
    release.set()
    async with asyncio.timeout(BOUND_S):
        assert await call == "kept"
