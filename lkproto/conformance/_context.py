"""What a scenario gets: the server, a fresh room, the client under test and lkproto peers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from lkproto.api import AccessToken, RoomServiceClient, VideoGrants
from lkproto.conformance._registry import Unsupported
from lkproto.conformance.adapters import Client, ClientFactory, PeerClient
from lkproto.testing import scaled
from lkproto.testing.cluster import PINNED_EMPTY_TIMEOUT_S

if TYPE_CHECKING:
    from lkproto.asyncio.engine import TraceCallback

__all__ = [
    "ROSTER_TIMEOUT_S",
    "ClusterControl",
    "ClusterTarget",
    "Context",
    "ServerTarget",
]

ROSTER_TIMEOUT_S: Final = 15.0
"""livekit-server batches updates about non-publishing participants every 3 s
(pkg/rtc/room.go subscriberUpdateInterval): roster changes may take that long to show."""

_POLL_S: Final = 0.05
_CLOSE_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ServerTarget:
    """A LiveKit server to run against: signalling URL and API key pair."""

    url: str
    api_key: str
    api_secret: str


class ClusterControl(Protocol):
    """What node-failure scenarios may do to a local cluster (a LocalCluster)."""

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``."""

    def restart_node(self, index: int) -> None:
        """Start node ``index`` again on its ports."""


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """The cluster lane (``--local-cluster``): nodes of one cluster sharing a key pair.

    Every run's room is pinned to ``host`` (RoomService ``CreateRoom`` with ``host_node_id``,
    upstream ``roomallocator.go`` ``SelectRoomNode``); the lkproto peers join through ``host``
    and the client under test through ``relay``, so its signalling is relayed between nodes.

    Attributes:
        host: the node hosting the rooms.
        relay: the node the client under test connects to.
        host_node_id: ``host``'s node id.
        spare: a node only node-failure scenarios connect through (and kill), so that the other
            runs of the lane, on ``relay``, are not disturbed; ``None`` when there is none.
        spare_index: the index of ``spare`` for ``control``.
        control: kills and restarts nodes (a local cluster only).
        fault_lock: node-failure scenarios hold it, one at a time.
    """

    host: ServerTarget
    relay: ServerTarget
    host_node_id: str
    spare: ServerTarget | None = None
    spare_index: int | None = None
    control: ClusterControl | None = None
    fault_lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)


