"""Raw video frames, shaped like ``livekit.rtc.video_frame``: :class:`VideoFrame` and its enums.

A :class:`VideoFrame` is a width, a height, a :class:`VideoBufferType` and one tightly packed
buffer holding every plane back to back with no row padding (the layout the official SDK uses
for its buffers, see :func:`buffer_size`). Conversions go through PyAV's ``swscale``
(``av.VideoFrame.reformat``), which uses BT.601 limited range between RGB and YUV, as libyuv
does for LiveKit's native SDK.

Plane layouts (``w``/``h`` the frame size, ``cw = ceil(w/2)``, ``ch = ceil(h/2)``):

=========================  ==========================================  ====================
type                       planes, each ``row bytes x rows``            PyAV pixel format
=========================  ==========================================  ====================
RGBA, ABGR, ARGB, BGRA     ``4w x h`` (bytes in the order of the name)  rgba, abgr, argb, bgra
RGB24                      ``3w x h``                                   rgb24
I420                       Y ``w x h``, U ``cw x ch``, V ``cw x ch``    yuv420p
I420A                      I420 then A ``w x h``                        yuva420p
I422                       Y ``w x h``, U ``cw x h``, V ``cw x h``      yuv422p
I444                       Y, U, V each ``w x h``                       yuv444p
I010                       I420 with 16-bit little-endian samples       yuv420p10le
NV12                       Y ``w x h``, interleaved UV ``2cw x ch``     nv12
=========================  ==========================================  ====================
"""

from __future__ import annotations

import logging
from typing import Final

import av

from lkproto.rtc._enum import ProtoEnum

# PyAV before 17 converts odd-sized frames wrongly (edge pixels) and can abort the interpreter in
# `reformat` (measured with av 14.2.0, 15.0.0 and 16.0.0; 17.0.0 and 18.x pass: docs/reference/
# where-it-runs.md, note 2). av 14.2.0 is what pip picks on glibc 2.17 and what Debian trixie
# ships, so the floor stays; the user hears of it once instead of getting silently wrong frames.
_AV_RELIABLE_MAJOR: Final = 17


def _av_is_unreliable(version: str) -> bool:
    head = version.split(".", 1)[0]
    return head.isdigit() and int(head) < _AV_RELIABLE_MAJOR


# Decided once at import, so the per-frame conversion only tests a flag; cleared by the warning.
_av_warning_due = _av_is_unreliable(av.__version__)


def _warn_old_av() -> None:
    global _av_warning_due  # noqa: PLW0603 - one warning per process
    _av_warning_due = False
    logging.getLogger("lkproto.media").warning(
        "av %s converts odd-sized video frames wrongly and can crash in reformat; "
        "install av>=%d for video (docs/reference/where-it-runs.md)",
        av.__version__,
        _AV_RELIABLE_MAJOR,
    )


__all__ = ["VideoBufferType", "VideoFrame", "VideoRotation", "buffer_size", "plane_layout"]


class VideoBufferType(ProtoEnum):
    """Pixel layouts; values are the official ``VideoBufferType`` protobuf numbers."""

    RGBA = 0
    ABGR = 1
    ARGB = 2
    BGRA = 3
    RGB24 = 4
    I420 = 5
    I420A = 6
    I422 = 7
    I444 = 8
    I010 = 9
    NV12 = 10


class VideoRotation(ProtoEnum):
    """Clockwise rotation a receiver should apply; values are the official protobuf numbers."""

    VIDEO_ROTATION_0 = 0
    VIDEO_ROTATION_90 = 1
    VIDEO_ROTATION_180 = 2
    VIDEO_ROTATION_270 = 3


_AV_FORMAT: Final[dict[VideoBufferType, str]] = {
    VideoBufferType.RGBA: "rgba",
    VideoBufferType.ABGR: "abgr",
    VideoBufferType.ARGB: "argb",
    VideoBufferType.BGRA: "bgra",
    VideoBufferType.RGB24: "rgb24",
    VideoBufferType.I420: "yuv420p",
    VideoBufferType.I420A: "yuva420p",
    VideoBufferType.I422: "yuv422p",
    VideoBufferType.I444: "yuv444p",
    # Official I010 buffers hold native-endian u16 samples; every platform PyAV wheels exist
    # for is little-endian.
    VideoBufferType.I010: "yuv420p10le",
    VideoBufferType.NV12: "nv12",
}


