"""Loopback STUN servers for join-time tests and benchmarks (issue 18).

A client joining with default options gathers a server-reflexive candidate from the STUN server
the LiveKit server advertises (``JoinResponse.ice_servers``, PROTOCOL-MAP §17). Three situations
matter, and each has a fixture here or in :class:`~lkproto.testing.LocalServer`:

- an advertised port nobody listens on (what :class:`~lkproto.testing.LocalServer` advertises:
  the kernel answers with ICMP port-unreachable);
- a real STUN server that answers: :class:`CoturnStun`, Debian's ``coturn`` (``turnserver``)
  in STUN-only mode on ``127.0.0.1``;
- one that never answers: :class:`SilentStun`, a bound socket that reads and drops every
  datagram, as a firewall that drops (rather than rejects) would.

Advertise either with ``LocalServer(extra_config=stun_config(port))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from typing import Self

__all__ = ["COTURN_BINARY", "CoturnStun", "SilentStun", "stun_binding_answered", "stun_config"]

COTURN_BINARY: Final = "turnserver"
"""Debian's coturn executable (``apt-get install coturn``; ``tools/setup_stun.sh``)."""

# RFC 8489 §5: Binding request type 0x0001 and the fixed magic cookie.
_BINDING_REQUEST: Final = 0x0001
_BINDING_SUCCESS: Final = 0x0101
_MAGIC_COOKIE: Final = 0x2112A442
_READY_TIMEOUT_S: Final = 10.0


def stun_config(port: int) -> dict[str, object]:
    """``LocalServer(extra_config=...)`` that advertises ``stun:127.0.0.1:<port>`` to clients."""
    return {"rtc": {"stun_servers": [f"127.0.0.1:{port}"]}}


def stun_binding_answered(port: int, *, timeout_s: float = 0.5) -> bool:
    """Whether a STUN Binding request to ``127.0.0.1:<port>`` gets a success response."""
    transaction = os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(
            struct.pack("!HHI", _BINDING_REQUEST, 0, _MAGIC_COOKIE) + transaction,
            ("127.0.0.1", port),
        )
        try:
            data = sock.recv(2048)
        except OSError:  # timeout, or ICMP port-unreachable reported as ConnectionRefusedError
            return False
    return (
        len(data) >= 20
        and struct.unpack("!H", data[:2])[0] == _BINDING_SUCCESS
        and data[8:20] == transaction
    )


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CoturnStun:
    """coturn's ``turnserver`` answering STUN only, on ``127.0.0.1`` (sync context manager).

    Args:
        port: UDP port; a free one by default.
        binary: the executable; ``turnserver`` from ``PATH`` by default.

    Attributes:
        port: the UDP port it answers on.

    Raises:
        FileNotFoundError: coturn is not installed (on entry).
        RuntimeError: it did not answer a Binding request within 10 s (on entry).
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None) -> None:
        self.port = port if port is not None else _free_udp_port()
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @staticmethod
    def available() -> bool:
        """Whether ``turnserver`` is on ``PATH``."""
        return shutil.which(COTURN_BINARY) is not None

    def __enter__(self) -> Self:
        binary = self._binary or shutil.which(COTURN_BINARY)
        if binary is None:
            raise FileNotFoundError(f"{COTURN_BINARY} not found: apt-get install coturn")
        self._dir = tempfile.TemporaryDirectory(prefix="lkproto-coturn-")
        work = Path(self._dir.name)
        self._proc = subprocess.Popen(
            [
                binary,
                "-n",  # no configuration file
                "--stun-only",
                "--listening-ip=127.0.0.1",
                f"--listening-port={self.port}",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                f"--pidfile={work / 'turnserver.pid'}",
                f"--db={work / 'turndb'}",
                f"--log-file={work / 'turnserver.log'}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not stun_binding_answered(self.port, timeout_s=0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"coturn did not answer STUN on 127.0.0.1:{self.port}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class _Drop(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


class SilentStun:
    """A UDP socket on ``127.0.0.1`` that reads every datagram and never answers (async context
    manager; lives in the running event loop).

    Attributes:
        port: its UDP port (valid inside the ``async with``).
        received: datagrams dropped so far.
    """

    def __init__(self) -> None:
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Drop | None = None

    @property
    def received(self) -> int:
        """Datagrams dropped so far."""
        return 0 if self._protocol is None else self._protocol.received

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Drop, local_addr=("127.0.0.1", 0)
        )
        self._transport, self._protocol = transport, protocol
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
