"""The public surface type-checks the way official-SDK users write code, and every module says
what it exports.

``mypy --strict`` runs (as a subprocess) on code written for ``from livekit import rtc`` with the
import swapped to ``from lkproto import rtc``; a second file holds mistakes mypy must report, so
the check cannot pass by accident (e.g. if everything were ``Any``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import lkproto
from lkproto.testing import scaled

REPO = Path(__file__).resolve().parents[2]
MYPY_TIMEOUT_S = 300.0

GOOD = """
from __future__ import annotations

import asyncio
from typing import assert_type

from lkproto import rtc


async def main(url: str, token: str) -> None:
    room = rtc.Room()

    @room.on("participant_connected")
    def on_participant_connected(participant: rtc.RemoteParticipant) -> None:
        print(participant.identity, participant.kind, participant.attributes)

    @room.on("track_muted")
    def on_track_muted(participant: rtc.Participant, publication: rtc.TrackPublication) -> None:
        print(participant.sid, publication.sid, publication.muted)

    def on_disconnected(reason: rtc.DisconnectReason | int) -> None:
        print("left", reason)

    room.on("disconnected", on_disconnected)
    room.once("connection_state_changed", lambda state: print(state))
    room.off("disconnected", on_disconnected)

    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    await room.disconnect()
    await room.connect(
        url,
        token,
        rtc.RoomOptions(
            auto_subscribe=False,
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        ),
    )
    assert_type(await room.sid, str)
    assert_type(room.connection_state, rtc.ConnectionState)
    local = room.local_participant
    assert_type(local, rtc.LocalParticipant)
    await local.set_metadata("hello")
    await local.set_attributes({"k": "v"})
    for identity, participant in room.remote_participants.items():
        assert_type(identity, str)
        assert_type(participant, rtc.RemoteParticipant)
        kind: rtc.ParticipantKind = participant.kind
        quality: rtc.ConnectionQuality = participant.connection_quality
        for sid, publication in participant.track_publications.items():
            print(sid, publication.name, kind, quality)

    async for ev in room.events():
        match ev:
            case rtc.events.ParticipantConnected(participant=p):
                assert_type(p, rtc.RemoteParticipant)
            case rtc.events.ParticipantAttributesChanged(changed_attributes=changed):
                assert_type(changed, dict[str, str])
            case rtc.events.DataReceived(packet=packet):
                assert_type(packet.data, bytes)
                assert_type(packet.kind, rtc.DataPacketKind)
            case rtc.events.ConnectionQualityChanged(participant=p2, quality=q):
                assert_type(p2, rtc.Participant)
                assert_type(q, rtc.ConnectionQuality)
            case rtc.events.Disconnected(reason=reason):
                assert_type(reason, rtc.DisconnectReason | int)
            case _:
                print(ev.name, ev.args())
    await room.disconnect(reason=rtc.DisconnectReason.CLIENT_INITIATED)


asyncio.run(main("ws://127.0.0.1:7880", "token"))
"""

# Each line marked ``# E`` must get a mypy error; no other line may.
BAD = """
from __future__ import annotations

from lkproto import rtc


async def main(url: str, token: str) -> None:
    room = rtc.Room()
    room.on("participant_conected", print)  # E
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe="yes"))  # E
    await room.connect(url, 42)  # E
    name: int = room.name  # E
    room.local_participant.set_metadata("not awaited")  # E
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """mypy --strict over GOOD and BAD: file stem -> line -> messages."""
    pytest.importorskip("mypy")
    work = tmp_path_factory.mktemp("typing")
    for stem, text in (("good", GOOD), ("bad", BAD)):
        (work / f"{stem}.py").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    env = dict(os.environ)
    # lkproto is installed editable through an import hook, which mypy does not follow
    env["MYPYPATH"] = str(REPO)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--python-version",
            "3.11",
            "--config-file",
            str(REPO / "pyproject.toml"),
            # only the snippets are judged; lkproto's own check is `mypy` on the package
            "--follow-imports",
            "silent",
            "--cache-dir",
            str(work / ".mypy_cache"),
            "--show-error-codes",
            "--no-error-summary",
            "--no-pretty",
            str(work / "good.py"),
            str(work / "bad.py"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(MYPY_TIMEOUT_S),
        check=False,
    )
    if proc.returncode not in (0, 1):
        pytest.fail(f"mypy crashed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors: dict[str, dict[int, list[str]]] = {"good": {}, "bad": {}}
    pattern = re.compile(r"^(?:.*[/\\])?(good|bad)\.py:(\d+): (error|note): (.*)$")
    for line in proc.stdout.splitlines():
        match = pattern.match(line)
        if match is None:
            if line.strip():
                pytest.fail(f"unexpected mypy output: {line}\n{proc.stdout}")
            continue
        stem, lineno, level, message = match.groups()
        if level == "error":
            errors[stem].setdefault(int(lineno), []).append(message)
    return errors


def test_official_style_code_passes_mypy_strict(
    mypy_errors: dict[str, dict[int, list[str]]],
) -> None:
    assert mypy_errors["good"] == {}


def test_mistakes_are_reported_by_mypy(mypy_errors: dict[str, dict[int, list[str]]]) -> None:
    lines = textwrap.dedent(BAD).lstrip().splitlines()
    expected = {n for n, line in enumerate(lines, start=1) if line.endswith("# E")}
    assert set(mypy_errors["bad"]) == expected, mypy_errors["bad"]


# -- __all__ ---------------------------------------------------------------------------------------


def _public_modules() -> list[str]:
    names = [lkproto.__name__]
    for info in pkgutil.walk_packages(lkproto.__path__, prefix="lkproto."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue  # private: lkproto._pb, lkproto.asyncio._ice, lkproto.__main__, ...
        names.append(info.name)
    return sorted(names)


def _module_params() -> list[object]:
    return [pytest.param(name, id=name) for name in _public_modules()]


def test_the_walk_finds_the_packages() -> None:
    found = set(_public_modules())
    assert {"lkproto", "lkproto.rtc", "lkproto.rtc.room", "lkproto.core.roster"} <= found
    assert not any(part.startswith("_") for name in found for part in name.split(".")[1:])


@pytest.mark.parametrize("name", _module_params())
def test_public_module_declares_all_and_every_name_resolves(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = module.__dict__.get("__all__")
    assert exported is not None, f"{name} has no __all__"
    assert isinstance(exported, list | tuple), f"{name}.__all__ is {type(exported).__name__}"
    assert all(isinstance(item, str) for item in exported)
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == [], f"{name}.__all__ names that do not resolve: {missing}"
