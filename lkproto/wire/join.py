"""Join URLs for the signalling WebSocket: ``/rtc/v1`` (one protobuf parameter) and ``/rtc`` (v0).

PROTOCOL-MAP §1: ``/rtc/v1`` needs ``join_request`` = base64url (with ``=`` padding, Go's
``base64.URLEncoding``) of a serialized ``WrappedJoinRequest``, whose ``join_request`` bytes are a
``JoinRequest``, gzip-compressed when that makes them smaller. ``/rtc`` takes plain query
parameters. Both accept the token as ``access_token`` or as an ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping, Sequence
from typing import Final, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from lkproto import __version__
from lkproto.errors import (
    DecodeError,
    JoinRejectedError,
    LocalProtocolError,
    RoomNotFoundError,
    UnauthorizedError,
)
from lkproto.wire import pb
from lkproto.wire.codec import decode, encode

__all__ = [
    "CLIENT_CAPABILITIES",
    "CLIENT_PROTOCOL",
    "JOIN_REQUEST_MAX_BYTES",
    "PROTOCOL_VERSION",
    "SDK_NAME",
    "client_info",
    "join_request",
    "rejection_error",
    "signal_url_v0",
    "signal_url_v1",
    "unwrap_join_request",
    "validate_url",
    "wrap_join_request",
]

# PROTOCOL-MAP §1 Protocol numbers: server v1.13.5 speaks 17, as do JS and Rust.
PROTOCOL_VERSION: Final = 17
# Client-to-client level mirrored in ParticipantInfo.client_protocol (PROTOCOL-MAP §15): 2 = RPC
# over data streams (v2, lkproto.asyncio.rpc) and single-packet inline streams (core.streams);
# raise it only together with the features it promises.
CLIENT_PROTOCOL: Final = 2
# ClientInfo.capabilities advertised (PROTOCOL-MAP §15): the stream receiver inflates DEFLATE_RAW
# content with bounds.
CLIENT_CAPABILITIES: Final[tuple[pb.ClientInfo.Capability.ValueType, ...]] = (
    pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW,
)
# ClientInfo.SDK value sent in v0 query strings (PROTOCOL-MAP §1 v0 query parameters).
SDK_NAME: Final = "python"
# PROTOCOL-MAP §1 v1 join_request: the server caps the wrapped and the inflated JoinRequest at
# http.DefaultMaxHeaderBytes.
JOIN_REQUEST_MAX_BYTES: Final = 1 << 20

Compression = Literal["auto", "gzip", "none"]


def client_info(
    *,
    version: str = __version__,
    protocol: int = PROTOCOL_VERSION,
    client_protocol: int = CLIENT_PROTOCOL,
    capabilities: Sequence[pb.ClientInfo.Capability.ValueType] = CLIENT_CAPABILITIES,
    os: str = "",
    os_version: str = "",
    device_model: str = "",
    network: str = "",
) -> pb.ClientInfo:
    """The ``ClientInfo`` lkproto identifies itself with: ``sdk=PYTHON`` (PROTOCOL-MAP §14)."""
    return pb.ClientInfo(
        sdk=pb.ClientInfo.PYTHON,
        version=version,
        protocol=protocol,
        client_protocol=client_protocol,
        capabilities=list(capabilities),
        os=os,
        os_version=os_version,
        device_model=device_model,
        network=network,
    )


def join_request(
    *,
    info: pb.ClientInfo | None = None,
    auto_subscribe: bool = True,
    adaptive_stream: bool = False,
    subscriber_allow_pause: bool | None = None,
    auto_subscribe_data_track: bool | None = None,
    metadata: str = "",
    attributes: Mapping[str, str] | None = None,
    publisher_offer: pb.SessionDescription | None = None,
    reconnect: bool = False,
    reconnect_reason: pb.ReconnectReason.ValueType = pb.RR_UNKNOWN,
    participant_sid: str = "",
) -> pb.JoinRequest:
    """Build a ``JoinRequest``.

    ``auto_subscribe`` is always written explicitly: on ``/rtc/v1`` an omitted value means *false*,
    unlike v0 where an absent parameter means true (PROTOCOL-MAP §1 v1 join_request).
    """
    settings = pb.ConnectionSettings(auto_subscribe=auto_subscribe, adaptive_stream=adaptive_stream)
    if subscriber_allow_pause is not None:
        settings.subscriber_allow_pause = subscriber_allow_pause
    if auto_subscribe_data_track is not None:
        settings.auto_subscribe_data_track = auto_subscribe_data_track
    request = pb.JoinRequest(
        client_info=info if info is not None else client_info(),
        connection_settings=settings,
        metadata=metadata,
        participant_attributes=dict(attributes or {}),
        reconnect=reconnect,
        reconnect_reason=reconnect_reason,
        participant_sid=participant_sid,
    )
    if publisher_offer is not None:
        request.publisher_offer.CopyFrom(publisher_offer)
    return request


def wrap_join_request(request: pb.JoinRequest, *, compression: Compression = "auto") -> str:
    """Encode a ``JoinRequest`` as the ``join_request`` query value of ``/rtc/v1``.

    Args:
        request: the join request.
        compression: ``"auto"`` gzips only when that is smaller (as the Rust SDK does);
            ``"gzip"`` / ``"none"`` force a choice.

    Raises:
        LocalProtocolError: the result would exceed :data:`JOIN_REQUEST_MAX_BYTES`.
    """
    raw = encode(request)
    packed = gzip.compress(raw, mtime=0)
    use_gzip = compression == "gzip" or (compression == "auto" and len(packed) < len(raw))
    wrapped = pb.WrappedJoinRequest(
        compression=pb.WrappedJoinRequest.GZIP if use_gzip else pb.WrappedJoinRequest.NONE,
        join_request=packed if use_gzip else raw,
    )
    data = encode(wrapped)
    if len(raw) > JOIN_REQUEST_MAX_BYTES or len(data) > JOIN_REQUEST_MAX_BYTES:
        raise LocalProtocolError(f"join request exceeds {JOIN_REQUEST_MAX_BYTES} bytes")
    return base64.urlsafe_b64encode(data).decode("ascii")


def unwrap_join_request(value: str | bytes) -> pb.JoinRequest:
    """Decode a ``join_request`` query value (what the server does; for taps and conformance).

    Raises:
        DecodeError: bad base64, bad protobuf, bad gzip, unknown compression or over the limits.
    """
    try:
        # strict like the server's Go base64.URLEncoding: URL-safe alphabet, padding required
        data = base64.b64decode(value, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("WrappedJoinRequest", f"bad base64url: {exc}") from exc
    if len(data) > JOIN_REQUEST_MAX_BYTES:
        raise DecodeError("WrappedJoinRequest", f"over {JOIN_REQUEST_MAX_BYTES} bytes")
    wrapped = decode(pb.WrappedJoinRequest, data)
    payload = wrapped.join_request
    if wrapped.compression == pb.WrappedJoinRequest.GZIP:
        payload = _gunzip_capped(payload, JOIN_REQUEST_MAX_BYTES)
    elif wrapped.compression != pb.WrappedJoinRequest.NONE:
        raise DecodeError("WrappedJoinRequest", f"unknown compression {wrapped.compression}")
    return decode(pb.JoinRequest, payload)


def _gunzip_capped(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeError("JoinRequest", f"bad gzip: {exc}") from exc
    if len(out) > limit:
        raise DecodeError("JoinRequest", f"inflates beyond {limit} bytes")
    if not inflater.eof:
        raise DecodeError("JoinRequest", "truncated gzip stream")
    return out


def _base(url: str) -> tuple[str, str, str]:
    """(scheme, netloc, path-without-trailing-slash) of a ws/wss/http/https server URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise LocalProtocolError(
            f"not a LiveKit server URL: {url!r} (want ws://, wss://, http(s)://)"
        )
    return scheme, parts.netloc, parts.path.rstrip("/")


