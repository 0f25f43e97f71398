"""Drives :mod:`lkproto.core.e2ee` for a room: seals outgoing data packets, opens incoming ones.

The engine calls :meth:`E2eeDriver.seal` on every ``DataPacket`` before it is sequenced and sent
(so the resend buffer and the wire hold ciphertext), and the room calls :meth:`E2eeDriver.open`
on every received packet holding ``encrypted_packet`` before it is dispatched. This module owns
what the sans-I/O core must not: the randomness of data IVs (``os.urandom`` plus a counter), the
logs, and handing the core's state changes to the room.

What arrives encrypted and cannot be opened (no key, wrong key, damaged) is logged, reported as an
:class:`~lkproto.core.e2ee.EncryptionStateChanged` and dropped: it never reaches a stream, an RPC
or a ``data_received`` handler as garbage (issue 16 item 3).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from lkproto.core.e2ee import DataDecrypted, EncryptionStateChanged, KeyProvider, data_iv

if TYPE_CHECKING:
    from collections.abc import Callable

    from lkproto.wire import pb

__all__ = ["E2eeDriver"]

_log = logging.getLogger("lkproto.e2ee")


class E2eeDriver:
    """One room's end-to-end encryption of data packets (and the home of its state events)."""

    def __init__(
        self,
        provider: KeyProvider,
        *,
        local_identity: Callable[[], str],
        on_state: Callable[[EncryptionStateChanged], None],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """Bind a key provider to a room.

        Args:
            provider: the room's keys.
            local_identity: the local participant's identity (known once joined).
            on_state: called with every state change, on the event loop.
            random_bytes: the IV randomness (``os.urandom``; tests inject a fixed source).
        """
        self.provider = provider
        self.enabled = True
        """False: packets go out in clear text (``E2EEManager.set_enabled(False)``)."""
        self._local_identity = local_identity
        self._on_state = on_state
        self._random_bytes = random_bytes
        self._counter = int.from_bytes(random_bytes(4), "big")

    def seal(self, packet: pb.DataPacket) -> pb.DataPacket:
        """``packet`` as it goes on the wire: its value encrypted unless it travels clear.

        Raises:
            lkproto.errors.LocalProtocolError: encryption is on and there is no key to use
                (the packet is not sent rather than sent in clear text).
        """
        if not self.enabled:
            return packet
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        try:
            return self.provider.encrypt_packet(
                packet, self._local_identity(), data_iv(self._random_bytes, self._counter)
            )
        finally:
            self.flush()

    def open(self, packet: pb.DataPacket) -> pb.DataPacket | None:
        """The decrypted packet, or None when it cannot be opened (logged and reported)."""
        result = self.provider.decrypt_packet(packet)
        self.flush()
        if isinstance(result, DataDecrypted):
            return result.packet
        _log.warning(
            "= dropping an encrypted packet from %r: %s",
            packet.participant_identity,
            result.reason,
        )
        return None

    def flush(self) -> None:
        """Hand the provider's pending state changes to the room."""
        while (event := self.provider.next_event()) is not None:
            self._on_state(event)
