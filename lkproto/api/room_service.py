"""The server's RoomService: :class:`RoomService` (livekit-api's) and :class:`RoomServiceClient`.

:class:`RoomService` is what ``LiveKitAPI().room`` returns: its methods take and return the same
protobuf messages as livekit-api's (``api.CreateRoomRequest(name=...)`` and so on, from
:mod:`lkproto.wire.api`), sent as Twirp protobuf. :class:`RoomServiceClient`, described below, is
lkproto's older convenience client with plain arguments (Twirp over JSON).

Each call POSTs protojson to ``/twirp/livekit.RoomService/<Method>`` with a freshly minted,
short-lived bearer token that carries exactly the grant the method needs (PROTOCOL-MAP §17,
"RoomService over Twirp"). The HTTP exchange runs in a worker thread through ``urllib``, so only
the standard library and protobuf are needed.

Errors:
    * a Twirp error answer raises :class:`~lkproto.errors.ApiError` with the HTTP status and the
      Twirp ``code``/``msg`` (e.g. ``not_found`` 404, ``unauthenticated`` 401);
    * no answer at all (connection refused, DNS/TLS failure, timeout) raises
      :class:`~lkproto.errors.ApiError` with ``status == 0`` and ``code == "unavailable"``;
    * a 200 answer that is not the expected message raises :class:`~lkproto.errors.DecodeError`;
    * credentials missing at construction raise :class:`~lkproto.errors.TokenError`; a bad URL or
      a call on a closed client raises :class:`~lkproto.errors.LocalProtocolError`.

Example::

    async with RoomServiceClient("ws://127.0.0.1:7880", "devkey", "secret") as rooms:
        room = await rooms.create_room("lobby", empty_timeout=60)
        print([r.name for r in await rooms.list_rooms()])
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Final, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from lkproto.api._http import post_json, twirp_error
from lkproto.api._service import Service
from lkproto.api.access_token import AccessToken, VideoGrants
from lkproto.api.twirp_client import TwirpClient, http_base_url
from lkproto.errors import DecodeError, LocalProtocolError
from lkproto.wire import api as apipb
from lkproto.wire import pb

__all__ = ["API_TOKEN_TTL", "DEFAULT_TIMEOUT_S", "SVC", "RoomService", "RoomServiceClient"]

DEFAULT_TIMEOUT_S: Final = 10.0
"""Default per-request timeout in seconds."""

API_TOKEN_TTL: Final = timedelta(minutes=10)
"""Validity of the bearer token minted for each call; it is used once, right away."""

SVC: Final = "RoomService"
"""Twirp service name (``/twirp/livekit.RoomService/<Method>``)."""

_SERVICE_PATH: Final = "/twirp/livekit.RoomService/"
# PROTOCOL-MAP §17 (RoomService, SendData): the nonce is absent or 16 bytes; the server uses it
# to drop duplicate requests.
_NONCE_BYTES: Final = 16

_MessageT = TypeVar("_MessageT", bound=Message)


def _parse(message: _MessageT, raw: object) -> _MessageT:
    if not isinstance(raw, dict):
        raise DecodeError(message.DESCRIPTOR.name, "expected a JSON object")
    try:
        # Unknown fields are tolerated: the server may be newer than our schema.
        return json_format.ParseDict(raw, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise DecodeError(message.DESCRIPTOR.name, str(exc)) from exc


def _parse_list(
    message_type: type[_MessageT], answer: dict[str, object], key: str
) -> list[_MessageT]:
    items = answer.get(key, [])
    if not isinstance(items, list):
        raise DecodeError(message_type.DESCRIPTOR.name, f"{key!r} is not a JSON array")
    return [_parse(message_type(), item) for item in items]


class RoomServiceClient:
    """Manage rooms and participants through the server's RoomService API.

    Method names and arguments follow livekit-api's ``RoomService`` but take plain arguments
    instead of request messages; results are ``lkproto.wire.pb`` messages.

    Args:
        url: server URL, ``ws://``/``wss://`` (as used to join) or ``http://``/``https://``.
        api_key: API key; defaults to ``$LIVEKIT_API_KEY``.
        api_secret: API secret; defaults to ``$LIVEKIT_API_SECRET``.
        timeout: seconds allowed for connecting and for each read of a request.

    Raises:
        TokenError: no API key or secret was given or found in the environment.
        LocalProtocolError: ``url`` is not a ws/wss/http/https URL.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._base_url = http_base_url(url)
        # Resolves the environment fallback and fails now rather than on the first call.
        probe = AccessToken(api_key, api_secret)
        self._api_key = probe.api_key
        self._api_secret = probe.api_secret
        self._timeout = timeout
        self._closed = False

    @property
    def url(self) -> str:
        """The HTTP(S) base URL requests go to."""
        return self._base_url

    async def __aenter__(self) -> RoomServiceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; later calls raise :class:`~lkproto.errors.LocalProtocolError`.

        No connection is kept between calls, so there is nothing to release.
        """
        self._closed = True

    async def create_room(
        self,
        name: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
        node_id: str = "",
    ) -> pb.Room:
        """Create a room, or update and return it if it exists (grant ``roomCreate``).

        Args:
            name: room name.
            empty_timeout: seconds an empty room is kept (0 = server default, 300 s).
            departure_timeout: seconds the room is kept after the last participant left
                (0 = server default, 20 s).
            max_participants: participant limit (0 = unlimited).
            metadata: room metadata.
            node_id: node that should host the room (multi-node deployments).

        Returns:
            The room.
        """
        answer = await self._call(
            "CreateRoom",
            {
                "name": name,
                "empty_timeout": empty_timeout,
                "departure_timeout": departure_timeout,
                "max_participants": max_participants,
                "metadata": metadata,
                "node_id": node_id,
            },
            VideoGrants(room_create=True),
        )
        return _parse(pb.Room(), answer)

    async def list_rooms(self, names: Sequence[str] | None = None) -> list[pb.Room]:
        """List active rooms (grant ``roomList``).

        Args:
            names: only these rooms; ``None`` or empty lists all.

        Returns:
            The rooms.
        """
        request: dict[str, object] = {"names": list(names)} if names else {}
        answer = await self._call("ListRooms", request, VideoGrants(room_list=True))
        return _parse_list(pb.Room, answer, "rooms")

    async def delete_room(self, name: str) -> None:
        """Delete a room and disconnect everyone in it (grant ``roomCreate``).

        Raises:
            ApiError: ``not_found`` if the room does not exist.
        """
        await self._call("DeleteRoom", {"room": name}, VideoGrants(room_create=True))

    async def update_room_metadata(self, room: str, metadata: str) -> pb.Room:
        """Replace a room's metadata (grant ``roomAdmin`` on ``room``).

        Returns:
            The room once the update has been applied.

        Raises:
            ApiError: ``not_found`` if the room does not exist.
        """
        answer = await self._call(
            "UpdateRoomMetadata", {"room": room, "metadata": metadata}, _admin(room)
        )
        return _parse(pb.Room(), answer)

    async def list_participants(self, room: str) -> list[pb.ParticipantInfo]:
        """List the participants of a room (grant ``roomAdmin`` on ``room``)."""
        answer = await self._call("ListParticipants", {"room": room}, _admin(room))
        return _parse_list(pb.ParticipantInfo, answer, "participants")

    async def get_participant(self, room: str, identity: str) -> pb.ParticipantInfo:
        """Look up one participant (grant ``roomAdmin`` on ``room``).

        Raises:
            ApiError: ``not_found`` if the room or the participant does not exist.
        """
        answer = await self._call(
            "GetParticipant", {"room": room, "identity": identity}, _admin(room)
        )
        return _parse(pb.ParticipantInfo(), answer)

    async def remove_participant(self, room: str, identity: str) -> None:
        """Disconnect a participant (grant ``roomAdmin`` on ``room``).

        Raises:
            ApiError: ``not_found`` if the participant is not in the room.
        """
        await self._call("RemoveParticipant", {"room": room, "identity": identity}, _admin(room))

    async def update_participant(
        self,
        room: str,
        identity: str,
        *,
        metadata: str | None = None,
        name: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> pb.ParticipantInfo:
        """Change a participant's metadata, name or attributes (grant ``roomAdmin`` on ``room``).

        Args:
            room: room name.
            identity: participant identity.
            metadata: new metadata; ``None`` leaves it unchanged.
            name: new display name; ``None`` leaves it unchanged.
            attributes: attributes to set; an empty value deletes that key (PROTOCOL-MAP §17).

        Returns:
            The updated participant.
        """
        request: dict[str, object] = {"room": room, "identity": identity}
        if metadata is not None:
            request["metadata"] = metadata
        if name is not None:
            request["name"] = name
        if attributes is not None:
            request["attributes"] = dict(attributes)
        answer = await self._call("UpdateParticipant", request, _admin(room))
        return _parse(pb.ParticipantInfo(), answer)

    async def mute_published_track(
        self, room: str, identity: str, track_sid: str, muted: bool
    ) -> pb.TrackInfo:
        """Mute or unmute a participant's published track (grant ``roomAdmin`` on ``room``).

        Unmuting is refused with ``failed_precondition`` unless the server enables
        ``room.enable_remote_unmute``.

        Returns:
            The track after the change.
        """
        answer = await self._call(
            "MutePublishedTrack",
            {"room": room, "identity": identity, "track_sid": track_sid, "muted": muted},
            _admin(room),
        )
        return _parse(pb.TrackInfo(), answer.get("track", {}))

    async def send_data(
        self,
        room: str,
        data: bytes,
        *,
        reliable: bool = True,
        destination_identities: Sequence[str] = (),
        topic: str | None = None,
    ) -> None:
        """Send a user data packet to participants (grant ``roomAdmin`` on ``room``).

        Clients receive it as ``DataPacket.user`` from the server.

        Args:
            room: room name.
            data: the payload.
            reliable: use the reliable channel; otherwise lossy.
            destination_identities: recipients; empty sends to everyone.
            topic: optional topic.
        """
        request: dict[str, object] = {
            "room": room,
            "data": base64.b64encode(data).decode("ascii"),
            "kind": "RELIABLE" if reliable else "LOSSY",
            "destination_identities": list(destination_identities),
            # A fresh nonce lets the server drop duplicates of this request.
            "nonce": base64.b64encode(os.urandom(_NONCE_BYTES)).decode("ascii"),
        }
        if topic is not None:
            request["topic"] = topic
        await self._call("SendData", request, _admin(room))

    async def _call(
        self, method: str, request: dict[str, object], grants: VideoGrants
    ) -> dict[str, object]:
        if self._closed:
            raise LocalProtocolError("RoomServiceClient is closed")
        token = (
            AccessToken(self._api_key, self._api_secret)
            .with_grants(grants)
            .with_ttl(API_TOKEN_TTL)
            .to_jwt()
        )
        status, body = await asyncio.to_thread(
            post_json,
            self._base_url + _SERVICE_PATH + method,
            json.dumps(request).encode("utf-8"),
            {"Authorization": f"Bearer {token}"},
            self._timeout,
        )
        if status != 200:
            raise twirp_error(status, body)
        try:
            answer = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise DecodeError(f"{method} response", "body is not JSON") from exc
        if not isinstance(answer, dict):
            raise DecodeError(f"{method} response", "body is not a JSON object")
        return answer


def _admin(room: str, destination_room: str | None = None) -> VideoGrants:
    # PROTOCOL-MAP §17 ("RoomService over Twirp", Grants): admin(room) = roomAdmin together with
    # the same room name; moving or forwarding also needs the destination named on the token.
    return VideoGrants(room_admin=True, room=room, destination_room=destination_room)


class RoomService(Service):
    """Rooms and participants (``LiveKitAPI().room``), livekit-api's ``RoomService``.

    Every method takes the request message livekit-api's method takes and returns the same
    response message. Each call is signed with a token carrying the grant the server checks
    (PROTOCOL-MAP §17, "RoomService over Twirp", Grants): ``roomCreate``, ``roomList`` or
    ``roomAdmin`` on the request's room (plus ``destinationRoom`` for moves and forwards).

    Raises (every method):
        ServerError: the server's Twirp error (``not_found``, ``permission_denied``, ...), or
            ``unavailable`` with status 0 when it could not be reached.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    async def create_room(self, create: apipb.CreateRoomRequest) -> pb.Room:
        """Create a room, or return it if it exists; agents listed in it are dispatched."""
        return await self._call("CreateRoom", create, pb.Room, VideoGrants(room_create=True))

    async def list_rooms(self, list: apipb.ListRoomsRequest) -> apipb.ListRoomsResponse:
        """List active rooms (all, or those named in the request)."""
        return await self._call(
            "ListRooms", list, apipb.ListRoomsResponse, VideoGrants(room_list=True)
        )

    async def delete_room(self, delete: apipb.DeleteRoomRequest) -> apipb.DeleteRoomResponse:
        """Close a room and disconnect everyone in it."""
        return await self._call(
            "DeleteRoom", delete, apipb.DeleteRoomResponse, VideoGrants(room_create=True)
        )

    async def update_room_metadata(self, update: apipb.UpdateRoomMetadataRequest) -> pb.Room:
        """Replace a room's metadata; participants get a room update."""
        return await self._call("UpdateRoomMetadata", update, pb.Room, _admin(update.room))

    async def list_participants(
        self,
        list: apipb.ListParticipantsRequest,
    ) -> apipb.ListParticipantsResponse:
        """List the participants of a room."""
        return await self._call(
            "ListParticipants", list, apipb.ListParticipantsResponse, _admin(list.room)
        )

    async def get_participant(self, get: apipb.RoomParticipantIdentity) -> pb.ParticipantInfo:
        """Look up one participant by identity."""
        return await self._call("GetParticipant", get, pb.ParticipantInfo, _admin(get.room))

    async def remove_participant(
        self, remove: apipb.RoomParticipantIdentity
    ) -> apipb.RemoveParticipantResponse:
        """Disconnect a participant from a room."""
        return await self._call(
            "RemoveParticipant", remove, apipb.RemoveParticipantResponse, _admin(remove.room)
        )

    async def forward_participant(self, forward: apipb.ForwardParticipantRequest) -> None:
        """Forward a participant and its tracks into another room as well (LiveKit Cloud only).

        A self-hosted server answers with its own error, raised as :class:`ServerError`.
        """
        await self._call(
            "ForwardParticipant",
            forward,
            apipb.ForwardParticipantResponse,
            _admin(forward.room, forward.destination_room),
        )

    async def move_participant(self, move: apipb.MoveParticipantRequest) -> None:
        """Move a participant and its tracks to another room (LiveKit Cloud only).

        A self-hosted server answers with its own error, raised as :class:`ServerError`.
        """
        await self._call(
            "MoveParticipant",
            move,
            apipb.MoveParticipantResponse,
            _admin(move.room, move.destination_room),
        )

    async def mute_published_track(
        self, update: apipb.MuteRoomTrackRequest
    ) -> apipb.MuteRoomTrackResponse:
        """Mute or unmute a participant's published track.

        Unmuting is refused (``failed_precondition``) unless the server enables remote unmute.
        """
        return await self._call(
            "MutePublishedTrack", update, apipb.MuteRoomTrackResponse, _admin(update.room)
        )

    async def update_participant(
        self, update: apipb.UpdateParticipantRequest
    ) -> pb.ParticipantInfo:
        """Change a participant's metadata, name, attributes or permissions."""
        return await self._call(
            "UpdateParticipant", update, pb.ParticipantInfo, _admin(update.room)
        )

    async def update_subscriptions(
        self, update: apipb.UpdateSubscriptionsRequest
    ) -> apipb.UpdateSubscriptionsResponse:
        """Subscribe a participant to tracks, or unsubscribe it from them."""
        return await self._call(
            "UpdateSubscriptions", update, apipb.UpdateSubscriptionsResponse, _admin(update.room)
        )

    async def send_data(self, send: apipb.SendDataRequest) -> apipb.SendDataResponse:
        """Send a user data packet to the room or to some of its participants.

        As livekit-api does, a request without a nonce gets 16 random bytes so the server can
        drop duplicates of it (PROTOCOL-MAP §17, SendData); the caller's message is not changed.
        """
        if not send.nonce:
            copy = apipb.SendDataRequest()
            copy.CopyFrom(send)
            copy.nonce = os.urandom(_NONCE_BYTES)
            send = copy
        return await self._call("SendData", send, apipb.SendDataResponse, _admin(send.room))

    async def perform_rpc(self, request: apipb.PerformRpcRequest) -> apipb.PerformRpcResponse:
        """Call an RPC method registered by a participant and return its answer.

        Not in livekit-api 1.2.2; the server (v1.9+) has the route, so it is offered here.
        """
        return await self._call(
            "PerformRpc", request, apipb.PerformRpcResponse, _admin(request.room)
        )
