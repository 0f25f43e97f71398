"""Golden vectors: real wire messages of the official SDKs decode and re-encode with lkproto.wire.

``tests/vectors/*.json`` are written by ``tools/capture_vectors.py`` (see its docstring for how
each message was captured); every vector names its SDK, SDK version, server version, scenario
and direction.

Byte identity: protobuf does not fix the order of fields on the wire. Our encoder (upb) writes
fields in field-number order, and so does the SDKs' (prost, for the Rust core of the Python
SDK): their frames (direction ``>``) must re-encode to the very same bytes. livekit-server (Go)
writes a message's oneof member *after* its other fields and map entries in map order, so what
the server wrote (``<``: SignalResponse frames, DataPackets it relayed and stamped) re-encodes
to the same size and the same message, possibly in another order. For every vector:

- it decodes as its recorded type, with no unknown field anywhere (our schema knows it all);
- re-encoding gives the same number of bytes and an equal message; ``>`` vectors re-encode
  byte for byte;
- one decode/encode round is a fixed point for the deterministic serialization (maps have no
  defined order otherwise, in upb as in Go).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lkproto.wire import encode
from lkproto.wire.tap import ENVELOPES, count_unknown_fields, decode_any, message_type_name

VECTOR_DIR = Path(__file__).resolve().parents[2] / "vectors"
PROVENANCE = ("sdk", "sdk_version", "server_version", "scenario", "direction")


def _load() -> list[dict[str, str]]:
    vectors: list[dict[str, str]] = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        vectors.extend(json.loads(path.read_text(encoding="utf-8")))
    return vectors


VECTORS = _load()


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
