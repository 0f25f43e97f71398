"""lkproto's PeerConnection against livekit-server v1.13.5, driven by a raw signal socket.

Only lkproto.wire codecs, a websockets client and :class:`lkproto.asyncio.peer.PeerConnection`
are involved (PROTOCOL-MAP §0 Variant A): join ``/rtc/v1``, offer with both data channels, apply
the answer and the trickled candidates, reach ACTIVE, then exchange one reliable user packet in
each direction with the official SDK. Every ICE address involved must be 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aioice.ice
import aiortc
import pytest
from livekit import rtc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lkproto import rtc as lkrtc
from lkproto.asyncio.peer import (
    RELIABLE_LABEL,
    PeerConnection,
    PeerOptions,
    PeerState,
)
from lkproto.testing import LocalServer
from lkproto.wire import (
    decode_data_packet,
    decode_signal_response,
    encode_data_packet,
    encode_signal_request,
    join_request,
    pb,
    signal_url_v1,
    wrap_join_request,
)
from tests.conftest import scaled

pytestmark = pytest.mark.interop

CONNECT_TIMEOUT_S = 15.0
# The server batches participant updates about non-publishers and sends them every 3 s
# (PROTOCOL-MAP §0, tests/interop/test_official_sdk.py).
ROSTER_TIMEOUT_S = 15.0
DATA_TIMEOUT_S = 10.0
PING_INTERVAL_S = 5.0  # JoinResponse.ping_interval (PROTOCOL-MAP §1)
OFFER_ID = 1

_CANDIDATE_ADDRESS = re.compile(r"^a=candidate:\S+ \d+ \w+ \d+ (\S+) \d+ typ", re.MULTILINE)
_HOST_ADDRESS = re.compile(r"^a=candidate:\S+ \d+ \w+ \d+ (\S+) \d+ typ host", re.MULTILINE)


@dataclass
class RawSignal:
    """A raw ``/rtc/v1`` socket feeding one PeerConnection; keeps pinging while open."""

    ws: ClientConnection
    pc: PeerConnection
    join: pb.JoinResponse
    answers: asyncio.Queue[pb.SessionDescription] = field(default_factory=asyncio.Queue)
    trickles: list[pb.TrickleRequest] = field(default_factory=list)
    participants: dict[str, pb.ParticipantInfo] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[BaseException] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._ping())]

    async def send(self, request: pb.SignalRequest) -> None:
        await self.ws.send(encode_signal_request(request))

    async def wait_until(self, predicate: Callable[[], bool], limit_s: float) -> None:
        async def loop() -> None:
            while not predicate():
                if self.errors:
                    raise self.errors[0]
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), limit_s)

    def state_of(self, identity: str) -> int | None:
        info = self.participants.get(identity)
        return info.state if info is not None else None

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send(pb.SignalRequest(leave=pb.LeaveRequest(reason=pb.CLIENT_INITIATED)))
        await self.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                assert isinstance(frame, bytes)
                await self._handle(decode_signal_response(frame))
        except ConnectionClosed:
            pass
        except Exception as exc:  # surfaced by wait_until
            self.errors.append(exc)
        finally:
            self.changed.set()

    async def _handle(self, msg: pb.SignalResponse) -> None:
        kind = msg.WhichOneof("message")
        if kind == "answer":
            # Applied in arrival order, before any later trickle is handled.
            await self.pc.apply_answer(msg.answer.sdp)
            self.answers.put_nowait(msg.answer)
        elif kind == "trickle":
            self.trickles.append(msg.trickle)
            await self.pc.add_ice_candidate(msg.trickle.candidateInit)
            if msg.trickle.final:
                await self.pc.end_of_candidates()
        elif kind == "update":
            for info in msg.update.participants:
                known = self.participants.get(info.identity)
                if known is None or info.version >= known.version:
                    self.participants[info.identity] = info
        self.changed.set()

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(PING_INTERVAL_S)
                now_ms = int(time.time() * 1000)
                await self.send(pb.SignalRequest(ping_req=pb.Ping(timestamp=now_ms)))


@dataclass
class Inbox:
    """Messages that arrived on ``_reliable``."""

    items: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, label: str, data: bytes) -> None:
        if label == RELIABLE_LABEL:
            self.items.append(data)
            self.arrived.set()


async def _join_raw(server: LocalServer, identity: str, room: str, inbox: Inbox) -> RawSignal:
    token = server.create_token(identity, room)
    url = signal_url_v1(
        server.url, wrap_join_request(join_request(auto_subscribe=False)), token=token
    )
    ws = await asyncio.wait_for(connect(url, open_timeout=None), scaled(10))
    first = decode_signal_response(await asyncio.wait_for(ws.recv(), scaled(10)))
    assert first.WhichOneof("message") == "join"
    pc = PeerConnection(PeerOptions(ice_addresses=("127.0.0.1",)), on_data=inbox)
    signal = RawSignal(ws=ws, pc=pc, join=first.join)
    signal.participants[identity] = first.join.participant
    signal.start()
    return signal


async def test_peer_connects_and_exchanges_data_with_official_sdk(
    livekit_server: LocalServer,
) -> None:
    room_name = f"peer-raw-{uuid.uuid4().hex[:8]}"
    me = "lk-raw"
    inbox = Inbox()
    sdk_received: asyncio.Queue[rtc.DataPacket] = asyncio.Queue()
    sdk = rtc.Room()
    sdk.on("data_received", sdk_received.put_nowait)
    signal = await _join_raw(livekit_server, me, room_name, inbox)
    pc = signal.pc
    try:
        # -- join + negotiate (PROTOCOL-MAP §0 Variant A steps 5-8) -----------------------
        await pc.create_data_channels()
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        await signal.send(
            pb.SignalRequest(offer=pb.SessionDescription(type="offer", sdp=offer, id=OFFER_ID))
        )
        answer = await asyncio.wait_for(signal.answers.get(), scaled(CONNECT_TIMEOUT_S))
        assert (answer.type, answer.id) == ("answer", OFFER_ID)
        await pc.wait_connected(scaled(CONNECT_TIMEOUT_S))
        await pc.wait_channels_open(scaled(CONNECT_TIMEOUT_S))
        await signal.wait_until(
            lambda: signal.state_of(me) == pb.ParticipantInfo.ACTIVE, scaled(ROSTER_TIMEOUT_S)
        )

        # -- everything stayed on loopback --------------------------------------------------
        assert set(_CANDIDATE_ADDRESS.findall(offer)) == {"127.0.0.1"}
        assert signal.trickles, "the server trickles its candidates (PROTOCOL-MAP §2)"
        assert all(t.target == pb.PUBLISHER for t in signal.trickles)  # single PC
        assert signal.trickles[-1].final
        pair = pc.selected_candidate_pair()
        assert pair is not None
        assert (pair.local_address, pair.remote_address) == ("127.0.0.1", "127.0.0.1")
        assert pair.remote_port == livekit_server.udp_port
        # No ICE-lite on the server: the offerer (us) controls (PROTOCOL-MAP §17 Roles).
        assert pc.ice_role == "controlling"

        # -- an official SDK participant joins -------------------------------------------------
        await asyncio.wait_for(
            sdk.connect(
                livekit_server.url,
                livekit_server.create_token("sdk", room_name),
                rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[])),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        assert me in sdk.remote_participants
        # The receiver must be ACTIVE before the first packet (PROTOCOL-MAP §0, last paragraph).
        await signal.wait_until(
            lambda: signal.state_of("sdk") == pb.ParticipantInfo.ACTIVE,
            scaled(ROSTER_TIMEOUT_S),
        )

        # -- lkproto -> SDK --------------------------------------------------------------------
        packet = pb.DataPacket(
            user=pb.UserPacket(payload=b"hello from lkproto", topic="raw-topic"), sequence=1
        )
        pc.send(RELIABLE_LABEL, encode_data_packet(packet))
        got = await asyncio.wait_for(sdk_received.get(), scaled(DATA_TIMEOUT_S))
        assert got.data == b"hello from lkproto"
        assert got.topic == "raw-topic"
        assert got.participant is not None
        assert got.participant.identity == me

        # -- SDK -> lkproto --------------------------------------------------------------------
        await asyncio.wait_for(
            sdk.local_participant.publish_data(b"hello from sdk", topic="sdk-topic"),
            scaled(DATA_TIMEOUT_S),
        )
        await asyncio.wait_for(inbox.arrived.wait(), scaled(DATA_TIMEOUT_S))
        received = decode_data_packet(inbox.items[0])
        assert received.WhichOneof("value") == "user"
        assert received.user.payload == b"hello from sdk"
        assert received.user.topic == "sdk-topic"
        assert received.participant_identity == "sdk"
        assert received.participant_sid == sdk.local_participant.sid
    finally:
        await asyncio.wait_for(sdk.disconnect(), scaled(CONNECT_TIMEOUT_S))
        await signal.close()
        await pc.close()
    assert pc.connection_state is PeerState.CLOSED


async def _plain_aiortc_hosts() -> set[str]:
    """Host candidates a plain aiortc peer (not lkproto's) puts in its offer."""
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("bystander")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        sdp = pc.localDescription.sdp
        return set(_HOST_ADDRESS.findall(sdp))
    finally:
        await pc.close()


@pytest.mark.parametrize("single_pc", [True, False], ids=["v1", "v0"])
async def test_plain_aiortc_peer_beside_a_room_gathers_as_stock_aioice(
    livekit_server: LocalServer, single_pc: bool
) -> None:
    """lkproto's loopback-only ICE choice stays on lkproto's own connections: an aiortc peer
    created by someone else, from a room event handler and after the room connected, gathers
    what stock aioice gathers (lkproto/asyncio/_seam.py scope_ice_connection)."""
    stock = set(inspect.unwrap(aioice.ice.get_host_addresses)(True, True))
    assert stock
    assert "127.0.0.1" not in stock  # so a leaked loopback-only choice would show
    room_name = f"peer-bystander-{uuid.uuid4().hex[:8]}"
    from_handler: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
    tasks: set[asyncio.Task[None]] = set()

    async def gather_from_handler() -> None:
        hosts = await _plain_aiortc_hosts()
        if not from_handler.done():
            from_handler.set_result(hosts)

    ours = lkrtc.Room()
    ours.on("data_received", lambda _: tasks.add(asyncio.create_task(gather_from_handler())))
    sdk = rtc.Room()
    try:
        await asyncio.wait_for(
            ours.connect(
                livekit_server.url,
                livekit_server.create_token("ours", room_name),
                lkrtc.RoomOptions(
                    rtc_config=lkrtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
                    single_peer_connection=single_pc,
                ),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        await asyncio.wait_for(
            sdk.connect(
                livekit_server.url,
                livekit_server.create_token("sdk", room_name),
                rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[])),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )

        async def send_until_received() -> None:
            while not from_handler.done():
                await sdk.local_participant.publish_data(b"gather", reliable=True)
                await asyncio.sleep(0.5)

        await asyncio.wait_for(send_until_received(), scaled(ROSTER_TIMEOUT_S))
        assert from_handler.result() == stock
        assert await asyncio.wait_for(_plain_aiortc_hosts(), scaled(10)) == stock
    finally:
        await asyncio.wait_for(sdk.disconnect(), scaled(CONNECT_TIMEOUT_S))
        await asyncio.wait_for(ours.disconnect(), scaled(CONNECT_TIMEOUT_S))
        await asyncio.gather(*tasks, return_exceptions=True)
