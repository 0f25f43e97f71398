"""End-to-end encryption, shaped like the official ``livekit.rtc`` E2EE API (issue 16).

``RoomOptions(encryption=E2EEOptions(key_provider_options=KeyProviderOptions(shared_key=...)))``
turns it on; ``room.e2ee_manager.key_provider`` sets, exports and ratchets keys while connected.
Keys, derivation, the ratchet and the cryptors are :mod:`lkproto.core.e2ee` (PROTOCOL-MAP §11).

What lkproto encrypts: every data packet the official SDK encrypts (user packets, chat, RPC,
text and byte streams), and Opus, VP8 and H.264 frames (everything lkproto publishes); it
decrypts received Opus, VP8, VP9 and H.264 frames. A remote
encrypted track lkproto cannot decrypt is reported (``track_subscription_failed`` and
``e2ee_state_changed`` with ``INTERNAL_ERROR``) instead of being decoded as garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lkproto.core import e2ee as core
from lkproto.core.e2ee import EncryptionState, KeyDerivationFunction
from lkproto.errors import LocalProtocolError
from lkproto.rtc._enum import ProtoEnum

if TYPE_CHECKING:
    from lkproto.asyncio.e2ee import E2eeDriver

__all__ = [
    "DEFAULT_FAILURE_TOLERANCE",
    "DEFAULT_KEY_RING_SIZE",
    "DEFAULT_RATCHET_SALT",
    "DEFAULT_RATCHET_WINDOW_SIZE",
    "E2EEManager",
    "E2EEOptions",
    "EncryptionState",
    "EncryptionType",
    "FrameCryptor",
    "KeyDerivationFunction",
    "KeyProvider",
    "KeyProviderOptions",
]

DEFAULT_RATCHET_SALT = core.DEFAULT_RATCHET_SALT
"""Salt of every key derivation unless configured: ``b"LKFrameEncryptionKey"`` (official SDKs)."""
DEFAULT_RATCHET_WINDOW_SIZE = core.DEFAULT_RATCHET_WINDOW_SIZE
"""Ratchet steps a receiver tries after a frame fails to decrypt (16, official Python default)."""
DEFAULT_FAILURE_TOLERANCE = core.DEFAULT_FAILURE_TOLERANCE
"""Failed frames before a key counts as missing; -1 = never (official Python default)."""
DEFAULT_KEY_RING_SIZE = core.DEFAULT_KEY_RING_SIZE
"""Key slots per participant, addressed by the frame trailer's key index (16, official Python
default)."""


class EncryptionType(ProtoEnum):
    """Same names and values as the official ``EncryptionType`` (and ``Encryption.Type``)."""

    NONE = 0
    GCM = 1
    CUSTOM = 2


@dataclass
class KeyProviderOptions:
    """Same fields and defaults as the official ``KeyProviderOptions``.

    Attributes:
        shared_key: key material every participant uses; None for per-participant keys
            (:meth:`KeyProvider.set_key`).
        ratchet_salt: salt of every key derivation.
        ratchet_window_size: ratchets a receiver tries when a frame does not decrypt.
        failure_tolerance: failures before a key counts as missing; -1 = never.
        key_ring_size: key slots per participant (the key index is one byte).
        key_derivation_function: PBKDF2 (default) or HKDF.
    """

    shared_key: bytes | None = None
    ratchet_salt: bytes = DEFAULT_RATCHET_SALT
    ratchet_window_size: int = DEFAULT_RATCHET_WINDOW_SIZE
    failure_tolerance: int = DEFAULT_FAILURE_TOLERANCE
    key_ring_size: int = DEFAULT_KEY_RING_SIZE
    key_derivation_function: KeyDerivationFunction | int = KeyDerivationFunction.PBKDF2


@dataclass
class E2EEOptions:
    """Same fields and defaults as the official ``E2EEOptions``; only ``GCM`` is supported."""

    key_provider_options: KeyProviderOptions = field(default_factory=KeyProviderOptions)
    encryption_type: EncryptionType | int = EncryptionType.GCM


def _core_provider(options: KeyProviderOptions) -> core.KeyProvider:
    """The core key provider for ``options``.

    Raises:
        LocalProtocolError: an option out of range or of the wrong type.
        lkproto.errors.UnsupportedFeatureError: ``cryptography`` is not installed.
    """
    if options.shared_key is not None and not isinstance(options.shared_key, bytes):
        raise LocalProtocolError("KeyProviderOptions.shared_key must be bytes")
    key_options = core.KeyOptions(
        ratchet_salt=options.ratchet_salt,
        ratchet_window_size=options.ratchet_window_size,
        failure_tolerance=options.failure_tolerance,
        key_ring_size=options.key_ring_size,
        key_derivation_function=options.key_derivation_function,  # type: ignore[arg-type]
    )
    return core.KeyProvider(key_options, shared_key=options.shared_key)


class KeyProvider:
    """Sets, exports and ratchets keys (official ``KeyProvider`` methods and arguments)."""

    def __init__(self, options: KeyProviderOptions, provider: core.KeyProvider) -> None:
        """Wrap the room's core provider (created by :class:`E2EEManager`)."""
        self._options = options
        self._provider = provider
        self._driver: E2eeDriver | None = None

    @property
    def options(self) -> KeyProviderOptions:
        """The options the room connected with."""
        return self._options

    def _flush(self) -> None:
        if self._driver is not None:
            self._driver.flush()

    def set_shared_key(self, key: bytes, key_index: int) -> None:
        """Set the key every participant uses, in slot ``key_index``.

        Raises:
            LocalProtocolError: empty key or a slot outside the key ring.
        """
        self._provider.set_shared_key(key, key_index)
        self._flush()

    def export_shared_key(self, key_index: int) -> bytes:
        """The shared key material in slot ``key_index`` (b"" when unset)."""
        return self._provider.export_shared_key(key_index)

    def ratchet_shared_key(self, key_index: int) -> bytes:
        """Ratchet the shared key in slot ``key_index``; returns the new material."""
        new = self._provider.ratchet_shared_key(key_index)
        self._flush()
        return new

    def set_key(self, participant_identity: str, key: bytes, key_index: int) -> None:
        """Set ``participant_identity``'s key in slot ``key_index`` (per-participant keys).

        Raises:
            LocalProtocolError: empty key or a slot outside the key ring.
        """
        self._provider.set_key(participant_identity, key, key_index)
        self._flush()

    def export_key(self, participant_identity: str, key_index: int) -> bytes:
        """``participant_identity``'s key material in slot ``key_index`` (b"" when unset)."""
        return self._provider.export_key(participant_identity, key_index)

    def ratchet_key(self, participant_identity: str, key_index: int) -> bytes:
        """Ratchet ``participant_identity``'s slot ``key_index``; returns the new material."""
        new = self._provider.ratchet_key(participant_identity, key_index)
        self._flush()
        return new


