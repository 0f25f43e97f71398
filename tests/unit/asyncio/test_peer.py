"""Two lkproto PeerConnections in one process, connected over 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiortc
import pytest

from lkproto import errors
from lkproto.asyncio.peer import (
    LOSSY_LABEL,
    RELIABLE_LABEL,
    CandidatePair,
    IceServer,
    PeerConnection,
    PeerOptions,
    PeerState,
)
from tests.conftest import scaled

# Two aiortc peers: an aiortc answerer cannot take a max-bundle offer (PeerOptions.max_bundle).
LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)


@dataclass
class Inbox:
    """Collects (label, data) and wakes waiters."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, label: str, data: bytes) -> None:
        self.items.append((label, data))
        self.changed.set()

    async def wait_for(self, count: int) -> list[tuple[str, bytes]]:
        async def loop() -> None:
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), scaled(10))
        return self.items


@dataclass
class Pair:
    offerer: PeerConnection
    answerer: PeerConnection
    offerer_inbox: Inbox
    answerer_inbox: Inbox


async def _connect(offerer: PeerConnection, answerer: PeerConnection) -> None:
    await offerer.create_data_channels()
    offer = await asyncio.wait_for(offerer.create_offer(), scaled(10))
    answer = await asyncio.wait_for(answerer.apply_offer(offer), scaled(10))
    await asyncio.wait_for(offerer.apply_answer(answer), scaled(10))
    for pc in (offerer, answerer):
        await pc.wait_connected(scaled(10))
        await pc.wait_channels_open(scaled(10))


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a_inbox, b_inbox = Inbox(), Inbox()
    a = PeerConnection(LOOPBACK, on_data=a_inbox)
    b = PeerConnection(LOOPBACK)
    b.on_data = b_inbox  # the callback may also be set after construction
    try:
        await _connect(a, b)
        yield Pair(a, b, a_inbox, b_inbox)
    finally:
        await a.close()
        await b.close()


def _strip_candidates(sdp: str) -> tuple[str, list[str]]:
    """Remove the candidate lines from an SDP, returning them as trickle JSON (sdpMid "0")."""
    lines = sdp.splitlines()
    mids = [line.removeprefix("a=mid:") for line in lines if line.startswith("a=mid:")]
    kept = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    trickles = [
        json.dumps({"candidate": line[2:], "sdpMid": mids[0], "sdpMLineIndex": 0})
        for line in lines
        if line.startswith("a=candidate:")
    ]
    return "\r\n".join(kept) + "\r\n", trickles


async def test_bytes_flow_both_ways_on_both_channels(pair: Pair) -> None:
    a, b = pair.offerer, pair.answerer
    assert a.channels_open
    assert b.channels_open
    assert a.connection_state is b.connection_state is PeerState.CONNECTED
    # The answerer adopted the channels the offerer opened in-band (the dual-PC subscriber case).
    assert set(b.channel_ids()) == {RELIABLE_LABEL, LOSSY_LABEL}
    assert a.channel_ids() == b.channel_ids()

    a.send(RELIABLE_LABEL, b"a-reliable")
    a.send(LOSSY_LABEL, bytearray(b"a-lossy"))
    b.send(RELIABLE_LABEL, b"b-reliable")
    b.send(LOSSY_LABEL, memoryview(b"b-lossy"))
    b.send(RELIABLE_LABEL, b"")

    assert sorted(await pair.answerer_inbox.wait_for(2)) == [
        (LOSSY_LABEL, b"a-lossy"),
        (RELIABLE_LABEL, b"a-reliable"),
    ]
    assert sorted(await pair.offerer_inbox.wait_for(3)) == [
        (LOSSY_LABEL, b"b-lossy"),
        (RELIABLE_LABEL, b""),
        (RELIABLE_LABEL, b"b-reliable"),
    ]


async def test_ice_runs_on_loopback_with_offerer_controlling(pair: Pair) -> None:
    a, b = pair.offerer, pair.answerer
    assert (a.ice_role, b.ice_role) == ("controlling", "controlled")
    pa, pb = a.selected_candidate_pair(), b.selected_candidate_pair()
    assert isinstance(pa, CandidatePair)
    assert isinstance(pb, CandidatePair)
    assert (pa.local_address, pa.remote_address) == ("127.0.0.1", "127.0.0.1")
    assert (pa.local_port, pa.remote_port) == (pb.remote_port, pb.local_port)
    assert pa.protocol == "udp"
    assert a.local_description is not None
    assert b.remote_description == a.local_description


