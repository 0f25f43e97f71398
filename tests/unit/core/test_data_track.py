"""Data-track state machine (lkproto.core.data_track)."""

from __future__ import annotations

import pytest

from lkproto.core import data_track as cd
from lkproto.core.e2ee import KeyOptions, KeyProvider
from lkproto.errors import LocalProtocolError
from lkproto.wire import data_track as wd
from lkproto.wire import pb


def _manager(**kwargs: object) -> cd.DataTrackManager:
    return cd.DataTrackManager(random_u32=lambda: 1000, **kwargs)  # type: ignore[arg-type]


def _accept(manager: cd.DataTrackManager, handle: int, sid: str) -> list[cd.AnyDataTrackEvent]:
    info = pb.DataTrackInfo(pub_handle=handle, sid=sid, name="n")
    return manager.receive_signal(
        pb.SignalResponse(publish_data_track_response=pb.PublishDataTrackResponse(info=info))
    )


def _refuse(handle: int, reason: int, text: str = "") -> pb.SignalResponse:
    rr = pb.RequestResponse(
        reason=reason,  # type: ignore[arg-type]
        message=text,
        publish_data_track=pb.PublishDataTrackRequest(pub_handle=handle),
    )
    return pb.SignalResponse(request_response=rr)


def test_publish_request_and_acceptance() -> None:
    manager = _manager()
    handle, request = manager.publish("telemetry")
    assert handle == 1
    assert request.publish_data_track_request.pub_handle == 1
    assert request.publish_data_track_request.name == "telemetry"
    assert not manager.is_published(1)
    (event,) = _accept(manager, 1, "DTR_a")
    assert event == cd.PublishAccepted(handle=1, info=event.info)  # type: ignore[union-attr]
    assert manager.is_published(1)
    assert _accept(manager, 1, "DTR_a") == []  # a repeated answer changes nothing


def test_handles_are_unique_and_non_zero() -> None:
    manager = _manager()
    handles = [manager.publish(f"t{i}")[0] for i in range(5)]
    assert handles == [1, 2, 3, 4, 5]
    manager.abandon(3)
    assert manager.publish("again")[0] == 6  # no reuse of a fresh handle
    # A late acceptance of the abandoned request is still reported, to be taken back.
    (late,) = _accept(manager, 3, "DTR_late")
    assert isinstance(late, cd.PublishAccepted)
    assert manager.unpublish(3) is not None


@pytest.mark.parametrize("name", ["", "x" * 257])
def test_invalid_names_are_refused_locally(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="name"):
        _manager().publish(name)


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        (pb.RequestResponse.DUPLICATE_NAME, "DUPLICATE_NAME"),
        (pb.RequestResponse.NOT_ALLOWED, "NOT_ALLOWED"),
        (pb.RequestResponse.INVALID_HANDLE, "INVALID_HANDLE"),
    ],
)
def test_refusals_become_typed_events(reason: int, name: str) -> None:
    manager = _manager()
    handle, _ = manager.publish("t")
    events = manager.receive_signal(_refuse(handle, reason, "why"))
    assert events == [cd.PublishRefused(handle=handle, reason=name, message="why")]
    assert manager.receive_signal(_refuse(handle, reason)) == []
    assert not manager.is_published(handle)


def test_unrelated_request_responses_are_ignored() -> None:
    manager = _manager()
    handle, _ = manager.publish("t")
    ok = pb.RequestResponse(publish_data_track=pb.PublishDataTrackRequest(pub_handle=handle))
    assert manager.receive_request_response(ok) == []
    other = pb.RequestResponse(reason=pb.RequestResponse.NOT_FOUND, mute=pb.MuteTrackRequest())
    assert manager.receive_request_response(other) == []
    assert manager.receive_signal(pb.SignalResponse(refresh_token="t")) == []


