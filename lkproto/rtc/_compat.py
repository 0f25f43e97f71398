"""How ``lkproto.rtc`` compares with PyPI ``livekit`` (``livekit.rtc``), name by name.

The rows are computed from the code: every name in the official ``livekit.rtc.__all__`` is
looked up in ``lkproto.rtc``. For a name both have, the members the official one offers and
lkproto's lacks are found by introspection (class attributes and methods, protobuf fields,
enum members and the protobuf enum helpers) and listed in the row, so a gap cannot hide; a
difference worth knowing is described in :data:`NOTES`; a name lkproto lacks must be explained
in :data:`MISSING`. ``tests/unit/rtc/test_compat.py`` renders the table against the installed
``livekit`` package and checks the copy in ``docs/guides/migrating.md`` (``LKPROTO_UPDATE_README=1``
rewrites it), so the table cannot go stale. The official package is passed in, never imported here.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from types import ModuleType
from typing import Final

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from lkproto.rtc.native import NATIVE_REASONS

__all__ = ["MISSING", "NOTES", "lacking", "render_table", "rows"]

_SAME: Final = "same"
_ENUM_HELPERS: Final = ("Name", "Value", "keys", "values", "items")
_ENUM_NOTE: Final = (
    "same names and numbers; a Python `IntEnum` (protobuf enum wrapper there) that also answers "
    "`Name`, `Value`, `keys`, `values`, `items`"
)
_DATA_TRACKS_LOCAL: Final = (
    "differs: same end-to-end encryption and republishing after a full reconnect; `info.sid` "
    "is the new SID once republished (the official wrapper keeps showing the first)"
)
_DATA_TRACKS_REMOTE: Final = (
    "differs: an encrypted track in a room without E2EE ends its stream with "
    "`SubscribeDataTrackError` (the official SDK hands out the ciphertext); a track its "
    "publisher republishes after a full reconnect that replaced its session keeps the same "
    "track and stream, as in the official SDK, and `info.sid` becomes the new SID"
)
_FRAME_METADATA: Final = (
    "unsupported: lkproto sends no frame metadata trailer (user timestamp, frame id); "
    "`TrackPublishOptions.frame_metadata_features` and `EncodedVideoFrame.metadata` are refused"
)

NOTES: Final[dict[str, str]] = {
    "Room": (
        "differs: `connect` options are honoured, refused or hints as "
        "[Options](joining.md#options-honoured-refused-or-a-hint) says"
    ),
    "RoomOptions": "differs: see [Options](joining.md#options-honoured-refused-or-a-hint)",
    "RtcConfiguration": "differs: see [Options](joining.md#options-honoured-refused-or-a-hint)",
    "TrackPublishOptions": (
        "differs: a checked dataclass (a protobuf message there): `red`, `dtx` "
        "default to False; `simulcast` defaults to True as there and sends the official layers "
        "(each encrypted with E2EE; one layer for a pre-encoded source), `red`/`dtx` are "
        "hints; codecs other than VP8/H264, non-L1T1 scalability, hardware `video_encoder`s and "
        "frame metadata are refused (`UnsupportedFeatureError`), `degradation_preference` is a "
        "hint; the official mutation style "
        "`opts.video_encoding.max_bitrate = N` works and is checked"
    ),
    "VideoCodec": (
        f"{_ENUM_NOTE}; publishing AV1, VP9 or H265 raises `UnsupportedFeatureError` (aiortc "
        "encodes VP8 and H.264)"
    ),
    "ConnectionState": (
        "differs: same names and numbers, but a plain `IntEnum` (the engine's, which cannot "
        "import `lkproto.rtc`)"
    ),
    "EncryptionState": (
        "differs: same names and numbers, but a plain `IntEnum` (the core E2EE machine's)"
    ),
    "KeyDerivationFunction": (
        "differs: same names and numbers, but a plain `IntEnum` (the core E2EE machine's)"
    ),
    "ConnectError": (
        "differs: it is `lkproto.errors.ConnectError` (an `LkError`; `JoinRejectedError`, "
        "`UnauthorizedError`, `RoomNotFoundError` derive from it), what `Room.connect` raises; "
        "read `str(exc)`: only some subclasses have `.message`"
    ),
    "IceServer": "same fields (`urls`, `username`, `password`); a dataclass",
    "__version__": "differs: lkproto's own version, not the official SDK's",
    "RpcError": "same, plus `RpcError.built_in(code)`",
    "LocalTrack": "differs: a base class, not a `Union` alias (`isinstance` works for both)",
    "RemoteTrack": "differs: a base class, not a `Union` alias (`isinstance` works for both)",
    "AudioProcessingModule": f"unsupported: {NATIVE_REASONS['AudioProcessingModule']}",
    "AudioFilter": f"unsupported: {NATIVE_REASONS['AudioFilter']}",
    "AudioMixer": (
        "differs: `add_stream` after `end_input()`/`aclose()` raises "
        "`LocalProtocolError`, and frames of another rate or channel count are skipped with a "
        "warning"
    ),
    "AudioResampler": (
        "differs: FFmpeg's libswresample through PyAV instead of libsoxr: same interface, output "
        "lengths within a few samples of the official ones"
    ),
    "AudioResamplerQuality": (
        "differs: same names and values (a `StrEnum`); they choose libswresample filter lengths, "
        "not libsoxr recipes"
    ),
    "PlatformAudio": f"unsupported: {NATIVE_REASONS['PlatformAudio']}",
    "MediaDevices": f"unsupported: {NATIVE_REASONS['MediaDevices']}",
    "PlatformAudioSource": (
        f"unsupported: {NATIVE_REASONS['PlatformAudio']} (constructing it raises "
        "`PlatformAudioError`)"
    ),
    "PlatformAudioOptions": (
        "unsupported: same fields, data only: nothing takes it (`PlatformAudio` is refused)"
    ),
    "AudioDeviceInfo": (
        "unsupported: same fields, data only: nothing lists devices (`PlatformAudio` is refused)"
    ),
    "PlatformAudioError": (
        "differs: an `UnsupportedFeatureError`, what `PlatformAudio()` and "
        "`PlatformAudioSource()` raise here"
    ),
    "NoiseCancellationOptions": (
        f"unsupported: same fields, data only; `AudioStream(noise_cancellation=...)` refuses "
        f"it: {NATIVE_REASONS['AudioFilter']}; a `FrameProcessor` is accepted"
    ),
    "AVSynchronizer": (
        "differs: same pacing (audio through the source's real-time queue, video at "
        "`video_fps` from a bounded queue); pushing after `aclose()` raises "
        "`LocalProtocolError`, and `aclose()` releases `wait_for_playout`"
    ),
    "AudioStream": (
        "differs: `from_participant` returns a `ParticipantStream` (the same iteration and "
        "`aclose`, following the participant's track of that source across republishes), not "
        "an `AudioStream`"
    ),
    "VideoStream": (
        "differs: `from_participant` returns a `ParticipantStream` (the same iteration and "
        "`aclose`, following the participant's track of that source across republishes), not "
        "a `VideoStream`"
    ),
    "FrameProcessor": (
        "differs: the same abstract base (`enabled`, `_process`, `_close`), taken by "
        "`AudioStream(noise_cancellation=...)`; lkproto never calls the `_on_stream_info_*` / "
        "`_on_credentials_*` hooks, so a cloud noise-cancellation plugin gets no room "
        "credentials"
    ),
    "EncodedVideoSource": (
        "differs: the official `EncodedVideoSource(width, height)` with `capture_frame` and "
        "`take_feedback` works (VP8 or Annex-B H.264; the codec is fixed by the first frame or "
        "the publication), and lkproto's own `(codec, width, height)` with `capture_encoded`; "
        "`take_feedback().rate_control` is always None (aiortc has no send-side bandwidth "
        "estimate); frame metadata is refused"
    ),
    "EncodedVideoFrame": (
        "differs: same fields and checks; `metadata` must be None (refused by "
        "`capture_frame`), codecs other than VP8/H264 are refused"
    ),
    "EncodedRateControl": (
        "differs: same fields; never produced: aiortc has no send-side bandwidth estimate "
        "to forward"
    ),
    "EncodedVideoSourceFeedback": (
        "differs: same fields; `keyframe_requested` reports the server's PLI/FIR and lkproto's own "
        "requests, `rate_control` is always None"
    ),
    "VideoEncoderBackend": (
        "differs: same names and numbers (an `IntEnum`); in `TrackPublishOptions.video_encoder` "
        "the hardware backends are refused (aiortc encodes in software), `AUTO`/`SOFTWARE`/"
        "`PRE_ENCODED` accepted (the source decides whether frames are pre-encoded)"
    ),
    "DegradationPreference": (
        "differs: same names and numbers; a hint in `TrackPublishOptions."
        "degradation_preference` (warned once unless `BALANCED`): aiortc's encoders neither drop "
        "frames nor scale to hold a bitrate"
    ),
    "FrameMetadataFeature": _FRAME_METADATA,
    "FrameMetadata": _FRAME_METADATA,
    "stats": (
        "differs: frozen dataclasses with the official message, field and enum names and "
        'protobuf\'s `WhichOneof("stats")`/`HasField`, carrying only what aiortc and lkproto '
        "measure (RTP packets, bytes, loss, jitter, RTT, decoded frames, discarded audio "
        "packets, codec, transport, ICE pair, data channels); kinds and fields without data are "
        "absent, not zero "
        "(see `lkproto.rtc.stats`)"
    ),
    "RtcStats": (
        "same fields; `Room.get_rtc_stats` on a disconnected room raises `LocalProtocolError` "
        "(`RuntimeError` there)"
    ),
    "LocalParticipant": (
        "same `publish_data_track(name=...)`; its `PublishDataTrackError` (in "
        "`lkproto.rtc.participant`, as upstream) also carries the server's `reason`"
    ),
    "LocalDataTrack": _DATA_TRACKS_LOCAL,
    "RemoteDataTrack": _DATA_TRACKS_REMOTE,
    "DataTrackStream": (
        "same; a reader `buffer_size` frames behind loses its oldest frame (default 16)"
    ),
    "RpcInterceptor": (
        "same chain, deadline and `cancel_reason` rules; differs: a call for a method nobody "
        "registered is answered `UNSUPPORTED_METHOD` before any interceptor runs"
    ),
    "RpcCallInfo": "same fields; an interceptor passes a changed copy (`dataclasses.replace`) on",
}
"""Official name -> how lkproto's differs (or a remark on a name that is the same)."""

