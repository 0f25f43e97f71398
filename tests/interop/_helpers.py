"""Shared helpers for the interop tests that pit ``lkproto.rtc.Room`` against the official SDK.

Every wait is bounded and goes through :func:`lkproto.testing.scaled`, so
``LKPROTO_TEST_TIME_SCALE`` stretches them all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.api import AccessToken, RoomServiceClient, VideoGrants
from lkproto.testing import scaled

if TYPE_CHECKING:
    from lkproto.core.reconnect import ReconnectPolicy
    from lkproto.testing import LocalServer

__all__ = [
    "CONNECT_TIMEOUT_S",
    "LIFECYCLE_EVENTS",
    "RECONNECT_TIMEOUT_S",
    "ROSTER_TIMEOUT_S",
    "EventRecorder",
    "connect_official",
    "connect_ours",
    "disconnect_all",
    "lifecycle",
    "make_token",
    "official_options",
    "our_options",
    "room_service",
    "unique_room",
    "wait_for",
]

CONNECT_TIMEOUT_S = 20.0
# livekit-server batches participant updates about participants that publish nothing and sends
# them every 3 s (pkg/rtc/room.go subscriberUpdateInterval), so joins, leaves and metadata
# changes of these subscribe-only participants reach the others up to 3 s late.
ROSTER_TIMEOUT_S = 15.0
# A full reconnect walks the reconnect policy (0, 0.3, 1.2 s, ...) and then joins anew.
RECONNECT_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.05


def unique_room(prefix: str) -> str:
    """A room name no other test (or earlier run against the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_token(
    server: LocalServer,
    identity: str,
    room: str,
    *,
    name: str | None = None,
    metadata: str | None = None,
    attributes: dict[str, str] | None = None,
    kind: str | None = None,
    **grants: Any,
) -> str:
    """A join token for ``room`` signed with the server's key.

    Args:
        server: the server whose key signs the token.
        identity: participant identity.
        room: room name.
        name: display name.
        metadata: initial participant metadata.
        attributes: initial participant attributes.
        kind: participant kind claim (``"agent"``, ...).
        **grants: extra ``VideoGrants`` fields (``can_update_own_metadata=True``, ...).
    """
    token = AccessToken(server.api_key, server.api_secret).with_identity(identity)
    if name is not None:
        token = token.with_name(name)
    if metadata is not None:
        token = token.with_metadata(metadata)
    if attributes is not None:
        token = token.with_attributes(attributes)
    if kind is not None:
        token = token.with_kind(kind)
    return token.with_grants(VideoGrants(room_join=True, room=room, **grants)).to_jwt()


def room_service(server: LocalServer) -> RoomServiceClient:
    """A RoomService client with the server's key (server-side actions)."""
    return RoomServiceClient(server.url, server.api_key, server.api_secret)


def our_options(reconnect_policy: ReconnectPolicy | None = None) -> rtc.RoomOptions:
    """Loopback-only ICE (aioice skips 127.0.0.1 by default, PROTOCOL-MAP §17)."""
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        reconnect_policy=reconnect_policy,
    )


def official_options() -> lrtc.RoomOptions:
    """``ice_servers=[]`` makes the SDK take the server's list, which LocalServer points at an
    unused loopback STUN port, so nothing is sent towards public STUN servers."""
    return lrtc.RoomOptions(rtc_config=lrtc.RtcConfiguration(ice_servers=[]))


async def connect_ours(
    server: LocalServer,
    identity: str,
    room_name: str,
    *,
    room: rtc.Room | None = None,
    reconnect_policy: ReconnectPolicy | None = None,
    **token_args: Any,
) -> rtc.Room:
    """Connect an ``lkproto.rtc.Room`` (``room`` if given, to let callers register handlers
    before the join) as ``identity``; ``token_args`` go to :func:`make_token`."""
    room = room if room is not None else rtc.Room()
    token = make_token(server, identity, room_name, **token_args)
    await asyncio.wait_for(
        room.connect(server.url, token, our_options(reconnect_policy)),
        scaled(CONNECT_TIMEOUT_S),
    )
    return room


