"""Participants and publications (lkproto.rtc.participant), without a server."""

from __future__ import annotations

import datetime
import enum
from typing import Any, cast

import pytest

from lkproto import rtc
from lkproto.asyncio.engine import Engine
from lkproto.asyncio.rpc import RpcDriver
from lkproto.errors import LocalProtocolError
from lkproto.rtc.participant import (
    ConnectionQuality,
    DisconnectReason,
    LocalParticipant,
    Participant,
    ParticipantKind,
    ParticipantState,
    RemoteParticipant,
    TrackPublication,
    disconnect_reason,
)
from lkproto.wire import pb

DISCONNECTED = pb.ParticipantInfo.DISCONNECTED


def track(sid: str, *, muted: bool = False, **kw: Any) -> pb.TrackInfo:
    return pb.TrackInfo(sid=sid, name=f"name-{sid}", muted=muted, **kw)


def info(identity: str = "bob", **kw: Any) -> pb.ParticipantInfo:
    kw.setdefault("sid", f"PA_{identity}")
    kw.setdefault("state", pb.ParticipantInfo.ACTIVE)
    return pb.ParticipantInfo(identity=identity, **kw)


# -- kind ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "official"),
    [
        (pb.ParticipantInfo.STANDARD, ParticipantKind.PARTICIPANT_KIND_STANDARD),
        (pb.ParticipantInfo.INGRESS, ParticipantKind.PARTICIPANT_KIND_INGRESS),
        (pb.ParticipantInfo.EGRESS, ParticipantKind.PARTICIPANT_KIND_EGRESS),
        (pb.ParticipantInfo.SIP, ParticipantKind.PARTICIPANT_KIND_SIP),
        (pb.ParticipantInfo.AGENT, ParticipantKind.PARTICIPANT_KIND_AGENT),
        (pb.ParticipantInfo.CONNECTOR, ParticipantKind.PARTICIPANT_KIND_CONNECTOR),
        (pb.ParticipantInfo.BRIDGE, ParticipantKind.PARTICIPANT_KIND_BRIDGE),
    ],
)
def test_kind_maps_wire_numbers_to_official_numbers(wire: int, official: ParticipantKind) -> None:
    kind = RemoteParticipant(info(kind=wire)).kind
    assert kind is official


def test_wire_connector_and_bridge_are_renumbered() -> None:
    # PROTOCOL-MAP §7 Kind: the wire skips 5 and 6; the official SDK's enum does not
    assert pb.ParticipantInfo.CONNECTOR == 7
    assert pb.ParticipantInfo.BRIDGE == 8
    assert RemoteParticipant(info(kind=pb.ParticipantInfo.CONNECTOR)).kind == 5
    assert RemoteParticipant(info(kind=pb.ParticipantInfo.BRIDGE)).kind == 6


def test_unknown_wire_kind_reads_as_standard() -> None:
    p = RemoteParticipant(info(kind=cast("Any", 42)))
    assert p.kind is ParticipantKind.PARTICIPANT_KIND_STANDARD


def test_kind_details_is_a_copy() -> None:
    p = RemoteParticipant(info(kind_details=[pb.ParticipantInfo.CLOUD_AGENT]))
    details = p.kind_details
    assert details == [pb.ParticipantInfo.CLOUD_AGENT]
    details.clear()
    assert p.kind_details == [pb.ParticipantInfo.CLOUD_AGENT]


# -- enums against the official SDK ----------------------------------------------------------------


def _official_members(name: str) -> dict[str, int]:
    official = pytest.importorskip("livekit.rtc")
    enum_like = getattr(official, name)
    if isinstance(enum_like, type) and issubclass(enum_like, enum.Enum):
        return {m.name: int(m.value) for m in enum_like}
    return dict(enum_like.items())


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("ParticipantKind", rtc.ParticipantKind),
        ("ParticipantState", rtc.ParticipantState),
        ("DisconnectReason", rtc.DisconnectReason),
        ("ConnectionState", rtc.ConnectionState),
        ("DataPacketKind", rtc.DataPacketKind),
        ("SimulateScenarioKind", rtc.SimulateScenarioKind),
        ("ConnectionQuality", rtc.ConnectionQuality),
    ],
)
def test_enum_names_and_numbers_match_the_official_sdk(name: str, ours: type[enum.IntEnum]) -> None:
    assert {m.name: int(m.value) for m in ours} == _official_members(name)


# -- plain properties ------------------------------------------------------------------------------


def test_properties_read_the_snapshot() -> None:
    perm = pb.ParticipantPermission(can_publish=True, can_publish_data=True)
    p = RemoteParticipant(
        info(
            "alice",
            sid="PA_1",
            name="Alice",
            metadata="m",
            attributes={"a": "1"},
            permission=perm,
            state=pb.ParticipantInfo.JOINED,
        )
    )
    assert (p.sid, p.identity, p.name, p.metadata) == ("PA_1", "alice", "Alice", "m")
    assert p.attributes == {"a": "1"}
    assert p.permissions == perm
    assert p.state == ParticipantState.PARTICIPANT_STATE_JOINED
    assert p.info.identity == "alice"
    assert repr(p) == "<RemoteParticipant sid=PA_1 identity='alice'>"


