"""RPC v1 (packets) and v2 (over text streams), and every built-in error code
(PROTOCOL-MAP §6)."""

from __future__ import annotations

import uuid

from lkproto.conformance._context import Context
from lkproto.conformance._registry import scenario
from lkproto.conformance.adapters import RpcFailure
from lkproto.conformance.scenarios._util import WireTap, check, require_level
from lkproto.wire import pb

__all__: list[str] = []

_V1_LIMIT = 15_360  # bytes of a v1 request/response payload (§6 Error codes, 1402/1504)


async def _expect_error(ctx: Context, call: object, code: int, what: str) -> RpcFailure:
    try:
        result = await ctx.bounded(call, what, 30)  # type: ignore[arg-type]
    except RpcFailure as exc:
        check(exc.code == code, f"{what}: RpcError {exc.code} ({exc.message!r}), expected {code}")
        return exc
    raise AssertionError(f"{what}: succeeded with {result!r}, expected RpcError {code}")


def _request_forms(tap: WireTap) -> set[str]:
    forms = {f"v{p.rpc_request.version}" for p in tap.of("rpc_request")}
    for p in tap.of("stream_header"):
        if p.stream_header.topic == "lk.rpc_request":
            forms.add("v" + p.stream_header.attributes.get("lk.rpc_request_version", "?"))
    return forms


@scenario("rpc.v1.call", needs={"rpc"})
async def v1_call(ctx: Context) -> None:
    """The client calls a method of a callee advertising ``client_protocol=0``: the request is
    an ``rpc_request`` packet with ``version=1`` and the response payload comes back
    (PROTOCOL-MAP §6 v1 flow)."""
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"client_protocol": 0, "trace": tap})
    await peer.register_rpc("echo")
    answer = await ctx.bounded(client.perform_rpc("peer", "echo", "ping-1"), "perform_rpc")
    check(answer == "ping-1", f"response {answer!r}")
    check(_request_forms(tap) == {"v1"}, f"request forms seen: {_request_forms(tap)}")
    check(peer.rpc_calls == [("echo", "client", "ping-1")], f"invocations {peer.rpc_calls}")


@scenario("rpc.v1.serve", needs={"rpc"})
async def v1_serve(ctx: Context) -> None:
    """A v1 caller (``client_protocol=0``) calls the client: it sends ``rpc_ack`` at once and an
    ``rpc_response`` packet with the handler's result (PROTOCOL-MAP §6 v1 flow, §16)."""
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"client_protocol": 0, "trace": tap})
    await client.register_rpc("echo")
    answer = await ctx.bounded(peer.perform_rpc("client", "echo", "ping-2"), "peer perform_rpc")
    check(answer == "ping-2", f"response {answer!r}")
    check(tap.of("rpc_ack"), "the client sent no rpc_ack packet")
    responses = tap.of("rpc_response")
    check(len(responses) == 1, f"{len(responses)} rpc_response packets (v1 caller needs one)")


@scenario("rpc.v2.call", needs={"rpc"})
async def v2_call(ctx: Context) -> None:
    """With both sides at ``client_protocol>=1`` the request travels as an ``lk.rpc_request``
    text stream with ``lk.rpc_request_version="2"`` (PROTOCOL-MAP §6 v2 flow)."""
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"trace": tap})
    require_level(peer, "client", 1)
    await peer.register_rpc("echo")
    answer = await ctx.bounded(client.perform_rpc("peer", "echo", "v2-hello"), "perform_rpc")
    check(answer == "v2-hello", f"response {answer!r}")
    check(_request_forms(tap) == {"v2"}, f"request forms seen: {_request_forms(tap)}")


@scenario("rpc.v2.serve", needs={"rpc"})
async def v2_serve(ctx: Context) -> None:
    """Called over v2, the client acks with an ``rpc_ack`` packet and answers with an
    ``lk.rpc_response`` text stream carrying ``lk.rpc_request_id`` (PROTOCOL-MAP §6 v2 flow)."""
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"trace": tap})
    require_level(peer, "client", 1)
    await client.register_rpc("echo")
    answer = await ctx.bounded(peer.perform_rpc("client", "echo", "v2-serve"), "peer perform_rpc")
    check(answer == "v2-serve", f"response {answer!r}")
    check(tap.of("rpc_ack"), "the client sent no rpc_ack packet")
    headers = [
        p.stream_header
        for p in tap.of("stream_header")
        if p.stream_header.topic == "lk.rpc_response"
    ]
    check(headers, "no lk.rpc_response stream (a v2 caller must get a stream response)")
    check("lk.rpc_request_id" in headers[0].attributes, "response stream lacks lk.rpc_request_id")


@scenario("rpc.v2.large_payload", needs={"rpc"})
async def v2_large(ctx: Context) -> None:
    """RPC v2 has no payload limit: 40 000-character request and response payloads (beyond the
    15 360-byte v1 limit) round-trip both ways (PROTOCOL-MAP §6 v2 flow)."""
    client, peer = await ctx.pair()
    require_level(peer, "client", 1)
    await peer.register_rpc("echo")
    await client.register_rpc("echo")
    big = "é" * 20_000  # 40 000 bytes of UTF-8
    check(await ctx.bounded(client.perform_rpc("peer", "echo", big), "call") == big, "corrupt")
    got = await ctx.bounded(peer.perform_rpc("client", "echo", big), "serve")
    check(got == big, "response payload corrupted")


@scenario("rpc.error.unsupported_method", needs={"rpc"})
async def unsupported_method(ctx: Context) -> None:
    """Calling a method nobody registered gives 1400 UNSUPPORTED_METHOD, both when the client
    calls and when the client is the callee (PROTOCOL-MAP §6 Error codes)."""
    client, peer = await ctx.pair()
    await _expect_error(ctx, client.perform_rpc("peer", "nope", ""), 1400, "client calls")
    await _expect_error(ctx, peer.perform_rpc("client", "nope", ""), 1400, "peer calls client")


