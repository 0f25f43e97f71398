"""Byte layouts of end-to-end encryption (PROTOCOL-MAP §11): frame trailer, clear headers, packets.

No keys, no state, no crypto: this module only says which bytes of a media frame stay in clear
text, where the IV and key index sit, how an H.264 payload is escaped, and how a ``DataPacket``
value moves into and out of an ``EncryptedPacketPayload``. :mod:`lkproto.core.e2ee` does the
encryption on top of it; ``lkproto decode`` and the wire tap use it to explain a frame.

An encrypted media frame is::

    [clear header][AES-GCM ciphertext + 16-byte tag][IV (12 bytes)][IV length = 12][key index]

The clear header is authenticated as additional data, so a receiver (and the SFU) can still
read what it needs to forward and depacketise: the Opus TOC byte, the VP8 payload header (10 bytes
of a key frame: frame tag plus start code and dimensions, 3 of a delta frame), nothing of VP9,
and for H.264 everything up to the first slice NAL unit's header plus one byte. After the header
an H.264 frame carries its encrypted part with emulation-prevention bytes inserted, so that no
start code can appear inside it (``JS:src/e2ee/worker/FrameCryptor.ts``, the LiveKit
``frame_crypto_transformer.cc`` of the native SDKs).

An H.264 receiver reads a little *past* the clear header before it decrypts anything:
libwebrtc's depacketiser (``video_rtp_depacketizer_h264.cc``, ``PpsParser::ParseSliceHeader``)
parses ``first_mb_in_slice``, ``slice_type`` and ``pic_parameter_set_id`` of every slice NAL unit
it receives, and its ``H264SpsPpsTracker`` drops a key frame, and asks for another, when that
parameter set id is not one it has seen. Two clear bytes hold all three for a P slice from x264
(``1`` ``00110`` ``1``), but not for its I slices: x264 writes slice type 7 (``0001000``), so
the id's first bit is the first encrypted bit. :func:`h264_slice_ids` reads what such a
receiver reads, so that a sender can check its ciphertext spells the same id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from lkproto.errors import DecodeError
from lkproto.wire import pb

__all__ = [
    "ENCRYPTABLE_PACKET_VALUES",
    "IV_LENGTH",
    "TAG_LENGTH",
    "TRAILER_LENGTH",
    "FrameCodec",
    "FrameTrailer",
    "clear_header_size",
    "escape_rbsp",
    "h264_slice_ids",
    "move_into_payload",
    "move_out_of_payload",
    "parse_frame_trailer",
    "unescape_rbsp",
]

IV_LENGTH: Final = 12
"""AES-GCM IV bytes in a frame trailer and an ``EncryptedPacket`` (PROTOCOL-MAP §11)."""

TAG_LENGTH: Final = 16
"""AES-GCM authentication tag bytes appended to the ciphertext."""

TRAILER_LENGTH: Final = IV_LENGTH + 2
"""IV, then one byte with the IV length and one with the key index."""

_VP8_KEY_FRAME_CLEAR_BYTES: Final = 10
_VP8_DELTA_FRAME_CLEAR_BYTES: Final = 3
_AUDIO_CLEAR_BYTES: Final = 1
# H.264 NAL unit types of coded slices (ITU-T H.264 table 7-1): non-IDR 1, IDR 5.
_H264_SLICE_TYPES: Final = frozenset({1, 5})

ENCRYPTABLE_PACKET_VALUES: Final = frozenset(
    {
        "user",
        "chat_message",
        "rpc_request",
        "rpc_ack",
        "rpc_response",
        "stream_header",
        "stream_chunk",
        "stream_trailer",
    }
)
"""``DataPacket`` oneof values that travel encrypted in an E2EE room (PROTOCOL-MAP §11 Data
packets); the others (DTMF, metrics, transcription, speakers) stay in clear text."""


class FrameCodec(enum.Enum):
    """The codec rule that decides a frame's clear header (PROTOCOL-MAP §11)."""

    OPUS = "opus"
    VP8 = "vp8"
    VP9 = "vp9"
    H264 = "h264"

    @classmethod
    def from_mime_type(cls, mime_type: str) -> FrameCodec:
        """The rule for ``audio/opus``, ``video/VP8`` ...; any other audio codec uses Opus's rule.

        Raises:
            ValueError: a video codec without a rule (AV1, H.265); the SDKs do not encrypt those.
        """
        kind, _, name = mime_type.lower().partition("/")
        if kind == "audio":
            return cls.OPUS
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"no end-to-end encryption rule for {mime_type!r}") from None


def _h264_nal_starts(frame: bytes) -> list[int]:
    """Offsets of the NAL unit headers after each Annex B start code (00 00 01 / 00 00 00 01)."""
    starts = []
    i = frame.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = frame.find(b"\x00\x00\x01", i + 3)
    return starts


def clear_header_size(codec: FrameCodec, frame: bytes) -> int:
    """How many leading bytes of ``frame`` stay in clear text (and are authenticated).

    H.264 keeps everything up to and including the first slice NAL unit's header and one more
    byte (the start of the slice header); a frame without a slice falls back to the VP8 rule as
    the SDKs do. The result may exceed ``len(frame)`` for a frame too short for its codec's rule:
    such a frame cannot be encrypted so that a receiver finds the same header again.
    """
    match codec:
        case FrameCodec.OPUS:
            return _AUDIO_CLEAR_BYTES
        case FrameCodec.VP9:
            return 0
        case FrameCodec.H264:
            for start in _h264_nal_starts(frame):
                if start < len(frame) and frame[start] & 0x1F in _H264_SLICE_TYPES:
                    return start + 2
            return _vp8_clear_size(frame)
        case FrameCodec.VP8:
            return _vp8_clear_size(frame)