def test_attributes_are_a_copy() -> None:
    p = RemoteParticipant(info(attributes={"a": "1"}))
    attrs = p.attributes
    attrs["a"] = "changed"
    attrs["b"] = "new"
    assert p.attributes == {"a": "1"}
    assert p.info.attributes == {"a": "1"}


def test_update_replaces_the_snapshot() -> None:
    p = RemoteParticipant(info(metadata="old", attributes={"a": "1"}))
    p._update(info(metadata="new", attributes={"b": "2"}))
    assert p.metadata == "new"
    assert p.attributes == {"b": "2"}


def test_connection_quality_defaults_to_unknown() -> None:
    # livekit 1.2 starts at QUALITY_UNKNOWN until the server reports a quality
    assert RemoteParticipant(info()).connection_quality is ConnectionQuality.QUALITY_UNKNOWN


# -- joined_at -------------------------------------------------------------------------------------


def test_joined_at_prefers_milliseconds() -> None:
    p = RemoteParticipant(info(joined_at=1_700_000_000, joined_at_ms=1_700_000_000_250))
    assert p.joined_at == datetime.datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=datetime.UTC)


def test_joined_at_falls_back_to_seconds() -> None:
    p = RemoteParticipant(info(joined_at=1_700_000_000))
    assert p.joined_at == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    assert p.joined_at.tzinfo is datetime.UTC


def test_joined_at_is_none_when_unknown() -> None:
    assert RemoteParticipant(info()).joined_at is None


# -- disconnect_reason -----------------------------------------------------------------------------


def test_disconnect_reason_is_none_while_connected() -> None:
    p = RemoteParticipant(info(disconnect_reason=pb.PARTICIPANT_REMOVED))
    assert p.disconnect_reason is None


def test_disconnect_reason_of_a_disconnected_snapshot() -> None:
    p = RemoteParticipant(info(state=DISCONNECTED, disconnect_reason=pb.PARTICIPANT_REMOVED))
    assert p.disconnect_reason is DisconnectReason.PARTICIPANT_REMOVED


def test_disconnect_reason_newer_than_the_sdk_stays_a_number() -> None:
    p = RemoteParticipant(info(state=DISCONNECTED, disconnect_reason=cast("Any", 99)))
    assert p.disconnect_reason == 99
    assert not isinstance(p.disconnect_reason, DisconnectReason)


def test_disconnect_reason_helper() -> None:
    assert disconnect_reason(1) is DisconnectReason.CLIENT_INITIATED
    assert disconnect_reason(1000) == 1000
    assert [r.name for r in DisconnectReason] == list(pb.DisconnectReason.keys())
    assert [r.value for r in DisconnectReason] == list(pb.DisconnectReason.values())


# -- publications ----------------------------------------------------------------------------------


def test_track_publications_follow_the_snapshot() -> None:
    p = RemoteParticipant(info(tracks=[track("TR_a"), track("TR_b")]))
    assert list(p.track_publications) == ["TR_a", "TR_b"]
    kept = p.track_publications["TR_b"]

    p._update(info(tracks=[track("TR_b", muted=True), track("TR_c")]))
    pubs = p.track_publications
    assert list(pubs) == ["TR_b", "TR_c"]
    assert pubs["TR_b"] is kept, "a kept track keeps its publication object"
    assert kept.muted is True


def test_track_publications_is_a_copy() -> None:
    p = RemoteParticipant(info(tracks=[track("TR_a")]))
    pubs = cast("dict[str, TrackPublication]", p.track_publications)
    pubs.clear()
    assert list(p.track_publications) == ["TR_a"]


def test_duplicate_track_sid_in_a_snapshot_counts_once() -> None:
    p = RemoteParticipant(info(tracks=[track("TR_a"), track("TR_a", muted=True)]))
    assert len(p.track_publications) == 1


def test_track_publication_properties() -> None:
    t = pb.TrackInfo(
        sid="TR_v",
        name="cam",
        type=pb.VIDEO,
        source=pb.CAMERA,
        mime_type="video/VP8",
        muted=True,
        width=640,
        height=480,
    )
    pub = TrackPublication(t)
    # Official enums: TrackKind.KIND_VIDEO is 2 where the wire's VIDEO is 1 (kind_from_wire).
    assert (pub.sid, pub.name, pub.kind, pub.source) == (
        "TR_v",
        "cam",
        rtc.TrackKind.KIND_VIDEO,
        rtc.TrackSource.SOURCE_CAMERA,
    )
    assert (pub.mime_type, pub.muted, pub.width, pub.height) == ("video/VP8", True, 640, 480)
    assert pub.info is t
    assert repr(pub) == "<TrackPublication sid=TR_v name='cam' muted=True>"
    pub._update(pb.TrackInfo(sid="TR_v", name="cam", muted=False))
    assert pub.muted is False


