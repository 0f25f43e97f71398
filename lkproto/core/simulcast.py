"""Simulcast publishing decisions: which layers, how the offer announces them, which are wanted.

Theory of operation
-------------------

A simulcast video track is sent as up to three independent RTP streams of one picture at
different sizes, told apart by their RTP stream id (*rid*): ``q`` (quarter), ``h`` (half) and
``f`` (full), low to high (PROTOCOL-MAP §9, VideoLayer). Three decisions live here, free of I/O:

* :func:`plan_layers` picks the layers for a source size as the official SDKs do (rust-sdks
  ``livekit/src/room/options.rs``, ``compute_video_encodings``): the full-size layer at the asked
  (or preset) bitrate, plus the default simulcast presets below it: for 16:9 sources 320x180 at
  160 kbps (15 fps) and 640x360 at 450 kbps (20 fps), for 4:3 sources 240x180 at 100 kbps and
  480x360 at 225 kbps. A source whose longer side is at least 960 pixels gets three layers, one
  of at least 480 pixels two (the middle preset and the full size), a smaller one a single layer.
  Rids are given in order from ``q``, so a two-layer track sends ``q`` and ``h``.
* :func:`announce_simulcast` rewrites our SDP offer for livekit-server: the ``sendonly`` video
  section carrying a simulcast track (found by its msid track id, the track's cid) loses its
  ``a=ssrc``/``a=ssrc-group`` lines (the server must learn each stream's SSRC from its rid) and
  gains the ``sdes:rtp-stream-id`` header extension, one ``a=rid:<rid> send`` per layer and
  ``a=simulcast:send q;h;f`` (RFC 8851, RFC 8853). aiortc keeps its own local description; only
  what the server reads is rewritten.
* :func:`wanted_rids` reads the server's ``SubscribedQualityUpdate`` (dynacast): which layers any
  subscriber watches, so the others can stop encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from lkproto.wire import pb

__all__ = [
    "RID_EXTENSION_URI",
    "SIMULCAST_RIDS",
    "SimulcastLayer",
    "announce_simulcast",
    "plan_layers",
    "quality_of_rid",
    "rid_extension_id",
    "wanted_rids",
]

SIMULCAST_RIDS: Final = ("q", "h", "f")
"""RTP stream ids of the layers, low to high (the official SDKs' ``VIDEO_RIDS``)."""

RID_EXTENSION_URI: Final = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
"""The RTP header extension carrying a packet's rid (RFC 8852 §3.1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulcastLayer:
    """One layer of a simulcast track.

    Attributes:
        rid: ``q``, ``h`` or ``f``.
        quality: ``pb.VideoQuality`` (LOW, MEDIUM, HIGH).
        width: pixels.
        height: pixels.
        bitrate_bps: the encoder's start bitrate and the announced layer bitrate.
        max_framerate: frames per second the layer is sent at (0: every captured frame).
    """

    rid: str
    quality: int
    width: int
    height: int
    bitrate_bps: int
    max_framerate: float

    def to_video_layer(self) -> pb.VideoLayer:
        """The ``VideoLayer`` announcing this layer in ``AddTrackRequest``."""
        return pb.VideoLayer(
            quality=self.quality,  # type: ignore[arg-type]
            width=self.width,
            height=self.height,
            bitrate=self.bitrate_bps,
            rid=self.rid,
        )


@dataclass(frozen=True, slots=True)
class _Preset:
    width: int
    height: int
    bitrate_bps: int
    framerate: float


@dataclass(frozen=True, slots=True)
class _Family:
    """The presets of one aspect ratio: the full-size encodings, smallest first, and the two
    default simulcast layers below the full size (low, mid)."""

    ratio: float
    encodings: tuple[_Preset, ...]
    simulcast: tuple[_Preset, _Preset]


# rust-sdks livekit/src/room/options.rs, modules video43 (4:3) and video (16:9): the official
# encodings, size tier by size tier, each as (width, height, bitrate bps, fps) for 4:3 | 16:9.
_ENCODINGS: Final = (
    ((160, 120, 80_000, 15), (160, 90, 90_000, 15)),
    ((240, 180, 100_000, 15), (320, 180, 160_000, 15)),
    ((320, 240, 150_000, 15), (384, 216, 180_000, 15)),
    ((480, 360, 225_000, 20), (640, 360, 450_000, 20)),
    ((640, 480, 300_000, 20), (960, 540, 800_000, 25)),
    ((720, 540, 450_000, 25), (1280, 720, 1_700_000, 30)),
    ((960, 720, 1_500_000, 30), (1920, 1080, 3_000_000, 30)),
    ((1440, 1080, 2_500_000, 30), (2560, 1440, 5_000_000, 30)),
    ((1920, 1440, 3_500_000, 30), (3840, 2160, 8_000_000, 30)),
)
# The columns' aspect ratios; 4:3 first, so that a ratio exactly between the two reads as 4:3.
_RATIOS: Final = (4 / 3, 16 / 9)
# The default simulcast presets (low, mid) of both ratios are these tiers.
_SIMULCAST_TIERS: Final = (1, 3)


def _family(column: int) -> _Family:
    encodings = tuple(_Preset(*row[column]) for row in _ENCODINGS)
    low, mid = _SIMULCAST_TIERS
    return _Family(_RATIOS[column], encodings, (encodings[low], encodings[mid]))


_FAMILIES: Final = tuple(_family(column) for column in range(len(_RATIOS)))
# compute_video_encodings: three layers from this longer side up, two from the next.
_THREE_LAYERS_FROM_PX: Final = 960
_TWO_LAYERS_FROM_PX: Final = 480


def _family_of(width: int, height: int) -> _Family:
    # The official SDK picks the 16:9 or the 4:3 presets by the nearer aspect ratio.
    ratio = max(width, height) / min(width, height)
    return min(_FAMILIES, key=lambda family: abs(ratio - family.ratio))


def _full_size_bitrate(width: int, height: int) -> _Preset:
    """The preset whose encoding the official SDK picks for a source of this size
    (``compute_appropriate_encoding``): the first preset wider than the longer side, else the
    largest."""
    presets = _family_of(width, height).encodings
    size = max(width, height)
    chosen = presets[0]
    for preset in presets:
        chosen = preset
        if preset.width > size:
            break
    return chosen


def plan_layers(width: int, height: int, max_bitrate_bps: int = 0) -> tuple[SimulcastLayer, ...]:
    """The simulcast layers for a ``width`` x ``height`` source, low to high.

    One layer means the source is too small for simulcast (the track is sent single-layer).

    Args:
        width: source width in pixels (> 0).
        height: source height in pixels (> 0).
        max_bitrate_bps: the full-size layer's bitrate (0: the official preset for the size).

    Raises:
        ValueError: a size is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"simulcast needs the source size, got {width}x{height}")
    full = _full_size_bitrate(width, height)
    presets: list[_Preset] = list(_family_of(width, height).simulcast)
    presets.append(_Preset(width, height, max_bitrate_bps or full.bitrate_bps, 0))
    size = max(width, height)
    if size >= _THREE_LAYERS_FROM_PX:
        chosen = presets
    elif size >= _TWO_LAYERS_FROM_PX:
        chosen = presets[1:]
    else:
        chosen = presets[2:]
    # Scaled as the official SDK scales (scale_resolution_down_by from the shorter sides), so a
    # layer keeps the source's aspect ratio.
    short = min(width, height)
    layers: list[SimulcastLayer] = []
    for index, preset in enumerate(chosen):
        scale = max(1.0, short / min(preset.width, preset.height))
        rid = SIMULCAST_RIDS[index]
        layers.append(
            SimulcastLayer(
                rid=rid,
                quality=quality_of_rid(rid),
                width=_even(width / scale),
                height=_even(height / scale),
                bitrate_bps=preset.bitrate_bps,
                max_framerate=preset.framerate,
            )
        )
    return tuple(layers)


