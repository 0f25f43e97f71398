"""SignalSession against a server that answers no successful request (protocol < 15, §7)."""

from __future__ import annotations

import pytest

from lkproto.core.signal import (
    FIRST_PROTOCOL_ANSWERING_OK,
    RequestTimedOut,
    SignalSession,
    metadata_applied,
)
from lkproto.wire import pb

T0 = 100.0


def joined(protocol: int) -> SignalSession:
    s = SignalSession(request_timeout_s=5.0)
    s.connection_opened(T0)
    join = pb.JoinResponse(
        participant=pb.ParticipantInfo(sid="PA_me", identity="me"),
        server_info=pb.ServerInfo(protocol=protocol),
    )
    s.receive_data(pb.SignalResponse(join=join).SerializeToString(), T0)
    while s.next_event() is not None:
        pass
    return s


@pytest.mark.parametrize(
    ("protocol", "answers"),
    [(0, False), (14, False), (FIRST_PROTOCOL_ANSWERING_OK, True), (17, True)],
)
def test_server_answers_ok_from_protocol_15(protocol: int, answers: bool) -> None:
    # livekit-server v1.7.2 reports 14 and sends no RequestResponse{OK}; v1.9.11 reports 16.
    assert joined(protocol).server_answers_ok is answers


def test_no_answer_is_expected_before_joining() -> None:
    assert SignalSession().server_answers_ok is False


def test_a_settled_request_does_not_time_out() -> None:
    s = joined(14)
    first = s.update_metadata(T0 + 1, name="n")
    second = s.update_metadata(T0 + 2, metadata="m")
    s.settle_request(first)
    s.settle_request(999)  # unknown: ignored
    assert s.pending_request_ids == {second}
    s.handle_timer(T0 + 7)
    events = []
    while (ev := s.next_event()) is not None:
        events.append(ev)
    assert events == [RequestTimedOut(request_id=second)]


def test_metadata_applied_follows_the_request_rules() -> None:
    info = pb.ParticipantInfo(name="n", metadata="m", attributes={"a": "1"})
    assert metadata_applied(info, name="n", metadata=None, attributes=None)
    # Empty name/metadata mean "unchanged"; a "" attribute value deletes the key.
    assert metadata_applied(info, name="", metadata="", attributes={"a": "1", "gone": ""})
    assert not metadata_applied(info, name="other", metadata=None, attributes=None)
    assert not metadata_applied(info, name=None, metadata="x", attributes=None)
    assert not metadata_applied(info, name=None, metadata=None, attributes={"a": "2"})
    assert not metadata_applied(info, name=None, metadata=None, attributes={"b": "1"})
    assert not metadata_applied(info, name=None, metadata=None, attributes={"a": ""})
