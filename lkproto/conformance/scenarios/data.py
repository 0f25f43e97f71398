"""User data packets: reliable, lossy, topics, destinations, ordering, server-sent data and
sequence continuity across a signal resume (PROTOCOL-MAP §3, §4, §10)."""

from __future__ import annotations

from lkproto.conformance._context import Context
from lkproto.conformance._registry import Unsupported, scenario
from lkproto.conformance.adapters import Client, DataMsg
from lkproto.conformance.scenarios._util import check, require_resumable

__all__: list[str] = []

_BURST = 200
# Lossy packets may be dropped by design; on loopback nearly all arrive. Send several, need one.
_LOSSY_TRIES = 10


def _on(received: list[DataMsg], topic: str) -> list[DataMsg]:
    return [m for m in received if m.topic == topic]


def _kind_reported(got: list[DataMsg]) -> list[DataMsg]:
    if any(m.reliable is None for m in got):
        raise Unsupported("the SDK does not report a received packet's kind")
    return got


async def _wait_data(ctx: Context, who: Client, topic: str, count: int = 1) -> list[DataMsg]:
    async def got() -> bool:
        await who.poll()
        return len(_on(who.received, topic)) >= count

    await ctx.until(got, f"{count} packet(s) on topic {topic!r} at {who.identity}")
    return _on(who.received, topic)


@scenario("data.reliable.send", needs={"data"})
async def reliable_send(ctx: Context) -> None:
    """A reliable packet from the client reaches the peer once, on ``_reliable``, with the
    payload intact and the server-stamped sender identity (PROTOCOL-MAP §3, §4)."""
    client, peer = await ctx.pair()
    payload = bytes(range(256)) * 4
    await ctx.bounded(client.publish_data(payload, topic="rel"), "publish_data")
    await _wait_data(ctx, peer, "rel")
    await ctx.settle(0.3)
    got = _on(peer.received, "rel")
    check(len(got) == 1, f"peer received {len(got)} copies")
    check(got[0].payload == payload, "payload corrupted")
    check(got[0].reliable, "arrived as lossy")
    check(got[0].sender == "client", f"sender identity {got[0].sender!r}")


@scenario("data.reliable.receive", needs={"data"})
async def reliable_receive(ctx: Context) -> None:
    """A reliable packet from the peer reaches the client once with payload, kind RELIABLE and
    the sender's identity (PROTOCOL-MAP §3 step 4/7, §4)."""
    client, peer = await ctx.pair()
    payload = b"\x00\xffhello" * 100
    await ctx.bounded(peer.publish_data(payload, topic="rel"), "peer publish_data")
    await _wait_data(ctx, client, "rel")
    await ctx.settle(0.3)
    await client.poll()
    got = _kind_reported(_on(client.received, "rel"))
    check(len(got) == 1, f"client received {len(got)} copies")
    check(got[0].payload == payload, "payload corrupted")
    check(got[0].reliable, "reported as lossy")
    check(got[0].sender == "peer", f"sender identity {got[0].sender!r}")


@scenario("data.lossy.send", needs={"data"})
async def lossy_send(ctx: Context) -> None:
    """Lossy packets go on ``_lossy`` (unordered, no retransmits) and arrive marked LOSSY
    (PROTOCOL-MAP §3 labels: kind is derived from the arrival channel)."""
    client, peer = await ctx.pair()
    for i in range(_LOSSY_TRIES):
        await ctx.bounded(
            client.publish_data(f"lossy-{i}".encode(), reliable=False, topic="lossy"), "publish"
        )
    got = await _wait_data(ctx, peer, "lossy")
    check(all(not m.reliable for m in got), "a lossy packet arrived on the reliable channel")
    check(all(m.payload.startswith(b"lossy-") for m in got), "payload corrupted")


@scenario("data.lossy.receive", needs={"data"})
async def lossy_receive(ctx: Context) -> None:
    """Lossy packets from the peer reach the client reported as LOSSY (PROTOCOL-MAP §3)."""
    client, peer = await ctx.pair()
    for i in range(_LOSSY_TRIES):
        await ctx.bounded(
            peer.publish_data(f"lossy-{i}".encode(), reliable=False, topic="lossy"), "publish"
        )
    got = _kind_reported(await _wait_data(ctx, client, "lossy"))
    check(all(not m.reliable for m in got), "a lossy packet was reported as reliable")


@scenario("data.topic.roundtrip", needs={"data"})
async def topic_roundtrip(ctx: Context) -> None:
    """``UserPacket.topic`` survives both directions, and a packet without a topic is reported
    without one (PROTOCOL-MAP §4 topic)."""
    client, peer = await ctx.pair()
    await ctx.bounded(client.publish_data(b"t1", topic="chat/1"), "client publish")
    await ctx.bounded(client.publish_data(b"t0", topic=""), "client publish (no topic)")
    await ctx.bounded(peer.publish_data(b"t2", topic="chat/2"), "peer publish")
    await ctx.bounded(peer.publish_data(b"t3", topic=""), "peer publish (no topic)")
    await _wait_data(ctx, peer, "chat/1")
    await _wait_data(ctx, peer, "")
    await _wait_data(ctx, client, "chat/2")
    await _wait_data(ctx, client, "")
    check(_on(peer.received, "")[0].payload == b"t0", "peer: topic-less packet mismatched")
    check(_on(client.received, "")[0].payload == b"t3", "client: topic-less packet mismatched")


