"""RPC v2 (requests and responses as ``lk.rpc_request`` / ``lk.rpc_response`` text streams)
between lkproto and the official SDK, in both directions (PROTOCOL-MAP §6 v2 flow).

Both sides advertise ``client_protocol`` >= 1, so each uses streams towards the other and the
v1 15 360-byte limit no longer applies; acks and errors stay ``rpc_ack`` / ``rpc_response``
packets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from lkproto.core.rpc import RPC_ERROR_MESSAGES, RpcErrorCode
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop._data_helpers import DIRECTIONS, Peer, data_room, rpc_error_of

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

CALL_TIMEOUT_S = 15.0
BIG = 100 * 1024


async def _call(caller: Peer, callee: Peer, method: str, payload: str) -> str:
    result = await asyncio.wait_for(
        caller.local.perform_rpc(
            destination_identity=callee.identity, method=method, payload=payload
        ),
        scaled(CALL_TIMEOUT_S),
    )
    assert isinstance(result, str)
    return result


class _Tap:
    """lkproto's wire tap: the DataPacket kinds and stream topics it sends and receives."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {"<": [], ">": []}
        self.topics: dict[str, list[str]] = {"<": [], ">": []}

    def __call__(
        self, direction: str, channel: str, message: object, raw: bytes, now: float
    ) -> None:
        if isinstance(message, pb.DataPacket) and direction in self.kinds:
            kind = message.WhichOneof("value") or ""
            self.kinds[direction].append(kind)
            if kind == "stream_header":
                self.topics[direction].append(message.stream_header.topic)


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_100_kb_request_and_response_over_streams(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    tap = _Tap()
    async with data_room(livekit_server, "rpc-v2-big", trace=tap) as room:
        caller, callee = room.pair(direction)
        seen: list[Any] = []

        def echo(data: Any) -> str:
            seen.append(data)
            return str(data.payload).upper() + "€"

        callee.local.register_rpc_method("echo", echo)
        # Multi-byte characters straddle the 15 000-byte chunk boundaries.
        payload = ("aé€😀" * (BIG // 10 + 1))[: BIG // 2]
        assert len(payload.encode()) > BIG // 2 + 15_360
        result = await _call(caller, callee, "echo", payload)
        assert result == payload.upper() + "€"
        assert len(seen) == 1
        assert seen[0].caller_identity == caller.identity
        assert seen[0].payload == payload
        assert seen[0].response_timeout > 0
        # Transport: lkproto sent/received the request and the response as streams; the ack is
        # a packet; no v1 request packet was used.
        lk_sent = ">" if not caller.official else "<"
        lk_got = "<" if not caller.official else ">"
        assert "lk.rpc_request" in tap.topics[lk_sent]
        assert "lk.rpc_response" in tap.topics[lk_got]
        assert "rpc_ack" in tap.kinds[lk_got]
        assert "rpc_request" not in tap.kinds["<"] + tap.kinds[">"]
        assert "rpc_response" not in tap.kinds["<"] + tap.kinds[">"]


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_errors_over_v2_are_packets(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    tap = _Tap()
    async with data_room(livekit_server, "rpc-v2-err", trace=tap) as room:
        caller, callee = room.pair(direction)

        def refuse(_data: Any) -> str:
            raise callee.make_rpc_error(4321, "nope", "x" * 20_000)

        callee.local.register_rpc_method("refuse", refuse)
        with pytest.raises(caller.rpc_error) as info:
            await _call(caller, callee, "refuse", "p" * 40_000)
        error = rpc_error_of(info.value)
        assert (int(error.code), error.message) == (4321, "nope")
        assert error.data == "x" * 15_360
        with pytest.raises(caller.rpc_error) as info:
            await _call(caller, callee, "missing", "q" * 40_000)
        code = RpcErrorCode.UNSUPPORTED_METHOD
        error = rpc_error_of(info.value)
        assert (int(error.code), error.message) == (int(code), RPC_ERROR_MESSAGES[code])
        kinds = tap.kinds["<"] + tap.kinds[">"]
        assert "rpc_response" in kinds
        assert "lk.rpc_response" not in tap.topics["<"] + tap.topics[">"]


async def test_v2_streams_are_hidden_from_the_application(livekit_server: LocalServer) -> None:
    """A handler registered by the application never sees internal RPC topics."""
    async with data_room(livekit_server, "rpc-v2-hidden") as room:
        opened: list[str] = []
        room.lk.room.register_text_stream_handler(
            "other", lambda reader, _identity: opened.append(reader.info.topic)
        )
        room.lk.local.register_rpc_method("len", lambda d: str(len(d.payload)))
        room.sdk.local.register_rpc_method("len", lambda d: str(len(d.payload)))
        assert await _call(room.sdk, room.lk, "len", "z" * 30_000) == "30000"
        assert await _call(room.lk, room.sdk, "len", "z" * 30_000) == "30000"
        assert opened == []
