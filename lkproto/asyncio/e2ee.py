"""Drives :mod:`lkproto.core.e2ee` for a room: data packets, and Opus frames through aiortc.

Data: the engine calls :meth:`E2eeDriver.seal` on every ``DataPacket`` before it is sequenced and
sent (so the resend buffer and the wire hold ciphertext), and the room hands every received
packet to :meth:`E2eeDriver.receive`, which opens the encrypted ones and passes them on in
arrival order. Opening a packet whose sender ratcheted (or whose key is wrong) first derives the
slot's ratchet window: ``2 * ratchet_window_size`` PBKDF2 runs, about 0.7 s with the official
defaults and more on a loaded machine. That runs in the loop's default executor; the packet and
every packet after it wait in a backlog meanwhile, so signalling, media and timers keep running
and the application still sees data in the order it was sent.

Media: aiortc has no insertable streams. On send, :meth:`E2eeDriver.prepare_sender` wraps the
encoder of each sender (:func:`lkproto.asyncio._seam.preset_encoder`) in an
:class:`EncryptingEncoder` (for a simulcast track: the encoder of each layer's sender). One
Opus frame is one RTP payload, encrypted as it is. aiortc's VP8
encoder packetises inside ``encode``, so the wrapper takes its payloads apart again (public
``vp8_depayload``), encrypts the whole frame and packetises it anew with the same VP8 payload
descriptor (picture id), as aiortc would have: receivers and the SFU still read the descriptor
and the clear 10/3-byte VP8 header. On receive, :meth:`E2eeDriver.attach_receiver` puts a frame
cryptor between aiortc's depacketiser and its decoder
(:func:`lkproto.asyncio._seam.transform_decoder_input`). Both run on aiortc's worker threads
(its encoder executor and decoder thread), so a slow ratchet search never blocks the event loop;
state changes found there are handed to the loop with ``call_soon_threadsafe``. H.264 goes the
same way as VP8: the payloads are depacketised (public ``h264_depayload``: Annex B, 4-byte start
codes, as libwebrtc's depacketiser hands frames to its decryptor), the access unit is encrypted
(clear up to the first slice header, the rest escaped; under as many IVs as it takes for the
ciphertext to keep the slice's parameter set id readable, see
:meth:`~lkproto.core.e2ee.FrameCryptor.encrypt`), and aiortc's packetiser
(:func:`lkproto.asyncio._seam.h264_packetize`) makes the payloads anew.

This module owns what the sans-I/O core must not: the randomness of IVs (``os.urandom`` plus a
counter), the logs, the threads, and handing the core's state changes to the room.

What arrives encrypted and cannot be opened (no key, wrong key, damaged) is logged, reported as an
:class:`~lkproto.core.e2ee.EncryptionStateChanged` and dropped: it never reaches a stream, an RPC
or a ``data_received`` handler as garbage (issue 16 item 3).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import TYPE_CHECKING, Any, Final, TypeAlias, assert_never

from lkproto.asyncio._lazy_av import import_aiortc
from lkproto.core.e2ee import (
    DataDecrypted,
    DataNotDecrypted,
    EncryptionStateChanged,
    FrameCryptor,
    KeyProvider,
    data_iv,
    frame_iv,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire.e2ee import FrameCodec

# The room imports this module when E2EE is on, possibly before any peer connection exists:
# aiortc must first be imported without PyAV (issue 18; see lkproto.asyncio._lazy_av).
import_aiortc()

from aiortc.codecs import get_encoder  # noqa: E402
from aiortc.codecs.base import Encoder  # noqa: E402
from aiortc.codecs.h264 import h264_depayload  # noqa: E402
from aiortc.codecs.vpx import PACKET_MAX, VpxPayloadDescriptor, vp8_depayload  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpCodecParameters  # noqa: E402

from lkproto.asyncio._seam import (  # noqa: E402
    current_encoder,
    h264_packetize,
    preset_encoder,
    transform_decoder_input,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiortc import RTCRtpReceiver, RTCRtpSender

    from lkproto.core.publish import TrackDescription
    from lkproto.wire import pb

    # How the room takes a received packet: (packet, arrived encrypted).
    _Deliver: TypeAlias = Callable[[pb.DataPacket, bool], None]

__all__ = ["E2eeDriver", "EncryptingEncoder"]

_START_CODE: Final = b"\x00\x00\x00\x01"
# Derivations one packet may wait for; more happen only while the slot keeps moving.
_MAX_DERIVATIONS_PER_PACKET: Final = 3

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cryptors: dict[tuple[str, str], FrameCryptor] = {}
        """Frame cryptors by (participant identity, track sid or local cid)."""
        self._backlog: collections.deque[tuple[pb.DataPacket, _Deliver]] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None

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
        match result:
            case DataDecrypted(packet=opened):
                return opened
            case DataNotDecrypted(reason=reason):
                _log.warning(
                    "= dropping an encrypted packet from %r: %s",
                    packet.participant_identity,
                    reason,
                )
                return None
            case _:
                assert_never(result)

    def receive(self, packet: pb.DataPacket, deliver: _Deliver) -> None:
        """Hand a received packet on as ``deliver(packet, encrypted)``, opened, in arrival order.

        Clear packets go on as they are (``encrypted`` False). An encrypted packet goes on
        decrypted, or not at all when it cannot be opened (see :meth:`open`). When opening it
        first needs key derivations, they run in the default executor and this packet, and
        every one received after it, wait until they are done.
        """
        if not self._backlog and not (
            packet.WhichOneof("value") == "encrypted_packet"
            and self.provider.derivation_needed(packet)
        ):
            self._hand_on(packet, deliver)
            return
        self._backlog.append((packet, deliver))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    def _hand_on(self, packet: pb.DataPacket, deliver: _Deliver) -> None:
        if packet.WhichOneof("value") != "encrypted_packet":
            deliver(packet, False)
            return
        opened = self.open(packet)
        if opened is not None:
            deliver(opened, True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._backlog:
                packet, deliver = self._backlog[0]
                try:
                    if packet.WhichOneof("value") == "encrypted_packet":
                        # Normally once; again only if a decoder thread moved the slot meanwhile.
                        for _ in range(_MAX_DERIVATIONS_PER_PACKET):
                            if not self.provider.derivation_needed(packet):
                                break
                            await loop.run_in_executor(None, self.provider.derive_for, packet)
                except Exception:
                    _log.exception(
                        "= deriving keys for a packet from %r", packet.participant_identity
                    )
                    self._backlog.popleft()  # dropped (and said so), never handed on unopened
                    continue
                self._backlog.popleft()
                try:
                    self._hand_on(packet, deliver)
                except Exception:
                    # Not the caller's stack any more: log it and keep the order going.
                    _log.exception("= handling a data packet from %r", packet.participant_identity)
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None

    def close(self) -> None:
        """Forget packets waiting for a key derivation (the room disconnected)."""
        self._backlog.clear()
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None

    def peek(self, direction: str, packet: pb.DataPacket) -> pb.DataPacket | None:
        """What a packet on the wire decrypts to, for the tap (no key state changes).

        A packet we send carries no identity yet: our own keys open it.
        """
        identity = packet.participant_identity
        if direction == ">" or not identity:
            identity = self._local_identity()
        return self.provider.peek_packet(packet, identity)

    def flush(self) -> None:
        """Hand the provider's pending state changes to the room (on the event loop)."""
        while (event := self.provider.next_event()) is not None:
            self._on_state(event)

    def _flush_soon(self) -> None:
        """From a worker thread: have the loop flush, if anything changed."""
        loop = self._loop
        if self.provider.has_events and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.flush)

    # -- media ------------------------------------------------------------------------------------

    def prepare_sender(self, sender: RTCRtpSender, description: TrackDescription) -> None:
        """Encrypt the frames of a freshly prepared sender (the engine's ``sender_hook``).

        A simulcast track's frames leave through one sender per layer
        (:class:`lkproto.asyncio.publish.SimulcastSender`), created once the section is
        negotiated: each layer's encoder is wrapped as it is created, all under the track's one
        cryptor, as the official SDKs encrypt every layer with the participant's key (each layer
        keeps its own IV prefix and counter, so no IV repeats across layers).

        Raises:
            LocalProtocolError: a codec the SDKs do not encrypt (AV1, H.265).
        """
        from lkproto.asyncio.publish import simulcast_of

        codec = FrameCodec.from_mime_type(description.mime_type)
        if codec not in (FrameCodec.OPUS, FrameCodec.VP8, FrameCodec.H264):
            raise LocalProtocolError(f"{description.mime_type} frames are not encrypted yet")
        self._loop = asyncio.get_running_loop()
        simulcast = simulcast_of(sender)
        if simulcast is None and isinstance(current_encoder(sender), EncryptingEncoder):
            return
        cryptor = FrameCryptor(
            self.provider,
            participant_identity=self._local_identity(),
            track_sid=description.cid,
            codec=codec,
        )
        cryptor.enabled = self.enabled
        self.cryptors[(cryptor.participant_identity, description.cid)] = cryptor
        if simulcast is not None:
            mime_type = description.mime_type
            simulcast.add_layer_hook(lambda layer: self._wrap_encoder(layer, cryptor, mime_type))
            return
        self._wrap_encoder(sender, cryptor, description.mime_type)

    def _wrap_encoder(self, sender: RTCRtpSender, cryptor: FrameCryptor, mime_type: str) -> None:
        inner = current_encoder(sender)
        if isinstance(inner, EncryptingEncoder):
            return
        if inner is None:
            # No encoder preset (video at aiortc's default bitrate, or a pre-encoded source):
            # the one aiortc would create lazily, created now so that it can be wrapped.
            inner = get_encoder(RTCRtpCodecParameters(mimeType=mime_type, clockRate=90_000))
        preset_encoder(
            sender,
            EncryptingEncoder(inner, cryptor, self._random_bytes, on_frame=self._flush_soon),
        )

    def attach_receiver(
        self,
        receiver: RTCRtpReceiver,
        *,
        identity: str,
        track_sid: str,
        mime_type: str,
        encrypted: bool = True,
    ) -> None:
        """Decrypt what ``receiver`` decodes as ``identity``'s track ``track_sid``.

        With ``encrypted`` False (a track published in clear text) frames pass unchanged; the
        call still replaces the cryptor of an earlier track on the same reused section.

        Raises:
            ValueError: a codec the SDKs do not encrypt (AV1, H.265).
        """
        self._loop = asyncio.get_running_loop()
        if not encrypted:
            transform_decoder_input(receiver, lambda frame: frame)
            return
        cryptor = FrameCryptor(
            self.provider,
            participant_identity=identity,
            track_sid=track_sid,
            codec=FrameCodec.from_mime_type(mime_type),
        )
        cryptor.enabled = self.enabled
        self.cryptors[(identity, track_sid)] = cryptor

        def decrypt(frame: bytes) -> bytes | None:
            try:
                return cryptor.decrypt(frame)
            finally:
                self._flush_soon()

        transform_decoder_input(receiver, decrypt)

    def set_enabled(self, enabled: bool) -> None:
        """Turn encryption of data and frames on or off."""
        self.enabled = enabled
        for cryptor in self.cryptors.values():
            cryptor.set_enabled(enabled)


