"""DataTrackDriver over a fake engine (lkproto.asyncio.data_track), and the public classes
of lkproto.rtc.data_track on top of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, cast

import pytest

from lkproto.asyncio import data_track as ad
from lkproto.core import data_track as cd
from lkproto.core import signal as sg
from lkproto.core.e2ee import KeyOptions, KeyProvider
from lkproto.errors import ConnectError, LocalProtocolError, RequestRejectedError
from lkproto.rtc import data_track as rd
from lkproto.wire import data_track as wd
from lkproto.wire import pb


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[pb.SignalRequest] = []
        self.sent: list[list[bytes]] = []
        self.accept = True
        self.data_track_sink: Callable[[bytes], None] | None = None

    def send_signal(self, request: pb.SignalRequest) -> None:
        self.requests.append(request)

    def send_data_track(self, packets: list[bytes]) -> bool:
        if self.accept:
            self.sent.append(packets)
        return self.accept


def _driver(engine: FakeEngine, events: list[cd.AnyDataTrackEvent]) -> ad.DataTrackDriver:
    return ad.DataTrackDriver(cast("Any", engine), events.append)


def _message(**fields: Any) -> sg.MessageReceived:
    response = pb.SignalResponse(**fields)
    kind = response.WhichOneof("message")
    assert kind is not None
    return sg.MessageReceived(kind=kind, message=response)


def _accepted(handle: int, sid: str, name: str = "t") -> sg.MessageReceived:
    info = pb.DataTrackInfo(pub_handle=handle, sid=sid, name=name)
    return _message(publish_data_track_response=pb.PublishDataTrackResponse(info=info))


def _refused(handle: int, reason: int) -> sg.RequestAnswered:
    rr = pb.RequestResponse(
        reason=reason,  # type: ignore[arg-type]
        message="no",
        publish_data_track=pb.PublishDataTrackRequest(pub_handle=handle),
    )
    return sg.RequestAnswered(request_id=0, reason=rr.reason, message_text="no", message=rr)


async def test_publish_push_and_unpublish() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    assert engine.data_track_sink is not None
    task = asyncio.ensure_future(driver.publish("telemetry"))
    await asyncio.sleep(0)
    (request,) = engine.requests
    handle = request.publish_data_track_request.pub_handle
    driver.on_signal(_accepted(handle, "DTR_1", "telemetry"))
    got_handle, info = await asyncio.wait_for(task, 5)
    assert (got_handle, info.sid) == (handle, "DTR_1")
    track = rd.LocalDataTrack(
        rd.DataTrackInfo(sid="DTR_1", name="telemetry", uses_e2ee=False), handle, driver
    )
    track.try_push(rd.DataTrackFrame(payload=b"x" * 40_000, user_timestamp=9))
    packets = [wd.decode_packet(p) for p in engine.sent[0]]
    assert len(packets) == 3
    assert {p.user_timestamp for p in packets} == {9}
    engine.accept = False
    with pytest.raises(rd.PushFrameError, match="dropped"):
        track.try_push(rd.DataTrackFrame(payload=b"y"))
    await track.unpublish()
    assert engine.requests[-1].unpublish_data_track_request.pub_handle == handle
    assert not track.is_published()
    with pytest.raises(rd.PushFrameError, match="not published"):
        track.try_push(rd.DataTrackFrame(payload=b"z"))
    assert "telemetry" in repr(track)


async def test_refusal_and_timeout_raise_request_rejected() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    task = asyncio.ensure_future(driver.publish("dup"))
    await asyncio.sleep(0)
    handle = engine.requests[-1].publish_data_track_request.pub_handle
    driver.on_signal(_refused(handle, pb.RequestResponse.DUPLICATE_NAME))
    with pytest.raises(RequestRejectedError) as info:
        await asyncio.wait_for(task, 5)
    assert info.value.reason == "DUPLICATE_NAME"
    with pytest.raises(RequestRejectedError) as timeout:
        await driver.publish("slow", timeout_s=0.01)
    assert timeout.value.reason == "TIMEOUT"
    # A late acceptance of the abandoned request is taken back at once.
    late = engine.requests[-1].publish_data_track_request.pub_handle
    driver.on_signal(_accepted(late, "DTR_late"))
    assert engine.requests[-1].unpublish_data_track_request.pub_handle == late


def _remote(*sids: str, encryption: int = pb.Encryption.NONE) -> list[pb.ParticipantInfo]:
    tracks = [
        pb.DataTrackInfo(sid=s, name=s, pub_handle=1, encryption=encryption)  # type: ignore[arg-type]
        for s in sids
    ]
    return [pb.ParticipantInfo(identity="bob", sid="PA_b", data_tracks=tracks)]


async def test_subscribe_receive_and_end() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    driver.sync_remotes(_remote("DTR_r"))
    (published,) = events
    assert isinstance(published, cd.RemoteDataTrackPublished)
    remote = rd.RemoteDataTrack(
        rd.DataTrackInfo(sid="DTR_r", name="r", uses_e2ee=False), "bob", driver
    )
    assert remote.is_published()
    stream = remote.subscribe(buffer_size=2)
    second = remote.subscribe()
    assert len(engine.requests) == 1  # one subscription for both readers
    assert engine.requests[0].update_data_subscription.updates[0].subscribe
    driver.on_signal(
        _message(
            data_track_subscriber_handles=pb.DataTrackSubscriberHandles(
                sub_handles={7: pb.DataTrackSubscriberHandles.PublishedDataTrack(track_sid="DTR_r")}
            )
        )
    )
    sink = engine.data_track_sink
    assert sink is not None
    for n in range(3):
        (packet,) = wd.packetize(
            bytes([n]), handle=7, first_sequence=n, frame_number=n, timestamp=0, user_timestamp=n
        )
        sink(packet)
    # buffer_size=2: the oldest of three frames was dropped for the first reader only.
    assert [(await stream.read()) for _ in range(2)] == [
        rd.DataTrackFrame(payload=b"\x01", user_timestamp=1),
        rd.DataTrackFrame(payload=b"\x02", user_timestamp=2),
    ]
    assert (await second.read()) == rd.DataTrackFrame(payload=b"\x00", user_timestamp=0)
    second.close()
    assert len(engine.requests) == 1
    driver.set_max_partial_frames("DTR_r", 3)
    remote.set_pipeline_options(max_partial_frames=0)  # clamped to 1, as upstream
    driver.sync_remotes([])  # the track went away: its streams end normally
    assert isinstance(events[-1], cd.RemoteDataTrackUnpublished)
    assert await asyncio.wait_for(stream.read(), 5) is None
    assert not remote.is_published()
    assert "bob" in repr(remote)


async def test_streams_that_cannot_start_raise_subscribe_error() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    driver.sync_remotes(_remote("DTR_enc", encryption=pb.Encryption.GCM))
    encrypted = rd.RemoteDataTrack(
        rd.DataTrackInfo(sid="DTR_enc", name="e", uses_e2ee=True), "bob", driver
    )
    with pytest.raises(rd.SubscribeDataTrackError, match="encrypted"):
        async for _ in encrypted.subscribe():
            pass
    gone = rd.RemoteDataTrack(rd.DataTrackInfo(sid="DTR_x", name="x", uses_e2ee=False), "b", driver)
    with pytest.raises(rd.SubscribeDataTrackError, match="not published"):
        await gone.subscribe().read()
    assert engine.requests == []


async def test_close_fails_waiters_and_ends_readers() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    driver.sync_remotes(_remote("DTR_r"))
    queue = driver.subscribe("DTR_r")
    task = asyncio.ensure_future(driver.publish("t"))
    await asyncio.sleep(0)
    driver.close()
    with pytest.raises(ConnectError):
        await asyncio.wait_for(task, 5)
    assert await asyncio.wait_for(queue.get(), 5) is None
    assert queue.error == "the room disconnected"
    assert engine.data_track_sink is None
    with pytest.raises(ConnectError):
        await driver.publish("again")
    with pytest.raises(LocalProtocolError):
        driver.push(1, b"x", None)
    assert not driver.is_published(1)
    assert not driver.is_remote_published("DTR_r")


async def test_full_reconnect_republishes_ours_and_resubscribes() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    task = asyncio.ensure_future(driver.publish("t"))
    await asyncio.sleep(0)
    handle = engine.requests[-1].publish_data_track_request.pub_handle
    driver.on_signal(_accepted(handle, "DTR_mine"))
    await asyncio.wait_for(task, 5)
    track = rd.LocalDataTrack(
        rd.DataTrackInfo(sid="DTR_mine", name="t", uses_e2ee=False), handle, driver
    )
    driver.sync_remotes(_remote("DTR_r"))
    driver.subscribe("DTR_r")
    waiting = asyncio.ensure_future(driver.publish("late"))
    await asyncio.sleep(0)
    engine.requests.clear()
    driver.session_replaced()
    # The publish the old session never answered fails as disconnected, as upstream.
    with pytest.raises(ConnectError):
        await asyncio.wait_for(waiting, 5)
    again, resubscribe = engine.requests
    assert again.publish_data_track_request.pub_handle == handle
    assert again.publish_data_track_request.name == "t"
    assert resubscribe.update_data_subscription.updates[0].track_sid == "DTR_r"
    assert track.is_published()
    with pytest.raises(rd.PushFrameError, match="again"):
        track.try_push(rd.DataTrackFrame(payload=b"x"))
    driver.on_signal(_accepted(handle, "DTR_new"))
    assert isinstance(events[-1], cd.LocalDataTrackRepublished)
    assert track.info.sid == "DTR_new"
    track.try_push(rd.DataTrackFrame(payload=b"x"))
    assert "DTR_new" in repr(track)


async def test_encrypted_room_publishes_encrypted_and_reads_encrypted_tracks() -> None:
    keys = KeyProvider(KeyOptions(ratchet_window_size=1), shared_key=b"shared")
    cipher = cd.DataTrackCipher(keys, local_identity=lambda: "me", random_bytes=os.urandom)
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = ad.DataTrackDriver(
        cast("Any", engine), events.append, manager=cd.DataTrackManager(cipher=cipher)
    )
    task = asyncio.ensure_future(driver.publish("enc"))
    await asyncio.sleep(0)
    assert engine.requests[-1].publish_data_track_request.encryption == pb.Encryption.GCM
    # The subscriber side: an encrypted remote track is readable now.
    driver.sync_remotes(_remote("DTR_enc", encryption=pb.Encryption.GCM))
    queue = driver.subscribe("DTR_enc")
    driver.on_signal(
        _message(
            data_track_subscriber_handles=pb.DataTrackSubscriberHandles(
                sub_handles={
                    4: pb.DataTrackSubscriberHandles.PublishedDataTrack(track_sid="DTR_enc")
                }
            )
        )
    )
    sink = engine.data_track_sink
    assert sink is not None
    bob = cd.DataTrackCipher(keys, local_identity=lambda: "bob", random_bytes=os.urandom)
    sealed, ext = bob.seal(b"hello")
    (packet,) = wd.packetize(
        sealed, handle=4, first_sequence=0, frame_number=0, timestamp=0, e2ee=ext
    )
    sink(packet)
    frame = await asyncio.wait_for(queue.get(), 5)
    assert frame is not None
    assert frame.payload == b"hello"
    # A frame under a key this side must first ratchet to: dropped while the ratchets are
    # derived off the loop, opened once they are.
    ahead = KeyProvider(KeyOptions(ratchet_window_size=1), shared_key=b"shared")
    ahead.ratchet_shared_key(0)
    later, ext = cd.DataTrackCipher(
        ahead, local_identity=lambda: "bob", random_bytes=os.urandom
    ).seal(b"later")
    for number in (1, 2):
        (packet,) = wd.packetize(
            later, handle=4, first_sequence=number, frame_number=number, timestamp=0, e2ee=ext
        )
        if number == 2:
            await asyncio.wait_for(asyncio.gather(*driver._deriving.values()), 10)
        sink(packet)
    frame = await asyncio.wait_for(queue.get(), 5)
    assert frame is not None
    assert frame.payload == b"later"
    assert driver.manager.undecryptable_frames == 1
    task.cancel()


def _left_replaced(identity: str, participant_sid: str) -> sg.ParticipantsUpdated:
    gone = pb.ParticipantInfo(
        identity=identity,
        sid=participant_sid,
        state=pb.ParticipantInfo.DISCONNECTED,
        disconnect_reason=pb.DUPLICATE_IDENTITY,
    )
    return sg.ParticipantsUpdated(
        participants=(gone,), message=pb.ParticipantUpdate(participants=[gone])
    )


def _bob(participant_sid: str, sid: str) -> list[pb.ParticipantInfo]:
    track = pb.DataTrackInfo(sid=sid, name="r", pub_handle=1)
    return [pb.ParticipantInfo(identity="bob", sid=participant_sid, data_tracks=[track])]


def _handles_message(handle: int, sid: str) -> sg.MessageReceived:
    published = pb.DataTrackSubscriberHandles.PublishedDataTrack(track_sid=sid)
    return _message(
        data_track_subscriber_handles=pb.DataTrackSubscriberHandles(sub_handles={handle: published})
    )


async def test_publisher_full_reconnect_keeps_the_stream() -> None:
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    driver.sync_remotes(_bob("PA_old", "DTR_old"))
    remote = rd.RemoteDataTrack(
        rd.DataTrackInfo(sid="DTR_old", name="r", uses_e2ee=False), "bob", driver
    )
    stream = remote.subscribe()
    driver.on_signal(_handles_message(3, "DTR_old"))
    sink = engine.data_track_sink
    assert sink is not None
    (packet,) = wd.packetize(b"a", handle=3, first_sequence=0, frame_number=0, timestamp=0)
    sink(packet)
    # The old session leaves (DUPLICATE_IDENTITY), then the new one publishes the same name.
    driver.on_signal(_left_replaced("bob", "PA_old"))
    driver.sync_remotes([])
    assert remote.is_published()
    driver.sync_remotes(_bob("PA_new", "DTR_new"))
    assert [type(e) for e in events] == [cd.RemoteDataTrackPublished, cd.RemoteDataTrackRepublished]
    assert remote.info.sid == "DTR_new"
    assert remote.is_published()
    (update,) = engine.requests[-1].update_data_subscription.updates
    assert (update.track_sid, update.subscribe) == ("DTR_new", True)
    driver.on_signal(_handles_message(5, "DTR_new"))
    (packet,) = wd.packetize(b"b", handle=5, first_sequence=0, frame_number=0, timestamp=0)
    sink(packet)
    assert [await stream.read(), await stream.read()] == [
        rd.DataTrackFrame(payload=b"a"),
        rd.DataTrackFrame(payload=b"b"),
    ]
    stream.close()  # the last reader unsubscribes from the track under its new SID
    (update,) = engine.requests[-1].update_data_subscription.updates
    assert (update.track_sid, update.subscribe) == ("DTR_new", False)
    driver.close()


async def test_held_track_ends_when_its_publisher_does_not_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cd, "REMOTE_REPUBLISH_GRACE_S", 0.01)
    engine, events = FakeEngine(), cast("list[cd.AnyDataTrackEvent]", [])
    driver = _driver(engine, events)
    driver.sync_remotes(_bob("PA_old", "DTR_old"))
    remote = rd.RemoteDataTrack(
        rd.DataTrackInfo(sid="DTR_old", name="r", uses_e2ee=False), "bob", driver
    )
    stream = remote.subscribe()
    driver.on_signal(_left_replaced("bob", "PA_old"))
    driver.sync_remotes([])
    assert [type(e) for e in events] == [cd.RemoteDataTrackPublished]  # held, not ended yet
    # The driver's timer ends it once the grace has passed.
    assert await asyncio.wait_for(stream.read(), 5) is None
    assert events[1:] == [cd.RemoteDataTrackUnpublished(publisher_identity="bob", sid="DTR_old")]
    assert not remote.is_published()
    driver.close()
