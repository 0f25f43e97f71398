"""Footprint: import time and resident memory, lkproto against the official SDK, same run.

Run from the repository root::

    .venv/bin/python benchmarks/footprint.py [--imports 5] [--audio-seconds 3]
        [--json benchmarks/results/footprint.json]

Every figure comes from a fresh interpreter (this script re-runs itself as a worker), so nothing
one SDK loaded is counted for the other. Both SDKs use their default ``RoomOptions()`` and join
a loopback livekit-server (:class:`lkproto.testing.LocalServer`) started by the driver, where a
counterpart (an lkproto ``Room`` in the driver process) answers.

What each number measures
-------------------------
``import``
    Wall time of ``import lkproto.rtc`` / ``import livekit.rtc`` in a fresh interpreter
    (``time.perf_counter`` around the import; interpreter start-up not counted), median of
    ``--imports`` interpreters, the CPU time of the same import (``time.process_time``: less
    sensitive than wall time to other processes on a loaded machine), and the RSS (``VmRSS``)
    right after it. The import is followed by reading ``Room``, ``RoomOptions`` and
    ``DataPacket`` from the module (included in both times), so a name loaded on first use is
    paid for as a client would. Before the first interpreter the driver compiles lkproto's
    bytecode (``compileall``), as a wheel install does: with ``PYTHONDONTWRITEBYTECODE`` set
    (as on the machine these figures come from) every lkproto module edited since its ``.pyc``
    was written would otherwise be compiled from source in every interpreter.
``data-only``
    A client that joins, sends 100 reliable packets and gets them echoed, makes 10 RPC calls,
    sends a text stream and receives a 64 KiB byte stream, and never touches media: ``VmRSS``
    while still connected, at the end. Also reports whether PyAV (``av``) and numpy were imported.
``audio``
    A client that joins, publishes a 48 kHz mono tone from an ``AudioSource`` and reads the
    counterpart's tone from an ``AudioStream`` for ``--audio-seconds``: ``VmRSS`` at the end.
``layers``
    Where lkproto's data-only RSS goes: one fresh interpreter imports, in order, asyncio,
    protobuf with lkproto's messages, ``lkproto.rtc``, websockets, then each package the WebRTC
    stack loads at connect (:data:`LAYERS`), the stack itself
    (``lkproto.asyncio.peer.load_webrtc``), and last lkproto's own modules that ``Room.connect``
    loads (the engine, its drivers and the core machines, deferred from ``import lkproto.rtc``);
    ``VmRSS`` and CPU time after each step. What a data-only session holds beyond the last step
    is first-session state. The official SDK's steps are asyncio, ``livekit.rtc`` and loading
    its FFI library.

Load on the machine changes every figure: the load average before and after goes with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

DEFAULT_IMPORTS: Final = 5
DEFAULT_AUDIO_SECONDS: Final = 3.0
DEFAULT_TIMEOUT_S: Final = 60.0
DEFAULT_JSON: Final = Path(__file__).parent / "results" / "footprint.json"

SDKS: Final = ("lkproto", "official")
MODULES: Final = {"lkproto": "lkproto.rtc", "official": "livekit.rtc"}
PACKETS: Final = 100
RPC_CALLS: Final = 10
BYTE_STREAM_BYTES: Final = 64 * 1024
SAMPLE_RATE: Final = 48_000
FRAME_SAMPLES: Final = 480  # 10 ms
NAMES: Final = ("Room", "RoomOptions", "DataPacket")
"""Read from the rtc module after the import, in the import figure."""

LAYERS: Final = {
    "lkproto": (
        ("asyncio", ("asyncio",)),
        ("protobuf + lkproto messages", ("lkproto.wire.pb",)),
        ("lkproto.rtc (data names)", ("lkproto.rtc",)),
        ("websockets", ("websockets.asyncio.client",)),
        ("ifaddr", ("ifaddr",)),
        ("dnspython (aioice.mdns)", ("dns.message", "dns.zone", "dns.rdtypes.ANY")),
        ("cryptography Rust bindings", ("cryptography.hazmat.bindings._rust",)),
        ("cryptography.x509", ("cryptography.x509",)),
        ("pyOpenSSL", ("OpenSSL",)),
        ("pylibsrtp", ("pylibsrtp",)),
        ("google_crc32c + pyee", ("google_crc32c", "pyee")),
        ("aioice", ("aioice",)),
        ("aiortc (PyAV deferred)", ("@webrtc",)),
        (
            "lkproto engine, drivers, core machines (at connect)",
            (
                "lkproto.asyncio.engine",
                "lkproto.asyncio.rpc",
                "lkproto.asyncio.streams",
                "lkproto.core.data_track",
                "lkproto.core.roster",
                "lkproto.core.signal",
                "lkproto.rtc.events",
            ),
        ),
    ),
    "official": (
        ("asyncio", ("asyncio",)),
        ("livekit.rtc", ("livekit.rtc",)),
        ("FFI library (first use)", ("@ffi",)),
    ),
}
"""Steps of the ``layers`` figure, each a label and the modules it imports; ``@webrtc`` is
``lkproto.asyncio.peer.load_webrtc()``, ``@ffi`` the official SDK's ``FfiClient.instance``."""