def test_packetize_counts_sequences_and_frames() -> None:
    manager = _manager(mtu=100)
    handle, _ = manager.publish("t")
    with pytest.raises(LocalProtocolError, match="not published"):
        manager.packetize(handle, b"x", None, 0.0)
    _accept(manager, handle, "DTR_a")
    first = [wd.decode_packet(p) for p in manager.packetize(handle, bytes(200), 5, 1.0)]
    second = [wd.decode_packet(p) for p in manager.packetize(handle, b"y", None, 2.0)]
    assert [p.sequence for p in first + second] == list(range(len(first) + 1))
    assert {p.frame_number for p in first} == {0}
    assert second[0].frame_number == 1
    assert first[0].timestamp == 1000 + 90_000
    assert second[0].timestamp == 1000 + 180_000
    assert all(p.handle == handle for p in first + second)


def test_unpublish_stops_sending_then_confirms() -> None:
    manager = _manager()
    handle, _ = manager.publish("t")
    _accept(manager, handle, "DTR_a")
    request = manager.unpublish(handle)
    assert request is not None
    assert request.unpublish_data_track_request.pub_handle == handle
    assert manager.unpublish(handle) is None
    assert not manager.is_published(handle)
    response = pb.SignalResponse(
        unpublish_data_track_response=pb.UnpublishDataTrackResponse(
            info=pb.DataTrackInfo(pub_handle=handle, sid="DTR_a")
        )
    )
    assert manager.receive_signal(response) == [
        cd.LocalDataTrackUnpublished(handle=handle, sid="DTR_a")
    ]


def test_server_initiated_unpublish_and_session_reset() -> None:
    manager = _manager()
    h1, _ = manager.publish("a")
    h2, _ = manager.publish("b")
    _accept(manager, h1, "DTR_1")
    _accept(manager, h2, "DTR_2")
    response = pb.SignalResponse(
        unpublish_data_track_response=pb.UnpublishDataTrackResponse(
            info=pb.DataTrackInfo(pub_handle=h1, sid="DTR_1")
        )
    )
    assert manager.receive_signal(response) == [
        cd.LocalDataTrackUnpublished(handle=h1, sid="DTR_1")
    ]
    assert manager.reset_session() == [cd.LocalDataTrackUnpublished(handle=h2, sid="DTR_2")]
    assert not manager.is_published(h2)


def _participant(
    identity: str, *sids: str, state: int = pb.ParticipantInfo.ACTIVE
) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(
        identity=identity,
        sid=f"PA_{identity}",
        state=state,  # type: ignore[arg-type]
        data_tracks=[pb.DataTrackInfo(sid=s, name=s.lower(), pub_handle=1) for s in sids],
    )


def test_sync_remotes_reports_arrivals_and_departures() -> None:
    manager = _manager()
    events = manager.sync_remotes([_participant("bob", "DTR_1", "DTR_2")], now=0.0)
    assert [type(e) for e in events] == [cd.RemoteDataTrackPublished] * 2
    assert manager.sync_remotes([_participant("bob", "DTR_1", "DTR_2")], now=0.0) == []
    events = manager.sync_remotes([_participant("bob", "DTR_2", "DTR_3")], now=0.0)
    assert events[0] == cd.RemoteDataTrackUnpublished(publisher_identity="bob", sid="DTR_1")
    assert isinstance(events[1], cd.RemoteDataTrackPublished)
    assert events[1].info.sid == "DTR_3"
    gone = manager.sync_remotes(
        [_participant("bob", "DTR_2", state=pb.ParticipantInfo.DISCONNECTED)], now=0.0
    )
    assert {e.sid for e in gone if isinstance(e, cd.RemoteDataTrackUnpublished)} == {
        "DTR_2",
        "DTR_3",
    }
    assert not manager.is_remote_published("DTR_2")


def _handles(mapping: dict[int, str]) -> pb.SignalResponse:
    return pb.SignalResponse(
        data_track_subscriber_handles=pb.DataTrackSubscriberHandles(
            sub_handles={
                h: pb.DataTrackSubscriberHandles.PublishedDataTrack(track_sid=s)
                for h, s in mapping.items()
            }
        )
    )


