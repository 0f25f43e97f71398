"""Port test for the server API: programs written for livekit-api run unchanged on lkproto.

Each program below is written in livekit-api's documented style (``from livekit import api``,
credentials from ``LIVEKIT_URL`` / ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``). It runs twice
against the same livekit-server, once as written and once with only the import switched to
``from lkproto import api``; both runs must print the same lines.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as lrtc

from lkproto import api
from lkproto.testing import scaled
from tests.interop._helpers import CONNECT_TIMEOUT_S, disconnect_all, unique_room

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

__all__: list[str] = []

pytestmark = pytest.mark.interop

OFFICIAL_IMPORT = "from livekit import api"
OUR_IMPORT = "from lkproto import api"
PROGRAM_TIMEOUT_S = 60.0

ROOM_ADMIN = """
import asyncio
import sys

from livekit import api


async def main(room_name: str) -> None:
    lkapi = api.LiveKitAPI()
    room = await lkapi.room.create_room(
        api.CreateRoomRequest(name=room_name, empty_timeout=60, max_participants=10, metadata="a")
    )
    print("created", room.name, room.empty_timeout, room.max_participants, room.metadata)
    rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
    print("listed", [r.name for r in rooms.rooms])
    room = await lkapi.room.update_room_metadata(
        api.UpdateRoomMetadataRequest(room=room_name, metadata="b")
    )
    print("metadata", room.metadata)
    res = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
    print("participants", len(res.participants))
    try:
        await lkapi.room.get_participant(
            api.RoomParticipantIdentity(room=room_name, identity="ghost")
        )
    except api.TwirpError as e:
        print("error", e.code, e.status)
    dispatch = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="helper", room=room_name, metadata="{}")
    )
    print("dispatch", dispatch.agent_name, dispatch.room, dispatch.metadata)
    dispatches = await lkapi.agent_dispatch.list_dispatch(room_name=room_name)
    print("named dispatches", sorted(d.agent_name for d in dispatches if d.agent_name))
    await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
    await lkapi.room.send_data(
        api.SendDataRequest(room=room_name, data=b"hi", kind=api.DataPacket.Kind.RELIABLE)
    )
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
    print("after delete", len(rooms.rooms))
    await lkapi.aclose()


asyncio.run(main(sys.argv[1]))
"""

TOKEN_SERVER = """
import json
import sys

from livekit import api


def create_token(room_name: str, identity: str) -> str:
    # A token endpoint for an agent frontend: the join creates the room and dispatches the agent.
    token = (
        api.AccessToken()
        .with_identity(identity)
        .with_name("Visitor")
        .with_grants(
            api.VideoGrants(
                room_join=True, room=room_name, can_publish=True, can_subscribe=True
            )
        )
        .with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name="frontdesk", metadata='{"lang":"en"}')]
            )
        )
    )
    return token.to_jwt()


jwt = create_token(sys.argv[1], "visitor-1")
claims = api.TokenVerifier().verify(jwt)
print(json.dumps({"identity": claims.identity, "room": claims.video.room}))
print(json.dumps([a.agent_name for a in claims.room_config.agents]))
print(jwt)
"""


def _run(program: str, server: LocalServer, room: str, *, ours: bool) -> list[str]:
    assert OFFICIAL_IMPORT in program
    source = program.replace(OFFICIAL_IMPORT, OUR_IMPORT) if ours else program
    env = {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    env.pop("LIVEKIT_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", source, room],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(PROGRAM_TIMEOUT_S),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


async def test_room_admin_script_runs_unchanged(livekit_server: LocalServer) -> None:
    outputs = []
    for ours in (False, True):
        room = unique_room("port-admin")
        lines = await asyncio.to_thread(_run, ROOM_ADMIN, livekit_server, room, ours=ours)
        outputs.append([line.replace(room, "<room>") for line in lines])
    official_lines, our_lines = outputs
    assert our_lines == official_lines
    assert official_lines[0] == "created <room> 60 10 a"
    assert "error not_found 404" in official_lines


async def test_token_server_with_agent_dispatch_runs_unchanged(
    livekit_server: LocalServer,
) -> None:
    async with api.LiveKitAPI(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as lkapi:
        outputs = []
        for ours in (False, True):
            room = unique_room("port-token")
            *printed, jwt = await asyncio.to_thread(
                _run, TOKEN_SERVER, livekit_server, room, ours=ours
            )
            # The frontend joins with the token; the server then reports the dispatch.
            visitor = lrtc.Room()
            try:
                await asyncio.wait_for(
                    visitor.connect(
                        livekit_server.url,
                        jwt,
                        lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[])),
                    ),
                    scaled(CONNECT_TIMEOUT_S),
                )
                dispatches = await lkapi.agent_dispatch.list_dispatch(room)
            finally:
                await disconnect_all(visitor)
            outputs.append(
                (
                    [line.replace(room, "<room>") for line in printed],
                    [(d.agent_name, d.metadata) for d in dispatches],
                )
            )
    assert outputs[1] == outputs[0]
    assert outputs[0][1] == [("frontdesk", '{"lang":"en"}')]