HEAVY: Final = (
    "aiortc",
    "aioice",
    "av",
    "numpy",
    "OpenSSL",
    "cryptography",
    "dns",
    "pylibsrtp",
    "websockets",
)
"""Packages reported when an import loads them (lkproto loads them on first connect or media)."""

_BACKGROUND: set[asyncio.Future[Any]] = set()


def _background(coro: Any) -> None:
    """Run ``coro`` as a task kept alive until it ends (event handlers cannot await)."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("footprint").error("background task failed: %r", task.exception())


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


# -- worker side (a fresh interpreter per figure) ------------------------------------------------


def _tone(freq: float, n: int, start: int) -> bytes:
    from array import array

    samples = array(
        "h",
        (
            int(0.3 * 32767 * math.sin(2 * math.pi * freq * (start + i) / SAMPLE_RATE))
            for i in range(n)
        ),
    )
    return samples.tobytes()


async def _data_session(rtc: Any, room: Any) -> dict[str, object]:
    echoed: list[bytes] = []
    got_echo = asyncio.Event()

    def on_data(packet: Any) -> None:
        echoed.append(bytes(packet.data))
        if len(echoed) >= PACKETS:
            got_echo.set()

    room.on("data_received", on_data)
    received = asyncio.get_running_loop().create_future()

    async def read_bytes(reader: Any) -> None:
        size = 0
        async for chunk in reader:
            size += len(chunk)
        if not received.done():
            received.set_result(size)

    def on_bytes(reader: Any, identity: str) -> None:
        _background(read_bytes(reader))

    room.register_byte_stream_handler("footprint", on_bytes)
    for i in range(PACKETS):
        await room.local_participant.publish_data(f"p{i}".encode(), reliable=True)
    await asyncio.wait_for(got_echo.wait(), DEFAULT_TIMEOUT_S)
    replies = [
        await room.local_participant.perform_rpc(
            destination_identity="counterpart", method="echo", payload=f"r{i}"
        )
        for i in range(RPC_CALLS)
    ]
    await room.local_participant.send_text("hello " * 100, topic="footprint")
    size = await asyncio.wait_for(received, DEFAULT_TIMEOUT_S)
    return {
        "echoed": len(echoed),
        "rpc_ok": replies == [f"r{i}" for i in range(RPC_CALLS)],
        "bytes_received": size,
    }


async def _audio_session(rtc: Any, room: Any, seconds: float) -> dict[str, object]:
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    remote: Any = None
    async with asyncio.timeout(DEFAULT_TIMEOUT_S):
        while remote is None:
            for participant in room.remote_participants.values():
                for publication in participant.track_publications.values():
                    if publication.track is not None:
                        remote = publication.track
            await asyncio.sleep(0.05)
    stream = rtc.AudioStream(remote, sample_rate=SAMPLE_RATE, num_channels=1)
    frames = 0

    async def read() -> None:
        nonlocal frames
        async for _ in stream:
            frames += 1

    reader = asyncio.ensure_future(read())
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    n = 0
    while loop.time() < end:
        frame = rtc.AudioFrame(_tone(440.0, FRAME_SAMPLES, n), SAMPLE_RATE, 1, FRAME_SAMPLES)
        await source.capture_frame(frame)
        n += FRAME_SAMPLES
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await stream.aclose()
    return {"frames_received": frames, "seconds_sent": n / SAMPLE_RATE}


async def _worker_session(sdk: str, scenario: str, url: str, token: str, seconds: float) -> None:
    rtc: Any = importlib.import_module(MODULES[sdk])
    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, token, rtc.RoomOptions()), DEFAULT_TIMEOUT_S)
    try:
        if scenario == "data":
            detail = await _data_session(rtc, room)
        else:
            detail = await _audio_session(rtc, room, seconds)
        rss = _rss_kib()
    finally:
        await room.disconnect()
    print(
        json.dumps(
            {
                "rss_kib": rss,
                "av": "av" in sys.modules and type(sys.modules["av"]).__name__ == "module",
                "numpy": "numpy" in sys.modules,
                **detail,
            }
        )
    )


# The layers worker runs with ``python -c`` rather than as this script, whose own imports (asyncio,
# json, logging, subprocess) would already be in the process before the first step.
_LAYERS_WORKER: Final = """
import json, sys, time

