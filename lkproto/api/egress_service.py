"""EgressService: the management calls of recording/streaming egress (livekit-api's shape).

The server forwards egress calls to an egress worker over its message bus; a server without one
answers with its own error, raised as :class:`~lkproto.api.ServerError`. The ``start_*`` calls
are refused: their requests carry the output descriptions (files, segments, streams, images,
storage back ends), which lkproto's schema does not define.
"""

from __future__ import annotations

from typing import Final

from lkproto.api._service import Service, unsupported_method
from lkproto.api.access_token import VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.wire import api as apipb

__all__ = ["SVC", "EgressService"]

SVC: Final = "Egress"
"""Twirp service name (``/twirp/livekit.Egress/<Method>``)."""

_NO_OUTPUTS: Final = (
    "lkproto's schema lacks the egress outputs (file, segments, stream, images, storage)"
)


def _record() -> VideoGrants:
    # Every Egress call needs video.roomRecord (S:pkg/service/auth.go, EnsureRecordPermission).
    return VideoGrants(room_record=True)


class EgressService(Service):
    """List, update and stop egress (``LiveKitAPI().egress``).

    Raises (every method):
        ServerError: the server's Twirp error, or ``unavailable`` with status 0.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    start_room_composite_egress = unsupported_method(
        "EgressService.start_room_composite_egress", _NO_OUTPUTS
    )
    start_web_egress = unsupported_method("EgressService.start_web_egress", _NO_OUTPUTS)
    start_participant_egress = unsupported_method(
        "EgressService.start_participant_egress", _NO_OUTPUTS
    )
    start_track_composite_egress = unsupported_method(
        "EgressService.start_track_composite_egress", _NO_OUTPUTS
    )
    start_track_egress = unsupported_method("EgressService.start_track_egress", _NO_OUTPUTS)
    start_egress = unsupported_method("EgressService.start_egress", _NO_OUTPUTS)

    async def update_layout(self, update: apipb.UpdateLayoutRequest) -> apipb.EgressInfo:
        """Change the layout of a running room composite egress."""
        return await self._call("UpdateLayout", update, apipb.EgressInfo, _record())

    async def update_stream(self, update: apipb.UpdateStreamRequest) -> apipb.EgressInfo:
        """Add or remove stream output URLs of a running egress."""
        return await self._call("UpdateStream", update, apipb.EgressInfo, _record())

    async def list_egress(
        self,
        list: apipb.ListEgressRequest,
    ) -> apipb.ListEgressResponse:
        """List egress, by room, by id, or only active ones."""
        return await self._call("ListEgress", list, apipb.ListEgressResponse, _record())

    async def stop_egress(self, stop: apipb.StopEgressRequest) -> apipb.EgressInfo:
        """Stop an egress."""
        return await self._call("StopEgress", stop, apipb.EgressInfo, _record())
