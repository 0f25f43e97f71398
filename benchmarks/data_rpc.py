"""RPC round trips and reliable data throughput: lkproto against the official SDK, same run.

Run from the repository root::

    .venv/bin/python benchmarks/data_rpc.py [--calls 1000] [--packets 10000] [--rounds 3]

It starts its own loopback livekit-server (:class:`lkproto.testing.LocalServer`) and joins every
participant of a section into one room, so the SDKs share the server, the process and the event
loop, and are measured interleaved. lkproto joins with
``RoomOptions(rtc_config=RtcConfiguration(ice_addresses=["127.0.0.1"]))``, the official SDK
(``livekit`` over its Rust FFI) with ``RtcConfiguration(ice_servers=[])`` (= the server's list,
which LocalServer points at an unused loopback port). Times are ``time.perf_counter`` wall times.

What each number measures
-------------------------
RPC round trip (``rpc``)
    One room holds two callees (one per SDK, each registering an echo method) and two callers (one
    per SDK). A row is one caller → callee pair: ``await local_participant.perform_rpc(...)`` with
    a 16-byte payload, from the call to the returned response (request → callee ack → handler →
    response, all through the server). ``--warmup-calls`` untimed calls per pair, then
    ``--calls`` timed calls per pair, sequential, in blocks of ``--block`` calls; the pair that
    goes first rotates from block to block. The ratio compares the two callers against the same
    callee (p50 and mean of lkproto / official). Both SDKs advertise ``client_protocol`` 2 by
    default, so every pair uses RPC v2 (request and response as ``lk.rpc_*`` text streams, the
    ack as a packet; PROTOCOL-MAP §6); ``--lkproto-client-protocol 0`` makes the pairs with an
    lkproto participant use RPC v1 packets. The JSON records what each participant advertised.

    ``--rpc-placement`` decides where the four participants run. ``same`` (the shape of every
    run before issue 18's third round): all four share this process and its event loop, so an
    lkproto caller's loop also carries the official callee's FFI event traffic, and both
    callers' Python work queues behind the callees'. ``own``: each caller and each callee is a
    child process of its own (``--serve-rpc``), driven block by block over its pipes (nothing
    crosses a pipe during a block); a caller's process then does only its own calls, as in a
    deployment, and reports the CPU time it used (``time.process_time``: every thread of the
    process, so the official SDK's Rust threads count) per call. ``both`` (default) runs
    ``same`` and then ``own`` against the same server, one room each.

Reliable 1 KB packets one way (``data``)
    One room holds two receivers and two senders (one of each per SDK). A row is one sender →
    receiver pair: ``--packets`` user packets with a 1,024-byte payload, ``reliable=True``,
    ``destination_identities=[receiver]``, sent by a loop of ``await publish_data(...)`` (nothing
    else: as fast as the SDK lets the caller go). Time runs from just before the first send to the
    moment the receiver's ``data_received`` handler sees the last missing packet. Each payload
    starts with the burst id and the packet index, so the receiver counts lost, duplicated and
    out-of-order packets exactly (out of order: not the successor of the highest index seen).
    ``--rounds`` bursts per pair, the pair order rotating per round; the table shows the median
    round and the lost/duplicated/out-of-order counts summed over all rounds. ``send loop`` is
    the time the sender's loop took (the SDK accepted every packet); the rest is draining queues.

    ``--receivers`` places each receiver in the senders' process (``same``: one event loop does
    both ends, as in a test suite), in a child process of its own (``own``: the sender's process
    only sends, as in a deployment; ``time.perf_counter`` is CLOCK_MONOTONIC, so receipt times
    compare across processes), or ``both`` (default: one receiver per SDK and placement, 8 rows).

Everything (server, SDKs, receivers) shares the machine's CPUs, so the throughput rows measure CPU
per packet as much as anything: the JSON records the load average before and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import struct
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _common import machine_info, percentile, utc_now, write_json
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import DEFAULT_LIVEKIT_SERVER_VERSION, LocalServer

DEFAULT_CALLS: Final = 1000
DEFAULT_WARMUP_CALLS: Final = 50
DEFAULT_BLOCK: Final = 50
DEFAULT_PACKETS: Final = 10_000
DEFAULT_ROUNDS: Final = 3
DEFAULT_WARMUP_PACKETS: Final = 500
DEFAULT_TIMEOUT_S: Final = 30.0
# A burst is over once every packet arrived, or nothing new arrived for this long.
IDLE_LIMIT_S: Final = 10.0
DEFAULT_JSON: Final = Path(__file__).parent / "results" / "data_rpc.json"

SDKS: Final = ("lkproto", "official")
RPC_METHOD: Final = "bench.echo"
RPC_PAYLOAD: Final = "0123456789abcdef"
PACKET_BYTES: Final = 1024
_THIS_FILE: Final = str(Path(__file__).resolve())
_HEADER: Final = struct.Struct(">II")  # burst id, packet index
_PADDING: Final = bytes(PACKET_BYTES - _HEADER.size)

Room = Any  # lkproto.rtc.Room | livekit.rtc.Room: the same duck-typed surface


# -- joining ---------------------------------------------------------------------------------


async def join(
    server: LocalServer,
    sdk: str,
    identity: str,
    room_name: str,
    limit_s: float,
    *,
    client_protocol: int | None = None,
) -> Room:
    """Connect one participant; ``client_protocol`` is lkproto's (None: its default)."""
    token = server.create_token(identity, room_name)
    room: Room
    if sdk == "lkproto":
        room = rtc.Room()
        options: Any = rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
            client_protocol=client_protocol,
        )
    else:
        room = lrtc.Room()
        options = lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[]))
    await asyncio.wait_for(room.connect(server.url, token, options), limit_s)
    return room


