"""SignalSession: join, resume, pings, requests, leave, bad input and the queueing rule.

Time is a plain float passed in; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses

import pytest

from lkproto.core.signal import (
    PASS_THROUGH_KINDS,
    SIGNAL_IGNORED,
    SIGNAL_TRANSITIONS,
    AnswerReceived,
    ConnectionQualityChanged,
    Joined,
    JoinTimedOut,
    LeaveReceived,
    MediaSectionsRequired,
    MessageReceived,
    OfferReceived,
    ParticipantsUpdated,
    PongReceived,
    ProtocolViolated,
    RequestAnswered,
    RequestDropped,
    RequestTimedOut,
    Resumed,
    RoomUpdated,
    SignalEvent,
    SignalLost,
    SignalSession,
    SignalState,
    SpeakersChanged,
    TokenRefreshed,
    TrickleReceived,
)
from lkproto.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from lkproto.wire import pb

T0 = 100.0


def state(s: SignalSession) -> SignalState:
    # Read through a call where an earlier assert narrowed ``s.state``: mypy keeps the narrowed
    # literal and does not know that the calls in between change the state.
    return s.state


def frame(**fields: object) -> bytes:
    return pb.SignalResponse(**fields).SerializeToString()  # type: ignore[arg-type]


def join_frame(*, ping_interval: int = 5, ping_timeout: int = 15, sid: str = "PA_me") -> bytes:
    return frame(
        join=pb.JoinResponse(
            participant=pb.ParticipantInfo(sid=sid, identity="me"),
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
    )


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# SignalResponse field 200 (length-delimited): a oneof member from a future schema.
UNKNOWN_MEMBER = varint(200 << 3 | 2) + varint(3) + b"abc"


def drain(s: SignalSession) -> list[SignalEvent]:
    out: list[SignalEvent] = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def sent(s: SignalSession) -> list[pb.SignalRequest]:
    out = []
    for request, data in s.requests_to_send():
        assert data == request.SerializeToString()
        out.append(request)
    return out


def kinds(requests: list[pb.SignalRequest]) -> list[str | None]:
    return [r.WhichOneof("message") for r in requests]


def joined(now: float = T0, *, ping_interval: int = 5, ping_timeout: int = 15) -> SignalSession:
    s = SignalSession()
    s.connection_opened(now)
    s.receive_data(join_frame(ping_interval=ping_interval, ping_timeout=ping_timeout), now)
    drain(s)
    return s


def lost(now: float = T0 + 1) -> SignalSession:
    s = joined()
    s.connection_lost(now, "gone")
    drain(s)
    return s


# ------------------------------------------------------------------------- join / resume


def test_join_flow() -> None:
    s = SignalSession()
    assert s.state is SignalState.IDLE
    assert s.get_timer() is None
    assert s.participant_sid is None
    s.connection_opened(T0)
    assert state(s) is SignalState.CONNECTING
    assert s.get_timer() == T0 + 10.0
    s.receive_data(join_frame(), T0 + 0.2)
    [ev] = drain(s)
    assert isinstance(ev, Joined)
    assert ev.message.participant.sid == "PA_me"
    assert state(s) is SignalState.CONNECTED
    assert s.join_response is ev.message
    assert s.participant_sid == "PA_me"
    assert s.ping_interval_s == 5.0
    assert s.ping_timeout_s == 15.0
    assert s.reconnect_response is None
    assert sent(s) == []
    assert s.get_timer() == pytest.approx(T0 + 0.2 + 5)


def test_resume_flow() -> None:
    s = joined()
    s.connection_lost(T0 + 3, "network down")
    assert drain(s) == [SignalLost(reason="network down")]
    assert s.state is SignalState.DISCONNECTED
    assert s.get_timer() is None
    s.connection_opened(T0 + 4, resume=True)
    assert state(s) is SignalState.CONNECTING
    assert s.get_timer() == T0 + 14
    s.receive_data(frame(reconnect=pb.ReconnectResponse(last_message_seq=42)), T0 + 4.5)
    [ev] = drain(s)
    assert isinstance(ev, Resumed)
    assert ev.message.last_message_seq == 42
    assert s.reconnect_response is ev.message
    assert state(s) is SignalState.CONNECTED
    assert s.participant_sid == "PA_me"
    # Pinging restarts from the ReconnectResponse with the JoinResponse's settings.
    assert s.get_timer() == T0 + 4.5 + 5
    s.handle_timer(T0 + 9.5)
    [ping] = sent(s)
    assert ping.ping_req.timestamp == 109_500


def test_refused_resume_then_full_rejoin() -> None:
    s = lost()
    s.connection_opened(T0 + 2, resume=True)
    leave = pb.LeaveRequest(reason=pb.STATE_MISMATCH, action=pb.LeaveRequest.RECONNECT)
    s.receive_data(frame(leave=leave), T0 + 2.1)
    [ev] = drain(s)
    assert ev == LeaveReceived(
        reason=pb.STATE_MISMATCH, action=pb.LeaveRequest.RECONNECT, message=leave
    )
    assert s.state is SignalState.DISCONNECTED
    # A full reconnect may reuse the session object.
    s.connection_opened(T0 + 3)
    s.receive_data(join_frame(sid="PA_new"), T0 + 3.1)
    assert isinstance(drain(s)[0], Joined)
    assert s.participant_sid == "PA_new"
    assert s.reconnect_response is None


def test_resume_needs_a_joined_session() -> None:
    s = SignalSession()
    with pytest.raises(LocalProtocolError):
        s.connection_opened(T0, resume=True)
    s.connection_opened(T0)
    s.handle_timer(T0 + 10)
    assert s.state is SignalState.DISCONNECTED
    with pytest.raises(LocalProtocolError, match="never received a JoinResponse"):
        s.connection_opened(T0 + 11, resume=True)
    s.connection_opened(T0 + 11)  # a fresh join is fine
    assert state(s) is SignalState.CONNECTING


def test_join_timeout() -> None:
    s = SignalSession(join_timeout_s=3.0)
    s.connection_opened(T0)
    s.handle_timer(T0 + 2.999)
    assert drain(s) == []
    assert s.state is SignalState.CONNECTING
    s.handle_timer(T0 + 3)
    assert drain(s) == [JoinTimedOut(resume=False)]
    assert state(s) is SignalState.DISCONNECTED
    assert s.get_timer() is None
    # The driver then closes the socket: its closure is not news.
    s.connection_lost(T0 + 3.1, "closed by us")
    assert drain(s) == []


def test_resume_timeout() -> None:
    s = lost()
    s.connection_opened(T0 + 5, resume=True)
    s.handle_timer(T0 + 15)
    assert drain(s) == [JoinTimedOut(resume=True)]
    assert s.state is SignalState.DISCONNECTED
    s.connection_opened(T0 + 16, resume=True)  # try again
    assert state(s) is SignalState.CONNECTING


def test_first_frame_must_match_the_connection_kind() -> None:
    s = SignalSession()
    s.connection_opened(T0)
    s.receive_data(frame(reconnect=pb.ReconnectResponse()), T0)
    s.receive_data(frame(refresh_token="tok"), T0)
    evs = drain(s)
    assert [type(e) for e in evs] == [ProtocolViolated, ProtocolViolated]
    assert all(isinstance(e, ProtocolViolated) and e.message is not None for e in evs)
    assert s.state is SignalState.CONNECTING
    assert s.refresh_token is None

    r = lost()
    r.connection_opened(T0 + 2, resume=True)
    r.receive_data(join_frame(), T0 + 2)
    [ev] = drain(r)
    assert isinstance(ev, ProtocolViolated)
    assert "expected reconnect" in str(ev.error)
    assert r.state is SignalState.CONNECTING


def test_second_join_is_a_violation() -> None:
    s = joined()
    s.receive_data(join_frame(sid="PA_other"), T0 + 1)
    s.receive_data(frame(reconnect=pb.ReconnectResponse()), T0 + 1)
    evs = drain(s)
    assert [type(e) for e in evs] == [ProtocolViolated, ProtocolViolated]
    assert s.participant_sid == "PA_me"
    assert s.state is SignalState.CONNECTED


# ------------------------------------------------------------------------- ping / pong


def test_ping_schedule_is_exact_and_carries_rtt() -> None:
    s = joined(T0)
    assert s.get_timer() == T0 + 5
    s.handle_timer(T0 + 4.999)
    assert sent(s) == []
    s.handle_timer(T0 + 5)
    [ping] = sent(s)
    assert ping.ping_req == pb.Ping(timestamp=105_000, rtt=0)
    assert s.get_timer() == T0 + 10

    s.receive_data(frame(pong_resp=pb.Pong(last_ping_timestamp=105_000, timestamp=1)), T0 + 5.02)
    [ev] = drain(s)
    assert isinstance(ev, PongReceived)
    assert ev.rtt_ms == pytest.approx(20.0)
    assert ev.message.last_ping_timestamp == 105_000
    assert s.rtt_ms == pytest.approx(20.0)

    s.handle_timer(T0 + 10)
    [ping] = sent(s)
    assert ping.ping_req == pb.Ping(timestamp=110_000, rtt=20)

    # A late timer sends one ping at the real time and stays on the join-time grid.
    s.receive_data(frame(refresh_token="t"), T0 + 12)
    s.handle_timer(T0 + 17.3)
    [ping] = sent(s)
    assert ping.ping_req.timestamp == 117_300
    assert s.get_timer() == T0 + 20


def test_many_pings_do_not_drift() -> None:
    s = joined(0.1, ping_interval=1, ping_timeout=0)
    stamps: list[int] = []
    for _ in range(1000):
        deadline = s.get_timer()
        assert deadline is not None
        s.handle_timer(deadline)
        stamps.extend(r.ping_req.timestamp for r in sent(s))
    assert len(stamps) == 1000
    assert stamps[-1] == 1_000_100


def test_late_timer_on_a_grid_point_lands_after_now_despite_rounding() -> None:
    # (now - base) / interval rounds just below 121 here, while base + 121 * 3 == now.
    base, now = 763.7746189766141, 1126.774618976614
    s = joined(base, ping_interval=3, ping_timeout=0)
    s.handle_timer(now)
    assert len(sent(s)) == 1
    timer = s.get_timer()
    assert timer is not None
    assert timer > now
    assert timer == base + 122 * 3


@pytest.mark.parametrize(("interval", "timeout"), [(0, 0), (-3, -1)])
def test_zero_ping_settings_disable_pinging(interval: int, timeout: int) -> None:
    s = joined(ping_interval=interval, ping_timeout=timeout)
    assert s.ping_interval_s is None
    assert s.ping_timeout_s is None
    assert s.get_timer() is None
    s.handle_timer(T0 + 1000)
    assert sent(s) == []
    assert s.state is SignalState.CONNECTED


def test_ping_timeout_means_signal_lost() -> None:
    s = joined(T0, ping_interval=5, ping_timeout=15)
    for t in (5, 10):
        s.handle_timer(T0 + t)
    assert len(sent(s)) == 2
    s.handle_timer(T0 + 15)
    assert drain(s) == [SignalLost(reason="ping timeout")]
    assert sent(s) == []  # no ping on a connection we just gave up on
    assert s.state is SignalState.DISCONNECTED
    assert s.get_timer() is None
    s.receive_data(frame(refresh_token="late"), T0 + 15.1)  # the dying socket
    s.connection_lost(T0 + 15.2, "closed by us")
    assert drain(s) == []
    assert s.refresh_token is None


def test_any_inbound_frame_resets_the_ping_timeout() -> None:
    s = joined(T0, ping_interval=100, ping_timeout=15)
    s.receive_data(b"\xff\xff\xff", T0 + 10)  # garbage still proves liveness
    s.receive_data(UNKNOWN_MEMBER, T0 + 20)
    s.receive_data(frame(pong=12345), T0 + 30)  # legacy pong: silent
    assert [type(e) for e in drain(s)] == [ProtocolViolated]
    assert s.get_timer() == T0 + 45
    s.handle_timer(T0 + 44.9)
    assert s.state is SignalState.CONNECTED
    s.handle_timer(T0 + 45)
    assert drain(s) == [SignalLost(reason="ping timeout")]


def test_pong_from_the_future_is_a_violation() -> None:
    s = joined()
    s.receive_data(frame(pong_resp=pb.Pong(last_ping_timestamp=10**12)), T0 + 1)
    [ev] = drain(s)
    assert isinstance(ev, ProtocolViolated)
    assert s.rtt_ms is None


# ------------------------------------------------------------------------- requests


def test_update_metadata_is_matched_and_timed_out() -> None:
    s = SignalSession(request_timeout_s=5.0)
    s.connection_opened(T0)
    s.receive_data(join_frame(ping_interval=0, ping_timeout=0), T0)
    drain(s)
    first = s.update_metadata(T0 + 1, name="n", metadata="m", attributes={"a": "1", "b": ""})
    second = s.update_metadata(T0 + 2, metadata="x")
    assert (first, second) == (1, 2)
    r1, r2 = sent(s)
    assert r1.update_metadata == pb.UpdateParticipantMetadata(
        name="n", metadata="m", attributes={"a": "1", "b": ""}, request_id=1
    )
    assert r2.update_metadata.request_id == 2
    assert r2.update_metadata.name == ""
    assert s.pending_request_ids == {1, 2}
    assert s.get_timer() == T0 + 6

    rr = pb.RequestResponse(request_id=1, reason=pb.RequestResponse.OK, message="fine")
    s.receive_data(frame(request_response=rr), T0 + 1.5)
    assert drain(s) == [
        RequestAnswered(request_id=1, reason=pb.RequestResponse.OK, message_text="fine", message=rr)
    ]
    assert s.pending_request_ids == {2}
    assert s.get_timer() == T0 + 7
    s.handle_timer(T0 + 6.99)
    assert drain(s) == []
    s.handle_timer(T0 + 7)
    assert drain(s) == [RequestTimedOut(request_id=2)]
    assert s.get_timer() is None

    # A late or unsolicited answer (trickle errors carry request_id 0) still surfaces.
    for rid in (2, 0):
        bad = pb.RequestResponse(request_id=rid, reason=pb.RequestResponse.UNCLASSIFIED_ERROR)
        s.receive_data(frame(request_response=bad), T0 + 8)
        [ev] = drain(s)
        assert isinstance(ev, RequestAnswered)
        assert ev.request_id == rid
        assert ev.reason == pb.RequestResponse.UNCLASSIFIED_ERROR


def test_request_ids_wrap_to_one() -> None:
    s = joined()
    s._next_request_id = 2**32 - 1
    assert s.update_metadata(T0, name="a") == 2**32 - 1
    assert s.update_metadata(T0, name="b") == 1


def test_request_timeouts_run_across_a_resume() -> None:
    s = joined(ping_interval=0, ping_timeout=0)
    rid = s.update_metadata(T0 + 1, name="x")
    s.connection_lost(T0 + 2, "down")
    assert s.get_timer() == T0 + 6
    s.handle_timer(T0 + 6)
    assert drain(s) == [SignalLost(reason="down"), RequestTimedOut(request_id=rid)]
    s.connection_opened(T0 + 7, resume=True)
    assert s.get_timer() == T0 + 17


def test_timer_order_connection_first_then_requests() -> None:
    s = joined(T0, ping_interval=0, ping_timeout=5)
    s.update_metadata(T0, name="x")
    s.update_metadata(T0 + 0.5, name="y")
    s.handle_timer(T0 + 100)
    assert drain(s) == [
        SignalLost(reason="ping timeout"),
        RequestTimedOut(request_id=1),
        RequestTimedOut(request_id=2),
    ]


# ------------------------------------------------------------------------- leave


ALL_REASONS = [v.number for v in pb.DisconnectReason.DESCRIPTOR.values] + [99]


@pytest.mark.parametrize("reason", ALL_REASONS)
@pytest.mark.parametrize(
    ("action", "state"),
    [
        (pb.LeaveRequest.DISCONNECT, SignalState.CLOSED),
        (pb.LeaveRequest.RESUME, SignalState.DISCONNECTED),
        (pb.LeaveRequest.RECONNECT, SignalState.DISCONNECTED),
        (7, SignalState.DISCONNECTED),  # an action newer than our schema: let the driver decide
    ],
)
def test_leave_received(reason: int, action: int, state: SignalState) -> None:
    s = joined()
    s.update_metadata(T0, name="x")
    leave = pb.LeaveRequest(reason=reason, action=action)  # type: ignore[arg-type]
    s.receive_data(frame(leave=leave), T0 + 1)
    [ev] = drain(s)
    assert isinstance(ev, LeaveReceived)
    assert (ev.reason, ev.action) == (reason, action)
    assert ev.message == leave
    assert s.state is state
    if state is SignalState.CLOSED:
        assert s.get_timer() is None
        assert s.pending_request_ids == frozenset()
    else:
        assert s.get_timer() == T0 + 5  # only the request deadline is left


def test_leave_disconnect_as_first_frame_closes() -> None:
    s = SignalSession()
    s.connection_opened(T0)
    s.receive_data(frame(leave=pb.LeaveRequest(reason=pb.DUPLICATE_IDENTITY)), T0)
    assert isinstance(drain(s)[0], LeaveReceived)
    assert s.state is SignalState.CLOSED


def test_send_leave_from_connected() -> None:
    s = joined()
    s.update_metadata(T0, name="x")
    sent(s)
    s.send_leave(T0 + 1, reason=pb.USER_REJECTED, action=pb.LeaveRequest.DISCONNECT)
    [leave] = sent(s)
    assert leave.leave == pb.LeaveRequest(reason=pb.USER_REJECTED)
    assert s.state is SignalState.CLOSED
    assert s.get_timer() is None
    assert s.pending_request_ids == frozenset()
    s.send_leave(T0 + 2)  # idempotent
    assert sent(s) == []
    assert drain(s) == []


def test_send_leave_default_reason_and_while_connecting() -> None:
    s = SignalSession()
    s.connection_opened(T0)
    s.send_leave(T0)
    [leave] = sent(s)
    assert leave.leave.reason == pb.CLIENT_INITIATED
    assert s.state is SignalState.CLOSED


@pytest.mark.parametrize("setup", ["idle", "disconnected"])
def test_send_leave_without_a_socket_only_closes(setup: str) -> None:
    s = SignalSession() if setup == "idle" else lost()
    s.send_leave(T0 + 5)
    assert sent(s) == []
    assert s.state is SignalState.CLOSED


def test_generic_send_of_a_leave_closes_and_keeps_fields() -> None:
    s = joined()
    request = pb.SignalRequest(
        leave=pb.LeaveRequest(reason=pb.AGENT_ERROR, action=pb.LeaveRequest.RESUME)
    )
    s.send(request, T0)
    [out] = sent(s)
    assert out == request
    assert s.state is SignalState.CLOSED


# ------------------------------------------------------------------------- inbound messages


def test_refresh_token() -> None:
    s = joined()
    s.receive_data(frame(refresh_token="jwt-1"), T0)
    s.receive_data(frame(refresh_token="jwt-2"), T0)
    assert drain(s) == [TokenRefreshed(token="jwt-1"), TokenRefreshed(token="jwt-2")]
    assert s.refresh_token == "jwt-2"


def test_typed_events() -> None:
    s = joined()
    offer = pb.SessionDescription(type="offer", sdp="v=0 o", id=3, mid_to_track_id={"0": "TR_a"})
    answer = pb.SessionDescription(type="answer", sdp="v=0 a", id=4, mid_to_track_id={"1": "TR_b"})
    trickle = pb.TrickleRequest(candidateInit='{"candidate":"c"}', target=pb.SUBSCRIBER, final=True)
    people = pb.ParticipantUpdate(participants=[pb.ParticipantInfo(sid="PA_a", identity="a")])
    room = pb.RoomUpdate(room=pb.Room(name="r", metadata="m"))
    speakers = pb.SpeakersChanged(speakers=[pb.SpeakerInfo(sid="PA_a", level=0.9, active=True)])
    quality = pb.ConnectionQualityUpdate(updates=[pb.ConnectionQualityInfo(participant_sid="PA_a")])
    sections = pb.MediaSectionsRequirement(num_audios=2, num_videos=1)
    for data in (
        frame(offer=offer),
        frame(answer=answer),
        frame(trickle=trickle),
        frame(update=people),
        frame(room_update=room),
        frame(speakers_changed=speakers),
        frame(connection_quality=quality),
        frame(media_sections_requirement=sections),
    ):
        s.receive_data(data, T0 + 1)
    assert drain(s) == [
        OfferReceived(sdp="v=0 o", offer_id=3, mid_to_track_id={"0": "TR_a"}, message=offer),
        AnswerReceived(sdp="v=0 a", answer_id=4, mid_to_track_id={"1": "TR_b"}, message=answer),
        TrickleReceived(
            candidate_init='{"candidate":"c"}', target=pb.SUBSCRIBER, final=True, message=trickle
        ),
        ParticipantsUpdated(participants=tuple(people.participants), message=people),
        RoomUpdated(room=room.room, message=room),
        SpeakersChanged(speakers=tuple(speakers.speakers), message=speakers),
        ConnectionQualityChanged(updates=tuple(quality.updates), message=quality),
        MediaSectionsRequired(num_audios=2, num_videos=1, message=sections),
    ]


_TYPED = {
    "join",
    "reconnect",
    "leave",
    "pong",
    "pong_resp",
    "refresh_token",
    "request_response",
    "offer",
    "answer",
    "trickle",
    "update",
    "room_update",
    "speakers_changed",
    "connection_quality",
    "media_sections_requirement",
}
_OTHER = sorted(
    f.name
    for f in pb.SignalResponse.DESCRIPTOR.oneofs_by_name["message"].fields
    if f.name not in _TYPED
)


@pytest.mark.parametrize("kind", _OTHER)
def test_other_members_become_message_received(kind: str) -> None:
    s = joined()
    response = pb.SignalResponse()
    getattr(response, kind).SetInParent()
    s.receive_data(response.SerializeToString(), T0 + 1)
    [ev] = drain(s)
    assert ev == MessageReceived(kind=kind, message=response)


def test_other_members_include_the_ones_later_issues_need() -> None:
    assert {"track_published", "mute", "subscription_response", "track_unpublished"} <= set(_OTHER)


@pytest.mark.parametrize("state", ["connecting", "connected"])
def test_unknown_oneof_member_is_ignored(state: str) -> None:
    s = SignalSession()
    s.connection_opened(T0)
    if state == "connected":
        s.receive_data(join_frame(), T0)
        drain(s)
    s.receive_data(UNKNOWN_MEMBER, T0 + 1)
    s.receive_data(b"", T0 + 1)  # an empty SignalResponse: no member either
    assert drain(s) == []
    assert s.unknown_messages_ignored == 2
    assert s.state is SignalState(state)


def test_malformed_bytes_are_reported_and_the_session_goes_on() -> None:
    s = joined()
    s.receive_data(b"\x0a\xff\xff\xff\xff\x0f", T0 + 1)
    [ev] = drain(s)
    assert isinstance(ev, ProtocolViolated)
    assert isinstance(ev.error, DecodeError)
    assert ev.message is None
    s.receive_data(frame(refresh_token="ok"), T0 + 2)
    assert drain(s) == [TokenRefreshed(token="ok")]


def test_text_frame_is_a_violation() -> None:
    s = joined()
    s.receive_data('{"refresh_token": "x"}', T0 + 1)
    [ev] = drain(s)
    assert isinstance(ev, ProtocolViolated)
    assert isinstance(ev.error, DecodeError)
    assert "text frame" in str(ev.error)
    assert s.state is SignalState.CONNECTED


def test_malformed_first_frame_keeps_waiting() -> None:
    s = SignalSession()
    s.connection_opened(T0)
    s.receive_data(b"\xff", T0)
    assert isinstance(drain(s)[0], ProtocolViolated)
    s.receive_data(join_frame(), T0 + 1)
    assert isinstance(drain(s)[0], Joined)


def test_frames_after_the_session_stopped_listening_are_dropped() -> None:
    s = lost()
    s.receive_data(b"\xff", T0 + 2)
    s.receive_data(frame(refresh_token="x"), T0 + 2)
    assert drain(s) == []
    s.send_leave(T0 + 3)
    s.receive_data(frame(refresh_token="x"), T0 + 3)
    assert drain(s) == []


# ------------------------------------------------------------------------- queueing


def test_connected_sends_everything_at_once_in_order() -> None:
    s = joined()
    s.send_offer("o", 1, T0)
    s.update_metadata(T0, name="n")
    s.send_answer("a", 7, T0)
    s.send_trickle("{}", pb.PUBLISHER, T0, final=True)
    s.send_sync_state(pb.SyncState(), T0)
    s.send_simulate(pb.SimulateScenario(speaker_update=3), T0)
    s.send(pb.SignalRequest(mute=pb.MuteTrackRequest(sid="TR_x", muted=True)), T0)
    out = sent(s)
    assert kinds(out) == [
        "offer",
        "update_metadata",
        "answer",
        "trickle",
        "sync_state",
        "simulate",
        "mute",
    ]
    assert out[0].offer == pb.SessionDescription(type="offer", sdp="o", id=1)
    assert out[2].answer == pb.SessionDescription(type="answer", sdp="a", id=7)
    assert out[3].trickle == pb.TrickleRequest(candidateInit="{}", target=pb.PUBLISHER, final=True)
    assert out[5].simulate.speaker_update == 3
    assert s.queued_count == 0


def test_before_the_join_response_queueables_wait_and_pass_throughs_drop() -> None:
    s = SignalSession()
    s.connection_opened(T0)
    s.update_metadata(T0, name="early")
    s.send_offer("o", 1, T0)
    assert sent(s) == []
    [ev] = drain(s)
    assert isinstance(ev, RequestDropped)
    assert ev.kind == "offer"
    assert ev.request.offer.sdp == "o"
    assert s.queued_count == 1
    s.receive_data(join_frame(), T0 + 1)
    # A fresh JoinResponse releases the queue by itself.
    assert kinds(sent(s)) == ["update_metadata"]
    assert s.queued_count == 0


def test_resume_holds_the_queue_until_flush() -> None:
    s = lost()
    s.update_metadata(T0 + 2, name="a")
    s.send(pb.SignalRequest(mute=pb.MuteTrackRequest(sid="TR_x")), T0 + 2)
    s.send_trickle("{}", pb.PUBLISHER, T0 + 2)
    assert sent(s) == []
    assert [e.kind for e in drain(s) if isinstance(e, RequestDropped)] == ["trickle"]
    s.connection_opened(T0 + 3, resume=True)
    s.send_answer("a", 2, T0 + 3)  # no ReconnectResponse yet: dropped
    assert [e.kind for e in drain(s) if isinstance(e, RequestDropped)] == ["answer"]
    s.receive_data(frame(reconnect=pb.ReconnectResponse()), T0 + 3.5)
    drain(s)
    # Pass-throughs overtake the held queue; new queueables line up behind it.
    s.send_sync_state(pb.SyncState(), T0 + 4)
    s.send_offer("restart", 5, T0 + 4)
    s.update_metadata(T0 + 4, name="b")
    assert kinds(sent(s)) == ["sync_state", "offer"]
    assert s.queued_count == 3
    s.flush_queued(T0 + 5)
    out = sent(s)
    assert kinds(out) == ["update_metadata", "mute", "update_metadata"]
    assert [out[0].update_metadata.name, out[2].update_metadata.name] == ["a", "b"]
    s.update_metadata(T0 + 6, name="c")
    assert kinds(sent(s)) == ["update_metadata"]


def test_flush_without_a_socket_keeps_the_queue() -> None:
    s = lost()
    s.update_metadata(T0 + 2, name="a")
    s.flush_queued(T0 + 2)
    assert sent(s) == []
    s.connection_opened(T0 + 3, resume=True)
    s.flush_queued(T0 + 3)
    assert sent(s) == []
    assert s.queued_count == 1


def test_full_reconnect_releases_the_queue_after_the_new_join() -> None:
    s = lost()
    s.update_metadata(T0 + 2, name="a")
    s.connection_opened(T0 + 3)
    s.receive_data(join_frame(sid="PA_new"), T0 + 3)
    assert kinds(sent(s)) == ["update_metadata"]


def test_queued_requests_are_copies() -> None:
    s = lost()
    request = pb.SignalRequest(mute=pb.MuteTrackRequest(sid="TR_x"))
    s.send(request, T0 + 2)
    request.mute.sid = "TR_changed"
    s.connection_opened(T0 + 3, resume=True)
    s.receive_data(frame(reconnect=pb.ReconnectResponse()), T0 + 3)
    s.flush_queued(T0 + 3)
    [out] = sent(s)
    assert out.mute.sid == "TR_x"


def test_pass_through_kinds_match_js() -> None:
    # PROTOCOL-MAP §10 step 4 plus our own pings.
    assert {"sync_state", "trickle", "offer", "answer", "simulate", "leave"} < PASS_THROUGH_KINDS


# ------------------------------------------------------------------------- misuse


MISUSE = {
    "send_offer": lambda s: s.send_offer("o", 1, T0),
    "send_answer": lambda s: s.send_answer("a", 1, T0),
    "send_trickle": lambda s: s.send_trickle("{}", pb.PUBLISHER, T0),
    "update_metadata": lambda s: s.update_metadata(T0, name="x"),
    "send_sync_state": lambda s: s.send_sync_state(pb.SyncState(), T0),
    "send_simulate": lambda s: s.send_simulate(pb.SimulateScenario(), T0),
    "send": lambda s: s.send(pb.SignalRequest(mute=pb.MuteTrackRequest()), T0),
}


@pytest.mark.parametrize("call", sorted(MISUSE))
def test_sending_after_closed_raises(call: str) -> None:
    s = joined()
    s.send_leave(T0)
    sent(s)
    with pytest.raises(LocalProtocolError, match="closed"):
        MISUSE[call](s)
    assert sent(s) == []


@pytest.mark.parametrize("call", sorted(MISUSE))
def test_sending_before_connection_opened_raises(call: str) -> None:
    with pytest.raises(LocalProtocolError, match="idle"):
        MISUSE[call](SignalSession())


def test_other_misuse() -> None:
    s = SignalSession()
    with pytest.raises(LocalProtocolError):
        s.receive_data(join_frame(), T0)
    s.flush_queued(T0)  # harmless
    s.connection_opened(T0)
    with pytest.raises(LocalProtocolError):
        s.connection_opened(T0)
    s.receive_data(join_frame(), T0)
    drain(s)
    with pytest.raises(LocalProtocolError):
        s.connection_opened(T0, resume=True)
    with pytest.raises(LocalProtocolError, match="empty"):
        s.send(pb.SignalRequest(), T0)
    with pytest.raises(LocalProtocolError):
        s.send_offer("o", -1, T0)  # ids are uint32
    with pytest.raises(LocalProtocolError):
        s.update_metadata(T0, attributes={"k": 1})  # type: ignore[dict-item]
    assert s.pending_request_ids == frozenset()
    s.send_leave(T0)
    with pytest.raises(LocalProtocolError):
        s.flush_queued(T0)
    with pytest.raises(LocalProtocolError):
        s.connection_opened(T0)
    s.connection_lost(T0, "whatever")  # ignored
    s.handle_timer(T0 + 1000)
    assert drain(s) == []


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_bad_timeouts_are_refused(value: float) -> None:
    with pytest.raises(LocalProtocolError):
        SignalSession(join_timeout_s=value)
    with pytest.raises(LocalProtocolError):
        SignalSession(request_timeout_s=value)


# ------------------------------------------------------------------------- shape


def test_events_are_frozen_slotted_kw_only() -> None:
    ev = SignalLost(reason="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.reason = "y"  # type: ignore[misc]
    assert not hasattr(ev, "__dict__")
    with pytest.raises(TypeError):
        SignalLost("x")  # type: ignore[call-arg]


def test_protocol_violation_error_types() -> None:
    s = joined()
    s.receive_data(join_frame(), T0)
    [ev] = drain(s)
    assert isinstance(ev, ProtocolViolated)
    assert type(ev.error) is RemoteProtocolError


def test_table_and_ignored_set_are_disjoint_and_closed_is_terminal() -> None:
    assert not set(SIGNAL_TRANSITIONS) & SIGNAL_IGNORED
    assert all(s is not SignalState.CLOSED for s, _ in SIGNAL_TRANSITIONS)
    assert all(t is not SignalState.IDLE for t in SIGNAL_TRANSITIONS.values())
