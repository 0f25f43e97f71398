"""SignalSession against older releases: no RequestResponse{OK} (protocol < 15, §7), no
SessionDescription.mid_to_track_id (§9), as livekit-server v1.7.2."""

from __future__ import annotations

import pytest

from lkproto.core.signal import (
    FIRST_PROTOCOL_ANSWERING_OK,
    OfferReceived,
    RequestTimedOut,
    SignalSession,
    metadata_applied,
    sdp_msid_track_ids,
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


# A downstream offer shaped like livekit-server v1.7.2's (pion): no SessionDescription mapping,
# "WMS*" without a space, the track SID as the msid's second token.
OLD_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=msid-semantic:WMS*",
        "a=group:BUNDLE 0 1 2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:1",
        "a=ssrc:7 msid:PA_x|TR_audio TR_audio",
        "a=msid:PA_x|TR_audio TR_audio",
        "a=msid:PA_x|TR_later TR_later",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=msid:PA_y|TR_video TR_video",
        "a=mid:2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:3",
        "a=msid:- -",
        "",
    ]
)


def test_msid_names_each_sections_track() -> None:
    # The first msid wins; the mid may follow it; a section without a TR_ msid has no entry.
    assert sdp_msid_track_ids(OLD_OFFER) == {"1": "TR_audio", "2": "TR_video"}


def test_an_offer_without_a_mapping_takes_it_from_the_msid_lines() -> None:
    s = joined(14)
    offer = pb.SessionDescription(type="offer", sdp=OLD_OFFER, id=0)
    s.receive_data(pb.SignalResponse(offer=offer).SerializeToString(), T0 + 1)
    events = [ev for ev in iter(s.next_event, None) if isinstance(ev, OfferReceived)]
    assert [ev.mid_to_track_id for ev in events] == [{"1": "TR_audio", "2": "TR_video"}]


def test_a_servers_mapping_wins_over_the_msid_lines() -> None:
    s = joined(17)
    offer = pb.SessionDescription(
        type="offer", sdp=OLD_OFFER, id=3, mid_to_track_id={"1": "TR_mapped"}
    )
    s.receive_data(pb.SignalResponse(offer=offer).SerializeToString(), T0 + 1)
    events = [ev for ev in iter(s.next_event, None) if isinstance(ev, OfferReceived)]
    assert [ev.mid_to_track_id for ev in events] == [{"1": "TR_mapped"}]