class FrameCryptor:
    """One track's cryptor (official ``FrameCryptor``: identity, track sid, key index, enabled)."""

    def __init__(self, cryptor: core.FrameCryptor) -> None:
        """Wrap a core frame cryptor."""
        self._cryptor = cryptor

    @property
    def participant_identity(self) -> str:
        """Whose track."""
        return self._cryptor.participant_identity

    @property
    def track_sid(self) -> str:
        """Which track."""
        return self._cryptor.track_sid

    @property
    def key_index(self) -> int:
        """The key slot it encrypts with."""
        return self._cryptor.key_index

    @property
    def enabled(self) -> bool:
        """Whether frames are encrypted/decrypted (else passed unchanged)."""
        return self._cryptor.enabled

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable this track's encryption."""
        self._cryptor.set_enabled(enabled)

    def set_key_index(self, key_index: int) -> None:
        """Encrypt with slot ``key_index`` from now on."""
        self._cryptor.set_key_index(key_index)


class E2EEManager:
    """``room.e2ee_manager`` (official shape): the key provider, on/off, the frame cryptors."""

    def __init__(self, options: E2EEOptions | None) -> None:
        """Create the manager; with ``options`` None, encryption is off and there are no keys.

        Raises:
            LocalProtocolError: bad key provider options.
            lkproto.errors.UnsupportedFeatureError: ``cryptography`` is not installed.
        """
        self.options = options
        self._enabled = options is not None
        self._key_provider: KeyProvider | None = None
        self._core: core.KeyProvider | None = None
        self._driver: E2eeDriver | None = None
        if options is not None:
            self._core = _core_provider(options.key_provider_options)
            self._key_provider = KeyProvider(options.key_provider_options, self._core)

    @property
    def key_provider(self) -> KeyProvider | None:
        """The keys (None when the room connected without encryption)."""
        return self._key_provider

    @property
    def enabled(self) -> bool:
        """Whether encryption is on."""
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Turn encryption on or off (off: data and frames go out in clear text).

        Raises:
            LocalProtocolError: turning it on in a room that connected without ``encryption``.
        """
        if enabled and self._core is None:
            raise LocalProtocolError("the room connected without RoomOptions.encryption")
        self._enabled = enabled
        if self._driver is not None:
            self._driver.set_enabled(enabled)

    def frame_cryptors(self) -> list[FrameCryptor]:
        """The cryptors of the room's encrypted tracks (published and subscribed)."""
        if self._driver is None:
            return []
        return [FrameCryptor(c) for c in self._driver.cryptors.values()]

    def _bind(self, driver: E2eeDriver) -> None:
        """Attach the room's driver (at connect)."""
        self._driver = driver
        driver.set_enabled(self._enabled)
        if self._key_provider is not None:
            self._key_provider._driver = driver

    @property
    def _provider(self) -> core.KeyProvider | None:
        return self._core