def test_subscription_refcount_and_frames() -> None:
    manager = _manager()
    manager.sync_remotes([_participant("bob", "DTR_1")], now=0.0)
    with pytest.raises(LocalProtocolError, match="no remote data track"):
        manager.subscribe("DTR_x")
    first = manager.subscribe("DTR_1")
    assert first is not None
    (update,) = first.update_data_subscription.updates
    assert (update.track_sid, update.subscribe) == ("DTR_1", True)
    assert manager.subscribe("DTR_1") is None
    assert manager.receive_signal(_handles({9: "DTR_1"})) == []
    packets = wd.packetize(
        bytes(300),
        handle=9,
        first_sequence=0,
        frame_number=0,
        timestamp=0,
        user_timestamp=4,
        mtu=90,
    )
    results = [manager.receive_packet(p) for p in reversed(packets)]
    assert results[-1] == cd.FrameReceived(track_sid="DTR_1", payload=bytes(300), user_timestamp=4)
    assert manager.unsubscribe("DTR_1") is None
    last = manager.unsubscribe("DTR_1")
    assert last is not None
    assert last.update_data_subscription.updates[0].subscribe is False
    assert manager.unsubscribe("DTR_1") is None
    assert manager.receive_packet(packets[0]) is None
    assert manager.unrouted_packets == 1


def test_bad_and_unknown_packets_are_counted_not_raised() -> None:
    manager = _manager()
    assert manager.receive_packet(b"\x00") is None
    assert manager.malformed_packets == 1
    (packet,) = wd.packetize(b"x", handle=5, first_sequence=0, frame_number=0, timestamp=0)
    assert manager.receive_packet(packet) is None
    assert manager.unrouted_packets == 1


def test_resubscribe_and_partial_frame_option() -> None:
    manager = _manager()
    manager.sync_remotes([_participant("bob", "DTR_1", "DTR_2")], now=0.0)
    manager.subscribe("DTR_1")
    manager.set_max_partial_frames("DTR_1", 3)
    manager.set_max_partial_frames("DTR_2", 2)  # not subscribed: accepted, nothing to change
    with pytest.raises(LocalProtocolError):
        manager.set_max_partial_frames("DTR_2", 0)
    manager.reset_session()
    (request,) = manager.resubscribe_requests()
    assert request.update_data_subscription.updates[0].track_sid == "DTR_1"
    # The publisher left while subscribed: the last unsubscribe sends nothing.
    manager.sync_remotes([], now=0.0)
    assert manager.unsubscribe("DTR_1") is None
    with pytest.raises(LocalProtocolError):
        cd.DataTrackManager(mtu=0)


def test_full_reconnect_republishes_with_the_same_handle_and_name() -> None:
    manager = _manager()
    live, _ = manager.publish("live")
    _accept(manager, live, "DTR_old")
    going, _ = manager.publish("going")
    _accept(manager, going, "DTR_going")
    manager.unpublish(going)
    waiting, _ = manager.publish("waiting")
    events, requests = manager.republish_requests()
    # The track being unpublished ends; the unanswered request is forgotten.
    assert events == [cd.LocalDataTrackUnpublished(handle=going, sid="DTR_going")]
    (request,) = requests
    again = request.publish_data_track_request
    assert (again.pub_handle, again.name, again.encryption) == (live, "live", pb.Encryption.NONE)
    # Still published, but no frames until the new session answers (as the official SDK).
    assert manager.is_published(live)
    with pytest.raises(LocalProtocolError, match="again"):
        manager.packetize(live, b"x", None, 0.0)
    assert _accept(manager, waiting, "DTR_w") == []
    assert _accept(manager, live, "DTR_new") == [
        cd.LocalDataTrackRepublished(
            handle=live,
            previous_sid="DTR_old",
            info=pb.DataTrackInfo(pub_handle=live, sid="DTR_new", name="n"),
        )
    ]
    assert manager.local_sid(live) == "DTR_new"
    assert len(manager.packetize(live, b"x", None, 0.0)) == 1
    # A refusal by the new session ends the track.
    manager.republish_requests()
    assert manager.receive_signal(_refuse(live, pb.RequestResponse.DUPLICATE_NAME)) == [
        cd.LocalDataTrackUnpublished(handle=live, sid="DTR_new")
    ]
    assert not manager.is_published(live)
    assert manager.local_sid(live) is None


