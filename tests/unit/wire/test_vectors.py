"""Golden vectors: real wire messages of the official SDKs decode and re-encode with lkproto.wire.

``tests/vectors/*.json`` (every file) are written by ``tools/capture_vectors.py`` (see its
docstring for how each message was captured): ``python-livekit-*.json`` from the official Python
SDK, ``js-livekit-client-*.json`` from npm ``livekit-client`` in headless Chromium. Every vector
names its SDK, SDK version, server version, scenario and direction.

Byte identity: protobuf does not fix the order of fields on the wire. Our encoder (upb) writes
fields in field-number order, and so does the Python SDK's (prost, for its Rust core): its frames
(direction ``>``) must re-encode to the very same bytes. livekit-client's (protobuf-es) writes
fields in *declaration* order (``DataPacket`` declares ``participant_identity = 4`` and
``destination_identities = 5`` before its oneof members ``user = 2`` ...) and map entries in
insertion order; upb writes maps in its own order. So livekit-client's ``>`` vectors must equal
our re-encoding once both have each message's fields stably sorted by number (repeated fields
keep their order) and map entries sorted: order is the only difference allowed. In the 2.23.0
capture every ``>`` vector but one re-encodes byte for byte as it is; the exception is the RPC v2
request's stream header, whose four ``lk.rpc_request_*`` attributes upb writes in another order.
livekit-server (Go) writes a message's oneof member *after* its other fields and map entries in
map order, so what the server wrote (``<``: SignalResponse frames, DataPackets it relayed and
stamped) re-encodes to the same size and the same message, possibly in another order. For every
vector:

- it decodes as its recorded type, with no unknown field anywhere (our schema knows it all);
- re-encoding gives the same number of bytes and an equal message; ``>`` vectors re-encode
  byte for byte (livekit-client's: after sorting the fields by number, as above);
- one decode/encode round is a fixed point for the deterministic serialization (maps have no
  defined order otherwise, in upb as in Go).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lkproto.wire import encode
from lkproto.wire.tap import ENVELOPES, count_unknown_fields, decode_any, message_type_name

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor

VECTOR_DIR = Path(__file__).resolve().parents[2] / "vectors"
PROVENANCE = ("sdk", "sdk_version", "server_version", "scenario", "direction")
# SDKs whose encoder writes fields in declaration order (protobuf-es), not in number order.
DECLARATION_ORDER_SDKS = frozenset({"livekit-client"})


def _load() -> list[dict[str, str]]:
    vectors: list[dict[str, str]] = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        vectors.extend(json.loads(path.read_text(encoding="utf-8")))
    return vectors


VECTORS = _load()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _by_field_number(raw: bytes, descriptor: Descriptor) -> bytes:
    """``raw`` with every message's fields stably sorted by field number (repeated fields keep
    their order) and map entries sorted by their bytes (maps have no order), recursively through
    the sub-messages the schema knows."""
    fields: list[tuple[int, bytes, bytes]] = []
    pos = 0
    while pos < len(raw):
        start = pos
        key, pos = _varint(raw, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            pos = _varint(raw, pos)[1]
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        elif wire_type == 2:
            size, body = _varint(raw, pos)
            pos = body + size
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.message_type is not None:
                chunk = raw[start:body] + _by_field_number(raw[body:pos], field.message_type)
                is_map = field.message_type.GetOptions().map_entry
                fields.append((number, chunk if is_map else b"", chunk))  # same size, prefix
                continue
        else:
            raise AssertionError(f"unexpected wire type {wire_type} in {descriptor.full_name}")
        fields.append((number, b"", raw[start:pos]))
    assert pos == len(raw)
    return b"".join(chunk for _, _, chunk in sorted(fields, key=lambda field: field[:2]))


def test_vectors_exist_with_provenance() -> None:
    assert VECTORS, "run tools/capture_vectors.py"
    for vector in VECTORS:
        assert all(vector.get(key) for key in PROVENANCE), vector
        assert vector["direction"] in ("<", ">")
    types = {v["type"].split(".")[0] for v in VECTORS}
    assert types == set(ENVELOPES)


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{i}-{v['type']}" for i, v in enumerate(VECTORS)])
def test_vector_decodes_and_reencodes(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["hex"])
    envelope = vector["type"].split(".")[0]
    _, message = decode_any(raw, envelope)
    assert message_type_name(message) == vector["type"]
    assert count_unknown_fields(message) == 0
    again = encode(message)
    assert len(again) == len(raw)
    assert decode_any(again, envelope)[1] == message
    if vector["direction"] == ">":
        if vector["sdk"] in DECLARATION_ORDER_SDKS:
            # protobuf-es: declaration order, maps in insertion order (module docstring).
            in_order = _by_field_number(raw, message.DESCRIPTOR)
            assert _by_field_number(again, message.DESCRIPTOR) == in_order
        else:
            assert again == raw
    # Map entries (stream header attributes) have no defined order, ours included: the fixed
    # point holds for the deterministic serialization.
    canonical = message.SerializeToString(deterministic=True)
    assert decode_any(canonical, envelope)[1].SerializeToString(deterministic=True) == canonical


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{i}-{v['type']}" for i, v in enumerate(VECTORS)])
def test_type_guess_matches(vector: dict[str, str]) -> None:
    """``lkproto decode`` without --type names the captured message, except where the bytes are
    equally valid as the other envelope (``leave`` is member 8 of both)."""
    raw = bytes.fromhex(vector["hex"])
    _, message = decode_any(raw)
    if message_type_name(message) != vector["type"]:
        assert vector["type"].split(".")[1] == message_type_name(message).split(".")[1] == "leave"
        _, recorded = decode_any(raw, vector["type"].split(".")[0])
        assert count_unknown_fields(recorded) == count_unknown_fields(message) == 0
