"""A Python program run against a LocalServer in a subprocess, read line by line (bounded).

Shared by the examples test and the livekit.rtc port test: the program gets the server from the
``LIVEKIT_URL`` / ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET`` variables, as users run it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Self

from lkproto.testing import scaled

if TYPE_CHECKING:
    from types import TracebackType

    from lkproto.testing import LocalServer

__all__ = ["LINE_TIMEOUT_S", "ROOT", "RUN_TIMEOUT_S", "ServerProgram", "run_program"]

ROOT = Path(__file__).resolve().parents[2]
# One run (joins, a few messages, leaves) takes 1-10 s here; the bounds are for a loaded CI.
RUN_TIMEOUT_S = 60.0
LINE_TIMEOUT_S = 30.0


class ServerProgram:
    """``python <script> args...`` as a subprocess; stdout by line, stderr kept aside.

    Args:
        server: the server the program talks to (passed in the ``LIVEKIT_*`` variables).
        script: the program.
        *args: its command-line arguments.
    """

    def __init__(self, server: LocalServer, script: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.stderr = ""
        self.status: int | None = None
        self.script = script
        self._argv = [sys.executable, str(script), *args]
        self._env = {
            **os.environ,
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": server.api_key,
            "LIVEKIT_API_SECRET": server.api_secret,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self._env.pop("LIVEKIT_TOKEN", None)
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[bytes] | None = None

    @property
    def output(self) -> str:
        """Everything read so far, stdout then stderr (for assertion messages)."""
        return "\n".join(self.lines) + ("\n--- stderr ---\n" + self.stderr if self.stderr else "")

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            env=self._env,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._proc.stderr.read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await self._collect_stderr()

    async def _collect_stderr(self) -> None:
        if self._stderr_task is not None:
            self.stderr = (await self._stderr_task).decode(errors="replace")
            self._stderr_task = None

    async def _read_line(self) -> str | None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        raw = await self._proc.stdout.readline()
        if not raw:
            return None
        line = raw.decode(errors="replace").rstrip("\n")
        self.lines.append(line)
        return line

    async def wait_line(self, pattern: str, within: float = LINE_TIMEOUT_S) -> str:
        """The first line matching the regex ``pattern``; fails on exit or after ``within`` s."""
        for line in self.lines:
            if re.search(pattern, line):
                return line
        try:
            async with asyncio.timeout(scaled(within)):
                while (read := await self._read_line()) is not None:
                    if re.search(pattern, read):
                        return read
        except TimeoutError:
            pass
        await self._kill_and_collect()
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}")

    async def finish(self, within: float = RUN_TIMEOUT_S) -> int:
        """Read to the end and return the exit status (fails after ``within`` seconds)."""
        assert self._proc is not None
        try:
            async with asyncio.timeout(scaled(within)):
                while await self._read_line() is not None:
                    pass
                status = await self._proc.wait()
        except TimeoutError:
            await self._kill_and_collect()
            raise AssertionError(f"still running after {within:g} s:\n{self.output}") from None
        await self._collect_stderr()
        self.status = status
        return status

    async def _kill_and_collect(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        await self._collect_stderr()


async def run_program(server: LocalServer, script: Path, *args: str) -> ServerProgram:
    """Run ``script`` to the end; the finished program (``.status``, ``.lines``, ``.stderr``)."""
    async with ServerProgram(server, script, *args) as program:
        await program.finish()
    return program
