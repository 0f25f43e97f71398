"""Hypothesis strategies that build arbitrary protobuf messages from their descriptors.

Works for any generated class (ours or livekit-protocol's): scalars over their full range, open
enums including numbers the schema does not name, repeated fields, maps, nested messages (depth
capped) and at most one member per oneof (or a forced one).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

F = FieldDescriptor

_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}

_text = st.text(max_size=12)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return st.integers(lo, hi)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return _text
    if t == F.TYPE_BYTES:
        return st.binary(max_size=12)
    if t == F.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=False)
    if t == F.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if t == F.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field always names its enum
        named = [v.number for v in enum.values]
        # proto3 enums are open: unnamed numbers must survive a round trip too
        return st.one_of(st.sampled_from(named), st.integers(-5, 200))
    raise AssertionError(f"unhandled field type {t} for {field.full_name}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _real_oneof(field: FieldDescriptor) -> str | None:
    o = field.containing_oneof
    if o is None or (len(o.fields) == 1 and o.name == "_" + field.name):
        return None  # proto3 `optional` is a synthetic oneof
    return o.name


def messages(
    descriptor: Descriptor, *, depth: int = 3, force_oneof: tuple[str, str] | None = None
) -> st.SearchStrategy[Message]:
    """Arbitrary instances of the message class behind ``descriptor``.

    Args:
        descriptor: message descriptor (``SomeMessage.DESCRIPTOR``).
        depth: nested messages below this depth are left empty.
        force_oneof: (oneof name, member name) that must be set on the top-level message.
    """
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        # Only the valid range has a JSON form (RFC 3339, years 1..9999).
        return st.builds(
            cls,
            seconds=st.integers(-62_135_596_800, 253_402_300_799),
            nanos=st.integers(0, 999_999_999),
        )

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        oneofs: dict[str, list[FieldDescriptor]] = {}
        for field in descriptor.fields:
            name = _real_oneof(field)
            if name is not None:
                oneofs.setdefault(name, []).append(field)
                continue
            _fill(draw, msg, field, depth)
        for name, members in oneofs.items():
            chosen: FieldDescriptor | None
            if force_oneof is not None and force_oneof[0] == name:
                chosen = next(f for f in members if f.name == force_oneof[1])
            else:
                chosen = draw(st.none() | st.sampled_from(members))
            if chosen is not None:
                _fill(draw, msg, chosen, depth, force=True)
        return msg

    return build()


def _fill(
    draw: st.DrawFn, msg: Message, field: FieldDescriptor, depth: int, *, force: bool = False
) -> None:
    if not force and not draw(st.booleans()):
        return
    if _is_map(field):
        entry = field.message_type
        assert entry is not None  # _is_map checked it
        key_f, val_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
        keys = draw(st.lists(_scalar(key_f), max_size=3, unique=True))
        target = getattr(msg, field.name)
        for k in keys:
            if val_f.message_type is not None:
                if depth > 0:
                    target[k].CopyFrom(draw(messages(val_f.message_type, depth=depth - 1)))
                else:
                    target[k].SetInParent()
            else:
                target[k] = draw(_scalar(val_f))
        return
    if field.message_type is not None:
        if field.is_repeated:
            n = draw(st.integers(0, 2)) if depth > 0 else 0
            rep = getattr(msg, field.name)
            for _ in range(n):
                rep.add().CopyFrom(draw(messages(field.message_type, depth=depth - 1)))
        elif depth > 0:
            getattr(msg, field.name).CopyFrom(draw(messages(field.message_type, depth=depth - 1)))
        else:
            getattr(msg, field.name).SetInParent()
        return
    if field.is_repeated:
        getattr(msg, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
    else:
        setattr(msg, field.name, draw(_scalar(field)))