class Context:
    """Everything one scenario run uses; everything it creates is closed after the run.

    Attributes:
        client_name: the adapter under test (``lkproto``, ``livekit-python``, ``livekit-js``).
        room: a room name no other run uses.
        server: the target server (in the cluster lane: the node the client under test uses).
        no_autocreate: a second server with ``room.auto_create: false``, if available.
        cluster: the cluster lane's nodes, or ``None``.
        peer_server: where the lkproto peers join (the cluster's host node, else ``server``).
    """

    def __init__(
        self,
        *,
        server: ServerTarget,
        client_name: str,
        factory: ClientFactory,
        scenario: str,
        no_autocreate: ServerTarget | None = None,
        cluster: ClusterTarget | None = None,
    ) -> None:
        self.server = server
        self.client_name = client_name
        self.no_autocreate = no_autocreate
        self.cluster = cluster
        self.peer_server = cluster.host if cluster is not None else server
        self.room = f"cf-{scenario.replace('.', '-')[:40]}-{uuid.uuid4().hex[:8]}"
        self.step = "start"
        self._factory = factory
        self._clients: list[Client] = []
        self._services: list[RoomServiceClient] = []

    # -- tokens and services ---------------------------------------------------------------------

    def token(
        self,
        identity: str,
        *,
        room: str | None = None,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        kind: str | None = None,
        ttl_s: float | None = None,
        issued_at: float | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        **grants: Any,
    ) -> str:
        """A join token for ``room`` (default: this run's room); ``grants`` are
        :class:`~lkproto.api.VideoGrants` fields (``room_join=True`` unless given)."""
        token = AccessToken(
            api_key or self.server.api_key, api_secret or self.server.api_secret
        ).with_identity(identity)
        if name is not None:
            token = token.with_name(name)
        if metadata is not None:
            token = token.with_metadata(metadata)
        if attributes is not None:
            token = token.with_attributes(attributes)
        if kind is not None:
            token = token.with_kind(kind)
        if ttl_s is not None:
            token = token.with_ttl(timedelta(seconds=ttl_s))
        grants.setdefault("room_join", True)
        token = token.with_grants(VideoGrants(room=room or self.room, **grants))
        return token.to_jwt(now=issued_at)

    def room_service(self) -> RoomServiceClient:
        """A RoomService client for the target server (closed after the run)."""
        service = RoomServiceClient(self.server.url, self.server.api_key, self.server.api_secret)
        self._services.append(service)
        return service

    # -- participants ----------------------------------------------------------------------------

    def new_client(self, identity: str = "client") -> Client:
        """An unconnected client of the adapter under test."""
        client = self._factory(identity)
        self._clients.append(client)
        return client

    async def client(
        self, identity: str = "client", *, single_pc: bool | None = None, **token_args: Any
    ) -> Client:
        """A connected client of the adapter under test (``token_args`` go to :meth:`token`)."""
        self.step = f"connect {self.client_name} client {identity!r}"
        client = self.new_client(identity)
        await client.connect(
            self.server.url, self.token(identity, **token_args), single_pc=single_pc
        )
        return client

    async def peer(
        self,
        identity: str = "peer",
        *,
        client_protocol: int | None = None,
        trace: TraceCallback | None = None,
        via: ServerTarget | None = None,
        **token_args: Any,
    ) -> PeerClient:
        """A connected lkproto peer (the known-good side), through ``via`` if given, else
        :attr:`peer_server`."""
        self.step = f"connect lkproto peer {identity!r}"
        peer = PeerClient(identity, client_protocol=client_protocol, trace=trace)
        self._clients.append(peer)
        url = (via or self.peer_server).url
        await peer.connect(url, self.token(identity, **token_args))
        return peer

    async def pair(
        self,
        *,
        client_args: dict[str, Any] | None = None,
        peer_args: dict[str, Any] | None = None,
    ) -> tuple[Client, PeerClient]:
        """The lkproto peer, then the client under test, once each sees the other (the peer
        sees the client ACTIVE, so the server delivers every packet to it, PROTOCOL-MAP §3)."""
        peer = await self.peer(**(peer_args or {}))
        client = await self.client(**(client_args or {}))
        await self.until_sees(client, peer)
        return client, peer

    async def until_sees(self, client: Client, *peers: PeerClient) -> None:
        """Wait until ``client`` lists every peer and every peer sees ``client`` ACTIVE."""
        for peer in peers:

            async def client_sees(peer: PeerClient = peer) -> bool:
                return peer.identity in await client.remotes()

            await self.until(client_sees, f"{client.identity} sees {peer.identity}")
            await self.until(
                lambda peer=peer: peer_sees_active(peer, client.identity),
                f"{peer.identity} sees {client.identity} ACTIVE",
            )

    # -- waiting ---------------------------------------------------------------------------------

    async def until(
        self,
        predicate: Callable[[], object] | Callable[[], Awaitable[object]],
        what: str,
        within: float = ROSTER_TIMEOUT_S,
    ) -> None:
        """Poll ``predicate`` (sync or async) until truthy.

        Raises:
            AssertionError: still falsy after ``scaled(within)`` seconds (names ``what``).
        """
        self.step = f"wait for {what}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(within)
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {scaled(within):g} s waiting for {what}")
            await asyncio.sleep(_POLL_S)

    async def settle(self, seconds: float = 0.5) -> None:
        """A quiet period (scaled) for stray packets or events to show up."""
        await asyncio.sleep(scaled(seconds))

    async def bounded(self, awaitable: Awaitable[Any], what: str, within: float = 20.0) -> Any:
        """Await with a named, scaled bound (a stuck call fails with ``what``)."""
        self.step = what
        try:
            return await asyncio.wait_for(awaitable, scaled(within))
        except TimeoutError:
            raise AssertionError(f"{what} did not finish in {scaled(within):g} s") from None

    async def pin_room(self) -> None:
        """Cluster lane: create this run's room on the host node (before anyone joins)."""
        cluster = self.cluster
        if cluster is None:
            return
        self.step = "pin the room to the host node"
        host = cluster.host
        service = RoomServiceClient(host.url, host.api_key, host.api_secret)
        self._services.append(service)
        # A room nobody has joined yet closes after its empty_timeout (10 s on the local nodes);
        # a join would then re-create it on any node, the spare included (seen: a node-failure
        # scenario waiting for the fault lock, whose kill then hit the room's own node). Once
        # participants have come and gone, the departure timeout closes it as usual.
        await self.bounded(
            service.create_room(
                self.room, node_id=cluster.host_node_id, empty_timeout=PINNED_EMPTY_TIMEOUT_S
            ),
            "CreateRoom on the host",
        )

    def require_cluster(self) -> ClusterTarget:
        """The cluster lane's nodes, or :class:`Unsupported`."""
        if self.cluster is None:
            raise Unsupported("needs a cluster (use --local-cluster)")
        return self.cluster

    def require_no_autocreate(self) -> ServerTarget:
        """The auto-create-disabled server, or :class:`Unsupported`."""
        if self.no_autocreate is None:
            raise Unsupported("needs a second server with room.auto_create=false (use --local)")
        return self.no_autocreate

    async def close(self) -> None:
        """Disconnect every participant (bounded) and close the services."""
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), scaled(_CLOSE_TIMEOUT_S))
        for service in self._services:
            with contextlib.suppress(Exception):
                await service.aclose()


_ACTIVE: Final = 2  # ParticipantInfo.State.ACTIVE (PROTOCOL-MAP §7)


def peer_sees_active(peer: PeerClient, identity: str) -> bool:
    """``peer`` sees ``identity`` in ACTIVE state."""
    remote = peer.room.remote_participants.get(identity) if peer.room is not None else None
    return remote is not None and int(remote.state) == _ACTIVE
