"""One Playwright script against headless Chromium, for tests that drive a whole page.

:class:`~tests.interop.browser.harness.BrowserPeer` keeps one livekit-client page alive and
runs single operations in it. Some tests instead walk through a page of their own (the demo
page, the tap explorer, the documentation site) as a reader would: they write the walk as a
Playwright script body and hand it to :func:`run_page_script`, which

- prefixes it with the launch every such script shares: ``playwright-core`` from this folder's
  ``node_modules``, Debian's Chromium with the driver's own switches (:func:`chromium_flags`),
  a private ``--user-data-dir`` and the step timeout; the body runs inside ``try`` and the
  browser closes in ``finally``;
- passes the configuration as JSON in ``$LKPROTO_PAGE`` (the body reads it as ``cfg``; it may
  log with ``log(...)``, which writes to stderr with the test's tag);
- runs ``node --input-type=module -e`` in its own process group, bounded by a scaled timeout,
  kills the group if it overruns, removes the profile, and returns the last stdout line, which
  the body prints as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from typing import TYPE_CHECKING, Any

from lkproto.testing import scaled
from tests.interop.browser.harness import BROWSER_DIR, CHROMIUM, check_browser_setup

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "CONFIG_ENV",
    "PAGE_RUN_TIMEOUT_S",
    "PAGE_STEP_TIMEOUT_S",
    "chromium_flags",
    "page_script",
    "run_page_script",
]

CONFIG_ENV = "LKPROTO_PAGE"
"""The environment variable carrying a script's configuration (JSON)."""

PAGE_STEP_TIMEOUT_S = 30.0
"""Playwright's default timeout per step (launch, navigation, waits), before scaling."""

PAGE_RUN_TIMEOUT_S = 150.0
"""The default bound of a whole script run, before scaling."""

# What every script starts with. `cfg.flags` are the driver's switches (loopback only, no
# media permission: see harness.py); the profile is private so parallel runs do not share it.
_PRELUDE = r"""
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const cfg = JSON.parse(process.env.%(env)s);
const { chromium } = createRequire(join(cfg.browser_dir, 'package.json'))('playwright-core');
const log = (...a) => process.stderr.write(`[%(tag)s] ${a.join(' ')}\n`);

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  ignoreDefaultArgs: true,
  args: [...cfg.flags, `--user-data-dir=${cfg.user_data_dir}`, '--remote-debugging-pipe',
         '--no-startup-window'],
  timeout: cfg.step_ms,
});
try {
"""

_EPILOGUE = r"""
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


def page_script(body: str, *, tag: str) -> str:
    """The whole ES module: the shared launch, then ``body`` in ``try``, closing in ``finally``.

    Args:
        body: JavaScript that uses ``browser``, ``cfg`` and ``log`` and prints one JSON line.
        tag: the prefix of the script's stderr lines (``[tag] ...``).
    """
    return _PRELUDE % {"env": CONFIG_ENV, "tag": tag} + body + _EPILOGUE


async def run_page_script(
    body: str,
    *,
    tag: str,
    tmp_path: Path,
    config: Mapping[str, object],
    step_timeout_s: float = PAGE_STEP_TIMEOUT_S,
    run_timeout_s: float = PAGE_RUN_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``body`` (see :func:`page_script`) and return the JSON object it printed last.

    Args:
        body: the script body.
        tag: its log prefix.
        tmp_path: where the private Chromium profile is made (and removed afterwards).
        config: the test's own settings, merged into ``cfg`` next to the shared ones
            (``browser_dir``, ``chromium``, ``flags``, ``user_data_dir``, ``step_ms``).
        step_timeout_s: Playwright's timeout per step (launch, waits), before scaling.
        run_timeout_s: the whole run's bound, before scaling.

    Raises:
        AssertionError: the script failed (its stderr tail is in the message).
        TimeoutError: it ran longer than ``run_timeout_s`` (scaled); it was killed.
    """
    node = check_browser_setup()
    user_data_dir = tmp_path / "chromium-profile"
    user_data_dir.mkdir()
    cfg = {
        "browser_dir": str(BROWSER_DIR),
        "chromium": str(CHROMIUM),
        "flags": chromium_flags(),
        "user_data_dir": str(user_data_dir),
        "step_ms": round(scaled(step_timeout_s) * 1000),
        **config,
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        "--input-type=module",
        "-e",
        page_script(body, tag=tag),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, CONFIG_ENV: json.dumps(cfg)},
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), scaled(run_timeout_s))
    finally:
        if proc.returncode is None:
            # Its own session: the group holds node and every Chromium process it started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        shutil.rmtree(user_data_dir, ignore_errors=True)
    log = stderr.decode(errors="replace")
    assert proc.returncode == 0, f"page script exited {proc.returncode}:\n{log[-6000:]}"
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result
