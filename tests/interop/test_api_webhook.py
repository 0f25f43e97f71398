"""WebhookReceiver against the webhooks a real livekit-server signs and POSTs.

A LocalServer of its own is configured (``webhook.urls``) to post to a loopback HTTP server in
the test. The server's own request is verified and decoded; the same request with one byte of
the body changed, or checked with another secret, is rejected; livekit-api's receiver agrees.
"""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest
from livekit import api as official

from lkproto import api
from lkproto.errors import TokenError
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import ROSTER_TIMEOUT_S, unique_room

if TYPE_CHECKING:
    from pathlib import Path

__all__: list[str] = []

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Delivery:
    body: bytes
    authorization: str
    content_type: str


@pytest.fixture
def webhook_sink() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    received: queue.Queue[Delivery] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put(
                Delivery(
                    body,
                    self.headers.get("Authorization", ""),
                    self.headers.get("Content-Type", ""),
                )
            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def webhook_server(
    livekit_server_binary: Path,
    tmp_path: Path,
    webhook_sink: tuple[str, queue.Queue[Delivery]],
) -> AsyncIterator[LocalServer]:
    key = f"lk-{secrets.token_hex(6)}"
    server = LocalServer(
        api_key=key,
        binary=livekit_server_binary,
        log_dir=tmp_path,
        # The server signs webhooks with this key's secret (config "webhook.api_key").
        extra_config={"webhook": {"api_key": key, "urls": [webhook_sink[0]]}},
    )
    async with server:
        yield server


async def _next_event(
    deliveries: queue.Queue[Delivery], receiver: api.WebhookReceiver, event: str
) -> Delivery:
    """The first delivery whose verified event is ``event`` (others are verified and skipped)."""
    deadline = asyncio.get_running_loop().time() + scaled(ROSTER_TIMEOUT_S)
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {event!r} webhook arrived")
        try:
            delivery = await asyncio.to_thread(deliveries.get, True, left)
        except queue.Empty:
            raise AssertionError(f"no {event!r} webhook arrived") from None
        if receiver.receive(delivery.body.decode(), delivery.authorization).event == event:
            return delivery


async def test_server_webhook_is_verified_and_tampering_rejected(
    webhook_server: LocalServer, webhook_sink: tuple[str, queue.Queue[Delivery]]
) -> None:
    receiver = api.WebhookReceiver(
        api.TokenVerifier(webhook_server.api_key, webhook_server.api_secret)
    )
    name = unique_room("webhook")
    async with api.LiveKitAPI(
        webhook_server.url, webhook_server.api_key, webhook_server.api_secret
    ) as lkapi:
        room = await lkapi.room.create_room(api.CreateRoomRequest(name=name))
        delivery = await _next_event(webhook_sink[1], receiver, "room_started")
        body = delivery.body.decode()

        event = receiver.receive(body, delivery.authorization)
        assert isinstance(event, api.WebhookEvent)
        assert (event.event, event.room.name, event.room.sid) == ("room_started", name, room.sid)
        assert event.id
        assert event.created_at > 0
        assert delivery.content_type.startswith("application/webhook+json")

        # livekit-api's receiver decodes the same event from the same request.
        theirs = official.WebhookReceiver(
            official.TokenVerifier(webhook_server.api_key, webhook_server.api_secret)
        ).receive(body, delivery.authorization)
        assert theirs.SerializeToString(deterministic=True) == event.SerializeToString(
            deterministic=True
        )

        # One character of the body changed: the sha256 claim no longer matches.
        tampered = body.replace(name, name[:-1] + ("x" if name[-1] != "x" else "y"))
        assert tampered != body
        with pytest.raises(TokenError, match="sha256"):
            receiver.receive(tampered, delivery.authorization)
        # Another secret: the token's signature is refused.
        stranger = api.WebhookReceiver(
            api.TokenVerifier(webhook_server.api_key, "another-secret-another-secret-12345")
        )
        with pytest.raises(TokenError, match="signature"):
            stranger.receive(body, delivery.authorization)

        await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
        finished = await _next_event(webhook_sink[1], receiver, "room_finished")
        ended = receiver.receive(finished.body, finished.authorization)
        assert ended.room.name == name
