"""LiveKit access tokens: minting (:class:`AccessToken`) and verification (:class:`TokenVerifier`).

An access token is a JWT signed with HMAC-SHA256 over the API secret (PROTOCOL-MAP §13). The
registered claims are ``iss`` (the API key, which the server uses to look up the secret), ``sub``
(the participant identity), ``nbf`` and ``exp``; LiveKit's own claims (``name``, ``kind``,
``video``, ``sip``, ``metadata``, ``attributes``, ``sha256``) sit at the top level of the payload
under the lowerCamel JSON names of ``P:auth/grants.go (ClaimGrants)``.

The public shape (class names, fluent ``with_*`` methods, dataclass field names and defaults)
follows PyPI ``livekit-api`` so code can move between the two, but this module depends on the
standard library only. Every failure is a :class:`lkproto.errors.TokenError`.

Example::

    token = (
        AccessToken("devkey", "secret")
        .with_identity("alice")
        .with_grants(VideoGrants(room_join=True, room="lobby"))
        .to_jwt()
    )
    claims = TokenVerifier("devkey", "secret").verify(token)
    assert claims.identity == "alice"
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeVar

from lkproto.errors import TokenError

if TYPE_CHECKING:
    from lkproto.wire.api import RoomConfiguration

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_TTL",
    "AccessToken",
    "AgentEndpointGrants",
    "AgentGrants",
    "AgentThreadGrants",
    "Claims",
    "InferenceGrants",
    "ObservabilityGrants",
    "SIPGrants",
    "TokenVerifier",
    "VideoGrants",
]

DEFAULT_TTL: Final = timedelta(hours=6)
"""Validity of a token when :meth:`AccessToken.with_ttl` is not called (livekit-api default)."""

DEFAULT_LEEWAY: Final = timedelta(minutes=1)
"""Clock skew tolerated on ``exp``/``nbf``/``iat``; the server uses the same (PROTOCOL-MAP §13)."""

# PROTOCOL-MAP §13: HS256 is the only algorithm the server accepts (P:auth/verifier.go).
_ALGORITHM: Final = "HS256"
# Key order and separators as PyJWT writes them, so our tokens look like livekit-api's.
_HEADER_SEGMENT: Final = (
    base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode("ascii")
)
# RFC 7515 §2: base64url without padding. Anything else is not a JWS compact serialization.
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")


@dataclass
class VideoGrants:
    """Room permissions carried in the ``video`` claim (Go ``VideoGrant``, PROTOCOL-MAP §13).

    Field names and defaults are livekit-api's. ``None`` and ``""`` fields are left out of the
    token, so the server applies its own default for them.

    Attributes:
        room_create: may create and delete rooms (RoomService CreateRoom/DeleteRoom).
        room_list: may list rooms.
        room_record: may start egress recordings.
        room_admin: may administer ``room`` (participants, metadata, data, mute).
        room_join: may join ``room``; requires an identity on the token.
        room: the room the room-scoped grants apply to.
        destination_room: room a participant may be forwarded or moved to.
        can_publish: may publish tracks.
        can_subscribe: may subscribe to tracks.
        can_publish_data: may send data packets.
        can_publish_sources: track sources allowed to be published (``camera``, ``microphone``,
            ``screen_share``, ``screen_share_audio``); ``None`` or empty means all.
        can_update_own_metadata: may change its own name, metadata and attributes (server
            default: no).
        ingress_admin: may manage ingresses.
        hidden: invisible to other participants.
        recorder: marks the participant as a recorder (deprecated upstream).
        agent: may register as an agent worker.
        can_manage_agent_session: may manage an agent session.
        can_subscribe_metrics: may receive metrics packets.
    """

    room_create: bool | None = None
    room_list: bool | None = None
    room_record: bool | None = None
    room_admin: bool | None = None
    room_join: bool | None = None
    room: str = ""
    destination_room: str | None = None
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    can_publish_sources: list[str] | None = None
    can_update_own_metadata: bool | None = None
    ingress_admin: bool | None = None
    hidden: bool | None = None
    recorder: bool | None = None
    agent: bool | None = None
    can_manage_agent_session: bool | None = None
    can_subscribe_metrics: bool | None = None


@dataclass
class SIPGrants:
    """SIP permissions carried in the ``sip`` claim.

    Attributes:
        admin: may manage SIP trunks and dispatch rules.
        call: may place outbound SIP calls.
    """

    admin: bool = False
    call: bool = False


@dataclass
class InferenceGrants:
    """LiveKit Cloud inference permissions (``inference`` claim).

    Attributes:
        perform: may call the inference gateway.
    """

    perform: bool = False


@dataclass
class ObservabilityGrants:
    """LiveKit Cloud observability permissions (``observability`` claim).

    Attributes:
        write: may write observability data.
    """

    write: bool = False


@dataclass
class AgentGrants:
    """Agent management permissions (``agent`` claim).

    Attributes:
        admin: may manage agents.
        simulation_admin: may manage agent simulations.
        database_admin: may manage agent databases.
        dispatch_admin: may manage agent dispatches.
    """

    admin: bool = False
    simulation_admin: bool = False
    database_admin: bool = False
    dispatch_admin: bool = False


@dataclass
class AgentEndpointGrants:
    """Permission to call one agent endpoint (``agentEndpoint`` claim).

    Attributes:
        call: may call the endpoint.
        agent_name: the agent the grant is for.
        deployment: the agent deployment; empty means production.
    """

    call: bool = False
    agent_name: str = ""
    deployment: str = ""


@dataclass
class AgentThreadGrants:
    """Permissions on agent conversation threads (``agentThread`` claim).

    Attributes:
        all: applies to every thread.
        scope: the scope the thread ids live in.
        thread_ids: the threads the grant applies to.
        list: may list threads.
        create: may create threads.
        write: may write to threads.
        read: may read threads.
        delete: may delete threads.
    """

    all: bool = False
    scope: str = ""
    thread_ids: list[str] | None = None
    list: bool = False
    create: bool = False
    write: bool = False
    read: bool = False
    delete: bool = False


@dataclass
class Claims:
    """The LiveKit claims of a token, as minted or as found by :meth:`TokenVerifier.verify`.

    Attributes:
        identity: participant identity (``sub``; the server falls back to ``jti``).
        name: display name.
        kind: participant kind in lower case (``standard``, ``agent``, ``sip``, ``ingress``,
            ``egress``, ``connector``, ``bridge``); empty means standard.
        metadata: participant metadata.
        video: room grants, or ``None`` if the token has no ``video`` claim.
        sip: SIP grants, or ``None`` if the token has no ``sip`` claim.
        attributes: participant attributes (empty if absent).
        sha256: hash of the request body (webhooks); empty if absent.
        inference: inference grants, or ``None``.
        observability: observability grants, or ``None``.
        agent: agent management grants, or ``None``.
        agent_endpoint: agent endpoint grants, or ``None``.
        agent_thread: agent thread grants, or ``None``.
        room_preset: name of a room preset the server applies when the token creates the room.
        room_config: room configuration (``roomConfig`` claim) applied when the token creates
            the room, e.g. the agents to dispatch; ``None`` if absent.
    """

    identity: str = ""
    name: str = ""
    kind: str = ""
    metadata: str = ""
    video: VideoGrants | None = None
    sip: SIPGrants | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    inference: InferenceGrants | None = None
    observability: ObservabilityGrants | None = None
    agent: AgentGrants | None = None
    agent_endpoint: AgentEndpointGrants | None = None
    agent_thread: AgentThreadGrants | None = None
    room_preset: str = ""
    room_config: RoomConfiguration | None = None


_Grants = (
    VideoGrants
    | SIPGrants
    | InferenceGrants
    | ObservabilityGrants
    | AgentGrants
    | AgentEndpointGrants
    | AgentThreadGrants
)
_GrantsT = TypeVar("_GrantsT", bound=_Grants)

# Which JSON type each grant field has on the wire; every field not listed here is a bool.
_GRANT_STR_FIELDS: Final = frozenset(
    {"room", "destination_room", "agent_name", "deployment", "scope"}
)
_GRANT_STR_LIST_FIELDS: Final = frozenset({"can_publish_sources", "thread_ids"})

# The grant claims besides ``video``: (Claims attribute, JSON claim name, grants class). The
# claim names are the JSON tags of ``P:auth/grants.go (ClaimGrants)``.
_EXTRA_GRANT_CLAIMS: Final[tuple[tuple[str, str, type[_Grants]], ...]] = (
    ("sip", "sip", SIPGrants),
    ("inference", "inference", InferenceGrants),
    ("observability", "observability", ObservabilityGrants),
    ("agent", "agent", AgentGrants),
    ("agent_endpoint", "agentEndpoint", AgentEndpointGrants),
    ("agent_thread", "agentThread", AgentThreadGrants),
)


def _json_name(field_name: str) -> str:
    """Go's ``VideoGrant``/``SIPGrant`` JSON tags are the lowerCamel form of our field names."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _grants_to_json(grants: _Grants) -> dict[str, object]:
    # livekit-api leaves out None and "" so the server's defaults apply (PROTOCOL-MAP §13:
    # canPublishData defaults to canPublish, canUpdateOwnMetadata to false, ...).
    out: dict[str, object] = {}
    for f in dataclasses.fields(grants):
        value = getattr(grants, f.name)
        if value is None or value == "":
            continue
        out[_json_name(f.name)] = list(value) if isinstance(value, list) else value
    return out


