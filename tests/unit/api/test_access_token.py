"""Unit tests for lkproto.api.access_token: minting, JSON names, and every verifier rejection."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkproto.api import AccessToken, Claims, SIPGrants, TokenVerifier, VideoGrants
from lkproto.errors import TokenError

__all__: list[str] = []

KEY = "APIkey123"
SECRET = "a-secret-that-is-long-enough-for-hs256!"
NOW = 1_700_000_000.0

# Go's JSON tags in P:auth/grants.go (VideoGrant), PROTOCOL-MAP §13. Written out by hand so a
# renamed field cannot silently change the wire name.
VIDEO_JSON_NAMES = {
    "room_create": "roomCreate",
    "room_list": "roomList",
    "room_record": "roomRecord",
    "room_admin": "roomAdmin",
    "room_join": "roomJoin",
    "room": "room",
    "destination_room": "destinationRoom",
    "can_publish": "canPublish",
    "can_subscribe": "canSubscribe",
    "can_publish_data": "canPublishData",
    "can_publish_sources": "canPublishSources",
    "can_update_own_metadata": "canUpdateOwnMetadata",
    "ingress_admin": "ingressAdmin",
    "hidden": "hidden",
    "recorder": "recorder",
    "agent": "agent",
    "can_manage_agent_session": "canManageAgentSession",
    "can_subscribe_metrics": "canSubscribeMetrics",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segments(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, _ = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))),
        json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
    )


def forge(
    payload: object,
    *,
    secret: str = SECRET,
    header: object = None,
) -> str:
    """Sign an arbitrary header/payload with HS256, bypassing AccessToken's checks."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"} if header is None else header).encode())
    body = b64url(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def valid_payload(**extra: object) -> dict[str, object]:
    return {"sub": "alice", "iss": KEY, "nbf": int(NOW), "exp": int(NOW) + 600, **extra}


def verifier() -> TokenVerifier:
    return TokenVerifier(KEY, SECRET)


# --- minting -------------------------------------------------------------------------------


def test_round_trip_keeps_every_claim() -> None:
    grants = VideoGrants(
        room_join=True,
        room="lobby",
        can_publish=False,
        can_publish_sources=["camera", "microphone"],
        can_update_own_metadata=True,
        hidden=True,
        agent=True,
    )
    token = (
        AccessToken(KEY, SECRET)
        .with_identity("alice")
        .with_name("Alice")
        .with_kind("agent")
        .with_metadata('{"a":1}')
        .with_attributes({"lk.agent.state": "listening", "x": ""})
        .with_sha256("abc=")
        .with_grants(grants)
        .with_sip_grants(SIPGrants(admin=True))
        .to_jwt(now=NOW)
    )
    claims = verifier().verify(token, now=NOW)
    assert claims == Claims(
        identity="alice",
        name="Alice",
        kind="agent",
        metadata='{"a":1}',
        video=grants,
        sip=SIPGrants(admin=True, call=False),
        attributes={"lk.agent.state": "listening", "x": ""},
        sha256="abc=",
    )


def test_header_and_minimal_payload() -> None:
    header, payload = segments(AccessToken(KEY, SECRET).to_jwt(now=NOW))
    assert header == {"alg": "HS256", "typ": "JWT"}
    # livekit-api always writes sub (even empty) and never iat/jti.
    assert payload == {"sub": "", "iss": KEY, "nbf": int(NOW), "exp": int(NOW) + 6 * 3600}


def test_default_video_grants_json() -> None:
    _, payload = segments(AccessToken(KEY, SECRET).with_grants(VideoGrants()).to_jwt(now=NOW))
    assert payload["video"] == {"canPublish": True, "canSubscribe": True, "canPublishData": True}


def test_video_grants_defaults_match_livekit_api() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(VideoGrants)}
    assert defaults == {
        **dict.fromkeys(VIDEO_JSON_NAMES, None),
        "room": "",
        "can_publish": True,
        "can_subscribe": True,
        "can_publish_data": True,
    }
    assert SIPGrants() == SIPGrants(admin=False, call=False)


