"""End-to-end encrypted data between lkproto and the official Python SDK 1.2.1 (issue 16 item 3).

Each test gets a room with ``lk`` (lkproto) and ``sdk`` (official SDK), both connected with
``RoomOptions(encryption=...)`` and the same key unless the test says otherwise, plus sometimes a
third participant without the key. Proof is by content (what each side received) and by the wire:
lkproto's trace shows every user/stream/RPC packet in and out as an ``encrypted_packet``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import scaled
from lkproto.wire import pb
from lkproto.wire.tap import TapRecord
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    disconnect_all,
    make_token,
    official_options,
    our_options,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

KEY = b"interop-shared-key"
ACTIVE = int(pb.ParticipantInfo.ACTIVE)
DELIVERY_TIMEOUT_S = 30.0
ENCRYPTABLE = frozenset(
    {"user", "rpc_request", "rpc_ack", "rpc_response", "stream_header", "stream_chunk"}
    | {"stream_trailer", "chat_message"}
)


@dataclass
class Wire:
    """What lkproto's trace saw on its data channels: the oneof value of every packet."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    records: list[TapRecord] = field(default_factory=list)

    def tap(self, record: TapRecord) -> None:
        self.records.append(record)

    def __call__(self, direction: str, channel: str, message: Any, raw: bytes, now: float) -> None:
        if isinstance(message, pb.DataPacket):
            kind = message.WhichOneof("value") or ""
            (self.sent if direction == ">" else self.received).append(kind)

    def clear_payloads(self) -> list[str]:
        """Packets that went either way with a value that should have been encrypted."""
        return [k for k in self.sent + self.received if k in ENCRYPTABLE]


def _ours(key: bytes | None, wire: Wire, **provider: Any) -> rtc.RoomOptions:
    """Encrypted with ``key`` (None: per-participant keys, set later)."""
    options = our_options()
    options.trace = wire
    options.tap = wire.tap
    options.encryption = rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(shared_key=key, **provider)
    )
    return options


def _official(key: bytes | None, **provider: Any) -> lrtc.RoomOptions:
    options = official_options()
    options.encryption = lrtc.E2EEOptions(
        key_provider_options=lrtc.KeyProviderOptions(shared_key=key, **provider)
    )
    return options


