"""The one seam between lkproto and the internals of aiortc and aioice.

aiortc is the edge lkproto wraps (STYLE.md rule 10). A few things LiveKit needs have no public
aiortc/aioice API: choosing the encoder a sender starts with, muting a sender without detaching
its track, hearing PLI/FIR for pre-encoded video, knowing the ICE role and the selected pair,
gathering on loopback, and a consent-check task aioice can leave behind. Each of those is one
small function here, and this is the only module of lkproto that names a private attribute of
aiortc or aioice or replaces one of their functions (``tests/unit/asyncio/test_seam.py`` greps the
source tree to keep it so).

Rules every function here follows:

- Its docstring names the internal it relies on, the versions it was read in, and why no public
  API serves.
- It checks the internal before using it and, if it is gone, never silently does nothing: it
  raises :class:`~lkproto.errors.LkError` naming the internal, or, where lkproto can go on
  without it (muting, PLI/FIR forwarding), tells the caller so that it logs a warning.
- It changes nothing for other code in the process: patches are made on lkproto's own objects
  (a sender lkproto created, an aioice ``Connection`` of lkproto's own peer connection), and
  the one replaced module function (:func:`aioice.ice.get_host_addresses`) behaves exactly as the
  original unless called from inside the gathering of one of lkproto's own connections.
- ``tests/unit/asyncio/test_seam.py`` has a test per function that runs the real internal, so a
  release that changes one fails the suite instead of a user.

Supported versions are :data:`SUPPORTED_VERSIONS` (the same ranges as the ``rtc`` extra in
``pyproject.toml``); importing this module runs :func:`check_versions`, which raises
:class:`~lkproto.errors.UnsupportedDependencyError` for anything else.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import functools
import importlib.metadata
import ipaddress
import logging
import queue
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal, cast

import aioice.ice
import aioice.stun
import aiortc.codecs
import aiortc.jitterbuffer
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtcsctptransport
import aiortc.rtp
import aiortc.sdp
import google_crc32c
import pylibsrtp
from aioice import Candidate
from aiortc import (
    RTCDataChannel,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSctpTransport,
)
from aiortc import rtcsctptransport as _sctp
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from OpenSSL import SSL

from lkproto.asyncio._timer import DeadlineTimer
from lkproto.core import sctp as sctp_timing
from lkproto.core.jitter import AUDIO_REORDER_DEPTH, AudioReorderBuffer
from lkproto.errors import LkError, LocalProtocolError, UnsupportedDependencyError

__all__ = [
    "CONSENT_EXPIRY_S",
    "ICE_CHECK_RESEND_S",
    "SCTP_DEFAULT_PACKET_BYTES",
    "SCTP_MAX_PACKET_BYTES",
    "STUN_QUERY_TIMEOUT_S",
    "SUPPORTED_VERSIONS",
    "UDP_RECEIVE_BUFFER_BYTES",
    "AudioEncodeStep",
    "InboundStream",
    "NominatedPair",
    "RidTaggingTransport",
    "TrickledGathering",
    "after_close",
    "audio_order",
    "check_versions",
    "compatible_release",
    "consent_expired",
    "count_received_bytes",
    "current_encoder",
    "encode_audio_with",
    "enlarge_receive_buffers",
    "finish_gather_on_cancel",
    "fit_consent",
    "h264_packetize",
    "ice_role",
    "inbound_streams",
    "intercept_send",
    "keep_ice_checking",
    "nominated_pair",
    "order_inbound_by_ssn",
    "preset_encoder",
    "scope_ice_connection",
    "sctp_packet_bytes",
    "sctp_packet_bytes_of",
    "sctp_unacknowledged_bytes",
    "send_sender_report",
    "sender_enabled",
    "set_sctp_packet_bytes",
    "set_sender_enabled",
    "take_force_keyframe",
    "tolerate_audio_loss",
    "transform_decoder_input",
    "trickle_server_reflexive",
    "tune_sctp",
    "watch_ice_receipts",
]

SUPPORTED_VERSIONS: Final[Mapping[str, str]] = MappingProxyType(
    {"aiortc": "~=1.16.0", "aioice": "~=0.13.0"}
)
"""The aiortc/aioice releases the whole suite (unit and interop) was run with, as PEP 440
compatible-release specifiers. Widen a range only after running the suite with that release."""

_VERSION: Final = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$", re.IGNORECASE)
_PRE_RELEASE: Final = re.compile(r"^[-_.]?(a|b|c|rc|alpha|beta|pre|preview|dev)", re.IGNORECASE)


def compatible_release(installed: str, spec: str) -> bool:
    """Whether the version ``installed`` satisfies the compatible-release specifier ``spec``.

    Only ``~=X.Y[.Z...]`` is understood (PEP 440 "Compatible release"): at least ``X.Y.Z`` and
    the same release with its last component dropped, e.g. ``~=1.16.0`` is ``>=1.16.0, ==1.16.*``.
    A pre-release or development release of the lower bound (``1.16.0rc1``) is below it; a
    post-release or local version (``1.16.0.post1``, ``1.16.0+deb``) is in range. Written here
    because ``packaging`` is not a dependency.

    Raises:
        ValueError: ``spec`` is not a ``~=`` specifier with at least two components.
    """
    if not spec.startswith("~="):
        raise ValueError(f"not a compatible-release specifier: {spec!r}")
    lower_match = _VERSION.match(spec[2:])
    if lower_match is None or lower_match.group(2).strip():
        raise ValueError(f"not a compatible-release specifier: {spec!r}")
    lower = tuple(int(part) for part in lower_match.group(1).split("."))
    if len(lower) < 2:
        raise ValueError(f"~= needs at least two release components: {spec!r}")
    match = _VERSION.match(installed)
    if match is None:
        return False
    release = tuple(int(part) for part in match.group(1).split("."))
    width = max(len(release), len(lower))
    padded = release + (0,) * (width - len(release))
    floor = lower + (0,) * (width - len(lower))
    if padded < floor:
        return False
    if padded == floor and _PRE_RELEASE.match(match.group(2)):
        return False
    return padded[: len(lower) - 1] == lower[:-1]


def check_versions(version_of: Callable[[str], str] = importlib.metadata.version) -> None:
    """Refuse aiortc/aioice releases outside :data:`SUPPORTED_VERSIONS`.

    Runs once when this module is imported (one metadata lookup per package). Everything in
    this module was read in, and tested against, exactly those releases; a newer aiortc may
    rename an internal and break publishing or muting in ways only a real call shows.

    Args:
        version_of: the installed version of a distribution (``importlib.metadata.version``;
            injectable for tests).

    Raises:
        UnsupportedDependencyError: a package is missing from the distribution metadata or
            installed at a version outside its supported range.
    """
    for package, spec in SUPPORTED_VERSIONS.items():
        try:
            installed = version_of(package)
        except importlib.metadata.PackageNotFoundError:
            raise UnsupportedDependencyError(package, "(no distribution metadata)", spec) from None
        if not compatible_release(installed, spec):
            raise UnsupportedDependencyError(package, installed, spec)


def _internal_gone(package: str, what: str) -> LkError:
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        installed = "(unknown version)"
    return LkError(
        f"{package} {installed} no longer has {what}, which lkproto relies on "
        f"(written for {package}{SUPPORTED_VERSIONS[package]}); lkproto/asyncio/_seam.py "
        "needs updating"
    )


def _code_names(function: object) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return tuple(code.co_names) if code is not None else ()


# -- RTCRtpSender: encoder, keyframe flag, enabled flag -------------------------------------------

# Name-mangled private attributes of aiortc/rtcrtpsender.py (RTCRtpSender.__init__), 1.16.0.
_SENDER_ENCODER: Final = "_RTCRtpSender__encoder"
_SENDER_FORCE_KEYFRAME: Final = "_RTCRtpSender__force_keyframe"
_SENDER_ENABLED: Final = "_enabled"


def _require_lazy_encoder(sender: RTCRtpSender) -> None:
    names = _code_names(RTCRtpSender._next_encoded_frame)
    if (
        not hasattr(sender, _SENDER_ENCODER)
        or "get_encoder" not in names
        or _SENDER_ENCODER not in names
    ):
        raise _internal_gone(
            "aiortc", "a lazily created RTCRtpSender.__encoder (set in _next_encoded_frame)"
        )


def current_encoder(sender: RTCRtpSender) -> Encoder | None:
    """The encoder ``sender`` encodes with, or None while it has not sent a frame.

    Relies on aiortc 1.16's private ``RTCRtpSender.__encoder`` (see :func:`preset_encoder`).

    Raises:
        LkError: this aiortc does not create its encoder lazily in that attribute.
    """
    _require_lazy_encoder(sender)
    encoder: Encoder | None = getattr(sender, _SENDER_ENCODER)
    return encoder


def preset_encoder(sender: RTCRtpSender, encoder: Encoder) -> None:
    """Make ``sender`` encode with ``encoder`` instead of the one aiortc would create.

    aiortc has no API to choose or configure a sender's encoder: it always starts Opus as
    96 kbps stereo and VP8/H.264 at a fixed bitrate. In aiortc 1.16.0
    ``RTCRtpSender._next_encoded_frame`` creates ``self.__encoder`` with
    ``codecs.get_encoder(codec)`` on the first frame, only while it is None, and then only calls
    ``encode``/``pack`` on it (``_handle_rtcp_packet`` adjusts ``target_bitrate`` on REMB, which
    lkproto's encoders accept). Setting the attribute before the first frame therefore makes
    aiortc use ours for the life of the sender (``_run_rtp`` resets it to None when it stops).

    Call it before the sender has sent its first frame; the caller decides whether replacing an
    existing encoder is allowed (see :func:`current_encoder`).

    Raises:
        LkError: this aiortc does not create its encoder lazily in that attribute.
    """
    _require_lazy_encoder(sender)
    setattr(sender, _SENDER_ENCODER, encoder)


def take_force_keyframe(sender: RTCRtpSender) -> bool | None:
    """Read and clear ``sender``'s pending keyframe request (RTCP PLI or FIR).

    aiortc 1.16.0 handles PLI/FIR in ``RTCRtpSender._handle_rtcp_packet`` by calling
    ``_send_keyframe``, which only sets the private ``__force_keyframe``; its encode path reads
    and clears it, its pack path (pre-encoded ``av.Packet`` frames) ignores it, and no event is
    emitted. A pre-encoded track polls it here to forward the request to its producer.

    Returns:
        True if a request was pending (it is now cleared), False if not, None if this aiortc
        has no such flag (the caller then only knows about locally detected needs).
    """
    flag = getattr(sender, _SENDER_FORCE_KEYFRAME, None)
    if flag is None:
        return None
    if not flag:
        return False
    setattr(sender, _SENDER_FORCE_KEYFRAME, False)
    return True


def set_sender_enabled(sender: RTCRtpSender, enabled: bool) -> bool:
    """Mute (``enabled=False``) or unmute ``sender`` without detaching its track.

    aiortc 1.16.0's ``RTCRtpSender._next_encoded_frame`` reads the private ``_enabled`` flag for
    every frame: while it is False the frame is read from the track (so nothing piles up) and
    dropped before encoding. ``replaceTrack(None)`` would stop the sender's loop instead, and a
    muted LiveKit track keeps its sender and stream.

    Returns:
        True if the flag was set; False if this aiortc has no such flag (muting then only
        reaches the server, media keeps flowing).
    """
    if not hasattr(sender, _SENDER_ENABLED) or _SENDER_ENABLED not in _code_names(
        RTCRtpSender._next_encoded_frame
    ):
        return False
    setattr(sender, _SENDER_ENABLED, enabled)
    return True


# -- H.264 packetiser ----------------------------------------------------------------------------


def h264_packetize(nal_units: Sequence[bytes]) -> list[bytes]:
    """RTP payloads (single NAL, STAP-A, FU-A) of one access unit, as aiortc sends them.

    aiortc 1.16.0's ``H264Encoder.encode`` packetises inside the call with the private
    classmethod ``H264Encoder._packetize`` (NAL units without start codes in, payloads out) and
    has no public packetiser. End-to-end encryption must change the frame between encoding and
    packetising, so the encrypted access unit is packetised here with the same function, and the
    payloads stay what aiortc's own encoder would produce for it.

    Raises:
        LkError: this aiortc has no such packetiser.
    """
    packetize = getattr(H264Encoder, "_packetize", None)
    if not callable(packetize):
        raise _internal_gone("aiortc", "H264Encoder._packetize")
    payloads: list[bytes] = packetize(nal_units)
    return payloads


# -- RTCRtpReceiver: encoded frames on their way to the decoder ----------------------------------

# Name-mangled private attribute of aiortc/rtcrtpreceiver.py (RTCRtpReceiver.__init__), 1.16.0.
_RECEIVER_DECODER_QUEUE: Final = "_RTCRtpReceiver__decoder_queue"


def transform_decoder_input(
    receiver: RTCRtpReceiver, transform: Callable[[bytes], bytes | None]
) -> None:
    """Pass every encoded frame ``receiver`` decodes through ``transform`` first.

    aiortc has no insertable-streams API. In aiortc 1.16.0 ``RTCRtpReceiver`` depacketises RTP
    into ``JitterFrame`` objects and hands ``(codec, frame)`` to its decoder thread through the
    private ``queue.Queue`` ``__decoder_queue``; ``decoder_worker`` takes them with ``get()`` and
    decodes ``frame.data``. The queue object is created in ``__init__`` and given to the thread as
    an argument, so it cannot be replaced; instead its ``get`` is shadowed on this one instance
    (lkproto's own receiver; other receivers keep the class's ``get``). ``transform`` therefore
    runs on the decoder thread, off the event loop, with the frame's bytes: it returns the bytes
    to decode, or None to drop the frame (the worker then waits for the next one). The end-of-
    track ``None`` passes through. Calling it again replaces the transform (sections are reused
    by later tracks, PROTOCOL-MAP §14).

    Raises:
        LkError: this aiortc does not feed its decoder thread through that queue.
    """
    input_q = getattr(receiver, _RECEIVER_DECODER_QUEUE, None)
    names = _code_names(aiortc.rtcrtpreceiver.decoder_worker)
    if not isinstance(input_q, queue.Queue) or "get" not in names or "decode" not in names:
        raise _internal_gone("aiortc", "RTCRtpReceiver.__decoder_queue feeding decoder_worker")
    original = type(input_q).get.__get__(input_q)

    def get(block: bool = True, timeout: float | None = None) -> object:
        while True:
            item = original(block, timeout)
            if item is None:
                return item
            _codec, frame = item
            data = transform(bytes(frame.data))
            if data is not None:
                frame.data = data
                return item

    input_q.get = get  # type: ignore[method-assign]


# -- RTCIceTransport: role and nominated pair ---------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NominatedPair:
    """The candidate pair aioice nominated for a component.

    Attributes:
        local: our candidate.
        remote: the peer's candidate.
    """

    local: Candidate
    remote: Candidate


def ice_role(transport: RTCIceTransport) -> Literal["controlling", "controlled"] | None:
    """``transport``'s ICE role once a description fixed it, else None.

    aiortc 1.16.0's public ``RTCIceTransport.role`` answers ``controlled`` before anything set it;
    the private ``_role_set`` (set in ``RTCPeerConnection.setLocalDescription`` and
    ``setRemoteDescription``) tells whether the answer is final.

    Raises:
        LkError: this aiortc has no ``_role_set``.
    """
    role_set = getattr(transport, "_role_set", None)
    if not isinstance(role_set, bool):
        raise _internal_gone("aiortc", "RTCIceTransport._role_set")
    if not role_set:
        return None
    return "controlling" if transport.role == "controlling" else "controlled"


def nominated_pair(transport: RTCIceTransport) -> NominatedPair | None:
    """The pair ICE nominated on ``transport`` (component 1, RTP/data), or None before that.

    Neither aiortc nor aioice 0.13.0 exposes the selected pair (there is no
    ``getSelectedCandidatePair``); aioice keeps nominated pairs by component in the private
    ``Connection._nominated``, which aiortc 1.16.0's ``RTCIceTransport`` holds as the private
    ``_connection``. Both are read, never written.

    Raises:
        LkError: the transport or its connection lacks those attributes.
    """
    connection = getattr(transport, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict):
        raise _internal_gone("aioice", "RTCIceTransport._connection._nominated")
    pair = nominated.get(1) or next(iter(nominated.values()), None)
    if pair is None:
        return None
    return NominatedPair(local=pair.local_candidate, remote=pair.remote_candidate)


# -- aioice Connection: host addresses and the consent-task leak, per lkproto connection ---------

_HostAddresses = Callable[[bool, bool], list[str]]

# Set only while one of lkproto's own connections runs aioice's gather_candidates (see
# scope_ice_connection); None everywhere else, where the wrapper defers to aioice.
_CHOSEN: Final[contextvars.ContextVar[tuple[str, ...] | None]] = contextvars.ContextVar(
    "lkproto_ice_addresses", default=None
)
_MARK: Final = "__lkproto_seam__"
_install_lock = threading.Lock()


def _wrap_host_addresses() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` so it answers :data:`_CHOSEN` when that is set.

    Outside an lkproto gather the wrapper returns exactly what the function it wraps returns, so
    other code gathers as with stock aioice. Re-run before each gather: if someone else replaced
    the function since, theirs is wrapped in turn (and still answers outside our gathers).
    """
    with _install_lock:
        current = aioice.ice.get_host_addresses
        if getattr(current, _MARK, False):
            return

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            chosen = _CHOSEN.get()
            if chosen is None:
                return current(use_ipv4, use_ipv6)
            return [a for a in chosen if _family_allowed(a, use_ipv4=use_ipv4, use_ipv6=use_ipv6)]

        setattr(get_host_addresses, _MARK, True)
        get_host_addresses.__wrapped__ = current  # type: ignore[attr-defined]
        setattr(aioice.ice, "get_host_addresses", get_host_addresses)  # noqa: B010


def _family_allowed(address: str, *, use_ipv4: bool, use_ipv6: bool) -> bool:
    version = ipaddress.ip_address(address).version
    return use_ipv4 if version == 4 else use_ipv6


def _require_connection_internals(connection: aioice.ice.Connection) -> None:
    gather_names = _code_names(aioice.ice.Connection.gather_candidates)
    connect_names = _code_names(aioice.ice.Connection.connect)
    if "get_host_addresses" not in gather_names:
        raise _internal_gone(
            "aioice", "Connection.gather_candidates calling the module's get_host_addresses"
        )
    if (
        "_query_consent_task" not in connect_names
        or not hasattr(connection, "_query_consent_task")
        or not isinstance(getattr(connection, "_closing", None), bool)
    ):
        raise _internal_gone("aioice", "Connection._query_consent_task and Connection._closing")


def scope_ice_connection(transport: RTCIceTransport, addresses: Sequence[str] | None) -> None:
    """Fit the aioice connection under ``transport`` (one of lkproto's own) for LiveKit.

    Call it before the transport gathers (before ``setLocalDescription``); later calls for the
    same transport change nothing (the first call's ``addresses`` stay). Only this one
    ``aioice.ice.Connection`` instance is changed, through two instance attributes that shadow
    its class's methods; other connections in the process are untouched.

    1. Host addresses (when ``addresses`` is not None). aioice 0.13.0 gathers host candidates on
       every interface address except ``127.0.0.1``/``::1`` (``aioice/ice.py``
       ``get_host_addresses``) and has no option to choose, so a loopback-only livekit-server
       is unreachable from a machine with eth0 up (PROTOCOL-MAP §17 "ICE on loopback"). This
       connection's ``gather_candidates`` is shadowed by one that sets a context variable and
       runs the class's own, which calls ``get_host_addresses`` as a module global before its
       first ``await``; the module function is wrapped (once per process) to answer the
       variable when set and to defer to aioice otherwise. The variable is set only inside that
       call (and in the tasks aioice creates while gathering, which run only aioice's code),
       never in the task that called ``setLocalDescription`` nor in aiortc's connect task, so
       code that lkproto's callbacks run keeps stock gathering.
    2. Consent-task leak (always). aioice 0.13.0's ``Connection.connect`` paces checks with
       ``sleep(0.02)``; when ``close()`` runs during that sleep after the check list completed,
       ``connect`` resumes and starts ``query_consent`` anyway, a task that then never ends.
       This connection's ``connect`` is shadowed by one that cancels that task when the
       connection is closing (private ``_query_consent_task`` and ``_closing``).

    Both rely on aiortc 1.16.0 calling ``self._connection.gather_candidates()`` and
    ``self._connection.connect()`` on the instance (``RTCIceGatherer.gather``,
    ``RTCIceTransport.start``) and on ``RTCIceGatherer._connection`` (private).

    Args:
        transport: an ICE transport of an ``RTCPeerConnection`` lkproto created.
        addresses: IP address literals to gather host candidates on (still filtered by aioice's
            IPv4/IPv6 switches; validated by the caller), or None for aioice's own choice.

    Raises:
        LkError: the internals above are gone.
    """
    gatherer = transport.iceGatherer
    connection = getattr(gatherer, "_connection", None)
    if not isinstance(connection, aioice.ice.Connection):
        raise _internal_gone("aiortc", "RTCIceGatherer._connection")
    _require_connection_internals(connection)
    if getattr(connection, _MARK, False):
        return
    setattr(connection, _MARK, True)
    cls = type(connection)
    if addresses is not None:
        chosen = tuple(addresses)

        async def gather_candidates() -> None:
            _wrap_host_addresses()
            token = _CHOSEN.set(chosen)
            try:
                await cls.gather_candidates(connection)
            finally:
                _CHOSEN.reset(token)

        setattr(connection, "gather_candidates", gather_candidates)  # noqa: B010

    async def connect() -> None:
        await cls.connect(connection)
        task = connection._query_consent_task
        if connection._closing and task is not None and not task.done():
            task.cancel()
            connection._query_consent_task = None

    setattr(connection, "connect", connect)  # noqa: B010
    fit_consent(connection)


# -- aioice Connection: consent freshness by the clock, with retransmissions (issue 15, load) --

CONSENT_INTERVAL_S: Final = 5.0
"""Mean pause between consent checks (RFC 7675 §5.1: about every 5 s, randomised by ±20 %)."""

CONSENT_EXPIRY_S: Final = 30.0
"""Consent is lost when no check has been answered for this long (RFC 7675 §5.1, 30 s)."""

CONSENT_RETRANSMISSIONS: Final = 2
"""Retransmissions of one check: it is given up after 0.5 + 1 + 2 s (aioice's STUN RTO doubling
from 0.5 s), inside the shortest pause to the next one (4 s)."""

_CONSENT_MARK: Final = "__lkproto_consent__"


def consent_expired(last_answered: float, now: float) -> bool:
    """Whether consent is lost: ``now`` is :data:`CONSENT_EXPIRY_S` or more after the last answer.

    Args:
        last_answered: loop time of the last answered check (or of the connection's start).
        now: the current loop time.
    """
    return now - last_answered >= CONSENT_EXPIRY_S


def fit_consent(connection: aioice.ice.Connection) -> None:
    """Make ``connection`` (one of lkproto's own) keep consent the way RFC 7675 counts it.

    aioice 0.13.0's ``Connection.query_consent`` sends each check once (``retransmissions=0``,
    so a check waits 0.5 s for its answer) and closes the connection after six unanswered
    checks in a row. On a busy host an answer can be later than 0.5 s for half a minute while
    datagrams still flow both ways: the load benchmark (100 participants on 2 cores, load average
    ~30) lost every packet of participants whose ICE connection aioice closed that way, each then
    doing a full reconnect. RFC 7675 §5.1 retransmits a check like any STUN transaction and loses
    consent only when nothing was answered for 30 s; the check loop of this one connection is
    replaced by one that does that (``connect`` starts it through the instance attribute
    ``query_consent``). Other connections in the process keep aioice's.

    Relies on aioice 0.13.0's private ``_nominated``, ``remote_password``, ``build_request``,
    ``_query_consent_task`` and on ``connect`` starting ``self.query_consent()``.

    Raises:
        LkError: the internals above are gone.
    """
    if getattr(connection, _CONSENT_MARK, False):
        return
    if "query_consent" not in _code_names(aioice.ice.Connection.connect) or not all(
        hasattr(connection, name) for name in ("_nominated", "remote_password", "build_request")
    ):
        raise _internal_gone("aioice", "Connection.connect starting self.query_consent()")
    setattr(connection, _CONSENT_MARK, True)

    async def query_consent() -> None:
        loop = asyncio.get_running_loop()
        password = connection.remote_password
        assert password is not None  # connect() starts the checks once it has the peer's
        key = password.encode("utf8")
        last_answered = loop.time()
        while True:
            await asyncio.sleep(CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random()))
            for pair in list(connection._nominated.values()):
                try:
                    await pair.protocol.request(
                        connection.build_request(pair, nominate=False),
                        pair.remote_addr,
                        integrity_key=key,
                        retransmissions=CONSENT_RETRANSMISSIONS,
                    )
                except aioice.stun.TransactionError:
                    continue
                last_answered = loop.time()
            if consent_expired(last_answered, loop.time()):
                logging.getLogger("lkproto.ice").info(
                    "= ICE consent lost: no check answered for %.0f s", CONSENT_EXPIRY_S
                )
                connection._query_consent_task = None
                await connection.close()
                return

    setattr(connection, "query_consent", query_consent)  # noqa: B010


