"""Wire explorer: one self-contained HTML page drawing a tap as a sequence diagram.

Theory of operation. :func:`build_model` reads :class:`~lkproto.wire.tap.TapRecord` s in order
and turns each into a row of the diagram: an arrow between two lanes (``client``, the tap owner;
``server``, the SFU; one lane per remote participant whose data packets we received, and per
destination we sent to), with the record's time, type, channel and direction. While reading it

* groups data-stream packets (``stream_header``/``stream_chunk``/``stream_trailer``) by
  ``stream_id`` (PROTOCOL-MAP §5);
* pairs RPCs by request id: v1 ``rpc_request`` / ``rpc_ack`` / ``rpc_response`` packets, and v2
  requests and responses that travel as text streams on ``lk.rpc_request`` / ``lk.rpc_response``
  with the ``lk.rpc_request_id`` attribute, whose ack and errors are still v1 packets
  (PROTOCOL-MAP §6);
* marks the session's turning points: a second ``SignalResponse.join`` (a full reconnect), a
  ``SignalResponse.reconnect`` (a resume), ``leave`` both ways and ``simulate`` requests
  (PROTOCOL-MAP §10);
* shows ``DataPacket.encrypted_packet`` as encrypted and, when the tap owner held the key, groups
  and pairs it by what it decrypts to (``TapRecord.decrypted``, PROTOCOL-MAP §11).

:func:`render_html` embeds that model as JSON in the page next to a static script and style
sheet (``explorer_assets/``), so the page needs nothing from the network. Every record field is
remote input: the JSON is escaped so no ``<``, ``>``, ``&`` or line separator survives literally,
the script only ever writes record text with ``textContent``, and the title is HTML-escaped.

Limits (:class:`ExplorerLimits`) keep a page the browser can open: records are drawn from the
first one on until :data:`EXPLORER_MAX_RECORDS` records or :data:`EXPLORER_MAX_DATA_BYTES` of
embedded data, whichever comes first (the page says how many were left out; filter the tap with
``lkproto tap --type/--participant/--topic`` to look at others); each record keeps at most
:data:`EXPLORER_MAX_RAW_BYTES` raw bytes and :data:`EXPLORER_MAX_STRING_CHARS` characters per
string field (the detail pane says when something was cut); at most
:data:`EXPLORER_MAX_PEER_LANES` participant lanes are drawn (the rest share an ``others`` lane).

No I/O besides reading the two assets from the installed package, no clock.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from lkproto.errors import LocalProtocolError
from lkproto.wire.tap import CHANNEL_RTP, CHANNEL_SIGNAL, JsonValue, TapRecord

__all__ = [
    "EXPLORER_MAX_DATA_BYTES",
    "EXPLORER_MAX_PEER_LANES",
    "EXPLORER_MAX_RAW_BYTES",
    "EXPLORER_MAX_RECORDS",
    "EXPLORER_MAX_STRING_CHARS",
    "LANE_CLIENT",
    "LANE_OTHERS",
    "LANE_SERVER",
    "ExplorerLimits",
    "ExplorerModel",
    "Row",
    "RpcSummary",
    "StreamSummary",
    "build_model",
    "embed_json",
    "render_html",
]

EXPLORER_MAX_RECORDS: Final = 5000
"""Records drawn per page (one DOM row each)."""
EXPLORER_MAX_DATA_BYTES: Final = 8 << 20
"""Embedded record data per page; a session of stream chunks reaches it before the record limit."""
EXPLORER_MAX_RAW_BYTES: Final = 4096
"""Raw bytes kept per record for the hex dump (a stream chunk carries up to 15 000)."""
EXPLORER_MAX_STRING_CHARS: Final = 4096
"""Characters kept per string in the decoded fields (SDPs, base64 chunk contents)."""
EXPLORER_MAX_PEER_LANES: Final = 12
"""Participant lanes before the rest share one ``others`` lane."""

LANE_CLIENT: Final = "client"
"""Lane id of the tapped client (the side that wrote the capture)."""
LANE_SERVER: Final = "server"
"""Lane id of the SFU: the other end of every signal message, and the sender of data packets
that name no participant."""
LANE_OTHERS: Final = "peer:…others"
"""Lane id shared by the participants past the peer-lane limit (default
:data:`EXPLORER_MAX_PEER_LANES`); the first ones get a ``peer:<identity>`` lane each."""

# PROTOCOL-MAP §6: RPC v2 streams and their attribute naming the request.
_RPC_REQUEST_TOPIC: Final = "lk.rpc_request"
_RPC_RESPONSE_TOPIC: Final = "lk.rpc_response"
_RPC_ID_ATTRIBUTE: Final = "lk.rpc_request_id"
_RPC_METHOD_ATTRIBUTE: Final = "lk.rpc_request_method"

# DataPacket oneof members (PROTOCOL-MAP §4) the explorer reads.
_STREAM_MEMBERS: Final = ("stream_header", "stream_chunk", "stream_trailer")
_RPC_MEMBERS: Final = ("rpc_request", "rpc_ack", "rpc_response")
_PAYLOAD_MEMBERS: Final = (
    "user",
    "speaker",
    "sip_dtmf",
    "transcription",
    "metrics",
    "chat_message",
    *_RPC_MEMBERS,
    *_STREAM_MEMBERS,
    "encrypted_packet",
)

_ASSETS: Final = "explorer_assets"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplorerLimits:
    """How much of a tap one page holds (see the module docstring).

    Raises:
        LocalProtocolError: a limit is not a positive integer.
    """

    max_records: int = EXPLORER_MAX_RECORDS
    max_data_bytes: int = EXPLORER_MAX_DATA_BYTES
    max_raw_bytes: int = EXPLORER_MAX_RAW_BYTES
    max_string_chars: int = EXPLORER_MAX_STRING_CHARS
    max_peer_lanes: int = EXPLORER_MAX_PEER_LANES

    def __post_init__(self) -> None:
        for name in (
            "max_records",
            "max_data_bytes",
            "max_raw_bytes",
            "max_string_chars",
            "max_peer_lanes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise LocalProtocolError(f"{name} must be a positive integer, got {value!r}")


@dataclass(slots=True, kw_only=True)
class Row:
    """One record as the page draws it.

    Attributes:
        index: position in the tap (0-based), and in ``ExplorerModel.rows``: rows are a prefix.
        t: seconds since the first record (monotonic clock).
        source: lane the arrow starts from.
        target: lane the arrow points to.
        label: the arrow's text (the type without its envelope, plus a short hint).
        encrypted: an ``encrypted_packet``; ``decrypted`` on the record says what it held.
        stream_id: the data stream this packet belongs to.
        rpc_id: the RPC request this packet belongs to.
        rpc_role: ``request``, ``ack`` or ``response`` (v2 stream chunks too).
        marker: a turning point drawn across all lanes (``resume``, ``full reconnect``...).
        clipped: raw bytes or a string field were cut to the limits.
        data: the row as the page's JSON (record values already cut to the limits).
    """

    index: int
    record: TapRecord
    t: float
    source: str
    target: str
    label: str
    encrypted: bool = False
    stream_id: str | None = None
    rpc_id: str | None = None
    rpc_role: str | None = None
    marker: str | None = None
    clipped: bool = False
    data: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class StreamSummary:
    """A data stream: its packets in order (row indexes) and what its header said."""

    stream_id: str
    topic: str | None = None
    kind: str | None = None
    rows: list[int] = field(default_factory=list)
    chunks: int = 0
    closed: bool = False
    rpc_id: str | None = None


@dataclass(slots=True, kw_only=True)
class RpcSummary:
    """One RPC call: the rows of its request, ack and response (v2 streams included)."""

    request_id: str
    method: str | None = None
    version: int | None = None
    request: list[int] = field(default_factory=list)
    ack: list[int] = field(default_factory=list)
    response: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True, kw_only=True)
class ExplorerModel:
    """Everything the page shows, before it becomes JSON."""

    lanes: list[tuple[str, str]]
    """``(lane id, label)`` left to right."""
    rows: list[Row]
    streams: dict[str, StreamSummary]
    rpcs: dict[str, RpcSummary]
    total: int
    """Records in the tap, including those left out by the limits."""
    identity: str | None

    @property
    def omitted(self) -> int:
        """Records left out by the limit."""
        return self.total - len(self.rows)


def _dict(value: JsonValue | None) -> dict[str, JsonValue]:
    return value if isinstance(value, dict) else {}


def _str(value: JsonValue | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _member(packet: Mapping[str, JsonValue]) -> str | None:
    for name in _PAYLOAD_MEMBERS:
        if name in packet:
            return name
    return None


class _Builder:
    def __init__(self, limits: ExplorerLimits) -> None:
        self.limits = limits
        self.rows: list[Row] = []
        self.streams: dict[str, StreamSummary] = {}
        self.rpcs: dict[str, RpcSummary] = {}
        self.peers: list[str] = []
        self.identity: str | None = None
        self.joins = 0
        self.t0: float | None = None

    def lane_of(self, identity: str | None) -> str:
        if not identity:
            return LANE_SERVER
        lane = f"peer:{identity}"
        if identity in self.peers:
            return lane
        if len(self.peers) >= self.limits.max_peer_lanes:
            return LANE_OTHERS
        self.peers.append(identity)
        return lane

    def rpc(self, request_id: str) -> RpcSummary:
        rpc = self.rpcs.get(request_id)
        if rpc is None:
            rpc = self.rpcs[request_id] = RpcSummary(request_id=request_id)
        return rpc

    def add(self, index: int, record: TapRecord) -> Row:
        if self.t0 is None:
            self.t0 = record.mono
        label = record.type.split(".", 1)[-1] if "." in record.type else record.type
        row = Row(
            index=index,
            record=record,
            t=record.mono - self.t0,
            source=LANE_CLIENT,
            target=LANE_SERVER,
            label=label,
        )
        self.rows.append(row)
        if record.channel == CHANNEL_SIGNAL:
            self._signal(row)
        elif record.channel != CHANNEL_RTP:
            self._packet(row)
        if record.direction == "<":
            row.source, row.target = row.target, row.source
        row.data = _row_json(row, self.limits)
        return row

    def _signal(self, row: Row) -> None:
        record = row.record
        match record.type:
            case "SignalResponse.join":
                self.joins += 1
                if self.identity is None:
                    self.identity = record.participant
                if self.joins > 1:
                    row.marker = "full reconnect: joined again"
            case "SignalResponse.reconnect":
                row.marker = "resumed (signal reconnected)"
            case "SignalResponse.leave" | "SignalRequest.leave":
                leave = _dict(_dict(record.fields).get("leave"))
                action = _str(leave.get("action")) or "DISCONNECT"
                reason = _str(leave.get("reason"))
                row.marker = f"leave: {action}" + (f" ({reason})" if reason else "")
            case "SignalRequest.simulate":
                row.marker = "simulate scenario"
            case _:
                pass

    def _packet(self, row: Row) -> None:
        record = row.record
        outer = _dict(record.fields)
        packet = outer
        if "encrypted_packet" in outer:
            row.encrypted = True
            if record.decrypted is not None:
                packet = record.decrypted
                member = _member(packet)
                row.label = f"encrypted → {member}" if member else "encrypted"
            else:
                row.label = "encrypted (no key)"
        if record.direction == "<":
            row.target = self.lane_of(record.participant)
        else:
            destinations = outer.get("destination_identities")
            if isinstance(destinations, list) and len(destinations) == 1:
                only = destinations[0]
                row.target = self.lane_of(only if isinstance(only, str) else None)
        member = _member(packet)
        if member in _STREAM_MEMBERS:
            self._stream(row, member, _dict(packet.get(member)))
        elif member in _RPC_MEMBERS:
            self._rpc_packet(row, member, _dict(packet.get(member)))

    def _stream(self, row: Row, member: str | None, body: dict[str, JsonValue]) -> None:
        stream_id = _str(body.get("stream_id"))
        if stream_id is None:
            return
        row.stream_id = stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self.streams[stream_id] = StreamSummary(stream_id=stream_id)
        stream.rows.append(row.index)
        if member == "stream_header":
            stream.topic = _str(body.get("topic"))
            stream.kind = (
                "text" if "text_header" in body else "byte" if "byte_header" in body else None
            )
            attributes = _dict(body.get("attributes"))
            request_id = _str(attributes.get(_RPC_ID_ATTRIBUTE))
            if request_id is not None and stream.topic in (
                _RPC_REQUEST_TOPIC,
                _RPC_RESPONSE_TOPIC,
            ):
                stream.rpc_id = request_id
                rpc = self.rpc(request_id)
                if stream.topic == _RPC_REQUEST_TOPIC:
                    rpc.version = 2
                    rpc.method = _str(attributes.get(_RPC_METHOD_ATTRIBUTE)) or rpc.method
            # A header with inline_content is the whole stream (no chunks, no trailer).
            if "inline_content" in body:
                stream.closed = True
                row.label += " (inline)"
            # The row shows the record's topic; an encrypted packet's is only in its clear form.
            if row.record.topic is None and stream.topic:
                row.label += f" {stream.topic}"
        elif member == "stream_chunk":
            stream.chunks += 1
            row.label += f" #{body.get('chunk_index', 0)}"
        else:
            stream.closed = True
        if stream.rpc_id is not None:
            row.rpc_id = stream.rpc_id
            row.rpc_role = "request" if stream.topic == _RPC_REQUEST_TOPIC else "response"
            role_rows = (
                self.rpc(stream.rpc_id).request
                if row.rpc_role == "request"
                else self.rpc(stream.rpc_id).response
            )
            role_rows.append(row.index)

    def _rpc_packet(self, row: Row, member: str | None, body: dict[str, JsonValue]) -> None:
        key = "id" if member == "rpc_request" else "request_id"
        request_id = _str(body.get(key))
        if request_id is None:
            return
        rpc = self.rpc(request_id)
        row.rpc_id = request_id
        position = row.index
        if member == "rpc_request":
            row.rpc_role = "request"
            rpc.request.append(position)
            rpc.method = _str(body.get("method")) or rpc.method
            version = body.get("version")
            rpc.version = version if isinstance(version, int) else 1
            row.label += f" {rpc.method}" if rpc.method else ""
        elif member == "rpc_ack":
            row.rpc_role = "ack"
            rpc.ack.append(position)
        else:
            row.rpc_role = "response"
            rpc.response.append(position)
            error = _dict(body.get("error"))
            if error:
                rpc.error = f"{error.get('code', '?')}: {error.get('message', '')}"
                row.label += " error"


def build_model(
    records: Iterable[TapRecord], limits: ExplorerLimits | None = None
) -> ExplorerModel:
    """Lay ``records`` out as a sequence diagram (see the module docstring).

    Args:
        records: tap records in the order they were written.
        limits: page limits; :class:`ExplorerLimits` defaults when None.

    Returns:
        The model :func:`render_html` draws; ``rows`` holds at most ``limits.max_records``.
    """
    limits = limits or ExplorerLimits()
    builder = _Builder(limits)
    total = 0
    used_bytes = 0
    full = False
    for index, record in enumerate(records):
        total += 1
        if full:
            continue
        row = builder.add(index, record)
        used_bytes += len(embed_json(row.data))
        if len(builder.rows) >= limits.max_records or used_bytes >= limits.max_data_bytes:
            full = True
    client_label = f"client ({builder.identity})" if builder.identity else "client"
    lanes = [(LANE_CLIENT, client_label), (LANE_SERVER, "server (SFU)")]
    lanes += [(f"peer:{peer}", peer) for peer in builder.peers]
    if any(LANE_OTHERS in (row.source, row.target) for row in builder.rows):
        lanes.append((LANE_OTHERS, "others"))
    return ExplorerModel(
        lanes=lanes,
        rows=builder.rows,
        streams=builder.streams,
        rpcs=builder.rpcs,
        total=total,
        identity=builder.identity,
    )


def _clip(value: JsonValue, limit: int) -> tuple[JsonValue, bool]:
    """``value`` with every string longer than ``limit`` cut; True when something was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, False
        return f"{value[:limit]}… ({len(value)} chars)", True
    if isinstance(value, list):
        items = [_clip(item, limit) for item in value]
        return [item for item, _ in items], any(cut for _, cut in items)
    if isinstance(value, dict):
        pairs = {key: _clip(item, limit) for key, item in value.items()}
        return {key: item for key, (item, _) in pairs.items()}, any(
            cut for _, cut in pairs.values()
        )
    return value, False