# -- local participant -----------------------------------------------------------------------------


class _RecordingEngine:
    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    async def update_metadata(self, **kwargs: object) -> None:
        self.calls.append(kwargs)


async def test_local_participant_setters_go_through_the_engine() -> None:
    engine = _RecordingEngine()
    me = LocalParticipant(info("me"), cast("Engine", engine), cast("RpcDriver", None))
    await me.set_metadata("m")
    await me.set_name("Me")
    await me.set_attributes({"k": "v", "gone": ""})
    assert engine.calls == [
        {"metadata": "m"},
        {"name": "Me"},
        {"attributes": {"k": "v", "gone": ""}},
    ]


def test_class_hierarchy() -> None:
    assert issubclass(RemoteParticipant, Participant)
    assert issubclass(LocalParticipant, Participant)
    assert rtc.RemoteParticipant is RemoteParticipant


class _SignalEngine:
    def __init__(self) -> None:
        self.signals: list[pb.SignalRequest] = []
        self.packets: list[tuple[pb.DataPacket, bool]] = []
        self.settings: list[pb.UpdateTrackSettings] = []

    def send_signal(self, request: pb.SignalRequest) -> None:
        self.signals.append(request)

    async def send_data(self, packet: pb.DataPacket, *, reliable: bool) -> None:
        self.packets.append((packet, reliable))

    def update_track_settings(self, settings: pb.UpdateTrackSettings) -> None:
        self.settings.append(settings)


def _local(engine: _SignalEngine) -> LocalParticipant:
    return LocalParticipant(info("me"), cast("Engine", engine), cast("RpcDriver", None))


def test_set_track_subscription_permissions_sends_the_official_request() -> None:
    engine = _SignalEngine()
    _local(engine).set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[
            rtc.ParticipantTrackPermission(participant_identity="ann", allow_all=True),
            rtc.ParticipantTrackPermission(participant_identity="bob", allowed_track_sids=["TR_1"]),
        ],
    )
    assert engine.signals == [
        pb.SignalRequest(
            subscription_permission=pb.SubscriptionPermission(
                all_participants=False,
                track_permissions=[
                    pb.TrackPermission(participant_identity="ann", all_tracks=True),
                    pb.TrackPermission(participant_identity="bob", track_sids=["TR_1"]),
                ],
            )
        )
    ]


def test_set_track_subscription_permissions_refuses_other_entries() -> None:
    engine = _SignalEngine()
    with pytest.raises(LocalProtocolError, match="ParticipantTrackPermission"):
        _local(engine).set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[{"participant_identity": "ann"}],  # type: ignore[list-item]
        )
    assert engine.signals == []


async def test_publish_transcription_sends_a_reliable_legacy_packet() -> None:
    engine = _SignalEngine()
    segment = rtc.TranscriptionSegment(
        id="s1", text="hello", start_time=10, end_time=20, language="en", final=True
    )
    await _local(engine).publish_transcription(
        rtc.Transcription(participant_identity="me", track_sid="TR_A", segments=[segment])
    )
    assert engine.packets == [
        (
            pb.DataPacket(
                transcription=pb.Transcription(
                    transcribed_participant_identity="me",
                    track_id="TR_A",
                    segments=[
                        pb.TranscriptionSegment(
                            id="s1",
                            text="hello",
                            start_time=10,
                            end_time=20,
                            final=True,
                            language="en",
                        )
                    ],
                )
            ),
            True,
        )
    ]


def test_set_video_quality_takes_video_quality_and_checks_it() -> None:
    engine = _SignalEngine()
    owner = RemoteParticipant(info("bob"))
    owner._bind(cast("Engine", engine))
    publication = rtc.RemoteTrackPublication(track("TR_V"), owner)
    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)
    assert engine.settings == [pb.UpdateTrackSettings(track_sids=["TR_V"], quality=pb.LOW)]
    with pytest.raises(LocalProtocolError, match="not a VideoQuality"):
        publication.set_video_quality(7)


def test_publication_features_are_the_announced_ones() -> None:
    publication = TrackPublication(
        track(
            "TR_F",
            audio_features=[pb.TF_STEREO, pb.TF_PRECONNECT_BUFFER],
            packet_trailer_features=[pb.PTF_FRAME_ID],
        )
    )
    assert publication.audio_features == [0, 6]
    assert publication.frame_metadata_features == [1]
    publication.audio_features.append(3)  # a copy
    assert publication.audio_features == [0, 6]


def test_frame_metadata_numbers_are_the_official_ones() -> None:
    official = pytest.importorskip("livekit.rtc")

    theirs = {name: int(number) for name, number in official.FrameMetadataFeature.items()}
    assert theirs == {
        name.replace("PTF_", "FMF_"): int(number)
        for name, number in pb.PacketTrailerFeature.items()
    }