# -- aioice Connection: STUN answers trickled, not awaited (issue 18, join time) ----------------

_TRICKLE_MARK: Final = "__lkproto_trickle__"

STUN_QUERY_TIMEOUT_S: Final = 5.0
"""How long a background STUN query may take: aioice's own bound on gathering
(``aioice/ice.py (Connection.get_component_candidates)``, ``timeout=5``), 0.13.0."""


class TrickledGathering:
    """The background STUN queries of one aioice connection (see :func:`trickle_server_reflexive`).

    Attributes:
        tasks: the queries still running or finished, one per IPv4 host candidate.
    """

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        """How many queries have not finished."""
        return sum(1 for task in self.tasks if not task.done())

    def cancel(self) -> None:
        """Stop every query still running (the connection is closing)."""
        for task in self.tasks:
            task.cancel()


def trickle_server_reflexive(
    transport: RTCIceTransport,
    on_candidate: Callable[[Candidate], None],
    *,
    timeout_s: float = STUN_QUERY_TIMEOUT_S,
) -> TrickledGathering:
    """Let ``transport``'s gathering end with its host candidates; STUN answers come later.

    aioice 0.13.0 gathers host candidates, then awaits every STUN (and TURN) query for up to 5 s
    before ``gather_candidates`` returns (``aioice/ice.py (Connection.get_component_candidates)``),
    and aiortc 1.16.0 awaits that inside ``setLocalDescription`` (``RTCIceGatherer.gather``), so an
    unanswered STUN server (LiveKit's advertised one on loopback, a firewalled one elsewhere) holds
    every offer and answer for 5 s. Neither has a trickle option. libwebrtc sends the description
    at once and trickles the rest (PROTOCOL-MAP §2 Trickle), and so does this:

    On this instance only, ``gather_candidates`` is shadowed by one that clears the public
    ``Connection.stun_server`` while the original (or an earlier lkproto shadow, see
    :func:`scope_ice_connection`, which must be applied first) runs, so it returns once host
    candidates (and a TURN allocation, if any: a relayed candidate would need pairing inside
    aioice's private check list, so TURN keeps aioice's behaviour) exist. Then it starts one
    query per IPv4 host socket with aioice's own ``server_reflexive_candidate`` (a module
    function, the same query aioice makes). An answer becomes a server-reflexive candidate that is
    appended to the private ``Connection._local_candidates`` (so later descriptions list it, via
    aiortc's ``RTCIceGatherer.getLocalCandidates``) and passed to ``on_candidate`` for trickling.
    A server-reflexive candidate needs nothing more on our side to be usable: ICE pairs a
    reflexive candidate by its base, the host socket (RFC 8445 §6.1.2.4), which aioice already
    pairs; only the remote peer needs to hear of it.

    Queries that fail or time out (``timeout_s``) are dropped silently, as aioice drops them.
    Later calls for the same transport return a new, empty handle and change nothing.

    Args:
        transport: an ICE transport of an ``RTCPeerConnection`` lkproto created, not yet gathered.
        on_candidate: called (in the event loop) with each server-reflexive candidate.
        timeout_s: bound of each STUN query.

    Returns:
        A handle whose :meth:`TrickledGathering.cancel` stops the queries (call it on close).

    Raises:
        LkError: the internals above are gone.
    """
    gatherer = transport.iceGatherer
    connection = getattr(gatherer, "_connection", None)
    if not isinstance(connection, aioice.ice.Connection):
        raise _internal_gone("aiortc", "RTCIceGatherer._connection")
    if (
        not callable(getattr(aioice.ice, "server_reflexive_candidate", None))
        or not isinstance(getattr(connection, "_local_candidates", None), list)
        or not isinstance(getattr(connection, "_protocols", None), list)
        or "stun_server" not in _code_names(aioice.ice.Connection.get_component_candidates)
    ):
        raise _internal_gone(
            "aioice",
            "server_reflexive_candidate, Connection._local_candidates/_protocols/stun_server",
        )
    handle = TrickledGathering()
    if getattr(connection, _TRICKLE_MARK, False):
        return handle
    setattr(connection, _TRICKLE_MARK, True)
    inner = connection.gather_candidates

    async def query(protocol: aioice.ice.StunProtocol, server: tuple[str, int]) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                candidate, _ = await aioice.ice.server_reflexive_candidate(protocol, server)
        except Exception:  # aioice drops a failed query the same way (get_component_candidates)
            return
        if connection._closing:
            return
        connection._local_candidates.append(candidate)
        on_candidate(candidate)

    async def gather_candidates() -> None:
        server = connection.stun_server
        if server is None or connection._local_candidates_start:
            await inner()
            return
        connection.stun_server = None
        try:
            await inner()
        finally:
            connection.stun_server = server
        if connection._closing:
            # Closed while a cancelled gather finished (finish_gather_on_cancel): no queries on
            # sockets that are being closed.
            return
        for protocol in list(connection._protocols):
            local = getattr(protocol, "local_candidate", None)
            if (
                isinstance(protocol, aioice.ice.StunProtocol)
                and local is not None
                and local.type == "host"
                and ipaddress.ip_address(local.host).version == 4
            ):
                handle.tasks.append(asyncio.create_task(query(protocol, server)))

    setattr(connection, "gather_candidates", gather_candidates)  # noqa: B010
    return handle