def _row_json(row: Row, limits: ExplorerLimits) -> dict[str, JsonValue]:
    record = row.record
    fields, cut_fields = _clip(record.fields, limits.max_string_chars)
    decrypted, cut_decrypted = _clip(record.decrypted, limits.max_string_chars)
    raw = record.raw[: limits.max_raw_bytes]
    row.clipped = cut_fields or cut_decrypted or len(raw) < len(record.raw)
    return {
        "i": row.index,
        "t": round(row.t, 6),
        "time": record.time,
        "dir": record.direction,
        "ch": record.channel,
        "type": record.type,
        "label": row.label,
        "from": row.source,
        "to": row.target,
        "participant": record.participant,
        "topic": record.topic,
        "error": record.error,
        "enc": row.encrypted,
        "stream": row.stream_id,
        "rpc": row.rpc_id,
        "role": row.rpc_role,
        "marker": row.marker,
        "fields": fields,
        "decrypted": decrypted,
        "raw": base64.b64encode(raw).decode("ascii"),
        "size": len(record.raw),
        "clipped": row.clipped,
    }


def _model_json(model: ExplorerModel, limits: ExplorerLimits) -> dict[str, JsonValue]:
    streams: list[JsonValue] = [
        {
            "id": s.stream_id,
            "topic": s.topic,
            "kind": s.kind,
            "rows": list[JsonValue](s.rows),
            "chunks": s.chunks,
            "closed": s.closed,
            "rpc": s.rpc_id,
        }
        for s in model.streams.values()
    ]
    rpcs: list[JsonValue] = [
        {
            "id": r.request_id,
            "method": r.method,
            "version": r.version,
            "request": list[JsonValue](r.request),
            "ack": list[JsonValue](r.ack),
            "response": list[JsonValue](r.response),
            "error": r.error,
        }
        for r in model.rpcs.values()
    ]
    return {
        "lanes": [{"id": lane, "label": label} for lane, label in model.lanes],
        "rows": [row.data for row in model.rows],
        "streams": streams,
        "rpcs": rpcs,
        "total": model.total,
        "omitted": model.omitted,
        "limits": {
            "max_records": limits.max_records,
            "max_data_bytes": limits.max_data_bytes,
            "max_raw_bytes": limits.max_raw_bytes,
            "max_string_chars": limits.max_string_chars,
        },
    }


