"""livekit.rtc names added for issue 17 item 4, proved against livekit-server v1.13.5.

Track subscription permissions: lkproto publishes a tone after allowing only one participant to
subscribe. The allowed participant (the official SDK) is subscribed; the other (lkproto, with a
wire trace) is told by the server ``SubscriptionPermissionUpdate{allowed=false}`` and is not
subscribed; once the publisher allows everyone, the server says ``allowed=true`` and subscribes
it. Legacy transcription: what lkproto's ``publish_transcription`` sends as an agent (the server
forwards these packets only from agents) reaches the official SDK's ``transcription_received``
with the same segments and the transcribed publication.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import LocalServer, scaled
from lkproto.wire import pb
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    connect_official,
    connect_ours,
    disconnect_all,
    make_token,
    unique_room,
    wait_for,
)
from tests.interop.test_media import publish_tone

pytestmark = pytest.mark.interop

SUBSCRIBE_TIMEOUT_S = 20.0


class _Nobody:
    track_publications: dict[str, object] = {}  # noqa: RUF012 - never mutated


_NOBODY: Any = _Nobody()


class _PermissionTap:
    """Trace callback keeping the ``subscription_permission_update`` messages received."""

    def __init__(self) -> None:
        self.updates: list[pb.SubscriptionPermissionUpdate] = []

    def __call__(
        self, direction: str, channel: str, message: object, raw: bytes, now: float
    ) -> None:
        if (
            direction == "<"
            and channel == "signal"
            and isinstance(message, pb.SignalResponse)
            and message.WhichOneof("message") == "subscription_permission_update"
        ):
            self.updates.append(message.subscription_permission_update)

    def said(self, track_sid: str, allowed: bool) -> bool:
        return any(u.track_sid == track_sid and u.allowed == allowed for u in self.updates)


async def test_denied_participant_cannot_subscribe_until_allowed(
    livekit_server: LocalServer,
) -> None:
    room_name = unique_room("permissions")
    publisher = allowed = denied = None
    feeder = None
    try:
        publisher = await connect_ours(livekit_server, "publisher", room_name)
        publisher.local_participant.set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[
                rtc.ParticipantTrackPermission(participant_identity="allowed", allow_all=True)
            ],
        )
        allowed_subscribed: list[str] = []
        allowed = lrtc.Room()
        allowed.on(
            "track_subscribed", lambda track, pub, participant: allowed_subscribed.append(pub.sid)
        )
        await connect_official(livekit_server, "allowed", room_name, room=allowed)

        tap = _PermissionTap()
        denied_subscribed: list[str] = []
        denied = rtc.Room()
        denied.on(
            "track_subscribed", lambda track, pub, participant: denied_subscribed.append(pub.sid)
        )
        options = rtc.RoomOptions(
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]), trace=tap
        )
        token = make_token(livekit_server, "denied", room_name)
        await asyncio.wait_for(
            denied.connect(livekit_server.url, token, options), scaled(CONNECT_TIMEOUT_S)
        )

        feeder = await publish_tone(rtc, publisher, 440.0)
        sid = feeder.publication.sid
        await wait_for(lambda: sid in allowed_subscribed, SUBSCRIBE_TIMEOUT_S, "allowed subscribed")
        await wait_for(lambda: tap.said(sid, allowed=False), SUBSCRIBE_TIMEOUT_S, "denial reported")
        assert sid not in denied_subscribed
        remote = denied.remote_participants["publisher"].track_publications[sid]
        assert remote.track is None

        publisher.local_participant.set_track_subscription_permissions(allow_all_participants=True)
        await wait_for(lambda: tap.said(sid, allowed=True), SUBSCRIBE_TIMEOUT_S, "grant reported")
        await wait_for(lambda: sid in denied_subscribed, SUBSCRIBE_TIMEOUT_S, "denied subscribed")
    finally:
        if feeder is not None:
            await feeder.stop()
        await disconnect_all(publisher, allowed, denied)


async def test_publish_transcription_reaches_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    room_name = unique_room("transcription")
    ours = theirs = None
    feeder = None
    try:
        received: list[tuple[Any, Any, Any]] = []
        theirs = lrtc.Room()
        theirs.on(
            "transcription_received",
            lambda segments, participant, publication: received.append(
                (segments, participant, publication)
            ),
        )
        await connect_official(livekit_server, "listener", room_name, room=theirs)
        # livekit-server forwards transcription packets only from agents (PROTOCOL-MAP §3).
        ours = await connect_ours(livekit_server, "speaker", room_name, kind="agent")
        feeder = await publish_tone(rtc, ours, 440.0)
        sid = feeder.publication.sid
        await wait_for(
            lambda: sid in theirs.remote_participants.get("speaker", _NOBODY).track_publications,
            what="speaker's track seen",
        )
        segment = rtc.TranscriptionSegment(
            id="seg-1", text="hello there", start_time=0, end_time=900, language="en", final=True
        )
        await ours.local_participant.publish_transcription(
            rtc.Transcription(participant_identity="speaker", track_sid=sid, segments=[segment])
        )
        await wait_for(lambda: received, what="transcription received")
        segments, participant, _ = received[0]
        assert participant is not None
        assert participant.identity == "speaker"
        assert received[0][2] is not None
        assert received[0][2].sid == sid
        assert [(s.id, s.text, s.language, s.final) for s in segments] == [
            ("seg-1", "hello there", "en", True)
        ]
    finally:
        if feeder is not None:
            await feeder.stop()
        await disconnect_all(ours, theirs)


async def test_perform_rpc_max_round_trip_latency_bounds_the_ack_wait(
    livekit_server: LocalServer,
) -> None:
    """A call to an identity that is not in the room is never acked (the server drops it):
    it fails with CONNECTION_TIMEOUT after ``max_round_trip_latency``, well before the default
    7 s ack deadline and the 30 s response timeout."""
    room_name = unique_room("rpc-latency")
    ours = None
    try:
        ours = await connect_ours(livekit_server, "caller", room_name)
        call = ours.local_participant.perform_rpc(
            destination_identity="nobody-here",
            method="m",
            payload="",
            response_timeout=30.0,
            max_round_trip_latency=0.5,
        )
        with pytest.raises(rtc.RpcError) as info:
            # Below the default 7 s ack deadline, so the default could not pass.
            await asyncio.wait_for(call, 6.0)
        assert info.value.code == rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT
    finally:
        await disconnect_all(ours)