async def connect_official(
    server: LocalServer,
    identity: str,
    room_name: str,
    *,
    room: lrtc.Room | None = None,
    **token_args: Any,
) -> lrtc.Room:
    """Connect an official ``livekit.rtc.Room`` as ``identity``; see :func:`connect_ours`."""
    room = room if room is not None else lrtc.Room()
    token = make_token(server, identity, room_name, **token_args)
    await asyncio.wait_for(
        room.connect(server.url, token, official_options()), scaled(CONNECT_TIMEOUT_S)
    )
    return room


async def disconnect_all(*rooms: rtc.Room | lrtc.Room | None) -> None:
    """Disconnect every room, bounded; for ``finally`` blocks (never raises a timeout)."""
    for room in rooms:
        if room is None:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


async def wait_for(
    predicate: Callable[[], object], within: float = ROSTER_TIMEOUT_S, what: str = ""
) -> None:
    """Poll ``predicate`` until it is truthy; fail after ``scaled(within)`` seconds.

    Raises:
        AssertionError: the predicate stayed falsy (the message names ``what``).
    """

    async def poll() -> None:
        # Polling on purpose: the state lives in two SDKs' objects that signal nothing.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL_S)

    try:
        await asyncio.wait_for(poll(), scaled(within))
    except TimeoutError:
        raise AssertionError(
            f"timed out after {scaled(within):g} s waiting for {what or predicate!r}"
        ) from None


Event = tuple[str, tuple[Any, ...]]


class EventRecorder:
    """Records ``(name, args)`` for every listed event an emitter (ours or official) emits.

    Works with both ``lkproto.rtc.Room`` and ``livekit.rtc.Room``: the handler takes ``*args``,
    so both emitters pass every positional argument.
    """

    def __init__(self, emitter: Any, names: Iterable[str]) -> None:
        self.events: list[Event] = []
        self._emitter = emitter
        self._handlers: list[tuple[str, Callable[..., None]]] = []
        for name in names:
            handler = self._make_handler(name)
            emitter.on(name, handler)
            self._handlers.append((name, handler))

    def _make_handler(self, name: str) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            self.events.append((name, args))

        return handler

    def close(self) -> None:
        """Stop recording."""
        for name, handler in self._handlers:
            self._emitter.off(name, handler)
        self._handlers.clear()

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.events.clear()

    def names(self) -> list[str]:
        """Names of the recorded events, in order."""
        return [name for name, _ in self.events]

    def args_of(self, name: str) -> list[tuple[Any, ...]]:
        """Arguments of every recorded ``name`` event, in order."""
        return [args for n, args in self.events if n == name]

    def find(
        self, name: str, where: Callable[..., object] = lambda *_: True
    ) -> tuple[Any, ...] | None:
        """The arguments of the first ``name`` event whose args satisfy ``where``."""
        return next((args for args in self.args_of(name) if where(*args)), None)

    async def wait(
        self,
        name: str,
        where: Callable[..., object] = lambda *_: True,
        within: float = ROSTER_TIMEOUT_S,
    ) -> tuple[Any, ...]:
        """Wait for a ``name`` event whose args satisfy ``where`` (already recorded ones count)
        and return its arguments."""
        found: list[tuple[Any, ...]] = []

        def check() -> bool:
            args = self.find(name, where)
            if args is not None:
                found.append(args)
                return True
            return False

        await wait_for(check, within, what=f"event {name!r}; recorded {self.names()}")
        return found[0]


LIFECYCLE_EVENTS: tuple[str, ...] = (
    "connected",
    "connection_state_changed",
    "reconnecting",
    "reconnected",
    "disconnected",
)
"""Events whose order both SDKs define (ours and official, PROTOCOL-MAP §10)."""


def lifecycle(recorder: EventRecorder) -> list[tuple[str, tuple[int, ...]]]:
    """The recorded lifecycle events as ``(name, (int args...))``.

    Ours passes ``IntEnum`` members and the official SDK plain ints; ``int()`` makes them equal.
    """
    return [
        (name, tuple(int(a) for a in args))
        for name, args in recorder.events
        if name in LIFECYCLE_EVENTS
    ]
