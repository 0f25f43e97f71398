"""Stateless codecs: protobuf messages <-> bytes, and join URLs.

No state, no I/O, no clock. Needs only ``protobuf``. The generated classes are in
:mod:`lkproto.wire.pb`; the codecs in :mod:`lkproto.wire.codec` and :mod:`lkproto.wire.join`.
"""

from __future__ import annotations

from lkproto.wire import pb
from lkproto.wire.codec import (
    DATA_PACKET_MAX_BYTES,
    decode,
    decode_data_packet,
    decode_signal_request,
    decode_signal_response,
    encode,
    encode_data_packet,
    encode_signal_request,
    encode_signal_response,
    which,
)
from lkproto.wire.describe import describe
from lkproto.wire.join import (
    CLIENT_CAPABILITIES,
    CLIENT_PROTOCOL,
    JOIN_REQUEST_MAX_BYTES,
    PROTOCOL_VERSION,
    SDK_NAME,
    client_info,
    join_request,
    rejection_error,
    signal_url_v0,
    signal_url_v1,
    unwrap_join_request,
    validate_url,
    wrap_join_request,
)

__all__ = [
    "CLIENT_CAPABILITIES",
    "CLIENT_PROTOCOL",
    "DATA_PACKET_MAX_BYTES",
    "JOIN_REQUEST_MAX_BYTES",
    "PROTOCOL_VERSION",
    "SDK_NAME",
    "client_info",
    "decode",
    "decode_data_packet",
    "decode_signal_request",
    "decode_signal_response",
    "describe",
    "encode",
    "encode_data_packet",
    "encode_signal_request",
    "encode_signal_response",
    "join_request",
    "pb",
    "rejection_error",
    "signal_url_v0",
    "signal_url_v1",
    "unwrap_join_request",
    "validate_url",
    "which",
    "wrap_join_request",
]
