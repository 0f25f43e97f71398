"""Server-side API: access tokens and a RoomService client, shaped like PyPI ``livekit-api``.

Only the standard library and protobuf are used. :class:`RoomServiceClient` is imported lazily
so that minting or checking tokens does not load the generated protobuf modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lkproto.api.access_token import (
    DEFAULT_LEEWAY,
    DEFAULT_TTL,
    AccessToken,
    Claims,
    SIPGrants,
    TokenVerifier,
    VideoGrants,
)

if TYPE_CHECKING:
    from lkproto.api.room_service import RoomServiceClient

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_TTL",
    "AccessToken",
    "Claims",
    "RoomServiceClient",
    "SIPGrants",
    "TokenVerifier",
    "VideoGrants",
]


def __getattr__(name: str) -> object:
    if name == "RoomServiceClient":
        from lkproto.api.room_service import RoomServiceClient

        return RoomServiceClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