# -- aioice Connection: host sockets of a cancelled gather closed (issue 15, churn) -------------

_SHIELD_MARK: Final = "__lkproto_gather_shield__"
_FINISHING: Final[set[asyncio.Task[None]]] = set()
"""Gathers whose caller was cancelled, kept referenced until they end (see below)."""


def finish_gather_on_cancel(transport: RTCIceTransport) -> None:
    """Make a cancelled gather close the host sockets it already bound.

    aioice 0.13.0 binds one UDP socket per host address in a loop and registers them on the
    connection (``Connection._protocols``, which ``close()`` closes) only after the loop
    (``aioice/ice.py (Connection.get_component_candidates)``); each bind awaits a loop turn. A
    ``setLocalDescription`` cancelled inside that loop (a ``Room.connect`` cancelled early)
    therefore leaked the sockets bound so far: issue 15's churn measured 10 more fds after 1,000
    cancelled connects.

    On this instance only, ``gather_candidates`` is shadowed (outermost, so apply it after
    :func:`scope_ice_connection` and :func:`trickle_server_reflexive`) by one that runs the gather
    in a task and shields it: the caller is cancelled at once, the gather goes on to the end of
    its bind loop (no network waits there: STUN is trickled, see
    :func:`trickle_server_reflexive`), and if the connection was closed meanwhile the sockets it
    registered are closed then.

    Args:
        transport: an ICE transport of an ``RTCPeerConnection`` lkproto created, not yet gathered.

    Raises:
        LkError: the internals above are gone.
    """
    connection = getattr(transport.iceGatherer, "_connection", None)
    if not isinstance(connection, aioice.ice.Connection):
        raise _internal_gone("aiortc", "RTCIceGatherer._connection")
    if not isinstance(getattr(connection, "_protocols", None), list) or not isinstance(
        getattr(connection, "_closing", None), bool
    ):
        raise _internal_gone("aioice", "Connection._protocols and Connection._closing")
    if getattr(connection, _SHIELD_MARK, False):
        return
    setattr(connection, _SHIELD_MARK, True)
    inner = connection.gather_candidates

    async def close_late_sockets(inner_task: asyncio.Future[None]) -> None:
        await asyncio.wait({inner_task})
        if not inner_task.cancelled() and (error := inner_task.exception()) is not None:
            logging.getLogger("lkproto.ice").debug("= a cancelled gather failed: %s", error)
        if connection._closing:
            protocols, connection._protocols = list(connection._protocols), []
            for protocol in protocols:
                await protocol.close()

    async def gather_candidates() -> None:
        inner_task = asyncio.ensure_future(inner())
        try:
            await asyncio.shield(inner_task)
        except asyncio.CancelledError:
            finishing = asyncio.ensure_future(close_late_sockets(inner_task))
            _FINISHING.add(finishing)
            finishing.add_done_callback(_FINISHING.discard)
            raise

    setattr(connection, "gather_candidates", gather_candidates)  # noqa: B010


# SCTP DATA chunk flags (RFC 4960 §3.3.1): B = first fragment, E = last, U = unordered.
_FIRST_FRAG: Final = 0x02
_LAST_FRAG: Final = 0x01
_UNORDERED: Final = 0x04
_SSN_MARK: Final = "_lkproto_ssn_ordered"


def _tsn_after(a: int, b: int) -> bool:
    """Whether 32-bit TSN ``a`` comes after ``b`` in serial-number arithmetic (RFC 1982)."""
    return a != b and (a - b) % 0x100000000 < 0x80000000


def _ssn_after(a: int, b: int) -> bool:
    """Whether 16-bit SSN ``a`` comes after ``b`` in serial-number arithmetic (RFC 1982)."""
    return a != b and (a - b) % 0x10000 < 0x8000


class _SsnOrderedInboundStream(aiortc.rtcsctptransport.InboundStream):
    """aiortc's per-stream reassembly, delivering ordered messages by SSN whatever their TSNs.

    aiortc 1.16.0 ``InboundStream.pop_messages`` walks the reassembly list in TSN order and stops
    at the first ordered message whose SSN is not the next expected one. RFC 4960 §6.6 orders
    delivery by SSN alone, and a sender may give an earlier SSN a later TSN: livekit-server (pion
    SCTP) numbers SSNs when a message is queued and TSNs when it is packed, and its writers for
    one subscriber run concurrently, so in a busy room the message with the expected SSN can
    arrive *after* higher SSNs. aiortc then waits for it at the head of the list forever: every
    later message on the ``_reliable`` channel stays in reassembly, SACKed and never delivered
    (issue 15, load loss). This version searches the whole list for the expected SSN.
    """

    def pop_messages(self) -> Iterator[tuple[int, int, bytes]]:
        while (message := self._take_deliverable()) is not None:
            yield message

    def _take_deliverable(self) -> tuple[int, int, bytes] | None:
        chunks = self.reassembly
        start = 0
        while start < len(chunks):
            first = chunks[start]
            if not first.flags & _FIRST_FRAG:
                start += 1  # a middle or last fragment whose first is missing or pruned
                continue
            end = start
            while not chunks[end].flags & _LAST_FRAG:
                nxt = end + 1
                if nxt >= len(chunks) or chunks[nxt].tsn != (chunks[end].tsn + 1) % 0x100000000:
                    end = -1  # incomplete: a fragment is still missing
                    break
                end = nxt
            if end < 0:
                start += 1
                continue
            ordered = not first.flags & _UNORDERED
            # An SSN behind the expected one (FORWARD TSN moved past it) is delivered, as
            # aiortc's own version does; one ahead waits for its turn.
            if ordered and _ssn_after(first.stream_seq, self.sequence_number):
                start = end + 1
                continue
            data = b"".join(chunk.user_data for chunk in chunks[start : end + 1])
            del chunks[start : end + 1]
            if ordered and first.stream_seq == self.sequence_number:
                self.sequence_number = (self.sequence_number + 1) % 0x10000
            return (first.stream_id, first.protocol, data)
        return None


def order_inbound_by_ssn(transport: RTCSctpTransport) -> None:
    """Make the SCTP association ``transport`` (one of lkproto's own) deliver by SSN.

    Replaces, on this instance only, ``RTCSctpTransport._get_inbound_stream`` (private, aiortc
    1.16.0: creates an ``InboundStream`` per stream id into ``_inbound_streams``) by one that
    creates :class:`_SsnOrderedInboundStream` instead; see that class for the aiortc defect.
    Other associations in the process keep aiortc's class. Call it before any DATA chunk
    arrives (before ``setLocalDescription``); later calls change nothing.

    Raises:
        LkError: the internals above are gone.
    """
    streams = getattr(transport, "_inbound_streams", None)
    base = getattr(aiortc.rtcsctptransport, "InboundStream", None)
    if (
        not isinstance(streams, dict)
        or not callable(getattr(transport, "_get_inbound_stream", None))
        or base is None
        or not callable(getattr(base, "pop_messages", None))
    ):
        raise _internal_gone("aiortc", "RTCSctpTransport._get_inbound_stream/_inbound_streams")
    if getattr(transport, _SSN_MARK, False):
        return
    setattr(transport, _SSN_MARK, True)
    # Streams created before this call (none when called before negotiation) keep their chunks.
    for stream_id, stream in list(streams.items()):
        replacement = _SsnOrderedInboundStream()
        replacement.reassembly = stream.reassembly
        replacement.sequence_number = stream.sequence_number
        streams[stream_id] = replacement

    def get_inbound_stream(stream_id: int) -> aiortc.rtcsctptransport.InboundStream:
        stream = streams.get(stream_id)
        if stream is None:
            stream = streams[stream_id] = _SsnOrderedInboundStream()
        return stream

    setattr(transport, "_get_inbound_stream", get_inbound_stream)  # noqa: B010


# -- RTCSctpTransport: what the peer has not acknowledged (issue 15, reliable data) -------------


async def after_close() -> None:
    """Give aiortc's own close task, if any, the loop turn it needs to end.

    When the remote side closed DTLS first, aiortc started a ``close()`` task of its own
    (``RTCPeerConnection.__updateConnectionState``); it waits on the future our ``close()`` just
    resolved and ends on the next loop turn. Await this right after ``RTCPeerConnection.close``
    so that no such task is left behind.
    """
    await asyncio.sleep(0)


def sctp_unacknowledged_bytes(transport: RTCSctpTransport, stream_id: int) -> int:
    """User-data bytes of the ordered stream ``stream_id`` handed to SCTP and not yet delivered.

    Counts every message of the stream from the first one the peer has not acknowledged in full
    (cumulatively or by a gap block) through the last one chunked: on an ordered stream the peer
    delivers nothing past an incomplete message, so all of those are certainly undelivered, and
    every message before them was received complete and so delivered. The first counted message
    may have lost its leading fragments to the cumulative acknowledgement; only the fragments
    still held are counted, so the caller treats any partly covered message as undelivered.
    Messages still in the data channel's own queue are not counted (that is its
    ``bufferedAmount``). Valid on a closed association too: aiortc keeps both queues.

    Relies on aiortc 1.16.0 private state of ``RTCSctpTransport``: ``_sent_queue`` (DATA chunks
    sent and not yet cumulatively acknowledged, in TSN order, each with ``_acked`` set by gap
    blocks) and ``_outbound_queue`` (chunks not yet sent), and the ``DataChunk`` fields
    ``stream_id``, ``flags`` and ``user_data``. No public API tells what the peer acknowledged;
    ``bufferedAmount`` drops a message as soon as it is chunked. The engine needs it so that a
    full reconnect resends exactly what the old association never delivered (PROTOCOL-MAP §3
    Reliable sequence has nothing for a new session).

    Raises:
        LkError: the internals above are gone.
    """
    tuned = getattr(transport, _TUNED_MARK, None)
    if isinstance(tuned, _TunedAssociation):
        # Same figure, kept up to date as chunks are queued and acknowledged: the scan below
        # walks every chunk in flight, and the engine asks after every send (issue 18 profile:
        # ~1 ms per call with 1 MiB in flight, 3 % of a 10 MiB byte stream's time).
        return tuned.unacknowledged_bytes(stream_id)
    return _scan_unacknowledged_bytes(transport, stream_id)


def _scan_unacknowledged_bytes(transport: RTCSctpTransport, stream_id: int) -> int:
    """:func:`sctp_unacknowledged_bytes` by a walk over aiortc's two queues."""
    sent = getattr(transport, "_sent_queue", None)
    outbound = getattr(transport, "_outbound_queue", None)
    if sent is None or outbound is None:
        raise _internal_gone("aiortc", "RTCSctpTransport._sent_queue/_outbound_queue")
    total = 0
    pending: list[int] = []  # fragment sizes of the current message while all are acknowledged
    counting = False
    for chunk in (*sent, *outbound):
        try:
            if chunk.stream_id != stream_id:
                continue
            size = len(chunk.user_data)
            acked = bool(chunk._acked)  # False for every chunk not yet sent
            last = bool(chunk.flags & _LAST_FRAG)
        except AttributeError:
            raise _internal_gone("aiortc", "DataChunk.stream_id/flags/user_data/_acked") from None
        if counting:
            total += size
            continue
        pending.append(size)
        if not acked:
            counting = True
            total += sum(pending)
        elif last:
            pending.clear()  # received complete: delivered
    return total


# -- aioice Connection: when the peer was last heard (issue 15, dead transport) -----------------

_RECEIPT_MARK: Final = "_lkproto_last_receipt"


@dataclasses.dataclass(slots=True)
class _ReceiptClock:
    last: float

    def get(self) -> float:
        return self.last


def watch_ice_receipts(transport: RTCIceTransport) -> Callable[[], float]:
    """Start noting when any datagram arrives on ``transport`` (one of lkproto's own).

    Returns a function giving the event-loop time of the last datagram received on any of the
    connection's sockets (STUN checks and keepalives, DTLS, SCTP, RTP), or of this call when
    none has come since. Later calls for the same transport return the same clock.

    Relies on aiortc 1.16.0 ``RTCIceTransport._connection`` (the aioice ``Connection``) and
    aioice 0.13.0 ``Connection._protocols`` (one ``StunProtocol`` per gathered socket, whose
    ``datagram_received`` asyncio calls for every datagram): each protocol instance's method is
    shadowed by one that notes the time and runs the original. Call it once the transport has
    gathered (sockets made later are not watched). No public API says when the peer was last
    heard; ICE consent (aioice fails it after ~30 s) is far slower than the floor of issue 15
    needs, and a dead SCTP association leaves ``connectionState`` ``connected``.

    Raises:
        LkError: the internals above are gone.
    """
    connection = getattr(transport, "_connection", None)
    protocols = getattr(connection, "_protocols", None)
    if connection is None or not isinstance(protocols, list):
        raise _internal_gone("aioice", "RTCIceTransport._connection._protocols")
    existing = getattr(connection, _RECEIPT_MARK, None)
    if isinstance(existing, _ReceiptClock):
        return existing.get
    loop = asyncio.get_running_loop()
    clock = _ReceiptClock(loop.time())
    for protocol in protocols:
        original = getattr(protocol, "datagram_received", None)
        if not callable(original):
            raise _internal_gone("aioice", "StunProtocol.datagram_received")

        def noted(
            data: bytes | str, addr: tuple[object, ...], _original: Callable[..., None] = original
        ) -> None:
            clock.last = loop.time()
            _original(data, addr)

        setattr(protocol, "datagram_received", noted)  # noqa: B010
    setattr(connection, _RECEIPT_MARK, clock)
    return clock.get


# -- stats: RTCRtpReceiver per-SSRC counters --------------------------------------------------

# Name-mangled private attributes of aiortc/rtcrtpreceiver.py (RTCRtpReceiver.__init__), 1.16.0.
_RECEIVER_STREAMS: Final = "_RTCRtpReceiver__remote_streams"
_RECEIVER_RTX_SSRC: Final = "_RTCRtpReceiver__rtx_ssrc"
_BYTES_MARK: Final = "_lkproto_received_bytes"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InboundStream:
    """What aiortc counted for one SSRC arriving at a receiver.

    Attributes:
        ssrc: the RTP stream.
        packets_received: packets aiortc accepted (known payload type, receiver enabled).
        packets_lost: expected minus received (RFC 3550 A.3; negative with duplicates).
        jitter: interarrival jitter in RTP timestamp units (RFC 3550 A.8).
        clock_rate: the RTP clock of the stream's codec (jitter / clock_rate = seconds).
        bytes_received: RTP payload bytes of those packets (headers and padding excluded),
            counted since :func:`count_received_bytes` was called on the receiver.
        rtx_of: for a retransmission (RTX) stream, the SSRC it repairs; else None.
    """

    ssrc: int
    packets_received: int
    packets_lost: int
    jitter: int
    clock_rate: int
    bytes_received: int
    rtx_of: int | None


