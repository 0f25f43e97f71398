"""End-to-end encryption, sans-I/O: key rings, the ratchet, and the frame and data cryptors.

Theory of operation (PROTOCOL-MAP §11; facts checked against ciphertext the official Python SDK
1.2.1 sent, see ``tests/unit/core/test_e2ee.py``):

* **Key material → AES key.** A key is set as *material* (the caller's bytes). The AES-128-GCM
  key is derived from it with the configured function and the ratchet salt (default
  ``LKFrameEncryptionKey``): PBKDF2-HMAC-SHA-256 with 100 000 iterations, or HKDF-SHA-256 with 128
  zero bytes of info.
* **Ratchet.** Ratcheting replaces the material with 256 bits derived from it by the same function
  and salt. Sender and receivers that ratchet the same material arrive at the same key, so a key
  can be rotated without distributing it again.
* **Key ring.** Every participant (or, in shared-key mode, the room) has ``key_ring_size`` slots;
  a frame's trailer and an ``EncryptedPacket`` name the slot. A sender encrypts with the slot it
  set last.
* **Receiving.** When a frame does not decrypt with its slot's key, the receiver tries the next
  ``ratchet_window_size`` ratchets of that key (the sender may have ratcheted first) and keeps the
  one that works (state ``KEY_RATCHETED``). Each failure counts against ``failure_tolerance``
  (negative: unlimited); past it the slot is treated as missing until a key is set or ratcheted.
  The ratcheted keys are derived once per material and cached: with the official default window of
  16 every undecryptable frame would otherwise cost 32 key derivations of 100 000 iterations.
* **H.264 and the IV.** A libwebrtc receiver parses the first slice header of a frame before
  decrypting it and drops a key frame whose ``pic_parameter_set_id`` it does not know; for x264's
  I slices that id is the first encrypted bit (:mod:`lkproto.wire.e2ee`). The sender therefore
  encrypts such a frame again under a fresh IV until the ciphertext keeps the id
  (:meth:`FrameCryptor.encrypt`). IVs stay unique, and only ciphertext the receiver sees anyway
  decides, so nothing about the key or the plaintext is revealed.
* **Server-injected frames.** Frames the SFU synthesises end with the room's ``sif_trailer``
  (``JoinResponse.sif_trailer``); they pass through with the trailer removed.

Nothing here does I/O or reads a clock. AES and the key derivations are an injected
:class:`Crypto` (the default, :func:`default_crypto`, imports ``cryptography`` when first asked
for, so this module imports with only ``protobuf`` installed); IVs are passed in by the caller.
State changes are pulled with :meth:`KeyProvider.next_event`.
"""

from __future__ import annotations

import collections
import enum
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, assert_never

from lkproto.errors import DecodeError, LocalProtocolError, UnsupportedFeatureError
from lkproto.wire import pb
from lkproto.wire.codec import decode
from lkproto.wire.e2ee import (
    IV_LENGTH,
    TAG_LENGTH,
    FrameCodec,
    clear_header_size,
    escape_rbsp,
    h264_slice_ids,
    move_into_payload,
    move_out_of_payload,
    parse_frame_trailer,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DEFAULT_FAILURE_TOLERANCE",
    "DEFAULT_KEY_RING_SIZE",
    "DEFAULT_RATCHET_SALT",
    "DEFAULT_RATCHET_WINDOW_SIZE",
    "H264_MAX_IV_DRAWS",
    "HKDF_INFO",
    "PBKDF2_ITERATIONS",
    "Crypto",
    "DataDecrypted",
    "DataNotDecrypted",
    "EncryptionState",
    "EncryptionStateChanged",
    "FrameCryptor",
    "KeyDerivationFunction",
    "KeyHandler",
    "KeyOptions",
    "KeyProvider",
    "data_iv",
    "default_crypto",
    "derive_aes_key",
    "frame_iv",
    "ratchet_material",
]

DEFAULT_RATCHET_SALT: Final = b"LKFrameEncryptionKey"
"""Salt of every derivation unless configured (``JS:src/e2ee/constants.ts``, official Python)."""

DEFAULT_RATCHET_WINDOW_SIZE: Final = 16
"""Ratchets a receiver tries after a failure (official Python ``KeyProviderOptions`` default)."""

DEFAULT_FAILURE_TOLERANCE: Final = -1
"""Failures before a key counts as missing; negative = never (official Python default)."""

