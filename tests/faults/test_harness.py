"""The fault harness itself: impairments really act, faults really happen, cleanup always runs."""

from __future__ import annotations

import gc
import os
import re
import socket
import subprocess
import urllib.request
from typing import TYPE_CHECKING

import pytest

from lkproto.testing import scaled
from lkproto.testing.faults import FaultLab, Impairment, Netns, Worker

if TYPE_CHECKING:
    from pathlib import Path

_DATAGRAMS = 400


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _dropped(lab: FaultLab) -> list[int]:
    return [int(n) for n in re.findall(r"counter packets (\d+)", lab.drop_counters())]


def _send_datagrams(lab: FaultLab) -> None:
    port = lab.server.udp_port

    def send() -> None:
        # Raises if a drop made sendto fail (an output hook would: EPERM).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(_DATAGRAMS):
                sock.sendto(b"not stun", ("127.0.0.1", port))

    lab.netns.call(send)


def _http_ok(lab: FaultLab) -> bool:
    def probe() -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{lab.server.port}/", timeout=scaled(5)) as answer:
            return bool(answer.status == 200)

    return lab.netns.call(probe)


def test_namespace_has_loopback_and_internal_veth(lab: FaultLab) -> None:
    addresses = lab.netns.exec(["ip", "-4", "-o", "addr", "show"])
    assert "127.0.0.1/8" in addresses
    assert "10.99.0.1/24" in addresses
    assert "10.99.0.2/24" in addresses
    # Both veth ends stay in the namespace: the host has no link of that name.
    host_links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    assert "lkf0" not in host_links
    assert _http_ok(lab)


def test_random_loss_drops_in_input_hook(lab: FaultLab) -> None:
    lab.set_impairment(Impairment(loss_up=0.5))
    _send_datagrams(lab)
    (dropped,) = _dropped(lab)
    # Binomial(400, 0.5): mean 200, sd 10; these bounds are 8 sd wide.
    assert 120 <= dropped <= 280
    lab.update(loss_up=0.0, udp_blocked=True)
    _send_datagrams(lab)
    assert _dropped(lab)[0] == _DATAGRAMS  # dport rule of the outage: every datagram
    lab.clear()
    assert _dropped(lab) == []


def test_signal_outage_blocks_the_websocket_port(lab: FaultLab) -> None:
    with lab.signal_outage(), pytest.raises(TimeoutError):  # SYNs dropped: connect times out
        lab.netns.call(
            lambda: socket.create_connection(("127.0.0.1", lab.server.port), timeout=1.0)
        )
    assert _http_ok(lab)


def test_rate_limit_installs_and_removes_tbf(lab: FaultLab) -> None:
    lab.update(rate_kbit=1000)
    assert "tbf" in lab.netns.exec(["tc", "qdisc", "show", "dev", "lo"])
    lab.clear()
    assert "tbf" not in lab.netns.exec(["tc", "qdisc", "show", "dev", "lo"])


def test_kill_and_restart_on_same_ports(lab: FaultLab) -> None:
    port, udp_port, first_pid = lab.server.port, lab.server.udp_port, lab.server.pid
    assert first_pid is not None
    lab.kill_server()
    assert not _alive(first_pid)
    assert not lab.server.running
    lab.restart_server()
    assert (lab.server.port, lab.server.udp_port) == (port, udp_port)
    assert lab.server.pid not in (None, first_pid)
    assert _http_ok(lab)


def test_cleanup_after_exception(livekit_server_binary: Path) -> None:
    lab = FaultLab(server_options={"binary": livekit_server_binary})
    seen: dict[str, object] = {}

    def failing_test() -> None:
        with lab:
            worker = lab.spawn(["sleep", "300"], label="sleeper")
            seen.update(worker=worker, server_pid=lab.server.pid, name=lab.netns.name)
            assert _alive(worker.proc.pid)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test()
    worker = seen["worker"]
    server_pid = seen["server_pid"]
    name = seen["name"]
    assert isinstance(worker, Worker)
    assert isinstance(server_pid, int)
    assert isinstance(name, str)
    assert worker.proc.poll() is not None
    assert not _alive(server_pid)
    assert not Netns(name).exists


def test_forgotten_lab_is_released_by_its_finalizer(livekit_server_binary: Path) -> None:
    lab = FaultLab(server_options={"binary": livekit_server_binary})
    lab.start()
    name = lab.netns.name
    server_pid = lab.server.pid
    assert server_pid is not None
    del lab
    gc.collect()
    assert not Netns(name).exists
    assert not _alive(server_pid)
