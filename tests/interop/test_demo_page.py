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

import re
from typing import TYPE_CHECKING, Any

import pytest

from lkproto.agents.demo import ANSWER_TEXT
from lkproto.agents.demo.web import WebDemo, check_bundle
from tests.interop.browser.pages import run_page_script

if TYPE_CHECKING:
    from pathlib import Path

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop


# A run_page_script body (tests/interop/browser/pages.py): prints one JSON line (window.demo, what
# the page shows, the screenshot path).
PAGE_BODY = r"""
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
"""


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


async def _run_page(web: WebDemo, tmp_path: Path) -> dict[str, Any]:
    screenshot = tmp_path / "demo-page.png"
    config = {"url": web.url, "screenshot": str(screenshot), "answer": ANSWER_TEXT}
    return await run_page_script(
        PAGE_BODY,
        tag="demo-page",
        tmp_path=tmp_path,
        config=config,
    )


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
