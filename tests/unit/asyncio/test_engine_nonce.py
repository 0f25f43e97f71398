"""The engine's user-packet nonces, against the in-memory signal peer (no server).

Sending: every reliable user packet leaves with a 16-byte ``UserPacket.nonce``, inside the
ciphertext when the room encrypts. Receiving: a user packet whose nonce was already delivered
from the same sender identity is dropped even when it comes under another SID (the resend after
that sender's full reconnect, core/reliable.py "Nonces"), and so is a decrypted one the room
hands back (:meth:`Engine.accept_decrypted`); packets without a nonce are left alone. ICE, DTLS
and the data channels are real.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from lkproto.asyncio import engine as en
from lkproto.core.e2ee import DataDecrypted, KeyProvider
from lkproto.core.reconnect import ReconnectPolicy
from lkproto.core.reliable import USER_NONCE_BYTES
from lkproto.testing import SignalPeer, scaled
from lkproto.wire import encode_data_packet, pb
from lkproto.wire.channels import RELIABLE_LABEL
from lkproto.wire.e2ee import IV_LENGTH

URL = "ws://in-memory.invalid"


class Received(list[en.DataReceived]):
    """The engine's ``DataReceived`` events; :meth:`until` waits for one (bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, event: object) -> None:
        if isinstance(event, en.DataReceived):
            self.append(event)
            self.changed.set()

    async def until(self, payload: bytes) -> None:
        async with asyncio.timeout(scaled(10)):
            while not any(e.packet.user.payload == payload for e in self):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def connected() -> AsyncIterator[tuple[en.Engine, SignalPeer, Received]]:
    peer = SignalPeer()
    received = Received()
    engine = en.Engine(received)
    options = en.EngineOptions(
        transport_factory=peer.connect,
        ice_addresses=("127.0.0.1",),
        connect_timeout_s=scaled(10),
        reconnect_policy=ReconnectPolicy((0.0,), jitter_s=0),
    )
    try:
        await engine.connect(URL, "token", options)
        yield engine, peer, received
    finally:
        await engine.disconnect()
        await peer.close()


def forwarded(identity: str, sid: str, sequence: int, payload: bytes, nonce: bytes) -> bytes:
    """A user packet as the server forwards it from ``identity``'s session ``sid``."""
    return encode_data_packet(
        pb.DataPacket(
            participant_identity=identity,
            participant_sid=sid,
            sequence=sequence,
            user=pb.UserPacket(payload=payload, nonce=nonce),
        )
    )


async def test_reliable_user_packets_leave_with_a_fresh_nonce(
    connected: tuple[en.Engine, SignalPeer, Received],
) -> None:
    engine, peer, _ = connected
    for payload in (b"one", b"two"):
        await engine.send_data(pb.DataPacket(user=pb.UserPacket(payload=payload)), reliable=True)
    async with asyncio.timeout(scaled(10)):
        await peer.wait_until(lambda: len(peer.data_packets) >= 2)
    nonces = [packet.user.nonce for _, packet in peer.data_packets]
    assert [len(n) for n in nonces] == [USER_NONCE_BYTES] * 2
    assert nonces[0] != nonces[1]


async def test_a_resend_under_a_new_sid_is_dropped_and_nonce_less_packets_are_not(
    connected: tuple[en.Engine, SignalPeer, Received],
) -> None:
    _, peer, received = connected
    server = peer.peer_connection
    assert server is not None
    nonce = bytes(range(USER_NONCE_BYTES))
    frames = [
        forwarded("alice", "PA_old", 7, b"original", nonce),
        # alice's full reconnect resends it from her new session: new SID, new sequence
        forwarded("alice", "PA_new", 1, b"original", nonce),
        # an official SDK sender sets no nonce: its repeats are not ours to judge
        forwarded("bob", "PA_b1", 1, b"no nonce", b""),
        forwarded("bob", "PA_b2", 1, b"no nonce", b""),
        # the same nonce from another identity is another packet
        forwarded("carol", "PA_c", 1, b"carol", nonce),
        forwarded("alice", "PA_new", 2, b"last", bytes(USER_NONCE_BYTES)),
    ]
    for frame in frames:
        server.send(RELIABLE_LABEL, frame)
    await received.until(b"last")
    assert [(e.packet.participant_identity, e.packet.user.payload) for e in received] == [
        ("alice", b"original"),
        ("bob", b"no nonce"),
        ("bob", b"no nonce"),
        ("carol", b"carol"),
        ("alice", b"last"),
    ]


async def test_an_encrypted_user_packet_leaves_with_its_nonce_inside_the_ciphertext(
    connected: tuple[en.Engine, SignalPeer, Received],
) -> None:
    engine, peer, _ = connected
    provider = KeyProvider(shared_key=b"engine-nonce-key")
    ivs = (i.to_bytes(IV_LENGTH, "big") for i in itertools.count(1))
    engine.data_sealer = lambda packet: provider.encrypt_packet(packet, "me", next(ivs))
    for payload in (b"one", b"two"):
        await engine.send_data(pb.DataPacket(user=pb.UserPacket(payload=payload)), reliable=True)
    await engine.send_data(pb.DataPacket(user=pb.UserPacket(payload=b"lossy")), reliable=False)
    async with asyncio.timeout(scaled(10)):
        await peer.wait_until(lambda: len(peer.data_packets) >= 3)
    sealed = [packet for _, packet in peer.data_packets]
    assert [p.WhichOneof("value") for p in sealed] == ["encrypted_packet"] * 3
    opened = []
    for packet in sealed:
        result = provider.decrypt_packet(packet)
        assert isinstance(result, DataDecrypted)
        opened.append(result.packet.user)
    assert [u.payload for u in opened] == [b"one", b"two", b"lossy"]
    nonces = [u.nonce for u in opened]
    # Reliable ones are resent after a full reconnect and need one; lossy ones never are.
    assert [len(n) for n in nonces] == [USER_NONCE_BYTES, USER_NONCE_BYTES, 0]
    assert nonces[0] != nonces[1]
    assert [p.sequence for p in sealed[:2]] == [1, 2]


async def test_accept_decrypted_drops_a_repeated_nonce_and_passes_packets_without_one(
    connected: tuple[en.Engine, SignalPeer, Received],
) -> None:
    engine, _, _ = connected
    nonce = bytes(range(USER_NONCE_BYTES))

    def opened(sid: str, nonce: bytes) -> pb.DataPacket:
        return pb.DataPacket(
            participant_identity="alice",
            participant_sid=sid,
            user=pb.UserPacket(payload=b"p", nonce=nonce),
        )

    assert engine.accept_decrypted(opened("PA_old", nonce))
    assert not engine.accept_decrypted(opened("PA_new", nonce))
    assert engine.accept_decrypted(opened("PA_new", b""))
    assert engine.accept_decrypted(opened("PA_new", b""))
