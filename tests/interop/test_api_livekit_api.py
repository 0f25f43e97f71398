"""lkproto.api.LiveKitAPI against a real livekit-server, proved by what the server does.

Each RoomService and AgentDispatchService call is checked by its effect on the server or on
official-SDK participants (a subscription appears, a data packet arrives, a track is muted, a
participant is removed, a token's room configuration dispatches an agent). Egress, Ingress and
SIP calls reach the server, which has no such service configured, and come back with the
server's own error (``... not connected (redis required)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as lrtc

from lkproto import api, rtc
from lkproto.testing import scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    connect_official,
    disconnect_all,
    make_token,
    our_options,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

__all__: list[str] = []

pytestmark = pytest.mark.interop


@pytest.fixture
async def lkapi(livekit_server: LocalServer) -> AsyncIterator[api.LiveKitAPI]:
    # The ws:// URL on purpose: the client must turn it into http://.
    async with api.LiveKitAPI(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as client:
        yield client


async def _connect_unsubscribed(server: LocalServer, identity: str, room: str) -> rtc.Room:
    """An lkproto participant that subscribes to nothing by itself.

    lkproto rather than the official SDK: livekit-rtc 1.2.1 emits no ``track_unsubscribed``
    when the server ends a subscription it did not ask to end (seen against v1.13.5), so an
    official viewer cannot show the effect of ``update_subscriptions(subscribe=False)``.
    """
    participant = rtc.Room()
    options = our_options()
    options.auto_subscribe = False
    await asyncio.wait_for(
        participant.connect(server.url, make_token(server, identity, room), options),
        scaled(CONNECT_TIMEOUT_S),
    )
    return participant


async def _publish_audio(participant: lrtc.Room) -> str:
    source = lrtc.AudioSource(48_000, 1)
    track = lrtc.LocalAudioTrack.create_audio_track("mic", source)
    options = lrtc.TrackPublishOptions(source=lrtc.TrackSource.SOURCE_MICROPHONE)
    publication = await participant.local_participant.publish_track(track, options)
    return publication.sid


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def poll() -> None:
        # Polling on purpose: the server pushes nothing to an API client.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), scaled(ROSTER_TIMEOUT_S))
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_room_lifecycle(lkapi: api.LiveKitAPI) -> None:
    name = unique_room("api-lifecycle")
    room = await lkapi.room.create_room(
        api.CreateRoomRequest(name=name, empty_timeout=120, max_participants=7, metadata="v1")
    )
    assert isinstance(room, api.Room)
    assert room.sid.startswith("RM_")
    assert (room.name, room.empty_timeout, room.max_participants, room.metadata) == (
        name,
        120,
        7,
        "v1",
    )

    listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
    assert [r.sid for r in listed.rooms] == [room.sid]

    updated = await lkapi.room.update_room_metadata(
        api.UpdateRoomMetadataRequest(room=name, metadata="v2")
    )
    assert (updated.sid, updated.metadata) == (room.sid, "v2")

    # ListRooms reads the room store, which the room node updates right after answering.
    async def stored() -> bool:
        listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
        return listed.rooms[0].metadata == "v2"

    await _eventually(stored, "ListRooms to show the new metadata")

    assert (
        list(
            (
                await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
            ).participants
        )
        == []
    )
    with pytest.raises(api.TwirpError) as info:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room=name, identity="nobody"))
    assert info.value.code == api.TwirpErrorCode.NOT_FOUND

    await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
    listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
    assert list(listed.rooms) == []


async def test_participant_calls(livekit_server: LocalServer, lkapi: api.LiveKitAPI) -> None:
    name = unique_room("api-participants")
    publisher = viewer = None
    try:
        publisher = await connect_official(livekit_server, "pub", name)
        viewer = await _connect_unsubscribed(livekit_server, "viewer", name)
        track_sid = await _publish_audio(publisher)

        answer = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
        assert {p.identity for p in answer.participants} == {"pub", "viewer"}

        # The server lists the track once its media arrived; poll GetParticipant until then.
        async def published() -> bool:
            pub = await lkapi.room.get_participant(
                api.RoomParticipantIdentity(room=name, identity="pub")
            )
            return [t.sid for t in pub.tracks] == [track_sid]

        await _eventually(published, "GetParticipant to list the published track")

        # update_participant: the viewer sees the publisher's new attributes and metadata.
        changed = await lkapi.room.update_participant(
            api.UpdateParticipantRequest(
                room=name, identity="pub", metadata="meta", attributes={"role": "host"}
            )
        )
        assert (changed.metadata, dict(changed.attributes)) == ("meta", {"role": "host"})
        remote_pub = viewer.remote_participants["pub"]
        await wait_for(
            lambda: remote_pub.attributes.get("role") == "host" and remote_pub.metadata == "meta",
            what="the viewer to see the new attributes and metadata",
        )

        # update_subscriptions: the viewer (auto_subscribe off) receives the track, then not.
        subscribed = asyncio.Event()
        unsubscribed = asyncio.Event()
        viewer.on("track_subscribed", lambda *_: subscribed.set())
        viewer.on("track_unsubscribed", lambda *_: unsubscribed.set())
        assert not remote_pub.track_publications[track_sid].subscribed
        await lkapi.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(
                room=name, identity="viewer", track_sids=[track_sid], subscribe=True
            )
        )
        await asyncio.wait_for(subscribed.wait(), scaled(ROSTER_TIMEOUT_S))
        await lkapi.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(
                room=name, identity="viewer", track_sids=[track_sid], subscribe=False
            )
        )
        await asyncio.wait_for(unsubscribed.wait(), scaled(ROSTER_TIMEOUT_S))

        # mute_published_track: the server mutes it and the viewer sees the publication muted.
        muted = await lkapi.room.mute_published_track(
            api.MuteRoomTrackRequest(room=name, identity="pub", track_sid=track_sid, muted=True)
        )
        assert (muted.track.sid, muted.track.muted) == (track_sid, True)
        await wait_for(
            lambda: remote_pub.track_publications[track_sid].muted,
            what="the viewer to see the track muted",
        )

        # send_data: the viewer receives the packet, with its topic, from the server.
        received: asyncio.Future[rtc.DataPacket] = asyncio.get_running_loop().create_future()

        def on_data(packet: rtc.DataPacket) -> None:
            if not received.done():
                received.set_result(packet)

        viewer.on("data_received", on_data)
        await lkapi.room.send_data(
            api.SendDataRequest(
                room=name,
                data=b"from the server",
                kind=api.DataPacket.RELIABLE,
                destination_identities=["viewer"],
                topic="admin",
            )
        )
        packet = await asyncio.wait_for(received, scaled(ROSTER_TIMEOUT_S))
        assert (packet.data, packet.topic) == (b"from the server", "admin")

        # remove_participant: the publisher is disconnected and leaves the roster.
        await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=name, identity="pub"))
        await wait_for(lambda: "pub" not in viewer.remote_participants, what="pub to leave")
        answer = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
        assert [p.identity for p in answer.participants] == ["viewer"]
    finally:
        await disconnect_all(publisher, viewer)


async def test_perform_rpc(livekit_server: LocalServer, lkapi: api.LiveKitAPI) -> None:
    name = unique_room("api-rpc")
    agent = None
    try:
        agent = await connect_official(livekit_server, "agent", name)

        async def echo(data: lrtc.RpcInvocationData) -> str:
            return f"{data.caller_identity}:{data.payload}"

        agent.local_participant.register_rpc_method("echo", echo)
        request = api.PerformRpcRequest(
            room=name, destination_identity="agent", method="echo", payload="hi"
        )

        # Right after the join the server may not have the participant's data channel yet
        # ("data channel is not available"); the call is retried until it has.
        async def call() -> api.PerformRpcResponse | None:
            try:
                return await lkapi.room.perform_rpc(request)
            except api.ServerError as exc:
                if "data channel is not available" not in exc.message:
                    raise
                return None

        answers: list[api.PerformRpcResponse] = []

        async def answered() -> bool:
            answer = await call()
            if answer is not None:
                answers.append(answer)
            return answer is not None

        await _eventually(answered, "PerformRpc to reach the participant")
        answer = answers[0]
        assert answer.payload.endswith(":hi")
    finally:
        await disconnect_all(agent)


async def test_move_and_forward_participant(
    livekit_server: LocalServer, lkapi: api.LiveKitAPI
) -> None:
    """Both are LiveKit Cloud features: the self-hosted server answers with its own error."""
    name = unique_room("api-move")
    other = unique_room("api-move-to")
    participant = None
    try:
        participant = await connect_official(livekit_server, "mover", name)
        await lkapi.room.create_room(api.CreateRoomRequest(name=other))
        with pytest.raises(api.ServerError) as moved:
            await lkapi.room.move_participant(
                api.MoveParticipantRequest(room=name, identity="mover", destination_room=other)
            )
        with pytest.raises(api.ServerError) as forwarded:
            await lkapi.room.forward_participant(
                api.ForwardParticipantRequest(room=name, identity="mover", destination_room=other)
            )
        # v1.13.5 answers 500 "not implemented" for both (Cloud-only features).
        for err in (moved.value, forwarded.value):
            assert err.status == 500
            assert "not implemented" in err.message
        # The server did not move anyone.
        answer = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
        assert [p.identity for p in answer.participants] == ["mover"]
    finally:
        await disconnect_all(participant)


async def test_agent_dispatch_calls(lkapi: api.LiveKitAPI) -> None:
    name = unique_room("api-dispatch")
    created = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="helper", room=name, metadata='{"k":1}')
    )
    assert created.id.startswith("AD_")
    assert (created.agent_name, created.room, created.metadata) == ("helper", name, '{"k":1}')

    # CreateDispatch created the room; a room created without explicit agents also gets the
    # server's default dispatch (empty agent_name: automatic dispatch to unnamed workers).
    listed = await lkapi.agent_dispatch.list_dispatch(name)
    assert [d.id for d in listed if d.agent_name] == [created.id]
    assert [d.agent_name for d in listed if d.id != created.id] == [""]
    got = await lkapi.agent_dispatch.get_dispatch(created.id, name)
    assert got is not None
    assert (got.id, got.agent_name, got.metadata) == (created.id, "helper", '{"k":1}')

    deleted = await lkapi.agent_dispatch.delete_dispatch(created.id, name)
    assert deleted.id == created.id
    assert created.id not in {d.id for d in await lkapi.agent_dispatch.list_dispatch(name)}
    assert await lkapi.agent_dispatch.get_dispatch(created.id, name) is None


async def test_create_room_with_agents_dispatches(lkapi: api.LiveKitAPI) -> None:
    name = unique_room("api-room-agents")
    await lkapi.room.create_room(
        api.CreateRoomRequest(name=name, agents=[api.RoomAgentDispatch(agent_name="greeter")])
    )
    listed = await lkapi.agent_dispatch.list_dispatch(name)
    assert [d.agent_name for d in listed] == ["greeter"]


async def test_token_room_config_dispatches_agent(
    livekit_server: LocalServer, lkapi: api.LiveKitAPI
) -> None:
    """A token server's usual agent dispatch: the join that creates the room dispatches it."""
    name = unique_room("api-token-config")
    token = (
        api.AccessToken(livekit_server.api_key, livekit_server.api_secret)
        .with_identity("user")
        .with_grants(api.VideoGrants(room_join=True, room=name))
        .with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name="frontdesk", metadata="vip")]
            )
        )
        .to_jwt()
    )
    user = lrtc.Room()
    try:
        await asyncio.wait_for(
            user.connect(
                livekit_server.url,
                token,
                lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[])),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        listed = await lkapi.agent_dispatch.list_dispatch(name)
        assert [(d.agent_name, d.metadata) for d in listed] == [("frontdesk", "vip")]
    finally:
        await disconnect_all(user)


