"""Client adapters: one uniform, small async interface over each SDK under test.

A scenario talks to the client under test only through :class:`Client`. Every method an adapter
cannot provide raises :class:`~lkproto.conformance.Unsupported` (the scenario then reports
``unsupported``); :attr:`Client.capabilities` lists what it can do so that the runner can skip a
scenario before it starts (``@scenario(..., needs={"rpc"})``).

Adapters:

- ``lkproto``: :class:`SdkClient` over ``lkproto.rtc`` (also the known-good peer of every
  scenario, :class:`PeerClient`, which additionally exposes its ``Room``).
- ``livekit-python``: :class:`SdkClient` over the official ``livekit.rtc`` (imported lazily).
- ``livekit-js``: :class:`BrowserClient`, livekit-client in headless Chromium through the
  interop browser harness (``tests/interop/browser``), loaded by path when it is present.
- ``livekit-go`` and ``livekit-node``: server-sdk-go and @livekit/rtc-node in a child process
  each, driven over JSON lines (:mod:`lkproto.conformance.process_adapters`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from lkproto.conformance import _audio
from lkproto.conformance._registry import Unsupported

__all__ = [
    "ADAPTERS",
    "CAPABILITIES",
    "BrowserClient",
    "BrowserPool",
    "Client",
    "ClientFactory",
    "DataMsg",
    "JoinRefused",
    "PeerClient",
    "PeerView",
    "RpcBehaviour",
    "RpcFailure",
    "SdkClient",
    "StreamMsg",
    "browser_harness_path",
    "livekit_js_unavailable",
]

CAPABILITIES: Final[Mapping[str, str]] = {
    "roster": "remote participants with sid, identity, name, metadata, attributes, kind",
    "data": "publish_data (reliable, lossy, topic, destinations) and received user packets",
    "streams": "send_text / send_bytes and text/byte stream handlers",
    "stream_errors": "a failed incoming stream is observable (the reader raises)",
    "rpc": "perform_rpc and register_rpc_method",
    "state": "set_metadata / set_name / set_attributes",
    "simulate": "simulate_scenario (signal_reconnect, full_reconnect, node_failure, server_leave)",
    "rtt": "the signalling round-trip time measured with ping/pong",
    "join_path": "choose /rtc/v1 (single PC) or /rtc (two PCs)",
    "join_status": "the HTTP status of a refused join",
    "media": "publish a tone from an audio source, mute and unmute it",
    "media_receive": "subscribe to a remote audio track and measure its pitch",
}
"""Capability names (``@scenario(needs=...)``) and what each means."""

SIMULATIONS: Final = ("signal_reconnect", "full_reconnect", "node_failure", "server_leave")

_POLL_S: Final = 0.05


# -- values every adapter returns ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataMsg:
    """A received user packet."""

    payload: bytes
    sender: str | None
    topic: str
    reliable: bool | None
    """``None``: the SDK does not report the packet's kind (server-sdk-go)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamMsg:
    """A finished (or failed) incoming text or byte stream."""

    kind: str  # "text" | "bytes"
    topic: str
    sender: str
    data: bytes
    error: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    name: str = ""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, sender_key: str) -> StreamMsg:
        """Read the stream record a child process or a browser page reports.

        Args:
            obj: the decoded JSON record (``kind``, ``topic``, ``payload_b64``, ``error``,
                ``attributes``, ``name`` and the sender under ``sender_key``).
            sender_key: where the sender's identity is (``sender`` in the process protocol,
                ``identity`` in the page's events).
        """
        return cls(
            kind=str(obj["kind"]),
            topic=str(obj.get("topic") or ""),
            sender=str(obj.get(sender_key) or ""),
            data=base64.b64decode(obj.get("payload_b64") or ""),
            error=obj.get("error") or None,
            attributes=_str_map(obj.get("attributes")),
            name=str(obj.get("name") or ""),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """What a client knows about one remote participant."""

    identity: str
    sid: str
    name: str
    metadata: str
    attributes: dict[str, str]
    kind: int
    tracks: dict[str, bool]  # track SID -> muted

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PeerView:
        """Read one ``{identity, sid, name, metadata, attributes, kind, tracks}`` record, as a
        child process (the ``remotes`` operation) or a browser page reports it."""
        return cls(
            identity=str(obj["identity"]),
            sid=str(obj.get("sid") or ""),
            name=str(obj.get("name") or ""),
            metadata=str(obj.get("metadata") or ""),
            attributes=_str_map(obj.get("attributes")),
            kind=int(obj.get("kind") or 0),
            tracks={str(k): bool(v) for k, v in (obj.get("tracks") or {}).items()},
        )


def _str_map(value: Mapping[str, object] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcBehaviour:
    """How a method registered with :meth:`Client.register_rpc` answers.

    ``mode`` ``echo`` returns the payload, ``rpc_error`` raises ``RpcError(code, message,
    data)``, ``throw`` raises a plain exception; every mode waits ``delay_s`` first.
    """

    mode: str = "echo"
    code: int = 0
    message: str = ""
    data: str = ""
    delay_s: float = 0.0


class RpcFailure(Exception):
    """An RPC call failed with an ``RpcError`` (any SDK's), normalised."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(f"RpcError {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class JoinRefused(Exception):
    """``connect`` failed; ``status`` is the HTTP status when the SDK reports one."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"join refused ({status if status is not None else '?'}): {message}")
        self.status = status
        self.message = message


# -- the interface ------------------------------------------------------------------------------


class Client:
    """The uniform interface; the base implementation of every method is "unsupported"."""

    adapter: str = "?"
    capabilities: frozenset[str] = frozenset()

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.received: list[DataMsg] = []
        self.streams: list[StreamMsg] = []
        self.rpc_calls: list[tuple[str, str, str]] = []  # (method, caller, payload)
        self.disconnect_reason: int | None = None
        self.reconnected = 0
        self.left: list[str] = []

    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported(f"{self.adapter} adapter cannot {what}")

    # lifecycle
    async def connect(self, url: str, token: str, *, single_pc: bool | None = None) -> None:
        """Join the room at ``url`` (``single_pc`` forces one or two peer connections)."""
        raise self._unsupported("connect")

    async def disconnect(self) -> None:
        """Leave the room (nothing to do when not connected)."""
        return None

    @property
    def connected(self) -> bool:
        """Whether the client is in the room now."""
        return False

    async def local_sid(self) -> str:
        """The participant SID the server gave this client."""
        raise self._unsupported("report its own SID")

    async def remotes(self) -> dict[str, PeerView]:
        """What this client knows about each remote participant, by identity."""
        raise self._unsupported("list remote participants")

    async def room_metadata(self) -> str:
        """The room's metadata as this client sees it."""
        raise self._unsupported("read the room metadata")

    async def rtt_ms(self) -> float | None:
        """The signalling round-trip time in ms, or None when the SDK hides it."""
        raise self._unsupported("report the signalling RTT")

    async def simulate(self, kind: str) -> None:
        """Trigger a simulated scenario (``kind``: a resume, a full reconnect, ...)."""
        raise self._unsupported(f"simulate {kind}")

    async def poll(self) -> None:
        """Refresh state recorded from events (the browser pulls; SDK adapters need nothing)."""

    # data
    async def publish_data(
        self,
        payload: bytes,
        *,
        reliable: bool = True,
        topic: str = "",
        destinations: Sequence[str] = (),
    ) -> None:
        """Send a user packet (to everyone, or to ``destinations``)."""
        raise self._unsupported("publish data")

    # streams
    async def watch_text(self, topic: str) -> None:
        """Record incoming text streams on ``topic`` into ``streams``."""
        raise self._unsupported("receive text streams")

    async def watch_bytes(self, topic: str) -> None:
        """Record incoming byte streams on ``topic`` into ``streams``."""
        raise self._unsupported("receive byte streams")

    async def send_text(
        self,
        text: str,
        *,
        topic: str,
        destinations: Sequence[str] = (),
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Send ``text`` as a text stream on ``topic``."""
        raise self._unsupported("send text streams")

    async def send_bytes(self, data: bytes, *, topic: str, name: str = "blob") -> None:
        """Send ``data`` as a byte stream named ``name`` on ``topic``."""
        raise self._unsupported("send byte streams")

    # rpc
    async def perform_rpc(
        self, destination: str, method: str, payload: str, *, timeout_s: float = 10.0
    ) -> str:
        """Call ``method`` on ``destination`` and return its response payload."""
        raise self._unsupported("perform RPC")

    async def register_rpc(
        self,
        method: str,
        *,
        mode: str = "echo",
        code: int = 0,
        message: str = "",
        data: str = "",
        delay_s: float = 0.0,
    ) -> None:
        """Register ``method``; ``mode`` ``echo`` returns the payload, ``rpc_error`` raises
        ``RpcError(code, message, data)``, ``throw`` raises a plain exception."""
        behaviour = RpcBehaviour(mode=mode, code=code, message=message, data=data, delay_s=delay_s)
        await self._register_rpc(method, behaviour)

    async def _register_rpc(self, method: str, behaviour: RpcBehaviour) -> None:
        # The one hook adapters override, so the keyword signature above is written once.
        raise self._unsupported("register RPC methods")

    # participant state
    async def set_metadata(self, metadata: str) -> None:
        """Set this participant's metadata."""
        raise self._unsupported("set metadata")

    async def set_name(self, name: str) -> None:
        """Set this participant's display name."""
        raise self._unsupported("set its name")

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set (merge) this participant's attributes."""
        raise self._unsupported("set attributes")

    # media
    async def publish_tone(self, freq: float) -> str:
        """Publish a ``freq`` Hz sine tone as a microphone track; return its SID."""
        raise self._unsupported("publish audio")

    async def set_tone_muted(self, muted: bool) -> None:
        """Mute or unmute the published tone."""
        raise self._unsupported("mute a track")

    async def hear_tone(self, identity: str, seconds: float = 1.0) -> float:
        """Listen to ``identity``'s audio for ``seconds``; return its main frequency."""
        raise self._unsupported("subscribe to audio")

    async def close(self) -> None:
        """Release everything (disconnect, stop tasks); never raises."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnect(), 15.0)


ClientFactory = Callable[[str], Client]
"""Makes one :class:`Client` of an adapter from the participant identity it will join as
(the runner calls it once per participant a scenario needs)."""


# -- lkproto and livekit-python -----------------------------------------------------------------


def _is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}


_STATUS_RE: Final = re.compile(r"\b(40[0-9]|50[0-9])\b")


class SdkClient(Client):
    """An adapter over a ``livekit.rtc``-shaped module (``lkproto.rtc`` or ``livekit.rtc``)."""

    def __init__(self, identity: str, mod: ModuleType, *, adapter: str, official: bool) -> None:
        super().__init__(identity)
        self.adapter = adapter
        self.capabilities = frozenset(CAPABILITIES) - ({"rtt"} if official else set())
        self.mod = mod
        self.official = official
        self.room: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tone: tuple[asyncio.Task[None], Any, Any] | None = None

    def _options(self, url: str, single_pc: bool | None) -> Any:
        mod = self.mod
        if self.official:
            return mod.RoomOptions(
                rtc_config=mod.RtcConfiguration(ice_servers=[]), single_peer_connection=single_pc
            )
        rtc_config = (
            mod.RtcConfiguration(ice_addresses=["127.0.0.1"]) if _is_loopback_url(url) else None
        )
        return mod.RoomOptions(rtc_config=rtc_config, single_peer_connection=single_pc)

    async def connect(self, url: str, token: str, *, single_pc: bool | None = None) -> None:
        room = self.mod.Room()
        room.on("data_received", self._on_data)
        room.on("disconnected", self._on_disconnected)
        room.on("reconnected", self._on_reconnected)
        room.on("participant_disconnected", self._on_left)
        self.room = room
        try:
            await room.connect(url, token, self._options(url, single_pc))
        except Exception as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: Exception) -> Exception:
        if self.official:
            if not isinstance(exc, self.mod.ConnectError):
                return exc
            message = str(getattr(exc, "message", exc))
            found = _STATUS_RE.search(message)
            return JoinRefused(int(found.group(1)) if found else None, message)
        from lkproto.errors import ConnectError, JoinRejectedError

        if isinstance(exc, JoinRejectedError):
            return JoinRefused(exc.status, exc.body)
        if isinstance(exc, ConnectError):
            return JoinRefused(None, str(exc))
        return exc

    def _on_data(self, packet: Any) -> None:
        sender = packet.participant.identity if packet.participant is not None else None
        self.received.append(
            DataMsg(
                payload=bytes(packet.data),
                sender=sender or None,
                topic=packet.topic or "",
                reliable=int(packet.kind) == 1,
            )
        )

    def _on_disconnected(self, reason: Any = None) -> None:
        self.disconnect_reason = int(reason) if reason is not None else 0

    def _on_reconnected(self, *args: Any) -> None:
        self.reconnected += 1

    def _on_left(self, participant: Any, *args: Any) -> None:
        self.left.append(participant.identity)

    async def disconnect(self) -> None:
        if self._tone is not None:
            task = self._tone[0]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._tone = None
        room = self.room
        if room is not None and room.isconnected():
            await room.disconnect()

    async def close(self) -> None:
        await super().close()
        for task in list(self._tasks):
            task.cancel()

    @property
    def connected(self) -> bool:
        return self.room is not None and bool(self.room.isconnected())

    async def local_sid(self) -> str:
        return str(self.room.local_participant.sid)

    async def remotes(self) -> dict[str, PeerView]:
        out: dict[str, PeerView] = {}
        for identity, p in self.room.remote_participants.items():
            out[identity] = PeerView(
                identity=identity,
                sid=str(p.sid),
                name=str(p.name),
                metadata=str(p.metadata),
                attributes=dict(p.attributes),
                kind=int(p.kind),
                tracks={sid: bool(pub.muted) for sid, pub in p.track_publications.items()},
            )
        return out

    async def room_metadata(self) -> str:
        return str(self.room.metadata)

    async def rtt_ms(self) -> float | None:
        if self.official:
            raise self._unsupported("report the signalling RTT (no public API)")
        value = self.room.rtt_ms
        return None if value is None else float(value)

    async def simulate(self, kind: str) -> None:
        names = {
            "signal_reconnect": "SIMULATE_SIGNAL_RECONNECT",
            "full_reconnect": "SIMULATE_FULL_RECONNECT",
            "node_failure": "SIMULATE_NODE_FAILURE",
            "server_leave": "SIMULATE_SERVER_LEAVE",
        }
        if kind not in names:
            raise self._unsupported(f"simulate {kind}")
        if self.official:
            await self.room.simulate_scenario(self.mod.SimulateScenarioKind.Value(names[kind]))
        else:
            await self.room.simulate_scenario(self.mod.SimulateScenarioKind[names[kind]])

    async def publish_data(
        self,
        payload: bytes,
        *,
        reliable: bool = True,
        topic: str = "",
        destinations: Sequence[str] = (),
    ) -> None:
        await self.room.local_participant.publish_data(
            payload, reliable=reliable, topic=topic, destination_identities=list(destinations)
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch_text(self, topic: str) -> None:
        def handler(reader: Any, identity: str) -> None:
            self._spawn(self._read(reader, identity, "text", topic))

        self.room.register_text_stream_handler(topic, handler)

    async def watch_bytes(self, topic: str) -> None:
        def handler(reader: Any, identity: str) -> None:
            self._spawn(self._read(reader, identity, "bytes", topic))

        self.room.register_byte_stream_handler(topic, handler)

    async def _read(self, reader: Any, identity: str, kind: str, topic: str) -> None:
        parts: list[bytes] = []
        error: str | None = None
        try:
            async for part in reader:
                parts.append(part.encode() if isinstance(part, str) else bytes(part))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        info = reader.info
        self.streams.append(
            StreamMsg(
                kind=kind,
                topic=topic,
                sender=identity,
                data=b"".join(parts),
                error=error,
                attributes=dict(info.attributes or {}),
                name=str(getattr(info, "name", "") or ""),
            )
        )

    async def send_text(
        self,
        text: str,
        *,
        topic: str,
        destinations: Sequence[str] = (),
        attributes: dict[str, str] | None = None,
    ) -> None:
        await self.room.local_participant.send_text(
            text,
            topic=topic,
            destination_identities=list(destinations) or None,
            attributes=attributes,
        )

    async def send_bytes(self, data: bytes, *, topic: str, name: str = "blob") -> None:
        await self.room.local_participant.send_bytes(data, topic=topic, name=name)

    async def perform_rpc(
        self, destination: str, method: str, payload: str, *, timeout_s: float = 10.0
    ) -> str:
        try:
            return str(
                await self.room.local_participant.perform_rpc(
                    destination_identity=destination,
                    method=method,
                    payload=payload,
                    response_timeout=timeout_s,
                )
            )
        except self.mod.RpcError as exc:
            raise RpcFailure(int(exc.code), str(exc.message), str(exc.data or "")) from exc

    async def _register_rpc(self, method: str, behaviour: RpcBehaviour) -> None:
        mod = self.mod

        async def handler(invocation: Any) -> str:
            self.rpc_calls.append((method, invocation.caller_identity, invocation.payload))
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            if behaviour.mode == "rpc_error":
                raise mod.RpcError(behaviour.code, behaviour.message, behaviour.data)
            if behaviour.mode == "throw":
                raise RuntimeError(behaviour.message or "handler failed")
            return str(invocation.payload)

        self.room.local_participant.register_rpc_method(method, handler)

    async def set_metadata(self, metadata: str) -> None:
        await self.room.local_participant.set_metadata(metadata)

    async def set_name(self, name: str) -> None:
        await self.room.local_participant.set_name(name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await self.room.local_participant.set_attributes(attributes)

    async def publish_tone(self, freq: float) -> str:
        mod = self.mod
        source = mod.AudioSource(_audio.SAMPLE_RATE, 1)
        track = mod.LocalAudioTrack.create_audio_track("tone", source)
        options = mod.TrackPublishOptions(source=mod.TrackSource.SOURCE_MICROPHONE)
        try:
            publication = await self.room.local_participant.publish_track(track, options)
        except Exception as exc:
            raise RuntimeError(f"publish_track refused: {type(exc).__name__}: {exc}") from exc

        async def feed() -> None:
            n = 0
            while True:
                pcm = _audio.sine_frame(freq, n)
                n += _audio.FRAME_SAMPLES
                frame = mod.AudioFrame(pcm, _audio.SAMPLE_RATE, 1, _audio.FRAME_SAMPLES)
                await source.capture_frame(frame)

        self._tone = (asyncio.ensure_future(feed()), track, publication)
        return str(publication.sid)

    async def set_tone_muted(self, muted: bool) -> None:
        if self._tone is None:
            raise RuntimeError("no tone published")
        track = self._tone[1]
        if muted:
            track.mute()
        else:
            track.unmute()

    async def hear_tone(self, identity: str, seconds: float = 1.0) -> float:
        mod = self.mod
        track: Any = None
        while track is None:
            remote = self.room.remote_participants.get(identity)
            for pub in remote.track_publications.values() if remote is not None else ():
                if pub.track is not None and int(pub.kind) == 1:
                    track = pub.track
            if track is None:
                await asyncio.sleep(_POLL_S)
        stream = mod.AudioStream(track, sample_rate=_audio.SAMPLE_RATE, num_channels=1)
        need = int(seconds * _audio.SAMPLE_RATE)
        skip = _audio.SAMPLE_RATE // 4
        chunks: list[bytes] = []
        got = 0
        try:
            async for event in stream:
                pcm = bytes(event.frame.data)
                if not chunks and (skip > 0 or _audio.rms(pcm) < 0.01):
                    if _audio.rms(pcm) >= 0.01:
                        skip -= len(pcm) // 2
                    continue
                chunks.append(pcm)
                got += len(pcm) // 2
                if got >= need:
                    break
        finally:
            await stream.aclose()
        return _audio.peak_frequency(b"".join(chunks)[: need * 2])


class PeerClient(SdkClient):
    """The known-good lkproto peer; ``room`` is its ``lkproto.rtc.Room``.

    Args:
        identity: its identity.
        client_protocol: what it advertises (None: lkproto's default, 2 + DEFLATE_RAW).
        trace: lkproto's wire tap (``RoomOptions.trace``).
    """

    def __init__(
        self,
        identity: str,
        *,
        client_protocol: int | None = None,
        trace: Callable[..., None] | None = None,
    ) -> None:
        from lkproto import rtc

        super().__init__(identity, rtc, adapter="lkproto", official=False)
        self._client_protocol = client_protocol
        self._trace = trace

    def _options(self, url: str, single_pc: bool | None) -> Any:
        options = super()._options(url, single_pc)
        options.client_protocol = self._client_protocol
        options.trace = self._trace
        return options


def lkproto_client(identity: str) -> Client:
    """The ``lkproto`` adapter."""
    return PeerClient(identity)


def livekit_python_client(identity: str) -> Client:
    """The ``livekit-python`` adapter (the official SDK); unsupported when not installed."""
    try:
        from livekit import rtc as lrtc
    except ImportError as exc:
        raise Unsupported(f"the official SDK is not installed ({exc})") from exc
    return SdkClient(identity, lrtc, adapter="livekit-python", official=True)


# -- livekit-js (livekit-client in Chromium) ----------------------------------------------------

HARNESS_ENV: Final = "LKPROTO_BROWSER_HARNESS"
"""Path of ``harness.py`` of the interop browser harness (default: the repository's copy)."""


def browser_harness_path() -> Path:
    """Where the browser harness is expected (``$LKPROTO_BROWSER_HARNESS`` or the repo copy)."""
    env = os.environ.get(HARNESS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "tests" / "interop" / "browser" / "harness.py"


def _load_harness() -> ModuleType:
    path = browser_harness_path()
    if not path.is_file():
        raise Unsupported(f"browser harness not found at {path} (set ${HARNESS_ENV})")
    name = "_lkproto_conformance_browser_harness"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise Unsupported(f"cannot load the browser harness from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    try:
        module.check_browser_setup()
    except Exception as exc:
        raise Unsupported(str(exc)) from exc
    return module


def livekit_js_unavailable() -> str | None:
    """Why the ``livekit-js`` adapter cannot run here (None when the harness is set up)."""
    try:
        _load_harness()
    except Unsupported as exc:
        return str(exc)
    return None


class BrowserPool:
    """Up to ``size`` livekit-client pages (one Chromium each); a scenario borrows one page for
    its whole run and the page is reset before the next borrower.

    A page is one client, so two runs never share one; several pages let the browser lane run
    that many scenarios at once (each in its own room).
    """

    def __init__(self, size: int = 1) -> None:
        self.size = max(1, size)
        self._idle: list[Any] = []
        self._live: list[Any] = []
        self._error: str | None = None
        self._slots = asyncio.Semaphore(self.size)

    async def acquire(self) -> Any:
        """Borrow a started page (starting one if none is idle); give it back with :meth:`release`.

        Raises:
            Unsupported: the harness is missing or Chromium did not start (remembered, so the
                other scenarios report it at once).
        """
        if self._error is not None:
            raise Unsupported(self._error)
        await self._slots.acquire()
        try:
            while self._idle:
                peer = self._idle.pop()
                if peer.driver_pid is not None and not peer._dead:
                    return peer
                await self._discard(peer)
            return await self._start()
        except BaseException:
            self._slots.release()
            raise

    def release(self, peer: Any) -> None:
        """Give back a page borrowed with :meth:`acquire`."""
        self._idle.append(peer)
        self._slots.release()

    async def _start(self) -> Any:
        if self._error is not None:
            raise Unsupported(self._error)
        try:
            harness = _load_harness()
        except Unsupported as exc:
            self._error = str(exc)
            raise
        peer = harness.BrowserPeer(name=f"conformance-js-{len(self._live)}")
        try:
            await peer.start()
        except Exception as exc:
            self._error = f"Chromium/livekit-client did not start: {exc}"
            with contextlib.suppress(Exception):
                await peer.close()
            raise Unsupported(self._error) from exc
        self._live.append(peer)
        return peer

    async def _discard(self, peer: Any) -> None:
        if peer in self._live:
            self._live.remove(peer)
        with contextlib.suppress(Exception):
            await peer.close()

    async def close(self) -> None:
        """Close every page."""
        for peer in list(self._live):
            await self._discard(peer)
        self._idle.clear()


_JS_WATCH: Final = r"""
const [kind, topic] = args;
const emitResult = (fields) => lk.emit('ConformanceStream', { kind, topic, ...fields });
const handler = async (reader, info) => {
  try {
    let bytes;
    if (kind === 'text') {
      bytes = new TextEncoder().encode(await reader.readAll());
    } else {
      const chunks = await reader.readAll();
      const total = chunks.reduce((n, c) => n + c.length, 0);
      bytes = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) { bytes.set(c, off); off += c.length; }
    }
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    emitResult({ identity: info.identity, payload_b64: btoa(s), error: null,
                 attributes: reader.info.attributes ?? {}, name: reader.info.name ?? '' });
  } catch (e) {
    const error = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
    emitResult({ identity: info.identity, payload_b64: '', error,
                 attributes: reader.info?.attributes ?? {}, name: reader.info?.name ?? '' });
  }
};
if (kind === 'text') room.registerTextStreamHandler(topic, handler);
else room.registerByteStreamHandler(topic, handler);
return null;
"""

_JS_SEND_BYTES: Final = r"""
const [b64, topic, name] = args;
const bin = atob(b64);
const bytes = new Uint8Array(bin.length);
for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
await room.localParticipant.sendBytes(bytes, { topic, name });
return null;
"""

_JS_TONE: Final = r"""
const [freq] = args;
const ctx = new AudioContext({ sampleRate: 48000 });
if (ctx.state !== 'running') await ctx.resume();
const osc = ctx.createOscillator();
osc.frequency.value = freq;
const gain = ctx.createGain();
gain.gain.value = 0.3;
const dest = ctx.createMediaStreamDestination();
osc.connect(gain).connect(dest);
osc.start();
const pub = await room.localParticipant.publishTrack(dest.stream.getAudioTracks()[0], {
  name: 'tone', source: LK.Track.Source.Microphone, dtx: false, red: false,
});
lk.state.conformanceTone = { ctx, osc, pub };
return pub.trackSid;
"""

_JS_MUTE: Final = r"""
const t = lk.state.conformanceTone;
if (!t) throw new Error('no tone published');
if (args[0]) await t.pub.mute(); else await t.pub.unmute();
return null;
"""

_JS_HEAR: Final = r"""
const [identity, seconds] = args;
let track = null;
for (let i = 0; i < 200 && !track; i += 1) {
  const p = room.remoteParticipants.get(identity);
  for (const pub of p?.trackPublications.values() ?? []) {
    if (pub.track && pub.kind === 'audio') track = pub.track;
  }
  if (!track) await new Promise((r) => setTimeout(r, 50));
}
if (!track) throw new Error(`no subscribed audio track of ${identity}`);
if (track.attachedElements.length === 0) document.body.appendChild(track.attach());
try { await track.attachedElements[0].play(); } catch (e) {}
const ctx = new AudioContext();
if (ctx.state !== 'running') await ctx.resume();
const src = ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
const an = ctx.createAnalyser();
an.fftSize = 32768;
an.smoothingTimeConstant = 0;
src.connect(an);
await new Promise((r) => setTimeout(r, 1000 * seconds + 500));
const db = new Float32Array(an.frequencyBinCount);
an.getFloatFrequencyData(db);
let peak = 1;
for (let i = 1; i < db.length; i += 1) if (db[i] > db[peak]) peak = i;
src.disconnect();
await ctx.close();
return (peak * ctx.sampleRate) / an.fftSize;
"""

_JS_SIMULATIONS: Final = {
    "signal_reconnect": "signal-reconnect",
    "full_reconnect": "full-reconnect",
    "node_failure": "node-failure",
    "server_leave": "server-leave",
}


class BrowserClient(Client):
    """livekit-client in Chromium (a page borrowed from the :class:`BrowserPool`)."""

    adapter = "livekit-js"
    capabilities = frozenset(CAPABILITIES)

    def __init__(self, identity: str, pool: BrowserPool) -> None:
        super().__init__(identity)
        self._pool = pool
        self._peer: Any = None
        self._since = 0
        self._seen = 0
        self._lease: Any = None

    async def _browser(self) -> Any:
        if self._peer is None:
            self._lease = await self._pool.acquire()
            try:
                await self._lease.call("reset")
            except BaseException:
                self._release()
                raise
            self._peer = self._lease
            self._since = self._peer.last_seq
            self._seen = self._since
        return self._peer

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            self._pool.release(lease)

    async def connect(self, url: str, token: str, *, single_pc: bool | None = None) -> None:
        peer = await self._browser()
        room_options = {} if single_pc is None else {"singlePeerConnection": single_pc}
        try:
            await peer.connect(url, token, room_options=room_options)
        except Exception as exc:
            error = getattr(exc, "error", None)
            if not isinstance(error, dict):
                raise
            status = error.get("status")
            raise JoinRefused(
                int(status) if isinstance(status, int) else None,
                f"{error.get('name')}: {error.get('message')} (reason {error.get('reasonName')})",
            ) from exc

    async def disconnect(self) -> None:
        if self._peer is not None:
            with contextlib.suppress(Exception):
                await self._peer.call("disconnect")

    async def close(self) -> None:
        try:
            if self._peer is not None:
                with contextlib.suppress(Exception):
                    await self._peer.call("reset")
        finally:
            self._peer = None
            self._release()

    @property
    def connected(self) -> bool:
        self._pull()
        return self._peer is not None and self._state == 1

    _state = 0

    def _pull(self) -> None:
        """Fold new page events into the recorded state."""
        peer = self._peer
        if peer is None:
            return
        for ev in peer.find_events(None, None, since=self._seen):
            self._seen = max(self._seen, int(ev["seq"]))
            kind = ev.get("type")
            if kind == "DataReceived":
                self.received.append(
                    DataMsg(
                        payload=peer.payload(ev),
                        sender=ev.get("identity"),
                        topic=ev.get("topic") or "",
                        reliable=ev.get("kind") == "reliable",
                    )
                )
            elif kind == "ConformanceStream":
                self.streams.append(StreamMsg.from_json(ev, sender_key="identity"))
            elif kind == "RpcInvoked":
                self.rpc_calls.append(
                    (str(ev["method"]), str(ev["caller_identity"]), str(ev["payload"]))
                )
            elif kind == "Disconnected":
                reason = ev.get("reason")
                self.disconnect_reason = int(reason) if isinstance(reason, int) else 0
                self._state = 0
            elif kind == "Connected":
                self._state = 1
            elif kind == "Reconnected":
                self.reconnected += 1
                self._state = 1
            elif kind == "ParticipantDisconnected":
                self.left.append(str(ev.get("identity")))
            elif kind == "ConnectionStateChanged":
                state = ev.get("state")
                self._state = 1 if state == "connected" else 0 if state == "disconnected" else 2

    async def poll(self) -> None:
        self._pull()

    async def _info(self) -> dict[str, Any]:
        peer = await self._browser()
        info: dict[str, Any] = await peer.info()
        return info

    async def local_sid(self) -> str:
        return str((await self._info())["local"]["sid"])

    async def remotes(self) -> dict[str, PeerView]:
        peer = await self._browser()
        got = await peer.eval(
            "const out = [];"
            "for (const p of room?.remoteParticipants.values() ?? []) {"
            "  const tracks = {};"
            "  for (const pub of p.trackPublications.values()) tracks[pub.trackSid] = pub.isMuted;"
            "  out.push({identity: p.identity, sid: p.sid, name: p.name ?? '',"
            "   metadata: p.metadata ?? '', attributes: {...p.attributes}, kind: p.kind, tracks});"
            "}"
            "return out;"
        )
        return {str(p["identity"]): PeerView.from_json(p) for p in got}

    async def room_metadata(self) -> str:
        return str((await self._info()).get("room_metadata") or "")

    async def rtt_ms(self) -> float | None:
        peer = await self._browser()
        value = await peer.eval("return room?.engine?.client?.rtt ?? null;")
        return None if value is None else float(value)

    async def simulate(self, kind: str) -> None:
        if kind not in _JS_SIMULATIONS:
            raise self._unsupported(f"simulate {kind}")
        await (await self._browser()).simulate_scenario(_JS_SIMULATIONS[kind])

    async def publish_data(
        self,
        payload: bytes,
        *,
        reliable: bool = True,
        topic: str = "",
        destinations: Sequence[str] = (),
    ) -> None:
        await (await self._browser()).publish_data(
            payload, topic=topic or None, reliable=reliable, destinations=list(destinations) or None
        )

    async def watch_text(self, topic: str) -> None:
        await (await self._browser()).eval(_JS_WATCH, "text", topic)

    async def watch_bytes(self, topic: str) -> None:
        await (await self._browser()).eval(_JS_WATCH, "bytes", topic)

    async def send_text(
        self,
        text: str,
        *,
        topic: str,
        destinations: Sequence[str] = (),
        attributes: dict[str, str] | None = None,
    ) -> None:
        await (await self._browser()).call(
            "sendText",
            text=text,
            topic=topic,
            destinations=list(destinations) or None,
            attributes=attributes,
        )

    async def send_bytes(self, data: bytes, *, topic: str, name: str = "blob") -> None:
        await (await self._browser()).eval(
            _JS_SEND_BYTES, base64.b64encode(data).decode(), topic, name
        )

    async def perform_rpc(
        self, destination: str, method: str, payload: str, *, timeout_s: float = 10.0
    ) -> str:
        peer = await self._browser()
        try:
            return str(
                await peer.perform_rpc(destination, method, payload, response_timeout_s=timeout_s)
            )
        except Exception as exc:
            error = getattr(exc, "error", None)
            if isinstance(error, dict) and error.get("name") == "RpcError":
                raise RpcFailure(
                    int(error.get("code") or 0),
                    str(error.get("message") or ""),
                    str(error.get("data") or ""),
                ) from exc
            raise

    async def _register_rpc(self, method: str, behaviour: RpcBehaviour) -> None:
        await (await self._browser()).register_rpc(
            method,
            mode=behaviour.mode,
            error_code=behaviour.code or None,
            error_message=behaviour.message or None,
            error_data=behaviour.data or None,
            delay_s=behaviour.delay_s,
        )

    async def set_metadata(self, metadata: str) -> None:
        await (await self._browser()).set_metadata(metadata)

    async def set_name(self, name: str) -> None:
        await (await self._browser()).set_name(name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await (await self._browser()).set_attributes(attributes)

    async def publish_tone(self, freq: float) -> str:
        return str(await (await self._browser()).eval(_JS_TONE, freq))

    async def set_tone_muted(self, muted: bool) -> None:
        await (await self._browser()).eval(_JS_MUTE, muted)

    async def hear_tone(self, identity: str, seconds: float = 1.0) -> float:
        peer = await self._browser()
        return float(await peer.eval(_JS_HEAR, identity, seconds, timeout=30.0 + seconds))


def _adapters() -> dict[str, Callable[[BrowserPool], ClientFactory]]:
    def js(pool: BrowserPool) -> ClientFactory:
        return lambda identity: BrowserClient(identity, pool)

    def go(pool: BrowserPool) -> ClientFactory:
        from lkproto.conformance.process_adapters import go_factory

        return go_factory()

    def node(pool: BrowserPool) -> ClientFactory:
        from lkproto.conformance.process_adapters import node_factory

        return node_factory()

    return {
        "lkproto": lambda pool: lkproto_client,
        "livekit-python": lambda pool: livekit_python_client,
        "livekit-js": js,
        "livekit-go": go,
        "livekit-node": node,
    }


ADAPTERS: Final = _adapters()
"""Adapter name -> factory maker (given the shared :class:`BrowserPool`)."""

SERIAL_ADAPTERS: Final = frozenset({"livekit-js"})
"""Adapters with their own lane beside the shared gate: as many runs at once as the
:class:`BrowserPool` has pages."""
