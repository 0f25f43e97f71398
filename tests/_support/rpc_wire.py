"""An engine stand-in for RPC unit tests: two RpcDrivers wired to each other (RPC v1).

What one side's driver sends reaches the other's ``on_packet`` on the next loop turn, stamped with
the sender's identity, as the server would forward it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, cast

from lkproto.asyncio.rpc import RpcDriver
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.asyncio.engine import Engine

__all__ = ["RpcWire", "wired_drivers"]


class _Roster:
    remotes: ClassVar[dict[str, pb.ParticipantInfo]] = {}


class RpcWire:
    """One side's engine stand-in; ``sent`` lists the packet kinds it sent, in order."""

    join_response = None
    client_protocol = 0
    roster = _Roster()

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.peer: RpcDriver | None = None
        self.sent: list[str] = []

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        assert self.peer is not None
        sent = pb.DataPacket()
        sent.CopyFrom(packet)
        sent.participant_identity = self.identity
        self.sent.append(str(packet.WhichOneof("value")))
        asyncio.get_running_loop().call_soon(self.peer.on_packet, sent)


def wired_drivers() -> tuple[RpcWire, RpcDriver, RpcWire, RpcDriver]:
    """Alice's wire and driver, then Bob's, each wire delivering to the other's driver."""
    wire_a, wire_b = RpcWire("alice"), RpcWire("bob")
    rpc_a = RpcDriver(cast("Engine", wire_a))
    rpc_b = RpcDriver(cast("Engine", wire_b))
    wire_a.peer, wire_b.peer = rpc_b, rpc_a
    return wire_a, rpc_a, wire_b, rpc_b
