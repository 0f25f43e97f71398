"""Choose the local addresses aiortc's ICE agent gathers host candidates on.

aioice's ``get_host_addresses`` lists every interface address except ``127.0.0.1`` and ``::1``
(``aioice/ice.py (get_host_addresses)``, aioice 0.13.0), so on a machine with eth0 up aiortc never
offers a loopback candidate and a loopback-only livekit-server is reached through eth0, if at
all (PROTOCOL-MAP §17 "ICE on loopback"). There is no aiortc or aioice option for this.

We therefore wrap ``aioice.ice.get_host_addresses`` once per process with a function that reads a
:class:`contextvars.ContextVar`: inside :func:`ice_addresses` it returns exactly the chosen
addresses, everywhere else it calls the original, so other aiortc users in the same process are
unaffected.

Why a context variable is enough (read in the sources installed with lkproto):

- aioice 0.13.0 ``Connection.gather_candidates`` calls ``get_host_addresses(...)`` as a module
  global, looked up at call time, synchronously before its first ``await``; ``ifaddr`` is only
  consulted inside that function. Patching the module attribute therefore takes effect.
- aiortc 1.16.0 gathers only inside ``RTCPeerConnection.setLocalDescription`` → ``__gather`` →
  ``asyncio.gather(gatherer.gather() ...)`` → ``RTCIceGatherer.gather`` →
  ``Connection.gather_candidates``. ``asyncio.gather`` wraps each coroutine in a Task, and a Task
  runs in a *copy of the context current when it was created*, i.e. inside the caller's
  ``with ice_addresses(...)`` block. ``__connect`` (started with ``ensure_future``) never gathers.
  So setting the variable around the awaited ``setLocalDescription`` is seen by gathering and by
  nothing else.
"""

from __future__ import annotations

import contextvars
import ipaddress
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import aioice.ice

from lkproto.errors import LocalProtocolError

__all__ = ["check_addresses", "ice_addresses", "install"]

_HostAddresses = Callable[[bool, bool], list[str]]

# None = not chosen: defer to aioice. A tuple (possibly empty) = gather on exactly these.
_CHOSEN: Final[contextvars.ContextVar[tuple[str, ...] | None]] = contextvars.ContextVar(
    "lkproto_ice_addresses", default=None
)
_WRAPPER_MARK: Final = "__lkproto_ice_wrapper__"
_install_lock = threading.Lock()


def install() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` once; later calls do nothing.

    Behaviour outside :func:`ice_addresses` is exactly the original's.
    """
    with _install_lock:
        current = aioice.ice.get_host_addresses
        if getattr(current, _WRAPPER_MARK, False):
            return
        setattr(aioice.ice, "get_host_addresses", _make_wrapper(current))  # noqa: B010
        _patch_consent_leak()


def _patch_consent_leak() -> None:
    """Stop aioice 0.13 from starting consent checks on a connection closed during connect().

    ``Connection.connect`` paces its checks with ``sleep(0.02)``; if ``close()`` runs while it
    sleeps after the check list completed, ``connect`` resumes and still creates
    ``query_consent``, a task that then lives forever. Cancel it when the connection is closing.
    """
    connection_cls = aioice.ice.Connection
    original = connection_cls.connect
    if getattr(original, _WRAPPER_MARK, False):
        return

    async def connect(self: aioice.ice.Connection) -> None:
        await original(self)
        task = getattr(self, "_query_consent_task", None)
        if getattr(self, "_closing", False) and task is not None and not task.done():
            task.cancel()
            self._query_consent_task = None

    setattr(connect, _WRAPPER_MARK, True)
    connect.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(connection_cls, "connect", connect)  # noqa: B010


def _make_wrapper(original: _HostAddresses) -> _HostAddresses:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _CHOSEN.get()
        if chosen is None:
            return original(use_ipv4, use_ipv6)
        return [a for a in chosen if _family_allowed(a, use_ipv4=use_ipv4, use_ipv6=use_ipv6)]

    setattr(get_host_addresses, _WRAPPER_MARK, True)
    get_host_addresses.__wrapped__ = original  # type: ignore[attr-defined]
    return get_host_addresses


def _family_allowed(address: str, *, use_ipv4: bool, use_ipv6: bool) -> bool:
    version = ipaddress.ip_address(address).version
    return use_ipv4 if version == 4 else use_ipv6


def check_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """Validate IP address literals for :func:`ice_addresses`; duplicates are dropped.

    Raises:
        LocalProtocolError: ``addresses`` is a bare string or holds a non-IP entry.
    """
    if isinstance(addresses, str):
        raise LocalProtocolError(f"ICE addresses must be a sequence of strings, got {addresses!r}")
    out: list[str] = []
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise LocalProtocolError(f"not an IP address for ICE: {address!r}") from exc
        if address not in out:
            out.append(address)
    return tuple(out)


@contextmanager
def ice_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Make ICE gathering started inside the block use exactly ``addresses``.

    Installs the wrapper if needed. Only code running in this context (and in tasks created
    from it) is affected.

    Args:
        addresses: IP address literals to gather host candidates on, e.g. ``("127.0.0.1",)``
            (still filtered by aioice's IPv4/IPv6 switches); ``None`` restores aioice's own
            choice inside the block.

    Raises:
        LocalProtocolError: an entry is not an IP address literal.
    """
    chosen = None if addresses is None else check_addresses(addresses)
    install()
    token = _CHOSEN.set(chosen)
    try:
        yield
    finally:
        _CHOSEN.reset(token)