@dataclass
class Pair:
    lk: rtc.Room
    sdk: lrtc.Room
    wire: Wire
    lk_data: list[tuple[bytes, str]] = field(default_factory=list)
    sdk_data: list[tuple[bytes, str]] = field(default_factory=list)
    lk_states: list[tuple[str, int]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _pair(
    server: LocalServer,
    *,
    lk_key: bytes | None = KEY,
    sdk_key: bytes | None = KEY,
    lk_provider: dict[str, Any] | None = None,
    sdk_provider: dict[str, Any] | None = None,
) -> AsyncIterator[Pair]:
    name = unique_room("e2ee")
    wire = Wire()
    lk, sdk = rtc.Room(), lrtc.Room()
    pair = Pair(lk=lk, sdk=sdk, wire=wire)
    lk.on("data_received", lambda p: pair.lk_data.append((p.data, p.topic or "")))
    sdk.on("data_received", lambda p: pair.sdk_data.append((p.data, p.topic or "")))
    lk.on(
        "e2ee_state_changed",
        lambda participant, state: pair.lk_states.append((participant.identity, int(state))),
    )
    try:
        await asyncio.wait_for(
            lk.connect(
                server.url,
                make_token(server, "lk", name),
                _ours(lk_key, wire, **(lk_provider or {})),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        await asyncio.wait_for(
            sdk.connect(
                server.url,
                make_token(server, "sdk", name),
                _official(sdk_key, **(sdk_provider or {})),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        # The server drops data for a receiver that is not ACTIVE yet (PROTOCOL-MAP §3).
        await wait_for(lambda: _active(lk, "sdk"), what="sdk active for lk")
        await wait_for(lambda: _active(sdk, "lk"), what="lk active for sdk")
        yield pair
    finally:
        await disconnect_all(lk, sdk)


def _active(room: rtc.Room | lrtc.Room, identity: str) -> bool:
    remote = room.remote_participants.get(identity)
    return remote is not None and int(remote.state) == ACTIVE


async def _until(predicate: Callable[[], object], what: str) -> None:
    await wait_for(predicate, DELIVERY_TIMEOUT_S, what)


async def test_user_packets_both_ways_are_ciphertext_on_the_wire(
    livekit_server: LocalServer,
) -> None:
    async with _pair(livekit_server) as p:
        await p.lk.local_participant.publish_data(b"from lkproto", topic="t")
        await p.sdk.local_participant.publish_data(b"from the official SDK", topic="t")
        await p.lk.local_participant.publish_data(b"lossy", topic="l", reliable=False)
        await _until(lambda: (b"from lkproto", "t") in p.sdk_data, "sdk decrypts ours")
        await _until(lambda: (b"from the official SDK", "t") in p.lk_data, "we decrypt sdk's")
        assert p.lk.e2ee_manager.enabled
        assert "encrypted_packet" in p.wire.sent
        assert "encrypted_packet" in p.wire.received
        assert p.wire.clear_payloads() == []
        assert ("sdk", int(rtc.EncryptionState.OK)) in p.lk_states
        # The tap shows ciphertext on the wire and, since it holds the key, what it decrypts to.
        shown = {
            (r.direction, json.dumps(r.decrypted))
            for r in p.wire.records
            if r.type == "DataPacket.encrypted_packet" and r.decrypted
        }
        shown = {(d, text) for d, text in shown if '"user"' in text}
        mine = base64.b64encode(b"from lkproto").decode()
        theirs = base64.b64encode(b"from the official SDK").decode()
        assert any(d == ">" and mine in text for d, text in shown), shown
        assert any(d == "<" and theirs in text for d, text in shown), shown


async def test_text_and_1mb_byte_streams_both_ways(livekit_server: LocalServer) -> None:
    blob = os.urandom(1024 * 1024)
    got: dict[str, Any] = {}

    async def read_text(reader: Any, identity: str) -> None:
        got[f"text:{identity}"] = await reader.read_all()

    async def read_bytes(reader: Any, identity: str) -> None:
        data = bytearray()
        async for chunk in reader:
            data += chunk
        got[f"bytes:{identity}"] = bytes(data)

    tasks: set[asyncio.Task[None]] = set()

    def handler(coro: Callable[[Any, str], Any]) -> Callable[[Any, str], None]:
        def start(reader: Any, identity: str) -> None:
            task = asyncio.get_running_loop().create_task(coro(reader, identity))
            tasks.add(task)

        return start

    async with _pair(livekit_server) as p:
        for room in (p.lk, p.sdk):
            room.register_text_stream_handler("txt", handler(read_text))
            room.register_byte_stream_handler("bin", handler(read_bytes))
        await p.lk.local_participant.send_text("secret text from lkproto " * 2000, topic="txt")
        await p.sdk.local_participant.send_text("secret text from sdk", topic="txt")
        for room in (p.lk, p.sdk):
            writer = await room.local_participant.stream_bytes(
                "blob.bin", total_size=len(blob), topic="bin"
            )
            for offset in range(0, len(blob), 64 * 1024):
                await writer.write(blob[offset : offset + 64 * 1024])
            await writer.aclose()
        await _until(lambda: len(got) == 4, "four streams")
        assert got["text:lk"] == "secret text from lkproto " * 2000
        assert got["text:sdk"] == "secret text from sdk"
        assert hashlib.sha256(got["bytes:lk"]).digest() == hashlib.sha256(blob).digest()
        assert hashlib.sha256(got["bytes:sdk"]).digest() == hashlib.sha256(blob).digest()
        assert p.wire.clear_payloads() == []
        assert p.wire.sent.count("encrypted_packet") > len(blob) // 15_000


async def test_rpc_both_ways(livekit_server: LocalServer) -> None:
    async with _pair(livekit_server) as p:
        p.lk.local_participant.register_rpc_method("echo", lambda d: f"lk:{d.payload}")
        p.sdk.local_participant.register_rpc_method("echo", lambda d: f"sdk:{d.payload}")
        answer = await p.lk.local_participant.perform_rpc(
            destination_identity="sdk", method="echo", payload="ping"
        )
        assert answer == "sdk:ping"
        answer = await p.sdk.local_participant.perform_rpc(
            destination_identity="lk", method="echo", payload="pong"
        )
        assert answer == "lk:pong"
        assert p.wire.clear_payloads() == []


async def test_without_key_nothing_is_delivered_and_wrong_key_recovers(
    livekit_server: LocalServer,
) -> None:
    async with _pair(
        livekit_server, lk_key=b"wrong key", lk_provider={"ratchet_window_size": 0}
    ) as p:
        eve = rtc.Room()
        eve_data: list[bytes] = []
        eve.on("data_received", lambda packet: eve_data.append(packet.data))
        try:
            await asyncio.wait_for(
                eve.connect(
                    livekit_server.url,
                    make_token(livekit_server, "eve", p.lk.name),
                    our_options(),
                ),
                scaled(CONNECT_TIMEOUT_S),
            )
            await wait_for(lambda: "sdk" in eve.remote_participants, what="eve sees sdk")
            await asyncio.sleep(1.0)
            await p.sdk.local_participant.publish_data(b"first", topic="t")
            failed = ("sdk", int(rtc.EncryptionState.DECRYPTION_FAILED))
            await _until(lambda: failed in p.lk_states, "decryption failure reported")
            assert p.lk_data == []
            assert p.lk.e2ee_manager.key_provider is not None
            p.lk.e2ee_manager.key_provider.set_shared_key(KEY, 0)
            await p.sdk.local_participant.publish_data(b"second", topic="t")
            await _until(lambda: (b"second", "t") in p.lk_data, "recovered with the right key")
            assert p.lk_states[-1] == ("sdk", int(rtc.EncryptionState.OK))
            # A participant without encryption gets nothing (not ciphertext as data).
            await asyncio.sleep(1.0)
            assert eve_data == []
        finally:
            await disconnect_all(eve)


async def test_ratchet_mid_call_and_per_participant_keys(livekit_server: LocalServer) -> None:
    async with _pair(livekit_server) as p:
        sdk_provider = p.sdk.e2ee_manager.key_provider
        lk_provider = p.lk.e2ee_manager.key_provider
        assert sdk_provider is not None
        assert lk_provider is not None
        # The official SDK ratchets alone: we follow within the ratchet window.
        new = sdk_provider.ratchet_shared_key(0)
        await p.sdk.local_participant.publish_data(b"after their ratchet", topic="r")
        await _until(lambda: (b"after their ratchet", "r") in p.lk_data, "we follow")
        assert lk_provider.export_shared_key(0) == new
        # Both ratchet once more: same material, traffic both ways continues.
        assert lk_provider.ratchet_shared_key(0) == sdk_provider.ratchet_shared_key(0)
        await p.lk.local_participant.publish_data(b"both ratcheted", topic="r")
        await _until(lambda: (b"both ratcheted", "r") in p.sdk_data, "they follow")


async def test_per_participant_keys(livekit_server: LocalServer) -> None:
    async with _pair(livekit_server, lk_key=None, sdk_key=None) as p:
        lk_keys, sdk_keys = p.lk.e2ee_manager.key_provider, p.sdk.e2ee_manager.key_provider
        assert lk_keys is not None
        assert sdk_keys is not None
        for keys in (lk_keys, sdk_keys):
            keys.set_key("lk", b"key of lk", 0)
            keys.set_key("sdk", b"key of sdk", 0)
        await p.lk.local_participant.publish_data(b"per-participant from lk", topic="k")
        await p.sdk.local_participant.publish_data(b"per-participant from sdk", topic="k")
        await _until(lambda: (b"per-participant from lk", "k") in p.sdk_data, "sdk reads ours")
        await _until(lambda: (b"per-participant from sdk", "k") in p.lk_data, "we read sdk's")
        assert p.wire.clear_payloads() == []
