"""The seam to aiortc/aioice internals: one test per internal, run against the real packages.

Each test drives the real aiortc/aioice code path the seam function relies on, so a release that
renames or reworks the internal fails here. The last tests keep every other module of lkproto
off those internals and prove the patches stay on lkproto's own objects.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import inspect
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.codecs.h264
import aiortc.rtcrtpreceiver
import av
import pytest
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from lkproto.asyncio import _seam
from lkproto.asyncio.peer import RELIABLE_LABEL, PeerConnection, PeerOptions
from lkproto.errors import LkError, UnsupportedDependencyError
from tests._support.fresh import call_in_fresh_interpreter
from tests.conftest import scaled

ROOT = pathlib.Path(__file__).resolve().parents[3]
LKPROTO = ROOT / "lkproto"
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2)
# Two aiortc peers: an aiortc answerer cannot take a max-bundle offer (PeerOptions.max_bundle).
LOOPBACK = PeerOptions(ice_addresses=("127.0.0.1",), max_bundle=False)
_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \w+ \d+ (\S+) \d+ typ host", re.MULTILINE)


# -- supported versions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "spec", "ok"),
    [
        ("1.16.0", "~=1.16.0", True),
        ("1.16.7", "~=1.16.0", True),
        ("1.16", "~=1.16.0", True),
        ("1.16.0.post1", "~=1.16.0", True),
        ("1.16.0+deb12", "~=1.16.0", True),
        ("1.16.1rc1", "~=1.16.0", True),
        ("1.16.0rc1", "~=1.16.0", False),
        ("1.16.0.dev3", "~=1.16.0", False),
        ("1.15.9", "~=1.16.0", False),
        ("1.17.0", "~=1.16.0", False),
        ("2.0.0", "~=1.16.0", False),
        ("0.13.0", "~=0.13.0", True),
        ("0.14.0", "~=0.13.0", False),
        ("1.17.0", "~=1.16", True),
        ("2.0", "~=1.16", False),
        ("not a version", "~=1.16.0", False),
    ],
)
def test_compatible_release(installed: str, spec: str, ok: bool) -> None:
    assert _seam.compatible_release(installed, spec) is ok


@pytest.mark.parametrize("spec", [">=1.16", "~=1", "~=1.16.x", "1.16.0"])
def test_compatible_release_refuses_other_specifiers(spec: str) -> None:
    with pytest.raises(ValueError, match=r"specifier|components"):
        _seam.compatible_release("1.16.0", spec)


def _versions(**versions: str) -> Any:
    def version_of(package: str) -> str:
        if package not in versions:
            raise importlib.metadata.PackageNotFoundError(package)
        return versions[package]

    return version_of


def test_supported_versions_pass() -> None:
    _seam.check_versions(_versions(aiortc="1.16.0", aioice="0.13.0"))
    _seam.check_versions()  # what is installed here is what the suite proves


@pytest.mark.parametrize(
    ("versions", "package", "installed"),
    [
        ({"aiortc": "1.17.0", "aioice": "0.13.0"}, "aiortc", "1.17.0"),
        ({"aiortc": "1.16.0", "aioice": "0.14.1"}, "aioice", "0.14.1"),
        ({"aiortc": "1.15.0", "aioice": "0.13.0"}, "aiortc", "1.15.0"),
        ({"aioice": "0.13.0"}, "aiortc", "(no distribution metadata)"),
    ],
)
def test_unsupported_versions_raise_a_clear_error(
    versions: dict[str, str], package: str, installed: str
) -> None:
    spec = _seam.SUPPORTED_VERSIONS[package]
    with pytest.raises(UnsupportedDependencyError) as caught:
        _seam.check_versions(_versions(**versions))
    error = caught.value
    assert (error.package, error.installed, error.supported) == (package, installed, spec)
    assert f"lkproto supports {package}{spec}" in str(error)
    assert isinstance(error, ImportError)


def test_the_check_runs_at_import() -> None:
    """Importing the seam with aiortc 1.17 installed fails, so the first peer connection does
    (it imports the seam; importing lkproto.asyncio.peer alone loads no aiortc, issue 18)."""
    code = textwrap.dedent(
        """
        import importlib.metadata
        real = importlib.metadata.version
        importlib.metadata.version = lambda name: "1.17.0" if name == "aiortc" else real(name)
        from lkproto.errors import UnsupportedDependencyError
        import lkproto.asyncio.peer
        try:
            lkproto.asyncio.peer.PeerConnection()
        except UnsupportedDependencyError as exc:
            print(exc.package, exc.installed, exc.supported)
        else:
            print("imported")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == ["aiortc", "1.17.0", "~=1.16.0"]


