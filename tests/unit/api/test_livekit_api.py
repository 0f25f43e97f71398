"""LiveKitAPI and its services against an in-process Twirp fake, side by side with livekit-api.

For every method lkproto implements, the same call is made through the official livekit-api
client and through ours against the same fake server: the route, the request bytes, the grants
in the bearer token and the decoded answer must be equal. Construction, error mapping and the
refused methods are tested on their own.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.protobuf.message import Message
from livekit import api as official

from lkproto import api
from lkproto.api import TokenVerifier
from lkproto.api.access_token import Claims
from lkproto.errors import ApiError, DecodeError, LocalProtocolError, UnsupportedFeatureError

__all__: list[str] = []

KEY = "fakekey"
SECRET = "fake-secret-fake-secret-fake-secret"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeTwirp:
    """Answers POSTs with ``replies[path]`` (default: 200, empty protobuf) and records them."""

    url: str = ""
    replies: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def claims(self, i: int = -1) -> Claims:
        auth = self.requests[i].headers["authorization"]
        return TokenVerifier(KEY, SECRET).verify(auth.removeprefix("Bearer "))


@pytest.fixture
def fake() -> Iterator[FakeTwirp]:
    state = FakeTwirp()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(
                Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
            )
            status, ctype, body = state.replies.get(self.path, (200, "application/protobuf", b""))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"ws://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _grants(claims: Claims) -> tuple[object, object]:
    return claims.video, claims.sip


# Each case: (name, call on an lkproto LiveKitAPI, call on an official one, route, answer).
# The two calls are written the same way apart from where the messages come from.
Call = Callable[[Any, Any], Awaitable[object]]


def _case(
    name: str, call: Call, route: str, answer: Message | None = None
) -> tuple[str, Call, str, bytes]:
    return (name, call, route, b"" if answer is None else answer.SerializeToString())


ROOM = api.Room(sid="RM_1", name="r", metadata="m", num_participants=2)
PARTICIPANT = api.ParticipantInfo(sid="PA_1", identity="a", attributes={"k": "v"})
TRACK = api.TrackInfo(sid="TR_1", muted=True)
DISPATCH = api.AgentDispatch(id="AD_1", agent_name="helper", room="r", metadata="x")
EGRESS = api.EgressInfo(
    egress_id="EG_1",
    room_name="r",
    status=api.EGRESS_ACTIVE,
    room_composite=api.RoomCompositeEgressRequest(room_name="r", layout="grid"),
    file_results=[api.FileInfo(filename="r.mp4", size=1234)],
    stream_results=[api.StreamInfo(url="rtmp://x", status=api.StreamInfo.Status.ACTIVE)],
)


def _s3(m: Any) -> Any:
    return m.S3Upload(access_key="a", secret="s", bucket="b", metadata={"k": "v"})


INGRESS = api.IngressInfo(
    ingress_id="IN_1",
    name="n",
    room_name="r",
    state=api.IngressState(
        status=api.IngressState.Status.ENDPOINT_PUBLISHING,
        video=api.InputVideoState(mime_type="video/h264", width=1280, height=720),
    ),
)

CASES = [
    _case(
        "create_room",
        lambda a, m: a.room.create_room(
            m.CreateRoomRequest(
                name="r", empty_timeout=5, agents=[m.RoomAgentDispatch(agent_name="helper")]
            )
        ),
        "RoomService/CreateRoom",
        ROOM,
    ),
    _case(
        "list_rooms",
        lambda a, m: a.room.list_rooms(m.ListRoomsRequest(names=["r"])),
        "RoomService/ListRooms",
        api.ListRoomsResponse(rooms=[ROOM]),
    ),
    _case(
        "delete_room",
        lambda a, m: a.room.delete_room(m.DeleteRoomRequest(room="r")),
        "RoomService/DeleteRoom",
    ),
    _case(
        "update_room_metadata",
        lambda a, m: a.room.update_room_metadata(
            m.UpdateRoomMetadataRequest(room="r", metadata="x")
        ),
        "RoomService/UpdateRoomMetadata",
        ROOM,
    ),
    _case(
        "list_participants",
        lambda a, m: a.room.list_participants(m.ListParticipantsRequest(room="r")),
        "RoomService/ListParticipants",
        api.ListParticipantsResponse(participants=[PARTICIPANT]),
    ),
    _case(
        "get_participant",
        lambda a, m: a.room.get_participant(m.RoomParticipantIdentity(room="r", identity="a")),
        "RoomService/GetParticipant",
        PARTICIPANT,
    ),
    _case(
        "remove_participant",
        lambda a, m: a.room.remove_participant(m.RoomParticipantIdentity(room="r", identity="a")),
        "RoomService/RemoveParticipant",
    ),
    _case(
        "forward_participant",
        lambda a, m: a.room.forward_participant(
            m.ForwardParticipantRequest(room="r", identity="a", destination_room="d")
        ),
        "RoomService/ForwardParticipant",
    ),
    _case(
        "move_participant",
        lambda a, m: a.room.move_participant(
            m.MoveParticipantRequest(room="r", identity="a", destination_room="d")
        ),
        "RoomService/MoveParticipant",
    ),
    _case(
        "mute_published_track",
        lambda a, m: a.room.mute_published_track(
            m.MuteRoomTrackRequest(room="r", identity="a", track_sid="TR_1", muted=True)
        ),
        "RoomService/MutePublishedTrack",
        api.MuteRoomTrackResponse(track=TRACK),
    ),
    _case(
        "update_participant",
        lambda a, m: a.room.update_participant(
            m.UpdateParticipantRequest(
                room="r",
                identity="a",
                name="n",
                attributes={"k": "v"},
                permission=m.ParticipantPermission(can_subscribe=True),
            )
        ),
        "RoomService/UpdateParticipant",
        PARTICIPANT,
    ),
    _case(
        "update_subscriptions",
        lambda a, m: a.room.update_subscriptions(
            m.UpdateSubscriptionsRequest(
                room="r", identity="a", track_sids=["TR_1"], subscribe=True
            )
        ),
        "RoomService/UpdateSubscriptions",
    ),
    _case(
        "send_data",
        lambda a, m: a.room.send_data(
            m.SendDataRequest(room="r", data=b"x", destination_identities=["a"], topic="t")
        ),
        "RoomService/SendData",
    ),
    _case(
        "create_dispatch",
        lambda a, m: a.agent_dispatch.create_dispatch(
            m.CreateAgentDispatchRequest(agent_name="helper", room="r", metadata="x")
        ),
        "AgentDispatchService/CreateDispatch",
        DISPATCH,
    ),
    _case(
        "list_dispatch",
        lambda a, m: a.agent_dispatch.list_dispatch("r"),
        "AgentDispatchService/ListDispatch",
        api.ListAgentDispatchResponse(agent_dispatches=[DISPATCH]),
    ),
    _case(
        "get_dispatch",
        lambda a, m: a.agent_dispatch.get_dispatch("AD_1", "r"),
        "AgentDispatchService/ListDispatch",
        api.ListAgentDispatchResponse(agent_dispatches=[DISPATCH]),
    ),
    _case(
        "delete_dispatch",
        lambda a, m: a.agent_dispatch.delete_dispatch("AD_1", "r"),
        "AgentDispatchService/DeleteDispatch",
        DISPATCH,
    ),
    _case(
        "start_room_composite_egress",
        lambda a, m: a.egress.start_room_composite_egress(
            m.RoomCompositeEgressRequest(
                room_name="r",
                layout="speaker",
                preset=m.H264_1080P_30,
                file_outputs=[m.EncodedFileOutput(file_type=m.MP4, filepath="r.mp4", s3=_s3(m))],
                segment_outputs=[
                    m.SegmentedFileOutput(
                        protocol=m.HLS_PROTOCOL, filename_prefix="seg", segment_duration=4
                    )
                ],
                webhooks=[m.WebhookConfig(url="http://h/hook", signing_key="k")],
            )
        ),
        "Egress/StartRoomCompositeEgress",
        EGRESS,
    ),
    _case(
        "start_web_egress",
        lambda a, m: a.egress.start_web_egress(
            m.WebEgressRequest(
                url="https://example.invalid",
                stream_outputs=[m.StreamOutput(protocol=m.RTMP, urls=["rtmp://x/y"])],
                advanced=m.EncodingOptions(width=640, height=360, video_codec=m.H264_MAIN),
            )
        ),
        "Egress/StartWebEgress",
        EGRESS,
    ),
    _case(
        "start_participant_egress",
        lambda a, m: a.egress.start_participant_egress(
            m.ParticipantEgressRequest(
                room_name="r",
                identity="a",
                screen_share=True,
                image_outputs=[m.ImageOutput(capture_interval=5, image_codec=m.IC_JPEG)],
            )
        ),
        "Egress/StartParticipantEgress",
        EGRESS,
    ),
    _case(
        "start_track_composite_egress",
        lambda a, m: a.egress.start_track_composite_egress(
            m.TrackCompositeEgressRequest(
                room_name="r",
                audio_track_id="TR_a",
                video_track_id="TR_v",
                file_outputs=[m.EncodedFileOutput(filepath="x.mp4", gcp=m.GCPUpload(bucket="b"))],
            )
        ),
        "Egress/StartTrackCompositeEgress",
        EGRESS,
    ),
    _case(
        "start_track_egress",
        lambda a, m: a.egress.start_track_egress(
            m.TrackEgressRequest(room_name="r", track_id="TR_a", websocket_url="wss://h/ws")
        ),
        "Egress/StartTrackEgress",
        EGRESS,
    ),
    _case(
        "start_egress",
        lambda a, m: a.egress.start_egress(
            m.StartEgressRequest(
                room_name="r",
                template=m.TemplateSource(layout="grid"),
                outputs=[m.Output(file=m.FileOutput(file_type=m.OGG, filepath="a.ogg"))],
                storage=m.StorageConfig(azure=m.AzureBlobUpload(account_name="n")),
            )
        ),
        "Egress/StartEgress",
        EGRESS,
    ),
    _case(
        "list_egress",
        lambda a, m: a.egress.list_egress(m.ListEgressRequest(room_name="r", active=True)),
        "Egress/ListEgress",
        api.ListEgressResponse(items=[EGRESS]),
    ),
    _case(
        "stop_egress",
        lambda a, m: a.egress.stop_egress(m.StopEgressRequest(egress_id="EG_1")),
        "Egress/StopEgress",
        EGRESS,
    ),
    _case(
        "update_layout",
        lambda a, m: a.egress.update_layout(m.UpdateLayoutRequest(egress_id="EG_1", layout="grid")),
        "Egress/UpdateLayout",
        EGRESS,
    ),
    _case(
        "update_stream",
        lambda a, m: a.egress.update_stream(
            m.UpdateStreamRequest(
                egress_id="EG_1",
                add_output_urls=["rtmp://x"],
                add_destinations=[m.StreamDestination(id="d", url="rtmp://y")],
            )
        ),
        "Egress/UpdateStream",
        EGRESS,
    ),
    _case(
        "create_ingress",
        lambda a, m: a.ingress.create_ingress(
            m.CreateIngressRequest(
                input_type=m.WHIP_INPUT,
                name="n",
                room_name="r",
                enable_transcoding=True,
                audio=m.IngressAudioOptions(
                    source=m.TrackSource.MICROPHONE, preset=m.OPUS_MONO_64KBS
                ),
                video=m.IngressVideoOptions(
                    options=m.IngressVideoEncodingOptions(
                        video_codec=m.H264_BASELINE,
                        frame_rate=30.0,
                        layers=[m.VideoLayer(quality=m.VideoQuality.HIGH, width=1280, height=720)],
                    )
                ),
            )
        ),
        "Ingress/CreateIngress",
        INGRESS,
    ),
    _case(
        "update_ingress",
        lambda a, m: a.ingress.update_ingress(m.UpdateIngressRequest(ingress_id="IN_1", name="m")),
        "Ingress/UpdateIngress",
        INGRESS,
    ),
    _case(
        "list_ingress",
        lambda a, m: a.ingress.list_ingress(m.ListIngressRequest(room_name="r")),
        "Ingress/ListIngress",
        api.ListIngressResponse(items=[INGRESS]),
    ),
    _case(
        "delete_ingress",
        lambda a, m: a.ingress.delete_ingress(m.DeleteIngressRequest(ingress_id="IN_1")),
        "Ingress/DeleteIngress",
        INGRESS,
    ),
    _case(
        "list_inbound_trunk",
        lambda a, m: a.sip.list_inbound_trunk(m.ListSIPInboundTrunkRequest(numbers=["+1"])),
        "SIP/ListSIPInboundTrunk",
        api.ListSIPInboundTrunkResponse(items=[api.SIPInboundTrunkInfo(sip_trunk_id="ST_1")]),
    ),
    _case(
        "list_outbound_trunk",
        lambda a, m: a.sip.list_outbound_trunk(m.ListSIPOutboundTrunkRequest()),
        "SIP/ListSIPOutboundTrunk",
        api.ListSIPOutboundTrunkResponse(items=[api.SIPOutboundTrunkInfo(sip_trunk_id="ST_2")]),
    ),
    _case(
        "list_dispatch_rule",
        lambda a, m: a.sip.list_dispatch_rule(m.ListSIPDispatchRuleRequest(trunk_ids=["ST_1"])),
        "SIP/ListSIPDispatchRule",
        api.ListSIPDispatchRuleResponse(
            items=[api.SIPDispatchRuleInfo(sip_dispatch_rule_id="SDR_1", name="n")]
        ),
    ),
    _case(
        "delete_trunk",
        lambda a, m: a.sip.delete_trunk(m.DeleteSIPTrunkRequest(sip_trunk_id="ST_1")),
        "SIP/DeleteSIPTrunk",
        api.SIPTrunkInfo(sip_trunk_id="ST_1"),
    ),
    _case(
        "delete_dispatch_rule",
        lambda a, m: a.sip.delete_dispatch_rule(
            m.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id="SDR_1")
        ),
        "SIP/DeleteSIPDispatchRule",
        api.SIPDispatchRuleInfo(sip_dispatch_rule_id="SDR_1"),
    ),
]


def _without_nonce(route: str, body: bytes) -> bytes:
    if not route.endswith("/SendData"):
        return body
    msg = api.SendDataRequest.FromString(body)
    assert len(msg.nonce) == 16  # both sides add a fresh 16-byte nonce
    msg.ClearField("nonce")
    return msg.SerializeToString(deterministic=True)


def _bytes(result: object) -> object:
    if isinstance(result, Message):
        return result.SerializeToString(deterministic=True)
    if isinstance(result, list):
        return [_bytes(r) for r in result]
    return result


@pytest.mark.parametrize(("name", "call", "route", "answer"), CASES, ids=[c[0] for c in CASES])
async def test_same_call_as_livekit_api(
    fake: FakeTwirp, name: str, call: Call, route: str, answer: bytes
) -> None:
    fake.replies[f"/twirp/livekit.{route}"] = (200, "application/protobuf", answer)
    theirs_api = official.LiveKitAPI(fake.url, KEY, SECRET)
    try:
        theirs = await call(theirs_api, official)
    finally:
        await theirs_api.aclose()
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as ours_api:
        ours = await call(ours_api, api)
    assert len(fake.requests) == 2
    first, second = fake.requests
    assert first.path == second.path == f"/twirp/livekit.{route}"
    assert second.headers["content-type"] == first.headers["content-type"] == "application/protobuf"
    assert _without_nonce(route, second.body) == _without_nonce(route, first.body)
    assert _grants(fake.claims(1)) == _grants(fake.claims(0))
    assert _bytes(ours) == _bytes(theirs)


@pytest.mark.parametrize(
    ("alias", "request_type"),
    [
        ("list_sip_inbound_trunk", "ListSIPInboundTrunkRequest"),
        ("list_sip_outbound_trunk", "ListSIPOutboundTrunkRequest"),
        ("list_sip_dispatch_rule", "ListSIPDispatchRuleRequest"),
        ("delete_sip_trunk", "DeleteSIPTrunkRequest"),
        ("delete_sip_dispatch_rule", "DeleteSIPDispatchRuleRequest"),
    ],
)
async def test_deprecated_sip_aliases_warn_as_livekit_api(
    fake: FakeTwirp, alias: str, request_type: str
) -> None:
    theirs_api = official.LiveKitAPI(fake.url, KEY, SECRET)
    try:
        with pytest.warns(DeprecationWarning, match="is deprecated") as theirs:
            await getattr(theirs_api.sip, alias)(getattr(official, request_type)())
    finally:
        await theirs_api.aclose()
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        with pytest.warns(DeprecationWarning, match="is deprecated") as ours:
            await getattr(lkapi.sip, alias)(getattr(api, request_type)())
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert fake.requests[0].path == fake.requests[1].path
    assert fake.requests[0].body == fake.requests[1].body


async def test_send_data_keeps_callers_message(fake: FakeTwirp) -> None:
    request = api.SendDataRequest(room="r", data=b"x")
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        await lkapi.room.send_data(request)
        await lkapi.room.send_data(request)
    nonces = [api.SendDataRequest.FromString(r.body).nonce for r in fake.requests]
    assert request.nonce == b""
    assert len(set(nonces)) == 2  # a fresh nonce per call, so the server drops nothing


async def test_get_dispatch_returns_none_when_absent(fake: FakeTwirp) -> None:
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        assert await lkapi.agent_dispatch.get_dispatch("AD_x", "r") is None


# --- errors ------------------------------------------------------------------------------------


async def test_twirp_error_is_server_error_and_api_error(fake: FakeTwirp) -> None:
    body = b'{"code":"not_found","msg":"room not found","meta":{"room":"r"}}'
    fake.replies["/twirp/livekit.RoomService/DeleteRoom"] = (404, "application/json", body)
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        with pytest.raises(api.TwirpError) as info:
            await lkapi.room.delete_room(api.DeleteRoomRequest(room="r"))
    err = info.value
    assert isinstance(err, ApiError)
    assert isinstance(err, api.ServerError)
    assert (err.code, err.message, err.status) == (
        api.TwirpErrorCode.NOT_FOUND,
        "room not found",
        404,
    )
    assert err.metadata == {"room": "r"}


async def test_undecodable_answer_is_decode_error(fake: FakeTwirp) -> None:
    fake.replies["/twirp/livekit.RoomService/CreateRoom"] = (200, "application/protobuf", b"\xff")
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        with pytest.raises(DecodeError):
            await lkapi.room.create_room(api.CreateRoomRequest(name="r"))


async def test_unreachable_server_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with api.LiveKitAPI(f"http://127.0.0.1:{port}", KEY, SECRET) as lkapi:
        with pytest.raises(api.ServerError) as info:
            await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert (info.value.status, info.value.code) == (0, api.ServerErrorCode.UNAVAILABLE)


def test_sip_call_error_reads_metadata() -> None:
    err = api.SipCallError.from_server_error(
        api.ServerError(
            "unavailable",
            "busy",
            status=503,
            metadata={"sip_status_code": "486", "sip_status": "Busy Here"},
        )
    )
    assert (err.sip_status_code, err.sip_status, err.sip_transfer_reason) == (
        486,
        "Busy Here",
        None,
    )


# --- construction and lifetime ------------------------------------------------------------------


async def test_closed_client_refuses_calls(fake: FakeTwirp) -> None:
    lkapi = api.LiveKitAPI(fake.url, KEY, SECRET)
    await lkapi.aclose()
    with pytest.raises(LocalProtocolError):
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert fake.requests == []


async def test_environment_defaults(fake: FakeTwirp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_URL", fake.url)
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.delenv("LIVEKIT_TOKEN", raising=False)
    async with api.LiveKitAPI() as lkapi:
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    video = fake.claims().video
    assert video is not None
    assert video.room_list


async def test_with_token_sends_it_verbatim(fake: FakeTwirp) -> None:
    token = api.AccessToken(KEY, SECRET).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    async with api.LiveKitAPI.with_token(token, fake.url) as lkapi:
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert fake.requests[0].headers["authorization"] == f"Bearer {token}"


def test_missing_url_or_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="url"):
        api.LiveKitAPI(None, KEY, SECRET)
    with pytest.raises(ValueError, match="api_key"):
        api.LiveKitAPI("ws://h", KEY)


def test_connector_is_refused() -> None:
    lkapi = api.LiveKitAPI("ws://h", KEY, SECRET)
    with pytest.raises(UnsupportedFeatureError) as info:
        _ = lkapi.connector
    assert info.value.feature == "LiveKitAPI.connector"


def test_session_is_refused() -> None:
    with pytest.raises(UnsupportedFeatureError) as info:
        api.LiveKitAPI("ws://h", KEY, SECRET, session=object())
    assert info.value.feature == "LiveKitAPI(session=)"


def test_timeout_accepts_client_timeout_shape() -> None:
    class ClientTimeout:
        total = 3.0

    api.LiveKitAPI("ws://h", KEY, SECRET, timeout=ClientTimeout())
    with pytest.raises(LocalProtocolError):
        api.LiveKitAPI("ws://h", KEY, SECRET, timeout=0)


REFUSED = [
    ("sip", "create_sip_inbound_trunk"),
    ("sip", "create_sip_participant"),
    ("sip", "transfer_sip_participant"),
]


@pytest.mark.parametrize(("service", "method"), REFUSED)
async def test_methods_without_schema_are_refused(
    fake: FakeTwirp, service: str, method: str
) -> None:
    async with api.LiveKitAPI(fake.url, KEY, SECRET) as lkapi:
        with pytest.raises(UnsupportedFeatureError):
            await getattr(getattr(lkapi, service), method)(object())
    assert fake.requests == []


def test_messages_load_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from lkproto import api; api.AccessToken('k', 's').to_jwt(); "
        "assert 'google.protobuf' not in sys.modules; "
        "api.CreateRoomRequest(name='x'); assert 'lkproto._pb.api_pb2' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