async def wait_for_peers(rooms: dict[str, Room], limit_s: float) -> None:
    """Until every room lists every other identity (subscribe-only updates come every 3 s)."""
    deadline = time.monotonic() + limit_s
    while True:
        missing = [
            (me, other)
            for me, room in rooms.items()
            for other in rooms
            if other != me and other not in room.remote_participants
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"participants never saw each other: {missing}")
        await asyncio.sleep(0.05)


async def leave(rooms: dict[str, Room], limit_s: float) -> None:
    for room in rooms.values():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(room.disconnect(), limit_s)


# -- RPC -------------------------------------------------------------------------------------


RPC_PLACEMENTS: Final = {
    "same": ("same process",),
    "own": ("own processes",),
    "both": ("same process", "own processes"),
}
"""``--rpc-placement``: where the RPC participants run (module docstring)."""


@dataclass(slots=True)
class RpcRow:
    caller: str
    callee: str
    placement: str = "same process"  # or "own processes" (RPC_PLACEMENTS)
    samples_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    client_protocols: dict[str, int] = field(default_factory=dict)
    """``ParticipantInfo.client_protocol`` of caller and callee (>= 1: RPC v2 over streams)."""
    cpu_s: float = 0.0
    """CPU time the caller's process used during the timed calls ("own processes" only)."""


def advertised_client_protocols(rooms: dict[str, Room]) -> dict[str, int]:
    """What each participant advertised, as an lkproto room sees it (decides RPC v1 or v2)."""
    seen: dict[str, int] = {}
    for room in rooms.values():
        seen.update(_protocols_seen(room))
    return seen


async def _echo(data: Any) -> str:
    return str(data.payload)


def _protocols_seen(room: Room) -> dict[str, int]:
    if not isinstance(room, rtc.Room):
        return {}
    return {
        identity: int(getattr(participant.info, "client_protocol", 0))
        for identity, participant in room.remote_participants.items()
    }


async def _call(room: Room, callee: str, limit_s: float) -> float:
    t0 = time.perf_counter()
    response = await asyncio.wait_for(
        room.local_participant.perform_rpc(
            destination_identity=callee, method=RPC_METHOD, payload=RPC_PAYLOAD
        ),
        limit_s,
    )
    t1 = time.perf_counter()
    if response != RPC_PAYLOAD:
        raise AssertionError(f"wrong RPC response {response!r}")
    return (t1 - t0) * 1000


RPC_IDENTITIES: Final = {
    "callee-official": "official",
    "callee-lkproto": "lkproto",
    "caller-lkproto": "lkproto",
    "caller-official": "official",
}
RPC_CALLEES: Final = ("callee-official", "callee-lkproto")


