"""Our proto/ schema is wire-compatible with PyPI livekit-protocol.

1. Descriptor comparison: for every message and enum we define, the livekit-protocol twin (same
   name under package ``livekit``) has the same fields: number, name, JSON name, type, repeated,
   presence, oneof membership, referenced message/enum; and the same enum values. And the reverse:
   nothing the twin has is missing from ours.
2. Round trip (hypothesis): messages built with livekit-protocol's classes parse with ours into the
   same content (no unknown fields left), and our re-serialization parses back with theirs equal to
   the original. Every oneof member of SignalRequest, SignalResponse and DataPacket is forced once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf import descriptor_pool, json_format, unknown_fields
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol import metrics as up_metrics  # noqa: F401  (registers descriptors)
from livekit.protocol import models as up_models
from livekit.protocol import rtc as up_rtc

from lkproto.wire import pb
from tests._support.pbstrategies import messages

OUR_PACKAGE = "lkproto."
UPSTREAM_PACKAGE = "livekit."

OUR_FILES: list[FileDescriptor] = [
    pb.SignalRequest.DESCRIPTOR.file,
    pb.DataPacket.DESCRIPTOR.file,
    pb.Room.DESCRIPTOR.file,
]


def _walk(d: Descriptor) -> Iterator[Descriptor]:
    yield d
    for n in d.nested_types:
        yield from _walk(n)


def our_messages() -> list[Descriptor]:
    out: list[Descriptor] = []
    for f in OUR_FILES:
        for d in f.message_types_by_name.values():
            out.extend(_walk(d))
    return out


def our_enums() -> list[EnumDescriptor]:
    out: list[EnumDescriptor] = []
    for f in OUR_FILES:
        out.extend(f.enum_types_by_name.values())
    for d in our_messages():
        out.extend(d.enum_types)
    return out


def _rel(full_name: str) -> str:
    for prefix in (OUR_PACKAGE, UPSTREAM_PACKAGE):
        if full_name.startswith(prefix):
            return full_name[len(prefix) :]
    return full_name  # google.protobuf.Timestamp


def _oneof(field: FieldDescriptor) -> str | None:
    o = field.containing_oneof
    if o is None or (len(o.fields) == 1 and o.name == "_" + field.name):
        return None
    return o.name


def _shape(field: FieldDescriptor) -> tuple[object, ...]:
    return (
        field.name,
        field.json_name,
        field.type,
        field.is_repeated,
        field.has_presence,
        _oneof(field),
        _rel(field.message_type.full_name) if field.message_type else None,
        _rel(field.enum_type.full_name) if field.enum_type else None,
    )


def _upstream(desc: Descriptor | EnumDescriptor) -> Descriptor | EnumDescriptor:
    pool = descriptor_pool.Default()
    name = UPSTREAM_PACKAGE + _rel(desc.full_name)
    if isinstance(desc, Descriptor):
        return pool.FindMessageTypeByName(name)
    return pool.FindEnumTypeByName(name)


def test_we_define_a_real_schema() -> None:
    names = {_rel(d.full_name) for d in our_messages()}
    assert {"SignalRequest", "SignalResponse", "JoinRequest", "WrappedJoinRequest"} <= names
    assert {"JoinResponse", "DataPacket", "ParticipantInfo", "TrackInfo", "Room"} <= names
    assert len(names) >= 100


@pytest.mark.parametrize("desc", our_messages(), ids=lambda d: _rel(d.full_name))
def test_message_matches_livekit_protocol(desc: Descriptor) -> None:
    theirs = _upstream(desc)
    assert isinstance(theirs, Descriptor)
    ours_fields = {f.number: _shape(f) for f in desc.fields}
    their_fields = {f.number: _shape(f) for f in theirs.fields}
    assert ours_fields == their_fields
    assert desc.GetOptions().map_entry == theirs.GetOptions().map_entry


@pytest.mark.parametrize("desc", our_enums(), ids=lambda d: _rel(d.full_name))
def test_enum_matches_livekit_protocol(desc: EnumDescriptor) -> None:
    theirs = _upstream(desc)
    assert isinstance(theirs, EnumDescriptor)
    assert {v.name: v.number for v in desc.values} == {v.name: v.number for v in theirs.values}


def test_every_referenced_type_is_ours() -> None:
    """No field of ours points outside our schema (except google.protobuf well-known types)."""
    for desc in our_messages():
        for f in desc.fields:
            target = f.message_type or f.enum_type
            if target is not None:
                assert target.full_name.startswith(("lkproto.", "google.protobuf.")), f.full_name


ROOTS: list[tuple[type[Message], type[Message]]] = [
    (up_rtc.SignalRequest, pb.SignalRequest),
    (up_rtc.SignalResponse, pb.SignalResponse),
    (up_models.DataPacket, pb.DataPacket),
    (up_rtc.WrappedJoinRequest, pb.WrappedJoinRequest),
    (up_rtc.JoinRequest, pb.JoinRequest),
    (up_models.EncryptedPacketPayload, pb.EncryptedPacketPayload),
]

ONEOF_MEMBERS = [
    (theirs, ours, oneof.name, member.name)
    for theirs, ours in ROOTS[:3]
    for oneof in theirs.DESCRIPTOR.oneofs
    if not oneof.name.startswith("_")
    for member in oneof.fields
]


def _assert_no_unknown_fields(msg: Message, path: str = "") -> None:
    assert len(unknown_fields.UnknownFieldSet(msg)) == 0, f"unknown fields at {path or 'root'}"
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            vf = field.message_type.fields_by_name["value"]
            if vf.message_type is not None:
                for k, v in value.items():
                    _assert_no_unknown_fields(v, f"{path}.{field.name}[{k!r}]")
        elif field.is_repeated:
            for i, v in enumerate(value):
                _assert_no_unknown_fields(v, f"{path}.{field.name}[{i}]")
        else:
            _assert_no_unknown_fields(value, f"{path}.{field.name}")


def _round_trip(theirs_msg: Message, ours_cls: type[Message]) -> None:
    data = theirs_msg.SerializeToString()
    ours = ours_cls.FromString(data)
    _assert_no_unknown_fields(ours)
    # Same content, field by field, as protojson sees it (names, enum names, values).
    assert json_format.MessageToDict(ours) == json_format.MessageToDict(theirs_msg)
    back = type(theirs_msg).FromString(ours.SerializeToString())
    assert back == theirs_msg


def _descriptor(cls: type[Message]) -> Descriptor:
    # The stubs type Message.DESCRIPTOR as the pure-Python or the upb class; with upb (what
    # protobuf installs) isinstance accepts the upb one, so this only narrows.
    d = cls.DESCRIPTOR
    assert isinstance(d, Descriptor)
    return d


_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("theirs", "ours"), ROOTS, ids=lambda c: c.DESCRIPTOR.name)
@_SETTINGS
@given(data=st.data())
def test_round_trip_from_livekit_protocol(
    theirs: type[Message], ours: type[Message], data: st.DataObject
) -> None:
    _round_trip(data.draw(messages(_descriptor(theirs))), ours)


@pytest.mark.parametrize(
    ("theirs", "ours", "oneof", "member"),
    ONEOF_MEMBERS,
    ids=[f"{t.DESCRIPTOR.name}.{m}" for t, _, _, m in ONEOF_MEMBERS],
)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_oneof_member_round_trips(
    theirs: type[Message], ours: type[Message], oneof: str, member: str, data: st.DataObject
) -> None:
    msg = data.draw(messages(_descriptor(theirs), force_oneof=(oneof, member)))
    assert msg.WhichOneof(oneof) == member
    _round_trip(msg, ours)
    assert ours.FromString(msg.SerializeToString()).WhichOneof(oneof) == member


def test_oneof_member_lists_are_complete() -> None:
    """Every member the issue names is covered, and ours has exactly theirs."""
    for theirs, ours in ROOTS[:3]:
        for oneof in theirs.DESCRIPTOR.oneofs:
            if oneof.name.startswith("_"):
                continue
            mine = ours.DESCRIPTOR.oneofs_by_name[oneof.name]
            assert {f.name for f in mine.fields} == {f.name for f in oneof.fields}
    members = {m for t, _, _, m in ONEOF_MEMBERS if t is up_models.DataPacket}
    assert {
        "user",
        "sip_dtmf",
        "transcription",
        "chat_message",
        "rpc_request",
        "rpc_ack",
    } <= members
    assert {"rpc_response", "stream_header", "stream_chunk", "stream_trailer"} <= members
    assert {"encrypted_packet", "metrics"} <= members


def test_generated_classes_are_registered_under_our_package() -> None:
    cls = GetMessageClass(pb.SignalResponse.DESCRIPTOR)
    assert cls.DESCRIPTOR.full_name == "lkproto.SignalResponse"
    assert pb.SignalResponse.DESCRIPTOR.file.name == "lkproto/_pb/signal.proto"
