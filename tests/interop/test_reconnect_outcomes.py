"""Data streams and RPCs that straddle a full reconnect (issue 15 item 2), against a real
livekit-server and the official Python SDK.

The outcomes proved here are documented in docs/reference/failure-behaviour.md ("Streams and
RPCs across a full reconnect"); the rules are lkproto.core.streams ("Full reconnect") and
lkproto.core.rpc. A full reconnect is forced with ``simulate_scenario(SIMULATE_FULL_RECONNECT)``
on one side (a new session and a new participant SID, not a resume). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.asyncio.signal import Transport, open_transport
from lkproto.core.rpc import RpcError, RpcErrorCode
from lkproto.core.streams import StreamErrorKind
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    RECONNECT_TIMEOUT_S,
    connect_official,
    connect_ours,
    disconnect_all,
    unique_room,
    wait_for,
)

pytestmark = pytest.mark.interop

FULL = rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT
CHUNK = 15_000
# Pieces the writer sends, one every PACE_S: the transfer outlasts the reconnect (~1-3 s).
PIECES = 400
PACE_S = 0.02
# The reader's outcome must come within this after the reconnect: the 10 s grace of
# core.streams plus room for a loaded machine, far below the 120 s stream timeout.
OUTCOME_S = 30.0
# An RPC's own response timeout; the reconnect must end the call long before it.
RPC_TIMEOUT_S = 60.0
RPC_OUTCOME_S = 25.0


@dataclass
class _Read:
    """What one incoming stream's reader got."""

    data: bytearray = field(default_factory=bytearray)
    error: BaseException | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    first: asyncio.Event = field(default_factory=asyncio.Event)


def _collect(room: rtc.Room, topic: str) -> list[_Read]:
    reads: list[_Read] = []
    tasks: set[asyncio.Task[None]] = set()

    async def consume(reader: rtc.ByteStreamReader, read: _Read) -> None:
        try:
            async for piece in reader:
                read.data.extend(piece)
                read.first.set()
        except Exception as exc:  # the outcome under test
            read.error = exc
        finally:
            read.done.set()

    def handler(reader: rtc.ByteStreamReader, _identity: str) -> None:
        read = _Read()
        reads.append(read)
        task = asyncio.get_running_loop().create_task(consume(reader, read))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_byte_stream_handler(topic, handler)
    return reads


async def _write_paced(writer: lrtc.ByteStreamWriter | rtc.ByteStreamWriter, data: bytes) -> None:
    for offset in range(0, len(data), CHUNK):
        await writer.write(data[offset : offset + CHUNK])
        await asyncio.sleep(PACE_S)
    await writer.aclose()


async def _reconnect(room: rtc.Room | lrtc.Room) -> None:
    """Force a full reconnect of ``room`` and wait until it is connected again."""
    old_sid = room.local_participant.sid
    if isinstance(room, rtc.Room):
        await asyncio.wait_for(room.simulate_scenario(FULL), scaled(CONNECT_TIMEOUT_S))
    else:
        scenario = lrtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT
        await asyncio.wait_for(room.simulate_scenario(scenario), scaled(CONNECT_TIMEOUT_S))
    await wait_for(
        lambda: (
            room.local_participant.sid not in ("", old_sid)
            and int(room.connection_state) == int(rtc.ConnectionState.CONN_CONNECTED)
        ),
        RECONNECT_TIMEOUT_S,
        "a new session after the full reconnect",
    )


@contextlib.asynccontextmanager
async def _rooms(
    server: LocalServer, prefix: str, *, official: bool = True
) -> AsyncIterator[tuple[rtc.Room, rtc.Room | lrtc.Room]]:
    """Us (``lk``) and a peer (``sdk``: the official SDK, or a second lkproto room)."""
    name = unique_room(prefix)
    ours = rtc.Room()
    peer: rtc.Room | lrtc.Room = lrtc.Room() if official else rtc.Room()
    try:
        await connect_ours(server, "lk", name, room=ours)
        if isinstance(peer, lrtc.Room):
            await connect_official(server, "sdk", name, room=peer)
        else:
            await connect_ours(server, "sdk", name, room=peer)
        await wait_for(lambda: "sdk" in ours.remote_participants, what="we see sdk")
        await wait_for(lambda: "lk" in peer.remote_participants, what="sdk sees us")
        yield ours, peer
    finally:
        await disconnect_all(ours, peer)


def _kind(read: _Read) -> StreamErrorKind | None:
    error = read.error
    assert error is None or isinstance(error, rtc.StreamError), repr(error)
    return None if error is None else error.kind


# -- data streams ------------------------------------------------------------------------------


# livekit-server replays about the last 2 s of reliable data to a participant that rejoins
# (core/reconnect.py receivers_ready), and our receiver drops what it already had by sequence: a
# quick full reconnect may therefore lose nothing. Holding our rejoin longer than that window
# makes the loss certain.
REJOIN_HOLD_S = 4.0


