"""Fuzz: any bytes are accepted or rejected with DecodeError, never anything else."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from lkproto import errors
from lkproto.wire import (
    decode_data_packet,
    decode_signal_request,
    decode_signal_response,
    pb,
    unwrap_join_request,
)

_DECODERS = [decode_signal_response, decode_signal_request, decode_data_packet]


def _mutations() -> st.SearchStrategy[bytes]:
    seed = pb.SignalResponse(
        join=pb.JoinResponse(room=pb.Room(name="r"), participant=pb.ParticipantInfo(identity="a"))
    ).SerializeToString()

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut])

    return mutate()


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300) | _mutations())
def test_decoders_only_raise_decode_error(data: bytes) -> None:
    for decoder in _DECODERS:
        with contextlib.suppress(errors.DecodeError):
            decoder(data)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=200) | st.binary(max_size=200))
def test_unwrap_join_request_only_raises_decode_error(value: str | bytes) -> None:
    with contextlib.suppress(errors.DecodeError):
        unwrap_join_request(value)