def count_received_bytes(receiver: RTCRtpReceiver) -> None:
    """Start counting the RTP payload bytes ``receiver`` accepts, per SSRC.

    aiortc 1.16.0 counts received packets but not bytes (its ``inbound-rtp`` stats have no
    ``bytesReceived``). ``RTCDtlsTransport`` hands every routed packet to the receiver's private
    coroutine ``_handle_rtp_packet``; it is shadowed on this one instance (lkproto's own receiver)
    by one that counts ``len(payload)`` when aiortc will count the packet (the receiver is
    enabled: the private ``_enabled``) and then awaits the original. Calling it again on the
    same receiver changes nothing.

    Raises:
        LkError: this aiortc lacks ``_handle_rtp_packet``, ``_enabled`` or the stream table.
    """
    handle = getattr(receiver, "_handle_rtp_packet", None)
    if (
        not callable(handle)
        or not isinstance(getattr(receiver, "_enabled", None), bool)
        or not isinstance(getattr(receiver, _RECEIVER_STREAMS, None), dict)
    ):
        raise _internal_gone(
            "aiortc", "RTCRtpReceiver._handle_rtp_packet/_enabled/__remote_streams"
        )
    if isinstance(getattr(receiver, _BYTES_MARK, None), dict):
        return
    counted: dict[int, int] = {}
    setattr(receiver, _BYTES_MARK, counted)

    async def counting(packet: aiortc.rtp.RtpPacket, arrival_time_ms: int) -> None:
        if receiver._enabled:
            counted[packet.ssrc] = counted.get(packet.ssrc, 0) + len(packet.payload)
        await handle(packet, arrival_time_ms=arrival_time_ms)

    setattr(receiver, "_handle_rtp_packet", counting)  # noqa: B010


def sender_enabled(sender: RTCRtpSender) -> bool | None:
    """Whether ``sender`` encodes and sends (False while lkproto mutes it through
    :func:`set_sender_enabled`), or None if this aiortc has no ``_enabled`` flag."""
    enabled = getattr(sender, _SENDER_ENABLED, None)
    return enabled if isinstance(enabled, bool) else None


def inbound_streams(receiver: RTCRtpReceiver) -> list[InboundStream]:
    """aiortc's statistics of every SSRC that reached ``receiver``, RTX streams marked.

    ``RTCRtpReceiver.getStats`` (aiortc 1.16.0) reports all SSRCs under one stats id, so with
    retransmissions the media stream's entry is overwritten by the RTX stream's. The per-SSRC
    ``StreamStatistics`` live in the private ``__remote_streams`` and the RTX -> media SSRC map
    in ``__rtx_ssrc``; both are read, never written.

    Raises:
        LkError: this aiortc lacks those tables.
    """
    streams = getattr(receiver, _RECEIVER_STREAMS, None)
    rtx = getattr(receiver, _RECEIVER_RTX_SSRC, None)
    if not isinstance(streams, dict) or not isinstance(rtx, dict):
        raise _internal_gone("aiortc", "RTCRtpReceiver.__remote_streams/__rtx_ssrc")
    counted = getattr(receiver, _BYTES_MARK, None)
    counted = counted if isinstance(counted, dict) else {}
    return [
        InboundStream(
            ssrc=ssrc,
            packets_received=stream.packets_received,
            packets_lost=stream.packets_lost,
            jitter=stream.jitter,
            clock_rate=int(getattr(stream, "_clockrate", 0)),
            bytes_received=counted.get(ssrc, 0),
            rtx_of=rtx.get(ssrc),
        )
        for ssrc, stream in list(streams.items())
    ]


# -- RTCSctpTransport: the tuned association (issues 15 and 18) ----------------------------------
#
# aiortc 1.16.0's association (aiortc/rtcsctptransport.py) is correct but slow where lkproto
# spends its data path: RTO.min 1 s and RTO.initial 3 s (``SCTP_RTO_MIN``/``SCTP_RTO_INITIAL``)
# with no back-off, one SACK per received packet (``_handle_data``), one DATA chunk per packet
# (``_send_chunk``: no bundling), a scan of the whole sent queue for chunks to retransmit on every
# ``_transmit``, and a flush task per ``RTCDataChannel.send`` (``_data_channel_send``).
# :func:`tune_sctp` replaces those methods on one association of lkproto's own with the versions
# below; the timing decisions are :mod:`lkproto.core.sctp`'s. Everything else (SACK processing,
# congestion control, partial reliability, stream reset, reassembly) stays aiortc's, and the
# chunk bookkeeping the replacements keep is exactly the one aiortc's own code reads.

_SACK_IMMEDIATELY: Final = 0x08  # DATA chunk I bit (RFC 7053 §3): "SACK this packet at once"
_SCTP_HEADER_BYTES: Final = 12  # source port, destination port, verification tag, checksum
_TUNED_MARK: Final = "_lkproto_tuned"
# How many DATA chunks a flush lets wait in the outbound queue before it stops taking messages
# from the channels: enough to bundle several small messages into one packet, few enough that
# bufferedAmount (what is not yet handed to SCTP) still means what the W3C API says.
_FLUSH_OUTBOUND_CHUNKS: Final = 8

# Attributes lkproto adds to aiortc's DataChunk objects of a tuned association (names that
# aiortc does not use): the order of the chunk's latest transmission; whether the T3 timer
# marked it for retransmission; whether its latest transmission was that timer's resend.
_SENT_ORDER: Final = "_lkproto_sent_order"
_TIMER_MARK: Final = "_lkproto_timer_mark"
_TIMER_SENT: Final = "_lkproto_timer_sent"

_log = logging.getLogger("lkproto.sctp")