def plane_layout(type: VideoBufferType, width: int, height: int) -> tuple[tuple[int, int], ...]:
    """``(row_bytes, rows)`` of each plane of a packed buffer, in storage order.

    Matches the official SDK's plane split (``_get_plane_infos``): chroma planes round odd sizes
    up, I010 samples take two bytes.
    """
    cw, ch = (width + 1) // 2, (height + 1) // 2
    match type:
        case (
            VideoBufferType.RGBA
            | VideoBufferType.ABGR
            | VideoBufferType.ARGB
            | VideoBufferType.BGRA
        ):
            return ((4 * width, height),)
        case VideoBufferType.RGB24:
            return ((3 * width, height),)
        case VideoBufferType.I420:
            return ((width, height), (cw, ch), (cw, ch))
        case VideoBufferType.I420A:
            return ((width, height), (cw, ch), (cw, ch), (width, height))
        case VideoBufferType.I422:
            return ((width, height), (cw, height), (cw, height))
        case VideoBufferType.I444:
            return ((width, height), (width, height), (width, height))
        case VideoBufferType.I010:
            return ((2 * width, height), (2 * cw, ch), (2 * cw, ch))
        case VideoBufferType.NV12:
            return ((width, height), (2 * cw, ch))
    raise ValueError(f"unsupported video buffer type: {type!r}")  # pragma: no cover


def buffer_size(type: VideoBufferType, width: int, height: int) -> int:
    """Bytes a packed buffer of this type and size needs (the official ``_get_plane_length``)."""
    return sum(row_bytes * rows for row_bytes, rows in plane_layout(type, width, height))


def _buffer_type(value: int) -> VideoBufferType:
    try:
        return VideoBufferType(value)
    except ValueError:
        raise ValueError(f"unsupported video buffer type: {value!r}") from None


def _copy_rows(
    src: memoryview,
    dst: memoryview,
    *,
    src_stride: int,
    dst_stride: int,
    row_bytes: int,
    rows: int,
    flip_y: bool = False,
) -> None:
    # PyAV planes pad each row to ``line_size`` (a SIMD multiple); our buffers are packed.
    if not flip_y and src_stride == dst_stride == row_bytes:
        n = row_bytes * rows
        dst[:n] = src[:n]
        return
    for row in range(rows):
        s = (rows - 1 - row if flip_y else row) * src_stride
        d = row * dst_stride
        dst[d : d + row_bytes] = src[s : s + row_bytes]


