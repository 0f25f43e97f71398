"""Blocking Twirp-over-JSON POST on top of ``urllib`` (run it in a worker thread).

Kept separate from :mod:`lkproto.api.room_service` so the client holds no transport details and
tests can exercise the error mapping directly. Only the standard library is used: ``lkproto.api``
must work with the base dependency set (protobuf only).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Final

from lkproto.api._errors import ServerError

__all__ = ["UNAVAILABLE", "USER_AGENT", "post_json", "twirp_error"]

UNAVAILABLE: Final = "unavailable"
"""Twirp code used for transport failures (no HTTP answer at all); they carry status 0."""

USER_AGENT: Final = "lkproto/0.1"

# Twirp spec, "HTTP Errors from Intermediary Proxies": a non-Twirp error body is classified by
# its HTTP status alone.
_STATUS_TO_CODE: Final = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "bad_route",
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}

# The environment's HTTP(S)_PROXY must not capture API calls (a loopback server would become
# unreachable behind a corporate proxy); livekit-api's aiohttp session ignores it as well.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def twirp_error(status: int, body: bytes) -> ServerError:
    """Build the :class:`ServerError` (an ``ApiError``) for a non-200 Twirp answer.

    Args:
        status: the HTTP status.
        body: the response body, normally ``{"code": ..., "msg": ..., "meta": ...}``.

    Returns:
        The error carrying the Twirp code, message and ``meta``, or a code derived from the
        status when the body is not a Twirp error (e.g. it came from a proxy).
    """
    try:
        decoded = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("code"), str):
        msg = decoded.get("msg")
        meta = decoded.get("meta")
        metadata = (
            {str(k): str(v) for k, v in meta.items() if isinstance(v, str)}
            if isinstance(meta, dict)
            else {}
        )
        return ServerError(
            decoded["code"],
            msg if isinstance(msg, str) else "",
            status=status,
            metadata=metadata,
        )
    code = "internal" if 300 <= status < 400 else _STATUS_TO_CODE.get(status, "unknown")
    return ServerError(code, body[:200].decode("utf-8", "replace"), status=status)


def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    *,
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    """POST ``body`` and return ``(status, response body)`` for any HTTP answer.

    Args:
        url: absolute ``http://`` or ``https://`` URL.
        body: the request, JSON unless ``content_type`` says otherwise.
        headers: extra request headers (``Authorization``).
        timeout: seconds allowed for connecting and for each blocking read.
        content_type: ``application/json`` or, for Twirp's binary form, ``application/protobuf``.

    Returns:
        The HTTP status and the full response body, also for error statuses.

    Raises:
        ServerError: status 0, code ``unavailable``, when no HTTP answer arrived (connection
            refused, DNS failure, TLS failure, timeout, connection dropped mid-answer).
    """
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "User-Agent": USER_AGENT, **headers},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        # Non-2xx statuses arrive as HTTPError; the Twirp error is in its body.
        try:
            error_body = exc.read()
        except (OSError, http.client.HTTPException):
            error_body = b""
        finally:
            exc.close()
        return exc.code, error_body
    except urllib.error.URLError as exc:
        raise ServerError(UNAVAILABLE, f"cannot reach {url}: {exc.reason}", status=0) from exc
    except (OSError, http.client.HTTPException) as exc:
        # TimeoutError, ConnectionResetError, IncompleteRead, RemoteDisconnected, ...
        raise ServerError(UNAVAILABLE, f"request to {url} failed: {exc!r}", status=0) from exc