def _grants_from_json(cls: type[_GrantsT], raw: object, claim: str) -> _GrantsT:
    if not isinstance(raw, dict):
        raise TokenError(f"claim {claim!r} must be a JSON object")
    by_json_name = {_json_name(f.name): f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for key, value in raw.items():
        name = by_json_name.get(key)
        # Unknown keys are grants newer than this code; JSON null is Go's nil pointer (= unset).
        if name is None or value is None:
            continue
        if name in _GRANT_STR_FIELDS:
            ok = isinstance(value, str)
        elif name in _GRANT_STR_LIST_FIELDS:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, bool)
        if not ok:
            raise TokenError(f"claim {claim}.{key} has the wrong JSON type")
        kwargs[name] = value
    grants = cls(**kwargs)  # type: ignore[arg-type]
    if isinstance(grants, VideoGrants) and "canPublishData" not in raw:
        # PROTOCOL-MAP §13: an absent canPublishData means "same as canPublish".
        grants.can_publish_data = grants.can_publish
    return grants


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str, what: str) -> bytes:
    if not _B64URL_RE.fullmatch(segment) or len(segment) % 4 == 1:
        raise TokenError(f"malformed token: {what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError(f"malformed token: {what} is not base64url") from exc


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes, what: str) -> dict[str, object]:
    try:
        # NaN/Infinity are Python extensions, not JSON; refusing them keeps exp/nbf finite-ish.
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError(f"malformed token: {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenError(f"malformed token: {what} is not a JSON object")
    return value


def _sign(signing_input: bytes, secret: str) -> str:
    return _b64url_encode(hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest())


def _resolve_credentials(api_key: str | None, api_secret: str | None) -> tuple[str, str] | None:
    # livekit-api semantics: an empty argument also falls back to the environment.
    key = api_key or os.environ.get("LIVEKIT_API_KEY")
    secret = api_secret or os.environ.get("LIVEKIT_API_SECRET")
    if not key or not secret:
        return None
    return key, secret


class AccessToken:
    """Builder for a signed LiveKit access token.

    Every ``with_*`` method returns the token itself, so calls chain::

        jwt = AccessToken(key, secret).with_identity("bob").with_grants(grants).to_jwt()

    Args:
        api_key: API key; defaults to ``$LIVEKIT_API_KEY``.
        api_secret: API secret; defaults to ``$LIVEKIT_API_SECRET``.

    Raises:
        TokenError: no API key or secret was given or found in the environment.
    """

    def __init__(self, api_key: str | None = None, api_secret: str | None = None) -> None:
        credentials = _resolve_credentials(api_key, api_secret)
        if credentials is None:
            raise TokenError(
                "api_key and api_secret must be given or set in "
                "LIVEKIT_API_KEY / LIVEKIT_API_SECRET"
            )
        self.api_key, self.api_secret = credentials
        self.claims = Claims()
        self.ttl = DEFAULT_TTL

    @property
    def identity(self) -> str:
        """The participant identity that becomes ``sub``."""
        return self.claims.identity

    def with_identity(self, identity: str) -> AccessToken:
        """Set the participant identity (``sub``)."""
        self.claims.identity = identity
        return self

    def with_name(self, name: str) -> AccessToken:
        """Set the participant display name."""
        self.claims.name = name
        return self

    def with_metadata(self, metadata: str) -> AccessToken:
        """Set the participant metadata."""
        self.claims.metadata = metadata
        return self

    def with_attributes(self, attributes: dict[str, str]) -> AccessToken:
        """Set the participant attributes (a copy of ``attributes`` is kept)."""
        self.claims.attributes = dict(attributes)
        return self

    def with_kind(self, kind: str | int) -> AccessToken:
        """Set the participant kind, lower case: ``standard``, ``agent``, ``sip``, ...

        The server upper-cases it and looks it up in ``ParticipantInfo.Kind`` (PROTOCOL-MAP §13).
        A ``ParticipantInfo.Kind`` value (``api.ParticipantKind.AGENT`` in livekit-api's
        spelling, an int) is accepted too and written as its lower-case name, the only form the
        server reads.

        Raises:
            TokenError: ``kind`` is an int that is no ``ParticipantInfo.Kind`` value.
        """
        if isinstance(kind, int) and not isinstance(kind, bool):
            from lkproto.wire import pb

            try:
                kind = pb.ParticipantInfo.Kind.Name(kind).lower()  # type: ignore[arg-type]
            except ValueError as exc:
                raise TokenError(f"{kind} is not a ParticipantInfo.Kind value") from exc
        self.claims.kind = str(kind)
        return self

    def with_grants(self, grants: VideoGrants) -> AccessToken:
        """Set the room permissions (``video`` claim)."""
        self.claims.video = grants
        return self

    def with_sip_grants(self, grants: SIPGrants) -> AccessToken:
        """Set the SIP permissions (``sip`` claim)."""
        self.claims.sip = grants
        return self

    def with_ttl(self, ttl: timedelta) -> AccessToken:
        """Set how long the token stays valid from :meth:`to_jwt` on (default 6 hours)."""
        self.ttl = ttl
        return self

    def with_sha256(self, sha256: str) -> AccessToken:
        """Set the ``sha256`` claim (hash of a request body, used by webhooks)."""
        self.claims.sha256 = sha256
        return self

    def with_inference_grants(self, grants: InferenceGrants) -> AccessToken:
        """Set the inference permissions (``inference`` claim)."""
        self.claims.inference = grants
        return self

    def with_observability_grants(self, grants: ObservabilityGrants) -> AccessToken:
        """Set the observability permissions (``observability`` claim)."""
        self.claims.observability = grants
        return self

    def with_agent_grants(self, grants: AgentGrants) -> AccessToken:
        """Set the agent management permissions (``agent`` claim)."""
        self.claims.agent = grants
        return self

    def with_agent_endpoint_grants(self, grants: AgentEndpointGrants) -> AccessToken:
        """Set the agent endpoint permissions (``agentEndpoint`` claim)."""
        self.claims.agent_endpoint = grants
        return self

    def with_agent_thread_grants(self, grants: AgentThreadGrants) -> AccessToken:
        """Set the agent thread permissions (``agentThread`` claim)."""
        self.claims.agent_thread = grants
        return self

    def with_room_preset(self, preset: str) -> AccessToken:
        """Name a room preset the server applies when this token creates the room."""
        self.claims.room_preset = preset
        return self

    def with_room_config(self, config: RoomConfiguration) -> AccessToken:
        """Set the room configuration applied when this token's join creates the room.

        The usual use is agent dispatch from a token server::

            token.with_room_config(
                api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="helper")])
            )

        Args:
            config: a :class:`lkproto.api.RoomConfiguration` (a copy is kept).
        """
        copy = type(config)()
        copy.CopyFrom(config)
        self.claims.room_config = copy
        return self

    def to_jwt(self, *, now: float | None = None) -> str:
        """Sign the token.

        Args:
            now: Unix time the token becomes valid (``nbf``); defaults to the current time.

        Returns:
            The compact JWT (``header.payload.signature``).

        Raises:
            TokenError: the token grants ``room_join`` without an identity or a room, or the
                attributes are not a ``str`` to ``str`` mapping.
        """
        c = self.claims
        if c.video is not None and c.video.room_join and (not c.identity or not c.video.room):
            # PROTOCOL-MAP §13: a join needs both the identity and the room on the token.
            raise TokenError("identity and room must be set when room_join is granted")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in c.attributes.items()):
            raise TokenError("attributes must map str to str")
        issued = math.floor(time.time() if now is None else now)

        # Same claim order as livekit-api (its Claims dataclass, then sub/iss/nbf/exp), empty
        # values left out to keep the token small.
        payload: dict[str, object] = {}
        for key, value in (("name", c.name), ("kind", c.kind), ("metadata", c.metadata)):
            if value:
                payload[key] = value
        if c.video is not None:
            payload["video"] = _grants_to_json(c.video)
        for attr, claim, _cls in _EXTRA_GRANT_CLAIMS:
            grants = getattr(c, attr)
            if grants is not None:
                payload[claim] = _grants_to_json(grants)
        if c.attributes:
            payload["attributes"] = dict(c.attributes)
        if c.sha256:
            payload["sha256"] = c.sha256
        if c.room_preset:
            payload["roomPreset"] = c.room_preset
        if c.room_config is not None:
            payload["roomConfig"] = _room_config_to_json(c.room_config)
        payload["sub"] = c.identity
        payload["iss"] = self.api_key
        payload["nbf"] = issued
        payload["exp"] = math.floor(issued + self.ttl.total_seconds())

        body = _b64url_encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        signing_input = f"{_HEADER_SEGMENT}.{body}"
        return f"{signing_input}.{_sign(signing_input.encode('ascii'), self.api_secret)}"