def _cipher(provider: KeyProvider, identity: str = "me") -> cd.DataTrackCipher:
    counter = iter(range(1, 1_000))
    return cd.DataTrackCipher(
        provider,
        local_identity=lambda: identity,
        random_bytes=lambda n: bytes([next(counter)]) * n,
    )


def test_encrypted_tracks_are_sealed_whole_and_opened_by_the_publisher_key() -> None:
    sender_keys = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=b"secret")
    sender = _manager(cipher=_cipher(sender_keys), mtu=200)
    handle, request = sender.publish("enc")
    assert request.publish_data_track_request.encryption == pb.Encryption.GCM
    info = pb.DataTrackInfo(
        pub_handle=handle, sid="DTR_e", name="enc", encryption=pb.Encryption.GCM
    )
    sender.receive_signal(
        pb.SignalResponse(publish_data_track_response=pb.PublishDataTrackResponse(info=info))
    )
    frame = bytes(range(256)) * 2
    packets = [wd.decode_packet(p) for p in sender.packetize(handle, frame, 7, 0.0)]
    assert len(packets) > 1
    (e2ee,) = {p.e2ee for p in packets}  # every packet repeats the same extension
    assert e2ee is not None
    assert (e2ee.key_index, len(e2ee.iv)) == (0, 12)
    sealed = b"".join(p.payload for p in packets)
    # AES-GCM over the whole frame, no AAD: ciphertext plus the 16-byte tag.
    assert len(sealed) == len(frame) + 16
    ring = sender_keys.handler_for("me")
    key = None if ring is None else ring.key(0)
    assert key is not None
    assert sender_keys.crypto.aes_gcm_decrypt(key, e2ee.iv, sealed, b"") == frame

    def receiver(key: bytes) -> cd.DataTrackManager:
        keys = KeyProvider(KeyOptions(ratchet_window_size=0), shared_key=key)
        manager = _manager(cipher=_cipher(keys, "you"))
        participant = pb.ParticipantInfo(identity="me", sid="PA_m", data_tracks=[info])
        manager.sync_remotes([participant], now=0.0)
        manager.subscribe("DTR_e")
        manager.receive_signal(_handles({3: "DTR_e"}))
        return manager

    def relay(manager: cd.DataTrackManager) -> list[cd.FrameReceived | None]:
        raw = sender.packetize(handle, frame, 7, 0.0)
        return [manager.receive_packet(_rehandle(p, 3)) for p in raw]

    good = receiver(b"secret")
    assert relay(good)[-1] == cd.FrameReceived(track_sid="DTR_e", payload=frame, user_timestamp=7)
    # A wrong key drops the frame (counted) and the subscription goes on, as upstream.
    wrong = receiver(b"other")
    assert relay(wrong)[-1] is None
    assert wrong.undecryptable_frames == 1
    # A frame of an encrypted track without the E2EE extension is dropped too.
    (plain,) = wd.packetize(b"clear", handle=3, first_sequence=50, frame_number=50, timestamp=0)
    assert good.receive_packet(plain) is None
    assert good.undecryptable_frames == 1


def _rehandle(packet: bytes, handle: int) -> bytes:
    # The server rewrites the publisher's handle into the subscriber's (PROTOCOL-MAP §12).
    return packet[:2] + handle.to_bytes(2, "big") + packet[4:]


