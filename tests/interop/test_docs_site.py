"""The documentation site, used in headless Chromium as a person would.

The site is built (``mkdocs build --strict``) into a temporary directory and served over HTTP on
127.0.0.1 (the search runs in a web worker, which a ``file://`` page may not start). npm
``playwright-core`` drives Debian's Chromium with the switches of
``tests/interop/browser/driver.mjs``: it types ``perform_rpc`` into the search box, checks that a
result links to ``LocalParticipant.perform_rpc`` on the ``lkproto.rtc`` API page, follows it, and
checks that the page shows that entry. It also opens a protocol page and checks that the embedded
wire-explorer diagram drew its rows. The first-room program of the Getting started page runs as
printed. Screenshots go to ``$LKPROTO_DOCS_SCREENSHOTS`` when set,
else to the test's temporary directory; the test prints their paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lkproto.testing import scaled
from tests.interop.browser.pages import run_page_script

__all__: list[str] = []

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 300.0
FIRST_ROOM_TIMEOUT_S = 120.0
TARGET = "lkproto.rtc.participant.LocalParticipant.perform_rpc"

# A run_page_script body (tests/interop/browser/pages.py): prints one JSON line of what the pages
# showed.
PAGE_BODY = r"""
  const errors = [];
  const foreign = [];
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(cfg.step_ms);
  page.on('pageerror', (e) => errors.push(e.stack ?? e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('request', (r) => { if (!r.url().startsWith(cfg.base)) foreign.push(r.url()); });

  // 1. Search for perform_rpc from the home page, as a reader would: click the box and type.
  await page.goto(cfg.base);
  await page.locator('input.md-search__input').click();
  await page.keyboard.type('perform_rpc', { delay: 30 });
  await page.locator('.md-search-result__item').first().waitFor();
  // Results for one page fold their further sections into "more on this page": open them all.
  for (const more of await page.locator('details.md-search-result__more').all()) {
    if (!(await more.getAttribute('open'))) await more.locator('summary').click();
  }
  const hrefs = await page.locator('a.md-search-result__link').evaluateAll(
    (links) => links.map((a) => a.href));
  log('results:', hrefs.length);
  await page.screenshot({ path: cfg.search_shot });
  const wanted = page.locator(`a.md-search-result__link[href$="#${cfg.target}"]`).first();
  await wanted.click();
  await page.waitForURL((url) => url.hash === `#${cfg.target}`);
  const entry = page.locator(`[id="${cfg.target}"]`);
  await entry.waitFor();
  const api = {
    url: page.url(),
    visible: await entry.isVisible(),
    heading: (await entry.textContent()).trim(),
    title: await page.title(),
  };
  await page.screenshot({ path: cfg.api_shot });

  // 2. A protocol page: the embedded explorer drew its rows (the diagram comes from a capture).
  await page.goto(`${cfg.base}protocol/rpc/`);
  const frame = page.frameLocator('iframe[src*="captures/rpc.html"]');
  await frame.locator('#diagram').waitFor();
  await frame.locator('#diagram .row.msg').first().waitFor();
  const explorerRows = await frame.locator('#diagram .row.msg').count();
  await page.screenshot({ path: cfg.protocol_shot, fullPage: false });

  console.log(JSON.stringify({ hrefs, api, explorerRows, errors, foreign }));
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _build(site: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(BUILD_TIMEOUT_S),
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"mkdocs build failed:\n{proc.stdout}\n{proc.stderr}"


async def _run_page(base: str, shots: Path, tmp_path: Path) -> dict[str, Any]:
    config = {
        "base": base,
        "target": TARGET,
        "search_shot": str(shots / "docs-search.png"),
        "api_shot": str(shots / "docs-api-perform-rpc.png"),
        "protocol_shot": str(shots / "docs-protocol-rpc.png"),
    }
    return await run_page_script(
        PAGE_BODY,
        tag="docs",
        tmp_path=tmp_path,
        config=config,
    )


async def test_search_finds_perform_rpc_and_leads_to_the_api_page(tmp_path: Path) -> None:
    site = tmp_path / "site"
    await asyncio.to_thread(_build, site)
    shots = Path(os.environ.get("LKPROTO_DOCS_SCREENSHOTS") or tmp_path)
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)

    with _serve(site) as base:
        result = await _run_page(base, shots, tmp_path)

    assert result["errors"] == []
    # Everything came from the local site: no font, script or search index from elsewhere.
    assert result["foreign"] == []
    # The search adds its highlight query (`?h=perform_rpc`) between page and anchor.
    links = [urlsplit(href) for href in result["hrefs"]]
    assert ("/api/rtc/", TARGET) in {(u.path, u.fragment) for u in links}, result["hrefs"]
    api = result["api"]
    url = urlsplit(api["url"])
    assert (url.netloc, url.path, url.fragment) == (urlsplit(base).netloc, "/api/rtc/", TARGET)
    assert api["visible"]
    assert "perform_rpc" in api["heading"]
    assert api["title"].startswith("lkproto.rtc")
    assert result["explorerRows"] >= 10  # the RPC capture's 14 records, as drawn rows
    for name in ("docs-search.png", "docs-api-perform-rpc.png", "docs-protocol-rpc.png"):
        assert (shots / name).stat().st_size > 0
    print(f"\nscreenshots: {shots}")


async def test_getting_started_first_room_runs(tmp_path: Path) -> None:
    """The program on the Getting started page runs as printed and says what the page says."""
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- first-room:begin -->\n```python\n(.*?)```\n<!-- first-room:end -->", page, re.DOTALL
    )
    assert match is not None, "getting-started.md lost its first-room block"
    program = tmp_path / "first_room.py"
    program.write_text(match.group(1), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(program),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), scaled(FIRST_ROOM_TIMEOUT_S))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-4000:]
    expected = "bob got b'hello' on 'chat' from alice"
    assert stdout.decode().strip() == expected
    assert f"It prints `{expected}`" in page