def signal_url_v1(url: str, join_request_value: str, *, token: str | None = None) -> str:
    """``ws(s)://host[/prefix]/rtc/v1?join_request=...[&access_token=...]``.

    Leave ``token`` out to send it as an ``Authorization: Bearer`` header instead.
    """
    scheme, netloc, path = _base(url)
    query: dict[str, str] = {}
    if token is not None:
        query["access_token"] = token
    query["join_request"] = join_request_value
    return urlunsplit((scheme, netloc, f"{path}/rtc/v1", urlencode(query), ""))


def signal_url_v0(
    url: str,
    *,
    token: str | None = None,
    auto_subscribe: bool = True,
    adaptive_stream: bool = False,
    version: str = __version__,
    protocol: int = PROTOCOL_VERSION,
    client_protocol: int = CLIENT_PROTOCOL,
    reconnect: bool = False,
    participant_sid: str = "",
    reconnect_reason: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """``ws(s)://host[/prefix]/rtc?...`` with the v0 query parameters of PROTOCOL-MAP §1.

    Booleans are sent as ``1``/``0``: the server treats only ``1`` and ``true`` as true.
    """
    scheme, netloc, path = _base(url)
    query: dict[str, str] = {}
    if token is not None:
        query["access_token"] = token
    query.update(
        auto_subscribe="1" if auto_subscribe else "0",
        adaptive_stream="1" if adaptive_stream else "0",
        sdk=SDK_NAME,
        version=version,
        protocol=str(protocol),
        client_protocol=str(client_protocol),
    )
    if reconnect:
        if not participant_sid:
            raise LocalProtocolError("a v0 reconnect needs the participant SID")
        query["reconnect"] = "1"
        query["sid"] = participant_sid
        if reconnect_reason is not None:
            query["reconnect_reason"] = str(reconnect_reason)
    query.update(extra or {})
    return urlunsplit((scheme, netloc, f"{path}/rtc", urlencode(query), ""))


def validate_url(signal_url: str) -> str:
    """The HTTP ``…/validate`` twin of a signal URL: GET it to learn why a join is refused."""
    parts = urlsplit(signal_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/validate", parts.query, ""))


def rejection_error(status: int, body: str) -> JoinRejectedError:
    """Map the HTTP status and text of a refused upgrade to a typed error (PROTOCOL-MAP §1)."""
    if status == 401:
        return UnauthorizedError(status, body)
    if status == 404 and "room does not exist" in body:
        return RoomNotFoundError(status, body)
    return JoinRejectedError(status, body)
