"""RoomServiceClient against a tiny in-process Twirp fake: requests, grants and error mapping."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lkproto.api import RoomServiceClient, TokenVerifier, VideoGrants
from lkproto.api._http import twirp_error
from lkproto.errors import ApiError, DecodeError, LocalProtocolError, TokenError
from lkproto.wire import pb

__all__: list[str] = []

KEY = "fakekey"
SECRET = "fake-secret-fake-secret-fake-secret"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, object]


@dataclass
class FakeTwirp:
    """Answers every POST with ``reply`` (status, body) and records the requests."""

    url: str = ""
    reply: tuple[int, bytes] = (200, b"{}")
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def grants(self) -> VideoGrants | None:
        auth = self.last.headers["Authorization"]
        assert auth.startswith("Bearer ")
        return TokenVerifier(KEY, SECRET).verify(auth.removeprefix("Bearer ")).video


@pytest.fixture
def fake() -> Iterator[FakeTwirp]:
    state = FakeTwirp()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(
                Recorded("POST", self.path, dict(self.headers.items()), json.loads(raw))
            )
            if state.delay_s:
                time.sleep(state.delay_s)
            status, body = state.reply
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"ws://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def client(fake: FakeTwirp) -> RoomServiceClient:
    return RoomServiceClient(fake.url, KEY, SECRET, timeout=5.0)


def reply_json(fake: FakeTwirp, obj: object, status: int = 200) -> None:
    fake.reply = (status, json.dumps(obj).encode())


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ws://h:7880", "http://h:7880"),
        ("wss://h.example", "https://h.example"),
        ("http://h:1/", "http://h:1"),
        ("HTTPS://h/prefix/", "https://h/prefix"),
    ],
)
def test_url_scheme_conversion(given: str, expected: str) -> None:
    assert RoomServiceClient(given, KEY, SECRET).url == expected


@pytest.mark.parametrize("url", ["ftp://h", "h:7880", "file:///etc/passwd", "ws://"])
def test_bad_url_refused(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        RoomServiceClient(url, KEY, SECRET)


def test_missing_credentials_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    with pytest.raises(TokenError):
        RoomServiceClient("ws://h")


# --- requests, grants, parsing -------------------------------------------------------------


async def test_create_room(fake: FakeTwirp, client: RoomServiceClient) -> None:
    # Server-style protojson: snake_case, int64 as strings, plus a field we do not know.
    reply_json(
        fake,
        {"sid": "RM_1", "name": "r1", "empty_timeout": 60, "creation_time": "1700000000",
         "metadata": "m", "some_future_field": True},
    )  # fmt: skip
    room = await client.create_room("r1", empty_timeout=60, max_participants=3, metadata="m")
    assert isinstance(room, pb.Room)
    assert (room.sid, room.name, room.empty_timeout, room.creation_time) == (
        "RM_1",
        "r1",
        60,
        1_700_000_000,
    )
    assert fake.last.path == "/twirp/livekit.RoomService/CreateRoom"
    assert fake.last.headers["Content-Type"] == "application/json"
    assert fake.last.body == {
        "name": "r1",
        "empty_timeout": 60,
        "departure_timeout": 0,
        "max_participants": 3,
        "metadata": "m",
        "node_id": "",
    }
    assert fake.grants() == VideoGrants(room_create=True)


async def test_list_and_delete_rooms(fake: FakeTwirp, client: RoomServiceClient) -> None:
    reply_json(fake, {"rooms": [{"name": "a"}, {"name": "b", "num_participants": 2}]})
    rooms = await client.list_rooms(["a", "b"])
    assert [(r.name, r.num_participants) for r in rooms] == [("a", 0), ("b", 2)]
    assert fake.last.body == {"names": ["a", "b"]}
    assert fake.grants() == VideoGrants(room_list=True)

    reply_json(fake, {})
    assert await client.list_rooms() == []
    assert fake.last.body == {}

    await client.delete_room("a")
    assert fake.last.path.endswith("/DeleteRoom")
    assert fake.last.body == {"room": "a"}
    assert fake.grants() == VideoGrants(room_create=True)


async def test_participant_calls_use_room_admin(fake: FakeTwirp, client: RoomServiceClient) -> None:
    admin = VideoGrants(room_admin=True, room="r")
    info = {"sid": "PA_1", "identity": "alice", "state": "ACTIVE", "attributes": {"k": "v"}}

    reply_json(fake, {"participants": [info]})
    (listed,) = await client.list_participants("r")
    assert (listed.identity, listed.state, dict(listed.attributes)) == (
        "alice",
        pb.ParticipantInfo.ACTIVE,
        {"k": "v"},
    )
    assert (fake.last.path, fake.last.body) == (
        "/twirp/livekit.RoomService/ListParticipants",
        {"room": "r"},
    )
    assert fake.grants() == admin

    reply_json(fake, info)
    got = await client.get_participant("r", "alice")
    assert got.sid == "PA_1"
    assert fake.last.body == {"room": "r", "identity": "alice"}
    assert fake.grants() == admin

    await client.update_participant("r", "alice", attributes={"k": ""})
    assert fake.last.body == {"room": "r", "identity": "alice", "attributes": {"k": ""}}
    await client.update_participant("r", "alice", metadata="", name="Al")
    assert fake.last.body == {"room": "r", "identity": "alice", "metadata": "", "name": "Al"}
    assert fake.grants() == admin

    reply_json(fake, {})
    await client.remove_participant("r", "alice")
    assert fake.last.path.endswith("/RemoveParticipant")
    assert fake.grants() == admin

    reply_json(fake, {"sid": "RM", "name": "r", "metadata": "new"})
    room = await client.update_room_metadata("r", "new")
    assert room.metadata == "new"
    assert fake.last.body == {"room": "r", "metadata": "new"}
    assert fake.grants() == admin


async def test_mute_published_track(fake: FakeTwirp, client: RoomServiceClient) -> None:
    reply_json(fake, {"track": {"sid": "TR_1", "muted": True, "type": "AUDIO"}})
    track = await client.mute_published_track("r", "alice", "TR_1", True)
    assert (track.sid, track.muted, track.type) == ("TR_1", True, pb.AUDIO)
    assert fake.last.body == {"room": "r", "identity": "alice", "track_sid": "TR_1", "muted": True}
    assert fake.grants() == VideoGrants(room_admin=True, room="r")


async def test_send_data(fake: FakeTwirp, client: RoomServiceClient) -> None:
    await client.send_data("r", b"\x00hi", destination_identities=["bob"], topic="chat")
    body = fake.last.body
    assert fake.last.path.endswith("/SendData")
    assert base64.b64decode(str(body["data"])) == b"\x00hi"
    assert (body["kind"], body["destination_identities"], body["topic"]) == (
        "RELIABLE",
        ["bob"],
        "chat",
    )
    assert len(base64.b64decode(str(body["nonce"]))) == 16
    first_nonce = body["nonce"]

    await client.send_data("r", b"x", reliable=False)
    assert fake.last.body["kind"] == "LOSSY"
    assert "topic" not in fake.last.body
    assert fake.last.body["nonce"] != first_nonce


async def test_environment_proxy_is_ignored(
    fake: FakeTwirp, client: RoomServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert await client.list_rooms() == []


# --- error mapping -------------------------------------------------------------------------


async def test_twirp_error_becomes_api_error(fake: FakeTwirp, client: RoomServiceClient) -> None:
    reply_json(fake, {"code": "not_found", "msg": "requested room does not exist"}, status=404)
    with pytest.raises(ApiError) as info:
        await client.delete_room("nope")
    assert (info.value.status, info.value.code, info.value.message) == (
        404,
        "not_found",
        "requested room does not exist",
    )


async def test_non_twirp_error_body(fake: FakeTwirp, client: RoomServiceClient) -> None:
    fake.reply = (503, b"<html>bad gateway</html>")
    with pytest.raises(ApiError) as info:
        await client.list_rooms()
    assert (info.value.status, info.value.code) == (503, "unavailable")
    assert "bad gateway" in info.value.message


@pytest.mark.parametrize(
    ("status", "code"),
    [(301, "internal"), (400, "internal"), (401, "unauthenticated"), (403, "permission_denied"),
     (404, "bad_route"), (429, "unavailable"), (500, "unknown"), (418, "unknown")],
)  # fmt: skip
def test_status_fallback_codes(status: int, code: str) -> None:
    err = twirp_error(status, b"")
    assert (err.status, err.code) == (status, code)


def test_twirp_error_without_msg() -> None:
    err = twirp_error(401, b'{"code":"unauthenticated","meta":{}}')
    assert (err.code, err.message) == ("unauthenticated", "")


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"rooms": 3}', b'{"rooms": [5]}'])
async def test_bad_success_body_is_decode_error(
    fake: FakeTwirp, client: RoomServiceClient, body: bytes
) -> None:
    fake.reply = (200, body)
    with pytest.raises(DecodeError):
        await client.list_rooms()


async def test_wrongly_typed_field_is_decode_error(
    fake: FakeTwirp, client: RoomServiceClient
) -> None:
    reply_json(fake, {"name": 5, "empty_timeout": "many"})
    with pytest.raises(DecodeError):
        await client.create_room("r")


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RoomServiceClient(f"http://127.0.0.1:{port}", KEY, SECRET, timeout=5.0)
    with pytest.raises(ApiError) as info:
        await client.list_rooms()
    assert (info.value.status, info.value.code) == (0, "unavailable")


async def test_timeout_is_unavailable(fake: FakeTwirp) -> None:
    fake.delay_s = 1.0
    client = RoomServiceClient(fake.url, KEY, SECRET, timeout=0.2)
    with pytest.raises(ApiError) as info:
        await client.list_rooms()
    assert (info.value.status, info.value.code) == (0, "unavailable")


async def test_closed_client_refuses_calls(fake: FakeTwirp) -> None:
    async with RoomServiceClient(fake.url, KEY, SECRET) as client:
        assert await client.list_rooms() == []
    with pytest.raises(LocalProtocolError, match="closed"):
        await client.list_rooms()
    assert len(fake.requests) == 1


def test_api_imports_only_stdlib_and_protobuf() -> None:
    # lkproto.api must work with the base dependency set (pyproject: protobuf only).
    code = (
        "import sys, lkproto.api as a; a.RoomServiceClient; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'aiortc', 'av', 'websockets', 'aiohttp', 'livekit', 'jwt', 'cryptography'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
