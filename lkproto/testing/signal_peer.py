"""An in-memory LiveKit signal server for tests: no network, no livekit-server.

:class:`SignalPeer` plays the server's side of the signalling protocol (PROTOCOL-MAP §1, §2, §9,
§10) for ``/rtc/v1`` (one peer connection) well enough for an :class:`lkproto.asyncio.engine.
Engine`, or a :class:`lkproto.rtc.Room`, to join, negotiate, publish, lose and regain its
connection, as aioquic tests a client against a server in memory. Pass :meth:`SignalPeer.connect`
as ``EngineOptions.transport_factory`` (``RoomOptions`` builds its EngineOptions in
``lkproto.rtc.room``).

What it does by itself:

* answers a join with a JoinResponse (room, participant ``PA_n``, no pings unless asked), a
  resume with a ReconnectResponse, or refuses the next resume with a ``leave`` as the first
  frame (:meth:`SignalPeer.refuse_next_resume`), or refuses the upgrade with an HTTP status
  (:meth:`SignalPeer.reject_next_join`);
* answers every offer with the same id, the SDP coming from a real aiortc peer in this process
  (:class:`lkproto.asyncio.peer.PeerConnection`, loopback ICE), so ICE, DTLS and the data
  channels really come up; data packets the client sends are decoded into
  :attr:`SignalPeer.data_packets`; answers can be held to script renegotiation races
  (:attr:`SignalPeer.hold_answers`, :meth:`SignalPeer.release_answers`);
* accepts AddTrackRequests (``TrackPublishedResponse`` with ``TR_n``), or refuses them, or stays
  silent (:attr:`SignalPeer.publish_mode`); answers metadata updates and pings.

What the test scripts: :meth:`SignalConnection.send` any SignalResponse,
:meth:`SignalConnection.send_raw` any bytes at all (truncated, mutated or replayed frames, as a
hostile server would), :meth:`SignalConnection.leave` with any action,
:meth:`SignalConnection.drop` the socket, and :meth:`SignalPeer.wait_for_request` what the client
sent (bounded by the caller's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

from lkproto.asyncio.peer import PeerConnection, PeerOptions
from lkproto.asyncio.signal import SignalClosed, Transport
from lkproto.errors import DecodeError, LkError, LocalProtocolError
from lkproto.wire import (
    decode_data_packet,
    decode_signal_request,
    encode_signal_response,
    pb,
    rejection_error,
    unwrap_join_request,
)

__all__ = ["PublishMode", "SignalConnection", "SignalPeer"]

_log = logging.getLogger("lkproto.testing.signal_peer")

PublishMode = Literal["accept", "ignore"] | str
"""``"accept"``: TrackPublishedResponse; ``"ignore"``: no answer at all; any other value is a
``RequestResponse.Reason`` name (``"NOT_ALLOWED"``, ``"UNSUPPORTED_TYPE"``) to refuse with."""

_LOOPBACK: Final = ("127.0.0.1",)


class _MemoryTransport:
    """The client's end of one in-memory signalling connection (a :class:`Transport`)."""

    def __init__(self, connection: SignalConnection) -> None:
        self._connection = connection

    async def send(self, data: bytes) -> None:
        if self._connection.closed:
            raise SignalClosed("signal socket closed: in-memory peer closed it")
        self._connection._to_server.put_nowait(bytes(data))

    async def recv(self) -> bytes | str:
        item = await self._connection._to_client.get()
        if item is None:
            self._connection._to_client.put_nowait(None)  # every later recv ends too
            raise SignalClosed(f"signal socket closed: {self._connection.close_reason}")
        return item

    async def close(self) -> None:
        self._connection._close("client closed")

    def abort(self) -> None:
        self._connection._close("client aborted")