def _unconfigured_service_calls(
    lkapi: api.LiveKitAPI, room: str
) -> list[tuple[str, Awaitable[object]]]:
    return [
        (
            "start_room_composite_egress",
            lkapi.egress.start_room_composite_egress(
                api.RoomCompositeEgressRequest(
                    room_name=room,
                    file_outputs=[api.EncodedFileOutput(file_type=api.MP4, filepath="r.mp4")],
                )
            ),
        ),
        (
            "start_web_egress",
            lkapi.egress.start_web_egress(api.WebEgressRequest(url="http://127.0.0.1:9/")),
        ),
        (
            "start_participant_egress",
            lkapi.egress.start_participant_egress(
                api.ParticipantEgressRequest(room_name=room, identity="a")
            ),
        ),
        (
            "start_track_composite_egress",
            lkapi.egress.start_track_composite_egress(
                api.TrackCompositeEgressRequest(room_name=room, audio_track_id="TR_a")
            ),
        ),
        (
            "start_track_egress",
            lkapi.egress.start_track_egress(
                api.TrackEgressRequest(room_name=room, track_id="TR_a", websocket_url="ws://h/")
            ),
        ),
        (
            "start_egress",
            lkapi.egress.start_egress(
                api.StartEgressRequest(room_name=room, template=api.TemplateSource(layout="grid"))
            ),
        ),
        ("list_egress", lkapi.egress.list_egress(api.ListEgressRequest())),
        ("stop_egress", lkapi.egress.stop_egress(api.StopEgressRequest(egress_id="EG_x"))),
        ("update_layout", lkapi.egress.update_layout(api.UpdateLayoutRequest(egress_id="EG_x"))),
        ("update_stream", lkapi.egress.update_stream(api.UpdateStreamRequest(egress_id="EG_x"))),
        ("create_ingress", lkapi.ingress.create_ingress(api.CreateIngressRequest(name="n"))),
        ("list_ingress", lkapi.ingress.list_ingress(api.ListIngressRequest())),
        (
            "update_ingress",
            lkapi.ingress.update_ingress(api.UpdateIngressRequest(ingress_id="IN_x")),
        ),
        (
            "delete_ingress",
            lkapi.ingress.delete_ingress(api.DeleteIngressRequest(ingress_id="IN_x")),
        ),
        ("list_inbound_trunk", lkapi.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())),
        ("list_outbound_trunk", lkapi.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())),
        ("list_dispatch_rule", lkapi.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())),
        ("delete_trunk", lkapi.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id="ST_x"))),
        (
            "delete_dispatch_rule",
            lkapi.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id="SDR_x")
            ),
        ),
    ]