DEFAULT_KEY_RING_SIZE: Final = 16
"""Key slots per participant; the trailer's key index is one byte (official Python default)."""

PBKDF2_ITERATIONS: Final = 100_000
"""PBKDF2-HMAC-SHA-256 iterations of key derivation and ratchet (PROTOCOL-MAP §11)."""

H264_MAX_IV_DRAWS: Final = 64
"""IVs an H.264 frame may try until its ciphertext keeps the first slice's PPS id readable.

x264's id 0 is one bit (``1``) of ciphertext: each IV succeeds with probability 1/2, so 64 draws
fail with probability 2^-64 (an id of k ciphertext bits: 2^-k per draw)."""

HKDF_INFO: Final = bytes(128)
"""HKDF info: 128 zero bytes (``JS:src/e2ee/utils.ts (getAlgoOptions)``, same in Rust)."""

_AES_KEY_BYTES: Final = 16
_RATCHET_BYTES: Final = 32


class KeyDerivationFunction(enum.IntEnum):
    """How key material becomes a key (same values as the official ``KeyDerivationFunction``)."""

    PBKDF2 = 0
    HKDF = 1


class EncryptionState(enum.IntEnum):
    """A cryptor's last outcome (same names and values as the official ``EncryptionState``)."""

    NEW = 0
    OK = 1
    ENCRYPTION_FAILED = 2
    DECRYPTION_FAILED = 3
    MISSING_KEY = 4
    KEY_RATCHETED = 5
    INTERNAL_ERROR = 6