@scenario("rpc.error.application", needs={"rpc"})
async def application_error(ctx: Context) -> None:
    """A handler that raises a non-RPC exception is answered with 1500 APPLICATION_ERROR
    (PROTOCOL-MAP §6 Error codes)."""
    client, peer = await ctx.pair()
    await client.register_rpc("boom", mode="throw", message="kaput")
    await _expect_error(ctx, peer.perform_rpc("client", "boom", "x"), 1500, "peer calls boom")


@scenario("rpc.error.custom", needs={"rpc"})
async def custom_error(ctx: Context) -> None:
    """An ``RpcError(code, message, data)`` raised by a handler reaches the caller with the same
    code, message and data, in both directions (PROTOCOL-MAP §6 RpcError, codes outside
    1001-1999 are the application's)."""
    client, peer = await ctx.pair()
    await client.register_rpc("fail", mode="rpc_error", code=2001, message="nope", data="d1")
    await peer.register_rpc("fail", mode="rpc_error", code=2002, message="nah", data="d2")
    exc = await _expect_error(ctx, peer.perform_rpc("client", "fail", ""), 2001, "peer calls")
    check((exc.message, exc.data) == ("nope", "d1"), f"message/data {exc.message!r}/{exc.data!r}")
    exc = await _expect_error(ctx, client.perform_rpc("peer", "fail", ""), 2002, "client calls")
    check((exc.message, exc.data) == ("nah", "d2"), f"message/data {exc.message!r}/{exc.data!r}")


@scenario("rpc.error.response_timeout", needs={"rpc"})
async def response_timeout(ctx: Context) -> None:
    """The callee acks but answers after the caller's response timeout: the caller fails with
    1502 RESPONSE_TIMEOUT (PROTOCOL-MAP §6 v1 flow step 3)."""
    client, peer = await ctx.pair()
    await peer.register_rpc("slow", delay_s=6.0)
    await _expect_error(
        ctx, client.perform_rpc("peer", "slow", "", timeout_s=2.0), 1502, "call with 2 s timeout"
    )


@scenario("rpc.error.payload_too_large", needs={"rpc"})
async def payload_too_large(ctx: Context) -> None:
    """Towards a v1 callee (``client_protocol=0``) a request payload over 15 360 bytes is
    refused by the caller with 1402 REQUEST_PAYLOAD_TOO_LARGE (PROTOCOL-MAP §6 v1 flow step 5)."""
    client, peer = await ctx.pair(peer_args={"client_protocol": 0})
    await peer.register_rpc("echo")
    await _expect_error(
        ctx, client.perform_rpc("peer", "echo", "x" * (_V1_LIMIT + 1)), 1402, "oversized call"
    )
    check(not peer.rpc_calls, "the oversized request reached the callee")


@scenario("rpc.error.recipient_disconnected", needs={"rpc"})
async def recipient_disconnected(ctx: Context) -> None:
    """The callee leaves while the call is pending: the caller fails with 1503
    RECIPIENT_DISCONNECTED when the ParticipantUpdate says DISCONNECTED (PROTOCOL-MAP §6)."""
    client, peer = await ctx.pair()
    await peer.register_rpc("slow", delay_s=20.0)
    call = client.perform_rpc("peer", "slow", "", timeout_s=25.0)

    async def leave_soon() -> None:
        await ctx.until(lambda: peer.rpc_calls, "the call to reach the peer")
        await peer.disconnect()

    import asyncio

    leaver = asyncio.ensure_future(leave_soon())
    try:
        await _expect_error(ctx, call, 1503, "call to a callee that leaves")
    finally:
        leaver.cancel()


@scenario("rpc.error.connection_timeout", needs={"rpc"})
async def connection_timeout(ctx: Context) -> None:
    """A call to an identity that is not in the room gets no ``rpc_ack`` and fails after the
    7 s ack window with 1501 CONNECTION_TIMEOUT (PROTOCOL-MAP §6 v1 flow step 3)."""
    client = await ctx.client()
    await _expect_error(
        ctx, client.perform_rpc("ghost", "echo", "", timeout_s=15.0), 1501, "call to a ghost"
    )


@scenario("rpc.error.unsupported_version", needs={"rpc"})
async def unsupported_version(ctx: Context) -> None:
    """An ``rpc_request`` with ``version=99`` (injected by lkproto as a raw packet) is acked and
    answered with error 1404 UNSUPPORTED_VERSION, not dispatched (PROTOCOL-MAP §6 v1 flow
    step 2)."""
    tap = WireTap()
    client, peer = await ctx.pair(peer_args={"trace": tap})
    await client.register_rpc("echo")
    request_id = str(uuid.uuid4())
    packet = pb.DataPacket(
        destination_identities=["client"],
        rpc_request=pb.RpcRequest(
            id=request_id, method="echo", payload="x", response_timeout_ms=5000, version=99
        ),
    )
    await ctx.bounded(peer.room.engine.send_data(packet, reliable=True), "inject rpc_request")

    def answered() -> bool:
        return any(p.rpc_response.request_id == request_id for p in tap.of("rpc_response"))

    await ctx.until(answered, "an rpc_response to the version-99 request", within=10)
    response = next(
        p.rpc_response for p in tap.of("rpc_response") if p.rpc_response.request_id == request_id
    )
    check(response.WhichOneof("value") == "error", f"answered with {response.WhichOneof('value')}")
    check(response.error.code == 1404, f"error code {response.error.code}, expected 1404")
    await client.poll()
    check(not client.rpc_calls, "the handler ran for an unsupported version")
