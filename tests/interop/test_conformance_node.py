"""The ``livekit-node`` conformance adapter (@livekit/rtc-node in a child process) on a scenario
subset.

The subset covers each capability the adapter maps (data, RPC, streams with a broken stream,
participant state, a refused join's status, media both ways, a full reconnect) and its one
refusal (no local-track mute in @livekit/rtc-node 1.1.0); the whole catalogue is run with
``python -m lkproto conformance --local --client livekit-node`` (docs/guides/conformance.md).
"""

from __future__ import annotations

import pytest

from lkproto.conformance.process_adapters import ensure_node_adapter
from lkproto.testing import LocalServer
from tests.interop._conformance_subset import run_subset

pytestmark = pytest.mark.interop

EXPECTED = {
    "join.v1.single_pc": "pass",
    "join.reject.bad_signature": "pass",
    "data.lossy.receive": "pass",
    "rpc.v2.call": "pass",
    "rpc.error.application": "pass",
    "streams.text.send.compressed": "pass",
    "streams.reject.gap": "pass",
    "state.name.update_seen": "pass",
    "reconnect.full": "pass",
    "media.tone.publish": "pass",
    "media.tone.receive": "pass",
    "media.mute.seen_by_peer": "unsupported",
}


async def test_node_adapter_subset(livekit_server: LocalServer) -> None:
    await run_subset(livekit_server, "livekit-node", EXPECTED, ensure_node_adapter)
