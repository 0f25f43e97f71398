"""Which local addresses lkproto's ICE gathers host candidates on.

aioice's ``get_host_addresses`` lists every interface address except ``127.0.0.1`` and ``::1``
(``aioice/ice.py (get_host_addresses)``, aioice 0.13.0), so on a machine with eth0 up aiortc never
offers a loopback candidate and a loopback-only livekit-server is reached through eth0, if at
all (PROTOCOL-MAP §17 "ICE on loopback"). There is no aiortc or aioice option for this, so
:class:`~lkproto.asyncio.peer.PeerOptions` takes the addresses and the peer hands them to
:func:`lkproto.asyncio._seam.scope_ice_connection`, which applies them to the peer's own aioice
connections only. This module validates them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from lkproto.errors import LocalProtocolError

__all__ = ["check_addresses"]


def check_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """Validate IP address literals to gather on; duplicates are dropped, order is kept.

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