def test_cipher_without_key_refuses_and_defers_ratchet_derivation() -> None:
    empty = KeyProvider(KeyOptions(ratchet_window_size=1))
    manager = _manager(cipher=_cipher(empty))
    handle, _ = manager.publish("enc")
    info = pb.DataTrackInfo(
        pub_handle=handle, sid="DTR_e", name="enc", encryption=pb.Encryption.GCM
    )
    manager.receive_signal(
        pb.SignalResponse(publish_data_track_response=pb.PublishDataTrackResponse(info=info))
    )
    with pytest.raises(LocalProtocolError, match="no end-to-end encryption key"):
        manager.packetize(handle, b"x", None, 0.0)
    # With a key but a frame sealed under a ratchet of it: the first attempt only asks for the
    # derivation (done off the loop by the driver); after it, the ratchet opens the frame.
    keys = KeyProvider(KeyOptions(ratchet_window_size=1), shared_key=b"k")
    cipher = _cipher(keys)
    ratcheted = KeyProvider(KeyOptions(ratchet_window_size=1), shared_key=b"k")
    ratcheted.ratchet_shared_key(0)
    sealed, ext = _cipher(ratcheted).seal(b"frame")
    assert cipher.open("me", sealed, ext) is None
    assert cipher.take_derivations() == [("me", 0)]
    assert cipher.take_derivations() == []
    cipher.derive("me", 0)
    assert cipher.open("me", sealed, ext) == b"frame"


# -- a remote publisher's full reconnect -------------------------------------------------------


def _session(identity: str, participant_sid: str, *tracks: tuple[str, str]) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(
        identity=identity,
        sid=participant_sid,
        state=pb.ParticipantInfo.ACTIVE,
        data_tracks=[pb.DataTrackInfo(sid=s, name=n, pub_handle=1) for s, n in tracks],
    )


def _frame(handle: int, payload: bytes) -> bytes:
    (packet,) = wd.packetize(payload, handle=handle, first_sequence=0, frame_number=0, timestamp=0)
    return packet


def test_replaced_publisher_keeps_its_track_and_subscription() -> None:
    manager = _manager()
    manager.sync_remotes([_session("bob", "PA_old", ("DTR_1", "telemetry"))], now=0.0)
    assert manager.subscribe("DTR_1") is not None
    manager.set_max_partial_frames("DTR_1", 3)
    manager.receive_signal(_handles({4: "DTR_1"}))
    # The old session leaves with DUPLICATE_IDENTITY in an update of its own.
    assert manager.sync_remotes([], now=100.0, replaced={"bob"}) == []
    assert manager.is_remote_published("DTR_1")
    assert manager.get_timer() == 100.0 + cd.REMOTE_REPUBLISH_GRACE_S
    assert manager.resubscribe_requests() == []  # nothing to ask of a session that is gone
    assert manager.receive_packet(_frame(4, b"stale")) is None  # its handle died with it
    assert manager.subscribe("DTR_1") is None  # a second reader waits for the track too
    # The new session publishes it again under a new SID; other tracks are new ones.
    new = _session("bob", "PA_new", ("DTR_2", "telemetry"), ("DTR_3", "other"))
    events = manager.sync_remotes([new], now=101.0)
    assert events[0] == cd.RemoteDataTrackRepublished(
        publisher_identity="bob",
        publisher_sid="PA_new",
        previous_sid="DTR_1",
        info=new.data_tracks[0],
    )
    assert [type(e) for e in events[1:]] == [cd.RemoteDataTrackPublished]
    assert manager.get_timer() is None
    assert manager.resolve_sid("DTR_1") == "DTR_2"
    assert not manager.is_remote_published("DTR_1")
    request = manager.resubscribe_request("DTR_2")
    assert request is not None
    (update,) = request.update_data_subscription.updates
    assert (update.track_sid, update.subscribe) == ("DTR_2", True)
    assert manager.resubscribe_request("DTR_3") is None  # no readers
    manager.receive_signal(_handles({7: "DTR_2"}))
    assert manager.receive_packet(_frame(7, b"hi")) == cd.FrameReceived(
        track_sid="DTR_2", payload=b"hi", user_timestamp=None
    )
    # Both readers and the reassembly setting carried over.
    assert manager.unsubscribe("DTR_2") is None
    assert manager.unsubscribe("DTR_2") is not None
    # A second full reconnect chains: the first SID still resolves to the current one.
    manager.sync_remotes([_session("bob", "PA_3", ("DTR_4", "telemetry"))], now=102.0)
    assert manager.resolve_sid("DTR_1") == "DTR_4"


