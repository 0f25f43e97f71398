"""WebhookReceiver: token, then body hash, then protojson; every failure is a library error."""

from __future__ import annotations

import base64
import hashlib

import pytest
from google.protobuf import json_format

from lkproto import api
from lkproto.errors import DecodeError, TokenError

__all__: list[str] = []

KEY = "hookkey"
SECRET = "hook-secret-hook-secret-hook-secret"


def _signed(body: str, *, secret: str = SECRET) -> str:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return api.AccessToken(KEY, secret).with_sha256(digest).to_jwt()


def _receiver() -> api.WebhookReceiver:
    return api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))


BODY = json_format.MessageToJson(
    api.WebhookEvent(
        event="participant_joined",
        room=api.Room(sid="RM_1", name="r"),
        participant=api.ParticipantInfo(identity="alice"),
        id="EV_1",
        created_at=1_700_000_000,
    )
)


def test_verified_event_is_decoded() -> None:
    event = _receiver().receive(BODY, _signed(BODY))
    assert (event.event, event.room.name, event.participant.identity) == (
        "participant_joined",
        "r",
        "alice",
    )


def test_bytes_body_and_bearer_prefix_accepted() -> None:
    event = _receiver().receive(BODY.encode(), "Bearer " + _signed(BODY))
    assert event.id == "EV_1"


def test_unknown_fields_are_skipped() -> None:
    body = '{"event": "room_started", "room": {"name": "r", "fromTheFuture": 1}, "new": true}'
    assert _receiver().receive(body, _signed(body)).room.name == "r"


def test_livekit_api_accepts_what_it_accepts() -> None:
    from livekit import api as official

    theirs = official.WebhookReceiver(official.TokenVerifier(KEY, SECRET)).receive(
        BODY, _signed(BODY)
    )
    ours = _receiver().receive(BODY, _signed(BODY))
    assert theirs.SerializeToString(deterministic=True) == ours.SerializeToString(
        deterministic=True
    )


def test_tampered_body_rejected() -> None:
    token = _signed(BODY)
    with pytest.raises(TokenError, match="sha256"):
        _receiver().receive(BODY.replace("alice", "mallory"), token)


def test_other_secret_rejected() -> None:
    with pytest.raises(TokenError, match="signature"):
        _receiver().receive(BODY, _signed(BODY, secret="x" * 40))


def test_token_without_sha256_rejected() -> None:
    token = api.AccessToken(KEY, SECRET).to_jwt()
    with pytest.raises(TokenError, match="no sha256"):
        _receiver().receive(BODY, token)


def test_sha256_claim_not_base64_rejected() -> None:
    token = api.AccessToken(KEY, SECRET).with_sha256("not base64!").to_jwt()
    with pytest.raises(TokenError, match="base64"):
        _receiver().receive(BODY, token)


def test_verified_body_that_is_no_event_is_decode_error() -> None:
    body = '{"event": 5}'
    with pytest.raises(DecodeError):
        _receiver().receive(body, _signed(body))