class _TunedAssociation:
    """The replacement methods of one tuned ``RTCSctpTransport`` and the state they add."""

    def __init__(self, sctp: RTCSctpTransport) -> None:
        self._sctp = sctp
        # The loop aiortc's own timers for this association run on.
        self._loop = sctp._loop if sctp._loop is not None else asyncio.get_running_loop()
        self.rto = sctp_timing.RtoEstimator()
        self.sacks = sctp_timing.SackScheduler()
        self._sack_timer = DeadlineTimer(self._loop, self.sacks.get_timer, self._sack_due)
        # A chunk can be marked for retransmission only by a SACK with gap blocks or by T3
        # expiry; until one of those happens _transmit skips the sent-queue scan.
        self.retransmit_pending = False
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._original_receive_sack = sctp._receive_sack_chunk
        # Every DATA chunk this association queued and aiortc still holds (outbound or sent
        # queue), per stream in TSN order, with the sum of their user data: what
        # sctp_unacknowledged_bytes counts, without walking both queues on every call.
        self._held: dict[int, collections.deque[_sctp.DataChunk]] = {}
        self._held_bytes: dict[int, int] = {}
        # Transmissions counted, stamped on each chunk sent (_SENT_ORDER, _early_retransmit).
        self._sent_order = 0
        self._last_retransmission = 0  # the _SENT_ORDER of the latest retransmission
        # The cumulative TSN and gap blocks of the latest SACK taken (t3_expired).
        self._last_sack: tuple[int, list[tuple[int, int]]] = (0, [])
        # The largest packet and DATA chunk payload this association sends: aiortc's until
        # set_sctp_packet_bytes raises them (see "SCTP packet size" below).
        self.packet_bytes: int = _sctp.SCTP_MAX_PACKET_LENGTH
        self.userdata_bytes: int = _sctp.USERDATA_MAX_LENGTH

    # -- receiving --------------------------------------------------------------------------

    async def handle_data(self, data: bytes) -> None:
        """Replaces ``_handle_data``: aiortc's checks and dispatch, then a scheduled SACK."""
        sctp = self._sctp
        try:
            _, _, verification_tag, chunks = _sctp.parse_packet(data)
        except ValueError:
            return
        if any(isinstance(chunk, _sctp.InitChunk) for chunk in chunks):
            if len(chunks) != 1:
                return  # RFC 4960 §6.10: INIT is never bundled
            expected = 0
        else:
            expected = sctp._local_verification_tag
        if verification_tag != expected:
            return
        # A packet that arrives while a gap is open is acknowledged at once even when it
        # fills the gap (RFC 5681 §4.2 asks the same of TCP): the cumulative ack it advances
        # restarts the peer's T3 timer (RFC 4960 §6.3.2 R3) and ends its Fast Recovery.
        immediate = bool(sctp._sack_misordered)
        for chunk in chunks:
            if isinstance(chunk, _sctp.DataChunk):
                immediate = immediate or bool(chunk.flags & _SACK_IMMEDIATELY)
            elif isinstance(chunk, _sctp.ForwardTsnChunk):
                immediate = True
            await sctp._receive_chunk(chunk)
        if not sctp._sack_needed:
            return
        # RFC 4960 §6.7: a gap (or a duplicate, §6.2) is reported at once.
        immediate = immediate or bool(sctp._sack_misordered) or bool(sctp._sack_duplicates)
        if self.sacks.on_packet(self._loop.time(), immediate=immediate):
            await self._send_packets([self._take_sack()])
        elif self._sack_timer.when is None:
            # A handle still armed is never later than the new deadline (each deadline is
            # "now + delay" from the packet that started the wait); when it fires early,
            # _sack_due re-arms. So a SACK sent does not cancel the timer, and the next
            # packet does not re-arm it: no call_at/cancel pair per two packets (issue 18).
            self._sack_timer.rearm()

    def _take_sack(self) -> _sctp.SackChunk:
        """A SACK for everything received so far; the scheduler's wait ends."""
        sctp = self._sctp
        # Set from the peer's INIT before any DATA can need acknowledging.
        cumulative = 0 if sctp._last_received_tsn is None else sctp._last_received_tsn
        blocks: list[tuple[int, int]] = []
        for tsn in sorted(sctp._sack_misordered, key=lambda t: (t - cumulative) % 0x100000000):
            offset = (tsn - cumulative) % 0x100000000
            if blocks and blocks[-1][1] + 1 == offset:
                blocks[-1] = (blocks[-1][0], offset)
            else:
                blocks.append((offset, offset))
        sack = _sctp.SackChunk()
        sack.cumulative_tsn = cumulative
        sack.advertised_rwnd = max(0, sctp._advertised_rwnd)
        sack.duplicates = list(sctp._sack_duplicates)
        sack.gaps = blocks
        sctp._sack_duplicates.clear()
        sctp._sack_needed = False
        self.sacks.on_sack_sent()  # the armed timer, if any, finds nothing due (handle_data)
        return sack

    def _sack_due(self, now: float) -> None:
        if self._sctp._association_state == RTCSctpTransport.State.CLOSED:
            self.sacks.on_sack_sent()  # nothing more goes out; drop the wait
        elif self.sacks.handle_timer(now):
            self._spawn(self._send_delayed_sack())
        else:
            self._sack_timer.rearm()  # armed for an earlier wait: follow the current one

    async def _send_delayed_sack(self) -> None:
        sctp = self._sctp
        if not sctp._sack_needed or sctp._association_state != RTCSctpTransport.State.ESTABLISHED:
            self.sacks.on_sack_sent()
            return
        await self._send_packets([self._take_sack()])

    async def receive_sack_chunk(self, chunk: _sctp.SackChunk) -> None:
        """Wraps ``_receive_sack_chunk``: the round-trip sample is ours (:meth:`_rtt_sample`),
        gap blocks may mark chunks for retransmission, then Early Retransmit."""
        sctp = self._sctp
        if chunk.gaps:
            self.retransmit_pending = True
        # aiortc ignores a SACK whose cumulative TSN is behind the last one (reordered or old).
        if not _tsn_after(sctp._last_sacked_tsn, chunk.cumulative_tsn):
            self._last_sack = (chunk.cumulative_tsn, list(chunk.gaps))
            sample = self._rtt_sample(chunk)
            if sample is not None:
                sctp._rto = self.rto.on_rtt(sample)
                sctp._srtt = self.rto.srtt
        await self._original_receive_sack(chunk)
        for stream_id in self._held:
            self._release(stream_id)
        if self._early_retransmit():
            await sctp._transmit()

    def _rtt_sample(self, sack: _sctp.SackChunk) -> float | None:
        """The round trip of the newest chunk ``sack`` acknowledges for the first time, if
        that chunk was sent only once (Karn, RFC 4960 §6.3.1 C5); else ``None``.

        aiortc samples the first chunk the cumulative ack passes (``_receive_sack_chunk``),
        even one a gap block acknowledged long before: under loss that measures how long a
        hole took to fill, not a round trip, and the RTO grew with it. The newest chunk
        acknowledged is the one whose arrival made the peer send this SACK (it acknowledges
        at once on a gap, RFC 4960 §6.7), unless that SACK answers a retransmission sent
        after it: when the SACKs for a chunk were lost, the next SACK comes only after the
        T3 timer's resend, and its "round trip" is the timer's wait (a 5-9 s RTO in the
        20 % soak-20-short run; pion's RTO reaches 25-40 s the same way). So the chunk must
        have been sent after the latest retransmission, the ambiguity Karn's rule removes.
        """
        cumulative = sack.cumulative_tsn
        last_offset = sack.gaps[-1][1] if sack.gaps else 0
        newest: _sctp.DataChunk | None = None
        for chunk in self._sctp._sent_queue:
            offset = (chunk.tsn - cumulative) % 0x100000000
            if 0 < offset < 0x80000000:  # after the cumulative TSN: a gap block's, or not yet
                if offset > last_offset:
                    break
                if not _in_gap_blocks(chunk.tsn, cumulative, sack.gaps):
                    continue
            if not chunk._acked and chunk._sent_count == 1 and chunk._sent_time is not None:
                newest = chunk
        if (
            newest is None
            or newest._sent_time is None
            or getattr(newest, _SENT_ORDER, 0) < self._last_retransmission
        ):
            return None
        return time.time() - newest._sent_time  # aiortc's _sent_time clock (transmit)

    def _early_retransmit(self) -> bool:
        """Mark chunks for fast retransmission by Early Retransmit (RFC 5827 §3.2).

        With fewer than four chunks outstanding (sent, not cumulatively acknowledged, not
        awaiting retransmission) and no new data able to go, RFC 4960's three miss
        indications never come; a chunk is then taken as lost once
        :func:`lkproto.core.sctp.fast_retransmit_misses` chunks sent *after* its latest
        transmission have been acknowledged (RFC 5827's SACK-based form). Ordering by
        transmission rather than by TSN lets a chunk the T3 timer resent count as lost
        when later data got through, where aiortc's TSN-ordered strikes would either miss
        it or resend it spuriously. A chunk that was fast-retransmitted is not eligible
        again (RFC 4960 §7.2.4 step 5); its T3 timer still covers it. Outside Fast
        Recovery only, entering it as aiortc's own fast retransmit does (§7.2.4 step 2).

        Returns:
            Whether a chunk was marked (then transmit).
        """
        sctp = self._sctp
        if sctp._fast_recovery_exit is not None:
            return False
        outstanding: list[_sctp.DataChunk] = []
        for chunk in sctp._sent_queue:
            if chunk._retransmit or chunk._abandoned:
                continue  # not outstanding (RFC 9260 §1.3)
            outstanding.append(chunk)
            if len(outstanding) > sctp_timing.FAST_RETRANSMIT_MISSES:
                return False  # RFC 4960's rule, aiortc's own code
        threshold = sctp_timing.fast_retransmit_misses(len(outstanding))
        # RFC 5827 §3.2 (b): only when the window lets nothing new go (after the transmit
        # aiortc's SACK processing ends with, what is still queued is held by cwnd).
        if sctp._flight_size < sctp._cwnd and (sctp._outbound_queue or self.retransmit_pending):
            return False
        acked = [getattr(c, _SENT_ORDER, 0) for c in outstanding if c._acked]
        if not acked:
            return False
        marked = False
        for chunk in outstanding:
            if chunk._acked or not (chunk._sent_count == 1 or getattr(chunk, _TIMER_SENT, False)):
                continue
            sent = getattr(chunk, _SENT_ORDER, 0)
            if sum(1 for order in acked if order > sent) < threshold:
                continue
            chunk._misses = 0
            setattr(chunk, _TIMER_MARK, False)  # a fast retransmission: not eligible again
            if not sctp._maybe_abandon(chunk):
                chunk._retransmit = True
            sctp._flight_size_decrease(chunk)
            marked = True
        if not marked:
            return False
        # RFC 4960 §7.2.3 / §7.2.4 step 2, as aiortc's own fast retransmit does.
        sctp._ssthresh = max(sctp._cwnd // 2, 4 * _sctp.USERDATA_MAX_LENGTH)
        sctp._cwnd = sctp._ssthresh
        sctp._partial_bytes_acked = 0
        sctp._fast_recovery_exit = sctp._sent_queue[-1].tsn
        sctp._fast_recovery_transmit = True
        self.retransmit_pending = True
        return True

    # -- what the peer holds ----------------------------------------------------------------

    def _release(self, stream_id: int) -> int:
        """Forget the chunks of ``stream_id`` aiortc no longer holds; the bytes still held."""
        sctp = self._sctp
        # aiortc drops a chunk from its sent queue only when the peer's cumulative TSN ack
        # covers it (``_receive_sack_chunk``) or when, abandoned, the advanced peer ack point
        # passes it (RFC 3758 §3.5, ``_update_advanced_peer_ack_point``); both walk the queue
        # from its head, so every TSN up to the later of the two points is gone.
        gone = sctp._last_sacked_tsn
        if _tsn_after(sctp._advanced_peer_ack_tsn, gone):
            gone = sctp._advanced_peer_ack_tsn
        held = self._held[stream_id]
        total = self._held_bytes[stream_id]
        while held and not _tsn_after(held[0].tsn, gone):
            total -= len(held.popleft().user_data)
        self._held_bytes[stream_id] = total
        return total

    def unacknowledged_bytes(self, stream_id: int) -> int:
        """:func:`sctp_unacknowledged_bytes` for this association."""
        if stream_id not in self._held:
            return 0
        total = self._release(stream_id)
        # Messages at the head whose every remaining fragment a gap block acknowledged were
        # received complete, hence delivered; counting starts at the first chunk still missing.
        delivered = pending = 0
        for chunk in self._held[stream_id]:
            if not chunk._acked:
                break
            pending += len(chunk.user_data)
            if chunk.flags & _LAST_FRAG:
                delivered += pending
                pending = 0
        return total - delivered

    # -- timers -----------------------------------------------------------------------------

    def update_rto(self, rtt: float) -> None:
        """Replaces ``_update_rto`` with nothing: :meth:`receive_sack_chunk` takes the sample
        (:meth:`_rtt_sample`) and feeds the estimator of :mod:`lkproto.core.sctp`."""

    def t3_expired(self) -> None:
        """Replaces ``_t3_expired`` (RFC 4960 §6.3.3): the RTO backs off (E2), the window
        drops to one MTU (E1, §7.2.3), and the outstanding chunks are marked (E3).

        aiortc marks every chunk of the sent queue, gap-acknowledged ones too, so after each
        expiry the one-MTU window went first to data the peer already had (159 of 718
        retransmissions in benchmarks/faults.py soak-20-short). A gap-acknowledged chunk is
        not outstanding (RFC 9260 §1.3: "sent ... but not yet acknowledged") and is not
        marked, as long as the latest SACK still reports it (and one marked by an earlier
        expiry or a fast retransmission, then acknowledged before it was resent, is unmarked):
        a chunk the peer reneged on (RFC 4960 §6.2: it may drop gap-acknowledged data) is
        outstanding again and marked, so nothing waits for an acknowledgement that will not
        come. Lifetimes and retransmission limits are checked on every chunk, as aiortc does.
        """
        sctp = self._sctp
        sctp._t3_handle = None
        self.retransmit_pending = True
        sctp._rto = self.rto.on_timeout()
        cumulative, gaps = self._last_sack
        for chunk in sctp._sent_queue:
            if sctp._maybe_abandon(chunk):
                pass
            elif chunk._acked and _in_gap_blocks(chunk.tsn, cumulative, gaps):
                # Marked earlier (by a previous expiry or a fast retransmission) and acknowledged
                # in a gap block since, before it was resent: the peer has it, nothing to resend.
                chunk._retransmit = False
            else:
                chunk._acked = False  # reneged on, if it was acknowledged before
                chunk._retransmit = True
                setattr(chunk, _TIMER_MARK, True)  # may be fast-retransmitted later
            sctp._flight_size_decrease(chunk)
        sctp._update_advanced_peer_ack_point()
        sctp._fast_recovery_exit = None
        sctp._partial_bytes_acked = 0
        sctp._ssthresh = max(sctp._cwnd // 2, 4 * _sctp.USERDATA_MAX_LENGTH)
        sctp._cwnd = _sctp.USERDATA_MAX_LENGTH
        self._spawn(sctp._transmit())

    # -- sending ----------------------------------------------------------------------------

    def data_channel_send(self, channel: RTCDataChannel, data: bytes | str) -> None:
        """Replaces ``_data_channel_send``: queue the message; one flush per loop turn."""
        if data == "":
            protocol, user_data = _sctp.WEBRTC_STRING_EMPTY, b"\x00"
        elif isinstance(data, str):
            protocol, user_data = _sctp.WEBRTC_STRING, data.encode("utf8")
        elif data == b"":
            protocol, user_data = _sctp.WEBRTC_BINARY_EMPTY, b"\x00"
        else:
            protocol, user_data = _sctp.WEBRTC_BINARY, data
        limit = self._sctp._remote_max_message_size
        if limit and len(user_data) > limit:  # 0 means no limit (RFC 8841 §6)
            raise ValueError(
                f"Cannot send message of {len(user_data)} bytes, the remote party "
                f"only supports messages up to {limit} bytes"
            )
        channel._addBufferedAmount(len(user_data))
        self._sctp._data_channel_queue.append((channel, protocol, user_data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._scheduled_flush())

    async def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        await self._sctp._data_channel_flush()

    async def data_channel_flush(self) -> None:
        """Replaces ``_data_channel_flush``: queue several messages, then transmit once."""
        sctp = self._sctp
        if sctp._association_state != RTCSctpTransport.State.ESTABLISHED:
            return
        queue = sctp._data_channel_queue
        while queue and len(sctp._outbound_queue) < _FLUSH_OUTBOUND_CHUNKS:
            channel, protocol, user_data = queue.popleft()
            stream_id = channel.id
            if stream_id is None:
                # RFC 8832 §6: DTLS client even ids, server odd; aiortc keeps the counter.
                stream_id = 0 if sctp._data_channel_id is None else sctp._data_channel_id
                while stream_id in sctp._data_channels:
                    stream_id += 2
                sctp._data_channels[stream_id] = channel
                channel._setId(stream_id)
            if protocol == _sctp.WEBRTC_DCEP:
                self._enqueue(stream_id, protocol, user_data, None, None, ordered=True)
            else:
                lifetime_ms = channel.maxPacketLifeTime
                expiry = time.time() + lifetime_ms / 1000 if lifetime_ms else None
                self._enqueue(
                    stream_id,
                    protocol,
                    user_data,
                    expiry,
                    channel.maxRetransmits,
                    ordered=channel.ordered,
                )
                channel._addBufferedAmount(-len(user_data))
        await sctp._transmit()
        await sctp._transmit_reconfig()

    def _enqueue(
        self,
        stream_id: int,
        protocol: int,
        user_data: bytes,
        expiry: float | None,
        max_retransmits: int | None,
        *,
        ordered: bool,
    ) -> None:
        """Fragment one message into DATA chunks on the outbound queue (aiortc's ``_send``
        without its immediate ``_transmit``), with the bookkeeping aiortc's code reads."""
        sctp = self._sctp
        seq = sctp._outbound_stream_seq.get(stream_id, 0) if ordered else 0
        held = self._held.setdefault(stream_id, collections.deque())
        held_bytes = self._held_bytes.get(stream_id, 0)
        step = self.userdata_bytes
        last = max(0, (len(user_data) - 1) // step)
        for index in range(last + 1):
            chunk = _sctp.DataChunk()
            chunk.flags = (
                (0 if ordered else _UNORDERED)
                | (_FIRST_FRAG if index == 0 else 0)
                | (_LAST_FRAG if index == last else 0)
            )
            chunk.tsn = sctp._local_tsn
            chunk.stream_id = stream_id
            chunk.stream_seq = seq
            chunk.protocol = protocol
            chunk.user_data = user_data[index * step : (index + 1) * step]
            chunk._abandoned = False
            chunk._acked = False
            chunk._book_size = len(chunk.user_data)
            chunk._expiry = expiry
            chunk._in_flight = False
            chunk._max_retransmits = max_retransmits
            chunk._misses = 0
            chunk._retransmit = False
            chunk._sent_count = 0
            chunk._sent_time = None
            sctp._local_tsn = (sctp._local_tsn + 1) % 0x100000000
            sctp._outbound_queue.append(chunk)
            held.append(chunk)
            held_bytes += len(chunk.user_data)
        self._held_bytes[stream_id] = held_bytes
        if ordered:
            sctp._outbound_stream_seq[stream_id] = (seq + 1) % 0x10000

    async def transmit(self) -> None:
        """Replaces ``_transmit``: aiortc's congestion and burst rules (RFC 4960 §6.1, §7.2),
        chunks bundled into packets, the retransmit scan only when something is marked, a
        pending SACK bundled ahead of the DATA, and the I bit on the chunk that empties the
        queue so the peer acknowledges the burst's tail at once."""
        sctp = self._sctp
        chunks: list[_sctp.Chunk] = []
        if sctp._forward_tsn_chunk is not None:
            chunks.append(sctp._forward_tsn_chunk)
            sctp._forward_tsn_chunk = None
            if not sctp._t3_handle:
                sctp._t3_start()
        burst_chunks = 2 if sctp._fast_recovery_exit is not None else 4
        cwnd = min(sctp._flight_size + burst_chunks * self.userdata_bytes, sctp._cwnd)

        if self.retransmit_pending:
            stopped = False
            for position, chunk in enumerate(sctp._sent_queue):
                if not chunk._retransmit:
                    continue
                if sctp._fast_recovery_transmit:
                    sctp._fast_recovery_transmit = False  # RFC 4960 §7.2.4 step 3
                elif sctp._flight_size >= cwnd:
                    stopped = True
                    break
                sctp._flight_size_increase(chunk)
                chunk._misses = 0
                chunk._retransmit = False
                chunk._sent_count += 1
                self._sent_order += 1
                self._last_retransmission = self._sent_order
                setattr(chunk, _SENT_ORDER, self._sent_order)
                setattr(chunk, _TIMER_SENT, getattr(chunk, _TIMER_MARK, False))
                setattr(chunk, _TIMER_MARK, False)
                chunks.append(chunk)
                if position == 0:
                    sctp._t3_restart()  # §6.3.2 R3: the earliest outstanding TSN went again
            if not stopped:
                self.retransmit_pending = False

        outbound = sctp._outbound_queue
        newest: _sctp.DataChunk | None = None
        if not (self.retransmit_pending and sctp._flight_size >= cwnd):
            now = time.time()  # aiortc's _receive_sack_chunk measures RTT on this clock
            while outbound and sctp._flight_size < cwnd:
                newest = outbound.popleft()
                sctp._sent_queue.append(newest)
                sctp._flight_size_increase(newest)
                newest._sent_count += 1
                newest._sent_time = now
                self._sent_order += 1
                setattr(newest, _SENT_ORDER, self._sent_order)
                chunks.append(newest)
                if not sctp._t3_handle:
                    sctp._t3_start()
        if newest is not None and not outbound and not sctp._data_channel_queue:
            newest.flags |= _SACK_IMMEDIATELY
        if chunks and sctp._sack_needed:
            chunks.insert(0, self._take_sack())  # RFC 4960 §6.5: SACK may lead a bundle
        if chunks:
            try:
                await self._send_packets(chunks)
            except ConnectionError as exc:
                # DTLS closed under the association. aiortc's T3 expiry starts this in a task
                # nobody awaits (``asyncio.ensure_future(self._transmit())``), so raising would
                # only log "Task exception was never retrieved" (81 times in one 100-participant
                # load run); the closing is reported by the transports' state.
                _log.debug("SCTP send after the transport closed: %r", exc)

    async def _send_packets(self, chunks: Sequence[_sctp.Chunk]) -> None:
        """Bundle ``chunks`` in order into as few packets of at most :attr:`packet_bytes` as
        they fit (RFC 4960 §6.10) and hand each to DTLS."""
        sctp = self._sctp
        header = struct.pack(
            "!HHL", sctp._local_port, sctp._remote_port, sctp._remote_verification_tag
        )
        room = self.packet_bytes - _SCTP_HEADER_BYTES
        dtls = sctp.transport
        body: list[bytes] = []
        size = 0
        for chunk in chunks:
            data = bytes(chunk)
            if body and size + len(data) > room:
                await dtls._send_data(_packet(header, body))
                body, size = [], 0
            body.append(data)
            size += len(data)
        if body:
            await dtls._send_data(_packet(header, body))

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # aiortc's own flush tasks end the same way when DTLS closed under them; the
            # association's closing is reported by the transports' state, not here.
            _log.debug("SCTP send after the transport closed: %r", exc)


def _in_gap_blocks(tsn: int, cumulative: int, gaps: Sequence[tuple[int, int]]) -> bool:
    """Whether a SACK with ``cumulative`` and gap blocks ``gaps`` (offsets from it, RFC 4960
    §3.3.4) acknowledges ``tsn`` in a gap block."""
    offset = (tsn - cumulative) % 0x100000000
    return 0 < offset < 0x80000000 and any(start <= offset <= end for start, end in gaps)


def _packet(header: bytes, body: list[bytes]) -> bytes:
    """An SCTP packet: common header with the CRC32c of the whole packet (RFC 4960 §6.8)."""
    chunks = b"".join(body)
    checksum = google_crc32c.value(header + b"\x00\x00\x00\x00" + chunks)
    return header + struct.pack("<L", checksum) + chunks


# -- RTCDtlsTransport under a tuned association: the receive loop without a write per datagram --
#
# aiortc 1.16.0's ``RTCDtlsTransport._recv_next`` runs once per received datagram; after handing
# a DTLS datagram to OpenSSL it always calls ``_write_ssl``, a ``bio_read`` that for application
# data finds nothing and returns through pyOpenSSL's exception path (WantReadError). That empty
# read is ~15 % of the Python-level work per received SCTP packet in the issue 18 profile. A
# datagram holding only application-data records never makes OpenSSL write (DTLS 1.2 has no
# post-handshake messages in application data; alerts and handshake messages have their own
# content types, RFC 6347 §4.1), so the replacement skips the read for those and otherwise does
# exactly what aiortc does, SRTP included. Until aiortc's own handshake bookkeeping says the
# handshake is over (its ``__handshake_done``: no DTLS retransmission timer left), aiortc's
# method runs unchanged.

_DTLS_APPLICATION_DATA: Final = 23  # ContentType application_data (RFC 5246 §6.2.1)
_DTLS_HEADER_BYTES: Final = 13  # type, version, epoch, sequence number, length (RFC 6347 §4.1)
_DTLS_LEAN_MARK: Final = "_lkproto_lean_receive"
# Name-mangled private attributes of aiortc/rtcdtlstransport.py (RTCDtlsTransport.__init__).
_DTLS_HANDSHAKE_DONE: Final = "_RTCDtlsTransport__handshake_done"
_DTLS_RX_BYTES: Final = "_RTCDtlsTransport__rx_bytes"
_DTLS_RX_PACKETS: Final = "_RTCDtlsTransport__rx_packets"
_DTLS_INTERNALS: Final = (
    "_recv_next",
    "_write_ssl",
    "_handle_rtcp_data",
    "_handle_rtp_data",
    "_data_receiver",
    "_rx_srtp",
    "_ssl",
    _DTLS_HANDSHAKE_DONE,
    _DTLS_RX_BYTES,
    _DTLS_RX_PACKETS,
)


def _application_data_only(datagram: bytes) -> bool:
    """Whether ``datagram`` is whole DTLS records that are all application data."""
    offset = 0
    size = len(datagram)
    while offset < size:
        if datagram[offset] != _DTLS_APPLICATION_DATA or offset + _DTLS_HEADER_BYTES > size:
            return False
        offset += _DTLS_HEADER_BYTES + int.from_bytes(datagram[offset + 11 : offset + 13])
    return offset == size


def _lean_dtls_receive(dtls: aiortc.RTCDtlsTransport) -> None:
    """Replace ``_recv_next`` on ``dtls`` (see the section comment above)."""
    if getattr(dtls, _DTLS_LEAN_MARK, False):
        return
    if any(not hasattr(dtls, name) for name in _DTLS_INTERNALS):
        raise _internal_gone("aiortc", "RTCDtlsTransport receive internals (tune_sctp)")
    setattr(dtls, _DTLS_LEAN_MARK, True)
    original = dtls._recv_next

    async def recv_next() -> None:
        if not getattr(dtls, _DTLS_HANDSHAKE_DONE):
            await original()
            return
        data = await dtls.transport._recv()
        setattr(dtls, _DTLS_RX_BYTES, getattr(dtls, _DTLS_RX_BYTES) + len(data))
        setattr(dtls, _DTLS_RX_PACKETS, getattr(dtls, _DTLS_RX_PACKETS) + 1)
        first_byte = data[0]
        if 19 < first_byte < 64:  # DTLS (RFC 7983 §7 demultiplexing, as aiortc)
            ssl = dtls._ssl
            if ssl is None:  # set in start(), before the handshake
                raise ConnectionError
            ssl.bio_write(data)
            plain: bytes | None
            try:
                plain = ssl.recv(1500)
            except SSL.ZeroReturnError:
                plain = None
            except SSL.Error:
                plain = b""
            if plain is None or not _application_data_only(data):
                await dtls._write_ssl()
            if plain is None:
                _log.debug("DTLS shutdown by the remote party")
                raise ConnectionError
            receiver = dtls._data_receiver
            if plain and receiver is not None:
                await receiver._handle_data(plain)
        elif 127 < first_byte < 192 and dtls._rx_srtp:  # SRTP / SRTCP
            arrival_time_ms = aiortc.clock.current_ms()
            try:
                if aiortc.rtp.is_rtcp(data):
                    await dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data))
                else:
                    await dtls._handle_rtp_data(
                        dtls._rx_srtp.unprotect(data), arrival_time_ms=arrival_time_ms
                    )
            except pylibsrtp.Error as exc:
                _log.debug("SRTP unprotect failed: %s", exc)

    setattr(dtls, "_recv_next", recv_next)  # noqa: B010


_TUNED_INTERNALS: Final = (
    "_loop",
    "_handle_data",
    "_receive_chunk",
    "_receive_sack_chunk",
    "_update_rto",
    "_t3_expired",
    "_t3_start",
    "_t3_restart",
    "_transmit",
    "_transmit_reconfig",
    "_data_channel_send",
    "_data_channel_flush",
    "_flight_size_increase",
    "_flight_size_decrease",
    "_maybe_abandon",
    "_update_advanced_peer_ack_point",
    "_cwnd",  # _ssthresh too, but aiortc sets it only from the peer's INIT
    "_partial_bytes_acked",
    "_flight_size",
    "_fast_recovery_exit",
    "_fast_recovery_transmit",
    "_t3_handle",
    "_sent_queue",
    "_outbound_queue",
    "_data_channel_queue",
    "_sack_misordered",
    "_sack_duplicates",
    "_outbound_stream_seq",
    "_last_sacked_tsn",
    "_advanced_peer_ack_tsn",
)
_TUNED_MODULE_NAMES: Final = (
    "parse_packet",
    "DataChunk",
    "SackChunk",
    "InitChunk",
    "ForwardTsnChunk",
    "USERDATA_MAX_LENGTH",
    "SCTP_MAX_PACKET_LENGTH",
    "WEBRTC_DCEP",
    "WEBRTC_STRING",
    "WEBRTC_STRING_EMPTY",
    "WEBRTC_BINARY",
    "WEBRTC_BINARY_EMPTY",
)


def tune_sctp(transport: RTCSctpTransport) -> None:
    """Make the SCTP association ``transport`` (one of lkproto's own) use lkproto's hot path.

    Replaces, on this instance only, these private methods of aiortc 1.16.0's
    ``RTCSctpTransport`` (``aiortc/rtcsctptransport.py``), for which no public API exists:
    ``_handle_data`` (SACK for every second packet or after :data:`lkproto.core.sctp.SACK_DELAY_S`,
    at once on a gap, duplicate or I bit), ``_transmit`` (DATA bundling, SACK bundling, no
    retransmit scan unless a chunk can be marked, I bit on a burst's last chunk),
    ``_data_channel_send``/``_data_channel_flush`` (one flush per loop turn instead of a task per
    message), ``_update_rto`` and ``_t3_expired`` (:class:`lkproto.core.sctp.RtoEstimator`:
    RTO initial 0.5 s, floor 0.25 s, back-off capped at 3 s; an expiry marks only what the
    latest SACK does not acknowledge), and wraps ``_receive_sack_chunk`` (the RTT sample is
    taken there; Early Retransmit, RFC 5827, below four outstanding chunks). If the
    association runs on an ``RTCDtlsTransport``, that transport's ``_recv_next`` is replaced
    too, once its handshake is over, by one that does not ask OpenSSL for output after a
    datagram of application data only (see :func:`_lean_dtls_receive`). The association's wire
    behaviour stays RFC 4960: reliability, ordering and congestion control are aiortc's (the
    expiry and Early Retransmit adjust cwnd by RFC 4960 §7.2.3 as aiortc does). Other
    associations in the process keep aiortc's methods. Call it before the association starts
    (before ``setLocalDescription``); later calls change nothing.

    Raises:
        LkError: the internals above are gone.
    """
    if any(not hasattr(transport, name) for name in _TUNED_INTERNALS) or any(
        not hasattr(_sctp, name) for name in _TUNED_MODULE_NAMES
    ):
        raise _internal_gone("aiortc", "RTCSctpTransport association internals (tune_sctp)")
    if getattr(transport, _TUNED_MARK, None) is not None:
        return
    tuned = _TunedAssociation(transport)
    setattr(transport, _TUNED_MARK, tuned)
    transport._rto = tuned.rto.rto
    setattr(transport, "_handle_data", tuned.handle_data)  # noqa: B010
    setattr(transport, "_receive_sack_chunk", tuned.receive_sack_chunk)  # noqa: B010
    setattr(transport, "_update_rto", tuned.update_rto)  # noqa: B010
    setattr(transport, "_t3_expired", tuned.t3_expired)  # noqa: B010
    setattr(transport, "_transmit", tuned.transmit)  # noqa: B010
    setattr(transport, "_data_channel_send", tuned.data_channel_send)  # noqa: B010
    setattr(transport, "_data_channel_flush", tuned.data_channel_flush)  # noqa: B010
    if isinstance(transport.transport, aiortc.RTCDtlsTransport):
        _lean_dtls_receive(transport.transport)


# -- SCTP packet size: larger DATA packets where the path is known (issue 18, third round) -----
#
# aiortc 1.16.0 sends SCTP packets of at most ``SCTP_MAX_PACKET_LENGTH`` = 1,189 bytes, 1,160 of
# user data per DATA chunk (``USERDATA_MAX_LENGTH``): with IP, UDP and DTLS headers that fits the
# IPv6 minimum MTU of 1,280 bytes on any path, as libwebrtc's and livekit-client's ~1,200-byte
# packets do. Each packet costs a DTLS record, a ``sendto`` and the server's work, so a path that
# carries larger datagrams could take fewer packets. What the receiving side takes, for
# livekit-server v1.13.5 (its go.mod: pion/webrtc v4.2.17, pion/dtls v3.1.5, pion/sctp v1.11.0;
# its ``pkg/rtc/transport.go`` sets no receive MTU):
#
# - pion/webrtc reads each ICE datagram into a buffer of ``SettingEngine`` receive MTU bytes
#   (``icetransport.go``: the mux ``BufferSize``; ``constants.go`` ``receiveMTU``, 1,500 since
#   v4.0.1 and 1,460 before, i.e. in livekit-server before v1.9, which used pion/webrtc v3). A
#   larger datagram fails that read with ``io.ErrShortBuffer``, which ``internal/mux``'s
#   ``readLoop`` logs and skips: the packet is lost, and so is every retransmission of it.
# - pion/dtls reads records into 8,192 bytes (``conn.go`` ``inboundBufferSize``), pion/sctp
#   packets into 8,192 bytes (``association.go`` ``receiveMTU``): not the limit.
#
# Measured through a real v1.13.5 server: SCTP packets of 1,189 / 1,392 / 1,432 / 1,460 bytes
# arrive (1,460 + 37 bytes of AES-GCM record = a 1,497-byte datagram), 1,464 / 1,500 / 4,000 /
# 8,000 bytes never do and the server logs "mux: failed to read from packetio.Buffer short
# buffer". So the largest datagram every livekit-server reads is 1,460 bytes. The worst DTLS 1.2
# record overhead of aiortc's cipher list (``RTCDtlsTransport``'s context) is AES-CBC with
# HMAC-SHA1: 13 header + 16 explicit IV + 20 MAC + up to 16 padding = 65 bytes (AES-GCM 37,
# ChaCha20-Poly1305 29). Hence at most 1,460 - 65 = 1,395 bytes, rounded down to whole 4-byte
# words as SCTP chunks are padded: 1,392. aiortc's own ``_write_ssl`` reads each outgoing record
# from OpenSSL with ``bio_read(1500)``, which the same bound respects.
#
# A larger packet is sent only where the path is known to carry it (:func:`sctp_packet_bytes`):
# on a loopback pair (the server on this host: the path is the loopback interface), or when the
# caller states the path's MTU; never over a TURN relay (its framing adds to the datagram).

SCTP_DEFAULT_PACKET_BYTES: Final = 1189
"""aiortc 1.16.0's ``SCTP_MAX_PACKET_LENGTH``: fits the IPv6 minimum MTU on any path."""
SERVER_DATAGRAM_MAX_BYTES: Final = 1460
"""The largest UDP payload every livekit-server reads (pion/webrtc v3 ``receiveMTU``; v4: 1,500)."""
DTLS_RECORD_OVERHEAD_MAX_BYTES: Final = 65
"""Worst DTLS 1.2 record overhead of aiortc's ciphers (AES-CBC-SHA1: header, IV, MAC, padding)."""
SCTP_MAX_PACKET_BYTES: Final = (SERVER_DATAGRAM_MAX_BYTES - DTLS_RECORD_OVERHEAD_MAX_BYTES) // 4 * 4
"""1,392: the largest SCTP packet :func:`set_sctp_packet_bytes` accepts."""
IPV6_MIN_MTU: Final = 1280  # RFC 8200 §5: every IPv6 link carries 1,280-byte packets
LOOPBACK_PATH_MTU: Final = 65536  # Linux ``lo``; larger than any packet chosen here anyway
_IPV4_UDP_HEADERS_BYTES: Final = 20 + 8  # RFC 791 header without options, RFC 768
_IPV6_UDP_HEADERS_BYTES: Final = 40 + 8  # RFC 8200 fixed header, RFC 768
_SCTP_DATA_CHUNK_HEADER_BYTES: Final = 16  # RFC 4960 §3.3.1


def sctp_packet_bytes(path_mtu: int | None, *, remote_address: str, relayed: bool) -> int:
    """The SCTP packet size for a connection whose nominated pair reaches ``remote_address``.

    Args:
        path_mtu: the IP MTU the caller knows the path to carry, or None if unknown.
        remote_address: the remote candidate's IP address (the server's).
        relayed: whether our candidate is a TURN relay candidate.

    Returns:
        :data:`SCTP_DEFAULT_PACKET_BYTES` when the path is unknown or relayed; otherwise the
        largest packet whose datagram fits the path (a loopback address: the loopback
        interface's MTU), at most :data:`SCTP_MAX_PACKET_BYTES`.
    """
    try:
        address = ipaddress.ip_address(remote_address)
    except ValueError:  # a host name (mDNS candidate): nothing known about its path
        return SCTP_DEFAULT_PACKET_BYTES
    if relayed:
        return SCTP_DEFAULT_PACKET_BYTES
    if address.is_loopback:
        path_mtu = LOOPBACK_PATH_MTU
    elif path_mtu is None:
        return SCTP_DEFAULT_PACKET_BYTES
    headers = _IPV6_UDP_HEADERS_BYTES if address.version == 6 else _IPV4_UDP_HEADERS_BYTES
    fits = (path_mtu - headers - DTLS_RECORD_OVERHEAD_MAX_BYTES) // 4 * 4
    return max(SCTP_DEFAULT_PACKET_BYTES, min(SCTP_MAX_PACKET_BYTES, fits))


def set_sctp_packet_bytes(transport: RTCSctpTransport, packet_bytes: int) -> None:
    """Send SCTP packets of up to ``packet_bytes`` on ``transport`` (a tuned association).

    Messages cut into DATA chunks from now on (a tuned association cuts a message when its
    flush takes it from the channel queue) carry up to ``packet_bytes`` - 28 bytes of user data
    per chunk (rounded down to 4-byte words); chunks already cut keep their size, and every
    packet still holds whole chunks. Receiving is unchanged (aiortc reads any datagram).
    Congestion control stays aiortc's: its window still grows in steps of its own 1,160-byte
    chunk, which only makes it slower to open.

    Args:
        transport: an association :func:`tune_sctp` tuned.
        packet_bytes: from :data:`SCTP_DEFAULT_PACKET_BYTES` to :data:`SCTP_MAX_PACKET_BYTES`.

    Raises:
        LocalProtocolError: ``transport`` is not tuned, or ``packet_bytes`` is out of range.
    """
    tuned = getattr(transport, _TUNED_MARK, None)
    if not isinstance(tuned, _TunedAssociation):
        raise LocalProtocolError("set_sctp_packet_bytes needs an association tune_sctp tuned")
    if not SCTP_DEFAULT_PACKET_BYTES <= packet_bytes <= SCTP_MAX_PACKET_BYTES:
        raise LocalProtocolError(
            f"SCTP packet size {packet_bytes} outside {SCTP_DEFAULT_PACKET_BYTES}.."
            f"{SCTP_MAX_PACKET_BYTES} bytes"
        )
    tuned.packet_bytes = packet_bytes
    tuned.userdata_bytes = (
        (packet_bytes - _SCTP_HEADER_BYTES - _SCTP_DATA_CHUNK_HEADER_BYTES) // 4 * 4
    )


# The datagrams' other end: the socket receive buffer. aioice binds its UDP sockets with the
# kernel's default buffer (``net.core.rmem_default``, 208 KiB here: ~100 datagrams of 1.2 kB
# once the kernel counts its overhead). livekit-server's pion sends a subscriber's data in bursts
# of up to its congestion window, and a Python receiver busy for a few milliseconds overflows
# that buffer: in the issue 18 byte-stream benchmark (10 MiB, lkproto->lkproto through the
# server) the receiving socket dropped 112-283 datagrams per run (``/proc/net/udp`` drops,
# ``RcvbufErrors``), each one a gap the server repairs by fast retransmission while halving its
# congestion window. A 4 MiB buffer (the kernel caps it at ``net.core.rmem_max``) dropped none.

UDP_RECEIVE_BUFFER_BYTES: Final = 4 << 20
"""What :func:`enlarge_receive_buffers` asks for; the kernel grants at most ``rmem_max``."""


def enlarge_receive_buffers(
    transport: RTCIceTransport, size: int = UDP_RECEIVE_BUFFER_BYTES
) -> int:
    """Ask for a ``size``-byte receive buffer on each UDP socket ``transport``'s ICE bound.

    aioice 0.13's ``Connection`` keeps one protocol per gathered socket in the private
    ``_protocols``; each socket is reached through asyncio's public
    ``transport.get_extra_info("socket")``. Sockets bound later (an ICE restart gathers anew)
    need another call.

    Returns:
        How many sockets were asked.

    Raises:
        LkError: the connection has no ``_protocols`` list.
    """
    connection = getattr(transport, "_connection", None)
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list):
        raise _internal_gone("aioice", "RTCIceTransport._connection._protocols")
    asked = 0
    for protocol in protocols:
        datagrams = getattr(protocol, "transport", None)
        sock = None if datagrams is None else datagrams.get_extra_info("socket")
        if sock is not None and sock.type == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            asked += 1
    return asked


def sctp_packet_bytes_of(transport: RTCSctpTransport) -> int:
    """The largest SCTP packet ``transport`` sends: aiortc's unless tuned and raised."""
    tuned = getattr(transport, _TUNED_MARK, None)
    if isinstance(tuned, _TunedAssociation):
        return tuned.packet_bytes
    return int(_sctp.SCTP_MAX_PACKET_LENGTH)


# -- simulcast: rid-tagged layer senders on one section (lkproto.asyncio.publish) -------------

# Name-mangled private attributes of aiortc/rtcrtpsender.py (RTCRtpSender.__init__ and
# _run_rtp, which keeps them for its RTCP sender reports), 1.16.0.
_SENDER_NTP: Final = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TS: Final = "_RTCRtpSender__rtp_timestamp"
_SENDER_PACKETS: Final = "_RTCRtpSender__packet_count"
_SENDER_OCTETS: Final = "_RTCRtpSender__octet_count"
_SEND_MARK: Final = "_lkproto_send_intercepted"


class RidTaggingTransport:
    """Stands in for an ``RTCDtlsTransport`` under one simulcast layer's ``RTCRtpSender``.

    aiortc 1.16.0's sender sets the ``sdes:mid`` header extension on its packets but never the
    ``sdes:rtp-stream-id`` one, which livekit-server reads to tell simulcast layers apart
    (RFC 8852; PROTOCOL-MAP §9 VideoLayer.rid). A sender hands every packet, serialised, to its
    transport's private ``_send_rtp``; this stand-in parses each RTP packet back with aiortc's
    ``RtpPacket.parse``, sets the rid and serialises it again before passing it on. RTCP (RFC
    5761 §4: second byte 192..223) passes untouched. Everything else (the private
    ``_register_rtp_sender`` that routes RTCP by SSRC back to the sender, the state, the
    statistics) is the real transport's, looked up on it.

    Args:
        transport: the section's connected ``RTCDtlsTransport``.
        rid: the layer's rid.
        extensions: the header extensions of the layer sender's parameters (with the rid one).
    """

    def __init__(
        self,
        transport: aiortc.RTCDtlsTransport,
        rid: str,
        extensions: Sequence[aiortc.RTCRtpHeaderExtensionParameters],
    ) -> None:
        if not callable(getattr(transport, "_send_rtp", None)) or not callable(
            getattr(transport, "_register_rtp_sender", None)
        ):
            raise _internal_gone("aiortc", "RTCDtlsTransport._send_rtp/_register_rtp_sender")
        self._real = transport
        self._rid = rid
        self._map = aiortc.rtp.HeaderExtensionsMap()
        self._map.configure(aiortc.RTCRtpParameters(headerExtensions=list(extensions)))

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    async def _send_rtp(self, data: bytes) -> None:
        if len(data) > 1 and 192 <= data[1] <= 223:
            await self._real._send_rtp(data)
            return
        packet = aiortc.rtp.RtpPacket.parse(data, self._map)
        packet.extensions.rtp_stream_id = self._rid
        await self._real._send_rtp(packet.serialize(self._map))


def intercept_send(
    sender: RTCRtpSender,
    on_send: Callable[[RTCRtpSendParameters], Coroutine[object, object, None]],
) -> None:
    """Make ``sender.send(parameters)`` call ``on_send(parameters)`` instead of starting it.

    aiortc starts a transceiver's sender itself, once DTLS is up, with the parameters the
    negotiation produced (``RTCPeerConnection.__connect`` calls ``sender.send``); there is no
    other way to learn them (payload type, header extension ids, mid, CNAME). A simulcast
    section's own sender must stay silent (its layers are sent by separate senders), so ``send``
    is shadowed on this one instance. Public method, private call site: kept here with the rest.
    """
    if getattr(sender, _SEND_MARK, False):
        return
    setattr(sender, _SEND_MARK, True)
    setattr(sender, "send", on_send)  # noqa: B010


async def send_sender_report(sender: RTCRtpSender) -> bool:
    """Send one RTCP sender report for ``sender`` now; False if it has sent no RTP yet.

    livekit-server switches a subscriber between simulcast layers only with a recent sender
    report of both layers (its forwarder maps their RTP clocks through the reports' NTP times;
    without one it logs ``unavailable layer ref`` and stays on the old layer). aiortc 1.16.0
    sends a report only every 0.5 to 1.5 s (``RTCRtpSender._run_rtcp``), from the private
    ``__ntp_timestamp``/``__rtp_timestamp`` of its last packet and its private packet and octet
    counters; this sends the same report on demand, through the sender's transport.

    Raises:
        LkError: this aiortc lacks those attributes.
    """
    ntp, rtp_ts, packets, octets = (
        getattr(sender, name, None)
        for name in (_SENDER_NTP, _SENDER_RTP_TS, _SENDER_PACKETS, _SENDER_OCTETS)
    )
    if not (
        isinstance(ntp, int)
        and isinstance(rtp_ts, int)
        and isinstance(packets, int)
        and isinstance(octets, int)
    ):
        raise _internal_gone("aiortc", "RTCRtpSender.__ntp_timestamp/__rtp_timestamp/counters")
    if not ntp:
        return False
    report = aiortc.rtp.RtcpSrPacket(
        ssrc=sender._ssrc,
        sender_info=aiortc.rtp.RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_ts,
            packet_count=packets & 0xFFFFFFFF,
            octet_count=octets & 0xFFFFFFFF,
        ),
    )
    try:
        await sender.transport._send_rtp(bytes(report))
    except ConnectionError:
        return False
    return True


