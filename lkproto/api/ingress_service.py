"""IngressService: RTMP/WHIP/URL ingress endpoints (livekit-api's method set and messages).

The server forwards ingress calls to an ingress service; a server configured without one
answers with its own error (``ingress not connected (redis required)``), raised as
:class:`~lkproto.api.ServerError`.
"""

from __future__ import annotations

from typing import Final

from lkproto.api._service import Service
from lkproto.api.access_token import VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.wire import api as apipb

__all__ = ["SVC", "IngressService"]

SVC: Final = "Ingress"
"""Twirp service name (``/twirp/livekit.Ingress/<Method>``)."""


def _ingress_admin() -> VideoGrants:
    # Every Ingress call needs video.ingressAdmin
    # (S:pkg/service/auth.go, EnsureIngressAdminPermission).
    return VideoGrants(ingress_admin=True)


class IngressService(Service):
    """Create, update, list and delete ingress (``LiveKitAPI().ingress``).

    Raises (every method):
        ServerError: the server's Twirp error, or ``unavailable`` with status 0.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    async def create_ingress(self, create: apipb.CreateIngressRequest) -> apipb.IngressInfo:
        """Create an ingress endpoint publishing into a room."""
        return await self._call("CreateIngress", create, apipb.IngressInfo, _ingress_admin())

    async def update_ingress(self, update: apipb.UpdateIngressRequest) -> apipb.IngressInfo:
        """Change an ingress endpoint."""
        return await self._call("UpdateIngress", update, apipb.IngressInfo, _ingress_admin())

    async def list_ingress(
        self,
        list: apipb.ListIngressRequest,
    ) -> apipb.ListIngressResponse:
        """List ingress endpoints, by room or by id."""
        return await self._call("ListIngress", list, apipb.ListIngressResponse, _ingress_admin())

    async def delete_ingress(self, delete: apipb.DeleteIngressRequest) -> apipb.IngressInfo:
        """Delete an ingress endpoint."""
        return await self._call("DeleteIngress", delete, apipb.IngressInfo, _ingress_admin())
