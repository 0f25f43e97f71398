"""Twirp errors under livekit-api's names, in the lkproto tree (subclasses of ``ApiError``).

livekit-api raises ``ServerError`` (alias ``TwirpError``) with ``code``, ``message``, ``status``
and ``metadata``; lkproto raised :class:`~lkproto.errors.ApiError` with the first three. The
classes here are both: code that catches either name keeps working.
"""

from __future__ import annotations

from typing import Final

from lkproto.errors import ApiError

__all__ = ["ServerError", "ServerErrorCode", "SipCallError", "TwirpError", "TwirpErrorCode"]


class ServerError(ApiError):
    """An error answer of the server's Twirp API, or no answer at all (``status == 0``).

    Args:
        code: the Twirp error code (see :class:`ServerErrorCode`).
        msg: the server's message.
        status: the HTTP status; 0 when no HTTP answer arrived.
        metadata: the Twirp ``meta`` object (string to string), empty if absent.

    Attributes:
        code: the Twirp error code.
        message: the server's message.
        status: the HTTP status.
        metadata: the Twirp ``meta`` object.
    """

    def __init__(
        self, code: str, msg: str, *, status: int, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, code, msg)
        self.metadata: dict[str, str] = dict(metadata or {})


TwirpError = ServerError
"""livekit-api's older name for :class:`ServerError`."""


class SipCallError(ServerError):
    """A SIP dialling or transfer call failed; the SIP outcome rides in :attr:`metadata`."""

    @property
    def sip_status_code(self) -> int | None:
        """The SIP response code (e.g. 486), if the server reported one."""
        raw = self.metadata.get("sip_status_code")
        try:
            return None if raw is None else int(raw)
        except ValueError:
            return None

    @property
    def sip_status(self) -> str | None:
        """The SIP reason phrase, if reported."""
        return self.metadata.get("sip_status")

    @property
    def sip_transfer_reason(self) -> str | None:
        """Why a transfer failed, if it was a transfer."""
        return self.metadata.get("sip_transfer_reason")

    @property
    def sip_transfer_id(self) -> str | None:
        """The id of the failed transfer, if it was a transfer."""
        return self.metadata.get("sip_transfer_id")

    @classmethod
    def from_server_error(cls, err: ServerError) -> SipCallError:
        """Re-type a :class:`ServerError` of a SIP call."""
        return cls(err.code, err.message, status=err.status, metadata=err.metadata)


class ServerErrorCode:
    """The Twirp error codes (Twirp spec, "Error Codes"), as string constants."""

    CANCELED: Final = "canceled"
    UNKNOWN: Final = "unknown"
    INVALID_ARGUMENT: Final = "invalid_argument"
    MALFORMED: Final = "malformed"
    DEADLINE_EXCEEDED: Final = "deadline_exceeded"
    NOT_FOUND: Final = "not_found"
    BAD_ROUTE: Final = "bad_route"
    ALREADY_EXISTS: Final = "already_exists"
    PERMISSION_DENIED: Final = "permission_denied"
    UNAUTHENTICATED: Final = "unauthenticated"
    RESOURCE_EXHAUSTED: Final = "resource_exhausted"
    FAILED_PRECONDITION: Final = "failed_precondition"
    ABORTED: Final = "aborted"
    OUT_OF_RANGE: Final = "out_of_range"
    UNIMPLEMENTED: Final = "unimplemented"
    INTERNAL: Final = "internal"
    UNAVAILABLE: Final = "unavailable"
    DATA_LOSS: Final = "dataloss"


TwirpErrorCode = ServerErrorCode
"""livekit-api's older name for :class:`ServerErrorCode`."""