class Crypto(Protocol):
    """The primitives the cryptors need; inject a fake in tests or another backend."""

    def pbkdf2_sha256(self, material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        """PBKDF2-HMAC-SHA-256 of ``material``."""
        ...

    def hkdf_sha256(self, material: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        """HKDF-SHA-256 (extract and expand) of ``material``."""
        ...

    def aes_gcm_encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext with the 16-byte tag appended."""
        ...

    def aes_gcm_decrypt(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None when the tag does not verify."""
        ...


class _CryptographyBackend:
    """:class:`Crypto` on the ``cryptography`` package (OpenSSL)."""

    def __init__(self) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
            from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
        except ImportError as exc:
            raise UnsupportedFeatureError(
                "RoomOptions.encryption",
                "end-to-end encryption needs the 'cryptography' package "
                "(pip install 'lkproto[rtc]')",
            ) from exc
        self._invalid_tag = InvalidTag
        self._sha256 = hashes.SHA256
        self._aesgcm = AESGCM
        self._hkdf = HKDF
        self._pbkdf2 = PBKDF2HMAC
        self._ciphers: dict[bytes, AESGCM] = {}

    def pbkdf2_sha256(self, material: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        return self._pbkdf2(self._sha256(), length, salt, iterations).derive(material)

    def hkdf_sha256(self, material: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        return self._hkdf(self._sha256(), length, salt, info).derive(material)

    def _cipher(self, key: bytes) -> AESGCM:
        cipher = self._ciphers.get(key)
        if cipher is None:
            if len(self._ciphers) >= 64:  # keys of one room: a handful; bound it anyway
                self._ciphers.clear()
            cipher = self._ciphers[key] = self._aesgcm(key)
        return cipher

    def aes_gcm_encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._cipher(key).encrypt(iv, plaintext, aad or None)

    def aes_gcm_decrypt(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
        try:
            return self._cipher(key).decrypt(iv, ciphertext, aad or None)
        except self._invalid_tag:
            return None


_default: _CryptographyBackend | None = None


def default_crypto() -> Crypto:
    """The ``cryptography``-backed primitives (imported on the first call).

    Raises:
        lkproto.errors.UnsupportedFeatureError: ``cryptography`` is not installed.
    """
    global _default  # noqa: PLW0603 - one backend (and its cipher cache) per process
    if _default is None:
        _default = _CryptographyBackend()
    return _default


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyOptions:
    """The key provider's settings (the official ``KeyProviderOptions`` without the key).

    Attributes:
        ratchet_salt: salt of every derivation.
        ratchet_window_size: ratchets a receiver tries after a failure (0: none).
        failure_tolerance: failures before a key counts as missing; negative = never.
        key_ring_size: key slots per participant, 1..256.
        key_derivation_function: PBKDF2 or HKDF.
    """

    ratchet_salt: bytes = DEFAULT_RATCHET_SALT
    ratchet_window_size: int = DEFAULT_RATCHET_WINDOW_SIZE
    failure_tolerance: int = DEFAULT_FAILURE_TOLERANCE
    key_ring_size: int = DEFAULT_KEY_RING_SIZE
    key_derivation_function: KeyDerivationFunction = KeyDerivationFunction.PBKDF2

    def __post_init__(self) -> None:
        if not isinstance(self.ratchet_salt, bytes):
            raise LocalProtocolError("ratchet_salt must be bytes")
        if isinstance(self.ratchet_window_size, bool) or not 0 <= self.ratchet_window_size <= 256:
            raise LocalProtocolError("ratchet_window_size must be an int in 0..256")
        if isinstance(self.failure_tolerance, bool) or not isinstance(self.failure_tolerance, int):
            raise LocalProtocolError("failure_tolerance must be an int (negative: unlimited)")
        # The key index travels in one byte (PROTOCOL-MAP §11).
        if isinstance(self.key_ring_size, bool) or not 1 <= self.key_ring_size <= 256:
            raise LocalProtocolError("key_ring_size must be an int in 1..256")
        try:
            object.__setattr__(
                self, "key_derivation_function", KeyDerivationFunction(self.key_derivation_function)
            )
        except ValueError:
            raise LocalProtocolError(
                f"unknown key_derivation_function {self.key_derivation_function!r}"
            ) from None


def derive_aes_key(crypto: Crypto, material: bytes, options: KeyOptions) -> bytes:
    """The AES-128 key of ``material`` (PROTOCOL-MAP §11 Keys)."""
    return _derive(crypto, material, options, _AES_KEY_BYTES)


def ratchet_material(crypto: Crypto, material: bytes, options: KeyOptions) -> bytes:
    """The material one ratchet after ``material`` (256 bits by the same function and salt)."""
    return _derive(crypto, material, options, _RATCHET_BYTES)


def _derive(crypto: Crypto, material: bytes, options: KeyOptions, length: int) -> bytes:
    if options.key_derivation_function is KeyDerivationFunction.HKDF:
        return crypto.hkdf_sha256(material, options.ratchet_salt, HKDF_INFO, length)
    return crypto.pbkdf2_sha256(material, options.ratchet_salt, PBKDF2_ITERATIONS, length)


def frame_iv(ssrc: int, rtp_timestamp: int, send_count: int) -> bytes:
    """A media frame IV as the SDKs build it: SSRC, timestamp, timestamp - (count mod 0xFFFF).

    Uniqueness per key is what matters to AES-GCM; the layout only keeps lkproto's IVs shaped like
    everyone else's (PROTOCOL-MAP §11). ``send_count`` starts at a random value per SSRC.
    """
    low = (rtp_timestamp - send_count % 0xFFFF) & 0xFFFFFFFF
    return struct.pack(">III", ssrc & 0xFFFFFFFF, rtp_timestamp & 0xFFFFFFFF, low)


def data_iv(random_bytes: Callable[[int], bytes], counter: int) -> bytes:
    """A data packet IV: 8 random bytes then a 32-bit counter, so no two IVs of a sender repeat.

    Receivers only read the transmitted IV (PROTOCOL-MAP §11 Data packets), so the layout is ours.
    """
    return random_bytes(8) + struct.pack(">I", counter & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptionStateChanged:
    """A cryptor's state changed (official ``e2ee_state_changed``).

    Attributes:
        participant_identity: whose frames or packets (the local identity for sending).
        track_sid: the track, or "" for data packets.
        state: the new state.
    """

    participant_identity: str
    track_sid: str
    state: EncryptionState


@dataclass(frozen=True, slots=True, kw_only=True)
class DataDecrypted:
    """An ``EncryptedPacket`` opened: ``packet`` holds the original value."""

    packet: pb.DataPacket
    key_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataNotDecrypted:
    """An ``EncryptedPacket`` that could not be opened; nothing of it may reach the application.

    Attributes:
        state: ``MISSING_KEY`` (no key for the slot) or ``DECRYPTION_FAILED``.
        reason: for logs.
    """

    state: EncryptionState
    reason: str


@dataclass(slots=True)
class _Slot:
    material: bytes
    key: bytes
    # The next ratchets of ``material``: (material, key) pairs, derived on first need.
    ratchets: list[tuple[bytes, bytes]] = field(default_factory=list)


class KeyHandler:
    """One key ring: a participant's, or the room's shared one."""

    def __init__(self, options: KeyOptions, crypto: Crypto) -> None:
        """Create an empty ring with ``options.key_ring_size`` slots."""
        self._options = options
        self._crypto = crypto
        self._slots: list[_Slot | None] = [None] * options.key_ring_size
        self._failures = 0
        # Frames are decrypted on decoder threads while keys change on the event loop: one
        # ring's slots and ratchet cache change under this lock only.
        self._lock = threading.RLock()
        self.current_index = 0
        """The slot set (or ratcheted) last: what a sender encrypts with."""

    @property
    def has_valid_key(self) -> bool:
        """False once failures passed the tolerance, until a key is set or ratcheted."""
        tolerance = self._options.failure_tolerance
        return tolerance < 0 or self._failures <= tolerance

    def _index(self, key_index: int) -> int:
        if isinstance(key_index, bool) or not 0 <= key_index < self._options.key_ring_size:
            raise LocalProtocolError(
                f"key_index must be in 0..{self._options.key_ring_size - 1}, not {key_index!r}"
            )
        return key_index

    def set_key(self, material: bytes, key_index: int) -> None:
        """Put ``material`` in slot ``key_index`` and make it the current slot.

        Raises:
            LocalProtocolError: empty material or an index outside the ring.
        """
        index = self._index(key_index)
        if not isinstance(material, bytes) or not material:
            raise LocalProtocolError("key material must be non-empty bytes")
        slot = _Slot(material, derive_aes_key(self._crypto, material, self._options))
        with self._lock:
            self._slots[index] = slot
            self.current_index = index
            self._failures = 0

    def export_key(self, key_index: int) -> bytes:
        """The material in slot ``key_index`` (b"" when empty, as the official SDK returns)."""
        slot = self._slots[self._index(key_index)]
        return b"" if slot is None else slot.material

    def ratchet_key(self, key_index: int) -> bytes:
        """Ratchet slot ``key_index`` once and return the new material (b"" when empty)."""
        index = self._index(key_index)
        while True:
            slot = self._slots[index]
            if slot is None:
                return b""
            self._ratchets(slot, 1)  # the slow part, outside the lock
            with self._lock:
                if self._slots[index] is slot:  # else moved meanwhile: ratchet the new one
                    self._slots[index] = self._advance(slot, 1)
                    self._failures = 0
                    return self.export_key(index)

    def key(self, key_index: int) -> bytes | None:
        """The AES key of a slot, None when empty or outside the ring."""
        if not 0 <= key_index < len(self._slots):
            return None
        slot = self._slots[key_index]
        return None if slot is None else slot.key

    def _ratchets(self, slot: _Slot, count: int) -> list[tuple[bytes, bytes]]:
        # Two key derivations per ratchet (tens of milliseconds each), so they run without the
        # lock: a decoder thread deriving must not stall the event loop setting a key. They
        # are a function of the material alone, so two threads deriving at once agree.
        derived = list(slot.ratchets)
        while len(derived) < count:
            previous = derived[-1][0] if derived else slot.material
            material = ratchet_material(self._crypto, previous, self._options)
            derived.append((material, derive_aes_key(self._crypto, material, self._options)))
        with self._lock:
            if len(slot.ratchets) < len(derived):
                slot.ratchets[:] = derived
        return derived[:count]

    def window_derived(self, key_index: int) -> bool:
        """Opening a frame or packet of slot ``key_index`` derives no key (cheap to ask).

        True also when there is nothing to derive: an empty slot, a key past the failure
        tolerance, a window of 0.
        """
        slot = self._slots[key_index] if 0 <= key_index < len(self._slots) else None
        return (
            slot is None
            or not self.has_valid_key
            or len(slot.ratchets) >= self._options.ratchet_window_size
        )

    def derive_window(self, key_index: int) -> None:
        """Derive the ratchets :meth:`open` may try for slot ``key_index`` (slow; any thread).

        Up to ``2 * ratchet_window_size`` key derivations: about 0.7 s with the official
        defaults (PBKDF2, window 16). A driver runs this off its event loop, so that
        :meth:`open` finds them ready.
        """
        slot = self._slots[key_index] if 0 <= key_index < len(self._slots) else None
        if slot is not None:
            self._ratchets(slot, self._options.ratchet_window_size)

    def _advance(self, slot: _Slot, steps: int) -> _Slot:
        material, key = self._ratchets(slot, steps)[steps - 1]
        return _Slot(material, key, slot.ratchets[steps:])

    def peek(self, key_index: int, attempt: Callable[[bytes], bytes | None]) -> bytes | None:
        """Like :meth:`open`, without changing anything: the slot's key, then the ratchets
        already derived for it (none are derived here, no failure is counted)."""
        slot = self._slots[key_index] if 0 <= key_index < len(self._slots) else None
        if slot is None:
            return None
        for key in (slot.key, *(k for _, k in list(slot.ratchets))):
            plain = attempt(key)
            if plain is not None:
                return plain
        return None

    def open(
        self, key_index: int, attempt: Callable[[bytes], bytes | None]
    ) -> tuple[bytes | None, EncryptionState]:
        """Run ``attempt(key)`` with the slot's key, then with its next ratchets.

        Returns:
            The plaintext (or None) and the state: ``OK``, ``KEY_RATCHETED`` (the slot moved
            forward), ``MISSING_KEY`` or ``DECRYPTION_FAILED`` (counted against the tolerance).
        """
        slot = self._slots[key_index] if 0 <= key_index < len(self._slots) else None
        if slot is None or not self.has_valid_key:
            return None, EncryptionState.MISSING_KEY
        plain = attempt(slot.key)
        if plain is not None:
            return plain, EncryptionState.OK
        ratchets = self._ratchets(slot, self._options.ratchet_window_size)
        for steps, (_, key) in enumerate(ratchets, start=1):
            plain = attempt(key)
            if plain is not None:
                with self._lock:
                    if self._slots[key_index] is not slot:
                        return plain, EncryptionState.OK  # a key was set meanwhile: keep it
                    self._slots[key_index] = self._advance(slot, steps)
                    self._failures = 0
                return plain, EncryptionState.KEY_RATCHETED
        with self._lock:
            if self._slots[key_index] is not slot:
                # Another thread moved this slot meanwhile: try its key first.
                return self.open(key_index, attempt)
            self._failures += 1
        return None, EncryptionState.DECRYPTION_FAILED


class KeyProvider:
    """The keys of a room: a shared ring, or one ring per participant (official ``KeyProvider``).

    In shared-key mode (``shared_key`` given, or :meth:`set_shared_key` called) every participant,
    the local one included, uses the shared ring; per-participant keys are then kept but unused.
    """

    def __init__(
        self,
        options: KeyOptions | None = None,
        *,
        shared_key: bytes | None = None,
        crypto: Crypto | None = None,
    ) -> None:
        """Create the provider; ``shared_key`` goes into slot 0 of the shared ring.

        Raises:
            LocalProtocolError: bad options or an empty shared key.
            lkproto.errors.UnsupportedFeatureError: no ``crypto`` given and ``cryptography``
                is not installed.
        """
        self.options = options if options is not None else KeyOptions()
        self._crypto = crypto if crypto is not None else default_crypto()
        self._shared: KeyHandler | None = None
        self._participants: dict[str, KeyHandler] = {}
        self._events: collections.deque[EncryptionStateChanged] = collections.deque()
        self._states: dict[tuple[str, str], EncryptionState] = {}
        self.sif_trailer = b""
        """Trailer of server-injected frames (``JoinResponse.sif_trailer``); passed through."""
        if shared_key is not None:
            self.set_shared_key(shared_key, 0)

    @property
    def crypto(self) -> Crypto:
        """The primitives in use."""
        return self._crypto

    @property
    def shared(self) -> bool:
        """Shared-key mode."""
        return self._shared is not None

    def set_shared_key(self, key: bytes, key_index: int = 0) -> None:
        """Set the shared key material in slot ``key_index`` (switches to shared-key mode)."""
        if self._shared is None:
            self._shared = KeyHandler(self.options, self._crypto)
        self._shared.set_key(key, key_index)

    def export_shared_key(self, key_index: int = 0) -> bytes:
        """The shared material in slot ``key_index`` (b"" when unset)."""
        return b"" if self._shared is None else self._shared.export_key(key_index)

    def ratchet_shared_key(self, key_index: int = 0) -> bytes:
        """Ratchet the shared slot ``key_index``; returns the new material (b"" when unset)."""
        return b"" if self._shared is None else self._shared.ratchet_key(key_index)

    def set_key(self, participant_identity: str, key: bytes, key_index: int = 0) -> None:
        """Set ``participant_identity``'s key material in slot ``key_index``."""
        handler = self._participants.get(participant_identity)
        if handler is None:
            handler = self._participants[participant_identity] = KeyHandler(
                self.options, self._crypto
            )
        handler.set_key(key, key_index)

    def export_key(self, participant_identity: str, key_index: int = 0) -> bytes:
        """``participant_identity``'s material in slot ``key_index`` (b"" when unset)."""
        handler = self._participants.get(participant_identity)
        return b"" if handler is None else handler.export_key(key_index)

    def ratchet_key(self, participant_identity: str, key_index: int = 0) -> bytes:
        """Ratchet ``participant_identity``'s slot ``key_index``; returns the new material."""
        handler = self._participants.get(participant_identity)
        return b"" if handler is None else handler.ratchet_key(key_index)

    def handler_for(self, participant_identity: str) -> KeyHandler | None:
        """The ring that encrypts or decrypts ``participant_identity``'s frames and packets."""
        if self._shared is not None:
            return self._shared
        return self._participants.get(participant_identity)

    # -- state events ---------------------------------------------------------------------------

    def report(self, participant_identity: str, track_sid: str, state: EncryptionState) -> None:
        """Record a cryptor's outcome; a change becomes an :class:`EncryptionStateChanged`."""
        key = (participant_identity, track_sid)
        if self._states.get(key, EncryptionState.NEW) is state:
            return
        self._states[key] = state
        self._events.append(
            EncryptionStateChanged(
                participant_identity=participant_identity, track_sid=track_sid, state=state
            )
        )

    def state(self, participant_identity: str, track_sid: str = "") -> EncryptionState:
        """The last state reported for a participant's track (or its data packets)."""
        return self._states.get((participant_identity, track_sid), EncryptionState.NEW)

    @property
    def has_events(self) -> bool:
        """State changes are waiting to be pulled (cheap to poll from any thread)."""
        return bool(self._events)

    def next_event(self) -> EncryptionStateChanged | None:
        """The oldest state change not yet pulled, or None."""
        return self._events.popleft() if self._events else None

    # -- data packets (PROTOCOL-MAP §11 Data packets) ------------------------------------------

    def encrypt_packet(self, packet: pb.DataPacket, identity: str, iv: bytes) -> pb.DataPacket:
        """``packet`` with its value moved into an ``EncryptedPacket``, or ``packet`` itself.

        Values that travel in clear text (DTMF, metrics, ...) come back unchanged.

        Raises:
            LocalProtocolError: no key to encrypt with (nothing may go out in clear text).
        """
        payload = move_into_payload(packet)
        if payload is None:
            return packet
        handler = self.handler_for(identity)
        key = None if handler is None else handler.key(handler.current_index)
        if handler is None or key is None:
            self.report(identity, "", EncryptionState.MISSING_KEY)
            raise LocalProtocolError("no end-to-end encryption key set to encrypt data with")
        if len(iv) != IV_LENGTH:
            raise LocalProtocolError(f"IV must be {IV_LENGTH} bytes")
        sealed = pb.DataPacket()
        sealed.CopyFrom(packet)
        sealed.ClearField(packet.WhichOneof("value"))  # type: ignore[arg-type]
        encrypted = sealed.encrypted_packet
        # Rust sets GCM, JS leaves NONE; receivers go by the field's presence (PROTOCOL-MAP §11).
        encrypted.encryption_type = pb.Encryption.GCM
        encrypted.iv = iv
        encrypted.key_index = handler.current_index
        encrypted.encrypted_value = self._crypto.aes_gcm_encrypt(
            key, iv, payload.SerializeToString(), b""
        )
        self.report(identity, "", EncryptionState.OK)
        return sealed

    def decrypt_packet(self, packet: pb.DataPacket) -> DataDecrypted | DataNotDecrypted:
        """Open a received packet holding ``encrypted_packet`` (never raises on remote input)."""
        identity = packet.participant_identity
        encrypted = packet.encrypted_packet
        handler = self.handler_for(identity)
        if handler is None:
            result: DataDecrypted | DataNotDecrypted = DataNotDecrypted(
                state=EncryptionState.MISSING_KEY, reason=f"no key for {identity!r}"
            )
        elif len(encrypted.iv) != IV_LENGTH or len(encrypted.encrypted_value) < TAG_LENGTH:
            result = DataNotDecrypted(
                state=EncryptionState.DECRYPTION_FAILED, reason="IV or ciphertext too short"
            )
        else:
            iv, value = bytes(encrypted.iv), bytes(encrypted.encrypted_value)
            plain, state = handler.open(
                encrypted.key_index,
                lambda key: self._crypto.aes_gcm_decrypt(key, iv, value, b""),
            )
            result = self._unwrap(packet, plain, state, encrypted.key_index)
        match result:
            case DataDecrypted():
                self.report(identity, "", EncryptionState.OK)
            case DataNotDecrypted(state=state):
                self.report(identity, "", state)
            case _:
                assert_never(result)
        return result

    def derivation_needed(self, packet: pb.DataPacket) -> bool:
        """Opening ``packet`` (holding ``encrypted_packet``) would first derive ratchets.

        Cheap: at most a few AES-GCM attempts. True when neither the slot's key nor the
        ratchets already derived open it and the slot's window is not derived yet; then
        :meth:`derive_for` (off the event loop) makes :meth:`decrypt_packet` fast again.
        """
        handler = self.handler_for(packet.participant_identity)
        encrypted = packet.encrypted_packet
        if handler is None or handler.window_derived(encrypted.key_index):
            return False
        iv, value = bytes(encrypted.iv), bytes(encrypted.encrypted_value)
        if len(iv) != IV_LENGTH:
            return False  # refused without any key
        # The AES tag alone decides (no payload decoding): this runs for every packet until a
        # failure has derived the window, so it is kept to one AES-GCM pass in the usual case.
        opened = handler.peek(
            encrypted.key_index, lambda key: self._crypto.aes_gcm_decrypt(key, iv, value, b"")
        )
        return opened is None

    def derive_for(self, packet: pb.DataPacket) -> None:
        """Derive the ratchets opening ``packet`` may try (slow, any thread).

        See :meth:`KeyHandler.derive_window`.
        """
        handler = self.handler_for(packet.participant_identity)
        if handler is not None:
            handler.derive_window(packet.encrypted_packet.key_index)

    def peek_packet(self, packet: pb.DataPacket, identity: str) -> pb.DataPacket | None:
        """What ``packet``'s ``encrypted_packet`` decrypts to with ``identity``'s keys, or None.

        For observers (the wire tap): no state changes, no events, no ratchet derivation.
        """
        handler = self.handler_for(identity)
        encrypted = packet.encrypted_packet
        if handler is None or len(encrypted.iv) != IV_LENGTH:
            return None
        iv, value = bytes(encrypted.iv), bytes(encrypted.encrypted_value)
        plain = handler.peek(
            encrypted.key_index, lambda key: self._crypto.aes_gcm_decrypt(key, iv, value, b"")
        )
        result = self._unwrap(packet, plain, EncryptionState.OK, encrypted.key_index)
        return result.packet if isinstance(result, DataDecrypted) else None

    @staticmethod
    def _unwrap(
        packet: pb.DataPacket, plain: bytes | None, state: EncryptionState, key_index: int
    ) -> DataDecrypted | DataNotDecrypted:
        if plain is None:
            return DataNotDecrypted(state=state, reason=f"key index {key_index}: {state.name}")
        try:
            payload = decode(pb.EncryptedPacketPayload, plain)
            return DataDecrypted(packet=move_out_of_payload(packet, payload), key_index=key_index)
        except DecodeError as exc:
            return DataNotDecrypted(
                state=EncryptionState.DECRYPTION_FAILED, reason=f"decrypted payload: {exc}"
            )


class FrameCryptor:
    """Encrypts one local track's frames or decrypts one remote track's (official ``FrameCryptor``).

    The driver calls :meth:`encrypt` between encoder and packetiser and :meth:`decrypt` between
    depacketiser and decoder; outcomes go to the provider's state events.
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        participant_identity: str,
        track_sid: str,
        codec: FrameCodec,
        key_index: int = 0,
        enabled: bool = True,
    ) -> None:
        """Bind a track to the provider's keys of ``participant_identity``."""
        self._provider = provider
        self.participant_identity = participant_identity
        self.track_sid = track_sid
        self.codec = codec
        self.key_index = key_index
        """Slot this cryptor encrypts with (:meth:`set_key_index`)."""
        self.enabled = enabled

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable (frames then pass unchanged, as in the official SDK)."""
        self.enabled = enabled

    def set_key_index(self, key_index: int) -> None:
        """Encrypt with slot ``key_index`` from now on.

        Raises:
            LocalProtocolError: outside the ring.
        """
        if isinstance(key_index, bool) or not 0 <= key_index < self._provider.options.key_ring_size:
            raise LocalProtocolError(f"key_index {key_index!r} is outside the key ring")
        self.key_index = key_index

    def _report(self, state: EncryptionState) -> None:
        self._provider.report(self.participant_identity, self.track_sid, state)

    def encrypt(self, frame: bytes, iv: bytes | Callable[[], bytes]) -> bytes | None:
        """The encrypted frame, or None when it must be dropped (no key: never sent in clear).

        Args:
            frame: one encoded frame (an Annex B access unit for H.264).
            iv: the 12-byte IV, or a function returning a fresh one on each call. An H.264 frame
                may need more than one: libwebrtc receivers read the first slice's
                ``pic_parameter_set_id`` from bytes that may be encrypted, and drop a key frame
                whose ciphertext spells an id they do not know (:func:`h264_slice_ids`). The
                frame is then encrypted again under the next IV, up to
                :data:`H264_MAX_IV_DRAWS` times; with a fixed IV it is sent as it comes out.

        Raises:
            LocalProtocolError: an IV that is not 12 bytes (a caller bug).
        """
        if not self.enabled or not frame:
            return frame
        if not callable(iv):
            self._check_iv(iv)
        handler = self._provider.handler_for(self.participant_identity)
        key = None if handler is None else handler.key(self.key_index)
        if key is None:
            self._report(EncryptionState.MISSING_KEY)
            return None
        size = clear_header_size(self.codec, frame)
        if size > len(frame):
            # Shorter than its codec's clear header (e.g. a 5-byte "VP8 key frame"): a receiver
            # would take part of the ciphertext for the header, so it is not sent at all.
            self._report(EncryptionState.ENCRYPTION_FAILED)
            return None
        header, body = frame[:size], frame[size:]
        draws = H264_MAX_IV_DRAWS if callable(iv) else 1
        wanted = h264_slice_ids(frame) if self.codec is FrameCodec.H264 else None
        for _ in range(draws):
            sealed = self._seal(key, header, body, iv() if callable(iv) else iv)
            if wanted is None or h264_slice_ids(sealed) == wanted:
                break
        self._report(EncryptionState.OK)
        return sealed

    @staticmethod
    def _check_iv(iv: bytes) -> bytes:
        if len(iv) != IV_LENGTH:
            raise LocalProtocolError(f"IV must be {IV_LENGTH} bytes")
        return iv

    def _seal(self, key: bytes, header: bytes, body: bytes, iv: bytes) -> bytes:
        sealed = self._provider.crypto.aes_gcm_encrypt(key, self._check_iv(iv), body, header)
        tail = sealed + iv + bytes((IV_LENGTH, self.key_index))
        if self.codec is FrameCodec.H264:
            tail = escape_rbsp(tail)
        return header + tail

    def decrypt(self, frame: bytes) -> bytes | None:
        """The clear frame, or None when it cannot be decrypted (never raises on remote input)."""
        if not self.enabled or not frame:
            return frame
        sif = self._provider.sif_trailer
        if sif and frame.endswith(sif):
            return frame[: -len(sif)]
        try:
            parts = parse_frame_trailer(self.codec, frame)
        except DecodeError:
            self._report(EncryptionState.DECRYPTION_FAILED)
            return None
        handler = self._provider.handler_for(self.participant_identity)
        if handler is None:
            self._report(EncryptionState.MISSING_KEY)
            return None
        crypto = self._provider.crypto
        plain, state = handler.open(
            parts.key_index,
            lambda key: crypto.aes_gcm_decrypt(key, parts.iv, parts.ciphertext, parts.header),
        )
        self._report(state)
        if plain is None:
            return None
        return parts.header + plain