def test_every_video_grant_has_its_json_name() -> None:
    assert {f.name for f in dataclasses.fields(VideoGrants)} == set(VIDEO_JSON_NAMES)
    for field_name, json_name in VIDEO_JSON_NAMES.items():
        if field_name in ("room", "destination_room"):
            value: object = "r1"
        elif field_name == "can_publish_sources":
            value = ["screen_share"]
        else:
            value = False  # a non-None value that differs from every default
        grants = VideoGrants()
        setattr(grants, field_name, value)
        _, payload = segments(AccessToken(KEY, SECRET).with_grants(grants).to_jwt(now=NOW))
        video = payload["video"]
        assert isinstance(video, dict)
        assert video[json_name] == value, field_name


def test_sip_grant_json_names() -> None:
    token = AccessToken(KEY, SECRET).with_sip_grants(SIPGrants(admin=True, call=True))
    _, payload = segments(token.to_jwt(now=NOW))
    assert payload["sip"] == {"admin": True, "call": True}


def test_top_level_claim_names() -> None:
    token = (
        AccessToken(KEY, SECRET)
        .with_identity("id")
        .with_name("n")
        .with_kind("sip")
        .with_metadata("m")
        .with_attributes({"k": "v"})
        .with_sha256("h")
    )
    _, payload = segments(token.to_jwt(now=NOW))
    custom = ["name", "kind", "metadata", "attributes", "sha256"]
    assert list(payload) == [*custom, "sub", "iss", "nbf", "exp"]
    assert payload["sub"] == "id"


def test_ttl_sets_exp_from_nbf() -> None:
    token = AccessToken(KEY, SECRET).with_ttl(timedelta(minutes=5)).to_jwt(now=NOW + 0.9)
    _, payload = segments(token)
    assert payload["nbf"] == int(NOW)
    assert payload["exp"] == int(NOW) + 300


def test_credentials_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", "envkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    token = AccessToken()
    assert token.api_key == "envkey"
    assert TokenVerifier().verify(token.to_jwt()).identity == ""


def test_missing_credentials_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    with pytest.raises(TokenError):
        AccessToken()
    with pytest.raises(TokenError):
        AccessToken(KEY)
    token = AccessToken(KEY, SECRET).to_jwt()
    with pytest.raises(TokenError, match="api_secret"):
        TokenVerifier().verify(token)
    # Without signature checks no credentials are needed (livekit-api behaviour).
    assert TokenVerifier().verify(token, verify_signature=False).identity == ""


@pytest.mark.parametrize(("identity", "room"), [("", "r"), ("id", ""), ("", "")])
def test_room_join_needs_identity_and_room(identity: str, room: str) -> None:
    token = AccessToken(KEY, SECRET).with_identity(identity)
    token.with_grants(VideoGrants(room_join=True, room=room))
    with pytest.raises(TokenError, match="room_join"):
        token.to_jwt()


def test_non_string_attributes_refused() -> None:
    token = AccessToken(KEY, SECRET).with_attributes({"k": 1})  # type: ignore[dict-item]
    with pytest.raises(TokenError, match="attributes"):
        token.to_jwt()


def test_with_attributes_copies() -> None:
    attrs = {"a": "1"}
    token = AccessToken(KEY, SECRET).with_attributes(attrs)
    attrs["b"] = "2"
    assert token.claims.attributes == {"a": "1"}


# --- verification: accepted ----------------------------------------------------------------


def test_bytes_token_accepted() -> None:
    token = AccessToken(KEY, SECRET).with_identity("b").to_jwt(now=NOW)
    assert verifier().verify(token.encode(), now=NOW).identity == "b"


def test_expired_within_leeway_accepted() -> None:
    token = forge(valid_payload(exp=int(NOW) - 59))
    assert verifier().verify(token, now=NOW).identity == "alice"


def test_nbf_and_iat_within_leeway_accepted() -> None:
    token = forge(valid_payload(nbf=int(NOW) + 60, iat=int(NOW) + 60))
    assert verifier().verify(token, now=NOW).identity == "alice"


def test_custom_leeway() -> None:
    token = forge(valid_payload(exp=int(NOW) - 59))
    with pytest.raises(TokenError, match="expired"):
        TokenVerifier(KEY, SECRET, leeway=timedelta(seconds=10)).verify(token, now=NOW)


def test_absent_claims_and_server_defaults() -> None:
    claims = verifier().verify(forge(valid_payload()), now=NOW)
    assert claims == Claims(identity="alice")
    token = forge(valid_payload(video={"roomJoin": True, "room": "r", "canPublish": False}))
    video = verifier().verify(token, now=NOW).video
    # PROTOCOL-MAP §13: canPublishData defaults to canPublish, canSubscribe to true.
    assert video == VideoGrants(
        room_join=True, room="r", can_publish=False, can_publish_data=False, can_subscribe=True
    )


