"""``LiveKitAPI``: one object holding every server API service (livekit-api's entry point).

Example::

    async with api.LiveKitAPI("ws://127.0.0.1:7880", "devkey", "secret") as lkapi:
        room = await lkapi.room.create_room(api.CreateRoomRequest(name="lobby"))
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="helper", room="lobby")
        )
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import NoReturn, Protocol

from lkproto.api.agent_dispatch_service import AgentDispatchService
from lkproto.api.egress_service import EgressService
from lkproto.api.ingress_service import IngressService
from lkproto.api.room_service import RoomService
from lkproto.api.sip_service import SipService
from lkproto.api.twirp_client import DEFAULT_TIMEOUT_S, TwirpClient
from lkproto.errors import UnsupportedFeatureError

__all__ = ["LiveKitAPI"]


class _HasTotal(Protocol):
    # aiohttp.ClientTimeout's shape, so livekit-api callers' timeout objects work unchanged
    # without lkproto importing aiohttp.
    @property
    def total(self) -> float | None: ...


class LiveKitAPI:
    """Entry point to the server API: ``.room``, ``.agent_dispatch``, ``.egress``, ``.ingress``,
    ``.sip``.

    Args:
        url: server URL (``ws``/``wss``/``http``/``https``); defaults to ``$LIVEKIT_URL``.
        api_key: API key; defaults to ``$LIVEKIT_API_KEY``.
        api_secret: API secret; defaults to ``$LIVEKIT_API_SECRET``.
        token: a pre-signed token sent verbatim instead of minting one per call (defaults to
            ``$LIVEKIT_TOKEN`` when no key or secret is given).
        timeout: per-request timeout, seconds or an object with a ``total`` attribute in
            seconds (an ``aiohttp.ClientTimeout``); default 10 s.
        session: must be ``None``: lkproto does not use aiohttp (requests go through the
            standard library in a worker thread), so a caller's session cannot be honoured.
        failover: accepted for compatibility; lkproto never fails over to other regions
            (LiveKit Cloud region failover is not implemented), whatever the value.

    Raises:
        ValueError: no URL, or neither a token nor an API key and secret (livekit-api's type).
        UnsupportedFeatureError: a ``session`` was given.
        LocalProtocolError: the URL is not ws/wss/http/https, or the timeout is not positive.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        token: str | None = None,
        timeout: float | _HasTotal | None = None,
        session: object | None = None,
        failover: bool = True,
    ) -> None:
        if session is not None:
            raise UnsupportedFeatureError(
                "LiveKitAPI(session=)",
                "lkproto sends API requests with the standard library, not aiohttp; "
                "leave session unset (the client keeps no connection to close)",
            )
        url = url or os.environ.get("LIVEKIT_URL")
        # Environment credentials only when none were passed, so an ambient LIVEKIT_TOKEN never
        # overrides an explicit key/secret or the other way round (livekit-api's rule).
        if not token and not api_key and not api_secret:
            token = os.environ.get("LIVEKIT_TOKEN")
        if not token and not api_key and not api_secret:
            api_key = os.environ.get("LIVEKIT_API_KEY")
            api_secret = os.environ.get("LIVEKIT_API_SECRET")
        if not url:
            raise ValueError("url must be set")
        if not token and (not api_key or not api_secret):
            raise ValueError("either token, or api_key and api_secret, must be set")
        self._failover = failover
        self._client = TwirpClient(url, timeout=_timeout_seconds(timeout))
        key, secret = api_key or "", api_secret or ""
        self._room = RoomService(self._client, key, secret, token)
        self._agent_dispatch = AgentDispatchService(self._client, key, secret, token)
        self._egress = EgressService(self._client, key, secret, token)
        self._ingress = IngressService(self._client, key, secret, token)
        self._sip = SipService(self._client, key, secret, token)

    @classmethod
    def with_token(
        cls,
        token: str,
        url: str | None = None,
        *,
        timeout: float | _HasTotal | None = None,
        session: object | None = None,
        failover: bool = True,
    ) -> LiveKitAPI:
        """A client authenticated with a pre-signed token (no secret needed).

        The token must carry the grants of the calls made with it.
        """
        return cls(url, token=token, timeout=timeout, session=session, failover=failover)

    @property
    def room(self) -> RoomService:
        """Rooms and participants."""
        return self._room

    @property
    def agent_dispatch(self) -> AgentDispatchService:
        """Agent dispatches."""
        return self._agent_dispatch

    @property
    def egress(self) -> EgressService:
        """Egress management."""
        return self._egress

    @property
    def ingress(self) -> IngressService:
        """Ingress endpoints."""
        return self._ingress

    @property
    def sip(self) -> SipService:
        """SIP trunks and dispatch rules."""
        return self._sip

    @property
    def connector(self) -> NoReturn:
        """Not supported: livekit-api's WhatsApp/Twilio connector service (LiveKit Cloud).

        Raises:
            UnsupportedFeatureError: always, naming the reason, rather than an AttributeError.
        """
        raise UnsupportedFeatureError(
            "LiveKitAPI.connector",
            "the WhatsApp/Twilio connectors are LiveKit Cloud services whose messages are not "
            "in lkproto's schema",
        )

    async def aclose(self) -> None:
        """Close the client; later calls raise :class:`~lkproto.errors.LocalProtocolError`."""
        self._client.close()

    async def __aenter__(self) -> LiveKitAPI:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _timeout_seconds(timeout: float | _HasTotal | None) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(timeout, int | float):
        return float(timeout)
    total = timeout.total
    # aiohttp's ClientTimeout(total=None) means "no overall limit"; urllib needs one per read,
    # so the default applies.
    return DEFAULT_TIMEOUT_S if total is None else float(total)