def _rpc_rows(placement: str, protocols: Mapping[str, int]) -> list[RpcRow]:
    return [
        RpcRow(
            caller=caller,
            callee=callee,
            placement=placement,
            client_protocols={
                who: protocols[who] for who in (f"caller-{caller}", callee) if who in protocols
            },
        )
        for callee in RPC_CALLEES
        for caller in SDKS
    ]


async def run_rpc(
    server: LocalServer,
    calls: int,
    warmup: int,
    block: int,
    limit_s: float,
    *,
    client_protocol: int | None = None,
) -> list[RpcRow]:
    """Every participant in this process and its event loop ("same process")."""
    room_name = f"bench-rpc-{uuid.uuid4().hex[:8]}"
    rooms: dict[str, Room] = {}
    try:
        for identity, sdk in RPC_IDENTITIES.items():
            rooms[identity] = await join(
                server, sdk, identity, room_name, limit_s, client_protocol=client_protocol
            )
        for callee in RPC_CALLEES:
            rooms[callee].local_participant.register_rpc_method(RPC_METHOD, _echo)
        await wait_for_peers(rooms, limit_s)
        rows = _rpc_rows("same process", advertised_client_protocols(rooms))
        for row in rows:
            for _ in range(warmup):
                await _call(rooms[f"caller-{row.caller}"], row.callee, limit_s)
        gc.collect()
        done = 0
        turn = 0
        while done < calls:
            n = min(block, calls - done)
            order = rows[turn % len(rows) :] + rows[: turn % len(rows)]
            for row in order:
                caller = rooms[f"caller-{row.caller}"]
                for _ in range(n):
                    try:
                        row.samples_ms.append(await _call(caller, row.callee, limit_s))
                    except Exception as exc:  # a failed call is counted, not fatal
                        row.errors.append(repr(exc))
            done += n
            turn += 1
        return rows
    finally:
        await leave(rooms, limit_s)


async def run_rpc_own(
    server: LocalServer,
    calls: int,
    warmup: int,
    block: int,
    limit_s: float,
    *,
    client_protocol: int | None = None,
) -> list[RpcRow]:
    """Every participant in a child process of its own ("own processes", ``--serve-rpc``).

    The same rows, warm-up and block rotation as :func:`run_rpc`; each block is one command to
    the caller's process, which makes its calls back to back and returns their times.
    """
    room_name = f"bench-rpc-own-{uuid.uuid4().hex[:8]}"
    peers: dict[str, ChildRpcPeer] = {}
    try:
        for identity, sdk in RPC_IDENTITIES.items():
            peers[identity] = await ChildRpcPeer.start(
                server, sdk, identity, room_name, limit_s, client_protocol=client_protocol
            )
        protocols: dict[str, int] = {}
        for identity, peer in peers.items():
            protocols.update(await peer.see([other for other in peers if other != identity]))
        rows = _rpc_rows("own processes", protocols)
        for row in rows:
            if warmup:
                await peers[f"caller-{row.caller}"].calls(row.callee, warmup, limit_s)
        done = 0
        turn = 0
        while done < calls:
            n = min(block, calls - done)
            order = rows[turn % len(rows) :] + rows[: turn % len(rows)]
            for row in order:
                samples, errors, cpu_s = await peers[f"caller-{row.caller}"].calls(
                    row.callee, n, limit_s
                )
                row.samples_ms += samples
                row.errors += errors
                row.cpu_s += cpu_s
            done += n
            turn += 1
        return rows
    finally:
        for peer in peers.values():
            await peer.close()


# -- child processes -------------------------------------------------------------------------


