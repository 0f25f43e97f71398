"""RPC between lkproto and the official SDK, in both directions and both modes (PROTOCOL-MAP §6).

Every test runs twice: with lkproto advertising ``client_protocol`` 0
(``RoomOptions(client_protocol=0)``), where both SDKs talk RPC v1 (data packets, 15 360-byte
limits), and with its default 2, where both use RPC v2 (text streams); v1-only behaviour is marked.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from lkproto import rtc
from lkproto.core.rpc import RPC_ERROR_MESSAGES, RPC_MAX_PAYLOAD_BYTES, RpcErrorCode
from lkproto.errors import LkError
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop._data_helpers import DIRECTIONS, EVE, LK, Peer, data_room
from tests.interop._helpers import ROSTER_TIMEOUT_S, wait_for

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

# Every test runs in both RPC modes: lkproto advertising client_protocol 0 (both SDKs use v1
# packets with it) and 2 (both use v2 text streams). Tests of v1-only behaviour (the 15 360-byte
# payload limits, v1 request packets) carry the ``v1_only`` mark and run in v1 mode only.
# tests/interop/test_rpc_v2.py adds v2-only cases (100 KB payloads).
_MODES = {"v1": 0, "v2": 2}
_mode: dict[str, int] = {"client_protocol": 0}
v1_only = pytest.mark.v1_only


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rpc_mode" in metafunc.fixturenames:
        ids = ["v1"] if metafunc.definition.get_closest_marker("v1_only") else list(_MODES)
        metafunc.parametrize("rpc_mode", ids, indirect=True)


@pytest.fixture(autouse=True)
def rpc_mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    _mode["client_protocol"] = _MODES[mode]
    return mode


def data_room_v1(*args: Any, **kwargs: Any) -> Any:
    """``data_room`` with lkproto advertising the current mode's client_protocol."""
    return data_room(*args, client_protocol=_mode["client_protocol"], **kwargs)


pytestmark = pytest.mark.interop

# Upper bound for a call that should be answered at once (loopback).
CALL_TIMEOUT_S = 10.0
# Long enough that a call which must fail for another reason never reaches it.
LONG_RESPONSE_TIMEOUT_S = 60.0


async def _call(
    caller: Peer,
    callee: Peer,
    method: str,
    payload: str = "",
    *,
    response_timeout: float | None = None,
    within: float = CALL_TIMEOUT_S,
) -> str:
    kwargs: dict[str, Any] = {}
    if response_timeout is not None:
        kwargs["response_timeout"] = response_timeout
    result = await asyncio.wait_for(
        caller.local.perform_rpc(
            destination_identity=callee.identity, method=method, payload=payload, **kwargs
        ),
        scaled(within),
    )
    assert isinstance(result, str)
    return result


async def _call_error(
    caller: Peer,
    callee: Peer,
    method: str,
    payload: str = "",
    *,
    response_timeout: float | None = None,
    within: float = CALL_TIMEOUT_S,
) -> Any:
    """Perform a call that must fail; returns the caller SDK's ``RpcError``."""
    with pytest.raises(caller.rpc_error) as info:
        await _call(
            caller,
            callee,
            method,
            payload,
            response_timeout=response_timeout,
            within=within,
        )
    error = info.value
    if not caller.official:
        assert isinstance(error, LkError)
    return error


def _assert_built_in(error: Any, code: RpcErrorCode) -> None:
    """Both SDKs use the same built-in codes and messages."""
    assert (int(error.code), error.message) == (int(code), RPC_ERROR_MESSAGES[code])