MISSING: Final[dict[str, str]] = {}
"""Official names lkproto does not have, with the reason."""


def _has_member(ours: object, name: str) -> bool:
    """Whether ``ours`` (a class) offers ``name``: attribute, dataclass field, annotation, or an
    attribute its methods assign (``self.name = ...``, set in ``__init__`` of plain classes)."""
    if hasattr(ours, name):
        return True
    if not isinstance(ours, type):
        return False
    if dataclasses.is_dataclass(ours) and name in {f.name for f in dataclasses.fields(ours)}:
        return True
    assign = re.compile(rf"\bself\.{re.escape(name)}\s*(?::[^=]+)?=")
    for klass in ours.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return True
        if klass.__module__.startswith("lkproto."):
            try:
                source = inspect.getsource(klass)
            except (OSError, TypeError):
                continue
            if assign.search(source):
                return True
    return False


def lacking(theirs: object, ours: object) -> list[str]:
    """Public members of the official ``theirs`` that lkproto's ``ours`` does not offer.

    Protobuf messages are compared by field, protobuf enums by member name and the enum
    helpers, Python enums by member, other classes by public attribute.
    """
    if isinstance(theirs, EnumTypeWrapper):
        members = set(getattr(ours, "__members__", {}))
        missing = [k for k in theirs.keys() if k not in members]  # noqa: SIM118 - not a dict
        return missing + [h for h in _ENUM_HELPERS if not hasattr(ours, h)]
    if isinstance(theirs, type) and issubclass(theirs, enum.Enum):
        members = set(getattr(ours, "__members__", {}))
        return [k for k in theirs.__members__ if k not in members]
    if isinstance(theirs, type) and issubclass(theirs, Message):
        return [f for f in theirs.DESCRIPTOR.fields_by_name if not _has_member(ours, f)]
    if isinstance(theirs, type) and isinstance(ours, type):
        gaps = []
        for n in dir(theirs):
            if n.startswith("_"):
                continue
            if not _has_member(ours, n):
                gaps.append(n)
                continue
            gaps.extend(_lacking_parameters(n, getattr(theirs, n), getattr(ours, n, None)))
        return gaps
    if callable(theirs) and callable(ours):
        return _lacking_parameters("", theirs, ours)
    return []