class VideoFrame:
    """One raw video frame: ``width`` x ``height`` pixels of ``type``, packed in ``data``.

    Args:
        width: pixels per row (> 0).
        height: rows (> 0).
        type: a :class:`VideoBufferType` (or its int value).
        data: the packed planes, at least :func:`buffer_size` bytes (extra bytes are ignored).
            Kept by reference, not copied: ``bytes``, ``bytearray`` or a C-contiguous
            ``memoryview`` (of any item format; it is read as bytes).

    Raises:
        ValueError: bad size or type, non-contiguous memoryview, or too little data.
        TypeError: ``data`` is not ``bytes``, ``bytearray`` or ``memoryview``.
    """

    __slots__ = ("_data", "_height", "_type", "_width")

    def __init__(
        self, width: int, height: int, type: int, data: bytes | bytearray | memoryview
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be > 0, got {width}x{height}")
        buffer_type = _buffer_type(type)
        if isinstance(data, memoryview):
            if not data.c_contiguous:
                raise ValueError("memoryview must be contiguous")
            view = data if data.format == "B" and data.ndim == 1 else data.cast("B")
        elif isinstance(data, bytes | bytearray):
            view = memoryview(data)
        else:
            raise TypeError(f"expected bytes, bytearray, or memoryview, got {_type_name(data)}")
        needed = buffer_size(buffer_type, width, height)
        if view.nbytes < needed:
            raise ValueError(
                f"data length must be >= {needed} bytes for a {width}x{height} "
                f"{buffer_type.name} frame, got {view.nbytes}"
            )
        self._width = width
        self._height = height
        self._type = buffer_type
        self._data = view

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def type(self) -> VideoBufferType:
        return self._type

    @property
    def data(self) -> memoryview:
        """The packed planes (shares the buffer given to the constructor)."""
        return self._data

    def get_plane(self, plane_nth: int) -> memoryview | None:
        """The bytes of plane ``plane_nth`` (a view into :attr:`data`), or None if there is none.

        Packed RGB types have one plane (the official SDK returns None for them; lkproto returns
        the whole buffer as plane 0), NV12 two (Y, UV), I420A four (Y, U, V, A), the other YUV
        types three.
        """
        layout = plane_layout(self._type, self._width, self._height)
        if not 0 <= plane_nth < len(layout):
            return None
        offset = sum(row_bytes * rows for row_bytes, rows in layout[:plane_nth])
        row_bytes, rows = layout[plane_nth]
        return self._data[offset : offset + row_bytes * rows]

    def convert(self, type: int, *, flip_y: bool = False) -> VideoFrame:
        """A new frame in ``type``, optionally upside down; this frame is left unchanged.

        Raises:
            ValueError: ``type`` is not a :class:`VideoBufferType`.
        """
        target = _buffer_type(type)
        if target == self._type and not flip_y:
            size = buffer_size(target, self._width, self._height)
            return VideoFrame(self._width, self._height, target, bytearray(self._data[:size]))
        return VideoFrame._from_av(self._to_av(flip_y=flip_y), target)

    def _to_av(self, *, flip_y: bool = False) -> av.VideoFrame:
        """A PyAV frame in this frame's own pixel format (a copy; no pts or time base)."""
        frame = av.VideoFrame(self._width, self._height, _AV_FORMAT[self._type])
        offset = 0
        layout = plane_layout(self._type, self._width, self._height)
        for plane, (row_bytes, rows) in zip(frame.planes, layout, strict=True):
            size = row_bytes * rows
            _copy_rows(
                self._data[offset : offset + size],
                memoryview(plane),
                src_stride=row_bytes,
                dst_stride=plane.line_size,
                row_bytes=row_bytes,
                rows=rows,
                flip_y=flip_y,
            )
            offset += size
        return frame

    @staticmethod
    def _from_av(frame: av.VideoFrame, type: int | None = None) -> VideoFrame:
        """Copy a PyAV frame into a packed :class:`VideoFrame` of ``type`` (None: I420).

        Reformats first when the pixel formats differ (this also maps full-range
        ``yuvj420p`` decoder output onto limited-range I420).
        """
        target = VideoBufferType.I420 if type is None else _buffer_type(type)
        av_format = _AV_FORMAT[target]
        if frame.format.name != av_format:
            if _av_warning_due:
                _warn_old_av()
            frame = frame.reformat(format=av_format)
        layout = plane_layout(target, frame.width, frame.height)
        out = bytearray(sum(row_bytes * rows for row_bytes, rows in layout))
        dst = memoryview(out)
        offset = 0
        for plane, (row_bytes, rows) in zip(frame.planes, layout, strict=True):
            size = row_bytes * rows
            _copy_rows(
                memoryview(plane),
                dst[offset : offset + size],
                src_stride=plane.line_size,
                dst_stride=row_bytes,
                row_bytes=row_bytes,
                rows=rows,
            )
            offset += size
        return VideoFrame(frame.width, frame.height, target, out)

    def __repr__(self) -> str:
        return f"rtc.VideoFrame(width={self._width}, height={self._height}, type={self._type.name})"


def _type_name(value: object) -> str:
    # VideoFrame.__init__ shadows the builtin with its official ``type`` parameter.
    return type(value).__name__