# -- success ------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_successful_call_with_invocation_data(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room_v1(livekit_server, "rpc-ok") as room:
        caller, callee = room.pair(direction)
        seen: list[Any] = []

        async def greet(data: Any) -> str:
            seen.append(data)
            await asyncio.sleep(0)
            return f"hello {data.caller_identity}: {data.payload[::-1]}"

        callee.local.register_rpc_method("greet", greet)
        payload = '{"text": "héllo ✓ wörld"}'
        result = await _call(caller, callee, "greet", payload)
        assert result == f"hello {caller.identity}: {payload[::-1]}"
        assert len(seen) == 1
        data = seen[0]
        assert data.caller_identity == caller.identity
        assert data.payload == payload
        uuid.UUID(data.request_id)
        assert data.response_timeout > 0
        # An empty payload and an empty response are fine too.
        callee.local.register_rpc_method("empty", lambda _data: "")
        assert await _call(caller, callee, "empty", "") == ""


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_sync_handler(livekit_server: LocalServer, direction: tuple[str, str]) -> None:
    async with data_room_v1(livekit_server, "rpc-sync") as room:
        caller, callee = room.pair(direction)

        def upper(data: Any) -> str:
            return str(data.payload).upper()

        # Registered directly: the official SDK types the decorator form as a Union mypy cannot
        # call (the decorator form is covered by tests/interop/test_browser_lkproto.py).
        callee.local.register_rpc_method("upper", upper)

        assert await _call(caller, callee, "upper", "shout") == "SHOUT"


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_concurrent_calls_get_their_own_responses(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room_v1(livekit_server, "rpc-concurrent") as room:
        caller, callee = room.pair(direction)

        async def delayed_echo(data: Any) -> str:
            # Answer in reverse order of arrival.
            await asyncio.sleep(0.05 * (10 - int(data.payload)))
            return f"echo-{data.payload}"

        callee.local.register_rpc_method("echo", delayed_echo)
        results = await asyncio.gather(*(_call(caller, callee, "echo", str(i)) for i in range(10)))
        assert results == [f"echo-{i}" for i in range(10)]


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_application_error_with_data_reaches_the_caller(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room_v1(livekit_server, "rpc-app-error") as room:
        caller, callee = room.pair(direction)
        message = "insufficient fünds ✗"
        data = '{"balance": 3, "needed": 5}'

        def refuse(_data: Any) -> str:
            raise callee.make_rpc_error(2001, message, data)

        callee.local.register_rpc_method("withdraw", refuse)
        error = await _call_error(caller, callee, "withdraw", "5")
        assert (int(error.code), error.message, error.data) == (2001, message, data)

        # Without data the caller gets an empty/absent data field.
        def refuse_bare(_data: Any) -> str:
            raise callee.make_rpc_error(4242, "nope", "")

        callee.local.register_rpc_method("bare", refuse_bare)
        error = await _call_error(caller, callee, "bare")
        assert (int(error.code), error.message, error.data or "") == (4242, "nope", "")


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_handler_raising_a_plain_exception_is_an_application_error(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room_v1(livekit_server, "rpc-exception") as room:
        caller, callee = room.pair(direction)

        async def broken(_data: Any) -> str:
            raise ValueError("internal detail that must not leak")

        def broken_sync(_data: Any) -> str:
            raise KeyError("sync")

        callee.local.register_rpc_method("broken", broken)
        callee.local.register_rpc_method("broken_sync", broken_sync)
        for method in ("broken", "broken_sync"):
            error = await _call_error(caller, callee, method)
            _assert_built_in(error, RpcErrorCode.APPLICATION_ERROR)
            assert "internal detail" not in (error.data or "")
        # The callee still answers afterwards.
        callee.local.register_rpc_method("ok", lambda _data: "ok")
        assert await _call(caller, callee, "ok") == "ok"


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_unsupported_method(livekit_server: LocalServer, direction: tuple[str, str]) -> None:
    async with data_room_v1(livekit_server, "rpc-unsupported") as room:
        caller, callee = room.pair(direction)
        error = await _call_error(caller, callee, "does-not-exist", "x")
        _assert_built_in(error, RpcErrorCode.UNSUPPORTED_METHOD)


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_unregistered_method_is_unsupported_afterwards(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room_v1(livekit_server, "rpc-unregister") as room:
        caller, callee = room.pair(direction)
        callee.local.register_rpc_method("temp", lambda _data: "here")
        assert await _call(caller, callee, "temp") == "here"
        callee.local.unregister_rpc_method("temp")
        error = await _call_error(caller, callee, "temp")
        _assert_built_in(error, RpcErrorCode.UNSUPPORTED_METHOD)
        # Registering again works.
        callee.local.register_rpc_method("temp", lambda _data: "back")
        assert await _call(caller, callee, "temp") == "back"


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_response_timeout(livekit_server: LocalServer, direction: tuple[str, str]) -> None:
    """The callee's handler outlasts the caller's ``response_timeout`` (1 s): RESPONSE_TIMEOUT
    after about that long. The late answer is ignored and the pair still works.

    (Neither SDK clamps the caller's own wait: the official SDK's clamp only concerns the
    timeout it *tells* the callee, max(timeout - 7 s, 1 s); lkproto, like JS, tells
    max(timeout, 8 s).)
    """
    async with data_room_v1(livekit_server, "rpc-timeout") as room:
        caller, callee = room.pair(direction)
        release = asyncio.Event()
        invoked = asyncio.Event()

        async def slow(_data: Any) -> str:
            invoked.set()
            await release.wait()
            return "too late"

        callee.local.register_rpc_method("slow", slow)
        callee.local.register_rpc_method("fast", lambda _data: "fast")
        try:
            error = await _call_error(caller, callee, "slow", response_timeout=1.0)
            # The caller's own timer fired while the handler was still running.
            _assert_built_in(error, RpcErrorCode.RESPONSE_TIMEOUT)
            assert invoked.is_set()
            assert not release.is_set()
        finally:
            release.set()
        await asyncio.sleep(scaled(0.5))
        assert await _call(caller, callee, "fast") == "fast"


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_recipient_disconnected(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    """The callee leaves while the call is pending: RECIPIENT_DISCONNECTED, long before the
    response timeout."""
    async with data_room_v1(livekit_server, "rpc-gone") as room:
        caller, callee = room.pair(direction)
        invoked = asyncio.Event()
        release = asyncio.Event()

        async def hang(_data: Any) -> str:
            invoked.set()
            await release.wait()
            return "never"

        callee.local.register_rpc_method("hang", hang)
        call = asyncio.ensure_future(
            _call(
                caller,
                callee,
                "hang",
                response_timeout=scaled(LONG_RESPONSE_TIMEOUT_S),
                within=LONG_RESPONSE_TIMEOUT_S + 10,
            )
        )
        try:
            await asyncio.wait_for(invoked.wait(), scaled(CALL_TIMEOUT_S))
            await asyncio.wait_for(callee.room.disconnect(), scaled(CALL_TIMEOUT_S))
            # Bounded well below the call's own (long) response timeout.
            with pytest.raises(caller.rpc_error) as info:
                await asyncio.wait_for(call, scaled(ROSTER_TIMEOUT_S))
            _assert_built_in(info.value, RpcErrorCode.RECIPIENT_DISCONNECTED)
        finally:
            release.set()
            call.cancel()
        await wait_for(
            lambda: callee.identity not in caller.room.remote_participants,
            what="the caller sees the callee gone",
        )


@v1_only
@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_request_payload_too_large_is_refused_up_front(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    """Over 15 360 UTF-8 bytes: REQUEST_PAYLOAD_TOO_LARGE raised by the caller, nothing sent;
    exactly 15 360 bytes (also as 2-byte characters) goes through."""
    async with data_room_v1(livekit_server, "rpc-req-large") as room:
        caller, callee = room.pair(direction)
        invocations: list[int] = []

        def size(data: Any) -> str:
            invocations.append(len(data.payload.encode()))
            return str(len(data.payload.encode()))

        callee.local.register_rpc_method("size", size)
        for too_large in (
            "a" * (RPC_MAX_PAYLOAD_BYTES + 1),
            "é" * (RPC_MAX_PAYLOAD_BYTES // 2 + 1),
        ):
            error = await _call_error(caller, callee, "size", too_large)
            _assert_built_in(error, RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
            assert invocations == []  # refused up front: the callee never saw it
        for fits in ("a" * RPC_MAX_PAYLOAD_BYTES, "é" * (RPC_MAX_PAYLOAD_BYTES // 2)):
            assert await _call(caller, callee, "size", fits) == str(RPC_MAX_PAYLOAD_BYTES)
        assert invocations == [RPC_MAX_PAYLOAD_BYTES, RPC_MAX_PAYLOAD_BYTES]


@v1_only
@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_response_payload_too_large(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    """The callee returns more than 15 360 UTF-8 bytes: the caller gets
    RESPONSE_PAYLOAD_TOO_LARGE; exactly 15 360 bytes goes through."""
    async with data_room_v1(livekit_server, "rpc-resp-large") as room:
        caller, callee = room.pair(direction)
        callee.local.register_rpc_method("big", lambda _d: "b" * (RPC_MAX_PAYLOAD_BYTES + 1))
        callee.local.register_rpc_method(
            "big_utf8", lambda _d: "é" * (RPC_MAX_PAYLOAD_BYTES // 2 + 1)
        )
        callee.local.register_rpc_method("exact", lambda _d: "é" * (RPC_MAX_PAYLOAD_BYTES // 2))
        for method in ("big", "big_utf8"):
            error = await _call_error(caller, callee, method)
            _assert_built_in(error, RpcErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
        assert await _call(caller, callee, "exact") == "é" * (RPC_MAX_PAYLOAD_BYTES // 2)


@v1_only
async def test_official_caller_sends_v1_requests_to_lkproto(livekit_server: LocalServer) -> None:
    """lkproto advertises client_protocol 0 here, so the official SDK calls it with v1 packets
    (``rpc_request``, no ``lk.rpc_request`` text stream), which is why its v1 size limit applies."""
    seen: list[str] = []

    def trace(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        if direction == "<" and isinstance(message, pb.DataPacket):
            seen.append(message.WhichOneof("value") or "")

    async with data_room_v1(livekit_server, "rpc-v1", trace=trace) as room:
        room.lk.local.register_rpc_method("len", lambda d: str(len(d.payload)))
        assert await _call(room.sdk, room.lk, "len", "z" * 15_000) == "15000"
        assert "rpc_request" in seen
        assert "stream_header" not in seen


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_long_error_message_and_data_are_truncated(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    """RpcError message is cut to 256 bytes and data to 15 360 bytes, on both sides alike."""
    async with data_room_v1(livekit_server, "rpc-truncate") as room:
        caller, callee = room.pair(direction)

        def refuse(_data: Any) -> str:
            raise callee.make_rpc_error(3000, "m" * 400, "d" * 20_000)

        callee.local.register_rpc_method("refuse", refuse)
        error = await _call_error(caller, callee, "refuse")
        assert (int(error.code), error.message, error.data) == (3000, "m" * 256, "d" * 15_360)


async def test_nobody_acknowledges_a_call_to_an_unknown_identity(
    livekit_server: LocalServer,
) -> None:
    """The server drops a packet for an identity not in the room: CONNECTION_TIMEOUT after the
    7 s ack window, as with the official SDK."""
    async with data_room_v1(livekit_server, "rpc-nobody") as room:
        with pytest.raises(rtc.RpcError) as info:
            await asyncio.wait_for(
                room.lk.local.perform_rpc(
                    destination_identity="nobody", method="m", payload="", response_timeout=30
                ),
                scaled(20.0),
            )
        # The ack timer fired (the response timer, 30 s, would give RESPONSE_TIMEOUT).
        _assert_built_in(info.value, RpcErrorCode.CONNECTION_TIMEOUT)


# -- lkproto as callee of the official SDK: timeouts and exceptions in handlers ------------


@pytest.mark.parametrize(
    "callee_identity",
    [
        pytest.param(EVE, id="official-callee"),
        pytest.param(LK, id="lkproto-callee"),
    ],
)
async def test_handler_raising_timeout_error_is_an_application_error(
    livekit_server: LocalServer, callee_identity: str
) -> None:
    """A TimeoutError from inside the handler (an upstream HTTP timeout, say) is not the
    response deadline: the official callee answers APPLICATION_ERROR at once."""
    async with data_room_v1(livekit_server, "rpc-timeout-error", bystander=True) as room:
        caller, callee = room.sdk, room[callee_identity]

        async def upstream_timed_out(_data: Any) -> str:
            raise TimeoutError("upstream took too long")

        callee.local.register_rpc_method("fetch", upstream_timed_out)
        error = await _call_error(caller, callee, "fetch", response_timeout=10.0, within=20.0)
        # An answer from the callee (waiting would have ended in the caller's RESPONSE_TIMEOUT).
        _assert_built_in(error, RpcErrorCode.APPLICATION_ERROR)


@pytest.mark.parametrize(
    "callee_identity",
    [
        pytest.param(EVE, id="official-callee"),
        pytest.param(LK, id="lkproto-callee"),
    ],
)
async def test_handler_overrunning_its_deadline_answers_response_timeout(
    livekit_server: LocalServer, callee_identity: str
) -> None:
    """The official caller with ``response_timeout=9`` tells the callee max(9 - 7, 1) = 2 s.
    The official callee cancels its handler then and answers RESPONSE_TIMEOUT, so the caller
    fails after ~2 s instead of 9 s."""
    async with data_room_v1(livekit_server, "rpc-overrun", bystander=True) as room:
        caller, callee = room.sdk, room[callee_identity]
        told: list[float] = []
        release = asyncio.Event()

        async def hang(data: Any) -> str:
            told.append(data.response_timeout)
            await release.wait()
            return "late"

        callee.local.register_rpc_method("hang", hang)
        try:
            # Bounded below the caller's own 9 s: the callee's RESPONSE_TIMEOUT reply (after the
            # 2 s it was told) must be what ends the call.
            error = await _call_error(caller, callee, "hang", response_timeout=9.0, within=6.0)
        finally:
            release.set()
        assert told == [2.0]
        _assert_built_in(error, RpcErrorCode.RESPONSE_TIMEOUT)