@dataclass(eq=False)
class SignalConnection:
    """One signalling connection as the server saw it.

    Attributes:
        url: the URL the client opened.
        token: the bearer token it presented.
        join_request: the decoded ``join_request`` query value.
        resume: it was a resume (``JoinRequest.reconnect``).
        requests: every request received on it, in order.
    """

    url: str
    token: str
    join_request: pb.JoinRequest
    resume: bool
    requests: list[pb.SignalRequest] = field(default_factory=list)
    closed: bool = False
    close_reason: str = ""
    _to_client: asyncio.Queue[bytes | str | None] = field(default_factory=asyncio.Queue)
    _to_server: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def send(self, response: pb.SignalResponse) -> None:
        """Send one frame to the client (dropped silently once closed, as a dead socket would)."""
        if not self.closed:
            self._to_client.put_nowait(encode_signal_response(response))

    def send_raw(self, frame: bytes | bytearray | memoryview | str) -> None:
        """Send one frame exactly as given, valid or not (a hostile server; dropped once closed).

        ``str`` is a WebSocket text frame, which LiveKit never sends.
        """
        if not self.closed:
            self._to_client.put_nowait(frame if isinstance(frame, str) else bytes(frame))

    @property
    def unread(self) -> int:
        """Frames sent to the client that it has not read yet (its receive backlog)."""
        return self._to_client.qsize()

    def leave(
        self,
        action: pb.LeaveRequest.Action.ValueType,
        reason: pb.DisconnectReason.ValueType = pb.SERVER_SHUTDOWN,
        *,
        close: bool = True,
    ) -> None:
        """Send ``leave`` (PROTOCOL-MAP §1 LeaveRequest), then close the socket like the server."""
        self.send(pb.SignalResponse(leave=pb.LeaveRequest(action=action, reason=reason)))
        if close:
            self._close(f"server sent leave ({pb.LeaveRequest.Action.Name(action)})")

    def drop(self) -> None:
        """End the socket without a word, as a network failure would."""
        self._close("dropped by the in-memory peer")

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._to_client.put_nowait(None)
        self._to_server.put_nowait(None)


