"""Issue 15: a sender's full reconnect delivers nothing twice (``UserPacket.nonce``).

How the duplicate is made, deterministically: while an lkproto sender sends, the namespace drops
every UDP datagram from the server's ICE port to the sender's ICE socket, and nothing else. The
sender's packets still reach the server, which forwards them to both receivers, but the SCTP
acknowledgements never come back; after 8 s without a datagram
(``lkproto.core.reconnect.TRANSPORT_SILENCE_S``) the sender makes a full reconnect on new
sockets and resends what its old association held unacknowledged (core/reliable.py "Full
reconnect"), packets the receivers already have. The resend carries a new SID and new sequences,
so only the nonce ties it to the original (core/reliable.py "Nonces").

Three cases. ``within_window``: nothing else passes through the room between the original and
the resend, so livekit-server's room-wide last-100 nonce window drops the resend itself; neither
the lkproto receiver nor the official SDK receiver gets a copy. ``beyond_window``: 150 RoomService
``SendData`` packets (each with its own nonce, on another topic) pass through the room during the
stall, before the reconnect, pushing the originals out of the server's window; the resend reaches
the receivers, the lkproto receiver's :class:`~lkproto.core.reliable.UserNonceFilter` drops it,
and the official SDK receiver shows it (asserted: it proves the scenario produced a repeat).
``encrypted``: as ``within_window`` with all three in the room end-to-end encrypted (one shared
key). The nonce is inside the ciphertext, so the server cannot drop the resend; the lkproto
receiver drops it after decrypting, the official SDK receiver shows it.

Before the nonce (commit 4f912ca, measured with this test): every resent packet the server had
already forwarded reached both receivers twice (figures in docs/reference/failure-behaviour.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable

import pytest

from lkproto import api
from lkproto.testing import scaled
from lkproto.testing.faults import FaultLab, Worker

RecordProperty = Callable[[str, object], None]
"""pytest's ``record_property`` fixture."""

_PACKETS = 700
_INTERVAL_S = 0.02
_SIZE = 200
# Acknowledgements are cut this long after the go, while the sender is mid-transfer.
_CUT_AFTER_S = 2.0
# RoomService SendData packets sent during the stall in the beyond-window case: more than the
# server's window of 100 nonces (pkg/rtc/user_packet_deduper.go maxSize).
_FILLER = 150
_FILLER_AFTER_CUT_S = 1.0
_NFT_TABLE = "lkdup"
_READY_S = 60.0
_RECONNECT_S = 60.0
_RESEND_LOG = re.compile(r"full reconnect: (\d+) reliable packets to resend")
_E2EE_KEY = "duplicates-e2ee-key"


def _udp_ports_of(lab: FaultLab, pid: int) -> list[int]:
    """The local UDP ports of process ``pid`` in the lab's namespace."""
    ports = set()
    for line in lab.netns.exec(["ss", "-uanpH"]).splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return sorted(ports)


def _cut_acks(lab: FaultLab, ports: list[int]) -> None:
    """Drop what the server's ICE port sends to ``ports`` (an input hook: lost, not refused)."""
    dports = "{ " + ", ".join(str(p) for p in ports) + " }"
    lab.netns.exec(
        ["nft", "-f", "-"],
        stdin=(
            f"table inet {_NFT_TABLE} {{\n"
            "  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f"    udp sport {lab.server.udp_port} udp dport {dports} counter drop\n"
            "  }\n"
            "}\n"
        ),
    )


def _restore_acks(lab: FaultLab) -> None:
    with contextlib.suppress(Exception):
        lab.netns.exec(["nft", "delete", "table", "inet", _NFT_TABLE])


def _send_filler(lab: FaultLab, room: str, count: int) -> None:
    """``count`` server-originated user packets into ``room``, each with its own nonce."""

    async def send() -> None:
        lkapi = api.LiveKitAPI(lab.url, lab.server.api_key, lab.server.api_secret)
        for i in range(count):
            await lkapi.room.send_data(
                api.SendDataRequest(
                    room=room,
                    data=f"filler {i}".encode(),
                    kind=api.DataPacket.Kind.RELIABLE,
                    topic="filler",
                )
            )
        await lkapi.aclose()

    # The server listens inside the namespace: the requests go from a thread in it.
    lab.netns.call(lambda: asyncio.run(send()), timeout=scaled(60))


def _report(rx: Worker, accepted: set[int], drain_s: float) -> list[int]:
    """The receiver's arrivals (sequence numbers, repeats included) once it has all of
    ``accepted`` (or ``drain_s`` passed), asked again a second later for late repeats."""
    deadline = time.monotonic() + drain_s
    while True:
        index = len(rx.events("report"))
        rx.send({"cmd": "report"})
        report = rx.wait_nth("report", index, 10.0)
        got = [int(a[0]) for a in report["arrivals"]]  # type: ignore[attr-defined]
        if accepted <= set(got) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    index = len(rx.events("report"))
    rx.send({"cmd": "report"})
    report = rx.wait_nth("report", index, 10.0)
    return [int(a[0]) for a in report["arrivals"]]  # type: ignore[attr-defined]