# -- RTCRtpSender: audio frames levelled with numpy (issue 18, media CPU) -----------------------
#
# aiortc 1.16.0's ``RTCRtpSender._next_encoded_frame`` computes the RFC 6464 audio level of every
# audio frame with ``aiortc.rtp.compute_audio_level_dbov``, a pure-Python loop over the samples
# that costs about as much as the Opus encode itself (18 % of a 20-track publisher), on the event
# loop. :func:`encode_audio_with` replaces that one method on one sender of lkproto's own with a
# version that does the same steps with a caller-supplied step that levels and encodes, in the
# loop's default executor as aiortc encodes. (Encoding on the loop as well, which saves the hop,
# was tried: CPU per frame fell a further ~25 %, but under a loaded machine the single-threaded
# publisher fell behind real time at 20 tracks where the threaded one did not; see
# docs/reference/benchmarks.md.)

_SENDER_TRACK: Final = "_RTCRtpSender__track"

AudioEncodeStep = Callable[[Encoder, object], tuple[list[bytes], int, int | None]]
"""``(encoder, frame_or_packet) -> (payloads, rtp_timestamp, audio_level_dbov or None)``."""

AudioOffload = Callable[
    [Callable[[], tuple[list[bytes], int, int | None]]],
    Awaitable[tuple[list[bytes], int, int | None]],
]
"""Runs one zero-argument encode job somewhere off the loop and awaits its result."""


