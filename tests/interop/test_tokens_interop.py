"""Tokens cross-checked with the official ``livekit-api``: each side verifies the other's tokens.

No server is needed; these are interop tests because the peer is the official implementation.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from types import ModuleType
from typing import Protocol

import pytest
from livekit import api as lk

from lkproto import api as ours
from lkproto.errors import TokenError

__all__: list[str] = []

pytestmark = pytest.mark.interop

KEY = "APIinteropKey"
# PyJWT warns (an error under filterwarnings=error) about HMAC keys shorter than 32 bytes.
SECRET = "interop-secret-interop-secret-interop-secret"


class _Token(Protocol):
    def to_jwt(self) -> str: ...


# Each case builds a token through the fluent API; ``m`` is either module, so both sides build
# the very same token with their own classes.
CASES: dict[str, Callable[[ModuleType], _Token]] = {
    "bare": lambda m: m.AccessToken(KEY, SECRET),
    "join": lambda m: (
        m.AccessToken(KEY, SECRET)
        .with_identity("alice")
        .with_grants(m.VideoGrants(room_join=True, room="lobby"))
    ),
    "everything": lambda m: (
        m.AccessToken(KEY, SECRET)
        .with_identity("agent-1")
        .with_name("Agent Ünïcode ✓")
        .with_kind("agent")
        .with_metadata('{"role": "assistant"}')
        .with_attributes({"lk.agent.state": "idle", "empty": "", "ключ": "значение"})
        .with_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        .with_ttl(timedelta(minutes=30))
        .with_grants(
            m.VideoGrants(
                room_join=True,
                room="r-1",
                room_admin=True,
                room_create=False,
                can_publish=False,
                can_subscribe=True,
                can_publish_data=False,
                can_publish_sources=["camera", "screen_share_audio"],
                can_update_own_metadata=True,
                hidden=True,
                recorder=False,
                agent=True,
                ingress_admin=False,
                can_subscribe_metrics=True,
                can_manage_agent_session=True,
                destination_room="r-2",
            )
        )
        .with_sip_grants(m.SIPGrants(admin=True, call=False))
    ),
    "service": lambda m: m.AccessToken(KEY, SECRET).with_grants(
        m.VideoGrants(room_create=True, room_list=True, room_record=True)
    ),
    "sip only": lambda m: (
        m.AccessToken(KEY, SECRET)
        .with_identity("sip-bridge")
        .with_kind("sip")
        .with_sip_grants(m.SIPGrants(call=True))
    ),
    "empty sources": lambda m: (
        m.AccessToken(KEY, SECRET)
        .with_identity("viewer")
        .with_name("V")
        .with_grants(m.VideoGrants(room_join=True, room="r", can_publish_sources=[]))
    ),
}


def payload_of(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def assert_same_claims(mine: ours.Claims, theirs: lk.access_token.Claims) -> None:
    """Compare field by field; livekit-api fills absent grants with defaults, we keep None."""
    assert mine.identity == theirs.identity
    assert mine.name == theirs.name
    assert mine.kind == theirs.kind
    assert mine.metadata == theirs.metadata
    assert mine.attributes == (theirs.attributes or {})
    assert mine.sha256 == (theirs.sha256 or "")
    mine_video = dataclasses.asdict(mine.video or ours.VideoGrants())
    assert theirs.video is not None
    assert mine_video == dataclasses.asdict(theirs.video)
    mine_sip = dataclasses.asdict(mine.sip or ours.SIPGrants())
    assert theirs.sip is not None
    assert mine_sip == dataclasses.asdict(theirs.sip)


@pytest.mark.parametrize("build", list(CASES.values()), ids=list(CASES))
def test_theirs_verify_with_ours(build: Callable[[ModuleType], _Token]) -> None:
    token = build(lk).to_jwt()
    mine = ours.TokenVerifier(KEY, SECRET).verify(token)
    theirs = lk.TokenVerifier(KEY, SECRET).verify(token)
    assert_same_claims(mine, theirs)


@pytest.mark.parametrize("build", list(CASES.values()), ids=list(CASES))
def test_ours_verify_with_theirs(build: Callable[[ModuleType], _Token]) -> None:
    token = build(ours).to_jwt()
    theirs = lk.TokenVerifier(KEY, SECRET).verify(token)
    mine = ours.TokenVerifier(KEY, SECRET).verify(token)
    assert_same_claims(mine, theirs)


@pytest.mark.parametrize("build", list(CASES.values()), ids=list(CASES))
def test_same_payload_and_bytes(build: Callable[[ModuleType], _Token]) -> None:
    # Same claims in the same order; when both land in the same second, the very same JWT.
    for _ in range(5):
        mine, theirs = build(ours).to_jwt(), build(lk).to_jwt()
        p_mine, p_theirs = payload_of(mine), payload_of(theirs)
        if p_mine["nbf"] == p_theirs["nbf"]:
            assert list(p_mine.items()) == list(p_theirs.items())
            assert mine == theirs
            return
    pytest.fail("could not mint both tokens within the same second")


def test_theirs_rejected_like_ours() -> None:
    expired = lk.AccessToken(KEY, SECRET).with_ttl(timedelta(minutes=-5)).to_jwt()
    with pytest.raises(TokenError, match="expired"):
        ours.TokenVerifier(KEY, SECRET).verify(expired)
    foreign = lk.AccessToken("otherKey", SECRET).to_jwt()
    with pytest.raises(TokenError, match="API key"):
        ours.TokenVerifier(KEY, SECRET).verify(foreign)
    forged = lk.AccessToken(KEY, SECRET + "x").to_jwt()
    with pytest.raises(TokenError, match="signature"):
        ours.TokenVerifier(KEY, SECRET).verify(forged)