def _duplicates(arrivals: list[int]) -> int:
    return sum(n - 1 for n in collections.Counter(arrivals).values())


def _run(lab: FaultLab, *, filler: int, e2ee_key: str | None = None) -> dict[str, object]:
    room = f"dup-{secrets.token_hex(4)}"
    e2ee = {} if e2ee_key is None else {"e2ee_key": e2ee_key}
    ours = lab.spawn_worker(
        {"sdk": "lkproto", "role": "receiver", "size": _SIZE, "token": lab.token("rx", room)}
        | e2ee,
        label="lkproto-rx",
    )
    theirs = lab.spawn_worker(
        {"sdk": "livekit", "role": "receiver", "size": _SIZE, "token": lab.token("off", room)}
        | e2ee,
        label="livekit-rx",
    )
    ours.wait_event("ready", _READY_S)
    theirs.wait_event("ready", _READY_S)
    tx = lab.spawn_worker(
        {
            "sdk": "lkproto",
            "role": "sender",
            "size": _SIZE,
            "token": lab.token("tx", room),
            "peer": "rx",
            "packets": _PACKETS,
            "interval_s": _INTERVAL_S,
            "rpcs": 0,
            "publish_timeout_s": 30.0,
            # The engine logs how many packets the full reconnect resends (INFO).
            "log_level": "INFO",
        }
        | e2ee,
        label="lkproto-tx",
    )
    tx.wait_event("ready", _READY_S)
    ports = _udp_ports_of(lab, tx.proc.pid)
    assert ports, "the sender has no UDP socket in the namespace"
    tx.send({"cmd": "go"})
    try:
        time.sleep(_CUT_AFTER_S)
        _cut_acks(lab, ports)
        if filler:
            # After the originals reached the server, well before the 8 s silence ends in the
            # full reconnect (its resend follows within ~0.1 s).
            time.sleep(_FILLER_AFTER_CUT_S)
            _send_filler(lab, room, filler)
            assert not tx.events("reconnecting"), "the filler came too late to be in between"
        tx.wait_event("reconnected", scaled(_RECONNECT_S))
    finally:
        _restore_acks(lab)
    done = tx.wait_event("done", scaled(120))
    sends = done["sends"]
    accepted = {int(s[0]) for s in sends if s[3] == "ok"}  # type: ignore[attr-defined]
    got_ours = _report(ours, accepted, scaled(30))
    got_theirs = _report(theirs, accepted, scaled(30))
    resent = [int(m) for m in _RESEND_LOG.findall(tx.log_path.read_text())]
    for worker in (tx, ours, theirs):
        worker.send({"cmd": "stop"})
    return {
        "accepted": len(accepted),
        "resent": resent,
        "lkproto": {
            "lost": len(accepted - set(got_ours)),
            "duplicates": _duplicates(got_ours),
            "in_order": got_ours == sorted(got_ours),
        },
        "official": {
            "lost": len(accepted - set(got_theirs)),
            "duplicates": _duplicates(got_theirs),
        },
    }


@pytest.mark.parametrize("window", ["within_window", "beyond_window", "encrypted"])
def test_full_reconnect_resend_is_delivered_once(
    lab: FaultLab, record_property: RecordProperty, window: str
) -> None:
    result = _run(
        lab,
        filler=_FILLER if window == "beyond_window" else 0,
        e2ee_key=_E2EE_KEY if window == "encrypted" else None,
    )
    detail = json.dumps(result)
    record_property("duplicates", detail)
    print(f"\n{window}: {detail}")
    resent = result["resent"]
    ours, theirs = result["lkproto"], result["official"]
    assert isinstance(resent, list)
    assert isinstance(ours, dict)
    assert isinstance(theirs, dict)
    # The scenario happened: one full reconnect that resent unacknowledged packets.
    assert len(resent) == 1, detail
    assert resent[0] > 0, detail
    assert result["accepted"] == _PACKETS, detail
    # lkproto: everything once, in order, whatever the server's window.
    assert ours == {"lost": 0, "duplicates": 0, "in_order": True}, detail
    assert theirs["lost"] == 0, detail
    if window == "within_window":
        # The server's window dropped the resend for every receiver.
        assert theirs["duplicates"] == 0, detail
    else:
        # Past the window, or sealed where the server cannot see the nonce, the resend reaches
        # receivers: the official SDK shows the repeats lkproto's filter dropped.
        assert theirs["duplicates"] > 0, detail