# What livekit-server v1.13.5 without Redis (so without egress, ingress and SIP services)
# answers; each is the server's own Twirp error, none a transport failure.
_NOT_CONNECTED = {
    "list_egress": "egress",
    "stop_egress": "egress",
    "update_layout": "egress",
    "update_stream": "egress",
    "create_ingress": "ingress",
    "list_ingress": "ingress",
    "list_inbound_trunk": "sip",
    "list_outbound_trunk": "sip",
    "list_dispatch_rule": "sip",
    "delete_trunk": "sip",
    "delete_dispatch_rule": "sip",
}
_ROOM_BASED_STARTS = {
    "start_room_composite_egress",
    "start_participant_egress",
    "start_track_composite_egress",
    "start_track_egress",
    "start_egress",
}
# Web egress needs no room: the server asks for an egress worker over its bus and gives up
# after about 20 s.
_WEB_EGRESS_TIMEOUT_S = 60.0


async def test_egress_ingress_sip_get_the_servers_error(livekit_server: LocalServer) -> None:
    room = unique_room("api-no-such-room")
    async with api.LiveKitAPI(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        timeout=scaled(_WEB_EGRESS_TIMEOUT_S),
    ) as lkapi:
        calls = _unconfigured_service_calls(lkapi, room)
        results = await asyncio.gather(*(call for _, call in calls), return_exceptions=True)
    errors = dict(zip((name for name, _ in calls), results, strict=True))
    for name, err in errors.items():
        assert isinstance(err, api.ServerError), (name, err)
        assert err.status != 0, (name, err)  # an answer from the server, not from transport
    for name, service in _NOT_CONNECTED.items():
        err = errors[name]
        assert isinstance(err, api.ServerError)
        assert (err.status, err.code) == (500, api.TwirpErrorCode.INTERNAL), name
        assert f"{service} not connected (redis required)" in err.message, name
    for name in ("update_ingress", "delete_ingress"):
        err = errors[name]
        assert isinstance(err, api.ServerError)
        # v1.13.5 dereferences the missing ingress client here (Twirp "Internal service panic").
        assert (err.status, err.code) == (500, api.TwirpErrorCode.INTERNAL), name
    for name in _ROOM_BASED_STARTS:
        err = errors[name]
        assert isinstance(err, api.ServerError)
        assert (err.status, err.code) == (404, api.TwirpErrorCode.NOT_FOUND), name
        assert "room does not exist" in err.message, name
    web = errors["start_web_egress"]
    assert isinstance(web, api.ServerError)
    assert (web.status, web.code) == (503, api.TwirpErrorCode.UNAVAILABLE)
    assert "no response from servers" in web.message
