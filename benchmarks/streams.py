"""Byte-stream throughput and memory: lkproto against the official SDK (PyPI ``livekit``).

Run from the repository root::

    .venv/bin/python benchmarks/streams.py [--sizes 1,10,50] [--repeats 3] [--alternate]
        [--json benchmarks/results/streams.json]

One loopback livekit-server (:class:`lkproto.testing.LocalServer`) serves the whole run. Each SDK
runs in its **own child process** (this script with ``--child lkproto|official``) that imports
only that SDK and joins two participants of the same SDK to a fresh room: ``tx`` sends, ``rx``
receives. So ``lkproto`` is lkproto->lkproto and ``official`` is official->official, and the
child's resident memory is that SDK's alone (both sides of the transfer, one interpreter).

``lkproto-split`` and ``official-split`` are the same transfers with ``rx`` and ``tx`` in **two**
child processes (``--role rx`` / ``--role tx``), as two clients on two hosts would be: each has its
own event loop and can use its own core. The parent relays ``rx``'s "stream complete" lines to
``tx``'s stdin, so ``tx`` starts the next transfer only after the last one arrived, as in the
one-process rows. Both processes stamp times with ``time.perf_counter`` (``CLOCK_MONOTONIC``, one
clock for every process of a Linux host), so the throughput is measured as in one process.

Per size (sizes are MiB: "1 MB" here is 1 048 576 bytes) and repeat, ``tx`` calls
``send_file(path, topic=..., compress=False)`` on a temporary file of incompressible
(``random.randbytes``, fixed seed) bytes; ``rx``'s byte-stream handler iterates the reader and
feeds a SHA-256 (no copy of the payload is kept). One untimed 1 MiB warm-up stream goes first (the
first transfer on a fresh connection is several times slower for both SDKs).

What each number measures
-------------------------
``MB/s``
    size / (time the last chunk reached ``rx``'s reader - time ``send_file`` was called),
    ``time.perf_counter``; the digest must match the file's, or the run fails.
``MiB per CPU-s``
    size / CPU time (user + system, all threads) the child used during the transfer, i.e. both
    sides: less sensitive to other load on the machine than wall-clock MiB/s. ``load 1m`` is the
    highest 1-minute load average seen after a transfer of that size (other jobs on the host).
    ``kernel share`` is the system part of that CPU time (``os.times``): socket calls, wake-ups.
``send s``
    how long ``await send_file(...)`` took (the sender may return before the receiver is done).
``CPU % tx / rx / server``
    CPU time (user + system) of the sending process, the receiving process and the livekit-server
    process (``/proc/<pid>/stat``, all its threads) during the transfer, as a share of the
    transfer's wall time: 100 % is one core. In the one-process rows tx and rx are the same
    process, so both columns show its total. On a 2-core machine the three together cannot
    exceed 200 %, which is where a split run's limit shows.
``peak RSS``
    the highest ``VmRSS`` of the child (of the receiving child in a split run) sampled every
    10 ms by a thread during that transfer (KiB -> MiB), and ``VmHWM`` (the kernel's high-water
    mark) at the end of the child. ``base RSS`` is ``VmRSS`` after both rooms joined, before
    the first transfer. The official SDK's figure includes its Rust FFI runtime (WebRTC,
    threads), so it is context, not a target.

``compress=False`` on both: the payload is random, so deflate would only cost CPU (both SDKs
advertise ``client_protocol`` 2 + deflate-raw and would otherwise compress); this measures the
chunked byte-stream path itself.

Targets (from the brief): >= 8 MB/s lkproto->lkproto for 10 MB; peak RSS < 120 MB for 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from _common import machine_info, summarize, utc_now, write_json

MIB: Final = 1024 * 1024
DEFAULT_SIZES: Final = "1,10,50"
DEFAULT_REPEATS: Final = 3
DEFAULT_JSON: Final = Path(__file__).parent / "results" / "streams.json"
SDKS: Final = ("lkproto", "official", "aiortc-p2p", "lkproto-split", "official-split")
"""``aiortc-p2p`` is the baseline of issue 18: stock aiortc (no lkproto seam, no server), two
``RTCPeerConnection`` objects in one process joined directly over loopback, one ordered reliable
data channel carrying the same file in 15 000-byte messages (lkproto's byte-stream chunk size)
with the same back-pressure bounds as lkproto's reliable channel (wait below 64 KiB once 1 MiB
is buffered). ``*-split`` runs the sender and the receiver of that SDK in two processes (two
event loops, as in a deployment with one client per host) instead of one."""
SPLIT_SUFFIX: Final = "-split"
TOPIC: Final = "bench"
WARMUP_BYTES: Final = MIB
TRANSFER_TIMEOUT_S: Final = 300.0
CONNECT_TIMEOUT_S: Final = 30.0
TARGET_MBPS_10: Final = 8.0
TARGET_RSS_MIB_50: Final = 120.0


# ---------------------------------------------------------------------------------------------
# child: one SDK, two participants


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples VmRSS in a thread; :meth:`reset` starts a new window, :attr:`peak_kib` its max."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))
            self._stop.wait(self.period_s)

    def reset(self) -> None:
        self.peak_kib = _status_kib("VmRSS")

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Receiver:
    """Byte-stream handler that hashes each stream and records when its last chunk arrived."""

    def __init__(self) -> None:
        self.done: asyncio.Queue[tuple[int, str, float]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, reader: Any, identity: str) -> None:
        task = asyncio.ensure_future(self._read(reader))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self, reader: Any) -> None:
        h = hashlib.sha256()
        size = 0
        async for chunk in reader:
            h.update(chunk)
            size += len(chunk)
        await self.done.put((size, h.hexdigest(), time.perf_counter()))


async def _connect(sdk: str, url: str, token: str, rx: Receiver | None) -> Any:
    if sdk == "lkproto":
        from lkproto import rtc  # each child imports only its SDK

        room: Any = rtc.Room()
        options: Any = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))
    else:
        from livekit import rtc as lrtc

        room = lrtc.Room()
        options = lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[]))
    if rx is not None:
        room.register_byte_stream_handler(TOPIC, rx)
    await asyncio.wait_for(room.connect(url, token, options), CONNECT_TIMEOUT_S)
    return room


@dataclasses.dataclass
class _Received:
    """The running digest and size of the message being received peer-to-peer."""

    digest: Any = dataclasses.field(default_factory=hashlib.sha256)
    size: int = 0


class P2pPair:
    """Stock aiortc, two peer connections in this process, one reliable ordered data channel.

    Stands in for a room: :meth:`send_file` sends a file's bytes as 15 000-byte messages and a
    zero-length message ends the file; the receiving side hashes and reports on ``rx.done`` as
    :class:`Receiver` does for a byte stream.
    """

    CHUNK_BYTES: Final = 15_000
    HIGH_WATER_BYTES: Final = 1 << 20
    LOW_WATER_BYTES: Final = 64 << 10

    def __init__(self, rx: Receiver) -> None:
        self.rx = rx
        self.local_participant = self  # so _transfer's tx.local_participant.send_file works
        self.remote_participants = {"rx": None}
        self._pcs: list[Any] = []
        self._channel: Any = None
        self._low = asyncio.Event()

    async def connect(self) -> None:
        from aiortc import RTCPeerConnection  # the child imports stock aiortc only

        tx_pc, rx_pc = RTCPeerConnection(), RTCPeerConnection()
        self._pcs = [tx_pc, rx_pc]
        channel = tx_pc.createDataChannel("bench", ordered=True)
        channel.bufferedAmountLowThreshold = self.LOW_WATER_BYTES
        channel.on("bufferedamountlow", self._low.set)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        self._channel = channel
        received = _Received()

        def on_message(data: bytes) -> None:
            if data == b"":
                self.rx.done.put_nowait(
                    (received.size, received.digest.hexdigest(), time.perf_counter())
                )
                received.digest, received.size = hashlib.sha256(), 0
            else:
                received.digest.update(data)
                received.size += len(data)

        def on_channel(remote: Any) -> None:
            remote.on("message", on_message)

        rx_pc.on("datachannel", on_channel)

        await tx_pc.setLocalDescription(await tx_pc.createOffer())
        await rx_pc.setRemoteDescription(tx_pc.localDescription)
        await rx_pc.setLocalDescription(await rx_pc.createAnswer())
        await tx_pc.setRemoteDescription(rx_pc.localDescription)
        await asyncio.wait_for(opened.wait(), CONNECT_TIMEOUT_S)

    async def send_file(self, path: str, **_: Any) -> None:
        with open(path, "rb") as f:  # noqa: ASYNC230 (a local temporary file, as send_file reads it)
            while block := f.read(self.CHUNK_BYTES):
                if self._channel.bufferedAmount > self.HIGH_WATER_BYTES:
                    self._low.clear()
                    await self._low.wait()
                self._channel.send(block)
        self._channel.send(b"")

    async def disconnect(self) -> None:
        for pc in self._pcs:
            await pc.close()


def _write_file(directory: str, size: int, seed: int) -> tuple[str, str]:
    path = os.path.join(directory, f"payload-{size}.bin")
    rnd = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rnd.randbytes(min(left, MIB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return path, h.hexdigest()


def _process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` (all its threads), 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the parenthesised command name; utime and stime are fields 14, 15.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _transfer(
    tx: Any,
    done: Callable[[], Awaitable[tuple[int, str, float, float | None]]],
    *,
    path: str,
    size: int,
    digest: str,
    server_pid: int | None,
) -> dict[str, float]:
    """One timed ``send_file``; ``done`` yields the receiver's (size, digest, time, CPU-s)."""
    c0 = time.process_time()
    times0 = os.times()
    server0 = _process_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    await asyncio.wait_for(tx.local_participant.send_file(path, topic=TOPIC, compress=False), 300)
    t_sent = time.perf_counter()
    got_size, got_digest, t_done, rx_cpu = await asyncio.wait_for(done(), TRANSFER_TIMEOUT_S)
    if (got_size, got_digest) != (size, digest):
        raise RuntimeError(f"corrupt transfer: {got_size} bytes {got_digest} != {size} {digest}")
    tx_cpu = time.process_time() - c0
    return {
        "seconds": t_done - t0,
        "send_seconds": t_sent - t0,
        "tx_cpu_seconds": tx_cpu,
        "rx_cpu_seconds": tx_cpu if rx_cpu is None else rx_cpu,
        "cpu_seconds": tx_cpu if rx_cpu is None else tx_cpu + rx_cpu,
        "server_cpu_seconds": _process_cpu_seconds(server_pid) - server0,
        "user_seconds": os.times().user - times0.user,
        "system_seconds": os.times().system - times0.system,
        "loadavg_1m": os.getloadavg()[0],
    }


