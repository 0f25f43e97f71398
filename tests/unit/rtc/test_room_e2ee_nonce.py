"""An encrypted room drops the resend of an encrypted user packet (core/reliable.py "Nonces").

The sender's full reconnect resends its sealed bytes under a new SID and sequence; the nonce is
inside the ciphertext, so only the receiving room, after decrypting, can see the repeat. A real
:class:`~lkproto.rtc.Room` joins the in-memory signal peer (no server; ICE, DTLS and the data
channels are real) and the "server" forwards what a sender sealed with the room's key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator

import pytest

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.core.e2ee import KeyProvider
from lkproto.rtc import room as room_module
from lkproto.testing import SignalPeer, scaled
from lkproto.wire import encode_data_packet, pb
from lkproto.wire.channels import RELIABLE_LABEL
from lkproto.wire.e2ee import IV_LENGTH

KEY = b"room-nonce-key"
NONCE = bytes(range(16))


@pytest.fixture
async def joined(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[rtc.Room, SignalPeer]]:
    peer = SignalPeer()
    engine_options = room_module._engine_options

    def in_memory(opts: rtc.RoomOptions) -> en.EngineOptions:
        return dataclasses.replace(
            engine_options(opts), transport_factory=peer.connect, ice_addresses=("127.0.0.1",)
        )

    monkeypatch.setattr(room_module, "_engine_options", in_memory)
    room = rtc.Room()
    options = rtc.RoomOptions(
        encryption=rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key=KEY)),
        connect_timeout=scaled(10),
    )
    try:
        await room.connect("ws://in-memory.invalid", "token", options)
        yield room, peer
    finally:
        await room.disconnect()
        await peer.close()


async def test_the_decrypted_resend_is_dropped_and_nonce_less_packets_are_not(
    joined: tuple[rtc.Room, SignalPeer],
) -> None:
    room, peer = joined
    server = peer.peer_connection
    assert server is not None
    delivered: list[tuple[str | None, bytes]] = []
    last = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        delivered.append((packet.topic, packet.data))
        if packet.data == b"last":
            last.set()

    room.on("data_received", on_data)
    sender = KeyProvider(shared_key=KEY)
    ivs = (i.to_bytes(IV_LENGTH, "big") for i in itertools.count(1))

    def sealed(user: pb.UserPacket) -> pb.EncryptedPacket:
        return sender.encrypt_packet(pb.DataPacket(user=user), "alice", next(ivs)).encrypted_packet

    def forwarded(sid: str, sequence: int, encrypted: pb.EncryptedPacket) -> bytes:
        return encode_data_packet(
            pb.DataPacket(
                participant_identity="alice",
                participant_sid=sid,
                sequence=sequence,
                encrypted_packet=encrypted,
            )
        )

    original = sealed(pb.UserPacket(payload=b"original", topic="t", nonce=NONCE))
    bare = sealed(pb.UserPacket(payload=b"no nonce", topic="t"))
    frames = [
        forwarded("PA_old", 7, original),
        # alice's full reconnect resends the same sealed bytes from her new session
        forwarded("PA_new", 1, original),
        # an official SDK seals no nonce: each copy is delivered
        forwarded("PA_new", 2, bare),
        forwarded("PA_new", 3, bare),
        forwarded("PA_new", 4, sealed(pb.UserPacket(payload=b"last", nonce=bytes(16)))),
    ]
    for frame in frames:
        server.send(RELIABLE_LABEL, frame)
    async with asyncio.timeout(scaled(10)):
        await last.wait()
    assert delivered == [
        ("t", b"original"),
        ("t", b"no nonce"),
        ("t", b"no nonce"),
        ("", b"last"),
    ]
