"""proto/lkproto/_pb/api.proto is livekit-protocol's server API schema, less a listed remainder.

1. Descriptors: every message and enum of api.proto has a livekit-protocol twin (same name under
   ``livekit.``) with the same fields (number, name, JSON name, type, label, presence, oneof,
   referenced type) except the fields listed in OMITTED, and each listed field really exists
   upstream (the list cannot go stale).
2. Bytes: a message built with livekit-protocol's classes (any content hypothesis draws, with
   the OMITTED fields cleared) parses with ours with no unknown field left and serializes back to
   exactly the same bytes, for every message of api.proto: the requests lkproto sends are the
   bytes livekit-api sends, and the answers parse the same.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pool, unknown_fields
from google.protobuf.descriptor import Descriptor, EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol import agent as _up_agent  # noqa: F401  (registers descriptors)
from livekit.protocol import agent_dispatch as _up_dispatch  # noqa: F401
from livekit.protocol import egress as _up_egress  # noqa: F401
from livekit.protocol import ingress as _up_ingress  # noqa: F401
from livekit.protocol import room as _up_room  # noqa: F401
from livekit.protocol import sip as _up_sip  # noqa: F401
from livekit.protocol import webhook as _up_webhook  # noqa: F401

from lkproto.wire import api as apipb
from tests._support.pbstrategies import messages
from tests.unit.wire.test_schema_compat import _rel, _shape

API_FILE = apipb.CreateRoomRequest.DESCRIPTOR.file

# Fields of livekit-protocol's messages that api.proto leaves out, and why: each refers to a
# nested SIP description lkproto's schema does not carry (the services refuse the calls
# that need them).
OMITTED: dict[str, set[str]] = {
    "SIPTrunkInfo": {"transport"},
    "SIPInboundTrunkInfo": {
        "include_headers",
        "ringing_timeout",
        "ringing_timeout_status",
        "max_call_duration",
        "media_encryption",
        "media",
        "created_at",
        "updated_at",
    },
    "SIPOutboundTrunkInfo": {
        "transport",
        "include_headers",
        "media_encryption",
        "media",
        "created_at",
        "updated_at",
    },
    "SIPDispatchRuleInfo": {"rule", "media", "media_encryption", "created_at", "updated_at"},
}


def _api_messages() -> list[Descriptor]:
    out: list[Descriptor] = []

    def walk(d: Descriptor) -> None:
        if not d.GetOptions().map_entry:
            out.append(d)
        for n in d.nested_types:
            walk(n)

    for d in API_FILE.message_types_by_name.values():
        walk(d)
    return out


def _api_enums() -> list[EnumDescriptor]:
    out = list(API_FILE.enum_types_by_name.values())
    for d in _api_messages():
        out.extend(d.enum_types)
    return out


def _twin(desc: Descriptor) -> Descriptor:
    return descriptor_pool.Default().FindMessageTypeByName("livekit." + _rel(desc.full_name))


def test_schema_has_every_service_message() -> None:
    names = {d.name for d in _api_messages()}
    room = descriptor_pool.Default().FindServiceByName("livekit.RoomService")
    dispatch = descriptor_pool.Default().FindServiceByName("livekit.AgentDispatchService")
    for service in (room, dispatch):
        for method in service.methods:
            for t in (method.input_type, method.output_type):
                if t.file.name == "livekit_models.proto":
                    continue  # Room, ParticipantInfo: models.proto (test_schema_compat)
                assert t.name in names, f"{service.name}.{method.name} needs {t.name}"


@pytest.mark.parametrize("desc", _api_messages(), ids=lambda d: _rel(d.full_name))
def test_message_matches_livekit_protocol(desc: Descriptor) -> None:
    theirs = _twin(desc)
    omitted = OMITTED.get(_rel(desc.full_name), set())
    assert omitted <= set(theirs.fields_by_name), "OMITTED names a field upstream lacks"
    ours = {f.number: _shape(f) for f in desc.fields}
    expected = {f.number: _shape(f) for f in theirs.fields if f.name not in omitted}
    assert ours == expected


def test_omitted_only_names_our_messages() -> None:
    assert set(OMITTED) <= {_rel(d.full_name) for d in _api_messages()}


@pytest.mark.parametrize("desc", _api_enums(), ids=lambda d: _rel(d.full_name))
def test_enum_matches_livekit_protocol(desc: EnumDescriptor) -> None:
    theirs = descriptor_pool.Default().FindEnumTypeByName("livekit." + _rel(desc.full_name))
    assert {v.name: v.number for v in desc.values} == {v.name: v.number for v in theirs.values}


def _strip(msg: Message) -> None:
    """Clear the OMITTED fields of ``msg`` and of every message inside it."""
    for name in OMITTED.get(msg.DESCRIPTOR.name, set()) if _in_api(msg) else set():
        msg.ClearField(name)
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            vf = field.message_type.fields_by_name["value"]
            if vf.message_type is not None:
                for v in value.values():
                    _strip(v)
        elif field.is_repeated:
            for v in value:
                _strip(v)
        else:
            _strip(value)


def _in_api(msg: Message) -> bool:
    # Only messages that api.proto defines have omissions; models are complete.
    return msg.DESCRIPTOR.file.name != "livekit_models.proto"


def _no_unknown(msg: Message) -> None:
    assert len(unknown_fields.UnknownFieldSet(msg)) == 0, msg.DESCRIPTOR.full_name
    for field, value in msg.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        for v in value if field.is_repeated else [value]:
            _no_unknown(v)


TOP_LEVEL = [d for d in API_FILE.message_types_by_name.values()]


@pytest.mark.parametrize("desc", TOP_LEVEL, ids=lambda d: d.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_bytes_as_livekit_protocol(desc: Descriptor, data: st.DataObject) -> None:
    theirs = data.draw(messages(_twin(desc)))
    _strip(theirs)
    wire = theirs.SerializeToString(deterministic=True)
    ours = GetMessageClass(desc).FromString(wire)
    _no_unknown(ours)
    assert ours.SerializeToString(deterministic=True) == wire


def test_official_request_shapes_give_the_same_bytes() -> None:
    """The requests of a typical admin script, written both ways, are byte for byte equal."""
    from livekit import api as official

    pairs = [
        (
            apipb.CreateRoomRequest(
                name="lobby",
                empty_timeout=30,
                metadata="m",
                agents=[apipb.RoomAgentDispatch(agent_name="helper", metadata="x")],
            ),
            official.CreateRoomRequest(
                name="lobby",
                empty_timeout=30,
                metadata="m",
                agents=[official.RoomAgentDispatch(agent_name="helper", metadata="x")],
            ),
        ),
        (
            apipb.UpdateSubscriptionsRequest(
                room="r",
                identity="a",
                track_sids=["TR_1"],
                subscribe=True,
                participant_tracks=[
                    apipb.ParticipantTracks(participant_sid="PA", track_sids=["T"])
                ],
            ),
            official.UpdateSubscriptionsRequest(
                room="r",
                identity="a",
                track_sids=["TR_1"],
                subscribe=True,
                participant_tracks=[
                    official.ParticipantTracks(participant_sid="PA", track_sids=["T"])
                ],
            ),
        ),
        (
            apipb.SendDataRequest(
                room="r", data=b"hi", kind=apipb.DataPacket.LOSSY, topic="t", nonce=b"n" * 16
            ),
            official.SendDataRequest(
                room="r", data=b"hi", kind=official.DataPacket.LOSSY, topic="t", nonce=b"n" * 16
            ),
        ),
        (
            apipb.UpdateParticipantRequest(
                room="r",
                identity="a",
                permission=apipb.ParticipantPermission(can_publish=True),
                attributes={"k": "v"},
            ),
            official.UpdateParticipantRequest(
                room="r",
                identity="a",
                permission=official.ParticipantPermission(can_publish=True),
                attributes={"k": "v"},
            ),
        ),
        (
            apipb.CreateAgentDispatchRequest(agent_name="helper", room="r", metadata="{}"),
            official.CreateAgentDispatchRequest(agent_name="helper", room="r", metadata="{}"),
        ),
        (
            apipb.MoveParticipantRequest(room="a", identity="i", destination_room="b"),
            official.MoveParticipantRequest(room="a", identity="i", destination_room="b"),
        ),
    ]
    for ours, theirs in pairs:
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
            deterministic=True
        ), type(ours).__name__