async def test_reliable_order_and_buffered_amount_wait(pair: Pair) -> None:
    a = pair.offerer
    chunk = 15_000
    count = 120  # ~1.8 MB: SCTP needs many round trips, so most of it stays queued at first
    for i in range(count):
        a.send(RELIABLE_LABEL, i.to_bytes(4, "big") * (chunk // 4))
    queued = a.buffered_amount(RELIABLE_LABEL)
    assert queued > 10 * chunk
    assert a.buffered_amount(LOSSY_LABEL) == 0

    threshold = 4 * chunk
    await asyncio.wait_for(a.wait_buffered_below(RELIABLE_LABEL, threshold), scaled(20))
    assert a.buffered_amount(RELIABLE_LABEL) <= threshold
    # Two waiters with different thresholds are both released, in turn.
    await asyncio.wait_for(
        asyncio.gather(
            a.wait_buffered_below(RELIABLE_LABEL, chunk),
            a.wait_buffered_below(RELIABLE_LABEL, 0),
        ),
        scaled(20),
    )
    assert a.buffered_amount(RELIABLE_LABEL) == 0
    await a.wait_buffered_below(RELIABLE_LABEL, 0)  # already there: returns at once

    received = await pair.answerer_inbox.wait_for(count)
    assert [int.from_bytes(data[:4], "big") for _, data in received] == list(range(count))
    assert all(len(data) == chunk for _, data in received)


async def test_trickled_candidates_before_the_answer_are_buffered() -> None:
    a, b = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    try:
        await a.create_data_channels()
        offer = await a.create_offer()
        answer, trickles = _strip_candidates(await b.apply_offer(offer))
        assert trickles
        # The server trickles candidates one step late and may race its own answer (§2 Trickle).
        for init in trickles:
            await a.add_ice_candidate(init)
        await a.add_ice_candidate(json.dumps({"candidate": "", "sdpMid": "0"}))
        assert a.connection_state is PeerState.NEW
        await a.apply_answer(answer)
        await a.end_of_candidates()  # a second end-of-candidates is harmless
        await a.wait_connected(scaled(10))
        await a.wait_channels_open(scaled(10))
        await b.wait_channels_open(scaled(10))
    finally:
        await a.close()
        await b.close()


async def test_state_callback_and_close_leave_no_tasks() -> None:
    before = asyncio.all_tasks()
    states: list[PeerState] = []
    a = PeerConnection(LOOPBACK, on_state_change=states.append)
    b = PeerConnection(LOOPBACK)
    await _connect(a, b)
    a.send(RELIABLE_LABEL, b"x" * 50_000)
    pending = asyncio.create_task(a.wait_buffered_below(RELIABLE_LABEL, 0))
    await asyncio.sleep(0)
    await a.close()
    await a.close()  # idempotent
    await b.close()
    assert a.connection_state is b.connection_state is PeerState.CLOSED
    assert states == [PeerState.CONNECTING, PeerState.CONNECTED, PeerState.CLOSED]
    if not pending.done() or pending.exception() is not None:
        with pytest.raises(errors.ConnectError):
            await pending
    assert asyncio.all_tasks() - before == set()
    assert not a.channels_open


async def test_close_before_connecting_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    async with PeerConnection(LOOPBACK) as a:
        await a.create_data_channels()
        await a.create_offer()
    assert a.connection_state is PeerState.CLOSED
    assert asyncio.all_tasks() - before == set()


async def test_peer_closing_closes_the_other_side(pair: Pair) -> None:
    ended = asyncio.Event()
    pair.answerer.on_state_change = lambda state: ended.set() if state is PeerState.CLOSED else None
    await pair.offerer.close()
    # aiortc closes a connection whose DTLS peer sent close_notify (no ICE timeout involved).
    await asyncio.wait_for(ended.wait(), scaled(10))
    assert not pair.answerer.channels_open
    with pytest.raises(errors.ConnectError):
        await pair.answerer.wait_channels_open(scaled(1))
    with pytest.raises(errors.LocalProtocolError):
        pair.answerer.send(RELIABLE_LABEL, b"too late")


async def test_waits_time_out_with_connect_error() -> None:
    async with PeerConnection(LOOPBACK) as a:
        await a.create_data_channels()
        await a.create_offer()  # never answered
        with pytest.raises(errors.ConnectError, match="timed out"):
            await a.wait_connected(0.05)
        with pytest.raises(errors.ConnectError, match="timed out"):
            await a.wait_channels_open(0.05)


async def test_recvonly_transceivers_appear_in_the_offer() -> None:
    async with PeerConnection(LOOPBACK) as a, PeerConnection(LOOPBACK) as b:
        await a.create_data_channels()
        a.add_recvonly_transceivers(audio=1, video=2)
        offer = await a.create_offer()
        kinds = re.findall(r"^m=(\w+)", offer, re.MULTILINE)
        assert kinds == ["audio", "video", "video", "application"]
        assert offer.count("a=recvonly") == 3
        answer = await b.apply_offer(offer)
        await a.apply_answer(answer)
        await a.wait_connected(scaled(10))
        await a.wait_channels_open(scaled(10))
        with pytest.raises(errors.LocalProtocolError):
            a.add_recvonly_transceivers(audio=-1, video=0)


async def test_receivers_and_senders_by_mid() -> None:
    async with PeerConnection(LOOPBACK) as a, PeerConnection(LOOPBACK) as b:
        a.add_recvonly_transceivers(audio=1, video=1)
        assert a.receivers() == {} == a.senders()  # no mid before a description
        offer = await a.create_offer()
        mids = re.findall(r"^a=mid:(\S+)", offer, re.MULTILINE)
        assert sorted(a.receivers()) == sorted(mids) == sorted(a.senders())
        assert all(isinstance(r, aiortc.RTCRtpReceiver) for r in a.receivers().values())
        assert all(isinstance(s, aiortc.RTCRtpSender) for s in a.senders().values())
        await a.apply_answer(await b.apply_offer(offer))
        assert sorted(b.receivers()) == sorted(mids)


async def test_misuse_raises_local_protocol_error() -> None:
    a = PeerConnection(LOOPBACK, on_data=lambda label, data: None)
    with pytest.raises(errors.LocalProtocolError, match="no data channel"):
        a.send(RELIABLE_LABEL, b"x")
    with pytest.raises(errors.LocalProtocolError):
        a.buffered_amount(LOSSY_LABEL)
    await a.create_data_channels()
    with pytest.raises(errors.LocalProtocolError, match="already exists"):
        await a.create_data_channels()
    with pytest.raises(errors.LocalProtocolError, match="connecting"):
        a.send(RELIABLE_LABEL, b"not yet open")
    with pytest.raises(errors.LocalProtocolError, match="must be bytes"):
        a.send(RELIABLE_LABEL, "text")  # type: ignore[arg-type]
    with pytest.raises(errors.LocalProtocolError, match="max_message_bytes"):
        a.send(RELIABLE_LABEL, b"x" * 64_001)
    with pytest.raises(errors.LocalProtocolError):
        await a.wait_buffered_below(RELIABLE_LABEL, -1)
    with pytest.raises(errors.LocalProtocolError, match="answer"):
        await a.apply_answer("v=0\r\n")  # no offer pending
    await a.close()
    with pytest.raises(errors.LocalProtocolError, match="closed"):
        await a.create_offer()
    with pytest.raises(errors.LocalProtocolError, match="closed"):
        await a.add_ice_candidate("{}")
    with pytest.raises(errors.LocalProtocolError, match="closed"):
        await a.create_data_channels()


@pytest.mark.parametrize(
    "init",
    [
        "not json",
        "[1]",
        json.dumps({"candidate": 7, "sdpMid": "0"}),
        json.dumps({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}),
        json.dumps({"candidate": "candidate:1 1 udp", "sdpMid": "0"}),
        json.dumps({"candidate": "candidate:1 1 udp x 127.0.0.1 9 typ host", "sdpMid": "0"}),
        json.dumps({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": 0}),
        json.dumps({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMLineIndex": "0"}),
    ],
)
async def test_bad_remote_candidates_raise_remote_protocol_error(init: str) -> None:
    async with PeerConnection(LOOPBACK) as a:
        with pytest.raises(errors.RemoteProtocolError):
            await a.add_ice_candidate(init)


async def test_bad_remote_sdp_raises_remote_protocol_error() -> None:
    async with PeerConnection(LOOPBACK) as a:
        await a.create_data_channels()
        offer = await a.create_offer()
        with pytest.raises(errors.RemoteProtocolError):
            await a.apply_answer("")
        # An "answer" without ICE credentials.
        broken = re.sub(r"a=ice-pwd:\S+\r\n", "", offer).replace(
            "a=setup:actpass", "a=setup:active"
        )
        with pytest.raises(errors.RemoteProtocolError, match="password"):
            await a.apply_answer(broken)
    async with PeerConnection(LOOPBACK) as b:
        with pytest.raises(errors.RemoteProtocolError):
            await b.apply_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n")


async def test_callback_errors_are_contained(pair: Pair) -> None:
    calls: list[bytes] = []
    second = asyncio.Event()

    def boom(label: str, data: bytes) -> None:
        calls.append(data)
        if len(calls) == 2:
            second.set()
        raise RuntimeError("callback bug")

    pair.answerer.on_data = boom
    pair.offerer.send(RELIABLE_LABEL, b"1")
    pair.offerer.send(RELIABLE_LABEL, b"2")
    await asyncio.wait_for(second.wait(), scaled(10))
    assert calls == [b"1", b"2"]
    assert pair.answerer.channels_open


async def test_options_and_mapping() -> None:
    server = IceServer(urls=("turn:127.0.0.1:3478?transport=udp",), username="u", credential="p")
    assert PeerOptions().ice_servers == ()
    with pytest.raises(errors.LocalProtocolError):
        PeerConnection(PeerOptions(max_message_bytes=0))
    pc = PeerConnection(PeerOptions(ice_servers=(server,)))
    pc.remember_mapping({"1": "TR_a"})
    pc.remember_mapping({"1": "TR_b", "2": "TR_c"})
    assert pc.track_id_for_mid("1") == "TR_b"
    assert pc.track_id_for_mid("9") is None
    assert pc.connection_state is PeerState.NEW
    assert pc.ice_role is None
    assert pc.selected_candidate_pair() is None
    assert pc.local_description is None
    assert pc.remote_description is None
    assert "new" in repr(pc)
    await pc.close()
