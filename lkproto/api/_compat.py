"""How ``lkproto.api`` compares with PyPI ``livekit-api``, name by name, as a Markdown table.

The rows are computed from the code: every name in the official ``livekit.api.__all__``, and
every public method of the official service classes, is looked up in ``lkproto.api``; a method
refused with :func:`~lkproto.api._service.unsupported_method` reports its reason, a difference
worth knowing is noted in :data:`NOTES`, and a name lkproto lacks must be explained in
:data:`MISSING`. ``tests/unit/api/test_compat.py`` renders the table against the installed
``livekit-api`` and checks the copy in ``docs/guides/server-api.md`` (``LKPROTO_UPDATE_README=1``
rewrites it), so the table cannot go stale. The official package is passed in, never imported here.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from lkproto.api._service import unsupported_reason

__all__ = ["MISSING", "NOTES", "SERVICES", "render_table", "rows"]

_SAME: Final = "same"
_SIP_INFO: Final = (
    "differs: the trunk and rule infos lack their nested SIP settings (rule kind, media, "
    "header options, durations, timestamps), which stay unknown fields of the answer"
)
_SIP_ALIAS: Final = (
    "deprecated alias, warns `DeprecationWarning` as there; otherwise as the non-`sip_` row"
)

NOTES: Final[dict[str, str]] = {
    "LiveKitAPI": (
        "differs: `session=` is refused (`UnsupportedFeatureError`: requests use the standard "
        "library in a worker thread, no aiohttp); `timeout` takes seconds or anything with a "
        "`.total` (an `aiohttp.ClientTimeout`); `failover` is accepted but lkproto never fails "
        "over to other LiveKit Cloud regions; `.connector` raises `UnsupportedFeatureError`"
    ),
    "AccessToken": (
        "same, plus `with_kind` also takes a `ParticipantInfo.Kind` value (written as its "
        "lower-case name, the form the server reads) and `to_jwt(now=)`"
    ),
    "TokenVerifier": "same; every failure is `TokenError` (an `LkError`), not a PyJWT error",
    "WebhookReceiver": (
        "differs: failures raise `TokenError` / `DecodeError` instead of a bare `Exception`; "
        "`receive` also takes the body as bytes and a `Bearer ` prefix on the token"
    ),
    "ServerError": (
        "differs: also an `lkproto.errors.ApiError` (so `str()` reads `code (status): "
        "message`); no answer at all raises it with status 0 and code `unavailable` instead of "
        "an aiohttp exception"
    ),
    "TwirpError": "differs: alias of `ServerError`, as there (see that row)",
    "SipCallError": (
        "same attributes; not raised, since SIP dialling and transfer are unsupported here"
    ),
    "room_service": (
        "same module name; `RoomService` is built by `LiveKitAPI` (it takes lkproto's Twirp "
        "client, not an aiohttp session); `RoomServiceClient`, lkproto's plain-argument client, "
        "stays alongside"
    ),
    "egress_service": "same module name; see the `EgressService` rows",
    "ingress_service": "same module name; see the `IngressService` rows",
    "sip_service": "same module name; see the `SipService` rows",
    "agent_dispatch_service": "same module name; see the `AgentDispatchService` rows",
    "RoomService.send_data": (
        "differs: a nonce the caller set is kept and the request is not modified (livekit-api "
        "overwrites `send.nonce` in place); without one both send 16 random bytes"
    ),
    "RoomService.forward_participant": (
        "same; LiveKit Cloud only: livekit-server v1.13.5 answers 500 `not implemented`"
    ),
    "RoomService.move_participant": (
        "same; LiveKit Cloud only: livekit-server v1.13.5 answers 500 `not implemented`"
    ),
    "SipService.list_inbound_trunk": _SIP_INFO,
    "SipService.list_outbound_trunk": _SIP_INFO,
    "SipService.list_dispatch_rule": _SIP_INFO,
    "SipService.delete_trunk": _SIP_INFO,
    "SipService.delete_dispatch_rule": _SIP_INFO,
    "SipService.list_sip_inbound_trunk": _SIP_ALIAS,
    "SipService.list_sip_outbound_trunk": _SIP_ALIAS,
    "SipService.list_sip_dispatch_rule": _SIP_ALIAS,
    "SipService.delete_sip_trunk": _SIP_ALIAS,
    "SipService.delete_sip_dispatch_rule": _SIP_ALIAS,
}
"""Official name -> how lkproto's differs (or a remark on a name that is the same)."""