def _lacking_parameters(name: str, theirs: object, ours: object) -> list[str]:
    """``name(param=)`` for each parameter of the official function lkproto's lacks."""
    if not (inspect.isfunction(theirs) and inspect.isfunction(ours)):
        return []
    mine = inspect.signature(ours).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in mine.values()):
        return []
    return [
        f"{name}({p}=)"
        for p in inspect.signature(theirs).parameters
        if p not in mine and p not in ("self", "cls")
    ]


def _status(name: str, theirs: object, ours: ModuleType) -> str:
    if not hasattr(ours, name):
        reason = MISSING.get(name)
        if reason is None:
            raise LookupError(f"{name} is missing from lkproto.rtc and not listed in MISSING")
        return reason
    note = NOTES.get(name)
    if note is not None and note.startswith(("unsupported:", "not yet:")):
        return note
    gaps = lacking(theirs, getattr(ours, name))
    if note is None and isinstance(theirs, EnumTypeWrapper) and not gaps:
        note = _ENUM_NOTE
    if not gaps:
        return note or _SAME
    listed = ", ".join(f"`{g}`" for g in gaps)
    if note is None:
        return f"differs: lacks {listed}"
    if not note.startswith("differs:"):
        note = f"differs: {note}"
    return f"{note}; lacks {listed}"