@pytest.mark.parametrize("hold_s", [0.0, REJOIN_HOLD_S], ids=["quick", "held-4s"])
async def test_our_full_reconnect_completes_or_fails_an_incoming_stream_with_reconnected(
    livekit_server: LocalServer, monkeypatch: pytest.MonkeyPatch, hold_s: float
) -> None:
    """The official SDK keeps writing while we do a full reconnect. What the server forwarded
    to our old session while we were away is gone unless its replay covers it: the reader gets
    every byte or fails with RECONNECTED; with the rejoin held past the replay window, it
    fails with RECONNECTED."""
    opened: list[str] = []

    async def held_open(url: str, token: str, timeout_s: float) -> Transport:
        opened.append(url)
        if len(opened) > 1:
            await asyncio.sleep(hold_s)  # our rejoin: the outage outlasts the server's replay
        return await open_transport(url, token, timeout_s)

    monkeypatch.setattr(en, "open_transport", held_open)
    async with _rooms(livekit_server, "straddle-rx") as (ours, sdk):
        reads = _collect(ours, "straddle")
        data = os.urandom(PIECES * CHUNK)
        writer = await sdk.local_participant.stream_bytes(
            "s.bin", total_size=len(data), topic="straddle"
        )
        sending = asyncio.ensure_future(_write_paced(writer, data))
        try:
            await wait_for(lambda: bool(reads) and reads[0].first.is_set(), what="first data")
            await _reconnect(ours)
            async with asyncio.timeout(scaled(OUTCOME_S + PIECES * PACE_S)):
                await reads[0].done.wait()
            kind = _kind(reads[0])
            print(f"outcome: {kind} after {len(reads[0].data)} of {len(data)} bytes")
            if hold_s:
                assert len(opened) == 2
                assert kind is StreamErrorKind.RECONNECTED
            if kind is None:
                assert bytes(reads[0].data) == data
            else:
                assert kind is StreamErrorKind.RECONNECTED
                # What it did hand out is a prefix of what was sent, never foreign bytes.
                assert bytes(reads[0].data) == data[: len(reads[0].data)]
        finally:
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending


@pytest.mark.parametrize("official", [True, False], ids=["official-sender", "lkproto-sender"])
async def test_sender_full_reconnect_completes_or_fails_with_reconnected(
    livekit_server: LocalServer, official: bool
) -> None:
    """The sender does a full reconnect mid-stream. Our reader either gets every byte, in
    order, or fails with RECONNECTED, within the grace; never SENDER_LEFT, never a hang, never
    corrupt data. (lkproto's writer resends what its old association never delivered.)"""
    async with _rooms(livekit_server, "straddle-tx", official=official) as (ours, peer):
        reads = _collect(ours, "straddle")
        data = os.urandom(PIECES * CHUNK)
        writer = await peer.local_participant.stream_bytes(
            "s.bin", total_size=len(data), topic="straddle"
        )
        sending = asyncio.ensure_future(_write_paced(writer, data))
        try:
            await wait_for(lambda: bool(reads) and reads[0].first.is_set(), what="first data")
            await _reconnect(peer)
            async with asyncio.timeout(scaled(OUTCOME_S + PIECES * PACE_S)):
                await reads[0].done.wait()
            kind = _kind(reads[0])
            print(f"outcome: {kind} after {len(reads[0].data)} of {len(data)} bytes")
            if kind is None:
                assert bytes(reads[0].data) == data
            else:
                assert kind is StreamErrorKind.RECONNECTED
                assert bytes(reads[0].data) == data[: len(reads[0].data)]
        finally:
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending


# -- RPC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["caller", "callee"])
async def test_a_full_reconnect_fails_a_pending_call_with_recipient_disconnected(
    livekit_server: LocalServer, who: str
) -> None:
    """Our call is pending at the official SDK's slow handler; then we (the caller) or the
    callee do a full reconnect: the call fails with 1503 long before its response timeout."""
    async with _rooms(livekit_server, f"rpc-{who}") as (ours, sdk):
        started = asyncio.Event()

        async def slow(_data: lrtc.RpcInvocationData) -> str:
            started.set()
            await asyncio.sleep(scaled(RPC_TIMEOUT_S))
            return "late"

        assert isinstance(sdk, lrtc.Room)
        sdk.local_participant.register_rpc_method("slow", slow)
        call = asyncio.ensure_future(
            ours.local_participant.perform_rpc(
                destination_identity="sdk",
                method="slow",
                payload="x",
                response_timeout=RPC_TIMEOUT_S,
            )
        )
        try:
            async with asyncio.timeout(scaled(CONNECT_TIMEOUT_S)):
                await started.wait()
            await _reconnect(ours if who == "caller" else sdk)
            async with asyncio.timeout(scaled(RPC_OUTCOME_S)):
                with pytest.raises(RpcError) as info:
                    await call
            assert info.value.code == RpcErrorCode.RECIPIENT_DISCONNECTED
        finally:
            call.cancel()


@pytest.mark.parametrize("who", ["caller", "callee"])
async def test_our_handler_is_cancelled_when_its_answer_cannot_arrive(
    livekit_server: LocalServer, who: str
) -> None:
    """Our handler runs; then the caller (official SDK) or we do a full reconnect. The caller's
    session that asked is gone, so the chain is cancelled with RECIPIENT_DISCONNECTED."""
    async with _rooms(livekit_server, f"rpc-handler-{who}") as (ours, sdk):
        started = asyncio.Event()
        ended = asyncio.Event()
        reasons: list[RpcErrorCode | None] = []

        async def slow(data: rtc.RpcInvocationData) -> str:
            started.set()
            try:
                await asyncio.sleep(scaled(RPC_TIMEOUT_S))
            finally:
                reasons.append(data.cancel_reason)
                ended.set()
            return "late"

        ours.local_participant.register_rpc_method("slow", slow)
        call = asyncio.ensure_future(
            sdk.local_participant.perform_rpc(
                destination_identity="lk",
                method="slow",
                payload="x",
                response_timeout=RPC_TIMEOUT_S,
            )
        )
        try:
            async with asyncio.timeout(scaled(CONNECT_TIMEOUT_S)):
                await started.wait()
            await _reconnect(sdk if who == "caller" else ours)
            async with asyncio.timeout(scaled(RPC_OUTCOME_S)):
                await ended.wait()
            assert reasons == [RpcErrorCode.RECIPIENT_DISCONNECTED]
        finally:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
