"""The demo's web page (``python -m lkproto.agents.demo web``) in headless Chromium.

:class:`~lkproto.agents.demo.web.WebDemo` serves the page and dispatches a moon agent (lkproto)
per ``/token``; npm ``playwright-core`` drives Debian's Chromium with the same switches as
``tests/interop/browser/driver.mjs`` (read from that file). The page stands in a WebAudio
oscillator for the microphone (``?mic=oscillator``: no getUserMedia, no media permission, see
the harness docstring). The test holds push-to-talk until the agent's interim transcript shows
speech, releases it, and then the page must show thinking, speaking, listening again, the agent's
answer, its picture and a ``get_weather`` RPC answer; a screenshot is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from lkproto.agents.demo import ANSWER_TEXT
from lkproto.agents.demo.web import WebDemo, check_bundle
from lkproto.testing import scaled
from tests.interop.browser.harness import BROWSER_DIR, CHROMIUM, check_browser_setup

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

STEP_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 150.0

# Run with `node --input-type=module -e`; config in $LKPROTO_DEMO_PAGE (JSON). Prints progress
# to stderr and one JSON line (window.demo plus the screenshot path) to stdout.
PAGE_SCRIPT = r"""
import { createRequire } from 'node:module';
import { join } from 'node:path';

const cfg = JSON.parse(process.env.LKPROTO_DEMO_PAGE);
const { chromium } = createRequire(join(cfg.browser_dir, 'package.json'))('playwright-core');
const log = (...a) => process.stderr.write(`[demo-page] ${a.join(' ')}\n`);

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  ignoreDefaultArgs: true,
  args: [...cfg.flags, `--user-data-dir=${cfg.user_data_dir}`, '--remote-debugging-pipe',
         '--no-startup-window'],
  timeout: cfg.step_ms,
});
let page = null;
const demo = () => page.evaluate(() => JSON.parse(JSON.stringify(window.demo)));
const until = async (what, fn, arg) => {
  log('waiting for', what);
  try {
    await page.waitForFunction(fn, arg, { timeout: cfg.step_ms, polling: 100 });
  } catch (e) {
    throw new Error(`${what}: ${e.message}\nwindow.demo = ${JSON.stringify(await demo())}`);
  }
};
try {
  const context = await browser.newContext({ viewport: { width: 820, height: 760 } });
  page = await context.newPage();
  page.on('console', (m) => log(`console.${m.type()}:`, m.text()));
  page.on('pageerror', (e) => log('pageerror:', e.stack ?? e.message));
  await page.goto(`${cfg.url}?mic=oscillator&autoconnect=1`);
  await until('the agent to listen', () => window.demo?.state === 'listening');

  const ptt = page.locator('#ptt');
  await ptt.hover();
  await page.mouse.down();
  // Hold until the agent's interim transcript says it heard at least 1 s of speech.
  await until('an interim user transcript', () =>
    window.demo.transcript.some((s) => {
      const m = /speech (\d+\.\d) s/.exec(s.text);
      return !s.is_agent && !s.final && m && parseFloat(m[1]) >= 1.0;
    }),
  );
  await page.mouse.up();
  await until('the end of the turn', () => window.demo.turnsEnded === 1);
  await until('thinking', () => window.demo.states.includes('thinking'));
  await until('speaking', () => window.demo.states.includes('speaking'));
  await until(
    "the agent's final answer, its picture, and listening again",
    (answer) =>
      window.demo.state === 'listening' &&
      window.demo.image !== null &&
      window.demo.transcript.some((s) => s.is_agent && s.final && s.text === answer),
    cfg.answer,
  );
  await page.locator('#weather-btn').click();
  await until('the get_weather answer', () => window.demo.weather !== null);
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  const ui = {
    state_text: await page.locator('#state').textContent(),
    transcript_text: await page.locator('#transcript').innerText(),
    picture_caption: await page.locator('#picture-caption').textContent(),
  };
  const result = { demo: await demo(), ui, screenshot: cfg.screenshot };
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await browser.close();
}
"""


def chromium_flags() -> list[str]:
    """``MANDATED_FLAGS`` + ``LOOPBACK_FLAGS`` as ``driver.mjs`` declares them (one source)."""
    source = (BROWSER_DIR / "driver.mjs").read_text()
    flags: list[str] = []
    for name in ("MANDATED_FLAGS", "LOOPBACK_FLAGS"):
        match = re.search(rf"const {name} = \[(.*?)\];", source, re.DOTALL)
        assert match, f"driver.mjs has no {name}"
        flags += re.findall(r"'([^']*)'", match.group(1))
    assert "--allow-loopback-in-peer-connection" in flags, flags
    return flags


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


async def _run_page(web: WebDemo, tmp_path: Path) -> dict[str, Any]:
    node = check_browser_setup()
    screenshot = tmp_path / "demo-page.png"
    user_data_dir = tmp_path / "chromium-profile"
    user_data_dir.mkdir()
    config = {
        "browser_dir": str(BROWSER_DIR),
        "chromium": str(CHROMIUM),
        "flags": chromium_flags(),
        "user_data_dir": str(user_data_dir),
        "url": web.url,
        "screenshot": str(screenshot),
        "answer": ANSWER_TEXT,
        "step_ms": round(scaled(STEP_TIMEOUT_S) * 1000),
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        "--input-type=module",
        "-e",
        PAGE_SCRIPT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LKPROTO_DEMO_PAGE": json.dumps(config)},
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), scaled(RUN_TIMEOUT_S))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
        shutil.rmtree(user_data_dir, ignore_errors=True)
    log = stderr.decode(errors="replace")
    assert proc.returncode == 0, f"page script exited {proc.returncode}:\n{log[-6000:]}"
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def test_demo_page_push_to_talk(livekit_server: LocalServer, tmp_path: Path) -> None:
    check_bundle()  # raises with the build command if the page bundle is missing
    async with WebDemo(
        livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    ) as web:
        result = await _run_page(web, tmp_path)
        assert len(web.sessions) == 1, web.sessions
    demo, ui = result["demo"], result["ui"]

    assert demo["errors"] == [], demo["errors"]
    states = demo["states"]
    assert _is_subsequence(["listening", "thinking", "speaking", "listening"], states), states
    assert states[-1] == "listening", states
    assert ui["state_text"] == "listening", ui

    user = [s for s in demo["transcript"] if not s["is_agent"]]
    agent = [s for s in demo["transcript"] if s["is_agent"]]
    assert len(user) == 1, demo["transcript"]
    assert user[0]["final"], user
    assert user[0]["identity"] == web.sessions[0]["identity"], user
    heard = re.fullmatch(r"\[speech (\d+\.\d) s\]", user[0]["text"])
    assert heard, user
    assert float(heard.group(1)) >= 1.0, user
    assert [(s["text"], s["final"]) for s in agent] == [(ANSWER_TEXT, True)], agent
    assert ANSWER_TEXT in ui["transcript_text"], ui
    assert user[0]["text"] in ui["transcript_text"], ui

    image = demo["image"]
    assert image is not None
    assert (image["name"], image["mime_type"], image["sha256_ok"]) == (
        "moon.png",
        "image/png",
        True,
    ), image
    assert "moon.png" in ui["picture_caption"], ui
    assert demo["weather"]["condition"] == "sunny", demo["weather"]

    shot = tmp_path / "demo-page.png"
    assert result["screenshot"] == str(shot)
    assert shot.is_file()
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    assert len(data) > 1024, len(data)