def _local_done(rx: Receiver) -> Callable[[], Awaitable[tuple[int, str, float, float | None]]]:
    async def done() -> tuple[int, str, float, float | None]:
        size, digest, t_done = await rx.done.get()
        return size, digest, t_done, None  # rx is this process: its CPU is tx's

    return done


async def child_main(
    sdk: str,
    url: str,
    *,
    tx_token: str,
    rx_token: str,
    sizes: list[int],
    repeats: int,
    server_pid: int | None = None,
) -> dict[str, Any]:
    rx = Receiver()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lkproto-bench-streams-") as tmp, RssSampler() as rss:
        files = {size: _write_file(tmp, size, seed=size) for size in {*sizes, WARMUP_BYTES}}
        if sdk == "aiortc-p2p":
            pair = P2pPair(rx)
            await pair.connect()
            rx_room = tx_room = pair
        else:
            rx_room = await _connect(sdk, url, rx_token, rx)
            tx_room = await _connect(sdk, url, tx_token, None)
        try:
            # until tx sees rx (broadcast streams need a recipient)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while not tx_room.remote_participants:  # noqa: ASYNC110 (SDK state)
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            done = _local_done(rx)
            warm_path, warm_digest = files[WARMUP_BYTES]
            await _transfer(
                tx_room,
                done,
                path=warm_path,
                size=WARMUP_BYTES,
                digest=warm_digest,
                server_pid=None,
            )
            base_kib = _status_kib("VmRSS")
            for size in sizes:
                path, digest = files[size]
                for rep in range(repeats):
                    rss.reset()
                    sample = await _transfer(
                        tx_room, done, path=path, size=size, digest=digest, server_pid=server_pid
                    )
                    sample.update(size=size, repeat=rep, peak_rss_kib=rss.peak_kib)
                    results.append(sample)
                    print(
                        f"[{sdk}] {size / MIB:g} MiB #{rep}: {size / MIB / sample['seconds']:.2f}"
                        f" MiB/s, peak RSS {rss.peak_kib / 1024:.1f} MiB",
                        file=sys.stderr,
                    )
        finally:
            for room in {id(tx_room): tx_room, id(rx_room): rx_room}.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(room.disconnect(), CONNECT_TIMEOUT_S)
    return {
        "sdk": sdk,
        "base_rss_kib": base_kib,
        "vm_hwm_kib": _status_kib("VmHWM"),
        "samples": results,
    }


