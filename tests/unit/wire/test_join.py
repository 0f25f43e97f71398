from __future__ import annotations

import base64
import gzip
from urllib.parse import parse_qs, urlsplit

import pytest

from lkproto import errors
from lkproto.wire import (
    JOIN_REQUEST_MAX_BYTES,
    PROTOCOL_VERSION,
    client_info,
    join_request,
    pb,
    rejection_error,
    signal_url_v0,
    signal_url_v1,
    unwrap_join_request,
    validate_url,
    wrap_join_request,
)


def test_client_info_identifies_python() -> None:
    info = client_info(version="1.2.3")
    assert info.sdk == pb.ClientInfo.PYTHON
    assert info.protocol == PROTOCOL_VERSION == 17
    # RPC v2 and inline streams (2), raw-deflate stream content (PROTOCOL-MAP §15).
    assert info.client_protocol == 2
    assert list(info.capabilities) == [pb.ClientInfo.CAP_COMPRESSION_DEFLATE_RAW]
    assert list(client_info(client_protocol=0, capabilities=()).capabilities) == []


def test_auto_subscribe_is_explicit() -> None:
    req = join_request(auto_subscribe=False)
    assert req.HasField("connection_settings")
    assert req.connection_settings.auto_subscribe is False
    assert not req.connection_settings.HasField("subscriber_allow_pause")
    req2 = join_request(subscriber_allow_pause=False, auto_subscribe_data_track=True)
    assert req2.connection_settings.HasField("subscriber_allow_pause")
    assert req2.connection_settings.auto_subscribe_data_track is True


@pytest.mark.parametrize("compression", ["auto", "gzip", "none"])
def test_wrap_unwrap_round_trip(compression: str) -> None:
    req = join_request(
        metadata="m" * 500,
        attributes={"a": "1"},
        publisher_offer=pb.SessionDescription(type="offer", sdp="v=0\r\n" * 50, id=1),
    )
    value = wrap_join_request(req, compression=compression)  # type: ignore[arg-type]
    assert unwrap_join_request(value) == req


def test_wrap_uses_url_safe_padded_base64_and_gzip_only_when_smaller() -> None:
    small = join_request()
    wrapped = pb.WrappedJoinRequest.FromString(base64.urlsafe_b64decode(wrap_join_request(small)))
    raw = small.SerializeToString()
    if len(gzip.compress(raw, mtime=0)) >= len(raw):
        assert wrapped.compression == pb.WrappedJoinRequest.NONE
    big = join_request(metadata="x" * 2000)
    value = wrap_join_request(big)
    assert len(value) % 4 == 0
    assert "+" not in value
    assert "/" not in value
    wrapped = pb.WrappedJoinRequest.FromString(base64.urlsafe_b64decode(value))
    assert wrapped.compression == pb.WrappedJoinRequest.GZIP
    assert pb.JoinRequest.FromString(gzip.decompress(wrapped.join_request)) == big


def test_wrap_refuses_oversize() -> None:
    with pytest.raises(errors.LocalProtocolError):
        wrap_join_request(join_request(metadata="x" * (JOIN_REQUEST_MAX_BYTES + 1)))


@pytest.mark.parametrize(
    "value",
    [
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xff").decode(),
        base64.urlsafe_b64encode(
            pb.WrappedJoinRequest(
                compression=pb.WrappedJoinRequest.GZIP, join_request=b"not gzip"
            ).SerializeToString()
        ).decode(),
        base64.urlsafe_b64encode(
            pb.WrappedJoinRequest(  # 7 names no compression method
                compression=pb.WrappedJoinRequest.Compression.ValueType(7),
                join_request=b"",
            ).SerializeToString()
        ).decode(),
        base64.urlsafe_b64encode(
            pb.WrappedJoinRequest(
                compression=pb.WrappedJoinRequest.GZIP,
                join_request=gzip.compress(b"\x00" * (JOIN_REQUEST_MAX_BYTES + 10)),
            ).SerializeToString()
        ).decode(),
        base64.urlsafe_b64encode(
            pb.WrappedJoinRequest(
                compression=pb.WrappedJoinRequest.GZIP, join_request=gzip.compress(b"abc")[:-4]
            ).SerializeToString()
        ).decode(),
    ],
)
def test_unwrap_rejects_bad_values(value: str) -> None:
    with pytest.raises(errors.DecodeError):
        unwrap_join_request(value)


def test_signal_url_v1() -> None:
    url = signal_url_v1("http://127.0.0.1:7880/", "QUJD", token="tok")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("ws", "127.0.0.1:7880", "/rtc/v1")
    assert parse_qs(parts.query) == {"access_token": ["tok"], "join_request": ["QUJD"]}
    assert signal_url_v1("wss://h/prefix", "x").startswith("wss://h/prefix/rtc/v1?join_request=x")
    assert "access_token" not in signal_url_v1("wss://h", "x")


def test_signal_url_v0() -> None:
    url = signal_url_v0("https://h", token="t", auto_subscribe=False, version="9")
    parts = urlsplit(url)
    assert parts.scheme == "wss"
    assert parts.path == "/rtc"
    q = parse_qs(parts.query)
    assert q["auto_subscribe"] == ["0"]
    assert q["sdk"] == ["python"]
    assert q["protocol"] == ["17"]
    url = signal_url_v0("ws://h", reconnect=True, participant_sid="PA_1", reconnect_reason=1)
    q = parse_qs(urlsplit(url).query)
    assert q["reconnect"] == ["1"]
    assert q["sid"] == ["PA_1"]
    assert q["reconnect_reason"] == ["1"]
    with pytest.raises(errors.LocalProtocolError):
        signal_url_v0("ws://h", reconnect=True)


@pytest.mark.parametrize("bad", ["ftp://h", "h:7880", "", "ws://"])
def test_bad_server_url(bad: str) -> None:
    with pytest.raises(errors.LocalProtocolError):
        signal_url_v1(bad, "x")


def test_validate_url() -> None:
    assert validate_url("ws://h:1/rtc/v1?a=b") == "http://h:1/rtc/v1/validate?a=b"
    assert validate_url("wss://h/rtc?a=b") == "https://h/rtc/validate?a=b"


def test_rejection_errors_are_typed() -> None:
    e = rejection_error(401, "invalid token: x, error: token is expired")
    assert isinstance(e, errors.UnauthorizedError)
    assert e.status == 401
    assert isinstance(
        rejection_error(404, "requested room does not exist"), errors.RoomNotFoundError
    )
    other = rejection_error(503, "busy")
    assert type(other) is errors.JoinRejectedError
    assert isinstance(other, errors.ConnectError)
