"""The base of every server API service: one Twirp client, credentials, per-call tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, NoReturn, TypeVar

from google.protobuf.message import Message

from lkproto.api.access_token import AccessToken, SIPGrants, VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.errors import UnsupportedFeatureError

__all__ = ["API_TOKEN_TTL", "Service", "unsupported_method", "unsupported_reason"]

API_TOKEN_TTL: Final = timedelta(minutes=10)
"""Validity of the bearer token minted for each call; it is used once, right away."""

_ResponseT = TypeVar("_ResponseT", bound=Message)


class Service:
    """Signs each call with a fresh token carrying exactly the grants the method needs.

    The grants per method are the server's (PROTOCOL-MAP §17, "RoomService over Twirp", Grants;
    S:pkg/service/auth.go, ``Ensure*Permission``), the same livekit-api mints. With a pre-signed
    ``token`` that token is sent as is and must carry the grants.

    Args:
        client: the shared Twirp client.
        service: the Twirp service name.
        api_key: API key (empty with ``token``).
        api_secret: API secret (empty with ``token``).
        token: a pre-signed token sent verbatim instead of minting one per call.
    """

    def __init__(
        self,
        client: TwirpClient,
        service: str,
        api_key: str,
        api_secret: str,
        token: str | None = None,
    ) -> None:
        self._client = client
        self._service = service
        self.api_key = api_key
        self.api_secret = api_secret
        self._token = token

    def _auth_header(
        self, grants: VideoGrants | None, sip: SIPGrants | None = None
    ) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        token = AccessToken(self.api_key, self.api_secret).with_ttl(API_TOKEN_TTL)
        if grants is not None:
            token.with_grants(grants)
        if sip is not None:
            token.with_sip_grants(sip)
        return {"Authorization": f"Bearer {token.to_jwt()}"}

    async def _call(
        self,
        method: str,
        request: Message,
        response_class: type[_ResponseT],
        grants: VideoGrants | None,
        sip: SIPGrants | None = None,
    ) -> _ResponseT:
        return await self._client.request(
            self._service, method, request, self._auth_header(grants, sip), response_class
        )


_UNSUPPORTED_ATTR: Final = "__lkproto_unsupported__"


def unsupported_method(feature: str, reason: str) -> Callable[..., Awaitable[NoReturn]]:
    """An async method that refuses with :class:`UnsupportedFeatureError`, for an official
    method whose messages lkproto's schema does not carry (STYLE rule 12: refuse, never ignore).

    The reason is kept on the function, so the compatibility table is generated from it.
    """

    async def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise UnsupportedFeatureError(feature, reason)

    refuse.__doc__ = f"Not supported: {reason}\n\nRaises:\n    UnsupportedFeatureError: always."
    setattr(refuse, _UNSUPPORTED_ATTR, reason)
    return refuse


def unsupported_reason(method: object) -> str | None:
    """The reason :func:`unsupported_method` recorded, or ``None`` for a working method."""
    reason = getattr(method, _UNSUPPORTED_ATTR, None)
    return reason if isinstance(reason, str) else None