class ChildProcess:
    """A participant in a child process of this script, driven by JSON lines on its pipes.

    ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, so the child's times compare with ours.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    async def _spawn(cls, flag: str, spec: Mapping[str, object], limit_s: float) -> Any:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            _THIS_FILE,
            flag,
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = cls(proc)
        try:
            await child._reply(limit_s)  # {"ready": ...}
        except BaseException:
            await child.close()
            raise
        return child

    async def _send(self, message: dict[str, object]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self._proc.stdin.drain()

    async def _reply(self, limit_s: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), limit_s)
        if not line:
            raise RuntimeError(f"child process exited ({await self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"child process: {reply['error']}")
        return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._send({"quit": True})
            await asyncio.wait_for(self._proc.wait(), DEFAULT_TIMEOUT_S)
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()


class ChildRpcPeer(ChildProcess):
    """An RPC caller or callee (by its identity's prefix) in a child process (``--serve-rpc``)."""

    @classmethod
    async def start(
        cls,
        server: LocalServer,
        sdk: str,
        identity: str,
        room_name: str,
        limit_s: float,
        *,
        client_protocol: int | None = None,
    ) -> ChildRpcPeer:
        spec = {
            "url": server.url,
            "token": server.create_token(identity, room_name),
            "sdk": sdk,
            "callee": identity.startswith("callee-"),
            "client_protocol": client_protocol,
        }
        peer: ChildRpcPeer = await cls._spawn("--serve-rpc", spec, limit_s)
        return peer

    async def see(self, identities: list[str]) -> dict[str, int]:
        """Wait until the child's room lists ``identities``; the client protocols it saw."""
        await self._send({"see": identities})
        reply = await self._reply(DEFAULT_TIMEOUT_S)
        return {str(k): int(v) for k, v in reply["protocols"].items()}

    async def calls(
        self, callee: str, n: int, limit_s: float
    ) -> tuple[list[float], list[str], float]:
        """``n`` sequential calls to ``callee``: their times (ms), failures, and CPU seconds."""
        await self._send({"call": callee, "n": n, "timeout": limit_s})
        reply = await self._reply(limit_s * max(n, 1) + DEFAULT_TIMEOUT_S)
        return list(reply["samples_ms"]), list(reply["errors"]), float(reply["cpu_s"])


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(message: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _connect_child(config: Mapping[str, Any]) -> Room:
    room: Room
    if config["sdk"] == "official":
        room = lrtc.Room()
        options: Any = lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[]))
    else:
        room = rtc.Room()
        options = rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
            client_protocol=config.get("client_protocol"),
        )
    await asyncio.wait_for(room.connect(config["url"], config["token"], options), 30.0)
    return room


async def serve_rpc(spec: str) -> int:
    """The child side of :class:`ChildRpcPeer`: join, then obey commands on stdin."""
    config = json.loads(spec)
    reader = await _stdin_reader()
    room: Room = None
    try:
        room = await _connect_child(config)
        if config["callee"]:
            room.local_participant.register_rpc_method(RPC_METHOD, _echo)
        _say({"ready": True})
        while line := await reader.readline():
            command = json.loads(line)
            if "see" in command:
                await wait_for_identities({"me": room}, command["see"], DEFAULT_TIMEOUT_S)
                _say({"protocols": _protocols_seen(room)})
            elif "call" in command:
                samples: list[float] = []
                errors: list[str] = []
                gc.collect()
                cpu0 = time.process_time()
                for _ in range(command["n"]):
                    try:
                        samples.append(await _call(room, command["call"], command["timeout"]))
                    except Exception as exc:  # a failed call is counted, not fatal
                        errors.append(repr(exc))
                cpu_s = time.process_time() - cpu0
                _say({"samples_ms": samples, "errors": errors, "cpu_s": cpu_s})
            else:
                break
    except Exception as exc:
        _say({"error": repr(exc)})
        return 1
    finally:
        if room is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 10.0)
    return 0


# -- reliable data ---------------------------------------------------------------------------


@dataclass(slots=True)
class Burst:
    """What one receiver saw of one burst."""

    burst_id: int
    expected: int
    seen: bytearray
    unique: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    highest: int = -1
    last_receipt: float = 0.0
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, index: int, now: float) -> None:
        if not 0 <= index < self.expected:
            self.out_of_order += 1  # nonsense index: count it as a delivery error
            return
        if self.seen[index]:
            self.duplicates += 1
            return
        self.seen[index] = 1
        self.unique += 1
        if index != self.highest + 1:
            self.out_of_order += 1
        self.highest = max(self.highest, index)
        self.last_receipt = now
        if self.unique == self.expected:
            self.complete.set()

    async def settle(self) -> dict[str, float | int]:
        """Wait until every packet arrived or none arrived for IDLE_LIMIT_S; the tally."""
        while not self.complete.is_set():
            before = self.unique
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.complete.wait(), IDLE_LIMIT_S)
            if self.unique == before:
                break
        return {
            "unique": self.unique,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "last_receipt": self.last_receipt,
        }