def test_identity_falls_back_to_jti() -> None:
    token = forge(valid_payload(sub="", jti="from-jti"))
    assert verifier().verify(token, now=NOW).identity == "from-jti"


def test_unknown_claims_and_grants_ignored_null_is_unset() -> None:
    token = forge(
        valid_payload(
            video={"roomJoin": True, "futureGrant": 3, "canPublish": None},
            roomConfig={"name": "x"},
            aud="whatever",
        )
    )
    video = verifier().verify(token, now=NOW).video
    assert video == VideoGrants(room_join=True)


def test_unverified_decode_skips_checks() -> None:
    token = forge(valid_payload(iss="other", exp=1), secret="wrong", header={"alg": "none"})
    claims = verifier().verify(token, verify_signature=False)
    assert claims.identity == "alice"


# --- verification: rejected ----------------------------------------------------------------


def _tampered_signature() -> str:
    head, body, sig = forge(valid_payload()).split(".")
    first = "B" if sig[0] != "B" else "C"
    return f"{head}.{body}.{first}{sig[1:]}"


def _non_canonical_signature() -> str:
    # 32 bytes -> 43 chars whose last one carries 2 unused bits; setting them keeps the bytes.
    head, body, sig = forge(valid_payload()).split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) | 1]
    assert last != sig[-1]
    return f"{head}.{body}.{sig[:-1]}{last}"


def _tampered_payload() -> str:
    head, _, sig = forge(valid_payload()).split(".")
    body = b64url(json.dumps(valid_payload(sub="mallory")).encode())
    return f"{head}.{body}.{sig}"


REJECTED = {
    "tampered signature": (_tampered_signature(), "signature"),
    "non-canonical signature": (_non_canonical_signature(), "signature"),
    "tampered payload": (_tampered_payload(), "signature"),
    "wrong secret": (forge(valid_payload(), secret="not-the-secret"), "signature"),
    "unknown key": (forge(valid_payload(iss="someone-else")), "unknown API key"),
    "no issuer": (forge({k: v for k, v in valid_payload().items() if k != "iss"}), "API key"),
    "expired beyond leeway": (forge(valid_payload(exp=int(NOW) - 61)), "expired"),
    "no exp": (forge({k: v for k, v in valid_payload().items() if k != "exp"}), "exp"),
    "nbf in future": (forge(valid_payload(nbf=int(NOW) + 61)), "not yet valid"),
    "iat in future": (forge(valid_payload(iat=int(NOW) + 61)), "iat"),
    "exp not a number": (forge(valid_payload(exp="soon")), "exp"),
    "exp is a bool": (forge(valid_payload(exp=True)), "exp"),
    "exp infinite": (forge(valid_payload(exp=1e999)), "JSON"),
    "alg none": (forge(valid_payload(), header={"alg": "none", "typ": "JWT"}), "HS256"),
    "alg RS256": (forge(valid_payload(), header={"alg": "RS256", "typ": "JWT"}), "HS256"),
    "alg lower case": (forge(valid_payload(), header={"alg": "hs256"}), "HS256"),
    "no alg": (forge(valid_payload(), header={"typ": "JWT"}), "HS256"),
    "empty signature": (forge(valid_payload()).rpartition(".")[0] + ".", "signature"),
    "header not an object": (forge(valid_payload(), header=["HS256"]), "header"),
    "payload not an object": (forge([1, 2]), "payload"),
    "sub not a string": (forge(valid_payload(sub=5)), "sub"),
    "video not an object": (forge(valid_payload(video=True)), "video"),
    "grant wrong type": (forge(valid_payload(video={"roomJoin": "yes"})), "roomJoin"),
    "room wrong type": (forge(valid_payload(video={"room": 1})), "room"),
    "sources wrong type": (forge(valid_payload(video={"canPublishSources": [1]})), "canPub"),
    "sip wrong type": (forge(valid_payload(sip={"admin": 1})), "admin"),
    "attributes wrong type": (forge(valid_payload(attributes={"a": 1})), "attributes"),
    "not 3 parts": ("a.b", "3 dot-separated"),
    "4 parts": ("a.b.c.d", "3 dot-separated"),
    "empty": ("", "3 dot-separated"),
    "garbage": ("this is not a token", "3 dot-separated"),
    "bad base64": ("!!!.e30.abc", "base64url"),
    "padded base64": ("e30=.e30.abc", "base64url"),
    "impossible base64 length": ("a.e30.abc", "base64url"),
    "header not JSON": (b64url(b"\xff\xfe") + ".e30.abc", "JSON"),
    "non-ASCII": ("é.e30.abc", "base64url"),
}


