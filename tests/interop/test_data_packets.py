"""User data packets and DTMF between lkproto and the official SDK, in both directions
(PROTOCOL-MAP §3, §4, §10).

Each test gets its own room with ``lk`` (lkproto) and ``sdk`` (official SDK), and sends only once
each side sees the other ACTIVE (the server drops lossy and unsequenced packets for receivers that
are not ACTIVE yet, PROTOCOL-MAP §3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from lkproto import rtc
from lkproto.core.reconnect import ReconnectPolicy
from lkproto.errors import LkError, PublishDataError
from lkproto.testing import scaled
from lkproto.wire import DATA_PACKET_MAX_BYTES, encode_data_packet, pb
from tests.interop._data_helpers import (
    DIRECTIONS,
    EVE,
    LK,
    SDK,
    Dtmf,
    Peer,
    Received,
    data_room,
    settle,
)
from tests.interop._helpers import RECONNECT_TIMEOUT_S, wait_for

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

RELIABLE = int(rtc.DataPacketKind.KIND_RELIABLE)
LOSSY = int(rtc.DataPacketKind.KIND_LOSSY)
# Time for a burst of packets to cross the loopback server (generous; the waits poll).
DELIVERY_TIMEOUT_S = 30.0
BURST = 1_000


def _burst_payload(i: int) -> bytes:
    return f"packet-{i:04d}".encode()


async def _publish_lossy_until_received(
    sender: Peer, receiver: Peer, payload: bytes, topic: str, *, to: list[str] | None = None
) -> None:
    """Lossy packets may be dropped: resend the same one until the receiver has it."""

    async def loop() -> None:
        while not receiver.on_topic(topic):
            await sender.publish(
                payload, reliable=False, topic=topic, destination_identities=to or []
            )
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(loop(), scaled(DELIVERY_TIMEOUT_S))
    except TimeoutError:
        raise AssertionError(f"no lossy packet on {topic!r} reached {receiver.identity}") from None


# -- payload, topic, sender, kind -------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_reliable_and_lossy_packets_carry_payload_topic_sender_and_kind(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "data-basic") as room:
        sender, receiver = room.pair(direction)
        binary = bytes(range(256)) * 4
        await sender.publish(binary, topic="chat")
        await sender.publish("héllo wörld ✓", topic="text")
        await sender.publish(b"no-topic")
        await _publish_lossy_until_received(sender, receiver, b"\x00lossy\xff", "telemetry")
        await wait_for(
            lambda: len([r for r in receiver.received if r.kind == RELIABLE]) >= 3,
            what="the 3 reliable packets",
        )

        reliable = [r for r in receiver.received if r.kind == RELIABLE]
        assert reliable == [
            Received(binary, RELIABLE, sender.identity, "chat"),
            Received("héllo wörld ✓".encode(), RELIABLE, sender.identity, "text"),
            # Both SDKs report a packet without topic with topic "" (the official SDK sends an
            # explicit "" on the wire; lkproto leaves it out and the official SDK reads "").
            Received(b"no-topic", RELIABLE, sender.identity, ""),
        ]
        lossy = [r for r in receiver.received if r.kind == LOSSY]
        assert lossy
        assert set(lossy) == {Received(b"\x00lossy\xff", LOSSY, sender.identity, "telemetry")}
        # The sender never gets its own packets back (PROTOCOL-MAP §3 inbound step 7).
        await settle()
        assert sender.received == []


# -- destination identities -------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_destination_identities_are_respected(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    """A third participant (official SDK) gets nothing addressed to someone else."""
    async with data_room(livekit_server, "data-dest", bystander=True) as room:
        sender, receiver = room.pair(direction)
        eve = room.eve
        await sender.publish(b"for-you", topic="dm", destination_identities=[receiver.identity])
        # An unknown identity next to a known one is skipped silently.
        await sender.publish(
            b"for-you-too", topic="dm", destination_identities=["nobody", receiver.identity]
        )
        await _publish_lossy_until_received(
            sender, receiver, b"lossy-dm", "dm-lossy", to=[receiver.identity]
        )
        await wait_for(lambda: len(receiver.on_topic("dm")) == 2, what="the 2 direct packets")
        # Fence: a broadcast on the same ordered reliable channel, sent after the direct ones.
        # Once eve has it, any direct packet wrongly fanned out to her would already be there.
        await sender.publish(b"everyone", topic="fence")
        await wait_for(lambda: eve.on_topic("fence"), what="eve receives the broadcast")
        await wait_for(lambda: receiver.on_topic("fence"), what="receiver receives the broadcast")
        await settle(1.0)

        assert receiver.on_topic("dm") == [
            Received(b"for-you", RELIABLE, sender.identity, "dm"),
            Received(b"for-you-too", RELIABLE, sender.identity, "dm"),
        ]
        assert set(receiver.on_topic("dm-lossy")) == {
            Received(b"lossy-dm", LOSSY, sender.identity, "dm-lossy")
        }
        assert eve.received == [Received(b"everyone", RELIABLE, sender.identity, "fence")]


async def test_destination_is_the_bystander_only(livekit_server: LocalServer) -> None:
    """lkproto addresses the official bystander only: the other official peer gets nothing."""
    async with data_room(livekit_server, "data-dest-eve", bystander=True) as room:
        await room.lk.publish(b"secret", topic="dm", destination_identities=[EVE])
        await room.lk.publish(b"everyone", topic="fence")
        await wait_for(lambda: room.sdk.on_topic("fence"), what="sdk receives the broadcast")
        await wait_for(lambda: room.eve.on_topic("fence"), what="eve receives the broadcast")
        await settle(1.0)
        assert room.eve.on_topic("dm") == [Received(b"secret", RELIABLE, LK, "dm")]
        assert room.sdk.received == [Received(b"everyone", RELIABLE, LK, "fence")]


# -- ordering -----------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_a_thousand_reliable_packets_arrive_in_order_exactly_once(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "data-burst") as room:
        sender, receiver = room.pair(direction)
        expected = [_burst_payload(i) for i in range(BURST)]
        started = time.monotonic()
        for payload in expected:
            await sender.publish(payload, topic="burst")
        await wait_for(
            lambda: len(receiver.on_topic("burst")) >= BURST,
            DELIVERY_TIMEOUT_S,
            f"{BURST} packets (got {len(receiver.on_topic('burst'))})",
        )
        elapsed = time.monotonic() - started
        await settle()
        got = [r.data for r in receiver.on_topic("burst")]
        assert got == expected, _diff(got, expected)
        assert {(r.kind, r.sender) for r in receiver.received} == {(RELIABLE, sender.identity)}
        print(f"{sender.identity}->{receiver.identity}: {BURST} packets in {elapsed:.2f} s")


def _diff(got: list[bytes], expected: list[bytes]) -> str:
    missing = sorted(set(expected) - set(got))
    dups = sorted({p for p in got if got.count(p) > 1})
    first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    return (
        f"got {len(got)}, missing {len(missing)} (first {missing[:3]}), "
        f"duplicated {len(dups)} (first {dups[:3]}), first mismatch at {first}"
    )


# -- size limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable", "lossy"])
async def test_oversize_packet_is_refused_before_sending_and_room_stays_usable(
    livekit_server: LocalServer, reliable: bool
) -> None:
    async with data_room(livekit_server, "data-oversize") as room:
        lk = room.lk.local
        with pytest.raises(PublishDataError) as info:
            await lk.publish_data(b"x" * DATA_PACKET_MAX_BYTES, reliable=reliable, topic="big")
        assert isinstance(info.value, LkError)
        # A packet just over the limit is refused too: payload + headers > 64 000 bytes.
        overhead = len(
            encode_data_packet(
                pb.DataPacket(user=pb.UserPacket(payload=b"", topic="big"), sequence=1)
            )
        )
        just_over = DATA_PACKET_MAX_BYTES - overhead + 10
        with pytest.raises(PublishDataError):
            await lk.publish_data(b"x" * just_over, reliable=reliable, topic="big")

        # Nothing left; the room still works both ways, with a 15 000-byte payload.
        payload = bytes(i % 251 for i in range(15_000))
        await room.lk.publish(payload, topic="after")
        await room.sdk.publish(payload, topic="after")
        await wait_for(lambda: room.sdk.on_topic("after"), what="sdk receives 15 000 bytes")
        await wait_for(lambda: room.lk.on_topic("after"), what="lk receives 15 000 bytes")
        await settle()
        assert room.sdk.received == [Received(payload, RELIABLE, LK, "after")]
        assert room.lk.received == [Received(payload, RELIABLE, SDK, "after")]
        assert room.lk.room.connection_state == rtc.ConnectionState.CONN_CONNECTED


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_fifteen_thousand_byte_payloads_go_through(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "data-15k") as room:
        sender, receiver = room.pair(direction)
        payloads = [bytes([i]) * 15_000 for i in range(20)]
        for payload in payloads:
            await sender.publish(payload, topic="15k")
        await wait_for(lambda: len(receiver.on_topic("15k")) >= len(payloads), what="20 x 15 kB")
        assert [r.data for r in receiver.on_topic("15k")] == payloads


async def test_a_packet_near_the_limit_reaches_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    """The largest payload lkproto accepts (packet of 64 000 bytes minus a little) arrives."""
    async with data_room(livekit_server, "data-near-limit") as room:
        overhead = len(
            encode_data_packet(
                pb.DataPacket(user=pb.UserPacket(payload=b"", topic="near"), sequence=1)
            )
        )
        # +8: room for the length prefix of a large payload and a multi-byte sequence varint.
        payload = b"n" * (DATA_PACKET_MAX_BYTES - overhead - 8)
        await room.lk.publish(payload, topic="near")
        await wait_for(lambda: room.sdk.on_topic("near"), what="sdk receives ~64 kB")
        assert room.sdk.on_topic("near") == [Received(payload, RELIABLE, LK, "near")]


# -- DTMF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_dtmf_reaches_the_other_sdk(
    livekit_server: LocalServer, direction: tuple[str, str]
) -> None:
    async with data_room(livekit_server, "data-dtmf") as room:
        sender, receiver = room.pair(direction)
        tones = [(1, "1"), (10, "*"), (11, "#"), (0, "0"), (12, "A")]
        for code, digit in tones:
            await asyncio.wait_for(
                sender.local.publish_dtmf(code=code, digit=digit), scaled(DELIVERY_TIMEOUT_S)
            )
        await wait_for(lambda: len(receiver.dtmf) >= len(tones), what="every DTMF tone")
        await settle()
        assert receiver.dtmf == [Dtmf(code, digit, sender.identity) for code, digit in tones]
        # DTMF is not a user packet.
        assert receiver.received == []


# -- resume in the middle of a burst ----------------------------------------------------------

# 1 000 packets of 8 000 bytes keep the reliable queue at its high-water mark for seconds on
# loopback, so the signal drop, the resume and the sends after it all fall inside the burst
# (asserted below); with tiny packets the whole burst is queued before the drop is noticed.
RESUME_PAYLOAD_BYTES = 8_000
DROP_AT = 300


def _resume_payload(i: int) -> bytes:
    return _burst_payload(i).ljust(RESUME_PAYLOAD_BYTES, b".")


async def _burst_across_a_resume(
    lk: Peer, sdk: Peer, drop: Callable[[], Awaitable[None] | None]
) -> None:
    """lk sends :data:`BURST` reliable packets to sdk and calls ``drop`` before packet
    :data:`DROP_AT`; sdk must get all of them once, in order, and lk must have resumed (not
    reconnected from scratch) while the burst was still going."""
    room = lk.room
    sid = lk.local.sid
    sent = 0
    marks: dict[str, int] = {}
    events: list[str] = []

    def on(name: str) -> Callable[..., None]:
        def handler(*_: object) -> None:
            events.append(name)
            marks.setdefault(name, sent)

        return handler

    for name in ("reconnecting", "reconnected", "disconnected"):
        room.on(name, on(name))
    expected = [_resume_payload(i) for i in range(BURST)]
    started = time.monotonic()
    for i, payload in enumerate(expected):
        if i == DROP_AT:
            result = drop()
            if result is not None:
                await result
        await lk.publish(payload, topic="burst")
        sent = i + 1
    elapsed = time.monotonic() - started
    await wait_for(
        lambda: len(sdk.on_topic("burst")) >= BURST,
        DELIVERY_TIMEOUT_S,
        f"{BURST} packets (got {len(sdk.on_topic('burst'))})",
    )
    await wait_for(lambda: "reconnected" in events, RECONNECT_TIMEOUT_S, f"resumed; saw {events}")
    await settle(1.0)

    got = [r.data for r in sdk.on_topic("burst")]
    assert got == expected, _diff(got, expected)
    assert events == ["reconnecting", "reconnected"]
    # The resume happened inside the burst: packets were sent before it, and after it.
    assert DROP_AT <= marks["reconnecting"] <= marks["reconnected"] < BURST, (marks, elapsed)
    assert room.connection_state == rtc.ConnectionState.CONN_CONNECTED
    # Same session (a resume, not a full reconnect): same SID on both sides.
    assert lk.local.sid == sid
    assert sdk.room.remote_participants[LK].sid == sid
    await lk.publish(b"after", topic="after")
    await wait_for(lambda: sdk.on_topic("after"), what="a packet after the resume")
    print(f"burst across a resume: {BURST} x {RESUME_PAYLOAD_BYTES} B in {elapsed:.2f} s, {marks}")


async def test_resume_in_the_middle_of_a_burst_simulate_scenario(
    livekit_server: LocalServer,
) -> None:
    """``simulate_scenario(SIMULATE_SIGNAL_RECONNECT)`` after 300 of 1 000 packets."""
    async with data_room(livekit_server, "data-resume") as room:

        async def drop() -> None:
            await room.lk.room.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)

        await _burst_across_a_resume(room.lk, room.sdk, drop)


async def test_resume_in_the_middle_of_a_burst_with_an_outage(
    livekit_server: LocalServer,
) -> None:
    """``engine.simulate_signal_loss()`` (what SIMULATE_SIGNAL_RECONNECT calls) with the first
    reconnect attempt 1.5 s later: the sends made meanwhile wait for the resume."""
    policy = ReconnectPolicy(delays_s=(scaled(1.5), 0.3, 1.2, 2.7), jitter_s=0.0)
    async with data_room(livekit_server, "data-resume-outage", reconnect_policy=policy) as room:

        def drop() -> None:
            engine = room.lk.room.engine
            assert engine is not None
            engine.simulate_signal_loss()

        await _burst_across_a_resume(room.lk, room.sdk, drop)


async def test_receiving_a_burst_across_our_resume(livekit_server: LocalServer) -> None:
    """The official SDK sends 1 000 packets to lkproto, whose signal drops after it got 300:
    the data channel stays up, so every packet arrives once, in order."""
    async with data_room(livekit_server, "data-resume-recv") as room:
        lk, sdk = room.lk, room.sdk
        events: list[str] = []
        for name in ("reconnecting", "reconnected", "disconnected"):
            lk.room.on(name, lambda *_, name=name: events.append(name))

        def drop_after_300(packet: object) -> None:
            if len(lk.on_topic("burst")) == DROP_AT:
                engine = lk.room.engine
                assert engine is not None
                engine.simulate_signal_loss()

        lk.room.on("data_received", drop_after_300)
        expected = [_resume_payload(i) for i in range(BURST)]
        for payload in expected:
            await sdk.publish(payload, topic="burst")
        await wait_for(
            lambda: len(lk.on_topic("burst")) >= BURST,
            DELIVERY_TIMEOUT_S,
            f"{BURST} packets (got {len(lk.on_topic('burst'))})",
        )
        await wait_for(lambda: "reconnected" in events, RECONNECT_TIMEOUT_S, f"saw {events}")
        await settle(1.0)
        got = [r.data for r in lk.on_topic("burst")]
        assert got == expected, _diff(got, expected)
        assert events == ["reconnecting", "reconnected"]