@dataclass(slots=True)
class Receiver:
    """A receiver in this process: routes ``data_received`` packets of the current burst."""

    current: Burst | None = None
    foreign: int = 0

    def on_data(self, packet: Any) -> None:
        now = time.perf_counter()
        data: bytes = packet.data
        burst = self.current
        if burst is None or len(data) != PACKET_BYTES:
            self.foreign += 1
            return
        burst_id, index = _HEADER.unpack_from(data)
        if burst_id != burst.burst_id:
            self.foreign += 1
            return
        burst.receive(index, now)

    async def arm(self, burst_id: int, packets: int) -> None:
        self.current = Burst(burst_id=burst_id, expected=packets, seen=bytearray(packets))

    async def result(self) -> dict[str, float | int]:
        burst = self.current
        assert burst is not None
        try:
            return await burst.settle()
        finally:
            self.current = None

    async def close(self) -> None:
        pass


class ChildReceiver(ChildProcess):
    """A receiver in a child process (``--serve-receiver``), driven by JSON lines on its pipes."""

    @classmethod
    async def start(
        cls, server: LocalServer, sdk: str, identity: str, room_name: str, limit_s: float
    ) -> ChildReceiver:
        spec = {"url": server.url, "token": server.create_token(identity, room_name), "sdk": sdk}
        child: ChildReceiver = await cls._spawn("--serve-receiver", spec, limit_s)
        return child

    async def arm(self, burst_id: int, packets: int) -> None:
        await self._send({"arm": burst_id, "packets": packets})
        await self._reply(DEFAULT_TIMEOUT_S)

    async def result(self) -> dict[str, float | int]:
        await self._send({"result": True})
        return await self._reply(3600.0)


async def serve_receiver(spec: str) -> int:
    """The child side of :class:`ChildReceiver`: join, then obey commands on stdin."""
    config = json.loads(spec)
    reader = await _stdin_reader()
    say = _say
    receiver = Receiver()
    room: Room = None
    try:
        room = await _connect_child(config)
        room.on("data_received", receiver.on_data)
        say({"ready": True})
        while line := await reader.readline():
            command = json.loads(line)
            if "arm" in command:
                await receiver.arm(command["arm"], command["packets"])
                say({"armed": command["arm"]})
            elif "result" in command:
                say(await receiver.result())
            else:
                break
    except Exception as exc:
        say({"error": repr(exc)})
        return 1
    finally:
        if room is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 10.0)
    return 0


ReceiverLike = Receiver | ChildReceiver


@dataclass(slots=True)
class BurstResult:
    packets: int
    received: int
    lost: int
    duplicates: int
    out_of_order: int
    send_loop_s: float
    total_s: float

    @property
    def packets_per_s(self) -> float:
        return self.received / self.total_s if self.total_s > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "packets": self.packets,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "send_loop_s": round(self.send_loop_s, 4),
            "total_s": round(self.total_s, 4),
            "packets_per_s": round(self.packets_per_s, 1),
        }