@scenario("data.destination_identities", needs={"data"})
async def destinations(ctx: Context) -> None:
    """A packet addressed with ``destination_identities=[peer]`` reaches only the peer: a third
    participant (another lkproto) must not receive it, while a broadcast reaches both
    (PROTOCOL-MAP §3 step 7, §4 Destination)."""
    client, peer = await ctx.pair()
    eve = await ctx.peer("eve")
    await ctx.until_sees(client, eve)
    await ctx.bounded(
        client.publish_data(b"only-peer", topic="dest", destinations=["peer"]), "targeted"
    )
    await ctx.bounded(client.publish_data(b"all", topic="bcast"), "broadcast")
    await _wait_data(ctx, peer, "dest")
    await _wait_data(ctx, eve, "bcast")
    await ctx.settle(0.5)
    check(not _on(eve.received, "dest"), "the third participant received a targeted packet")
    check(len(_on(peer.received, "dest")) == 1, "the destination got it more than once")


@scenario("data.destination_from_peer", needs={"data"})
async def destinations_in(ctx: Context) -> None:
    """The client receives a packet addressed to it, and not one addressed only to a third
    participant (PROTOCOL-MAP §3 step 7)."""
    client, peer = await ctx.pair()
    eve = await ctx.peer("eve")
    await ctx.until_sees(client, eve)
    await ctx.bounded(peer.publish_data(b"to-eve", topic="x", destinations=["eve"]), "to eve")
    await ctx.bounded(peer.publish_data(b"to-me", topic="y", destinations=["client"]), "to me")
    await _wait_data(ctx, client, "y")
    await _wait_data(ctx, eve, "x")
    await ctx.settle(0.3)
    await client.poll()
    check(not _on(client.received, "x"), "the client received a packet addressed to eve")


@scenario("data.reliable.ordering_send", needs={"data"}, timeout=60)
async def ordering_send(ctx: Context) -> None:
    """200 reliable packets sent back to back arrive complete, once each and in order
    (``_reliable`` is ordered; sequence 1, 2, 3, …; PROTOCOL-MAP §3 Reliable sequence)."""
    client, peer = await ctx.pair()
    for i in range(_BURST):
        await client.publish_data(f"{i:04d}".encode(), topic="seq")
    await _wait_data(ctx, peer, "seq", _BURST)
    await ctx.settle(0.3)
    order = [int(m.payload) for m in _on(peer.received, "seq")]
    check(order == list(range(_BURST)), f"order/duplicates wrong: first mismatch in {order[:20]}…")


@scenario("data.reliable.ordering_receive", needs={"data"}, timeout=60)
async def ordering_receive(ctx: Context) -> None:
    """200 reliable packets from the peer are delivered to the application complete, once and
    in order (receivers dedup by sender and sequence, PROTOCOL-MAP §3)."""
    client, peer = await ctx.pair()
    for i in range(_BURST):
        await peer.publish_data(f"{i:04d}".encode(), topic="seq")
    await _wait_data(ctx, client, "seq", _BURST)
    await ctx.settle(0.3)
    await client.poll()
    order = [int(m.payload) for m in _on(client.received, "seq")]
    check(order == list(range(_BURST)), f"order/duplicates wrong: {order[:20]}…")


@scenario("data.server_send_data", needs={"data"})
async def server_send_data(ctx: Context) -> None:
    """RoomService.SendData delivers a user packet with topic to the client; it has no sender
    participant (PROTOCOL-MAP §4 "Server-originated packets have no sender identity", §17)."""
    client = await ctx.client()
    service = ctx.room_service()

    async def sent() -> bool:
        await service.send_data(ctx.room, b"from-server", topic="srv")
        await client.poll()
        return bool(_on(client.received, "srv"))

    # The first SendData may beat the client's ACTIVE state (then it is dropped, §3 step 8).
    await ctx.until(sent, "the server's packet at the client")
    got = _on(client.received, "srv")[0]
    check(got.payload == b"from-server", "payload corrupted")
    check(not got.sender, f"server packet attributed to {got.sender!r}")


@scenario("data.resume.sequence_continuity", needs={"data", "simulate"}, timeout=60)
async def resume_sequence(ctx: Context) -> None:
    """Reliable packets sent before, during and after a signal-only resume arrive exactly once
    and in order: the sender keeps its sequence counter and resends what the server did not
    acknowledge in ``ReconnectResponse.last_message_seq`` (PROTOCOL-MAP §3 Reliable sequence,
    §10 Resume)."""
    client, peer = await ctx.pair()
    await require_resumable(client, ctx.server.url)
    for i in range(20):
        await client.publish_data(f"{i:04d}".encode(), topic="seq")
    await ctx.bounded(client.simulate("signal_reconnect"), "simulate signal_reconnect")
    for i in range(20, 40):
        await ctx.bounded(client.publish_data(f"{i:04d}".encode(), topic="seq"), "publish")

    async def reconnected() -> bool:
        await client.poll()
        return client.reconnected >= 1

    await ctx.until(reconnected, "the client's reconnected event", within=20)
    for i in range(40, 60):
        await client.publish_data(f"{i:04d}".encode(), topic="seq")
    await _wait_data(ctx, peer, "seq", 60)
    await ctx.settle(0.5)
    order = [int(m.payload) for m in _on(peer.received, "seq")]
    check(order == list(range(60)), f"lost/duplicated/reordered across the resume: {order}")
    check(client.connected, "client not connected after the resume")
    check("client" not in peer.left, "the peer saw the client leave during a resume")
