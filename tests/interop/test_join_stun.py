"""Default-options joins whatever the advertised STUN server does (issue 18).

With ``RoomOptions()`` both SDKs take ``JoinResponse.ice_servers`` (PROTOCOL-MAP §17). lkproto
sends its descriptions with host candidates and trickles the STUN answer later, so the join must
not wait for STUN, and data and media must flow with the official SDK on the other side, in each
situation: LocalServer's advertised port that nobody listens on, a real STUN server on loopback
(coturn, answering), and a socket that swallows every query (never answering).

"Does not wait" is checked without a clock: each server gets a STUN situation where stock
aioice would hold the join for 5 s, and the connect is bounded well below that only through
``scaled`` (the bound stretches with ``LKPROTO_TEST_TIME_SCALE``, like every wait here).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import LocalServer, scaled
from lkproto.testing.stun import CoturnStun, SilentStun, stun_binding_answered, stun_config
from tests.interop._helpers import disconnect_all, make_token, unique_room, wait_for
from tests.interop.test_media import publish_tone, subscribed_track, tone_of

pytestmark = pytest.mark.interop

SITUATIONS = ("advertised-unused", "coturn", "silent")
# aioice awaits a STUN query for 5 s; a join that waited for it could not finish within this.
JOIN_BOUND_S = 4.0
TONE_HZ = 440.0


@contextlib.asynccontextmanager
async def _stun(situation: str) -> AsyncIterator[dict[str, object] | None]:
    """The ``extra_config`` for LocalServer in ``situation`` (None = LocalServer's own)."""
    if situation == "advertised-unused":
        yield None
    elif situation == "coturn":
        if not CoturnStun.available():
            pytest.skip("coturn is not installed (tools/setup_stun.sh)")
        with CoturnStun() as coturn:
            yield stun_config(coturn.port)
    else:
        async with SilentStun() as silent:
            yield stun_config(silent.port)


@pytest.fixture(params=SITUATIONS)
async def server(
    request: pytest.FixtureRequest, livekit_server_binary: Path, tmp_path: Path
) -> AsyncIterator[LocalServer]:
    situation: str = request.param
    async with _stun(situation) as extra:
        local = LocalServer(
            binary=livekit_server_binary, extra_config=extra, log_level="warn", log_dir=tmp_path
        )
        async with local:
            if extra is not None:
                rtc_config: Any = extra["rtc"]
                port = int(rtc_config["stun_servers"][0].rsplit(":", 1)[1])
                answered = await asyncio.to_thread(stun_binding_answered, port)
                assert answered is (situation == "coturn")
            yield local


async def test_default_join_does_not_wait_for_stun_and_data_and_media_flow(
    server: LocalServer,
) -> None:
    room_name = unique_room("join-stun")
    ours, theirs = rtc.Room(), lrtc.Room()
    got_ours: list[bytes] = []
    got_theirs: list[bytes] = []
    ours.on("data_received", lambda packet: got_ours.append(bytes(packet.data)))
    theirs.on("data_received", lambda packet: got_theirs.append(bytes(packet.data)))
    feeders: list[Any] = []
    try:
        await asyncio.wait_for(
            ours.connect(server.url, make_token(server, "ours", room_name), rtc.RoomOptions()),
            scaled(JOIN_BOUND_S),
        )
        await asyncio.wait_for(
            theirs.connect(server.url, make_token(server, "theirs", room_name), lrtc.RoomOptions()),
            scaled(20),
        )
        await wait_for(lambda: "theirs" in ours.remote_participants, what="official in roster")
        await wait_for(lambda: "ours" in theirs.remote_participants, what="lkproto in roster")

        async def exchange() -> bool:
            await ours.local_participant.publish_data(b"from-lkproto", reliable=True)
            await theirs.local_participant.publish_data(b"from-official", reliable=True)
            await asyncio.sleep(0.2)
            return b"from-lkproto" in got_theirs and b"from-official" in got_ours

        async with asyncio.timeout(scaled(15)):
            while not await exchange():
                pass

        # Media both ways: a tone each, heard at the right pitch on the other side.
        feeders.append(await publish_tone(rtc, ours, TONE_HZ, "ours-tone"))
        feeders.append(await publish_tone(lrtc, theirs, 2 * TONE_HZ, "their-tone"))
        heard_by_official = await subscribed_track(theirs, "audio")
        heard_by_ours = await subscribed_track(ours, "audio")
        freq_official, _ = await tone_of(lrtc, heard_by_official)
        freq_ours, _ = await tone_of(rtc, heard_by_ours)
        assert abs(freq_official - TONE_HZ) <= 5
        assert abs(freq_ours - 2 * TONE_HZ) <= 5
    finally:
        for feeder in feeders:
            await feeder.stop()
        await disconnect_all(ours, theirs)