def test_max_partial_frames_carry_over_to_the_new_sid() -> None:
    manager = _manager()
    manager.sync_remotes([_session("bob", "PA_old", ("DTR_1", "t"))], now=0.0)
    manager.subscribe("DTR_1")
    manager.set_max_partial_frames("DTR_1", 3)
    manager.sync_remotes([_session("bob", "PA_new", ("DTR_2", "t"))], now=1.0)
    manager.receive_signal(_handles({7: "DTR_2"}))
    # Three interleaved incomplete frames: all complete only if 3 partials are kept.
    frames = [
        wd.packetize(
            bytes(200), handle=7, first_sequence=n * 10, frame_number=n, timestamp=0, mtu=90
        )
        for n in range(3)
    ]
    for parts in frames:
        assert manager.receive_packet(parts[0]) is None
    done = [manager.receive_packet(p) for parts in frames for p in parts[1:]]
    assert sum(isinstance(d, cd.FrameReceived) for d in done) == 3


def test_same_identity_under_a_new_sid_in_one_update_pairs_at_once() -> None:
    manager = _manager()
    manager.sync_remotes([_session("bob", "PA_old", ("DTR_1", "t"))], now=0.0)
    events = manager.sync_remotes([_session("bob", "PA_new", ("DTR_2", "t"))], now=5.0)
    assert [type(e) for e in events] == [cd.RemoteDataTrackRepublished]
    assert manager.get_timer() is None


def test_held_track_that_does_not_come_back_ends_after_the_grace() -> None:
    manager = _manager()
    manager.sync_remotes([_session("bob", "PA_old", ("DTR_1", "t"))], now=0.0)
    manager.subscribe("DTR_1")
    # The new session is here but publishes no track of that name.
    assert manager.sync_remotes([_session("bob", "PA_new", ("DTR_2", "u"))], now=10.0) == [
        cd.RemoteDataTrackPublished(
            publisher_identity="bob",
            publisher_sid="PA_new",
            info=pb.DataTrackInfo(sid="DTR_2", name="u", pub_handle=1),
        )
    ]
    deadline = manager.get_timer()
    assert deadline == 10.0 + cd.REMOTE_REPUBLISH_GRACE_S
    assert manager.handle_timer(deadline - 0.1) == []
    assert manager.handle_timer(deadline) == [
        cd.RemoteDataTrackUnpublished(publisher_identity="bob", sid="DTR_1")
    ]
    assert manager.get_timer() is None
    assert not manager.is_remote_published("DTR_1")
    assert manager.unsubscribe("DTR_1") is None  # the server dropped it with the track
    # A late arrival of the same name is a new track, not a republication.
    events = manager.sync_remotes(
        [_session("bob", "PA_new", ("DTR_2", "u"), ("DTR_5", "t"))], now=40.0
    )
    assert [type(e) for e in events] == [cd.RemoteDataTrackPublished]


def test_plain_departure_still_ends_tracks_at_once() -> None:
    manager = _manager()
    manager.sync_remotes([_session("bob", "PA_old", ("DTR_1", "t"))], now=0.0)
    # Left for another reason (not in ``replaced``) and no new session: gone now.
    assert manager.sync_remotes([], now=1.0, replaced={"alice"}) == [
        cd.RemoteDataTrackUnpublished(publisher_identity="bob", sid="DTR_1")
    ]
    assert manager.get_timer() is None