async def rx_main(sdk: str, url: str, *, rx_token: str, streams: int) -> dict[str, Any]:
    """The receiving process of a split run: one JSON line on stdout per complete stream."""
    rx = Receiver()
    base_kib = 0
    with RssSampler() as rss:
        room = await _connect(sdk, url, rx_token, rx)
        try:
            for index in range(streams):
                size, digest, t_done = await asyncio.wait_for(rx.done.get(), TRANSFER_TIMEOUT_S)
                line = {
                    "event": "done",
                    "size": size,
                    "digest": digest,
                    "t_done": t_done,
                    "cpu": time.process_time(),
                    "peak_rss_kib": rss.peak_kib,
                }
                print(json.dumps(line), flush=True)
                if index == 0:
                    base_kib = _status_kib("VmRSS")  # after the warm-up, as child_main
                rss.reset()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), CONNECT_TIMEOUT_S)
    return {"sdk": sdk, "base_rss_kib": base_kib, "vm_hwm_kib": _status_kib("VmHWM")}


async def tx_main(
    sdk: str, url: str, *, tx_token: str, sizes: list[int], repeats: int, server_pid: int | None
) -> dict[str, Any]:
    """The sending process of a split run: ``rx_main``'s lines arrive on stdin (the parent
    relays them), so each transfer ends when the other process has the whole stream."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    rx_cpu_mark: list[float] = []
    rx_peak_kib = [0]

    async def done() -> tuple[int, str, float, float | None]:
        line = await stdin.readline()
        if not line:
            raise RuntimeError("the receiving process ended")
        msg = json.loads(line)
        # rx's CPU since the previous stream completed: the transfer (it idles in between)
        rx_cpu = msg["cpu"] - rx_cpu_mark[-1] if rx_cpu_mark else 0.0
        rx_cpu_mark.append(msg["cpu"])
        rx_peak_kib[0] = msg["peak_rss_kib"]
        return msg["size"], msg["digest"], msg["t_done"], rx_cpu

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lkproto-bench-streams-") as tmp:
        files = {size: _write_file(tmp, size, seed=size) for size in {*sizes, WARMUP_BYTES}}
        room = await _connect(sdk, url, tx_token, None)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while not room.remote_participants:  # noqa: ASYNC110 (SDK state)
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            warm_path, warm_digest = files[WARMUP_BYTES]
            await _transfer(
                room, done, path=warm_path, size=WARMUP_BYTES, digest=warm_digest, server_pid=None
            )
            for size in sizes:
                path, digest = files[size]
                for rep in range(repeats):
                    sample = await _transfer(
                        room, done, path=path, size=size, digest=digest, server_pid=server_pid
                    )
                    sample.update(size=size, repeat=rep, peak_rss_kib=rx_peak_kib[0])
                    results.append(sample)
                    print(
                        f"[{sdk}{SPLIT_SUFFIX}] {size / MIB:g} MiB #{rep}: "
                        f"{size / MIB / sample['seconds']:.2f} MiB/s",
                        file=sys.stderr,
                    )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), CONNECT_TIMEOUT_S)
    return {"sdk": sdk + SPLIT_SUFFIX, "samples": results}


# ---------------------------------------------------------------------------------------------
# parent


def _run_child(
    sdk: str, server: Any, sizes: list[int], repeats: int, profile: Path | None = None
) -> dict[str, Any]:
    if sdk.endswith(SPLIT_SUFFIX):
        return _run_split(sdk.removesuffix(SPLIT_SUFFIX), server, sizes, repeats, profile)
    room = f"bench-streams-{sdk}-{uuid.uuid4().hex[:8]}"
    cmd = [
        *_child_command(sdk, server, sizes, repeats, profile),
        "--tx-token",
        server.create_token(f"{sdk}-tx", room),
        "--rx-token",
        server.create_token(f"{sdk}-rx", room),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=1800)
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def _child_command(
    sdk: str, server: Any, sizes: list[int], repeats: int, profile: Path | None
) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--child",
        sdk,
        "--url",
        server.url,
        "--sizes-bytes",
        ",".join(map(str, sizes)),
        "--repeats",
        str(repeats),
        *(["--server-pid", str(server.pid)] if server.pid is not None else []),
        *(["--profile", str(profile)] if profile is not None else []),
    ]


def _run_split(
    sdk: str, server: Any, sizes: list[int], repeats: int, profile: Path | None
) -> dict[str, Any]:
    """``sdk``'s receiver and sender in two child processes; rx's lines relayed to tx."""
    room = f"bench-streams-{sdk}-split-{uuid.uuid4().hex[:8]}"
    base = _child_command(sdk, server, sizes, repeats, profile)
    rx_cmd = [*base, "--role", "rx", "--rx-token", server.create_token(f"{sdk}-rx", room)]
    tx_cmd = [*base, "--role", "tx", "--tx-token", server.create_token(f"{sdk}-tx", room)]
    with (
        subprocess.Popen(rx_cmd, stdout=subprocess.PIPE, text=True) as rx,
        subprocess.Popen(tx_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as tx,
    ):
        assert rx.stdout is not None
        assert tx.stdin is not None
        rx_result: dict[str, Any] | None = None
        try:
            for line in rx.stdout:
                if not line.startswith("{"):
                    continue  # not ours
                msg = json.loads(line)
                if msg.get("event") == "done":
                    tx.stdin.write(line)
                    tx.stdin.flush()
                else:
                    rx_result = msg
            tx_out, _ = tx.communicate(timeout=TRANSFER_TIMEOUT_S)
        finally:
            for proc in (tx, rx):
                if proc.poll() is None:
                    proc.kill()
        if rx.wait() != 0 or tx.returncode != 0 or rx_result is None:
            raise RuntimeError(f"split run failed: rx exit {rx.returncode}, tx {tx.returncode}")
    tx_result: dict[str, Any] = json.loads(tx_out.strip().splitlines()[-1])
    return {
        "sdk": tx_result["sdk"],
        "base_rss_kib": rx_result["base_rss_kib"],
        "vm_hwm_kib": rx_result["vm_hwm_kib"],
        "samples": tx_result["samples"],
    }


def _merge(children: list[dict[str, Any]]) -> dict[str, Any]:
    """One SDK's child results as if one child had run them all (``--alternate``)."""
    return {
        "sdk": children[0]["sdk"],
        "base_rss_kib": max(c["base_rss_kib"] for c in children),
        "vm_hwm_kib": max(c["vm_hwm_kib"] for c in children),
        "samples": [s for c in children for s in c["samples"]],
    }