_JSON_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def embed_json(value: JsonValue) -> str:
    """``value`` as JSON safe inside an HTML ``<script>`` element.

    JSON has no ``<``, ``>`` or ``&`` outside strings, and inside strings their ``\\u`` escapes
    mean the same characters, so no record text can close the element (``</script>``), open a
    comment (``<!--``) or form an entity, whatever a remote participant put in it.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_JSON_ESCAPES)


def _asset(name: str) -> str:
    # The assets hold no "</" (a unit test checks), so inlining them cannot end their element.
    return resources.files(__package__ or "lkproto.wire").joinpath(_ASSETS, name).read_text("utf-8")


def render_html(
    records: Iterable[TapRecord],
    *,
    title: str = "lkproto wire explorer",
    limits: ExplorerLimits | None = None,
) -> str:
    """The explorer page for ``records``: one HTML document, inline style and script only.

    Args:
        records: tap records in the order they were written.
        title: the page title (escaped; a file name is a good choice).
        limits: page limits; :class:`ExplorerLimits` defaults when None.

    Returns:
        The document; it loads nothing from anywhere.
    """
    limits = limits or ExplorerLimits()
    model = build_model(records, limits)
    data = embed_json(_model_json(model, limits))
    safe_title = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No network: the policy forbids every fetch, so a page that tried would fail loudly.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{safe_title}</title>\n"
        f"<style>\n{_asset('explorer.css')}</style>\n"
        "</head>\n<body>\n"
        f'<header><h1 id="title">{safe_title}</h1><span id="stats"></span></header>\n'
        '<div id="filters"></div>\n'
        '<main><section id="diagram" aria-label="sequence diagram"></section>'
        '<aside id="detail" aria-live="polite"></aside></main>\n'
        f'<script type="application/json" id="lk-data">{data}</script>\n'
        f"<script>\n{_asset('explorer.js')}</script>\n"
        "</body>\n</html>\n"
    )
