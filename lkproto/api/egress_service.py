"""EgressService: recording and streaming rooms, participants, tracks and web pages.

livekit-api's method set and messages (the whole Egress schema is in ``api.proto``). The server
forwards egress calls to an egress worker over its message bus; a server without one answers
with its own error (``egress not connected (redis required)``), raised as
:class:`~lkproto.api.ServerError`.
"""

from __future__ import annotations

from typing import Final

from lkproto.api._service import Service
from lkproto.api.access_token import VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.wire import api as apipb

__all__ = ["SVC", "EgressService"]

SVC: Final = "Egress"
"""Twirp service name (``/twirp/livekit.Egress/<Method>``)."""


def _record() -> VideoGrants:
    # Every Egress call needs video.roomRecord (S:pkg/service/auth.go, EnsureRecordPermission).
    return VideoGrants(room_record=True)


class EgressService(Service):
    """Start, list, update and stop egress (``LiveKitAPI().egress``).

    Raises (every method):
        ServerError: the server's Twirp error, or ``unavailable`` with status 0.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    async def start_room_composite_egress(
        self, start: apipb.RoomCompositeEgressRequest
    ) -> apipb.EgressInfo:
        """Record or stream a whole room through a web layout."""
        return await self._call("StartRoomCompositeEgress", start, apipb.EgressInfo, _record())

    async def start_web_egress(self, start: apipb.WebEgressRequest) -> apipb.EgressInfo:
        """Record or stream any web page."""
        return await self._call("StartWebEgress", start, apipb.EgressInfo, _record())

    async def start_participant_egress(
        self, start: apipb.ParticipantEgressRequest
    ) -> apipb.EgressInfo:
        """Record or stream one participant's camera (or screen share) and microphone."""
        return await self._call("StartParticipantEgress", start, apipb.EgressInfo, _record())

    async def start_track_composite_egress(
        self, start: apipb.TrackCompositeEgressRequest
    ) -> apipb.EgressInfo:
        """Record or stream one audio and one video track together."""
        return await self._call("StartTrackCompositeEgress", start, apipb.EgressInfo, _record())

    async def start_track_egress(self, start: apipb.TrackEgressRequest) -> apipb.EgressInfo:
        """Export one track without transcoding, to a file or a WebSocket."""
        return await self._call("StartTrackEgress", start, apipb.EgressInfo, _record())

    async def start_egress(self, start: apipb.StartEgressRequest) -> apipb.EgressInfo:
        """Start an egress described by source, encoding and outputs (the unified request)."""
        return await self._call("StartEgress", start, apipb.EgressInfo, _record())

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
