"""The console demo (``python -m lkproto.agents.demo``, what ``tools/demo.sh`` runs after set-up).

It starts its own local livekit-server, an agent and a Python frontend, and must finish by itself
with status 0; its output must tell the whole conversation in order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from lkproto.agents.demo import ANSWER_TEXT, CHAT_REPLY_TEXT, QUESTION_TEXT
from lkproto.testing import scaled

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.interop

DEMO_TIMEOUT_S = 120.0


def _index(lines: list[str], wanted: str, start: int = 0) -> int:
    """Index of the first line at or after ``start`` equal to ``wanted`` (after stripping)."""
    for i in range(start, len(lines)):
        if lines[i].strip() == wanted:
            return i
    raise AssertionError(f"no line {wanted!r} after line {start}:\n" + "\n".join(lines))


def test_console_demo(livekit_server_binary: Path, tmp_path: Path) -> None:
    del livekit_server_binary  # built or found before the demo needs it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lkproto.agents.demo", "--log-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=scaled(DEMO_TIMEOUT_S),
        env=env,
        check=False,
    )
    output = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output}\n--- stderr ---\n{proc.stderr}"
    lines = output.splitlines()

    # states in order: listening -> thinking -> speaking -> listening
    at = _index(lines, "[agent: listening]")
    think = _index(lines, "[agent: thinking]", at)
    speak = _index(lines, "[agent: speaking]", think)
    back = _index(lines, "[agent: listening]", speak)
    assert "[agent: initializing]" in [line.strip() for line in lines[:at]], output

    # the user's turn: interim "[speech x.x s]" updates, then the final text
    user_interim = [
        line
        for line in lines[at:]
        if re.fullmatch(r"you:\s+\[speech \d+\.\d s\] \.\.\.", line.strip())
    ]
    assert user_interim, output
    user_final = _index(lines, f"you:   {QUESTION_TEXT}", at)
    assert user_final > lines.index(user_interim[-1]), output

    # the agent's answer: growing interim text, then final, before it listens again
    agent_interim = [
        line.strip()
        for line in lines[speak:back]
        if line.strip().startswith("agent: ") and line.endswith(" ...")
    ]
    assert len(agent_interim) >= 2, output
    assert all(
        ANSWER_TEXT.startswith(line[len("agent: ") : -len(" ...")]) for line in agent_interim
    )
    _index(lines, f"agent: {ANSWER_TEXT}", speak)

    # the picture, the RPC answer and the chat reply
    image = [line for line in lines if line.startswith("image from moon-agent: moon.png")]
    assert len(image) == 1, output
    assert "(image/png, 96x96)" in image[0], image
    assert "(matches the agent's)" in image[0], image
    rpc = [line for line in lines if line.startswith("rpc get_weather(")]
    assert len(rpc) == 1, output
    assert '"condition": "sunny"' in rpc[0], rpc
    _index(lines, f"agent: {CHAT_REPLY_TEXT}", back)

    assert lines[-1].startswith("demo: ok: "), output
