"""ICE address selection: validation, and peers that gather exactly where they were told."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator
from typing import cast

import aioice.ice
import aiortc
import pytest
from aioice import stun

from lkproto import errors
from lkproto.asyncio import _seam
from lkproto.asyncio import engine as en
from lkproto.asyncio._ice import check_addresses
from lkproto.asyncio.peer import IceServer, PeerConnection, PeerOptions
from lkproto.testing import SignalPeer
from lkproto.wire import pb
from tests.conftest import scaled

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\w+) \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


def _host_addresses(sdp: str) -> list[str]:
    return [address for _, address, kind in _CANDIDATE.findall(sdp) if kind == "host"]


def test_addresses_are_deduplicated_in_order() -> None:
    assert check_addresses(["::1", "127.0.0.1", "::1"]) == ("::1", "127.0.0.1")
    assert check_addresses(()) == ()


@pytest.mark.parametrize("bad", [["localhost"], ["127.0.0.1", "eth0"], "127.0.0.1", [""]])
def test_invalid_addresses_are_refused(bad: list[str] | str) -> None:
    with pytest.raises(errors.LocalProtocolError):
        check_addresses(bad)
    with pytest.raises(errors.LocalProtocolError):
        PeerConnection(PeerOptions(ice_addresses=bad))  # type: ignore[arg-type]


async def test_two_peers_gather_only_on_loopback() -> None:
    loopback = PeerOptions(ice_addresses=("127.0.0.1", "127.0.0.1"))
    a, b, default = PeerConnection(loopback), PeerConnection(loopback), PeerConnection()
    try:
        await a.create_data_channels()
        await default.create_data_channels()
        offer, default_offer = await asyncio.wait_for(
            asyncio.gather(a.create_offer(), default.create_offer()), scaled(10)
        )
        answer = await asyncio.wait_for(b.apply_offer(offer), scaled(10))
        assert _host_addresses(offer) == ["127.0.0.1"]
        assert _host_addresses(answer) == ["127.0.0.1"]
        # Created in the same task at the same time, the default peer follows aioice's choice.
        stock = set(inspect.unwrap(aioice.ice.get_host_addresses)(True, True))
        assert set(_host_addresses(default_offer)) == stock
        assert "127.0.0.1" not in stock
        # No STUN server by default: nothing but host candidates.
        assert {kind for *_, kind in _CANDIDATE.findall(offer + answer + default_offer)} <= {"host"}
        # The choice does not leak out of the peers' own gathering.
        assert set(aioice.ice.get_host_addresses(True, True)) == stock
    finally:
        await a.close()
        await b.close()
        await default.close()


async def test_empty_choice_gathers_no_host_candidate() -> None:
    pc = PeerConnection(PeerOptions(ice_addresses=()))
    try:
        await pc.create_data_channels()
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        assert _host_addresses(offer) == []
    finally:
        await pc.close()


# -- STUN answers are trickled, not awaited (issue 18) -------------------------------------------


class _HeldStunServer(asyncio.DatagramProtocol):
    """A loopback STUN server that answers binding requests only when told to.

    The mapped address it reports is the request's source, as a STUN server on the same host sees
    it, so the resulting server-reflexive candidate is reachable.
    """

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.held: list[tuple[stun.Message, tuple[str, int]]] = []
        self.received = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        if request.message_method == stun.Method.BINDING:
            self.held.append((request, addr))
            self.received.set()

    def answer_all(self) -> int:
        assert self.transport is not None
        held, self.held = self.held, []
        for request, addr in held:
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            self.transport.sendto(bytes(response), addr)
        return len(held)


@pytest.fixture
async def stun_server() -> AsyncIterator[tuple[_HeldStunServer, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _HeldStunServer, local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


class _Trickled:
    """What a peer's ``on_local_candidate`` received."""

    def __init__(self) -> None:
        self.inits: list[str] = []
        self.arrived = asyncio.Event()

    def add(self, init: str) -> None:
        self.inits.append(init)
        self.arrived.set()


def _with_stun(port: int, *, max_bundle: bool = True) -> PeerOptions:
    return PeerOptions(
        ice_addresses=("127.0.0.1",),
        ice_servers=(IceServer(urls=(f"stun:127.0.0.1:{port}",)),),
        max_bundle=max_bundle,
    )


def _without_candidates(sdp: str) -> str:
    return "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    )


async def test_offer_leaves_before_the_stun_answer_which_is_trickled_after_it(
    stun_server: tuple[_HeldStunServer, int],
) -> None:
    server, port = stun_server
    trickled = _Trickled()
    pc = PeerConnection(_with_stun(port))
    pc.on_local_candidate = trickled.add
    try:
        await pc.create_data_channels()
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        # The query reached the server, which has not answered: stock aiortc would still be in
        # setLocalDescription here (aioice awaits it up to 5 s).
        await asyncio.wait_for(server.received.wait(), scaled(10))
        assert server.held
        assert _host_addresses(offer) == ["127.0.0.1"]
        assert "typ srflx" not in offer
        # More may come: the offer must not promise the peer that candidates are complete.
        assert "a=end-of-candidates" not in offer
        assert trickled.inits == []
        assert server.answer_all() == 1
        await asyncio.wait_for(trickled.arrived.wait(), scaled(10))
        init = json.loads(trickled.inits[0])
        assert re.match(
            r"candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ srflx raddr 127", init["candidate"]
        )
        assert init["sdpMid"] == "0"
        assert init["sdpMLineIndex"] == 0
        assert init["usernameFragment"] in offer
        # The next description lists it (aiortc reads the connection's local candidates).
        again = await asyncio.wait_for(pc.create_offer(), scaled(10))
        assert "typ srflx" in again
        assert "a=end-of-candidates" in again
    finally:
        await pc.close()