class SignalPeer:
    """A scripted LiveKit signal server in memory (see the module docstring).

    Args:
        room: the room name announced.
        identity: the participant identity announced.
        ping_interval_s: JoinResponse ``ping_interval`` (0: the client does not ping).
        ping_timeout_s: JoinResponse ``ping_timeout`` (0: no ping deadline).
        ice_addresses: where the server-side aiortc peer gathers host candidates.
    """

    def __init__(
        self,
        *,
        room: str = "lkproto-test",
        identity: str = "tester",
        ping_interval_s: int = 0,
        ping_timeout_s: int = 0,
        ice_addresses: tuple[str, ...] = _LOOPBACK,
    ) -> None:
        self.room = room
        self.identity = identity
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.ice_addresses = ice_addresses
        self.connections: list[SignalConnection] = []
        """Every connection opened, oldest first."""
        self.publish_mode: PublishMode = "accept"
        """How AddTrackRequests are answered."""
        self.hold_answers = False
        """Keep offers unanswered until :meth:`release_answers`."""
        self.answer_pings = True
        """Answer ``ping_req`` with ``pong_resp`` (False: let the client's ping deadline pass)."""
        self.held_offers: list[pb.SessionDescription] = []
        """Offers received while :attr:`hold_answers` was set, oldest first."""
        self.data_packets: list[tuple[str, pb.DataPacket]] = []
        """(channel label, packet) received on the server-side peer connection."""
        self.participant_sid = ""
        """The SID of the current session (changes on every fresh join)."""
        self.server_protocol = 0
        """``ServerInfo.protocol`` announced (0: no ServerInfo). From 1 to 14 the peer acts as a
        release that answers no successful request (v1.7.x, PROTOCOL-MAP §7): an update_metadata
        is answered by a ParticipantUpdate carrying our changed info (none if nothing changed)."""
        self._own = pb.ParticipantInfo()
        self._pc: PeerConnection | None = None
        self._sids = itertools.count(1)
        self._tracks = itertools.count(1)
        self._rejections: list[tuple[int, str]] = []
        self._refusals: list[tuple[pb.LeaveRequest.Action.ValueType, int]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._closed = False

    # ---------------------------------------------------------------- script

    @property
    def current(self) -> SignalConnection:
        """The newest connection.

        Raises:
            LocalProtocolError: nothing connected yet.
        """
        if not self.connections:
            raise LocalProtocolError("nothing connected to the signal peer yet")
        return self.connections[-1]

    @property
    def peer_connection(self) -> PeerConnection | None:
        """The server-side peer connection of the current session."""
        return self._pc

    def reject_next_join(self, status: int, body: str = "") -> None:
        """Refuse the next connection attempt at the upgrade with HTTP ``status``."""
        self._rejections.append((status, body))

    def refuse_next_resume(
        self,
        action: pb.LeaveRequest.Action.ValueType = pb.LeaveRequest.RECONNECT,
        reason: pb.DisconnectReason.ValueType = pb.STATE_MISMATCH,
    ) -> None:
        """Answer the next resume with ``leave`` as its first frame (PROTOCOL-MAP §10 step 5)."""
        self._refusals.append((action, reason))

    async def release_answers(self) -> None:
        """Answer the held offers, in order, and stop holding."""
        self.hold_answers = False
        held, self.held_offers = self.held_offers, []
        for offer in held:
            await self._answer(self.current, offer)

    def requests(self, kind: str) -> list[pb.SignalRequest]:
        """Every request of oneof member ``kind`` received so far, on any connection."""
        return [r for c in self.connections for r in c.requests if r.WhichOneof("message") == kind]

    async def wait_for_request(self, kind: str, count: int = 1) -> pb.SignalRequest:
        """Wait until ``count`` requests of ``kind`` arrived; returns the ``count``-th.

        Unbounded: wrap it in ``asyncio.timeout``.
        """
        await self.wait_until(lambda: len(self.requests(kind)) >= count)
        return self.requests(kind)[count - 1]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after something changed (unbounded, as above)."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        """Close every connection and the server-side peer connection."""
        self._closed = True
        for connection in self.connections:
            connection._close("signal peer closed")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pc is not None:
            await self._pc.close()
            self._pc = None

    # ---------------------------------------------------------------- the transport factory

    async def connect(self, url: str, token: str, timeout: float) -> Transport:  # noqa: ASYNC109
        """Open a connection: a :data:`lkproto.asyncio.signal.TransportFactory`.

        Raises:
            JoinRejectedError: :meth:`reject_next_join` was called, or a ``/rtc`` (v0) URL
                (404, as a server without v0 would answer; the peer speaks v1 only).
            LocalProtocolError: the peer was closed, or the URL has no valid join_request.
        """
        del timeout
        if self._closed:
            raise LocalProtocolError("the signal peer is closed")
        if self._rejections:
            status, body = self._rejections.pop(0)
            raise rejection_error(status, body)
        parts = urlsplit(url)
        if not parts.path.endswith("/rtc/v1"):
            raise rejection_error(404, "the in-memory signal peer speaks /rtc/v1 only")
        values = parse_qs(parts.query).get("join_request", [])
        try:
            join_request = unwrap_join_request(values[0]) if values else None
        except DecodeError as exc:
            raise LocalProtocolError(f"bad join_request: {exc}") from exc
        if join_request is None:
            raise LocalProtocolError("no join_request in the URL")
        connection = SignalConnection(
            url=url, token=token, join_request=join_request, resume=join_request.reconnect
        )
        self.connections.append(connection)
        transport = _MemoryTransport(connection)
        if connection.resume:
            await self._on_resume(connection)
        else:
            await self._on_join(connection)
        self._spawn(self._serve(connection))
        self._changed.set()
        return transport

    # ---------------------------------------------------------------- server behaviour

    async def _on_join(self, connection: SignalConnection) -> None:
        if self._pc is not None:
            await self._pc.close()
        self._pc = PeerConnection(
            PeerOptions(ice_addresses=self.ice_addresses), on_data=self._on_data
        )
        self.participant_sid = f"PA_{next(self._sids)}"
        join = pb.JoinResponse(
            room=pb.Room(sid="RM_memory", name=self.room),
            participant=pb.ParticipantInfo(
                sid=self.participant_sid, identity=self.identity, state=pb.ParticipantInfo.JOINED
            ),
            server_version="in-memory",
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_timeout_s,
        )
        if self.server_protocol:
            join.server_info.protocol = self.server_protocol
        self._own.CopyFrom(join.participant)
        connection.send(pb.SignalResponse(join=join))

    async def _on_resume(self, connection: SignalConnection) -> None:
        if self._refusals:
            action, reason = self._refusals.pop(0)
            connection.leave(action, reason)  # type: ignore[arg-type]
            return
        connection.send(pb.SignalResponse(reconnect=pb.ReconnectResponse()))

    async def _serve(self, connection: SignalConnection) -> None:
        while True:
            data = await connection._to_server.get()
            if data is None:
                self._changed.set()
                return
            try:
                request = decode_signal_request(data)
            except DecodeError as exc:
                _log.warning("= in-memory peer got a malformed request: %s", exc)
                continue
            connection.requests.append(request)
            try:
                await self._handle(connection, request)
            except LkError as exc:
                _log.warning("= in-memory peer could not handle %s: %s", request, exc)
            self._changed.set()

    async def _handle(self, connection: SignalConnection, request: pb.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "offer":
            if self.hold_answers:
                self.held_offers.append(request.offer)
            else:
                await self._answer(connection, request.offer)
        elif kind == "add_track":
            self._on_add_track(connection, request.add_track)
        elif kind == "update_metadata" and 0 < self.server_protocol < 15:
            self._echo_metadata(connection, request.update_metadata)
        elif kind == "update_metadata":
            rr = pb.RequestResponse(request_id=request.update_metadata.request_id)
            connection.send(pb.SignalResponse(request_response=rr))
        elif kind == "ping_req" and self.answer_pings:
            pong = pb.Pong(last_ping_timestamp=request.ping_req.timestamp)
            connection.send(pb.SignalResponse(pong_resp=pong))
        elif kind == "leave":
            connection._close("client left")

    async def _answer(self, connection: SignalConnection, offer: pb.SessionDescription) -> None:
        pc = self._pc
        if pc is None:
            return
        sdp = await pc.apply_offer(offer.sdp)
        answer = pb.SessionDescription(type="answer", sdp=sdp, id=offer.id)
        connection.send(pb.SignalResponse(answer=answer))

    def _on_add_track(self, connection: SignalConnection, request: pb.AddTrackRequest) -> None:
        mode = self.publish_mode
        if mode == "ignore":
            return
        if mode != "accept":
            rr = pb.RequestResponse(
                reason=pb.RequestResponse.Reason.Value(mode),
                message=f"in-memory peer refuses ({mode})",
                add_track=request,
            )
            connection.send(pb.SignalResponse(request_response=rr))
            return
        info = pb.TrackInfo(
            sid=f"TR_{next(self._tracks)}",
            type=request.type,
            name=request.name,
            muted=request.muted,
            source=request.source,
            width=request.width,
            height=request.height,
            stream=request.stream,
        )
        published = pb.TrackPublishedResponse(cid=request.cid, track=info)
        connection.send(pb.SignalResponse(track_published=published))

    def _echo_metadata(
        self, connection: SignalConnection, update: pb.UpdateParticipantMetadata
    ) -> None:
        # As livekit-server v1.7.2 (pkg/rtc/signalhandler.go, participant.go SetName/SetMetadata/
        # SetAttributes): apply, and broadcast our info only when something changed.
        before = self._own.SerializeToString(deterministic=True)
        if update.name:
            self._own.name = update.name
        if update.metadata:
            self._own.metadata = update.metadata
        for key, value in update.attributes.items():
            if value:
                self._own.attributes[key] = value
            else:
                self._own.attributes.pop(key, None)
        if self._own.SerializeToString(deterministic=True) == before:
            return
        self._own.version += 1
        own = pb.ParticipantInfo()
        own.CopyFrom(self._own)
        connection.send(pb.SignalResponse(update=pb.ParticipantUpdate(participants=[own])))

    def _on_data(self, label: str, data: bytes) -> None:
        with contextlib.suppress(DecodeError):
            self.data_packets.append((label, decode_data_packet(data)))
            self._changed.set()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