def test_pyproject_pins_the_supported_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    rtc = project["optional-dependencies"]["rtc"]
    for package, spec in _seam.SUPPORTED_VERSIONS.items():
        assert f"{package}{spec}" in rtc


# -- RTCRtpSender internals ------------------------------------------------------------------------


class _SpyEncoder(Encoder):
    """Records what aiortc's sender asks of its encoder."""

    def __init__(self) -> None:
        self.forced: list[bool] = []

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        self.forced.append(force_keyframe)
        return [b"\x00"], 0

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        return [bytes(packet)], 0


class _CountingTrack(MediaStreamTrack):
    """An audio track whose reads are counted."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def recv(self) -> av.AudioFrame:
        self.reads += 1
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 48_000
        frame.pts = self.reads * 960
        frame.time_base = Fraction(1, 48_000)
        return frame


@pytest.fixture
async def sender() -> Any:
    pc = aiortc.RTCPeerConnection()
    try:
        yield pc.addTrack(_CountingTrack())
    finally:
        await pc.close()


async def _next_frame(sender: aiortc.RTCRtpSender) -> Any:
    return await asyncio.wait_for(sender._next_encoded_frame(OPUS), scaled(5))


async def test_preset_encoder_is_the_one_aiortc_encodes_with(sender: aiortc.RTCRtpSender) -> None:
    assert _seam.current_encoder(sender) is None
    spy = _SpyEncoder()
    _seam.preset_encoder(sender, spy)
    assert _seam.current_encoder(sender) is spy
    frame = await _next_frame(sender)
    assert frame is not None
    assert frame.payloads == [b"\x00"]
    assert spy.forced == [False]  # aiortc used ours instead of creating its Opus encoder
    assert _seam.current_encoder(sender) is spy


async def test_aiortc_creates_its_encoder_lazily_when_none_is_preset(
    sender: aiortc.RTCRtpSender,
) -> None:
    await _next_frame(sender)
    assert type(_seam.current_encoder(sender)).__name__ == "OpusEncoder"


async def test_encoder_preset_fails_clearly_when_aiortc_creates_it_eagerly(
    sender: aiortc.RTCRtpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def eager(self: aiortc.RTCRtpSender, codec: object) -> None:
        return None

    monkeypatch.setattr(aiortc.RTCRtpSender, "_next_encoded_frame", eager)
    with pytest.raises(LkError, match=r"aiortc 1\.16\.\d+ no longer has .*_seam\.py"):
        _seam.preset_encoder(sender, _SpyEncoder())
    with pytest.raises(LkError, match="no longer has"):
        _seam.current_encoder(sender)


async def test_keyframe_request_is_taken_from_aiortc(sender: aiortc.RTCRtpSender) -> None:
    spy = _SpyEncoder()
    _seam.preset_encoder(sender, spy)
    assert _seam.take_force_keyframe(sender) is False
    sender._send_keyframe()  # what aiortc does on RTCP PLI/FIR
    assert _seam.take_force_keyframe(sender) is True
    assert _seam.take_force_keyframe(sender) is False
    await _next_frame(sender)
    sender._send_keyframe()
    await _next_frame(sender)
    # Taken before the first frame, so aiortc's encode path no longer saw it; left for the second.
    assert spy.forced == [False, True]


def test_keyframe_flag_missing_is_reported_as_none() -> None:
    assert _seam.take_force_keyframe(object()) is None  # type: ignore[arg-type]


async def test_disabled_sender_reads_and_drops_frames(sender: aiortc.RTCRtpSender) -> None:
    spy = _SpyEncoder()
    _seam.preset_encoder(sender, spy)
    track = sender.track
    assert isinstance(track, _CountingTrack)
    assert _seam.set_sender_enabled(sender, False)
    assert await _next_frame(sender) is None
    assert await _next_frame(sender) is None
    assert (track.reads, spy.forced) == (2, [])  # drained, never encoded
    assert _seam.set_sender_enabled(sender, True)
    assert await _next_frame(sender) is not None
    assert (track.reads, spy.forced) == (3, [False])


async def test_enabled_flag_missing_is_reported(
    sender: aiortc.RTCRtpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not _seam.set_sender_enabled(object(), False)  # type: ignore[arg-type]

    async def unaware(self: aiortc.RTCRtpSender, codec: object) -> None:
        return None

    monkeypatch.setattr(aiortc.RTCRtpSender, "_next_encoded_frame", unaware)
    assert not _seam.set_sender_enabled(sender, False)


# -- RTCRtpReceiver: the decoder thread's input ------------------------------------------------


def _opus_frame() -> bytes:
    """One real 20 ms Opus frame (aiortc's own encoder, so the decoder accepts it)."""
    encoder = aiortc.codecs.get_encoder(OPUS)
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = 48_000
    frame.pts = 0
    frame.time_base = Fraction(1, 48_000)
    payloads, _ = encoder.encode(frame)
    return bytes(payloads[0])


async def test_decoder_input_is_transformed_on_the_real_decoder_thread() -> None:
    """aiortc's own decoder_worker, fed through the receiver's own queue, decodes what the
    transform returns and skips what it drops; other receivers keep the plain queue."""
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        other = pc.addTransceiver("audio").receiver
        seen: list[tuple[bytes, str]] = []

        def transform(data: bytes) -> bytes | None:
            seen.append((data[:1], threading.current_thread().name))
            return data[1:] if data[:1] == b"K" else None

        _seam.transform_decoder_input(receiver, transform)
        input_q = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        other_q = other._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        assert "get" in vars(input_q)
        assert "get" not in vars(other_q)
        loop = asyncio.get_running_loop()
        output_q: asyncio.Queue[Any] = asyncio.Queue()
        worker = threading.Thread(
            target=aiortc.rtcrtpreceiver.decoder_worker,
            args=(loop, input_q, output_q, threading.Event()),
            name="audio-decoder-test",
        )
        worker.start()
        opus = _opus_frame()
        input_q.put((OPUS, JitterFrame(b"D" + opus, 0)))  # dropped by the transform
        input_q.put((OPUS, JitterFrame(b"K" + opus, 960)))  # decoded without the marker
        input_q.put(None)
        first = await asyncio.wait_for(output_q.get(), scaled(5))
        end = await asyncio.wait_for(output_q.get(), scaled(5))
        worker.join(scaled(5))
        assert isinstance(first, av.AudioFrame)
        assert end is None
        assert seen == [(b"D", "audio-decoder-test"), (b"K", "audio-decoder-test")]
    finally:
        await pc.close()


def test_h264_packetize_is_what_aiortc_encode_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real x264 access unit: aiortc's encode payloads, depacketised into NAL units and
    packetised again by the seam, are the same payloads (single NAL/STAP-A and FU-A)."""
    encoder = aiortc.codecs.h264.H264Encoder()
    frame = av.VideoFrame(640, 480, "yuv420p")
    for plane in frame.planes:
        plane.update(
            bytes(range(256)) * (plane.buffer_size // 256) + bytes(plane.buffer_size % 256)
        )
    frame.pts = 0
    frame.time_base = Fraction(1, 90_000)
    payloads, _ = encoder.encode(frame, True)
    assert len(payloads) > 2  # parameter sets and a fragmented slice
    annex_b = b"".join(aiortc.codecs.h264.h264_depayload(p) for p in payloads)
    nal_units = [nal for nal in annex_b.split(b"\x00\x00\x00\x01") if nal]
    assert _seam.h264_packetize(nal_units) == payloads
    monkeypatch.delattr(aiortc.codecs.h264.H264Encoder, "_packetize")
    with pytest.raises(LkError, match="no longer has"):
        _seam.h264_packetize(nal_units)


async def test_decoder_input_fails_clearly_without_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Async so that aiortc's constructors find a running loop: an earlier test in the session
    # may have left the main thread without a current event loop.
    receiver = aiortc.RTCPeerConnection().addTransceiver("audio").receiver
    monkeypatch.delattr(receiver, "_RTCRtpReceiver__decoder_queue")
    with pytest.raises(LkError, match="no longer has"):
        _seam.transform_decoder_input(receiver, lambda data: data)


# -- RTCIceTransport internals and per-connection ICE fitting --------------------------------------


def _transports(pc: PeerConnection) -> list[aiortc.RTCIceTransport]:
    raw: aiortc.RTCPeerConnection = pc._pc
    found: dict[int, aiortc.RTCIceTransport] = {}
    if raw.sctp is not None:
        found[id(raw.sctp.transport.transport)] = raw.sctp.transport.transport
    for transceiver in raw.getTransceivers():
        found[id(transceiver.receiver.transport.transport)] = (
            transceiver.receiver.transport.transport
        )
    return list(found.values())


def _hosts(sdp: str) -> list[str]:
    return _CANDIDATE.findall(sdp)


async def _connect(offerer: PeerConnection, answerer: PeerConnection) -> None:
    offer = await asyncio.wait_for(offerer.create_offer(), scaled(10))
    answer = await asyncio.wait_for(answerer.apply_offer(offer), scaled(10))
    await asyncio.wait_for(offerer.apply_answer(answer), scaled(10))
    for pc in (offerer, answerer):
        await pc.wait_connected(scaled(10))
        await pc.wait_channels_open(scaled(10))


async def test_role_and_nominated_pair_come_from_aiortc_and_aioice() -> None:
    a, b = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    try:
        await a.create_data_channels()
        [transport] = _transports(a)
        assert _seam.ice_role(transport) is None
        assert _seam.nominated_pair(transport) is None
        await _connect(a, b)
        [answerer_transport] = _transports(b)
        assert _seam.ice_role(transport) == "controlling"
        assert _seam.ice_role(answerer_transport) == "controlled"
        pair = _seam.nominated_pair(transport)
        assert pair is not None
        assert (pair.local.host, pair.remote.host) == ("127.0.0.1", "127.0.0.1")
        other = _seam.nominated_pair(answerer_transport)
        assert other is not None
        assert (other.local.port, other.remote.port) == (pair.remote.port, pair.local.port)
    finally:
        await a.close()
        await b.close()


def test_role_and_pair_fail_clearly_without_the_internals() -> None:
    with pytest.raises(LkError, match="_role_set"):
        _seam.ice_role(object())  # type: ignore[arg-type]
    with pytest.raises(LkError, match="_nominated"):
        _seam.nominated_pair(object())  # type: ignore[arg-type]


async def test_every_transport_gathers_only_on_the_chosen_addresses() -> None:
    """Data and media sections on separate transports (BALANCED): all on loopback only."""
    a, b = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    try:
        await a.create_data_channels()
        a.add_recvonly_transceivers(audio=1, video=1)
        assert len(_transports(a)) == 3
        offer = await asyncio.wait_for(a.create_offer(), scaled(10))
        answer = await asyncio.wait_for(b.apply_offer(offer), scaled(10))
        assert set(_hosts(offer)) == {"127.0.0.1"}
        assert len(_hosts(offer)) == 3
        assert set(_hosts(answer)) == {"127.0.0.1"}
    finally:
        await a.close()
        await b.close()


def _stock_host_addresses() -> set[str]:
    """What stock aioice would gather on here (the function under any wrappers)."""
    return set(inspect.unwrap(aioice.ice.get_host_addresses)(True, True))


async def _plain_aiortc_hosts() -> list[str]:
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("bystander")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        return _hosts(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_other_aiortc_peers_in_the_process_gather_as_stock_aioice() -> None:
    """A plain aiortc peer gathers what stock aioice gathers, wherever it is created: after
    lkproto connected, while lkproto peers exist, and from inside an lkproto data callback (which
    aiortc runs in the connect task started by the answerer's ``setLocalDescription``)."""
    expected = _stock_host_addresses()
    assert expected
    assert "127.0.0.1" not in expected  # so gathering on 127.0.0.1 only would differ
    from_callback: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    tasks: set[asyncio.Task[None]] = set()

    async def gather_from_callback() -> None:
        from_callback.set_result(await _plain_aiortc_hosts())

    def on_data(label: str, data: bytes) -> None:
        task = asyncio.get_running_loop().create_task(gather_from_callback())
        tasks.add(task)

    a, b = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK, on_data=on_data)
    try:
        await a.create_data_channels()
        await _connect(a, b)
        a.send(RELIABLE_LABEL, b"go")
        assert set(await asyncio.wait_for(from_callback, scaled(10))) == expected
        assert set(await asyncio.wait_for(_plain_aiortc_hosts(), scaled(10))) == expected
        # ...while lkproto's own still gather on loopback only.
        c, d = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
        try:
            await c.create_data_channels()
            offer, plain = await asyncio.wait_for(
                asyncio.gather(c.create_offer(), _plain_aiortc_hosts()), scaled(10)
            )
            assert _hosts(offer) == ["127.0.0.1"]
            assert set(plain) == expected
        finally:
            await c.close()
            await d.close()
    finally:
        await a.close()
        await b.close()
    await asyncio.gather(*tasks)


async def test_patches_live_on_lkproto_connections_only() -> None:
    original_connect = aioice.ice.Connection.__dict__["connect"]
    original_gather = aioice.ice.Connection.__dict__["gather_candidates"]
    ours = PeerConnection(LOOPBACK)
    plain = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        await ours.create_data_channels()
        plain.createDataChannel("x")
        await ours.create_offer()
        await plain.setLocalDescription(await plain.createOffer())
        [transport] = _transports(ours)
        own = transport.iceGatherer._connection
        assert {"connect", "gather_candidates"} <= set(vars(own))
        assert plain.sctp is not None
        other = plain.sctp.transport.transport.iceGatherer._connection
        assert not {"connect", "gather_candidates"} & set(vars(other))
        assert aioice.ice.Connection.__dict__["connect"] is original_connect
        assert aioice.ice.Connection.__dict__["gather_candidates"] is original_gather
        assert original_connect.__module__ == original_gather.__module__ == "aioice.ice"
        # The module function answers as aioice's outside lkproto's gathering.
        assert set(aioice.ice.get_host_addresses(True, True)) == _stock_host_addresses()
    finally:
        await ours.close()
        await plain.close()


async def test_scoping_is_idempotent_and_none_keeps_aioice_addresses() -> None:
    pc = PeerConnection(PeerOptions())
    try:
        await pc.create_data_channels()
        [transport] = _transports(pc)
        _seam.scope_ice_connection(transport, None)
        connection = transport.iceGatherer._connection
        fitted = connection.connect
        assert "gather_candidates" not in vars(connection)  # None: aioice's own addresses
        _seam.scope_ice_connection(transport, ("127.0.0.1",))
        assert connection.connect is fitted
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        assert set(_hosts(offer)) == _stock_host_addresses()
    finally:
        await pc.close()


async def test_aiortc_connects_through_the_fitted_connect() -> None:
    a, b = PeerConnection(LOOPBACK), PeerConnection(LOOPBACK)
    calls: list[str] = []
    try:
        await a.create_data_channels()
        [transport] = _transports(a)
        _seam.scope_ice_connection(transport, ("127.0.0.1",))
        connection = transport.iceGatherer._connection
        fitted = connection.connect

        async def counted() -> None:
            calls.append("connect")
            await fitted()

        setattr(connection, "connect", counted)  # noqa: B010 (an instance attribute, as the seam sets)
        await _connect(a, b)
        assert calls == ["connect"]
    finally:
        await a.close()
        await b.close()


async def test_consent_task_started_while_closing_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aioice's race, replayed: connect() resumes after close() and starts consent checks."""
    forever: list[asyncio.Task[None]] = []

    async def racing_connect(self: aioice.ice.Connection) -> None:
        self._closing = True
        task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        forever.append(task)
        self._query_consent_task = task

    pc = PeerConnection(LOOPBACK)
    plain = aioice.ice.Connection(ice_controlling=True)
    try:
        await pc.create_data_channels()
        [transport] = _transports(pc)
        _seam.scope_ice_connection(transport, ("127.0.0.1",))
        ours = transport.iceGatherer._connection
        monkeypatch.setattr(aioice.ice.Connection, "connect", racing_connect)
        await ours.connect()
        assert ours._query_consent_task is None
        await asyncio.wait(forever[:1], timeout=scaled(5))
        assert forever[0].cancelled()
        await plain.connect()  # not lkproto's: untouched
        assert plain._query_consent_task is forever[1]
        assert not forever[1].done()
    finally:
        for task in forever:
            task.cancel()
        await pc.close()


def test_connection_internals_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = aioice.ice.Connection(ice_controlling=True)
    _seam._require_connection_internals(connection)

    async def gather_elsewhere(self: aioice.ice.Connection) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(aioice.ice.Connection, "gather_candidates", gather_elsewhere)
        with pytest.raises(LkError, match="get_host_addresses"):
            _seam._require_connection_internals(connection)
    del connection._query_consent_task
    with pytest.raises(LkError, match="_query_consent_task"):
        _seam._require_connection_internals(connection)

    class NoGatherer:
        iceGatherer = object()

    with pytest.raises(LkError, match=r"RTCIceGatherer\._connection"):
        _seam.scope_ice_connection(NoGatherer(), None)  # type: ignore[arg-type]


def test_wrapper_defers_to_aioice_and_rewraps_a_replacement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seam._wrap_host_addresses()
    stock = aioice.ice.get_host_addresses(True, False)
    token = _seam._CHOSEN.set(("127.0.0.1", "::1"))
    try:
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(False, True) == ["::1"]
    finally:
        _seam._CHOSEN.reset(token)
    assert aioice.ice.get_host_addresses(True, False) == stock

    def someone_elses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["198.51.100.7"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", someone_elses)
    _seam._wrap_host_addresses()
    assert aioice.ice.get_host_addresses is not someone_elses
    assert aioice.ice.get_host_addresses(True, True) == ["198.51.100.7"]


# -- the seam is the only place --------------------------------------------------------------------


def _third_party_privates() -> set[str]:
    """Every private attribute or method name aiortc and aioice define (from their sources)."""
    names: set[str] = set()
    for package in (aiortc, aioice):
        assert package.__file__ is not None
        for path in pathlib.Path(package.__file__).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                    names.add(node.attr)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(node.name)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _own_privates() -> set[str]:
    """Private names lkproto's own classes define on ``self`` (``self._closing`` ...)."""
    names: set[str] = set()
    for path in LKPROTO.rglob("*.py"):
        if "_pb" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
                and node.attr.startswith("_")
            ):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


# Always a reach into aiortc/aioice when read on anything but `self`, even though lkproto's own
# classes use some of these names too.
_ALWAYS_FOREIGN = frozenset(
    {"_enabled", "_role_set", "_nominated", "_connection", "_query_consent_task", "_closing"}
)


def _violations(path: pathlib.Path, root: pathlib.Path, forbidden: set[str]) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    third_party_imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            for alias in node.names:
                origin = module or alias.name
                if origin.split(".")[0] in ("aiortc", "aioice"):
                    third_party_imports.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if re.match(r"_RTC\w*__", node.attr):
                yield f"{where} name-mangled aiortc attribute {node.attr}"
            elif node.attr in forbidden and not on_self:
                yield f"{where} private attribute {node.attr}"
            elif node.attr == "_pc" and not on_self and path.name != "peer.py":
                yield f"{where} PeerConnection._pc outside peer.py"
            if isinstance(node.ctx, ast.Store | ast.Del):
                base: ast.expr = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in third_party_imports:
                    yield f"{where} assigns to {ast.unparse(node)}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in ("getattr", "setattr", "hasattr", "delattr") or not node.args:
                continue
            target = node.args[0]
            while isinstance(target, ast.Attribute):
                target = target.value
            if node.func.id in ("setattr", "delattr") and (
                isinstance(target, ast.Name) and target.id in third_party_imports
            ):
                yield f"{where} {node.func.id} on {ast.unparse(node.args[0])}"
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                name = node.args[1].value
                if isinstance(name, str) and (re.match(r"_RTC\w*__", name) or name in forbidden):
                    yield f"{where} {node.func.id}(..., {name!r})"


def _scan(root: pathlib.Path) -> list[str]:
    """Violations in the package at ``root`` (``.../lkproto``), outside ``asyncio/_seam.py``."""
    forbidden = (_third_party_privates() - _own_privates()) | _ALWAYS_FOREIGN
    return [
        violation
        for path in sorted(root.rglob("*.py"))
        if "_pb" not in path.parts and path.relative_to(root).as_posix() != "asyncio/_seam.py"
        for violation in _violations(path, root.parent, forbidden)
    ]


def _scan_lkproto() -> list[str]:
    return _scan(LKPROTO)


def test_no_module_but_the_seam_touches_aiortc_or_aioice_internals() -> None:
    # In a fresh interpreter: tests/_support/fresh.py says why.
    assert call_in_fresh_interpreter("tests.unit.asyncio.test_seam", "_scan_lkproto") == []


@pytest.mark.parametrize(
    "planted",
    [
        "def f(sender):\n    sender._enabled = False\n",
        "def f(sender):\n    return getattr(sender, '_RTCRtpSender__encoder')\n",
        "def f(t):\n    return t._connection._nominated\n",
        "def f(t):\n    return t._role_set\n",
        "def f(pc):\n    return pc._pc.getTransceivers()\n",
        "import aioice.ice\naioice.ice.get_host_addresses = len\n",
        "import aioice.ice\nsetattr(aioice.ice, 'get_host_addresses', len)\n",
        "from aioice.ice import Connection\nConnection.connect = None\n",
        "from aiortc import RTCRtpSender\nsetattr(RTCRtpSender, 'send', None)\n",
        "def f(c):\n    return c._query_consent_task\n",
    ],
)
def test_the_scan_finds_planted_violations(tmp_path: pathlib.Path, planted: str) -> None:
    target = tmp_path / "lkproto" / "asyncio" / "planted.py"
    target.parent.mkdir(parents=True)
    target.write_text(planted)
    found = _scan(tmp_path / "lkproto")
    assert found
    assert all(v.startswith("lkproto/asyncio/planted.py:") for v in found)


def test_the_scan_allows_the_seam_itself(tmp_path: pathlib.Path) -> None:
    seam = tmp_path / "lkproto" / "asyncio" / "_seam.py"
    seam.parent.mkdir(parents=True)
    seam.write_text((LKPROTO / "asyncio" / "_seam.py").read_text())
    assert _scan(tmp_path / "lkproto") == []
    seam.rename(seam.with_name("not_the_seam.py"))
    assert _scan(tmp_path / "lkproto")


# -- order_inbound_by_ssn: ordered SCTP delivery by SSN (issue 15, load loss) -----------------


def _sctp_data(tsn: int, ssn: int, payload: bytes, *, flags: int = 0x03) -> Any:
    """A DATA chunk on stream 1 (flags B|E = a whole message unless told otherwise)."""
    import aiortc.rtcsctptransport as sctp

    chunk = sctp.DataChunk(flags=flags)
    chunk.tsn, chunk.stream_id, chunk.stream_seq, chunk.protocol = tsn, 1, ssn, 53
    chunk.user_data = payload
    return chunk


async def _deliveries(patched: bool, chunks: list[Any]) -> list[bytes]:
    """Feed ``chunks`` through aiortc's real DATA-chunk path of a fresh association."""
    pc = aiortc.RTCPeerConnection()
    try:
        pc.createDataChannel("x")
        transport = pc.sctp
        assert transport is not None
        if patched:
            _seam.order_inbound_by_ssn(transport)
        delivered: list[bytes] = []

        async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
            delivered.append(data)

        transport._receive = receive  # type: ignore[method-assign]
        transport._last_received_tsn = chunks[0].tsn - 1
        for chunk in chunks:
            await transport._receive_data_chunk(chunk)
        return delivered
    finally:
        await pc.close()


# livekit-server gave SSN 0 a later TSN than SSNs 1 and 2 (seen in a 10-participant room).
_SWAPPED = [(100, 1, b"one"), (101, 2, b"two"), (102, 0, b"zero"), (103, 3, b"three")]


async def test_stock_aiortc_stalls_when_tsn_order_differs_from_ssn_order() -> None:
    # The defect the seam function exists for; if a release fixes it, drop the patch.
    chunks = [_sctp_data(tsn, ssn, data) for tsn, ssn, data in _SWAPPED]
    assert await _deliveries(False, chunks) == []


async def test_ordered_delivery_follows_ssn_whatever_the_tsn_order() -> None:
    chunks = [_sctp_data(tsn, ssn, data) for tsn, ssn, data in _SWAPPED]
    assert await _deliveries(True, chunks) == [b"zero", b"one", b"two", b"three"]


async def test_fragmented_message_out_of_ssn_order_is_reassembled() -> None:
    chunks = [
        _sctp_data(200, 1, b"b1", flags=0x02),
        _sctp_data(201, 1, b"b2", flags=0x01),
        _sctp_data(202, 0, b"a1", flags=0x02),
        _sctp_data(203, 0, b"a2", flags=0x00),
        _sctp_data(204, 0, b"a3", flags=0x01),
        _sctp_data(205, 2, b"c", flags=0x07),  # unordered: delivered as soon as complete
    ]
    assert await _deliveries(True, chunks) == [b"a1a2a3", b"b1b2", b"c"]


async def test_order_inbound_by_ssn_stays_on_its_association() -> None:
    pc, other = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
    try:
        pc.createDataChannel("x")
        other.createDataChannel("x")
        assert pc.sctp is not None
        assert other.sctp is not None
        _seam.order_inbound_by_ssn(pc.sctp)
        _seam.order_inbound_by_ssn(pc.sctp)  # idempotent
        assert type(pc.sctp._get_inbound_stream(1)) is not type(other.sctp._get_inbound_stream(1))
        assert type(other.sctp._get_inbound_stream(1)) is aiortc.rtcsctptransport.InboundStream
    finally:
        await pc.close()
        await other.close()


def test_order_inbound_by_ssn_checks_its_internals() -> None:
    class NotAnAssociation:
        pass

    with pytest.raises(LkError, match="_get_inbound_stream"):
        _seam.order_inbound_by_ssn(NotAnAssociation())  # type: ignore[arg-type]
