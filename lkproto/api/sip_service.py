"""SipService: SIP trunks and dispatch rules (livekit-api's shape), listing and deleting.

The server keeps SIP configuration in its store and dials through a SIP service; a server
without them answers with its own error, raised as :class:`~lkproto.api.ServerError`. Creating
and updating trunks and rules, and dialling or transferring calls, are refused: their requests
carry nested SIP descriptions (dispatch rule kinds, media and header options, transfer and
dialling settings) that lkproto's schema does not define.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

from lkproto.api._service import Service, unsupported_method
from lkproto.api.access_token import SIPGrants, VideoGrants
from lkproto.api.twirp_client import TwirpClient
from lkproto.wire import api as apipb

__all__ = ["SVC", "SipService"]

SVC: Final = "SIP"
"""Twirp service name (``/twirp/livekit.SIP/<Method>``)."""

_NO_SCHEMA: Final = (
    "lkproto's schema lacks the nested SIP trunk, rule and call settings of this request"
)


def _refuse(name: str) -> Callable[..., Awaitable[NoReturn]]:
    return unsupported_method(f"SipService.{name}", _NO_SCHEMA)


class SipService(Service):
    """List and delete SIP trunks and dispatch rules (``LiveKitAPI().sip``).

    Every call is signed with the ``sip.admin`` grant, which the server requires for managing
    SIP configuration (S:pkg/service/auth.go, EnsureSIPAdminPermission). The ``*_sip_*``
    spellings are livekit-api's deprecated aliases; they warn as there.

    Raises (every method):
        ServerError: the server's Twirp error, or ``unavailable`` with status 0.
    """

    def __init__(
        self, client: TwirpClient, api_key: str, api_secret: str, token: str | None = None
    ) -> None:
        super().__init__(client, SVC, api_key, api_secret, token)

    create_inbound_trunk = _refuse("create_inbound_trunk")
    update_inbound_trunk = _refuse("update_inbound_trunk")
    update_inbound_trunk_fields = _refuse("update_inbound_trunk_fields")
    create_outbound_trunk = _refuse("create_outbound_trunk")
    update_outbound_trunk = _refuse("update_outbound_trunk")
    update_outbound_trunk_fields = _refuse("update_outbound_trunk_fields")
    create_dispatch_rule = _refuse("create_dispatch_rule")
    update_dispatch_rule = _refuse("update_dispatch_rule")
    update_dispatch_rule_fields = _refuse("update_dispatch_rule_fields")
    create_sip_participant = _refuse("create_sip_participant")
    transfer_sip_participant = _refuse("transfer_sip_participant")
    create_sip_inbound_trunk = _refuse("create_sip_inbound_trunk")
    update_sip_inbound_trunk = _refuse("update_sip_inbound_trunk")
    update_sip_inbound_trunk_fields = _refuse("update_sip_inbound_trunk_fields")
    create_sip_outbound_trunk = _refuse("create_sip_outbound_trunk")
    update_sip_outbound_trunk = _refuse("update_sip_outbound_trunk")
    update_sip_outbound_trunk_fields = _refuse("update_sip_outbound_trunk_fields")
    create_sip_dispatch_rule = _refuse("create_sip_dispatch_rule")
    update_sip_dispatch_rule = _refuse("update_sip_dispatch_rule")
    update_sip_dispatch_rule_fields = _refuse("update_sip_dispatch_rule_fields")

    def _admin(self) -> tuple[VideoGrants, SIPGrants]:
        return VideoGrants(), SIPGrants(admin=True)

    async def list_inbound_trunk(
        self,
        list: apipb.ListSIPInboundTrunkRequest,
    ) -> apipb.ListSIPInboundTrunkResponse:
        """List inbound trunks (all, or by id or number)."""
        return await self._call(
            "ListSIPInboundTrunk", list, apipb.ListSIPInboundTrunkResponse, *self._admin()
        )

    async def list_outbound_trunk(
        self,
        list: apipb.ListSIPOutboundTrunkRequest,
    ) -> apipb.ListSIPOutboundTrunkResponse:
        """List outbound trunks (all, or by id or number)."""
        return await self._call(
            "ListSIPOutboundTrunk", list, apipb.ListSIPOutboundTrunkResponse, *self._admin()
        )

    async def list_dispatch_rule(
        self,
        list: apipb.ListSIPDispatchRuleRequest,
    ) -> apipb.ListSIPDispatchRuleResponse:
        """List dispatch rules (all, or by id or trunk)."""
        return await self._call(
            "ListSIPDispatchRule", list, apipb.ListSIPDispatchRuleResponse, *self._admin()
        )

    async def delete_trunk(self, delete: apipb.DeleteSIPTrunkRequest) -> apipb.SIPTrunkInfo:
        """Delete a trunk (inbound or outbound); returns it as it was."""
        return await self._call("DeleteSIPTrunk", delete, apipb.SIPTrunkInfo, *self._admin())

    async def delete_dispatch_rule(
        self, delete: apipb.DeleteSIPDispatchRuleRequest
    ) -> apipb.SIPDispatchRuleInfo:
        """Delete a dispatch rule; returns it as it was."""
        return await self._call(
            "DeleteSIPDispatchRule", delete, apipb.SIPDispatchRuleInfo, *self._admin()
        )

    # livekit-api keeps the *_sip_* spellings as deprecated aliases that warn; so do we, so
    # code run with warnings as errors behaves the same.
    async def list_sip_inbound_trunk(
        self, list: apipb.ListSIPInboundTrunkRequest
    ) -> apipb.ListSIPInboundTrunkResponse:
        """Deprecated alias of :meth:`list_inbound_trunk` (warns ``DeprecationWarning``)."""
        _deprecated("list_sip_inbound_trunk", "list_inbound_trunk")
        return await self.list_inbound_trunk(list)

    async def list_sip_outbound_trunk(
        self, list: apipb.ListSIPOutboundTrunkRequest
    ) -> apipb.ListSIPOutboundTrunkResponse:
        """Deprecated alias of :meth:`list_outbound_trunk` (warns ``DeprecationWarning``)."""
        _deprecated("list_sip_outbound_trunk", "list_outbound_trunk")
        return await self.list_outbound_trunk(list)

    async def list_sip_dispatch_rule(
        self, list: apipb.ListSIPDispatchRuleRequest
    ) -> apipb.ListSIPDispatchRuleResponse:
        """Deprecated alias of :meth:`list_dispatch_rule` (warns ``DeprecationWarning``)."""
        _deprecated("list_sip_dispatch_rule", "list_dispatch_rule")
        return await self.list_dispatch_rule(list)

    async def delete_sip_trunk(self, delete: apipb.DeleteSIPTrunkRequest) -> apipb.SIPTrunkInfo:
        """Deprecated alias of :meth:`delete_trunk` (warns ``DeprecationWarning``)."""
        _deprecated("delete_sip_trunk", "delete_trunk")
        return await self.delete_trunk(delete)

    async def delete_sip_dispatch_rule(
        self, delete: apipb.DeleteSIPDispatchRuleRequest
    ) -> apipb.SIPDispatchRuleInfo:
        """Deprecated alias of :meth:`delete_dispatch_rule` (warns ``DeprecationWarning``)."""
        _deprecated("delete_sip_dispatch_rule", "delete_dispatch_rule")
        return await self.delete_dispatch_rule(delete)


def _deprecated(old: str, new: str) -> None:
    # stacklevel 3: the caller of the alias, past the coroutine frame.
    warnings.warn(f"{old} is deprecated, use {new} instead", DeprecationWarning, stacklevel=3)