@pytest.mark.parametrize(("token", "message"), list(REJECTED.values()), ids=list(REJECTED))
def test_rejected_with_token_error(token: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        verifier().verify(token, now=NOW)


def test_non_ascii_bytes_rejected() -> None:
    with pytest.raises(TokenError, match="ASCII"):
        verifier().verify(b"\xff.\xfe.\xfd", now=NOW)


def test_non_string_rejected() -> None:
    with pytest.raises(TokenError):
        verifier().verify(42, now=NOW)  # type: ignore[arg-type]


def test_deeply_nested_json_rejected() -> None:
    head = b64url(b'{"alg":"HS256"}')
    body = b64url(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(TokenError):
        verifier().verify(f"{head}.{body}.abc", now=NOW)


def test_overflowing_number_rejected() -> None:
    # json.loads turns 1e999 into inf; a never-expiring exp must not slip through.
    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = b64url(f'{{"iss":"{KEY}","exp":1e999}}'.encode())
    sig = b64url(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(TokenError, match="finite"):
        verifier().verify(f"{head}.{body}.{sig}", now=NOW)


def test_expired_real_token() -> None:
    token = AccessToken(KEY, SECRET).with_ttl(timedelta(minutes=-2)).to_jwt(now=NOW)
    with pytest.raises(TokenError, match="expired"):
        verifier().verify(token, now=NOW)
    late = AccessToken(KEY, SECRET).with_ttl(timedelta(seconds=-30)).to_jwt(now=NOW)
    assert verifier().verify(late, now=NOW).identity == ""


# --- properties ----------------------------------------------------------------------------


@given(st.one_of(st.text(), st.binary()), st.booleans())
def test_arbitrary_input_raises_only_token_error(token: str | bytes, check: bool) -> None:
    with contextlib.suppress(TokenError):
        verifier().verify(token, verify_signature=check, now=NOW)


_segment = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="),
    st.binary().map(b64url),
)


@given(_segment, _segment, _segment, st.booleans())
def test_arbitrary_segments_raise_only_token_error(h: str, p: str, s: str, check: bool) -> None:
    with contextlib.suppress(TokenError):
        verifier().verify(f"{h}.{p}.{s}", verify_signature=check, now=NOW)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_claim_names = st.sampled_from(
    [
        *("sub", "jti", "iss", "exp", "nbf", "iat"),
        *("name", "kind", "metadata", "sha256", "video", "sip", "attributes"),
        *("inference", "observability", "agent", "agentEndpoint", "agentThread"),
        *("roomPreset", "roomConfig"),
    ]
)
_room_config_keys = ["name", "emptyTimeout", "agents", "agentName", "metadata", "tags"]
_grant_dicts = st.dictionaries(
    st.sampled_from(
        [*VIDEO_JSON_NAMES.values(), "admin", "threadIds", "scope", *_room_config_keys]
    ),
    _json,
)


@given(st.dictionaries(_claim_names, _json | _grant_dicts))
def test_signed_arbitrary_claims_verify_or_raise_token_error(claims: dict[str, object]) -> None:
    # Correctly signed tokens with hostile claim values: a Claims or a TokenError, nothing else.
    try:
        result = verifier().verify(forge({"iss": KEY, **claims}), now=NOW)
    except TokenError:
        return
    assert isinstance(result, Claims)


# --- livekit-api's other claims: grant kinds, room preset, room configuration -----------------


def _official_payload(configure: Callable[[Any], object]) -> dict[str, object]:
    from livekit import api as official

    token = official.AccessToken(KEY, SECRET).with_identity("id")
    configure(token)
    _, payload = segments(token.to_jwt())
    return {k: v for k, v in payload.items() if k not in {"nbf", "exp"}}


def _our_payload(configure: Callable[[Any], object]) -> dict[str, object]:
    token = AccessToken(KEY, SECRET).with_identity("id")
    configure(token)
    _, payload = segments(token.to_jwt(now=NOW))
    return {k: v for k, v in payload.items() if k not in {"nbf", "exp"}}


def _room_config(module: Any) -> Any:
    return module.RoomConfiguration(
        name="lobby",
        empty_timeout=30,
        max_participants=4,
        metadata="m",
        agents=[
            module.RoomAgentDispatch(agent_name="helper", metadata='{"a":1}'),
            module.RoomAgentDispatch(agent_name="second", restart_policy=module.JRP_NEVER),
        ],
        tags={"t": "v"},
    )


def test_room_config_claim_as_livekit_api_writes_it() -> None:
    from livekit import api as official

    from lkproto import api

    theirs = _official_payload(lambda t: t.with_room_config(_room_config(official)))
    ours = _our_payload(lambda t: t.with_room_config(_room_config(api)))
    assert ours == theirs
    room_config = ours["roomConfig"]
    assert isinstance(room_config, dict)
    assert room_config["agents"][0] == {"agentName": "helper", "metadata": '{"a":1}'}


def test_room_config_round_trips_both_ways() -> None:
    from livekit import api as official

    from lkproto import api

    ours = AccessToken(KEY, SECRET).with_room_config(_room_config(api)).with_room_preset("p")
    claims = verifier().verify(ours.to_jwt(now=NOW), now=NOW)
    assert claims.room_config == _room_config(api)
    assert claims.room_preset == "p"
    theirs = official.TokenVerifier(KEY, SECRET).verify(ours.to_jwt())
    assert theirs.room_config == _room_config(official)
    assert theirs.room_preset == "p"

    official_token = official.AccessToken(KEY, SECRET).with_room_config(_room_config(official))
    assert verifier().verify(official_token.to_jwt()).room_config == _room_config(api)


def test_with_room_config_keeps_a_copy() -> None:
    from lkproto import api

    config = api.RoomConfiguration(name="a")
    token = AccessToken(KEY, SECRET).with_room_config(config)
    config.name = "b"
    assert token.claims.room_config is not None
    assert token.claims.room_config.name == "a"


def test_malformed_room_config_is_token_error() -> None:
    bad: object
    for bad in ([], {"emptyTimeout": "many"}, {"agents": {"x": 1}}):
        with pytest.raises(TokenError, match="roomConfig"):
            verifier().verify(forge(valid_payload(roomConfig=bad)), now=NOW)


def test_other_grant_kinds_as_livekit_api_writes_them() -> None:
    from livekit import api as official

    from lkproto import api

    def configure(module: Any) -> Callable[[Any], object]:
        def apply(token: Any) -> None:
            token.with_inference_grants(module.InferenceGrants(perform=True))
            token.with_observability_grants(module.ObservabilityGrants(write=True))
            token.with_agent_grants(module.AgentGrants(admin=True, dispatch_admin=True))
            token.with_agent_endpoint_grants(
                module.AgentEndpointGrants(call=True, agent_name="a", deployment="d")
            )
            token.with_agent_thread_grants(
                module.AgentThreadGrants(scope="s", thread_ids=["t1"], read=True)
            )
            token.with_sip_grants(module.SIPGrants(admin=True))

        return apply

    theirs = _official_payload(configure(official))
    ours = _our_payload(configure(api))
    assert ours == theirs
    claims = verifier().verify(AccessToken(KEY, SECRET).with_identity("id").to_jwt(), now=None)
    assert claims.agent is None
    token = AccessToken(KEY, SECRET)
    configure(api)(token)
    back = verifier().verify(token.to_jwt(now=NOW), now=NOW)
    assert back.agent_thread == api.AgentThreadGrants(scope="s", thread_ids=["t1"], read=True)
    assert back.agent_endpoint == api.AgentEndpointGrants(call=True, agent_name="a", deployment="d")
    assert back.inference == api.InferenceGrants(perform=True)


def test_with_kind_accepts_participant_kind_values() -> None:
    from lkproto import api

    token = AccessToken(KEY, SECRET).with_kind(api.ParticipantInfo.Kind.AGENT)
    assert segments(token.to_jwt(now=NOW))[1]["kind"] == "agent"
    with pytest.raises(TokenError):
        AccessToken(KEY, SECRET).with_kind(999)
