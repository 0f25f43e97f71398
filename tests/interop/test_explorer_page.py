"""The wire explorer page of a real session, opened in headless Chromium as a person would.

Two lkproto rooms meet on :class:`~lkproto.testing.LocalServer`; alice taps to a file while they
exchange packets, a text stream and an RPC v2 call, and alice's signal socket is dropped so the
session resumes. ``lkproto tap FILE --html -o PAGE`` renders the page; npm ``playwright-core``
drives Debian's Chromium (the switches of ``tests/interop/browser/driver.mjs``) to open it from
``file://``, click messages, read the detail pane, use the filters and save a screenshot.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from lkproto.wire.tap import TapRecord
from tests.interop.browser.pages import run_page_script

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 120.0
HOSTILE_TOPIC = '</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'

# A run_page_script body (tests/interop/browser/pages.py): prints one JSON line of what the page
# showed.
PAGE_BODY = r"""
  const errors = [];
  const requests = [];
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(cfg.step_ms);
  page.on('console', (m) => {
    log(`console.${m.type()}:`, m.text());
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.stack ?? e.message));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(cfg.page).href);
  await page.waitForFunction(() => window.explorer !== undefined);
  const explorer = () => page.evaluate(() => ({ ...window.explorer, select: undefined }));
  const detail = async () => ({
    type: await page.locator('#detail-type').textContent(),
    index: await page.locator('#detail').getAttribute('data-index'),
    fields: await page.locator('#fields').textContent(),
    raw: await page.locator('#raw').textContent(),
    text: await page.locator('#detail').innerText(),
  });
  const initial = await explorer();
  const lanes = await page.locator('.row.head .lane-name').allTextContents();

  log('click the join');
  await page.locator('.row.msg[data-type="SignalResponse.join"]').first().click();
  const join = await detail();

  log('click the RPC ack');
  await page.locator('.row.msg[data-type="DataPacket.rpc_ack"]').first().click();
  const ack = await detail();
  log('show only that RPC');
  await page.locator('#detail button.only').last().click();
  const rpcRows = await page.locator('.row.msg:visible').evaluateAll(
    (nodes) => nodes.map((n) => n.dataset.type));
  await page.locator('#group button').click();

  log('filter by type');
  await page.selectOption('#f-type', 'DataPacket.user');
  const userRows = await page.locator('.row.msg:visible').evaluateAll(
    (nodes) => nodes.map((n) => n.dataset.type));
  const afterType = await explorer();
  await page.selectOption('#f-type', '');

  log('filter by participant and search');
  await page.selectOption('#f-participant', 'bob');
  await page.fill('#search', cfg.search);
  const searched = await page.locator('.row.msg:visible').evaluateAll(
    (nodes) => nodes.map((n) => n.dataset.type));
  await page.selectOption('#f-participant', '');
  await page.fill('#search', '');

  await page.locator('.row.msg[data-type="DataPacket.stream_header"]').first().click();
  const stream = await detail();
  const markers = await page.locator('.marker').allTextContents();
  const topics = await page.locator('#f-topic option').allTextContents();
  const injected = await page.evaluate(() => ({
    pwned: window.pwned ?? null, images: document.images.length,
    scripts: document.scripts.length }));
  await page.screenshot({ path: cfg.screenshot });
  const result = { initial, lanes, join, ack, rpcRows, userRows, afterType, searched, stream,
                   markers, topics, injected, errors, requests, screenshot: cfg.screenshot };
  process.stdout.write(JSON.stringify(result) + '\n');
