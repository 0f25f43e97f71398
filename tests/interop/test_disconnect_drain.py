"""Leaving right after sending loses nothing reliable (engine ``DISCONNECT_DRAIN_S``).

``publish_data`` returns once a packet is queued; ``disconnect()`` first waits (bounded) for the
server's SCTP to acknowledge what was accepted, so a burst sent just before leaving still reaches
the official SDK on the other side in full and in order.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from tests.interop._data_helpers import data_room
from tests.interop._helpers import wait_for

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

_PACKETS = 20
_SIZE = 10_000


def _payload(i: int) -> bytes:
    return i.to_bytes(2, "big") * (_SIZE // 2)


async def test_burst_then_disconnect_reaches_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    async with data_room(livekit_server, "drain") as room:
        for i in range(_PACKETS):
            await room.lk.publish(_payload(i), reliable=True, topic="drain")
        await asyncio.wait_for(room.lk.room.disconnect(), scaled(10))
        assert room.lk.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        await wait_for(
            lambda: len(room.sdk.on_topic("drain")) >= _PACKETS,
            20.0,
            "the official SDK receives the whole burst",
        )
        got = [r.data for r in room.sdk.on_topic("drain")]
        assert got == [_payload(i) for i in range(_PACKETS)]
