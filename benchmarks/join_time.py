"""Join time: lkproto against the official SDK (PyPI ``livekit``), same server, same run.

Run from the repository root::

    .venv/bin/python benchmarks/join_time.py [--joins 20]
        [--situations default,coturn,silent,loopback] [--json benchmarks/results/join_time.json]

Situations (issue 18): with default ``RoomOptions()`` both SDKs gather a server-reflexive candidate
from the STUN server the LiveKit server advertises, so the join is measured in three STUN
situations, each on its own server:

``default``
    :class:`lkproto.testing.LocalServer` as it is: it advertises a loopback port nobody listens on.
``coturn``
    the server advertises a real STUN server on loopback (Debian coturn, STUN-only,
    :class:`lkproto.testing.stun.CoturnStun`); skipped with a note when coturn is missing.
``silent``
    the server advertises a socket that reads and drops every query (a dropping firewall).
``loopback``
    the older figure: ``default``'s server, lkproto with
    ``RtcConfiguration(ice_addresses=["127.0.0.1"])`` (no STUN at all), the official SDK with
    ``RtcConfiguration(ice_servers=[])`` (= the server's list, so the same as its default).

For each situation it starts its own loopback livekit-server, joins one warm-up room per SDK (not
counted: first imports, the official SDK's FFI runtime, aiortc's first certificate), then
``--joins`` rounds. A round joins once with each SDK; the SDK that goes first alternates from round
to round so that neither always runs on a server that just saw a leave. Every join uses a fresh
room and identity and disconnects before the next one starts. Times are ``time.perf_counter`` wall
times of the awaited calls; nothing else runs in the event loop.

What each number measures
-------------------------
``connect``
    ``await Room.connect(url, token, options)``.

    *lkproto* returns once the JoinResponse arrived, the peer connection is up (ICE + DTLS) and
    both data channels (``_reliable``, ``_lossy``) are open: the room can send and receive data.

    *official* (``livekit`` over its Rust FFI) returns once the Rust engine reports the room
    connected (JoinResponse + primary peer connection connected) and the FFI callback reached
    Python. Its data channels may still be opening.

``connect+data``
    ``connect`` plus the first reliable user packet accepted by an open ``_reliable`` channel:
    the moment the room is usable for data in both SDKs. *lkproto*:
    ``await room.engine.send_data(packet, reliable=True)`` (channels are already open, so this
    costs microseconds). *official*: ``await room.local_participant.publish_data(b"x",
    reliable=True)``, which first waits for the publisher connection and ``_reliable`` channel
    when they are not open yet.

``disconnect``
    ``await room.disconnect()`` after the packet (leave sent, transports closed).

``rss delta``
    Resident memory of the whole process while connected minus just before ``connect`` (KiB,
    after a ``gc.collect()``). Both SDKs share the process, so this is indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from _common import current_rss_kib, machine_info, summarize, utc_now, write_json
from livekit import rtc as official

from lkproto import rtc as lk
from lkproto.testing import DEFAULT_LIVEKIT_SERVER_VERSION, LocalServer
from lkproto.testing.stun import CoturnStun, SilentStun, stun_config
from lkproto.wire import pb

DEFAULT_JOINS: Final = 20
DEFAULT_WARMUP: Final = 1
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_PAUSE_S: Final = 0.1
DEFAULT_JSON: Final = Path(__file__).parent / "results" / "join_time.json"

SDKS: Final = ("lkproto", "official")
SITUATIONS: Final = ("default", "coturn", "silent", "loopback")
MEASURES: Final = ("connect", "connect+data", "disconnect")
PAYLOAD: Final = b"x"


@dataclass(slots=True)
class Sample:
    """One join: seconds per measure, memory growth in KiB (``None`` if not measurable)."""

    connect_s: float
    data_s: float
    disconnect_s: float
    rss_delta_kib: int | None


@dataclass(slots=True)
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {s: [] for s in SDKS})
    errors: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SDKS})


async def join_lkproto(url: str, token: str, limit_s: float, situation: str) -> Sample:
    room = lk.Room()
    options = (
        lk.RoomOptions(rtc_config=lk.RtcConfiguration(ice_addresses=["127.0.0.1"]))
        if situation == "loopback"
        else lk.RoomOptions()
    )
    packet = pb.DataPacket(user=pb.UserPacket(payload=PAYLOAD))
    try:
        rss0 = current_rss_kib()
        t0 = time.perf_counter()
        await asyncio.wait_for(room.connect(url, token, options), limit_s)
        t1 = time.perf_counter()
        engine = room.engine
        assert engine is not None
        await asyncio.wait_for(engine.send_data(packet, reliable=True), limit_s)
        t2 = time.perf_counter()
        rss1 = current_rss_kib()
        await asyncio.wait_for(room.disconnect(), limit_s)
        t3 = time.perf_counter()
    finally:
        with contextlib.suppress(Exception):
            await room.disconnect()
    return Sample(t1 - t0, t2 - t0, t3 - t2, _delta(rss0, rss1))


async def join_official(url: str, token: str, limit_s: float, situation: str) -> Sample:
    room = official.Room()
    options = (
        official.RoomOptions(rtc_config=official.RtcConfiguration(ice_servers=[]))
        if situation == "loopback"
        else official.RoomOptions()
    )
    try:
        rss0 = current_rss_kib()
        t0 = time.perf_counter()
        await asyncio.wait_for(room.connect(url, token, options), limit_s)
        t1 = time.perf_counter()
        await asyncio.wait_for(room.local_participant.publish_data(PAYLOAD, reliable=True), limit_s)
        t2 = time.perf_counter()
        rss1 = current_rss_kib()
        await asyncio.wait_for(room.disconnect(), limit_s)
        t3 = time.perf_counter()
    finally:
        with contextlib.suppress(Exception):
            await room.disconnect()
    return Sample(t1 - t0, t2 - t0, t3 - t2, _delta(rss0, rss1))


JOINERS: Final[dict[str, Callable[[str, str, float, str], Awaitable[Sample]]]] = {
    "lkproto": join_lkproto,
    "official": join_official,
}


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


async def one_join(
    server: LocalServer, sdk: str, label: str, limit_s: float, situation: str
) -> Sample:
    suffix = uuid.uuid4().hex[:8]
    token = server.create_token(f"{sdk}-{label}-{suffix}", f"bench-join-{sdk}-{label}-{suffix}")
    gc.collect()
    return await JOINERS[sdk](server.url, token, limit_s, situation)


@contextlib.asynccontextmanager
async def stun_situation(situation: str) -> AsyncIterator[dict[str, object] | None]:
    """LocalServer's ``extra_config`` for ``situation`` (None: LocalServer's own STUN list)."""
    if situation == "coturn":
        with CoturnStun() as coturn:
            yield stun_config(coturn.port)
    elif situation == "silent":
        async with SilentStun() as silent:
            yield stun_config(silent.port)
    else:
        yield None


async def run(
    joins: int, warmup: int, limit_s: float, pause: float, situation: str
) -> tuple[Results, str]:
    results = Results()
    async with (
        stun_situation(situation) as extra,
        LocalServer(log_level="warn", extra_config=extra) as server,
    ):
        for i in range(warmup):
            for sdk in SDKS:
                await one_join(server, sdk, f"warmup{i}", limit_s, situation)
                await asyncio.sleep(pause)
        for i in range(joins):
            order = SDKS if i % 2 == 0 else tuple(reversed(SDKS))
            for sdk in order:
                try:
                    sample = await one_join(server, sdk, str(i), limit_s, situation)
                except Exception as exc:  # a failed join is counted, not fatal
                    results.errors[sdk].append(f"join {i}: {exc!r}")
                else:
                    results.samples[sdk].append(sample)
                await asyncio.sleep(pause)
        server_url = server.url
    return results, server_url


def _values(samples: Sequence[Sample], measure: str) -> list[float]:
    pick: dict[str, Callable[[Sample], float]] = {
        "connect": lambda s: s.connect_s * 1000,
        "connect+data": lambda s: s.data_s * 1000,
        "disconnect": lambda s: s.disconnect_s * 1000,
    }
    return [pick[measure](s) for s in samples]


def report(results: Results) -> dict[str, object]:
    """Per measure and SDK: summary in ms (and samples); ratio lkproto/official of medians."""
    out: dict[str, object] = {}
    for measure in MEASURES:
        row: dict[str, object] = {}
        medians: dict[str, float] = {}
        for sdk in SDKS:
            values = _values(results.samples[sdk], measure)
            summary = summarize(values)
            row[sdk] = {
                **(summary.as_dict() if summary else {"n": 0}),
                "failed": len(results.errors[sdk]),
                "samples": [round(v, 3) for v in values],
            }
            if summary is not None:
                medians[sdk] = summary.median
        if len(medians) == 2 and medians["official"] > 0:
            row["ratio_median_lkproto_over_official"] = medians["lkproto"] / medians["official"]
        out[measure] = row
    rss: dict[str, object] = {}
    for sdk in SDKS:
        deltas = [s.rss_delta_kib for s in results.samples[sdk] if s.rss_delta_kib is not None]
        summary = summarize([float(d) for d in deltas])
        rss[sdk] = summary.as_dict() if summary else None
    out["rss_delta_kib"] = rss
    return out


def markdown_table(summary: dict[str, object]) -> str:
    def cell(sdk_row: object, key: str) -> str:
        assert isinstance(sdk_row, dict)
        value = sdk_row.get(key)
        return f"{value:.1f}" if isinstance(value, float) else "n/a"

    lines = [
        "| measure (ms) | lkproto median | p90 | min | max "
        "| official median | p90 | min | max | lkproto/official (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for measure in MEASURES:
        row = summary[measure]
        assert isinstance(row, dict)
        cells = [cell(row[sdk], k) for sdk in SDKS for k in ("median", "p90", "min", "max")]
        ratio = row.get("ratio_median_lkproto_over_official")
        ratio_cell = f"{ratio:.2f}x" if isinstance(ratio, float) else "n/a"
        lines.append(f"| {measure} | " + " | ".join(cells) + f" | {ratio_cell} |")
    rss = summary["rss_delta_kib"]
    assert isinstance(rss, dict)
    rss_cells = []
    for sdk in SDKS:
        r = rss[sdk]
        rss_cells.append(
            f"{sdk} median {r['median']:.0f} KiB (max {r['max']:.0f})" if r else f"{sdk} n/a"
        )
    lines.append("")
    lines.append("RSS growth while connected, per join: " + "; ".join(rss_cells) + ".")
    return "\n".join(lines)


def situations_table(by_situation: dict[str, dict[str, object]]) -> str:
    """One row per situation: connect and connect+data medians and ratios."""
    lines = [
        "| situation | connect lkproto | official | ratio | connect+data lkproto | official "
        "| ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for situation, summary in by_situation.items():
        cells: list[str] = []
        for measure in ("connect", "connect+data"):
            row = summary[measure]
            assert isinstance(row, dict)
            for sdk in SDKS:
                median = row[sdk].get("median")
                cells.append(f"{median:.1f} ms" if isinstance(median, float) else "n/a")
            ratio = row.get("ratio_median_lkproto_over_official")
            cells.append(f"{ratio:.2f}x" if isinstance(ratio, float) else "n/a")
        lines.append(f"| {situation} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--joins", type=int, default=DEFAULT_JOINS, help="rounds (one join each)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed rounds")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per call, s")
    parser.add_argument(
        "--pause", type=float, default=DEFAULT_PAUSE_S, help="idle time between joins, s"
    )
    parser.add_argument(
        "--situations",
        default=",".join(SITUATIONS),
        help=f"comma-separated STUN situations, of {', '.join(SITUATIONS)}",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    args = parser.parse_args(argv)
    if args.joins < 1:
        parser.error("--joins must be >= 1 (use >= 20 for published numbers)")
    chosen = [name.strip() for name in args.situations.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SITUATIONS))
    if unknown or not chosen:
        parser.error(f"unknown situation(s) {unknown}; choose from {', '.join(SITUATIONS)}")
    if "coturn" in chosen and not CoturnStun.available():
        print("coturn is not installed (tools/setup_stun.sh): skipping 'coturn'", file=sys.stderr)
        chosen.remove("coturn")

    logging.basicConfig(level=logging.WARNING)
    started = utc_now()
    load_before = os.getloadavg()
    by_situation: dict[str, dict[str, object]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    tables: dict[str, str] = {}
    for situation in chosen:
        results, _ = asyncio.run(run(args.joins, args.warmup, args.timeout, args.pause, situation))
        by_situation[situation] = report(results)
        errors[situation] = results.errors
        tables[situation] = markdown_table(by_situation[situation])
    load_after = os.getloadavg()
    machine = machine_info({"livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION})

    for situation, table in tables.items():
        print(f"### {situation}\n")
        print(table)
        print()
    overview = situations_table(by_situation)
    print(overview)
    print()
    packages = machine["packages"]
    assert isinstance(packages, dict)
    print(
        f"{args.joins} joins per SDK and situation (+{args.warmup} warm-up), interleaved; "
        f"{machine['cpu_model']}, {machine['cpu_count']} CPU, {machine['uname']}; "
        f"Python {machine['python']}, aiortc {packages['aiortc']}, livekit {packages['livekit']}, "
        f"livekit-server {DEFAULT_LIVEKIT_SERVER_VERSION}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    for situation, per_sdk in errors.items():
        for sdk in SDKS:
            for err in per_sdk[sdk]:
                print(f"{situation} {sdk} failure: {err}", file=sys.stderr)

    payload = {
        "benchmark": "join_time",
        "started": started,
        "finished": utc_now(),
        "config": {
            "joins": args.joins,
            "warmup": args.warmup,
            "timeout_s": args.timeout,
            "pause_s": args.pause,
            "situations": chosen,
            "lkproto_options": "RoomOptions() (loopback: RtcConfiguration(ice_addresses="
            "['127.0.0.1']))",
            "official_options": "RoomOptions() (loopback: RtcConfiguration(ice_servers=[]))",
        },
        "definitions": {
            "connect": "await Room.connect() wall time; lkproto: data channels open; "
            "official: Rust engine connected + FFI callback",
            "connect+data": "connect + first reliable packet accepted by an open _reliable "
            "channel (lkproto engine.send_data, official local_participant.publish_data)",
            "disconnect": "await Room.disconnect() wall time",
            "rss_delta_kib": "process VmRSS while connected minus before connect",
            "default": "LocalServer as it is (advertised STUN port unused)",
            "coturn": "LocalServer advertising coturn (STUN-only) on loopback",
            "silent": "LocalServer advertising a loopback socket that drops every query",
            "loopback": "default's server; lkproto gathers on 127.0.0.1 only, no STUN",
        },
        "load_average_1m": {"before": load_before[0], "after": load_after[0]},
        "machine": machine,
        "results": by_situation,
        "errors": errors,
        "table_markdown": overview,
        "tables_markdown": tables,
    }
    path = write_json(args.json, payload)
    print(f"wrote {path}")
    return 1 if any(any(e.values()) for e in errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
