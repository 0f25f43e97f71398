"""Data-channel labels (lkproto.wire.channels): the protocol's strings, defined once."""

from __future__ import annotations

import re
from pathlib import Path

import lkproto
from lkproto.wire import channels


def test_labels_are_the_protocol_strings() -> None:
    # PROTOCOL-MAP §3: the server matches these labels exactly.
    assert channels.RELIABLE_LABEL == "_reliable"
    assert channels.LOSSY_LABEL == "_lossy"
    assert channels.DATA_TRACK_LABEL == "_data_track"
    assert channels.DATA_CHANNEL_LABELS == ("_reliable", "_lossy", "_data_track")


# Modules not yet switched to lkproto.wire.channels (owned by other work in progress); the list
# may only shrink.
_PENDING = {"asyncio/engine.py", "asyncio/peer.py", "wire/tap.py"}


def test_no_other_module_spells_a_label_as_a_string_literal() -> None:
    root = Path(lkproto.__file__).parent
    literal = re.compile(r"""(["'])(_reliable|_lossy|_data_track)\1""")
    offenders = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "channels.py" and literal.search(path.read_text(encoding="utf-8"))
    )
    assert set(offenders) <= _PENDING, offenders