class EncryptingEncoder(Encoder):
    """An aiortc ``Encoder`` that encrypts what the encoder it wraps produces (Opus: one frame).

    Runs where aiortc runs encoders (``encode`` in its executor, ``pack`` on the loop). A frame
    with no key to encrypt it is dropped, never sent in clear text.
    """

    def __init__(
        self,
        inner: Encoder,
        cryptor: FrameCryptor,
        random_bytes: Callable[[int], bytes],
        *,
        on_frame: Callable[[], None],
    ) -> None:
        """Wrap ``inner``; ``on_frame`` runs after each frame (to hand state changes on)."""
        self.inner = inner
        self.cryptor = cryptor
        self._on_frame = on_frame
        # The IV's first word is the SSRC for the SDKs; any per-track random value keeps IVs
        # unique per key, which is what AES-GCM needs (receivers only read the IV).
        self._iv_prefix = int.from_bytes(random_bytes(4), "big")
        self._count = int.from_bytes(random_bytes(2), "big")

    def _seal(self, payloads: list[bytes], timestamp: int) -> tuple[list[bytes], int]:
        try:
            if self.cryptor.codec is FrameCodec.VP8:
                return self._seal_vp8(payloads, timestamp), timestamp
            if self.cryptor.codec is FrameCodec.H264:
                return self._seal_h264(payloads, timestamp), timestamp
            sealed = []
            for payload in payloads:
                out = self.cryptor.encrypt(bytes(payload), self._next_iv(timestamp))
                if out is not None:
                    sealed.append(out)
            return sealed, timestamp
        finally:
            self._on_frame()

    def _next_iv(self, timestamp: int) -> bytes:
        self._count += 1
        return frame_iv(self._iv_prefix, timestamp, self._count)

    def _seal_vp8(self, payloads: list[bytes], timestamp: int) -> list[bytes]:
        if not payloads or not self.cryptor.enabled:
            return payloads
        descriptor, _ = VpxPayloadDescriptor.parse(payloads[0])
        frame = b"".join(vp8_depayload(p) for p in payloads)
        sealed = self.cryptor.encrypt(frame, self._next_iv(timestamp))
        if sealed is None:
            return []
        out = []
        descriptor.partition_start = 1
        for pos in range(0, len(sealed), PACKET_MAX - len(bytes(descriptor))):
            head = bytes(descriptor)
            out.append(head + sealed[pos : pos + PACKET_MAX - len(head)])
            descriptor.partition_start = 0
        return out

    def _seal_h264(self, payloads: list[bytes], timestamp: int) -> list[bytes]:
        if not payloads or not self.cryptor.enabled:
            return payloads
        frame = b"".join(h264_depayload(p) for p in payloads)
        # A source of IVs, not one: the cryptor may need several to keep the first slice's
        # PPS id readable to libwebrtc receivers (FrameCryptor.encrypt, issue 16).
        sealed = self.cryptor.encrypt(frame, lambda: self._next_iv(timestamp))
        if sealed is None:
            return []
        # Every start code is the 4-byte one h264_depayload wrote, and the escaped ciphertext
        # holds no 00 00 0x (x <= 3), so splitting on it gives back the NAL units.
        return h264_packetize([nal for nal in sealed.split(_START_CODE) if nal])

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Encode with the wrapped encoder, then encrypt."""
        payloads, timestamp = self.inner.encode(frame, force_keyframe)
        return self._seal(payloads, timestamp)

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Pack a pre-encoded frame with the wrapped encoder, then encrypt."""
        payloads, timestamp = self.inner.pack(packet)
        return self._seal(payloads, timestamp)

    @property
    def target_bitrate(self) -> int:
        """The wrapped encoder's bitrate (aiortc sets it on REMB)."""
        return int(getattr(self.inner, "target_bitrate", 0))

    @target_bitrate.setter
    def target_bitrate(self, value: int) -> None:
        self.inner.target_bitrate = value  # type: ignore[attr-defined]