class TokenVerifier:
    """Checks LiveKit access tokens the way the server does (PROTOCOL-MAP §13).

    Args:
        api_key: the expected issuer; defaults to ``$LIVEKIT_API_KEY``.
        api_secret: the HMAC secret; defaults to ``$LIVEKIT_API_SECRET``.
        leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        leeway: timedelta = DEFAULT_LEEWAY,
    ) -> None:
        self._credentials = _resolve_credentials(api_key, api_secret)
        self._leeway_s = leeway.total_seconds()

    def verify(
        self, token: str | bytes, *, verify_signature: bool = True, now: float | None = None
    ) -> Claims:
        """Verify a token and return its claims.

        With ``verify_signature=True`` (the default) the token must be an HS256 JWT signed with
        our secret, issued by our API key, carry an ``exp`` that has not passed, and its ``nbf``
        and ``iat`` (if present) must not lie in the future, each within the leeway. With
        ``verify_signature=False`` only the structure and the types of the claims are checked
        (no algorithm, signature, issuer or time checks), as in livekit-api.

        Args:
            token: the compact JWT.
            verify_signature: check algorithm, signature, issuer and validity period.
            now: Unix time to check the validity period against; defaults to the current time.

        Returns:
            The LiveKit claims of the token.

        Raises:
            TokenError: for any malformed, forged, foreign, expired or not-yet-valid token, and
                when verifying without an API key and secret. Nothing else is raised.
        """
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError as exc:
                raise TokenError("malformed token: not ASCII") from exc
        if not isinstance(token, str):
            raise TokenError(f"token must be str or bytes, not {type(token).__name__}")
        segments = token.split(".")
        if len(segments) != 3:
            raise TokenError(
                f"malformed token: expected 3 dot-separated segments, got {len(segments)}"
            )
        header_b64, payload_b64, signature_b64 = segments
        header = _json_object(_b64url_decode(header_b64, "header"), "header")
        payload = _json_object(_b64url_decode(payload_b64, "payload"), "payload")
        _b64url_decode(signature_b64, "signature")

        if verify_signature:
            self._check_signed(header, payload, f"{header_b64}.{payload_b64}", signature_b64)
            self._check_times(payload, time.time() if now is None else now)
        return _claims_from_payload(payload)

    def _check_signed(
        self,
        header: dict[str, object],
        payload: dict[str, object],
        signing_input: str,
        signature: str,
    ) -> None:
        if self._credentials is None:
            raise TokenError(
                "api_key and api_secret must be given or set in "
                "LIVEKIT_API_KEY / LIVEKIT_API_SECRET to verify a signature"
            )
        api_key, api_secret = self._credentials
        alg = header.get("alg")
        if alg != _ALGORITHM:
            # Refusing anything but HS256 closes the "alg: none" and RS/HS confusion attacks.
            raise TokenError(f"unsupported signing algorithm {alg!r}: only HS256 is accepted")
        issuer = payload.get("iss")
        if issuer != api_key:
            # The server resolves the secret from iss; a different key means a foreign token.
            raise TokenError(f"unknown API key: token issuer {issuer!r} is not {api_key!r}")
        expected = _sign(signing_input.encode("ascii"), api_secret)
        # Comparing the canonical encodings also rejects signatures that differ only in the
        # unused low bits of the last base64url character.
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            raise TokenError("invalid signature")

    def _check_times(self, payload: dict[str, object], now: float) -> None:
        exp = _numeric_date(payload, "exp")
        if exp is None:
            # livekit/protocol#1706: a signed token without exp would be valid forever.
            raise TokenError("token has no expiry (exp)")
        if exp <= now - self._leeway_s:
            raise TokenError("token has expired")
        nbf = _numeric_date(payload, "nbf")
        if nbf is not None and nbf > now + self._leeway_s:
            raise TokenError("token is not yet valid (nbf)")
        iat = _numeric_date(payload, "iat")
        if iat is not None and iat > now + self._leeway_s:
            raise TokenError("token is issued in the future (iat)")


def _numeric_date(payload: dict[str, object], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    # RFC 7519 §2 NumericDate: a JSON number (bool is an int subclass in Python, not a number).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"claim {claim!r} must be a finite number")
    # Python compares int and float exactly, so huge integers need no conversion.
    return value


def _str_claim(payload: dict[str, object], claim: str) -> str:
    value = payload.get(claim)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TokenError(f"claim {claim!r} must be a string")
    return value


def _claims_from_payload(payload: dict[str, object]) -> Claims:
    attributes_raw = payload.get("attributes")
    attributes: dict[str, str] = {}
    if attributes_raw is not None:
        if not isinstance(attributes_raw, dict) or not all(
            isinstance(v, str) for v in attributes_raw.values()
        ):
            raise TokenError("claim 'attributes' must map strings to strings")
        attributes = dict(attributes_raw)
    video_raw = payload.get("video")
    extra: dict[str, object] = {}
    for attr, claim, cls in _EXTRA_GRANT_CLAIMS:
        raw = payload.get(claim)
        extra[attr] = None if raw is None else _grants_from_json(cls, raw, claim)
    room_config_raw = payload.get("roomConfig")
    return Claims(
        # PROTOCOL-MAP §13: the server takes the identity from jti when sub is empty.
        identity=_str_claim(payload, "sub") or _str_claim(payload, "jti"),
        name=_str_claim(payload, "name"),
        kind=_str_claim(payload, "kind"),
        metadata=_str_claim(payload, "metadata"),
        video=None if video_raw is None else _grants_from_json(VideoGrants, video_raw, "video"),
        attributes=attributes,
        sha256=_str_claim(payload, "sha256"),
        room_preset=_str_claim(payload, "roomPreset"),
        room_config=None if room_config_raw is None else _room_config_from_json(room_config_raw),
        **extra,  # type: ignore[arg-type]
    )


def _room_config_to_json(config: RoomConfiguration) -> dict[str, object]:
    # protobuf is imported only when a token carries a room configuration, so minting plain
    # tokens needs the standard library alone. protojson with lowerCamel names, as the server
    # reads the claim (P:auth/grants.go, ClaimGrants.RoomConfig) and livekit-api writes it.
    from google.protobuf import json_format

    return json_format.MessageToDict(config)


def _room_config_from_json(raw: object) -> RoomConfiguration:
    from google.protobuf import json_format

    from lkproto.wire.api import RoomConfiguration

    if not isinstance(raw, dict):
        raise TokenError("claim 'roomConfig' must be a JSON object")
    try:
        # A newer server's fields are skipped rather than refused, as for the grant claims.
        return json_format.ParseDict(raw, RoomConfiguration(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise TokenError(f"claim 'roomConfig' is not a RoomConfiguration: {exc}") from exc
