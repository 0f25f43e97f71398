"""Verify the server's signed webhooks (livekit-api's ``WebhookReceiver``).

The server POSTs a protojson :class:`~lkproto.wire.api.WebhookEvent` with an ``Authorization``
header holding an access token signed with the API secret whose ``sha256`` claim is the
base64 (standard alphabet, padded) SHA-256 of the exact body (P:webhook/notifier.go, the
signing side; P:webhook/verifier.go, the receiving side). A receiver checks the token, then the
hash, then parses the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from google.protobuf import json_format

from lkproto.api.access_token import TokenVerifier
from lkproto.errors import DecodeError, TokenError
from lkproto.wire.api import WebhookEvent

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """Checks and decodes webhook requests.

    Args:
        token_verifier: verifies the ``Authorization`` token (API key and secret of the server).

    Example::

        receiver = WebhookReceiver(TokenVerifier(key, secret))
        event = receiver.receive(body.decode(), request.headers["Authorization"])
    """

    def __init__(self, token_verifier: TokenVerifier) -> None:
        self._verifier = token_verifier

    def receive(self, body: str | bytes, auth_token: str) -> WebhookEvent:
        """Verify a webhook and return its event.

        Args:
            body: the request body exactly as received (``str`` is encoded as UTF-8, as the
                server wrote it).
            auth_token: the ``Authorization`` header value; a ``Bearer `` prefix is accepted.

        Returns:
            The event; fields newer than lkproto's schema are skipped.

        Raises:
            TokenError: the token is invalid, carries no ``sha256`` claim, the body does not
                hash to it.
            DecodeError: the verified body is not a ``WebhookEvent``.
        """
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        token = auth_token.removeprefix("Bearer ").strip()
        claims = self._verifier.verify(token)
        if not claims.sha256:
            raise TokenError("webhook token has no sha256 claim")
        try:
            expected = base64.b64decode(claims.sha256, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TokenError("webhook token's sha256 claim is not base64") from exc
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), expected):
            raise TokenError("webhook body does not match the token's sha256 claim")
        try:
            return json_format.Parse(raw, WebhookEvent(), ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise DecodeError("WebhookEvent", str(exc)) from exc
