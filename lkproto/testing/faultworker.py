"""A room client driven by JSON lines for the fault harness.

The same script drives lkproto and the official SDK: ``lkproto.rtc`` is shaped like
``livekit.rtc``, so the code below only picks the module. It runs as a separate process inside a
:class:`~lkproto.testing.faults.FaultLab` namespace, so both SDKs are measured under the same faults
in the same run.

Configuration (one JSON object, the only argument):

``sdk``
    ``"lkproto"`` or ``"livekit"``.
``url``, ``token``
    where to join.
``role``
    ``"sender"``: after the ``go`` command, sends ``packets`` reliable packets of ``size`` bytes,
    one every ``interval_s``, then ``rpcs`` RPC calls to ``peer`` one after the other, then reports.
    ``"receiver"``: records every packet and answers the ``echo`` RPC method.
``peer``
    the other participant's identity (the sender waits until it is in the room).
``publish_timeout_s``, ``rpc_timeout_s``
    bounds on one ``publish_data`` and one ``perform_rpc`` call.
``rpc_phase_s``
    optional bound on the RPC phase: no call starts after it has lasted this long.
``stream_bytes``, ``stream_seed``, ``stream_timeout_s``
    optional: after the RPCs the sender sends one byte stream of ``stream_bytes`` pseudo-random
    bytes (``random.Random(stream_seed)``) to ``peer`` on the ``lkfault-stream`` topic, bounded by
    ``stream_timeout_s``; the receiver, given the same two numbers, checks every byte.
``tone_hz``, ``listen``
    optional: the sender publishes a sine of ``tone_hz`` as its microphone track once connected;
    a receiver with ``listen`` subscribes to it and counts what it hears
    (:class:`lkproto.testing.loadworker.ToneMeter`) until its first ``report``.
``log_level``
    optional: log the SDK at this level (``"INFO"``, ``"DEBUG"``) to stderr (the worker's log).
``e2ee_key``
    optional: join with end-to-end encryption, this string (UTF-8) as the shared key.

Lines printed (each a JSON object with ``ev`` and ``t`` = ``time.monotonic()``, which is the
system-wide monotonic clock, comparable with the harness's): ``ready`` (``resources`` = ``[asyncio
tasks, open fds, threads]`` of the connected, idle worker), ``state`` (``state``: the
connection state's name), ``reconnecting``, ``reconnected``, ``disconnected`` (``reason``),
``sent`` (sender, when the packet phase ends), ``done`` (sender: ``sends`` = per packet
``[seq, t_start, t_end, outcome]``, ``rpcs`` = ``[t_start, t_end, outcome]``, ``stream`` =
``[t_start, t_end, outcome, bytes written]`` or ``None``), ``report`` (receiver: ``arrivals`` =
``[seq, t]`` in arrival order, ``corrupt`` = packets whose payload did not match, ``stream`` =
``{bytes, first_t, done_t, intact, error}`` or ``None``, ``audio`` = the tone meter's counts or
``None``), ``probe`` (``state``, and ``resources`` counted like ``ready``'s once they are back to
those or after a bounded wait: what a reconnect leaked), ``error``.

Commands read from stdin, one JSON object a line: ``{"cmd": "go"}`` (sender starts),
``{"cmd": "report"}`` (receiver reports), ``{"cmd": "probe"}`` (prints ``probe`` with the
connection state), ``{"cmd": "stop"}`` (report, disconnect, exit). End of stdin means stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
from typing import Any, Final

__all__ = ["main", "payload_for", "seq_of"]

_HEADER_BYTES: Final = 10
_CONNECT_TIMEOUT_S: Final = 30.0
_PEER_TIMEOUT_S: Final = 30.0
_DISCONNECT_TIMEOUT_S: Final = 10.0
_TOPIC: Final = "lkfault"
_RPC_METHOD: Final = "echo"
_STREAM_TOPIC: Final = "lkfault-stream"
_STREAM_WRITE_BYTES: Final = 64 * 1024
# How long a probe waits for tasks, fds and threads to come back to their ``ready`` counts
# (closing transports finish a little after the reconnect reports success).
_SETTLE_S: Final = 5.0


def _resources() -> list[int]:
    """``[asyncio tasks, open file descriptors, threads]`` of this process."""
    return [len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd")), threading.active_count()]


async def _settled_resources(baseline: list[int]) -> list[int]:
    counts = _resources()
    for _ in range(int(_SETTLE_S / 0.1)):
        if all(c <= b for c, b in zip(counts, baseline, strict=True)):
            break
        await asyncio.sleep(0.1)
        counts = _resources()
    return counts


def payload_for(seq: int, size: int) -> bytes:
    """The payload of packet ``seq``: its number in 10 digits, then a pattern derived from it."""
    head = f"{seq:0{_HEADER_BYTES}d}".encode()
    fill = bytes((seq + i) & 0xFF for i in range(max(size - _HEADER_BYTES, 0)))
    return head + fill


def seq_of(payload: bytes, size: int) -> int | None:
    """The sequence number of a payload made by :func:`payload_for`, or ``None`` if corrupted."""
    try:
        seq = int(payload[:_HEADER_BYTES])
    except ValueError:
        return None
    return seq if payload == payload_for(seq, size) else None


def _emit(ev: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


class _Client:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sdk = config["sdk"]
        if self.sdk == "lkproto":
            from lkproto import rtc
        elif self.sdk == "livekit":
            from livekit import rtc  # type: ignore[no-redef]
        else:
            raise SystemExit(f"unknown sdk {self.sdk!r}")
        self.rtc: Any = rtc
        self.room: Any = rtc.Room()
        self.size = int(config.get("size", 1024))
        self.arrivals: list[tuple[int, float]] = []
        self.corrupt = 0
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.go = asyncio.Event()
        self.stream: dict[str, Any] | None = None
        self.stream_tasks: list[asyncio.Task[None]] = []
        self.meter: Any = None
        self.audio_tasks: list[asyncio.Task[None]] = []
        self.tone: asyncio.Task[None] | None = None

    def options(self) -> Any:
        rtc = self.rtc
        if self.sdk == "lkproto":
            # aioice skips 127.0.0.1 unless told (PROTOCOL-MAP §17 "ICE on loopback").
            options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))
        else:
            # An empty list makes the SDK take the server's (unused loopback) STUN entry.
            options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[]))
        if (key := self.config.get("e2ee_key")) is not None:
            # Both SDKs spell the encryption options alike.
            options.encryption = rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=str(key).encode())
            )
        return options

    def state_name(self, state: Any) -> str | None:
        # The official SDK's states are protobuf enum ints; lkproto's an IntEnum with the same
        # names (CONN_CONNECTED, ...), so both report the same words.
        if isinstance(state, int) and not hasattr(state, "name"):
            with contextlib.suppress(Exception):
                return str(self.rtc.ConnectionState.Name(state))
        return _name(state)

    def hook_events(self) -> None:
        room = self.room
        room.on("connection_state_changed", lambda s: _emit("state", state=self.state_name(s)))
        room.on("reconnecting", lambda: _emit("reconnecting"))
        room.on("reconnected", lambda: _emit("reconnected"))
        room.on("disconnected", lambda reason=None: _emit("disconnected", reason=_name(reason)))
        if self.config["role"] == "receiver":
            room.on("data_received", self.on_data)
            if self.config.get("stream_bytes"):
                room.register_byte_stream_handler(_STREAM_TOPIC, self.on_stream)
            if self.config.get("listen"):
                from lkproto.testing.loadworker import ToneMeter

                self.meter = ToneMeter()
                self.meter.measuring = True
                room.on("track_subscribed", self.on_track)

    def on_track(self, track: Any, *_: Any) -> None:
        if self.meter is not None and track.kind == self.rtc.TrackKind.KIND_AUDIO:
            self.audio_tasks.append(asyncio.ensure_future(self.meter.listen(self.rtc, track)))

    def on_stream(self, reader: Any, _identity: str) -> None:
        self.stream_tasks.append(asyncio.ensure_future(self.read_stream(reader)))

    async def read_stream(self, reader: Any) -> None:
        cfg = self.config
        size = int(cfg["stream_bytes"])
        want = hashlib.sha256(random.Random(int(cfg.get("stream_seed", 0))).randbytes(size))
        got = hashlib.sha256()
        state: dict[str, Any] = {"bytes": 0, "first_t": None, "done_t": None, "intact": None}
        state["error"] = None
        self.stream = state
        try:
            async for chunk in reader:
                if state["first_t"] is None:
                    state["first_t"] = time.monotonic()
                got.update(chunk)
                state["bytes"] += len(chunk)
        except Exception as exc:  # the reader's failure is a measured outcome
            state["error"] = f"{type(exc).__name__}: {exc}"
        else:
            state["done_t"] = time.monotonic()
            state["intact"] = state["bytes"] == size and got.digest() == want.digest()

    async def send_stream(self, peer: str) -> list[Any]:
        cfg = self.config
        size = int(cfg["stream_bytes"])
        data = random.Random(int(cfg.get("stream_seed", 0))).randbytes(size)
        written = 0
        t0 = time.monotonic()

        async def send() -> None:
            nonlocal written
            writer = await self.room.local_participant.stream_bytes(
                "soak.bin", total_size=size, topic=_STREAM_TOPIC, destination_identities=[peer]
            )
            for offset in range(0, size, _STREAM_WRITE_BYTES):
                chunk = data[offset : offset + _STREAM_WRITE_BYTES]
                await writer.write(chunk)
                written += len(chunk)
            await writer.aclose()

        try:
            await asyncio.wait_for(send(), float(cfg.get("stream_timeout_s", 300.0)))
            outcome = "ok"
        except TimeoutError:
            outcome = "timeout"
        except Exception as exc:  # every failure is a measured outcome
            outcome = f"{type(exc).__name__}: {exc}"
        return [t0, time.monotonic(), outcome, written]

    def register_echo(self) -> None:
        async def echo(data: Any) -> str:
            return str(data.payload)

        # lkproto has no local participant before the join, so this runs after connect().
        self.room.local_participant.register_rpc_method(_RPC_METHOD, echo)

    def on_data(self, packet: Any) -> None:
        if getattr(packet, "topic", _TOPIC) != _TOPIC:
            return
        seq = seq_of(bytes(packet.data), self.size)
        if seq is None:
            self.corrupt += 1
        else:
            self.arrivals.append((seq, time.monotonic()))

    async def read_commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                await self.commands.put({"cmd": "stop"})
                return
            with contextlib.suppress(ValueError):
                command = json.loads(line)
                if isinstance(command, dict):
                    if command.get("cmd") == "go":
                        self.go.set()
                    else:
                        await self.commands.put(command)

    async def wait_peer(self) -> None:
        peer = self.config.get("peer")
        if not peer:
            return
        deadline = time.monotonic() + _PEER_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(p.identity == peer for p in self.room.remote_participants.values()):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"peer {peer!r} did not join within {_PEER_TIMEOUT_S:g} s")

    async def send_all(self) -> None:
        cfg = self.config
        lp = self.room.local_participant
        count = int(cfg.get("packets", 0))
        interval = float(cfg.get("interval_s", 0.01))
        timeout = float(cfg.get("publish_timeout_s", 60.0))
        sends: list[list[Any]] = []
        first_errors: dict[str, str] = {}
        start = time.monotonic()
        for seq in range(count):
            # Paced against the start, so a slow call is not followed by a longer pause.
            delay = start + seq * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(
                    lp.publish_data(payload_for(seq, self.size), reliable=True, topic=_TOPIC),
                    timeout,
                )
                outcome = "ok"
            except TimeoutError:
                outcome = "timeout"
            except Exception as exc:  # every failure is a measured outcome
                outcome = type(exc).__name__
                if outcome not in first_errors:
                    first_errors[outcome] = str(exc)
            sends.append([seq, t0, time.monotonic(), outcome])
        _emit("sent")
        rpcs: list[list[Any]] = []
        rpc_timeout = float(cfg.get("rpc_timeout_s", 15.0))
        phase_s = cfg.get("rpc_phase_s")
        phase_end = None if phase_s is None else time.monotonic() + float(phase_s)
        for i in range(int(cfg.get("rpcs", 0))):
            t0 = time.monotonic()
            if phase_end is not None and t0 >= phase_end:
                break
            try:
                answer = await asyncio.wait_for(
                    lp.perform_rpc(
                        destination_identity=cfg["peer"],
                        method=_RPC_METHOD,
                        payload=f"rpc-{i}",
                        response_timeout=rpc_timeout,
                    ),
                    rpc_timeout + 5.0,
                )
                outcome = "ok" if answer == f"rpc-{i}" else "wrong-answer"
            except TimeoutError:
                outcome = "timeout"
            except Exception as exc:
                outcome = type(exc).__name__
                if outcome not in first_errors:
                    first_errors[outcome] = str(exc)
            rpcs.append([t0, time.monotonic(), outcome])
        stream = await self.send_stream(cfg["peer"]) if cfg.get("stream_bytes") else None
        _emit("done", sends=sends, rpcs=rpcs, stream=stream, errors=first_errors)

    def report(self) -> None:
        audio = None
        if self.meter is not None:
            audio = self.meter.report()
            self.meter.measuring = False  # the tone is counted up to the first report
        _emit(
            "report",
            arrivals=self.arrivals,
            corrupt=self.corrupt,
            stream=None if self.stream is None else dict(self.stream),
            audio=audio,
        )

    async def run(self) -> None:
        self.hook_events()
        reader = asyncio.create_task(self.read_commands())
        await asyncio.wait_for(
            self.room.connect(self.config["url"], self.config["token"], self.options()),
            _CONNECT_TIMEOUT_S,
        )
        if self.config["role"] == "receiver":
            self.register_echo()
        if self.config.get("tone_hz"):
            from lkproto.testing.loadworker import publish_tone

            self.tone = await publish_tone(self.rtc, self.room, float(self.config["tone_hz"]))
        await self.wait_peer()
        sid = await _sid(self.room)
        baseline = _resources()
        _emit("ready", sid=sid, resources=baseline)
        sender: asyncio.Task[None] | None = None
        if self.config["role"] == "sender":

            async def start_when_told() -> None:
                await self.go.wait()
                await self.send_all()

            sender = asyncio.create_task(start_when_told())
        while True:
            command = await self.commands.get()
            match command.get("cmd"):
                case "report":
                    self.report()
                case "probe":
                    _emit(
                        "probe",
                        state=self.state_name(self.room.connection_state),
                        resources=await _settled_resources(baseline),
                    )
                case "stop":
                    break
                case other:
                    _emit("error", error=f"unknown command {other!r}")
        if self.config["role"] == "receiver":
            self.report()
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        reader.cancel()
        for task in [*self.stream_tasks, *self.audio_tasks, *([self.tone] if self.tone else [])]:
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.room.disconnect(), _DISCONNECT_TIMEOUT_S)


def _name(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return str(value)


async def _sid(room: Any) -> str:
    sid = room.sid
    if asyncio.iscoroutine(sid):
        return str(await asyncio.wait_for(sid, _CONNECT_TIMEOUT_S))
    return str(sid)


async def _serve(config: dict[str, Any]) -> None:
    # The Room is made inside the running loop: the official SDK binds to the loop current at
    # construction and delivers every event there.
    await _Client(config).run()


def main(argv: list[str] | None = None) -> int:
    """Run the worker with the JSON configuration in ``argv[0]``; return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    config = json.loads(args[0])
    if config.get("log_level"):
        logging.basicConfig(
            level=str(config["log_level"]).upper(),
            stream=sys.stderr,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    try:
        asyncio.run(_serve(config))
    except Exception as exc:
        _emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