def rows(official: ModuleType, ours: ModuleType) -> list[tuple[str, str]]:
    """``(official name, status)`` for every name in ``official.__all__``.

    Args:
        official: the imported ``livekit.rtc`` package.
        ours: the imported ``lkproto.rtc`` package.

    Raises:
        LookupError: an official name lkproto lacks is not explained in :data:`MISSING`.
    """
    return [(name, _status(name, getattr(official, name), ours)) for name in official.__all__]


def render_table(official: ModuleType, ours: ModuleType) -> str:
    """The Markdown table of :func:`rows`, with the official package's version in the header.

    Also a last line counting the names that are the same, differ, are not built yet, or are
    unsupported.
    """
    version = getattr(official, "__version__", "?")
    table = rows(official, ours)
    lines = [
        f"| `livekit.rtc` {version} | lkproto |",
        "|---|---|",
        *(f"| `{name}` | {status} |" for name, status in table),
    ]
    counts: dict[str, int] = {}
    for _, status in table:
        kind = status.split(":", 1)[0].split(" ", 1)[0].split(";", 1)[0]
        kind = kind if kind in ("differs", "unsupported", "not") else "same"
        counts[kind] = counts.get(kind, 0) + 1
    lines.append("")
    lines.append(
        f"{len(table)} names: {counts.get('same', 0)} same, {counts.get('differs', 0)} differ, "
        f"{counts.get('not', 0)} not built yet, {counts.get('unsupported', 0)} unsupported."
    )
    return "\n".join(lines) + "\n"
