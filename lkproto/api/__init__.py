"""Server-side API, call-compatible with PyPI ``livekit-api``: tokens, webhooks, ``LiveKitAPI``.

``from lkproto import api`` then, as with ``from livekit import api``::

    token = api.AccessToken(key, secret).with_identity("bob").with_grants(
        api.VideoGrants(room_join=True, room="lobby")
    ).with_room_config(
        api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="helper")])
    ).to_jwt()
    async with api.LiveKitAPI(url, key, secret) as lkapi:
        await lkapi.room.create_room(api.CreateRoomRequest(name="lobby"))

The protobuf messages (``api.CreateRoomRequest``, ``api.Room``, ``api.WebhookEvent``, ...) are
those of :mod:`lkproto.wire.api`, our own schema with livekit-protocol's names and numbers. They,
the services and the protobuf runtime load on first use: minting or checking tokens needs the
standard library only. Requests go through the standard library's HTTP client in a worker
thread (no aiohttp).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from lkproto.api._errors import (
    ServerError,
    ServerErrorCode,
    SipCallError,
    TwirpError,
    TwirpErrorCode,
)
from lkproto.api.access_token import (
    DEFAULT_LEEWAY,
    DEFAULT_TTL,
    AccessToken,
    AgentEndpointGrants,
    AgentGrants,
    AgentThreadGrants,
    Claims,
    InferenceGrants,
    ObservabilityGrants,
    SIPGrants,
    TokenVerifier,
    VideoGrants,
)

if TYPE_CHECKING:
    from lkproto.api import (
        agent_dispatch_service,
        egress_service,
        ingress_service,
        room_service,
        sip_service,
    )
    from lkproto.api.agent_dispatch_service import AgentDispatchService
    from lkproto.api.egress_service import EgressService
    from lkproto.api.ingress_service import IngressService
    from lkproto.api.livekit_api import LiveKitAPI
    from lkproto.api.room_service import RoomService, RoomServiceClient
    from lkproto.api.sip_service import SipService
    from lkproto.api.webhook import WebhookReceiver
    from lkproto.wire.api import *  # noqa: F403

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_TTL",
    "AccessToken",
    "AgentDispatchService",
    "AgentEndpointGrants",
    "AgentGrants",
    "AgentThreadGrants",
    "Claims",
    "EgressService",
    "InferenceGrants",
    "IngressService",
    "LiveKitAPI",
    "ObservabilityGrants",
    "RoomService",
    "RoomServiceClient",
    "SIPGrants",
    "ServerError",
    "ServerErrorCode",
    "SipCallError",
    "SipService",
    "TokenVerifier",
    "TwirpError",
    "TwirpErrorCode",
    "VideoGrants",
    "WebhookReceiver",
    "agent_dispatch_service",
    "egress_service",
    "ingress_service",
    "room_service",
    "sip_service",
]

# Name -> module for what loads on first use (each pulls in protobuf and generated code).
_LAZY: Final = {
    "AgentDispatchService": "lkproto.api.agent_dispatch_service",
    "EgressService": "lkproto.api.egress_service",
    "IngressService": "lkproto.api.ingress_service",
    "LiveKitAPI": "lkproto.api.livekit_api",
    "RoomService": "lkproto.api.room_service",
    "RoomServiceClient": "lkproto.api.room_service",
    "SipService": "lkproto.api.sip_service",
    "WebhookReceiver": "lkproto.api.webhook",
}
_SUBMODULES: Final = frozenset(
    {"agent_dispatch_service", "egress_service", "ingress_service", "room_service", "sip_service"}
)


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    if not name.startswith("_"):
        # Every protobuf message, enum and enum value, as livekit-api re-exports
        # livekit.protocol's (CreateRoomRequest, RoomConfiguration, WebhookEvent, ...).
        messages = importlib.import_module("lkproto.wire.api")
        if name in messages.__all__:
            return getattr(messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    messages = importlib.import_module("lkproto.wire.api")
    return sorted(set(globals()) | set(__all__) | set(messages.__all__))
