"""Wire tap driver: hands every traced message to its consumers, and writes JSON Lines files.

The engine holds one :class:`Tracer` per connection attempt, and only when someone listens:
with no ``trace`` callback, no ``tap`` callback and no tap file the engine keeps ``None`` and
each hot path pays one ``is None`` test. Records (:class:`lkproto.wire.tap.TapRecord`) are built
only when a ``tap`` callback or a file wants them; the legacy ``trace`` callback keeps receiving
``(direction, channel, message, raw_bytes, now)``.

Files are shared per path inside a process (two rooms tapping into the same file write whole
lines, never interleaved halves), opened for appending, buffered in memory, written out at most
every :data:`TAP_FLUSH_INTERVAL_S` or when :data:`TAP_BUFFER_BYTES` are pending, and flushed when
the last room using the file disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from lkproto.errors import DecodeError
from lkproto.wire import pb
from lkproto.wire.tap import (
    TapDirection,
    TapRecord,
    message_fields,
    packet_record,
    rtp_record,
    signal_record,
)

if TYPE_CHECKING:
    from lkproto.asyncio.peer import PeerConnection

__all__ = [
    "TAP_BUFFER_BYTES",
    "TAP_ENV_VAR",
    "TAP_FLUSH_INTERVAL_S",
    "TAP_RTP_INTERVAL_S",
    "TapCallback",
    "TapWriter",
    "TraceCallback",
    "Tracer",
    "receivers_by_mid",
    "rtp_counters",
    "sample_rtp",
]

_log = logging.getLogger("lkproto.tap")

TAP_ENV_VAR: Final = "LKPROTO_TAP"
"""Environment variable naming a JSON Lines tap file for every room without ``tap_file``."""
TAP_FLUSH_INTERVAL_S: Final = 1.0
TAP_BUFFER_BYTES: Final = 256 << 10
TAP_RTP_INTERVAL_S: Final = 5.0
"""Period of the per-track RTP counter records."""

TapCallback: TypeAlias = Callable[[TapRecord], None]
TraceCallback: TypeAlias = Callable[[TapDirection, str, object, bytes, float], None]
"""``(direction, channel, message, raw_bytes, now)``; channel is ``signal``, ``_reliable``..."""


class TapWriter:
    """Appends :class:`TapRecord` lines to one file; shared per path via :meth:`acquire`.

    Serializing a record (``json.dumps``) happens on the caller's thread; the file sees one
    ``write`` per flush of whole lines, so a flush never blocks for longer than writing
    :data:`TAP_BUFFER_BYTES` to a local file.
    """

    _open: dict[str, TapWriter] = {}  # noqa: RUF012 - the per-process registry

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - closed by release()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._users = 0
        self._timer: asyncio.TimerHandle | None = None
        self.records_written = 0

    @classmethod
    def acquire(cls, path: str | os.PathLike[str]) -> TapWriter:
        """The writer of ``path`` (opened on first use); pair with :meth:`release`.

        Raises:
            OSError: the file cannot be opened for appending.
        """
        key = os.path.abspath(os.fspath(path))
        writer = cls._open.get(key)
        if writer is None:
            writer = cls._open[key] = cls(key)
        writer._users += 1
        return writer

    def release(self) -> None:
        """One user fewer; the last one flushes and closes the file."""
        self._users -= 1
        if self._users > 0:
            return
        self._open.pop(self.path, None)
        self.flush()
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, record: TapRecord) -> None:
        """Queue one record; flushed within :data:`TAP_FLUSH_INTERVAL_S` (or when full)."""
        if self._file.closed:
            return
        line = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.records_written += 1
        if self._pending_bytes >= TAP_BUFFER_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a test driving it by hand): flushed on release
            self._timer = loop.call_later(TAP_FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        """Write every pending line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self._file.closed:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:  # a full disk must not break the connection
            _log.warning("= tap file %s: %s (records dropped)", self.path, exc)