def rss_kib():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

def step(module):
    if module == "@webrtc":
        from lkproto.asyncio.peer import load_webrtc
        load_webrtc()
    elif module == "@ffi":
        from livekit.rtc._ffi_client import FfiClient
        FfiClient.instance
    else:
        __import__(module)

out = [{"step": "interpreter", "rss_kib": rss_kib(), "cpu_s": 0.0}]
for label, modules in json.loads(sys.argv[1]):
    c0 = time.process_time()
    for module in modules:
        step(module)
    out.append({"step": label, "rss_kib": rss_kib(), "cpu_s": time.process_time() - c0})
print(json.dumps({"layers": out}))
"""


def worker(argv: Sequence[str]) -> int:
    kind, sdk = argv[0], argv[1]
    if kind == "import":
        t0, c0 = time.perf_counter(), time.process_time()
        module = importlib.import_module(MODULES[sdk])
        for name in NAMES:
            getattr(module, name)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
        print(
            json.dumps(
                {
                    "import_s": elapsed,
                    "import_cpu_s": cpu,
                    "rss_kib": _rss_kib(),
                    "av": "av" in sys.modules,
                    "heavy_loaded": loaded,
                }
            )
        )
        return 0
    url, token, seconds = argv[2], argv[3], float(argv[4])
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_worker_session(sdk, kind, url, token, seconds))
    return 0


# -- driver side ---------------------------------------------------------------------------------


def _spawn(args: Sequence[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    if args[0] == "layers":
        command = [sys.executable, "-c", _LAYERS_WORKER, json.dumps(LAYERS[args[1]])]
    else:
        command = [sys.executable, __file__, "--worker", *args]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _counterpart(url: str, token: str, audio: bool) -> tuple[Any, asyncio.Task[None] | None]:
    from lkproto import rtc

    room = rtc.Room()

    async def echo_rpc(data: Any) -> str:
        return str(data.payload)

    def on_data(packet: Any) -> None:
        # To the whole room (the client is the only other participant): the sender may not be in
        # the counterpart's roster yet when its first packets arrive.
        _background(room.local_participant.publish_data(bytes(packet.data), reliable=True))

    room.on("data_received", on_data)

    def on_text(reader: Any, identity: str) -> None:
        async def answer() -> None:
            await reader.read_all()
            await room.local_participant.send_bytes(
                os.urandom(BYTE_STREAM_BYTES), topic="footprint", destination_identities=[identity]
            )

        _background(answer())

    room.register_text_stream_handler("footprint", on_text)
    await room.connect(url, token, rtc.RoomOptions())
    room.local_participant.register_rpc_method("echo", echo_rpc)
    feeder: asyncio.Task[None] | None = None
    if audio:
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("counter-tone", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

        async def feed() -> None:
            n = 0
            while True:
                data = _tone(880.0, FRAME_SAMPLES, n)
                await source.capture_frame(rtc.AudioFrame(data, SAMPLE_RATE, 1, FRAME_SAMPLES))
                n += FRAME_SAMPLES

        feeder = asyncio.ensure_future(feed())
    return room, feeder


async def _session_figure(server: Any, sdk: str, scenario: str, seconds: float) -> dict[str, Any]:
    room_name = f"footprint-{scenario}-{sdk}-{uuid.uuid4().hex[:8]}"
    counterpart, feeder = await _counterpart(
        server.url, server.create_token("counterpart", room_name), scenario == "audio"
    )
    try:
        token = server.create_token(f"{sdk}-client", room_name)
        return await asyncio.to_thread(
            _spawn,
            [scenario, sdk, server.url, token, str(seconds)],
            DEFAULT_TIMEOUT_S * 3,
        )
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        await counterpart.disconnect()


async def _sessions(seconds: float) -> dict[str, dict[str, Any]]:
    from lkproto.testing import LocalServer

    out: dict[str, dict[str, Any]] = {}
    async with LocalServer(log_level="warn") as server:
        for scenario in ("data", "audio"):
            for sdk in SDKS:
                out.setdefault(scenario, {})[sdk] = await _session_figure(
                    server, sdk, scenario, seconds
                )
    return out


def _compile_bytecode() -> None:
    """Write lkproto's ``.pyc`` files, as installing a wheel does (see the module docstring)."""
    import compileall

    package = Path(__file__).resolve().parents[1] / "lkproto"
    compileall.compile_dir(str(package), quiet=1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--worker"]:
        return worker(args_list[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--imports", type=int, default=DEFAULT_IMPORTS, help="fresh interpreters")
    parser.add_argument(
        "--audio-seconds", type=float, default=DEFAULT_AUDIO_SECONDS, help="audio run length"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    args = parser.parse_args(args_list)
    if args.imports < 1:
        parser.error("--imports must be >= 1")

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine_info, utc_now, write_json

    logging.basicConfig(level=logging.WARNING)
    started = utc_now()
    _compile_bytecode()
    load_before = os.getloadavg()
    imports: dict[str, list[dict[str, Any]]] = {sdk: [] for sdk in SDKS}
    for _ in range(args.imports):
        for sdk in SDKS:  # interleaved, so load changes hit both alike
            imports[sdk].append(_spawn(["import", sdk], DEFAULT_TIMEOUT_S))
    load_after_imports = os.getloadavg()
    layers = {sdk: _spawn(["layers", sdk], DEFAULT_TIMEOUT_S)["layers"] for sdk in SDKS}
    sessions = asyncio.run(_sessions(args.audio_seconds))
    load_after = os.getloadavg()

    summary: dict[str, dict[str, Any]] = {}
    for sdk in SDKS:
        summary[sdk] = {
            "import_ms_median": statistics.median(r["import_s"] for r in imports[sdk]) * 1000,
            "import_cpu_ms_median": statistics.median(r["import_cpu_s"] for r in imports[sdk])
            * 1000,
            "import_loads": sorted({m for r in imports[sdk] for m in r["heavy_loaded"]}),
            "import_rss_kib_median": statistics.median(r["rss_kib"] for r in imports[sdk]),
            "import_loads_av": any(r["av"] for r in imports[sdk]),
            "data_only_rss_kib": sessions["data"][sdk]["rss_kib"],
            "data_only_loads_av": sessions["data"][sdk]["av"],
            "data_only_loads_numpy": sessions["data"][sdk]["numpy"],
            "audio_rss_kib": sessions["audio"][sdk]["rss_kib"],
        }
    rows = [
        ("import time (ms, median)", "import_ms_median", 1.0),
        ("import CPU time (ms, median)", "import_cpu_ms_median", 1.0),
        ("RSS after import (MiB)", "import_rss_kib_median", 1 / 1024),
        ("RSS, data-only session (MiB)", "data_only_rss_kib", 1 / 1024),
        ("RSS, one audio track each way (MiB)", "audio_rss_kib", 1 / 1024),
    ]
    lines = [
        "| figure | lkproto | official | lkproto/official |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key, scale in rows:
        ours, theirs = summary["lkproto"][key], summary["official"][key]
        ratio = _ratio(ours, theirs)
        lines.append(
            f"| {label} | {ours * scale:.1f} | {theirs * scale:.1f} | "
            + (f"{ratio:.2f}x |" if ratio is not None else "n/a |")
        )
    table = "\n".join(lines)
    print(table)
    print()
    layer_lines = ["| step | RSS MiB | + MiB | CPU ms |", "| --- | ---: | ---: | ---: |"]
    for sdk in SDKS:
        previous = None
        for step in layers[sdk]:
            rss = step["rss_kib"] / 1024
            delta = "" if previous is None else f"{rss - previous:+.1f}"
            layer_lines.append(
                f"| {sdk}: {step['step']} | {rss:.1f} | {delta} | {step['cpu_s'] * 1000:.0f} |"
            )
            previous = rss
    layer_table = "\n".join(layer_lines)
    print(layer_table)
    print()
    print(
        f"data-only lkproto client imported PyAV: {summary['lkproto']['data_only_loads_av']}, "
        f"numpy: {summary['lkproto']['data_only_loads_numpy']}; "
        f"load average {load_before[0]:.2f} before, {load_after_imports[0]:.2f} after the "
        f"imports, {load_after[0]:.2f} after"
    )
    print(f"lkproto import loaded: {summary['lkproto']['import_loads'] or 'none of'} {HEAVY}")
    machine = machine_info()
    payload = {
        "benchmark": "footprint",
        "started": started,
        "finished": utc_now(),
        "config": {"imports": args.imports, "audio_seconds": args.audio_seconds},
        "load_average_1m": {
            "before": load_before[0],
            "after_imports": load_after_imports[0],
            "after": load_after[0],
        },
        "machine": machine,
        "results": {
            "summary": summary,
            "imports": imports,
            "layers": layers,
            "sessions": sessions,
        },
        "table_markdown": table,
        "layers_markdown": layer_table,
    }
    path = write_json(args.json, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
