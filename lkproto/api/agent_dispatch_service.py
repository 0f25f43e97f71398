"""AgentDispatchService: ask the server to send an agent to a room (livekit-api's shape).

Explicit dispatch reaches workers registered with an ``agent_name``; the server creates a job
per dispatch and reports it in :class:`~lkproto.wire.api.AgentDispatch` ``state.jobs``.
"""

from __future__ import annotations

from typing import Final

from lkproto.api._service import Service
from lkproto.api.access_token import VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.wire import api as apipb

__all__ = ["SVC", "AgentDispatchService"]

SVC: Final = "AgentDispatchService"
"""Twirp service name (``/twirp/livekit.AgentDispatchService/<Method>``)."""


def _admin(room: str) -> VideoGrants:
    # admin(room) on the dispatch's room, the grant livekit-api mints for every
    # AgentDispatchService call (checked in S:pkg/service/agent_dispatch_service.go), as for
    # RoomService participant calls (PROTOCOL-MAP §17, "RoomService over Twirp", Grants).
    return VideoGrants(room_admin=True, room=room)


class AgentDispatchService(Service):
    """Create, list and delete agent dispatches (``LiveKitAPI().agent_dispatch``).

    Raises (every method):
        ServerError: the server's Twirp error, or ``unavailable`` with status 0.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    async def create_dispatch(self, req: apipb.CreateAgentDispatchRequest) -> apipb.AgentDispatch:
        """Dispatch an agent (by ``agent_name``) to a room; the room is created if needed."""
        return await self._call("CreateDispatch", req, apipb.AgentDispatch, _admin(req.room))

    async def delete_dispatch(self, dispatch_id: str, room_name: str) -> apipb.AgentDispatch:
        """Delete a dispatch; returns it as it was."""
        return await self._call(
            "DeleteDispatch",
            apipb.DeleteAgentDispatchRequest(dispatch_id=dispatch_id, room=room_name),
            apipb.AgentDispatch,
            _admin(room_name),
        )

    async def list_dispatch(self, room_name: str) -> list[apipb.AgentDispatch]:
        """Every dispatch of a room, including those a token's room configuration made."""
        answer = await self._call(
            "ListDispatch",
            apipb.ListAgentDispatchRequest(room=room_name),
            apipb.ListAgentDispatchResponse,
            _admin(room_name),
        )
        return list(answer.agent_dispatches)

    async def get_dispatch(self, dispatch_id: str, room_name: str) -> apipb.AgentDispatch | None:
        """One dispatch by id, or ``None`` if the room has no such dispatch."""
        answer = await self._call(
            "ListDispatch",
            apipb.ListAgentDispatchRequest(dispatch_id=dispatch_id, room=room_name),
            apipb.ListAgentDispatchResponse,
            _admin(room_name),
        )
        return answer.agent_dispatches[0] if answer.agent_dispatches else None
