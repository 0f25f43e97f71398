"""Many lkproto participants in one process, for load runs (``-m lkproto.testing.loadworker``).

Started by ``benchmarks/load.py`` and ``tests/faults/test_load.py`` through
:meth:`lkproto.testing.faults.FaultLab.spawn`. Configuration (one JSON object, the only argument):
``url``; ``participants`` = ``[[identity, token], ...]``; ``packet_interval_s`` (each participant
broadcasts one reliable packet that often); ``attribute_interval_s`` (and changes an attribute that
often); ``join_gap_s`` (pause between starting two joins); ``room_size`` (participants in the room
over all workers: ``joined`` is printed once each local participant sees the others, or after
60 s).

Lines printed (JSON objects with ``ev`` and ``t``): ``joined`` (``join_s`` per identity, ``failed``
joins), ``report`` (``participants``: per identity ``sent``, ``attributes``, ``recv`` =
``{sender: [distinct, duplicates]}``; ``cpu_s`` of this process, ``rss_kib``), ``error``.
Commands on stdin: ``{"cmd": "go"}`` starts sending, ``{"cmd": "halt"}`` stops sending,
``{"cmd": "report"}``, ``{"cmd": "stop"}`` (disconnect everyone and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from typing import Any, Final

__all__ = ["main"]

_CONNECT_TIMEOUT_S: Final = 60.0
_DISCONNECT_TIMEOUT_S: Final = 10.0
_ROSTER_TIMEOUT_S: Final = 60.0
_TOPIC: Final = "lkload"


def _emit(ev: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Participant:
    def __init__(self, identity: str, token: str) -> None:
        from lkproto import rtc

        self.rtc: Any = rtc
        self.identity = identity
        self.token = token
        self.room: Any = rtc.Room()
        self.sent = 0
        self.attributes = 0
        self.attribute_errors: list[str] = []
        self.seen: dict[str, set[int]] = {}
        self.duplicates: dict[str, int] = {}
        self.room.on("data_received", self.on_data)
        self.events: list[str] = []
        for name in ("reconnecting", "reconnected", "disconnected"):
            self.room.on(name, lambda *_, n=name: self.events.append(n))

    def on_data(self, packet: Any) -> None:
        if packet.topic != _TOPIC or packet.participant is None:
            return
        sender = packet.participant.identity
        seq = int(bytes(packet.data).split(b"|", 1)[0])
        seen = self.seen.setdefault(sender, set())
        if seq in seen:
            self.duplicates[sender] = self.duplicates.get(sender, 0) + 1
        seen.add(seq)

    async def join(self, url: str) -> float:
        rtc = self.rtc
        options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))
        began = time.monotonic()
        await asyncio.wait_for(self.room.connect(url, self.token, options), _CONNECT_TIMEOUT_S)
        return time.monotonic() - began

    async def send_loop(self, packet_s: float, attribute_s: float) -> None:
        lp = self.room.local_participant
        began = time.monotonic()
        next_attribute = began + attribute_s
        while True:
            payload = f"{self.sent}|{self.identity}".encode()
            await lp.publish_data(payload, reliable=True, topic=_TOPIC)
            self.sent += 1
            now = time.monotonic()
            if now >= next_attribute:
                next_attribute += attribute_s
                try:
                    await lp.set_attributes({"tick": str(self.attributes + 1)})
                except Exception as exc:  # counted, and the packets go on
                    self.attribute_errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    self.attributes += 1
            await asyncio.sleep(max(began + self.sent * packet_s - time.monotonic(), 0.0))

    def report(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "attributes": self.attributes,
            "attribute_errors": self.attribute_errors[:3],
            "events": self.events,
            "state": getattr(self.room.connection_state, "name", None),
            "recv": {s: [len(v), self.duplicates.get(s, 0)] for s, v in self.seen.items()},
        }


async def _run(config: dict[str, Any]) -> None:
    url = config["url"]
    gap = float(config.get("join_gap_s", 0.1))
    crowd = [_Participant(identity, token) for identity, token in config["participants"]]
    join_s: dict[str, float] = {}
    failed: dict[str, str] = {}

    async def join(p: _Participant, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            join_s[p.identity] = await p.join(url)
        except Exception as exc:  # a failed join is a measured outcome
            failed[p.identity] = f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(join(p, i * gap) for i, p in enumerate(crowd)))
    # Wait (bounded) until every participant here sees the whole room, so no packet goes out
    # before its recipients are in it; the harness starts sending only after every worker did.
    total = int(config.get("room_size", len(crowd)))
    deadline = time.monotonic() + _ROSTER_TIMEOUT_S
    while time.monotonic() < deadline and any(  # noqa: ASYNC110 - two SDK objects, no event
        len(p.room.remote_participants) < total - 1 for p in crowd if p.identity in join_s
    ):
        await asyncio.sleep(0.1)
    roster = {p.identity: len(p.room.remote_participants) for p in crowd if p.identity in join_s}
    _emit("joined", join_s=join_s, failed=failed, roster=roster)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    senders: list[asyncio.Task[None]] = []
    packet_s = float(config.get("packet_interval_s", 1.0))
    attribute_s = float(config.get("attribute_interval_s", 10.0))
    while True:
        line = await reader.readline()
        command = json.loads(line) if line.strip() else {"cmd": "stop"}
        match command.get("cmd"):
            case "go":
                senders = [
                    asyncio.create_task(p.send_loop(packet_s, attribute_s))
                    for p in crowd
                    if p.identity in join_s
                ]
            case "halt":
                for task in senders:
                    task.cancel()
                await asyncio.gather(*senders, return_exceptions=True)
                errors = [
                    repr(t.exception()) for t in senders if not t.cancelled() and t.exception()
                ]
                if errors:
                    _emit("error", error=errors[:5])
                senders = []
            case "report":
                _emit(
                    "report",
                    participants={p.identity: p.report() for p in crowd},
                    cpu_s=_cpu_s(),
                    rss_kib=_rss_kib(),
                )
            case _:
                break
    for task in senders:
        task.cancel()

    async def leave(p: _Participant) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.room.disconnect(), _DISCONNECT_TIMEOUT_S)

    await asyncio.gather(*(leave(p) for p in crowd))


def main(argv: list[str] | None = None) -> int:
    """Run the crowd described by the JSON configuration in ``argv[0]``."""
    args = sys.argv[1:] if argv is None else argv
    level = json.loads(args[0]).get("log_level")
    if level:
        logging.basicConfig(level=str(level).upper(), stream=sys.stderr)
    try:
        asyncio.run(_run(json.loads(args[0])))
    except Exception as exc:
        _emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