@dataclass(slots=True)
class DataRow:
    sender: str
    receiver: str
    placement: str  # "same process" or "own process" (the receiver's)
    bursts: list[BurstResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


_burst_ids = iter(range(1, 2**32))


async def burst(
    sender: Room, receiver_identity: str, receiver: ReceiverLike, packets: int
) -> BurstResult:
    burst_id = next(_burst_ids)
    await receiver.arm(burst_id, packets)
    publish: Callable[..., Any] = sender.local_participant.publish_data
    destinations = [receiver_identity]
    pack = _HEADER.pack
    payloads = [pack(burst_id, i) + _PADDING for i in range(packets)]
    gc.collect()
    t0 = time.perf_counter()
    for payload in payloads:
        await publish(payload, reliable=True, destination_identities=destinations)
    t_sent = time.perf_counter()
    tally = await receiver.result()
    unique = int(tally["unique"])
    end = float(tally["last_receipt"]) if unique else time.perf_counter()
    return BurstResult(
        packets=packets,
        received=unique,
        lost=packets - unique,
        duplicates=int(tally["duplicates"]),
        out_of_order=int(tally["out_of_order"]),
        send_loop_s=t_sent - t0,
        total_s=end - t0,
    )


PLACEMENTS: Final = {
    "same": ("same process",),
    "own": ("own process",),
    "both": ("same process", "own process"),
}


async def run_data(
    server: LocalServer,
    packets: int,
    rounds: int,
    warmup: int,
    limit_s: float,
    *,
    placements: Sequence[str],
) -> list[DataRow]:
    room_name = f"bench-data-{uuid.uuid4().hex[:8]}"
    rooms: dict[str, Room] = {}
    receivers: dict[tuple[str, str], ReceiverLike] = {}
    try:
        for rx_sdk in ("official", "lkproto"):  # the official receiver rows first
            for placement in placements:
                identity = f"rx-{rx_sdk}-{'child' if placement == 'own process' else 'local'}"
                if placement == "own process":
                    receivers[(identity, placement)] = await ChildReceiver.start(
                        server, rx_sdk, identity, room_name, limit_s
                    )
                else:
                    local = Receiver()
                    rooms[identity] = await join(server, rx_sdk, identity, room_name, limit_s)
                    rooms[identity].on("data_received", local.on_data)
                    receivers[(identity, placement)] = local
        for tx_sdk in SDKS:
            rooms[f"tx-{tx_sdk}"] = await join(server, tx_sdk, f"tx-{tx_sdk}", room_name, limit_s)
        await wait_for_peers(rooms, limit_s)
        senders = {k: v for k, v in rooms.items() if k.startswith("tx-")}
        everyone = [identity for identity, _ in receivers] + list(senders)
        await wait_for_identities(senders, everyone, limit_s)
        rows = [
            DataRow(sender=tx, receiver=identity, placement=placement)
            for (identity, placement) in receivers
            for tx in SDKS
        ]
        for row in rows:
            if warmup:
                await burst(
                    rooms[f"tx-{row.sender}"],
                    row.receiver,
                    receivers[(row.receiver, row.placement)],
                    warmup,
                )
        for i in range(rounds):
            order = rows[i % len(rows) :] + rows[: i % len(rows)]
            for row in order:
                try:
                    result = await burst(
                        rooms[f"tx-{row.sender}"],
                        row.receiver,
                        receivers[(row.receiver, row.placement)],
                        packets,
                    )
                except Exception as exc:  # a failed burst is counted, not fatal
                    row.errors.append(f"round {i}: {exc!r}")
                else:
                    row.bursts.append(result)
                await asyncio.sleep(0.5)  # let queues and the server settle
        return rows
    finally:
        for receiver in receivers.values():
            await receiver.close()
        await leave(rooms, limit_s)


async def wait_for_identities(
    rooms: dict[str, Room], identities: list[str], limit_s: float
) -> None:
    """Until each room lists every identity but its own."""
    deadline = time.monotonic() + limit_s
    while any(
        other != me and other not in room.remote_participants
        for me, room in rooms.items()
        for other in identities
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("senders never saw every receiver")
        await asyncio.sleep(0.05)


# -- report ----------------------------------------------------------------------------------


def _sdk(identity: str) -> str:
    return identity.split("-")[1]


def rpc_report(rows: Sequence[RpcRow]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    by_pair = {(r.caller, r.callee, r.placement): r for r in rows}
    for row in rows:
        s = row.samples_ms
        entry: dict[str, object] = {
            "caller": row.caller,
            "callee": _sdk(row.callee),
            "placement": row.placement,
            "client_protocols": row.client_protocols,
            "n": len(s),
            "failed": len(row.errors),
        }
        if s:
            entry.update(
                p50_ms=percentile(s, 50),
                p99_ms=percentile(s, 99),
                mean_ms=statistics.fmean(s),
                min_ms=min(s),
                max_ms=max(s),
            )
            if row.placement == "own processes":
                entry["caller_cpu_ms_per_call"] = row.cpu_s * 1000 / len(s)
        official = by_pair.get(("official", row.callee, row.placement))
        if row.caller == "lkproto" and official is not None and s and official.samples_ms:
            entry["ratio_p50_lkproto_over_official"] = percentile(s, 50) / percentile(
                official.samples_ms, 50
            )
            entry["ratio_mean_lkproto_over_official"] = statistics.fmean(s) / statistics.fmean(
                official.samples_ms
            )
        entry["samples_ms"] = [round(v, 3) for v in s]
        entry["errors"] = row.errors[:20]
        out.append(entry)
    return out


def data_report(rows: Sequence[DataRow]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for row in rows:
        bursts = row.bursts
        entry: dict[str, object] = {
            "sender": row.sender,
            "receiver": _sdk(row.receiver),
            "receiver_placement": row.placement,
            "rounds": len(bursts),
            "failed": len(row.errors),
        }
        if bursts:
            rates = [b.packets_per_s for b in bursts]
            median = sorted(bursts, key=lambda b: b.packets_per_s)[(len(bursts) - 1) // 2]
            entry.update(
                packets_per_s_median=statistics.median(rates),
                packets_per_s_min=min(rates),
                packets_per_s_max=max(rates),
                median_round=median.as_dict(),
                lost_total=sum(b.lost for b in bursts),
                duplicates_total=sum(b.duplicates for b in bursts),
                out_of_order_total=sum(b.out_of_order for b in bursts),
            )
        entry["bursts"] = [b.as_dict() for b in bursts]
        entry["errors"] = row.errors
        out.append(entry)
    return out


def markdown_table(rpc: Sequence[dict[str, Any]], data: Sequence[dict[str, Any]]) -> str:
    def f(value: object, fmt: str = ".2f") -> str:
        return format(value, fmt) if isinstance(value, float | int) else "n/a"

    lines = [
        "| RPC round trip (ms) | callee | participants run in | n | p50 | p99 | mean "
        "| lkproto/official p50 | mean | caller CPU ms/call |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rpc:
        where = "one process" if r.get("placement", "same process") == "same process" else "own"
        lines.append(
            f"| {r['caller']} caller | {r['callee']} | {where} | {r['n']} | {f(r.get('p50_ms'))} "
            f"| {f(r.get('p99_ms'))} | {f(r.get('mean_ms'))} "
            f"| {f(r.get('ratio_p50_lkproto_over_official'))}"
            f"{'x' if 'ratio_p50_lkproto_over_official' in r else ''} "
            f"| {f(r.get('ratio_mean_lkproto_over_official'))}"
            f"{'x' if 'ratio_mean_lkproto_over_official' in r else ''} "
            f"| {f(r.get('caller_cpu_ms_per_call'))} |"
        )
    lines += [
        "",
        "| reliable 1 KB one way | receiver | receiver runs in | packets x rounds "
        "| packets/s (median) | min | max | send loop (s) | total (s) "
        "| lost | dup | out of order |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in data:
        m = d.get("median_round") or {}
        where = (
            "the sender's process" if d["receiver_placement"] == "same process" else "own process"
        )
        lines.append(
            f"| {d['sender']} sender | {d['receiver']} | {where} "
            f"| {m.get('packets', 'n/a')} x {d['rounds']} "
            f"| {f(d.get('packets_per_s_median'), '.0f')} | {f(d.get('packets_per_s_min'), '.0f')} "
            f"| {f(d.get('packets_per_s_max'), '.0f')} | {f(m.get('send_loop_s'))} "
            f"| {f(m.get('total_s'))} | {d.get('lost_total', 'n/a')} "
            f"| {d.get('duplicates_total', 'n/a')} | {d.get('out_of_order_total', 'n/a')} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> tuple[list[RpcRow], list[DataRow]]:
    async with LocalServer(log_level="warn") as server:
        rpc_rows: list[RpcRow] = []
        data_rows: list[DataRow] = []
        if args.calls:
            for placement in RPC_PLACEMENTS[args.rpc_placement]:
                runner = run_rpc if placement == "same process" else run_rpc_own
                rpc_rows += await runner(
                    server,
                    args.calls,
                    args.warmup_calls,
                    args.block,
                    args.timeout,
                    client_protocol=args.lkproto_client_protocol,
                )
        if args.packets:
            data_rows = await run_data(
                server,
                args.packets,
                args.rounds,
                args.warmup_packets,
                args.timeout,
                placements=PLACEMENTS[args.receivers],
            )
    return rpc_rows, data_rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="timed RPCs per pair")
    parser.add_argument("--warmup-calls", type=int, default=DEFAULT_WARMUP_CALLS)
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="RPCs per turn")
    parser.add_argument(
        "--lkproto-client-protocol",
        type=int,
        default=None,
        help="RoomOptions.client_protocol of the lkproto RPC participants (0: RPC v1 only; "
        "default: lkproto's, 2, so pairs where both advertise >= 1 use RPC v2 streams)",
    )
    parser.add_argument(
        "--rpc-placement",
        choices=sorted(RPC_PLACEMENTS),
        default="both",
        help="RPC callers and callees all in this process (same), each in a child process of "
        "its own (own), or both, one after the other",
    )
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS, help="packets per burst")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="bursts per pair")
    parser.add_argument("--warmup-packets", type=int, default=DEFAULT_WARMUP_PACKETS)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per call, s")
    parser.add_argument(
        "--receivers",
        choices=sorted(PLACEMENTS),
        default="both",
        help="data receivers in the senders' process (same), in a child process (own), or both",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    parser.add_argument("--serve-receiver", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--serve-rpc", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_receiver or args.serve_rpc:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        if args.serve_rpc:
            return asyncio.run(serve_rpc(args.serve_rpc))
        return asyncio.run(serve_receiver(args.serve_receiver))
    if args.calls < 0 or args.packets < 0 or args.rounds < 1 or args.block < 1:
        parser.error("--calls/--packets must be >= 0, --rounds/--block >= 1")

    logging.basicConfig(level=logging.WARNING)
    started = utc_now()
    load_before = os.getloadavg()
    rpc_rows, data_rows = asyncio.run(run(args))
    load_after = os.getloadavg()
    rpc = rpc_report(rpc_rows)
    data = data_report(data_rows)
    table = markdown_table(rpc, data)
    machine = machine_info(
        {
            "livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION,
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        }
    )

    print(table)
    print()
    packages = machine["packages"]
    assert isinstance(packages, dict)
    print(
        f"RPC: {args.calls} calls per pair (+{args.warmup_calls} warm-up), blocks of {args.block}, "
        f"placement {args.rpc_placement}; "
        f"data: {args.packets} x {PACKET_BYTES} B per burst, {args.rounds} rounds "
        f"(+{args.warmup_packets}-packet warm-up); {machine['cpu_model']}, "
        f"{machine['cpu_count']} CPU, {machine['uname']}; Python {machine['python']}, "
        f"aiortc {packages['aiortc']}, livekit {packages['livekit']}, "
        f"livekit-server {DEFAULT_LIVEKIT_SERVER_VERSION}; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after"
    )
    failed = False
    for row in rpc_rows:
        for err in row.errors[:5]:
            print(
                f"rpc {row.caller}->{row.callee} ({row.placement}) failure: {err}", file=sys.stderr
            )
        failed |= bool(row.errors)
    for drow in data_rows:
        for err in drow.errors:
            print(
                f"data {drow.sender}->{drow.receiver} ({drow.placement}) failure: {err}",
                file=sys.stderr,
            )
        failed |= bool(drow.errors) or any(b.lost or b.duplicates for b in drow.bursts)

    payload = {
        "benchmark": "data_rpc",
        "started": started,
        "finished": utc_now(),
        "config": {
            "calls": args.calls,
            "warmup_calls": args.warmup_calls,
            "block": args.block,
            "rpc_payload_bytes": len(RPC_PAYLOAD),
            "lkproto_client_protocol": args.lkproto_client_protocol,
            "rpc_placement": args.rpc_placement,
            "packets": args.packets,
            "packet_payload_bytes": PACKET_BYTES,
            "rounds": args.rounds,
            "warmup_packets": args.warmup_packets,
            "receivers": args.receivers,
            "timeout_s": args.timeout,
            "lkproto_options": (
                "RoomOptions(rtc_config=RtcConfiguration(ice_addresses=['127.0.0.1']))"
            ),
            "official_options": "RoomOptions(rtc_config=RtcConfiguration(ice_servers=[]))",
        },
        "definitions": {
            "rpc": "await perform_rpc() wall time, caller -> callee echo handler -> caller, "
            "sequential; p50/p99 nearest rank; placement 'same process': all four participants "
            "on this process's event loop, 'own processes': each in a child process of its own; "
            "caller_cpu_ms_per_call: the caller process's time.process_time over the timed "
            "calls (all its threads) / calls, 'own processes' only",
            "data": "first publish_data() call to the receiver's data_received of the last "
            "missing packet; packets/s = received / that time; reliable, 1,024-byte payload, "
            "destination_identities=[receiver], sequential awaited publish_data",
        },
        "machine": machine,
        "results": {"rpc": rpc, "data": data},
        "table_markdown": table,
    }
    path = write_json(args.json, payload)
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