"""


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(TIMEOUT_S)
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _options(**kwargs: object) -> rtc.RoomOptions:
    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        **kwargs,  # type: ignore[arg-type]
    )


async def _record_session(server: LocalServer, tap_file: Path) -> None:
    room_name = _unique("explorer")
    alice, bob = rtc.Room(), rtc.Room()
    got_data: list[rtc.DataPacket] = []
    got_text: list[str] = []
    reconnected = asyncio.Event()
    bob.on("data_received", got_data.append)
    alice.on("data_received", got_data.append)
    alice.on("reconnected", reconnected.set)

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            got_text.append(await reader.read_all())

        asyncio.get_running_loop().create_task(read())

    bob.register_text_stream_handler("notes", on_text)
    await alice.connect(
        server.url, server.create_token("alice", room_name), _options(tap_file=str(tap_file))
    )
    try:
        await bob.connect(server.url, server.create_token("bob", room_name), _options())
        try:
            bob.local_participant.register_rpc_method("echo", lambda data: data.payload.upper())
            await _until(
                lambda: "bob" in {p.identity for p in alice.remote_participants.values()}, "bob"
            )
            await alice.local_participant.publish_data(b"to bob", topic="chat")
            await _until(lambda: len(got_data) >= 1, "alice's packet at bob")
            await bob.local_participant.publish_data(b"to alice", topic="chat")
            await _until(lambda: len(got_data) >= 2, "bob's packet at alice")
            await alice.local_participant.send_text("hello notes", topic="notes")
            await _until(lambda: got_text == ["hello notes"], "the text stream")
            answer = await alice.local_participant.perform_rpc(
                destination_identity="bob", method="echo", payload="ping"
            )
            assert answer == "PING"
            await asyncio.wait_for(
                alice.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT),
                scaled(TIMEOUT_S),
            )
            await asyncio.wait_for(reconnected.wait(), scaled(TIMEOUT_S))
            await bob.local_participant.publish_data(b"after resume", topic="chat")
            await _until(lambda: len(got_data) >= 3, "bob's packet after the resume")
            # Record text is remote input: this topic must show as text, not become markup.
            await bob.local_participant.publish_data(b"<b>x</b>", topic=HOSTILE_TOPIC)
            await _until(lambda: len(got_data) >= 4, "bob's packet with a hostile topic")
        finally:
            await bob.disconnect()
    finally:
        await alice.disconnect()


def _stream_id(record: TapRecord) -> str | None:
    """The stream a header, chunk or trailer packet belongs to (None for any other record)."""
    kind = record.type.removeprefix("DataPacket.")
    if kind not in {"stream_header", "stream_chunk", "stream_trailer"}:
        return None
    body = (record.fields or {}).get(kind)
    stream_id = body.get("stream_id") if isinstance(body, dict) else None
    return stream_id if isinstance(stream_id, str) else None


async def _open_page(page: Path, tmp_path: Path, search: str) -> dict[str, Any]:
    config = {"page": str(page), "search": search, "screenshot": str(tmp_path / "explorer.png")}
    return await run_page_script(
        PAGE_BODY,
        tag="explorer",
        tmp_path=tmp_path,
        config=config,
        run_timeout_s=RUN_TIMEOUT_S,
    )


async def test_explorer_page_of_a_real_session(livekit_server: LocalServer, tmp_path: Path) -> None:
    tap_file = tmp_path / "session.jsonl"
    await _record_session(livekit_server, tap_file)
    records = [TapRecord.from_json(json.loads(x)) for x in tap_file.read_text().splitlines()]
    types = {r.type for r in records}
    assert {"SignalResponse.join", "SignalResponse.reconnect", "DataPacket.rpc_ack"} <= types
    rpc_topics = {r.topic for r in records if r.type == "DataPacket.stream_header"}
    assert {"notes", "lk.rpc_request", "lk.rpc_response"} <= rpc_topics  # RPC v2 (§6)

    page = tmp_path / "session.html"
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lkproto", "tap", str(tap_file), "--html", "-o", str(page)],
        check=True,
        timeout=scaled(60),
    )
    rpc_id = next(
        r.fields["rpc_ack"]["request_id"]  # type: ignore[index,call-overload]
        for r in records
        if r.type == "DataPacket.rpc_ack"
    )
    result = await _open_page(page, tmp_path, search="chat")

    assert result["errors"] == []
    # Nothing but the page itself was requested: it is self-contained.
    assert all(url.startswith("file://") for url in result["requests"]), result["requests"]
    assert result["initial"]["rows"] == result["initial"]["total"] == len(records)
    assert result["lanes"] == ["client (alice)", "server (SFU)", "bob"]

    # The join's detail pane shows its decoded fields and raw bytes.
    join = result["join"]
    assert join["type"] == "SignalResponse.join"
    fields = json.loads(join["fields"])
    assert fields["join"]["participant"]["identity"] == "alice"
    first_join = next(r for r in records if r.type == "SignalResponse.join")
    assert fields == first_join.fields
    assert join["raw"].split("\n")[0].startswith("000000  ")
    assert first_join.raw[:4].hex(" ") in join["raw"]

    # The RPC ack is paired with the v2 request and response streams.
    ack = result["ack"]
    assert ack["type"] == "DataPacket.rpc_ack"
    assert json.loads(ack["fields"])["rpc_ack"]["request_id"] == rpc_id
    assert "RPC echo (v2)" in ack["text"]
    # A small v2 request and response travel as one header packet each, content inline (to peers
    # of client_protocol 2); a larger one adds chunks and a trailer. The rows shown are exactly
    # the ack plus the packets of the two RPC streams, whichever shape they took.
    rpc_streams = {
        _stream_id(r) for r in records if r.topic in {"lk.rpc_request", "lk.rpc_response"}
    }
    rpc_packets = {r.type for r in records if _stream_id(r) in rpc_streams}
    assert "DataPacket.stream_header" in rpc_packets
    assert set(result["rpcRows"]) == rpc_packets | {"DataPacket.rpc_ack"}

    # Filters: by type, then by participant plus a search.
    user = [r for r in records if r.type == "DataPacket.user"]
    assert result["userRows"] == ["DataPacket.user"] * len(user)
    assert result["afterType"]["visible"] == len(user)
    from_bob = [r for r in user if r.participant == "bob" and r.topic == "chat"]
    assert result["searched"] == ["DataPacket.user"] * len(from_bob)
    assert len(from_bob) == 2

    # The text stream's packets are grouped; the resume is marked.
    assert "Stream " in result["stream"]["text"]
    assert any("resumed" in m for m in result["markers"]), result["markers"]
    assert (tmp_path / "explorer.png").stat().st_size > 0

    # The hostile topic is an option of the topic filter, as text; nothing ran, nothing appeared.
    assert HOSTILE_TOPIC in result["topics"]
    assert result["injected"] == {"pwned": None, "images": 0, "scripts": 2}