def encode_audio_with(
    sender: RTCRtpSender, encode: AudioEncodeStep, *, offload: AudioOffload | None = None
) -> None:
    """Make ``sender`` level and encode its audio frames with ``encode``.

    Replaces, on this sender only, aiortc 1.16.0's ``RTCRtpSender._next_encoded_frame``, which
    ``_run_rtp`` awaits once per frame. The replacement keeps its contract: it reads the private
    ``__track`` (``replaceTrack`` may change it between frames), drops the frame while the
    private ``_enabled`` flag is False, creates ``__encoder`` with ``codecs.get_encoder`` if
    nothing preset one (see :func:`preset_encoder`), runs the step in the loop's default
    executor (where aiortc encodes) and returns an ``aiortc.rtcrtpsender.RTCEncodedFrame``
    (None when no payload is ready). ``encode`` does what the original split between
    ``compute_audio_level_dbov`` and ``Encoder.encode``/``pack``; audio has no keyframes, so the
    keyframe flag is left alone. ``offload``, if given, runs the step instead of the default
    executor (lkproto's one batching worker thread per loop, issue 18).

    Raises:
        ValueError: ``sender`` is not an audio sender.
        LkError: this aiortc lacks one of those internals.
    """
    if sender.kind != "audio":
        raise ValueError(f"encode_audio_with needs an audio sender, not {sender.kind!r}")
    _require_lazy_encoder(sender)
    names = _code_names(RTCRtpSender._next_encoded_frame)
    encoded_frame = getattr(aiortc.rtcrtpsender, "RTCEncodedFrame", None)
    if (
        not hasattr(sender, _SENDER_TRACK)
        or not hasattr(sender, _SENDER_ENABLED)
        or _SENDER_ENABLED not in names
        or encoded_frame is None
        or "_next_encoded_frame" not in _code_names(RTCRtpSender._run_rtp)
    ):
        raise _internal_gone(
            "aiortc", "RTCRtpSender._next_encoded_frame reading __track/_enabled/__encoder"
        )

    async def next_encoded_frame(codec: aiortc.RTCRtpCodecParameters) -> object | None:
        data = await getattr(sender, _SENDER_TRACK).recv()
        if not getattr(sender, _SENDER_ENABLED):
            return None
        encoder: Encoder | None = getattr(sender, _SENDER_ENCODER)
        if encoder is None:
            encoder = aiortc.codecs.get_encoder(codec)
            setattr(sender, _SENDER_ENCODER, encoder)
        if offload is None:
            loop = asyncio.get_running_loop()
            payloads, timestamp, level = await loop.run_in_executor(None, encode, encoder, data)
        else:
            payloads, timestamp, level = await offload(functools.partial(encode, encoder, data))
        if not payloads:
            return None
        frame: object = encoded_frame(payloads, timestamp, level)
        return frame

    # An instance attribute shadows the class's method for this sender only; _run_rtp calls
    # ``self._next_encoded_frame(codec)``.
    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign,assignment]


# -- RTCRtpReceiver: audio that plays on past a lost packet (issue 15, lossy links) ------------
#
# aiortc 1.16.0 gives an audio RTCRtpReceiver the private ``__jitter_buffer``
# ``JitterBuffer(capacity=16, prefetch=4)``, and ``_handle_rtp_packet`` calls its ``add(packet)``
# once per depacketised RTP packet (``packet._data`` set) and decodes the ``JitterFrame`` it
# returns, if any. That buffer stalls on every lost packet until 16 later ones arrive
# (lkproto.core.jitter says what it cost). :func:`tolerate_audio_loss` puts a buffer with the same
# interface in its place that orders packets by lkproto.core.jitter.AudioReorderBuffer.

_RECEIVER_JITTER_BUFFER: Final = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_KIND: Final = "_RTCRtpReceiver__kind"


class _LossTolerantAudioBuffer(aiortc.jitterbuffer.JitterBuffer):
    """aiortc's audio jitter buffer interface over :class:`AudioReorderBuffer`: one frame per
    RTP packet, a missing packet skipped once ``depth`` later ones are held."""

    def __init__(self, depth: int) -> None:
        super().__init__(capacity=16, prefetch=depth)
        self.order: AudioReorderBuffer[aiortc.rtp.RtpPacket] = AudioReorderBuffer(depth)

    def add(
        self, packet: aiortc.rtp.RtpPacket
    ) -> tuple[bool, aiortc.jitterbuffer.JitterFrame | None]:
        out = self.order.push(packet.sequence_number, packet)
        if out is None:
            return False, None
        data = getattr(out, "_data", b"")  # set by _handle_rtp_packet (depayload) before add
        return False, aiortc.jitterbuffer.JitterFrame(data=data, timestamp=out.timestamp)