MISSING: Final[dict[str, str]] = {
    "connector_service": (
        "unsupported: the WhatsApp/Twilio connectors are LiveKit Cloud services and their "
        "messages are not in lkproto's schema"
    ),
}
"""Official names lkproto does not have, with the reason."""

SERVICES: Final[dict[str, tuple[str, str]]] = {
    "RoomService": ("room_service", "room"),
    "AgentDispatchService": ("agent_dispatch_service", "agent_dispatch"),
    "EgressService": ("egress_service", "egress"),
    "IngressService": ("ingress_service", "ingress"),
    "SipService": ("sip_service", "sip"),
}
"""Official service class -> (its module, the ``LiveKitAPI`` property)."""


def _status(name: str, present: bool, method: object = None) -> str:
    if not present:
        reason = MISSING.get(name)
        if reason is None:
            raise LookupError(f"{name} is missing from lkproto.api and not listed in MISSING")
        return reason
    reason = unsupported_reason(method) if method is not None else None
    if reason is not None:
        return f"unsupported: {reason}"
    return NOTES.get(name, _SAME)


def rows(official: ModuleType, ours: ModuleType) -> list[tuple[str, str]]:
    """``(official name, status)`` for every exported name and every service method.

    Args:
        official: the imported ``livekit.api`` package.
        ours: the imported ``lkproto.api`` package.

    Raises:
        LookupError: an official name lkproto lacks is not explained in :data:`MISSING`.
    """
    out: list[tuple[str, str]] = []
    for name in official.__all__:
        out.append((name, _status(name, hasattr(ours, name))))
    for cls_name, (module_name, _prop) in SERVICES.items():
        theirs = getattr(getattr(official, module_name), cls_name)
        mine = getattr(getattr(ours, module_name), cls_name)
        for method_name, member in vars(theirs).items():
            if method_name.startswith("_") or not callable(member):
                continue
            full = f"{cls_name}.{method_name}"
            method = getattr(mine, method_name, None)
            out.append((full, _status(full, method is not None, method)))
    out.append(_message_row(official, ours))
    return out


def _message_row(official: ModuleType, ours: ModuleType) -> tuple[str, str]:
    messages = [
        n
        for n, v in vars(official).items()
        if isinstance(v, type) and issubclass(v, Message) and not n.startswith("_")
    ]
    enums = [n for n, v in vars(official).items() if isinstance(v, EnumTypeWrapper)]
    have_messages = sum(hasattr(ours, n) for n in messages)
    have_enums = sum(hasattr(ours, n) for n in enums)
    return (
        "protobuf messages and enums re-exported from livekit-protocol",
        f"differs: {have_messages} of {len(messages)} messages and {have_enums} of "
        f"{len(enums)} enums: those the supported calls, tokens and webhooks take or return "
        "(checked field by field against livekit-protocol, listed omissions aside, by "
        "tests/unit/api/test_api_schema.py); the rest (SIP rules and calls, connectors, "
        "agent worker protocol, analytics, ...) are not in lkproto's schema",
    )


def render_table(official: ModuleType, ours: ModuleType) -> str:
    """The Markdown table of :func:`rows`, with the official package's version in the header."""
    version = getattr(official, "__version__", "?")
    lines = [
        f"| `livekit.api` {version} | lkproto |",
        "|---|---|",
        *(f"| `{name}` | {status} |" for name, status in rows(official, ours)),
    ]
    return "\n".join(lines) + "\n"