class Tracer:
    """Fans one traced message out to the legacy callback, the tap callback and the file.

    Build it with :meth:`create`, which returns None when nobody listens.

    Args:
        trace: ``(direction, channel, message, raw_bytes, now)`` callback, or None.
        tap: :class:`TapRecord` callback, or None.
        writer: a shared file writer (released by :meth:`close`), or None.
        clock: wall clock in seconds since the epoch (only the record's ISO time uses it).
    """

    def __init__(
        self,
        *,
        trace: TraceCallback | None,
        tap: TapCallback | None,
        writer: TapWriter | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trace = trace
        self._tap = tap
        self._writer = writer
        self._clock = clock
        self.wants_records = tap is not None or writer is not None
        """True when records are built (a tap callback or a file); the RTP sampler needs this."""
        self.opener: Callable[[TapDirection, pb.DataPacket], pb.DataPacket | None] | None = None
        """Set by an end-to-end encrypted room: what an encrypted packet decrypts to, without
        changing any key state; the record then carries it as ``decrypted`` (issue 16)."""

    @classmethod
    def create(
        cls,
        *,
        trace: TraceCallback | None = None,
        tap: TapCallback | None = None,
        tap_file: str | os.PathLike[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> Tracer | None:
        """A tracer for these consumers, or None if there are none.

        ``tap_file`` None falls back to ``$LKPROTO_TAP``; an empty value means no file.

        Raises:
            OSError: the tap file cannot be opened.
        """
        if tap_file is None:
            tap_file = (os.environ if environ is None else environ).get(TAP_ENV_VAR) or None
        if trace is None and tap is None and not tap_file:
            return None
        writer = TapWriter.acquire(tap_file) if tap_file else None
        return cls(trace=trace, tap=tap, writer=writer)

    @property
    def file_path(self) -> str | None:
        return self._writer.path if self._writer is not None else None

    def signal(
        self,
        direction: TapDirection,
        message: pb.SignalRequest | pb.SignalResponse | DecodeError,
        raw: bytes,
        now: float,
    ) -> None:
        """A signal frame went out or came in (``message`` is the error if it did not decode)."""
        if self._trace is not None:
            self._trace(direction, "signal", message, raw, now)
        if self.wants_records:
            self._emit(signal_record(direction, message, raw, mono=now, wall=self._clock()))

    def packet(
        self,
        direction: TapDirection,
        channel: str,
        message: pb.DataPacket | DecodeError,
        raw: bytes,
        now: float,
    ) -> None:
        """A data-channel message went out or came in on ``channel``."""
        if self._trace is not None:
            self._trace(direction, channel, message, raw, now)
        if self.wants_records:
            record = packet_record(direction, channel, message, raw, mono=now, wall=self._clock())
            opener = self.opener
            if (
                opener is not None
                and isinstance(message, pb.DataPacket)
                and message.HasField("encrypted_packet")
            ):
                opened = opener(direction, message)
                if opened is not None:
                    record = dataclasses.replace(record, decrypted=message_fields(opened))
            self._emit(record)

    def rtp(
        self,
        direction: TapDirection,
        *,
        track_sid: str,
        kind: str,
        packets: int,
        bytes_: int | None,
        now: float,
        final: bool = False,
    ) -> None:
        """Cumulative RTP counters of one track (records only; the legacy callback never saw
        media)."""
        if self.wants_records:
            self._emit(
                rtp_record(
                    direction,
                    track_sid=track_sid,
                    kind=kind,
                    packets=packets,
                    bytes_=bytes_,
                    mono=now,
                    wall=self._clock(),
                    final=final,
                )
            )

    def _emit(self, record: TapRecord) -> None:
        if self._tap is not None:
            try:
                self._tap(record)
            except Exception:
                _log.exception("tap callback failed")
        if self._writer is not None:
            self._writer.write(record)

    def close(self) -> None:
        """Flush and release the file (idempotent); callbacks keep working."""
        writer, self._writer = self._writer, None
        self.wants_records = self._tap is not None
        if writer is not None:
            writer.release()


# -- RTP counters (aiortc) ----------------------------------------------------------------------


def receivers_by_mid(pc: PeerConnection) -> dict[str, Any]:
    """aiortc's ``RTCRtpReceiver`` of every negotiated section of ``pc``, by mid.

    Kept for callers of the tap; :meth:`PeerConnection.receivers` is the accessor.
    """
    return dict(pc.receivers())


async def rtp_counters(endpoint: Any, stats_type: str) -> tuple[int, int | None] | None:
    """``(packets, bytes)`` summed over the ``stats_type`` entries (``outbound-rtp`` for a
    sender, ``inbound-rtp`` for a receiver) of ``endpoint.getStats()``; None if it has none.
    aiortc's inbound stats count no bytes: then ``bytes`` is None."""
    report = await endpoint.getStats()
    packets = 0
    total_bytes: int | None = None
    found = False
    for stats in report.values():
        if getattr(stats, "type", None) != stats_type:
            continue
        found = True
        packets += int(getattr(stats, "packetsSent", getattr(stats, "packetsReceived", 0)))
        counted = getattr(stats, "bytesSent", getattr(stats, "bytesReceived", None))
        if counted is not None:
            total_bytes = (total_bytes or 0) + int(counted)
    return (packets, total_bytes) if found else None


async def sample_rtp(
    tracer: Tracer,
    endpoints: Iterable[tuple[TapDirection, str, str, Any]],
    now: float,
    *,
    final: bool = False,
) -> None:
    """One RTP record per ``(direction, track_sid, kind, sender_or_receiver)``; endpoints that
    fail or have no stream yet are skipped."""
    for direction, sid, kind, endpoint in endpoints:
        stats_type = "outbound-rtp" if direction == ">" else "inbound-rtp"
        with contextlib.suppress(Exception):
            counters = await rtp_counters(endpoint, stats_type)
            if counters is not None:
                tracer.rtp(
                    direction,
                    track_sid=sid,
                    kind=kind,
                    packets=counters[0],
                    bytes_=counters[1],
                    now=now,
                    final=final,
                )