def tolerate_audio_loss(
    receiver: RTCRtpReceiver, depth: int = AUDIO_REORDER_DEPTH
) -> AudioReorderBuffer[aiortc.rtp.RtpPacket] | None:
    """Make ``receiver`` play past a lost audio packet instead of stalling on it.

    Replaces the private ``__jitter_buffer`` of an aiortc 1.16.0 audio receiver (created in
    ``RTCRtpReceiver.__init__``, read only by ``_handle_rtp_packet``, which calls ``add`` and
    uses the ``(pli_flag, JitterFrame | None)`` it returns) with one that returns frames in
    sequence order after ``depth`` packets, as aiortc's prefetch does, and skips a packet that
    has not arrived by then. No public API sets a receiver's jitter buffer. Install it before the
    first packet arrives (when the track is first reported is early enough: a packet or two
    already in aiortc's buffer are dropped with it). Calling it again does nothing.

    Returns:
        The new buffer's :class:`AudioReorderBuffer` (its counters), or None if it was already
        installed.

    Raises:
        ValueError: ``receiver`` is not an audio receiver.
        LkError: this aiortc lacks the internals relied on.
    """
    current = getattr(receiver, _RECEIVER_JITTER_BUFFER, None)
    if isinstance(current, _LossTolerantAudioBuffer):
        return None
    if getattr(receiver, _RECEIVER_KIND, None) != "audio":
        raise ValueError("tolerate_audio_loss needs an audio receiver")
    if not isinstance(current, aiortc.jitterbuffer.JitterBuffer) or _RECEIVER_JITTER_BUFFER not in (
        _code_names(RTCRtpReceiver._handle_rtp_packet)
    ):
        raise _internal_gone("aiortc", "RTCRtpReceiver.__jitter_buffer read by _handle_rtp_packet")
    replacement = _LossTolerantAudioBuffer(depth)
    setattr(receiver, _RECEIVER_JITTER_BUFFER, replacement)
    return replacement.order


def audio_order(receiver: RTCRtpReceiver) -> AudioReorderBuffer[aiortc.rtp.RtpPacket] | None:
    """The :class:`AudioReorderBuffer` :func:`tolerate_audio_loss` gave ``receiver`` (its
    counters), or None if it has aiortc's own jitter buffer."""
    current = getattr(receiver, _RECEIVER_JITTER_BUFFER, None)
    return current.order if isinstance(current, _LossTolerantAudioBuffer) else None


# -- RTCRtpReceiver: audio decoded on a shared worker (issue 18, media CPU) ---------------------
#
# aiortc 1.16.0 gives every RTCRtpReceiver its own decoder thread (``decoder_worker``), fed through
# the private ``queue.Queue`` ``__decoder_queue`` by ``_handle_rtp_packet`` on the loop, and hands
# each decoded frame back with ``asyncio.run_coroutine_threadsafe(output_q.put(frame), loop)``: a
# Task and a concurrent future per 20 ms frame and per track. :func:`decode_audio_with` diverts
# the frames of one receiver of lkproto's own to a caller-supplied offload (lkproto's one batch
# worker per loop) and puts the decoded frames straight into the track's queue.

_media_log = logging.getLogger("lkproto.media")
_RECEIVER_DECODER_ERROR: Final = "_RTCRtpReceiver__decoder_error"
_DIVERTED: Final = "_lkproto_decode_diverted"

AudioDecodeOffload = Callable[[Callable[[], list[object]]], "asyncio.Future[list[object]]"]
"""Runs one zero-argument decode job off the loop; returns a future of the loop."""


class _DecoderState:
    """What aiortc's ``decoder_worker`` keeps between frames: the codec name and its decoder."""

    __slots__ = ("codec_name", "decoder")

    def __init__(self) -> None:
        self.codec_name: str | None = None
        self.decoder: aiortc.codecs.base.Decoder | None = None


def decode_audio_with(receiver: RTCRtpReceiver, offload: AudioDecodeOffload) -> bool:
    """Decode ``receiver``'s audio frames with ``offload`` instead of its decoder thread.

    Shadows ``put`` on this receiver's private ``__decoder_queue`` (aiortc 1.16.0
    ``RTCRtpReceiver._handle_rtp_packet`` calls it on the loop once per depacketised frame). Each
    ``(codec, JitterFrame)`` becomes a job that does what ``decoder_worker`` does for it (a decoder
    from ``codecs.get_decoder`` kept per receiver and replaced when the codec name changes; an
    ``av.FFmpegError`` logged, the frame skipped and the private ``__decoder_error`` event set);
    the decoded frames are put into the remote track's queue in order, with ``put_nowait`` (it is
    unbounded, as in aiortc). What still goes to aiortc's own thread: the end-of-track ``None``
    (``__stop_decoder`` joins that thread, which then ends the track), and every frame while a
    :func:`transform_decoder_input` transform (E2EE) reads the queue, since the transform runs in
    that thread's ``get``. Frames the thread still holds when the diversion starts may reach the
    track after the first diverted ones; callers install it when the track is first reported.
    Calling it again on the same receiver does nothing.

    Returns:
        True if installed now, False if it already was.

    Raises:
        ValueError: ``receiver`` is not an audio receiver.
        LkError: this aiortc lacks one of those internals.
    """
    track = getattr(receiver, "track", None)
    if getattr(track, "kind", None) != "audio":
        raise ValueError("decode_audio_with needs an audio receiver")
    input_q = getattr(receiver, _RECEIVER_DECODER_QUEUE, None)
    decode_error = getattr(receiver, _RECEIVER_DECODER_ERROR, None)
    output_q = getattr(track, "_queue", None)
    names = _code_names(aiortc.rtcrtpreceiver.decoder_worker)
    if (
        not isinstance(input_q, queue.Queue)
        or not isinstance(decode_error, threading.Event)
        or not isinstance(output_q, asyncio.Queue)
        or "run_coroutine_threadsafe" not in names
        or "get_decoder" not in names
    ):
        raise _internal_gone(
            "aiortc", "RTCRtpReceiver.__decoder_queue/__decoder_error feeding decoder_worker"
        )
    if getattr(input_q, _DIVERTED, False):
        return False
    from av import FFmpegError  # loaded by aiortc.codecs already; named here only

    original_put = type(input_q).put.__get__(input_q)
    state = _DecoderState()

    def decode(codec: aiortc.RTCRtpCodecParameters, encoded: object) -> list[object]:
        if codec.name != state.codec_name:
            state.decoder = aiortc.codecs.get_decoder(codec)
            state.codec_name = codec.name
        assert state.decoder is not None
        try:
            frames: list[object] = list(state.decoder.decode(encoded))  # type: ignore[arg-type]
        except FFmpegError as exc:
            # As decoder_worker: keep the decoder (a reset would fail every frame until the next
            # keyframe), flag the error for the receiver's RTCP.
            _media_log.warning(
                "RTCRtpReceiver(audio) failed to decode %s frame: %s", codec.name, exc
            )
            decode_error.set()
            return []
        return frames

    def deliver(future: asyncio.Future[list[object]]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            _media_log.warning("audio decode failed: %r", exc)
            return
        for frame in future.result():
            output_q.put_nowait(frame)

    def put(item: object, block: bool = True, timeout: float | None = None) -> None:
        if item is None or "get" in vars(input_q):
            original_put(item, block, timeout)
            return
        codec, encoded = cast("tuple[aiortc.RTCRtpCodecParameters, object]", item)
        offload(functools.partial(decode, codec, encoded)).add_done_callback(deliver)

    input_q.put = put  # type: ignore[method-assign]
    setattr(input_q, _DIVERTED, True)
    return True


# -- RtpRouter: SSRCs a later offer announces for a receiving section (issue 18, many tracks) ---
#
# aiortc 1.16.0 registers a receiver's SSRCs with its transport's ``RtpRouter`` once, in
# ``RTCRtpReceiver.receive`` (``if not self.__started``), from the remote description of that
# moment (``RTCPeerConnection.__remoteRtp``: no ``a=ssrc`` line, no SSRC). ``RtpRouter.route_rtp``
# routes by SSRC, else by a payload type only one receiver has; it does not use the MID header
# extension. livekit-server can offer a subscriber section before it has an SSRC for it and add
# the ``a=ssrc`` line in a later offer; with one audio track the payload type still routes its
# packets, with 20-40 audio sections sharing the Opus payload type they were dropped, and the
# subscribed track never produced a frame ("decoded frames from 23/30 audio tracks").

_RECEIVER_STARTED: Final = "_RTCRtpReceiver__started"
# (_RECEIVER_RTX_SSRC, the receiver's RTX -> media SSRC map, is defined with the stats section.)


def route_remote_ssrcs(pc: RTCPeerConnection) -> int:
    """Register with the RTP router every SSRC the current remote description gives a started
    receiver of ``pc`` that the router does not route to it yet.

    For each transceiver whose receiver has started, the remote description's section with the
    same ``a=mid`` is read; its first ``a=ssrc`` is the media SSRC and a second one, with an RTX
    codec negotiated, the retransmission SSRC (the pairing aiortc's ``__remoteRtp`` makes). Call
    it after each remote offer or answer has been applied (and our answer set). Returns how many
    SSRCs were added.

    Raises:
        LkError: this aiortc lacks one of those internals.
    """
    description = pc.remoteDescription
    if description is None:
        return 0
    by_mid = {
        media.rtp.muxId: media
        for media in aiortc.sdp.SessionDescription.parse(description.sdp).media
        if media.rtp.muxId
    }
    added = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if not getattr(receiver, _RECEIVER_STARTED, False):
            continue
        media = by_mid.get(transceiver.mid or "")
        if media is None or not media.ssrc:
            continue
        router = getattr(receiver.transport, "_rtp_router", None)
        rtx_map = getattr(receiver, _RECEIVER_RTX_SSRC, None)
        if not isinstance(router, aiortc.rtcdtlstransport.RtpRouter) or not isinstance(
            rtx_map, dict
        ):
            raise _internal_gone("aiortc", "RTCDtlsTransport._rtp_router / RtpReceiver.__rtx_ssrc")
        primary = media.ssrc[0].ssrc
        if router.ssrc_table.get(primary) is not receiver:
            router.ssrc_table[primary] = receiver
            added += 1
        if len(media.ssrc) == 2 and any(c.name.lower() == "rtx" for c in media.rtp.codecs):
            rtx = media.ssrc[1].ssrc
            if router.ssrc_table.get(rtx) is not receiver:
                router.ssrc_table[rtx] = receiver
                rtx_map[rtx] = primary
                added += 1
    return added


# -- aioice Connection: connectivity checks that keep up with a returning path (issue 15) -------

ICE_CHECK_RESEND_S: Final = 1.0
"""While a connection is still checking, its unanswered connectivity checks are looked at on a
tick of this many seconds, and one already seen on the previous tick is sent again (see
:func:`keep_ice_checking`)."""

_CHECKING_MARK: Final = "__lkproto_keep_checking__"
# Name-mangled private attributes of aioice/stun.py (Transaction.__init__), 0.13.0.
_TRANSACTION_REQUEST: Final = "_Transaction__request"
_TRANSACTION_ADDR: Final = "_Transaction__addr"


def _require_checking_internals(connection: aioice.ice.Connection) -> None:
    init_names = _code_names(aioice.stun.Transaction.__init__)
    if _TRANSACTION_REQUEST not in init_names or _TRANSACTION_ADDR not in init_names:
        raise _internal_gone("aioice", "Transaction.__request and Transaction.__addr")
    if not isinstance(getattr(connection, "_protocols", None), list) or not isinstance(
        getattr(connection, "_check_list_done", None), bool
    ):
        raise _internal_gone("aioice", "Connection._protocols and Connection._check_list_done")


def _resend_waiting_checks(
    connection: aioice.ice.Connection,
    first_seen: dict[aioice.stun.Transaction, float],
    now: float,
) -> None:
    """Send again every request of ``connection`` unanswered for :data:`ICE_CHECK_RESEND_S`."""
    alive: dict[aioice.stun.Transaction, float] = {}
    for protocol in list(connection._protocols):
        if not isinstance(protocol, aioice.ice.StunProtocol):
            continue
        for transaction in list(protocol.transactions.values()):
            seen = first_seen.get(transaction, now)
            alive[transaction] = seen
            if now - seen < ICE_CHECK_RESEND_S:
                continue
            request = getattr(transaction, _TRANSACTION_REQUEST, None)
            addr = getattr(transaction, _TRANSACTION_ADDR, None)
            if not isinstance(request, aioice.stun.Message) or not isinstance(addr, tuple):
                raise _internal_gone("aioice", "Transaction.__request and Transaction.__addr")
            protocol.send_stun(request, addr)
    first_seen.clear()
    first_seen.update(alive)


def keep_ice_checking(transport: RTCIceTransport) -> None:
    """Keep the connectivity checks of ``transport``'s aioice connection going at a steady pace.

    aioice 0.13.0 runs each check as one STUN transaction whose retransmissions back off from
    0.5 s, doubling (``aioice/stun.py``: ``RETRY_RTO``, ``RETRY_MAX``; sends at 0, 0.5, 1.5, 3.5,
    7.5, 15.5 and 31.5 s). A join attempt made while UDP is down (issue 15: a full reconnect
    during a long outage; the signal's TCP still works, so the JoinResponse arrives) therefore
    cannot connect when the path comes back 8 s into the attempt: the next copy of its check
    goes out at 15.5 s, after the 15 s connect timeout, and the attempt hung for all of it.
    While this connection's ``connect()`` runs (the check phase), every STUN request it has had
    in flight since the previous tick of :data:`ICE_CHECK_RESEND_S` is sent again, with the same
    transaction id, on each tick; an answer to any copy completes aioice's own
    transaction (RFC 8489 §6.2.1 allows retransmitting a request unchanged), so aioice's check
    list logic is untouched and the checks connect within about a second of the path's return.
    The resends stop when ``connect()`` returns or raises (consent checks afterwards are
    :func:`fit_consent`'s).

    Only this ``aioice.ice.Connection`` instance changes: its ``connect`` (possibly already the
    shadow of :func:`scope_ice_connection`, which it wraps: call this after that) is shadowed by
    one that runs the resend loop beside it. Relies on aiortc 1.16.0 calling
    ``self._connection.connect()`` (``RTCIceTransport.start``), on ``RTCIceGatherer._connection``,
    ``Connection._protocols``, ``StunProtocol.transactions`` and the name-mangled
    ``Transaction.__request`` / ``__addr`` of aioice 0.13.0. Later calls change nothing.

    Args:
        transport: an ICE transport of an ``RTCPeerConnection`` lkproto created.

    Raises:
        LkError: the internals above are gone.
    """
    connection = getattr(transport.iceGatherer, "_connection", None)
    if not isinstance(connection, aioice.ice.Connection):
        raise _internal_gone("aiortc", "RTCIceGatherer._connection")
    _keep_checking(connection)


def _keep_checking(connection: aioice.ice.Connection) -> None:
    """:func:`keep_ice_checking` for the aioice connection itself."""
    _require_checking_internals(connection)
    if getattr(connection, _CHECKING_MARK, False):
        return
    setattr(connection, _CHECKING_MARK, True)
    inner: Callable[[], Coroutine[object, object, None]] = connection.connect

    async def resend_loop() -> None:
        loop = asyncio.get_running_loop()
        first_seen: dict[aioice.stun.Transaction, float] = {}
        while not connection._check_list_done:
            await asyncio.sleep(ICE_CHECK_RESEND_S)
            if connection._check_list_done:
                return
            _resend_waiting_checks(connection, first_seen, loop.time())

    async def connect() -> None:
        resender = asyncio.get_running_loop().create_task(resend_loop())
        try:
            await inner()
        finally:
            resender.cancel()
            try:
                await resender
            except asyncio.CancelledError:
                pass
            except LkError as exc:
                logging.getLogger("lkproto.ice").warning("= ICE check resends stopped: %s", exc)

    setattr(connection, "connect", connect)  # noqa: B010


check_versions()