async def test_a_candidate_found_before_the_description_is_returned_waits_for_it(
    stun_server: tuple[_HeldStunServer, int],
) -> None:
    server, port = stun_server
    trickled = _Trickled()
    pc = PeerConnection(_with_stun(port))
    pc.on_local_candidate = trickled.add
    answered = asyncio.get_running_loop().create_future()

    def answer_at_once() -> None:
        server.received.clear()
        answered.set_result(server.answer_all())

    try:
        await pc.create_data_channels()
        offering = asyncio.ensure_future(pc.create_offer())
        await asyncio.wait_for(server.received.wait(), scaled(10))
        answer_at_once()
        await asyncio.wait_for(offering, scaled(10))
        # Whatever the race inside create_offer, nothing was emitted before it returned.
        seen_at_return = list(trickled.inits)
        await asyncio.wait_for(trickled.arrived.wait(), scaled(10))
        assert await answered == 1
        assert seen_at_return == []
    finally:
        await pc.close()


async def test_a_late_server_reflexive_candidate_is_usable(
    stun_server: tuple[_HeldStunServer, int],
) -> None:
    """The answerer learns the offerer only from the trickled candidate, and the offerer knows
    no candidate of the answerer: ICE can succeed only through the late candidate."""
    server, port = stun_server
    trickled = _Trickled()
    a = PeerConnection(_with_stun(port, max_bundle=False))
    b = PeerConnection(PeerOptions(ice_addresses=("127.0.0.1",)))
    a.on_local_candidate = trickled.add
    try:
        await a.create_data_channels()
        offer = await asyncio.wait_for(a.create_offer(), scaled(10))
        answer = await asyncio.wait_for(b.apply_offer(_without_candidates(offer)), scaled(10))
        await a.apply_answer(_without_candidates(answer))
        await asyncio.wait_for(server.received.wait(), scaled(10))
        server.answer_all()
        await asyncio.wait_for(trickled.arrived.wait(), scaled(10))
        for init in trickled.inits:
            await b.add_ice_candidate(init)
        await b.end_of_candidates()
        await asyncio.wait_for(
            asyncio.gather(a.wait_connected(scaled(20)), b.wait_channels_open(scaled(20))),
            scaled(25),
        )
        pair = a.selected_candidate_pair()
        assert pair is not None
        assert pair.local_address == "127.0.0.1"
    finally:
        await a.close()
        await b.close()


async def test_without_a_stun_server_nothing_is_trickled_and_candidates_are_complete() -> None:
    trickled = _Trickled()
    pc = PeerConnection(PeerOptions(ice_addresses=("127.0.0.1",)))
    pc.on_local_candidate = trickled.add
    try:
        await pc.create_data_channels()
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        assert "a=end-of-candidates" in offer
        await asyncio.sleep(0)
        assert trickled.inits == []
    finally:
        await pc.close()


async def test_the_engine_trickles_a_late_candidate_after_its_offer(
    stun_server: tuple[_HeldStunServer, int],
) -> None:
    """Engine wiring: a STUN answer that arrives after the join's offer went out is sent as a
    TrickleRequest for the publisher (single PC), after the offer (PROTOCOL-MAP §2 Trickle)."""
    server, port = stun_server
    peer = SignalPeer()
    engine = en.Engine(lambda event: None)
    options = en.EngineOptions(
        transport_factory=peer.connect,
        ice_addresses=("127.0.0.1",),
        ice_servers=(IceServer(urls=(f"stun:127.0.0.1:{port}",)),),
        connect_timeout_s=scaled(10),
        single_peer_connection=True,
    )
    try:
        await asyncio.wait_for(engine.connect("ws://test", "token", options), scaled(20))
        await asyncio.wait_for(server.received.wait(), scaled(10))
        assert peer.requests("trickle") == []
        offer = peer.requests("offer")[0].offer.sdp
        assert "a=end-of-candidates" not in offer
        assert server.answer_all() >= 1
        request = await asyncio.wait_for(peer.wait_for_request("trickle"), scaled(10))
        assert request.trickle.target == pb.PUBLISHER
        assert not request.trickle.final
        init = json.loads(request.trickle.candidateInit)
        assert " typ srflx " in init["candidate"]
        kinds = [
            r.WhichOneof("message")
            for c in peer.connections
            for r in c.requests
            if r.WhichOneof("message") in ("offer", "trickle")
        ]
        assert kinds.index("offer") < kinds.index("trickle")
    finally:
        await engine.disconnect()
        await peer.close()


async def test_trickling_fails_clearly_without_aioices_stun_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        pc.createDataChannel("x")
        transport = pc.sctp.transport.transport if pc.sctp is not None else None
        assert transport is not None
        monkeypatch.delattr(aioice.ice, "server_reflexive_candidate")
        with pytest.raises(errors.LkError, match="server_reflexive_candidate"):
            _seam.trickle_server_reflexive(transport, lambda candidate: None)
    finally:
        await pc.close()
