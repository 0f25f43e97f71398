"""The in-memory signal peer itself (lkproto.testing.signal_peer), and a Room connected to it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from lkproto import rtc
from lkproto.asyncio import engine as en
from lkproto.asyncio.signal import SignalClosed, Transport
from lkproto.errors import JoinRejectedError, LocalProtocolError, UnauthorizedError
from lkproto.rtc import room as room_module
from lkproto.testing import SignalPeer, scaled
from lkproto.wire import (
    client_info,
    decode_signal_response,
    encode_signal_request,
    join_request,
    pb,
    signal_url_v0,
    signal_url_v1,
    wrap_join_request,
)

URL = "ws://in-memory.invalid"


def v1_url(*, reconnect: bool = False) -> str:
    request = join_request(
        info=client_info(), reconnect=reconnect, participant_sid="PA_1" if reconnect else ""
    )
    return signal_url_v1(URL, wrap_join_request(request))


async def recv(transport: Transport) -> pb.SignalResponse:
    async with asyncio.timeout(scaled(5)):
        frame = await transport.recv()
    return decode_signal_response(frame)


async def test_join_then_requests_are_answered_and_recorded() -> None:
    peer = SignalPeer(ping_interval_s=5, ping_timeout_s=15)
    try:
        transport = await peer.connect(v1_url(), "tok", 1.0)
        join = (await recv(transport)).join
        assert (join.participant.sid, join.ping_interval, join.ping_timeout) == ("PA_1", 5, 15)
        assert peer.current.token == "tok"
        assert not peer.current.resume
        await transport.send(encode_signal_request(pb.SignalRequest(ping_req=pb.Ping(timestamp=7))))
        assert (await recv(transport)).pong_resp.last_ping_timestamp == 7
        meta = pb.UpdateParticipantMetadata(name="n", request_id=3)
        await transport.send(encode_signal_request(pb.SignalRequest(update_metadata=meta)))
        answered = (await recv(transport)).request_response
        assert (answered.request_id, answered.reason) == (3, pb.RequestResponse.OK)
        add = pb.AddTrackRequest(cid="c1", name="mic", type=pb.AUDIO)
        await transport.send(encode_signal_request(pb.SignalRequest(add_track=add)))
        published = (await recv(transport)).track_published
        assert (published.cid, published.track.sid, published.track.name) == ("c1", "TR_1", "mic")
        peer.publish_mode = "UNSUPPORTED_TYPE"
        await transport.send(encode_signal_request(pb.SignalRequest(add_track=add)))
        refused = (await recv(transport)).request_response
        assert refused.reason == pb.RequestResponse.UNSUPPORTED_TYPE
        assert refused.add_track.cid == "c1"
        async with asyncio.timeout(scaled(5)):
            await peer.wait_for_request("add_track", 2)
        assert [r.WhichOneof("message") for r in peer.current.requests] == [
            "ping_req",
            "update_metadata",
            "add_track",
            "add_track",
        ]
    finally:
        await peer.close()


async def test_leave_drop_and_client_close_end_the_socket() -> None:
    peer = SignalPeer()
    try:
        transport = await peer.connect(v1_url(), "tok", 1.0)
        await recv(transport)
        peer.current.leave(pb.LeaveRequest.RESUME, pb.CONNECTION_TIMEOUT)
        leave = (await recv(transport)).leave
        assert (leave.action, leave.reason) == (pb.LeaveRequest.RESUME, pb.CONNECTION_TIMEOUT)
        for _ in range(2):  # and it stays closed
            with pytest.raises(SignalClosed):
                await recv(transport)
        with pytest.raises(SignalClosed):
            await transport.send(b"x")
        second = await peer.connect(v1_url(), "tok", 1.0)
        await recv(second)
        peer.current.drop()
        with pytest.raises(SignalClosed, match="dropped"):
            await recv(second)
        third = await peer.connect(v1_url(), "tok", 1.0)
        await third.close()
        assert peer.current.closed
        assert peer.participant_sid == "PA_3"
    finally:
        await peer.close()


async def test_resume_is_answered_or_refused_with_leave_first() -> None:
    peer = SignalPeer()
    try:
        await peer.connect(v1_url(), "tok", 1.0)
        resumed = await peer.connect(v1_url(reconnect=True), "tok", 1.0)
        assert (await recv(resumed)).WhichOneof("message") == "reconnect"
        assert peer.current.resume
        peer.refuse_next_resume()
        refused = await peer.connect(v1_url(reconnect=True), "tok", 1.0)
        leave = (await recv(refused)).leave
        assert (leave.action, leave.reason) == (pb.LeaveRequest.RECONNECT, pb.STATE_MISMATCH)
        with pytest.raises(SignalClosed):
            await recv(refused)
        assert peer.participant_sid == "PA_1"  # resumes keep the session
    finally:
        await peer.close()


async def test_rejections_bad_urls_and_closed_peer() -> None:
    peer = SignalPeer()
    peer.reject_next_join(401, "no")
    with pytest.raises(UnauthorizedError):
        await peer.connect(v1_url(), "tok", 1.0)
    with pytest.raises(JoinRejectedError) as info:
        await peer.connect(signal_url_v0(URL), "tok", 1.0)
    assert info.value.status == 404
    with pytest.raises(LocalProtocolError):
        await peer.connect(f"{URL}/rtc/v1?x=1", "tok", 1.0)
    with pytest.raises(LocalProtocolError):
        await peer.connect(f"{URL}/rtc/v1?join_request=%%%", "tok", 1.0)
    with pytest.raises(LocalProtocolError):
        _ = peer.current
    await peer.close()
    with pytest.raises(LocalProtocolError):
        await peer.connect(v1_url(), "tok", 1.0)


async def test_a_room_connects_to_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = SignalPeer(identity="alice")
    build = room_module._engine_options

    def with_peer(opts: Any) -> en.EngineOptions:
        return dataclasses.replace(
            build(opts), transport_factory=peer.connect, ice_addresses=("127.0.0.1",)
        )

    monkeypatch.setattr(room_module, "_engine_options", with_peer)
    room = rtc.Room()
    try:
        async with asyncio.timeout(scaled(10)):
            await room.connect(URL, "token")
        assert room.isconnected()
        assert room.local_participant.identity == "alice"
        assert room.name == "lkproto-test"
        async with asyncio.timeout(scaled(10)):
            await room.local_participant.publish_data(b"ping", topic="t")
            await peer.wait_until(lambda: bool(peer.data_packets))
        assert peer.data_packets[0][1].user.topic == "t"
    finally:
        await room.disconnect()
        await peer.close()
    assert peer.requests("leave")


async def test_send_raw_delivers_any_frame_and_unread_counts_the_backlog() -> None:
    peer = SignalPeer()
    try:
        transport = await peer.connect(v1_url(), "tok", 1.0)
        assert peer.current.unread == 1  # the JoinResponse, not read yet
        await recv(transport)
        assert peer.current.unread == 0
        peer.current.send_raw(b"\xff\x01garbage")
        peer.current.send_raw(bytearray(b"\x0a"))
        peer.current.send_raw("text")
        assert peer.current.unread == 3
        async with asyncio.timeout(scaled(5)):
            assert await transport.recv() == b"\xff\x01garbage"
            frame = await transport.recv()
            assert (frame, type(frame)) == (b"\x0a", bytes)
            assert await transport.recv() == "text"
        peer.current.drop()
        peer.current.send_raw(b"late")  # dropped: the socket is closed
        with pytest.raises(SignalClosed):
            async with asyncio.timeout(scaled(5)):
                await transport.recv()
    finally:
        await peer.close()
