"""Engine metadata updates against an in-memory server older than protocol 15 (§7).

Such a release (livekit-server v1.7.2 reports protocol 14) answers only a failed request; a
success shows as our own ParticipantInfo re-sent with the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lkproto.asyncio import engine as en
from lkproto.core.reconnect import ReconnectPolicy
from lkproto.errors import RequestRejectedError
from lkproto.testing import SignalPeer, scaled
from lkproto.wire import pb

URL = "ws://in-memory.invalid"


async def bounded(awaitable: Any) -> Any:
    async with asyncio.timeout(scaled(10)):
        return await awaitable


@pytest.fixture
async def old() -> AsyncIterator[tuple[en.Engine, SignalPeer]]:
    peer = SignalPeer()
    peer.server_protocol = 14
    engine = en.Engine(lambda event: None)
    options = en.EngineOptions(
        transport_factory=peer.connect,
        ice_addresses=("127.0.0.1",),
        connect_timeout_s=scaled(10),
        reconnect_policy=ReconnectPolicy((0.0,), jitter_s=0),
    )
    try:
        await engine.connect(URL, "token", options)
        yield engine, peer
    finally:
        await engine.disconnect()
        await peer.close()


def update_frames(peer: SignalPeer) -> int:
    return sum(1 for r in peer.current.requests if r.WhichOneof("message") == "update_metadata")


async def test_an_update_completes_when_our_info_shows_it(
    old: tuple[en.Engine, SignalPeer],
) -> None:
    engine, peer = old
    # Without the echo rule this waits for a RequestResponse that never comes: TIMEOUT.
    await bounded(engine.update_metadata(name="new", attributes={"k": "v"}))
    assert update_frames(peer) == 1
    local = engine.roster.local
    assert local is not None
    assert (local.name, dict(local.attributes)) == ("new", {"k": "v"})
    await bounded(engine.update_metadata(attributes={"k": ""}))
    local = engine.roster.local
    assert local is not None
    assert dict(local.attributes) == {}
    assert update_frames(peer) == 2


async def test_an_update_already_in_place_completes_at_once(
    old: tuple[en.Engine, SignalPeer],
) -> None:
    engine, peer = old
    await bounded(engine.update_metadata(metadata="m"))
    # The server broadcasts nothing for an unchanged value (v1.7.2 SetMetadata returns early).
    await bounded(engine.update_metadata(metadata="m"))
    second = await bounded(peer.wait_for_request("update_metadata", 2))
    assert second.update_metadata.metadata == "m"


async def test_an_error_response_still_rejects(
    old: tuple[en.Engine, SignalPeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, peer = old

    def refuse(connection: Any, update: pb.UpdateParticipantMetadata) -> None:
        # v1.7.2 sends ErrorResponse{NOT_ALLOWED} in SignalResponse field 22 (RequestResponse now).
        rr = pb.RequestResponse(
            request_id=update.request_id, reason=pb.RequestResponse.NOT_ALLOWED, message="no"
        )
        connection.send(pb.SignalResponse(request_response=rr))

    monkeypatch.setattr(peer, "_echo_metadata", refuse)
    with pytest.raises(RequestRejectedError, match="NOT_ALLOWED"):
        await bounded(engine.update_metadata(name="refused"))