def _even(value: float) -> int:
    # VP8 and H.264 encoders want even dimensions (4:2:0 chroma).
    return max(2, int(value) // 2 * 2)


def quality_of_rid(rid: str) -> int:
    """``pb.VideoQuality`` of a rid (the official ``video_quality_for_rid``); HIGH otherwise."""
    return {"q": pb.LOW, "h": pb.MEDIUM, "f": pb.HIGH}.get(rid, pb.HIGH)


_EXTMAP: Final = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", re.MULTILINE)


def rid_extension_id(section: str) -> int:
    """The extmap id to give the rid extension in ``section``: the one it has, else the highest
    id in 1..14 (one-byte header form, RFC 8285 §4.2) no extension of the section uses.

    The highest, not the lowest: livekit-server's pion keeps the negotiated header extensions of
    a whole bundle in one map keyed by id (``MediaEngine.updateHeaderExtension``), so an id
    that another section (aiortc's audio: ``ssrc-audio-level`` is 2) gives another extension
    hides the rid, and pion drops every layer ("stream id RTP Extensions required for
    Simulcast"). aiortc numbers its extensions from 1 up; the top of the range is free in every
    section, and the sender finds the same id from its own section alone.
    """
    used = {int(i): uri for i, uri in _EXTMAP.findall(section)}
    for ext_id, uri in used.items():
        if uri == RID_EXTENSION_URI:
            return ext_id
    return next(i for i in range(14, 0, -1) if i not in used)


def announce_simulcast(sdp: str, layers_by_cid: Mapping[str, Sequence[SimulcastLayer]]) -> str:
    """``sdp`` (our offer) with the simulcast layers of each track in ``layers_by_cid`` announced.

    A section is rewritten when it is ``m=video``, ``sendonly`` and its ``a=msid`` names one of
    the cids with more than one layer; every other line and section is kept byte for byte.

    Args:
        sdp: the offer aiortc created.
        layers_by_cid: track cid -> its layers (see :func:`plan_layers`).
    """
    wanted = {cid: layers for cid, layers in layers_by_cid.items() if len(layers) > 1}
    if not wanted:
        return sdp
    newline = "\r\n" if "\r\n" in sdp else "\n"
    sections = re.split(rf"{newline}(?=m=)", sdp)
    out = [sections[0]]
    for section in sections[1:]:
        layers = _section_layers(section, wanted)
        out.append(section if layers is None else _with_rids(section, layers, newline))
    return newline.join(out)


def _section_layers(
    section: str, wanted: Mapping[str, Sequence[SimulcastLayer]]
) -> Sequence[SimulcastLayer] | None:
    lines = section.splitlines()
    if not lines[0].startswith("m=video") or "a=sendonly" not in lines:
        return None
    for line in lines:
        if line.startswith("a=msid:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1] in wanted:
                return wanted[parts[1]]
    return None


def _with_rids(section: str, layers: Sequence[SimulcastLayer], newline: str) -> str:
    trailing = section.endswith(newline)
    kept = [
        line
        for line in section.split(newline)
        if line and not line.startswith(("a=ssrc:", "a=ssrc-group:", "a=rid:", "a=simulcast:"))
    ]
    ext_id = rid_extension_id(section)
    if f"a=extmap:{ext_id} {RID_EXTENSION_URI}" not in kept:
        kept.append(f"a=extmap:{ext_id} {RID_EXTENSION_URI}")
    kept.extend(f"a=rid:{layer.rid} send" for layer in layers)
    kept.append("a=simulcast:send " + ";".join(layer.rid for layer in layers))
    text = newline.join(kept)
    return text + newline if trailing else text


def wanted_rids(
    update: pb.SubscribedQualityUpdate, mime_type: str, layers: Iterable[SimulcastLayer]
) -> frozenset[str]:
    """The rids of ``layers`` some subscriber wants, per the server's dynacast update.

    The update lists qualities per codec (``subscribed_codecs``; older servers fill the
    deprecated ``subscribed_qualities``); a layer whose quality is listed as enabled is wanted.
    Qualities the update does not mention are wanted (nothing says to stop them).

    Args:
        update: the ``SubscribedQualityUpdate`` for the track.
        mime_type: the track's codec, ``video/VP8`` or ``video/H264``.
        layers: the track's layers.
    """
    codec = mime_type.split("/", 1)[-1].lower()
    qualities = None
    for subscribed in update.subscribed_codecs:
        if subscribed.codec.lower() == codec:
            qualities = subscribed.qualities
    if qualities is None:
        qualities = update.subscribed_qualities
    enabled: dict[int, bool] = {int(q.quality): q.enabled for q in qualities}
    return frozenset(layer.rid for layer in layers if enabled.get(layer.quality, True))