def _vp8_clear_size(frame: bytes) -> int:
    # RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame.
    if frame and frame[0] & 0x01 == 0:
        return _VP8_KEY_FRAME_CLEAR_BYTES
    return _VP8_DELTA_FRAME_CLEAR_BYTES


# Enough of a slice NAL unit for three ue(v) of at most 63 bits each, even if a third of the
# bytes were emulation-prevention bytes.
_SLICE_HEADER_PREFIX_BYTES: Final = 48
# libwebrtc's BitstreamReader::ReadExponentialGolomb gives up at 32 leading zero bits.
_MAX_GOLOMB_ZEROS: Final = 32


def h264_slice_ids(frame: bytes) -> tuple[int, int] | None:
    """``(first_mb_in_slice, pic_parameter_set_id)`` of the first slice NAL unit of ``frame``.

    ``frame`` is an Annex B access unit, clear or encrypted. The two values are read as a
    receiver's depacketiser reads them before decrypting (ITU-T H.264 7.3.3: three ue(v) after
    the NAL header, emulation prevention removed). None: no slice, or the bits do not parse.
    """
    for start in _h264_nal_starts(frame):
        if start < len(frame) and frame[start] & 0x1F in _H264_SLICE_TYPES:
            nal = frame[start + 1 : start + 1 + _SLICE_HEADER_PREFIX_BYTES]
            end = nal.find(b"\x00\x00\x01")
            return _slice_ids(unescape_rbsp(nal if end < 0 else nal[:end]))
    return None


def _slice_ids(rbsp: bytes) -> tuple[int, int] | None:
    bits = "".join(f"{byte:08b}" for byte in rbsp)
    values: list[int] = []
    pos = 0
    for _ in range(3):  # first_mb_in_slice, slice_type, pic_parameter_set_id
        zeros = 0
        while pos + zeros < len(bits) and bits[pos + zeros] == "0":
            zeros += 1
        if zeros >= _MAX_GOLOMB_ZEROS or pos + 2 * zeros + 1 > len(bits):
            return None
        values.append(int(bits[pos + zeros : pos + 2 * zeros + 1], 2) - 1)
        pos += 2 * zeros + 1
    return values[0], values[2]


def escape_rbsp(data: bytes) -> bytes:
    """Insert H.264 emulation-prevention bytes: a 03 after every 00 00 followed by 00..03."""
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def unescape_rbsp(data: bytes) -> bytes:
    """Remove the emulation-prevention bytes :func:`escape_rbsp` inserted."""
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameTrailer:
    """An encrypted frame split into its parts.

    Attributes:
        header: the clear header (the AES-GCM additional data).
        ciphertext: ciphertext with the 16-byte tag at its end.
        iv: the 12-byte IV.
        key_index: the key ring slot the sender used.
    """

    header: bytes
    ciphertext: bytes
    iv: bytes
    key_index: int

    def __str__(self) -> str:
        return (
            f"clear header {len(self.header)} B, ciphertext {len(self.ciphertext)} B "
            f"(tag included), IV {self.iv.hex()}, key index {self.key_index}"
        )


def parse_frame_trailer(codec: FrameCodec, frame: bytes) -> FrameTrailer:
    """Split an encrypted frame (PROTOCOL-MAP §11 frame layout).

    Raises:
        DecodeError: too short for a trailer and a tag, or an IV length other than 12.
    """
    if len(frame) < TRAILER_LENGTH + TAG_LENGTH:
        raise DecodeError("EncryptedFrame", f"{len(frame)} bytes is shorter than a trailer")
    iv_length, key_index = frame[-2], frame[-1]
    if iv_length != IV_LENGTH:
        raise DecodeError("EncryptedFrame", f"IV length byte is {iv_length}, not {IV_LENGTH}")
    header_size = clear_header_size(codec, frame)
    body = frame[header_size:]  # an encrypted frame is always longer than its header
    if codec is FrameCodec.H264:
        body = unescape_rbsp(body)
    if len(body) < TRAILER_LENGTH + TAG_LENGTH:
        raise DecodeError("EncryptedFrame", "no room for a ciphertext after the clear header")
    return FrameTrailer(
        header=frame[:header_size],
        ciphertext=body[:-TRAILER_LENGTH],
        iv=body[-TRAILER_LENGTH:-2],
        key_index=key_index,
    )


def move_into_payload(packet: pb.DataPacket) -> pb.EncryptedPacketPayload | None:
    """The payload that replaces ``packet``'s value, or None for a value that stays clear.

    ``packet`` itself is not changed.
    """
    kind = packet.WhichOneof("value")
    if kind not in ENCRYPTABLE_PACKET_VALUES:
        return None
    payload = pb.EncryptedPacketPayload()
    getattr(payload, kind).CopyFrom(getattr(packet, kind))
    return payload


def move_out_of_payload(outer: pb.DataPacket, payload: pb.EncryptedPacketPayload) -> pb.DataPacket:
    """``outer`` (the received packet: identity, destinations, sequence) with ``payload``'s value.

    Raises:
        DecodeError: the payload holds no value lkproto knows.
    """
    kind = payload.WhichOneof("value")
    if kind is None:
        raise DecodeError("EncryptedPacketPayload", "no value (unknown to this client?)")
    packet = pb.DataPacket()
    packet.CopyFrom(outer)
    packet.ClearField("encrypted_packet")
    getattr(packet, kind).CopyFrom(getattr(payload, kind))
    return packet
