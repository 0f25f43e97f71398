"""Preparing aiortc's sender of a published track before its first frame.

The decision of *what* to announce lives in :mod:`lkproto.core.publish`; this module applies the
same :class:`~lkproto.core.publish.TrackDescription` to the media side: our Opus encoder for audio
(mono sources as mono, at the asked or default bitrate), the asked start bitrate for a video
encoder, the keyframe hook of a pre-encoded source, or the layer senders of a simulcast track
(:class:`SimulcastSender`). The engine calls :func:`prepare_sender` each time it attaches a track
to a sender (first publish, and again after a full reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from lkproto.core.publish import TrackDescription
from lkproto.core.simulcast import RID_EXTENSION_URI, SimulcastLayer, rid_extension_id

__all__ = [
    "SENDER_REPORT_INTERVAL_S",
    "SimulcastSender",
    "install_opus_encoder",
    "install_video_encoder",
    "prepare_sender",
    "simulcast_of",
]

_log = logging.getLogger("lkproto.media")

SENDER_REPORT_INTERVAL_S: Final = 0.2
"""How often each simulcast layer sends an RTCP sender report. livekit-server switches a
subscriber to another layer only with a recent report of both layers (see
:func:`lkproto.asyncio._seam.send_sender_report`); with aiortc's own 0.5 to 1.5 s interval no
switch succeeded in testing, with 0.2 s every one did."""

# The media drivers are imported on first use, not at the top: the engine imports this module,
# and lkproto.asyncio.audio/video load PyAV, which a data-only client never needs (issue 18).


def install_opus_encoder(sender: Any, *, channels: int, bitrate: int) -> None:
    """:func:`lkproto.asyncio.audio.install_opus_encoder`, imported on first use."""
    from lkproto.asyncio import audio

    audio.install_opus_encoder(sender, channels=channels, bitrate=bitrate)


def install_video_encoder(sender: Any, *, mime_type: str, bitrate: int) -> None:
    """:func:`lkproto.asyncio.video.install_video_encoder`, imported on first use."""
    from lkproto.asyncio import video

    video.install_video_encoder(sender, mime_type=mime_type, bitrate=bitrate)


def _default_opus_bitrate() -> int:
    from lkproto.asyncio.audio import DEFAULT_OPUS_BITRATE

    return DEFAULT_OPUS_BITRATE


def prepare_sender(sender: Any, description: TrackDescription) -> None:
    """Set up aiortc's ``RTCRtpSender`` for ``description`` before it sends anything.

    Args:
        sender: the sender of the track's transceiver.
        description: what was announced for the track; ``max_bitrate_bps`` is the Opus bitrate
            for audio (0: :data:`~lkproto.asyncio.audio.DEFAULT_OPUS_BITRATE`) and the encoder's
            start bitrate for video (0: aiortc's own).
    """
    if description.kind == "video":
        # A pre-encoded source hears the server's keyframe requests through its sender; it has
        # no encoder to configure.
        bind_sender = getattr(getattr(sender, "track", None), "bind_sender", None)
        if bind_sender is not None:
            bind_sender(sender)
        elif description.simulcast:
            _SIMULCAST[sender] = SimulcastSender(sender, description)
        elif description.max_bitrate_bps:
            install_video_encoder(
                sender, mime_type=description.mime_type, bitrate=description.max_bitrate_bps
            )
        return
    install_opus_encoder(
        sender,
        channels=2 if description.stereo else 1,
        bitrate=description.max_bitrate_bps or _default_opus_bitrate(),
    )


_SIMULCAST: weakref.WeakKeyDictionary[Any, SimulcastSender] = weakref.WeakKeyDictionary()


def simulcast_of(sender: Any) -> SimulcastSender | None:
    """The :class:`SimulcastSender` behind a transceiver's sender, or None (single layer)."""
    return _SIMULCAST.get(sender)


class SimulcastSender:
    """Sends one simulcast track as one aiortc ``RTCRtpSender`` per layer on the same section.

    aiortc's ``RTCRtpSender`` sends one stream and knows no rids. The transceiver's own sender
    therefore stays silent: its ``send`` is intercepted (:func:`lkproto.asyncio._seam.
    intercept_send`) to learn the negotiated parameters, and one extra sender per layer is
    started with them, plus the rid header extension (its id the one our offer announced, see
    :func:`lkproto.core.simulcast.announce_simulcast`), on a transport stand-in that writes each
    packet's rid (:class:`lkproto.asyncio._seam.RidTaggingTransport`). The layer senders read
    :class:`lkproto.asyncio.video.LayerTrack` s of one :class:`~lkproto.asyncio.video.
    SimulcastSplitter` over the source's track, each encoder starting at its layer's bitrate.

    A task then keeps, every :data:`SENDER_REPORT_INTERVAL_S`: a sender report per layer, the
    layers muted while the track is (the engine mutes the transceiver's sender), and ends
    everything once the track is unpublished (the sender loses its track) or the connection
    closes. :meth:`set_wanted` pauses the layers no subscriber watches (dynacast).

    Args:
        sender: the transceiver's ``RTCRtpSender`` (its track is the source's).
        description: the track's announcement; ``simulcast_layers`` are the layers.
    """

    def __init__(self, sender: Any, description: TrackDescription) -> None:
        from lkproto.asyncio import _seam
        from lkproto.asyncio.video import SimulcastSplitter

        self.description = description
        self.layers: tuple[SimulcastLayer, ...] = description.simulcast_layers
        self._sender = sender
        self._splitter = SimulcastSplitter(sender.track)
        self._tracks = {
            layer.rid: self._splitter.layer(layer.width, layer.height, layer.max_framerate)
            for layer in self.layers
        }
        self.senders: dict[str, Any] = {}
        self._layer_hooks: list[Callable[[Any], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._started = False
        _seam.intercept_send(sender, self._start)

    def add_layer_hook(self, hook: Callable[[Any], None]) -> None:
        """Call ``hook`` with each layer's ``RTCRtpSender`` once its encoder is installed.

        The layer senders only exist once the section is negotiated, after the engine's
        ``sender_hook`` ran on the transceiver's sender; this is how that hook reaches them (the
        E2EE driver wraps each layer's encoder in its frame cryptor, as the official SDKs
        encrypt every simulcast layer). Layers already started get it at once.
        """
        self._layer_hooks.append(hook)
        for layer_sender in self.senders.values():
            hook(layer_sender)

    def set_wanted(self, rids: Iterable[str]) -> None:
        """Encode only the layers in ``rids``; the others wait without encoding."""
        wanted = set(rids)
        for rid, track in self._tracks.items():
            if track.running != (rid in wanted):
                _log.debug("= simulcast layer %s %s", rid, "on" if rid in wanted else "off")
                track.set_running(rid in wanted)

    @property
    def wanted(self) -> frozenset[str]:
        """The rids currently encoding."""
        return frozenset(rid for rid, track in self._tracks.items() if track.running)

    async def _start(self, parameters: Any) -> None:
        import aiortc
        from aiortc.rtcrtpparameters import (
            RTCRtpHeaderExtensionParameters,
            RTCRtpSendParameters,
        )

        from lkproto.asyncio import _seam

        # aiortc calls the section's ``send`` again after each later negotiation (another track
        # published or unpublished): the layers already run, and new layer senders (new SSRCs
        # for the same rids) would be refused by the server ("duplicate layer") and left
        # running beside the old ones.
        if self._started:
            return
        self._started = True
        section = "\n".join(f"a=extmap:{e.id} {e.uri}" for e in parameters.headerExtensions)
        extensions = [
            *parameters.headerExtensions,
            RTCRtpHeaderExtensionParameters(id=rid_extension_id(section), uri=RID_EXTENSION_URI),
        ]
        layer_parameters = RTCRtpSendParameters(
            # The first codec is the negotiated one; no RTX: a NACKed packet is sent again as is.
            codecs=parameters.codecs[:1],
            headerExtensions=extensions,
            muxId=parameters.muxId,
            rtcp=parameters.rtcp,
        )
        transport = self._sender.transport
        for layer in self.layers:
            layer_sender = aiortc.RTCRtpSender(
                self._tracks[layer.rid],
                _seam.RidTaggingTransport(transport, layer.rid, extensions),  # type: ignore[arg-type]
            )
            install_video_encoder(
                layer_sender, mime_type=self.description.mime_type, bitrate=layer.bitrate_bps
            )
            for hook in self._layer_hooks:
                hook(layer_sender)
            await layer_sender.send(layer_parameters)
            self.senders[layer.rid] = layer_sender
        self._task = asyncio.get_running_loop().create_task(
            self._keep(), name="lkproto-simulcast-reports"
        )

    async def _keep(self) -> None:
        from lkproto.asyncio import _seam

        try:
            while self._sender.track is not None and self._sender.transport.state != "closed":
                enabled = _seam.sender_enabled(self._sender)
                for layer_sender in self.senders.values():
                    if enabled is not None:
                        _seam.set_sender_enabled(layer_sender, enabled)
                    await _seam.send_sender_report(layer_sender)
                await asyncio.sleep(SENDER_REPORT_INTERVAL_S)
        except Exception as exc:  # an aiortc without the internals: the layers keep sending
            _log.warning("= simulcast sender reports stopped: %s", exc)
            return
        await self.stop()

    async def stop(self) -> None:
        """Stop every layer sender and the splitter (unpublished or disconnected)."""
        self._splitter.stop()
        for layer_sender in self.senders.values():
            with contextlib.suppress(Exception):
                await layer_sender.stop()