def _aggregate(child: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    per_size: dict[str, Any] = {}
    for size in sizes:
        samples = [s for s in child["samples"] if s["size"] == size]
        mbps = summarize([size / MIB / s["seconds"] for s in samples])
        mb_dec = summarize([size / 1e6 / s["seconds"] for s in samples])
        send = summarize([s["send_seconds"] for s in samples])
        cpu = summarize([size / MIB / s["cpu_seconds"] for s in samples])
        system_share = summarize(
            [s["system_seconds"] / s["cpu_seconds"] for s in samples if s["cpu_seconds"] > 0]
        )
        shares = {
            role: summarize([s[f"{role}_cpu_seconds"] / s["seconds"] for s in samples])
            for role in ("tx", "rx", "server")
        }
        per_size[str(size // MIB)] = {
            "mib_per_s": mbps.as_dict() if mbps else None,
            "mb_per_s": mb_dec.as_dict() if mb_dec else None,
            "send_seconds": send.as_dict() if send else None,
            "mib_per_cpu_s": cpu.as_dict() if cpu else None,
            "system_cpu_share": system_share.as_dict() if system_share else None,
            "cpu_share_of_wall": {
                role: share.as_dict() if share else None for role, share in shares.items()
            },
            "loadavg_1m_max": max(s["loadavg_1m"] for s in samples),
            "peak_rss_mib": max(s["peak_rss_kib"] for s in samples) / 1024,
        }
    return {
        "base_rss_mib": child["base_rss_kib"] / 1024,
        "vm_hwm_mib": child["vm_hwm_kib"] / 1024,
        "sizes": per_size,
        "samples": child["samples"],
    }


def _label(sdk: str) -> str:
    if sdk == "aiortc-p2p":
        return "stock aiortc p2p, 1 process, no server"
    if sdk.endswith(SPLIT_SUFFIX):
        base = sdk.removesuffix(SPLIT_SUFFIX)
        return f"{base}->{base}, 2 processes"
    return f"{sdk}->{sdk}, 1 process"


def _table(results: dict[str, Any], sizes_mib: list[int]) -> str:
    lines = [
        "| SDK (sender->receiver) | size | MiB/s median (min-max) | MB/s (10^6) median | "
        "send_file returned s | MiB per CPU-s | kernel share of CPU | CPU % tx / rx / server "
        "| peak RSS MiB | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sdk, r in results.items():
        label = _label(sdk)
        for size in sizes_mib:
            s = r["sizes"][str(size)]
            m = s["mib_per_s"]
            cpu = s["cpu_share_of_wall"]
            lines.append(
                f"| {label} | {size} MiB | {m['median']:.2f} ({m['min']:.2f}-{m['max']:.2f}) "
                f"| {s['mb_per_s']['median']:.2f} "
                f"| {s['send_seconds']['median']:.2f} | {s['mib_per_cpu_s']['median']:.2f} "
                f"| {s['system_cpu_share']['median']:.0%} "
                f"| {cpu['tx']['median']:.0%} / {cpu['rx']['median']:.0%} / "
                f"{cpu['server']['median']:.0%} "
                f"| {s['peak_rss_mib']:.1f} | {s['loadavg_1m_max']:.1f} |"
            )
    lines.append("")
    lines.append("| SDK | RSS after join MiB | VmHWM (whole child) MiB |")
    lines.append("|---|---:|---:|")
    for sdk, r in results.items():
        lines.append(f"| {sdk} | {r['base_rss_mib']:.1f} | {r['vm_hwm_mib']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="MiB, comma-separated")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--sdks", default=",".join(SDKS), help=f"comma-separated subset of {','.join(SDKS)}"
    )
    parser.add_argument(
        "--child", choices=[x for x in SDKS if not x.endswith(SPLIT_SUFFIX)], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--role", choices=("both", "tx", "rx"), default="both", help=argparse.SUPPRESS
    )
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tx-token", help=argparse.SUPPRESS)
    parser.add_argument("--rx-token", help=argparse.SUPPRESS)
    parser.add_argument("--sizes-bytes", help=argparse.SUPPRESS)
    parser.add_argument(
        "--alternate",
        action="store_true",
        help="one child per SDK and repeat, the SDKs taking turns (fairer ratios on a machine "
        "whose load changes during the run); RSS columns are then the highest of the children",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each child under cProfile and write its stats to PROFILE.<sdk>.prof "
        "(load them with pstats; the figures of a profiled run are not comparable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.child:
        sizes = [int(x) for x in args.sizes_bytes.split(",")]
        main_coro: Coroutine[None, None, dict[str, Any]]
        if args.role == "rx":
            # the warm-up, then every size and repeat
            streams = 1 + len(sizes) * args.repeats
            main_coro = rx_main(args.child, args.url, rx_token=args.rx_token, streams=streams)
        elif args.role == "tx":
            main_coro = tx_main(
                args.child,
                args.url,
                tx_token=args.tx_token,
                sizes=sizes,
                repeats=args.repeats,
                server_pid=args.server_pid,
            )
        else:
            main_coro = child_main(
                args.child,
                args.url,
                tx_token=args.tx_token,
                rx_token=args.rx_token,
                sizes=sizes,
                repeats=args.repeats,
                server_pid=args.server_pid,
            )
        if args.profile is None:
            out = asyncio.run(main_coro)
        else:
            # Wall-clock timer: a CPU-time timer (time.process_time) makes every profiled
            # call a system call, and the slowed child then missed the server's liveness
            # checks and reconnected mid-transfer on a loaded machine. Under load, wall time
            # charges waiting for a CPU to the call that was preempted (mostly sendto).
            profiler = cProfile.Profile()
            out = profiler.runcall(asyncio.run, main_coro)
            role = "" if args.role == "both" else f"-{args.role}"
            profiler.dump_stats(f"{args.profile}.{args.child}{role}.prof")
        print(json.dumps(out))
        return 0

    from lkproto.testing import LocalServer

    sizes_mib = [int(x) for x in args.sizes.split(",")]
    chosen = [x for x in args.sdks.split(",") if x]
    if unknown := set(chosen) - set(SDKS):
        parser.error(f"unknown --sdks {sorted(unknown)}")
    sizes = [m * MIB for m in sizes_mib]

    async def run() -> dict[str, Any]:
        async with LocalServer(log_level="warn") as server:
            children: dict[str, list[dict[str, Any]]] = {sdk: [] for sdk in chosen}
            if args.alternate:
                # One child per SDK and repeat, SDKs taking turns, so that a change in the
                # machine's load (other jobs) falls on every SDK alike, not on whichever ran
                # last; each child joins afresh and sends its own warm-up first.
                for _ in range(args.repeats):
                    for sdk in chosen:
                        children[sdk].append(
                            await asyncio.to_thread(_run_child, sdk, server, sizes, 1, args.profile)
                        )
            else:
                for sdk in chosen:
                    children[sdk].append(
                        await asyncio.to_thread(
                            _run_child, sdk, server, sizes, args.repeats, args.profile
                        )
                    )
            return {sdk: _aggregate(_merge(runs), sizes) for sdk, runs in children.items()}

    results = asyncio.run(run())
    table = _table(results, sizes_mib)
    print(table)
    lk = results["lkproto"]["sizes"] if "lkproto" in results else {}
    targets: dict[str, Any] = {}
    if "10" in lk and "aiortc-p2p" in results:
        # issue 18: lkproto<->lkproto through the server >= 1.6x stock aiortc p2p, same run
        v = (
            lk["10"]["mib_per_s"]["median"]
            / results["aiortc-p2p"]["sizes"]["10"]["mib_per_s"]["median"]
        )
        targets["lkproto_10mib_vs_aiortc_p2p>=1.6"] = {"value": v, "met": v >= 1.6}
    split = results.get("lkproto" + SPLIT_SUFFIX, {}).get("sizes", {})
    if "10" in split and "aiortc-p2p" in results:
        v = (
            split["10"]["mib_per_s"]["median"]
            / results["aiortc-p2p"]["sizes"]["10"]["mib_per_s"]["median"]
        )
        targets["lkproto_split_10mib_vs_aiortc_p2p>=1.6"] = {"value": v, "met": v >= 1.6}
    if "10" in lk:
        v = lk["10"]["mb_per_s"]["median"]
        targets["lkproto_10mib_mb_per_s>=8"] = {"value": v, "met": v >= TARGET_MBPS_10}
        v = lk["10"]["mib_per_s"]["median"]
        targets["lkproto_10mib_mib_per_s>=8"] = {"value": v, "met": v >= TARGET_MBPS_10}
    if "50" in lk:
        v = lk["50"]["peak_rss_mib"]
        targets["lkproto_50mib_peak_rss_mib<120"] = {"value": v, "met": v < TARGET_RSS_MIB_50}
    print("\ntargets:", json.dumps(targets))
    path = write_json(
        args.json,
        {
            "benchmark": "streams",
            "when": utc_now(),
            "machine": machine_info(),
            "method": "send_file(compress=False) of random bytes, tx and rx of one SDK in one "
            "child process per SDK (two for *-split rows); "
            "throughput = size / (last chunk at rx - send_file call); "
            "peak RSS = max VmRSS sampled every 10 ms during the transfer",
            "sizes_mib": sizes_mib,
            "repeats": args.repeats,
            "results": results,
            "targets": targets,
            "table_markdown": table,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
