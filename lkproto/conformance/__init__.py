"""Conformance runner: a catalogue of named protocol checks run against any LiveKit client.

Run it::

    python -m lkproto conformance --local --client lkproto --client livekit-python \\
        --client livekit-js --json report.json [--scenario 'rpc.*'] [--list]
    python -m lkproto conformance --url ws://host:7880 --api-key K --api-secret S ...

(``python -m lkproto.conformance`` takes the same arguments.) ``--local`` starts a loopback
livekit-server (built once by :func:`lkproto.testing.ensure_livekit_server`) plus a second one with
``room.auto_create: false`` for ``join.reject.room_not_found``; ``--server-versions
v1.13.5,v1.11.0`` (or repeated ``--server-version``) builds each release once and runs against
each in turn. The
output is a Markdown table, scenario x client, each cell ``pass``, ``FAIL: reason`` or
``unsupported``; ``--json`` writes a list of ``{"scenario", "client", "result": "pass" | "fail" |
"unsupported", "reason", "seconds"}`` plus ``"server"`` and ``"started"`` (seconds into the run)
when known; ``--markdown``/``--html`` write readable reports (:mod:`lkproto.conformance.report`),
``--render RUN.json`` writes them from a saved run and ``--compare OLD.json NEW.json`` prints what
changed, new failures first. The exit status is 0 only if nothing failed (for ``--compare``: if
nothing newly failed).

Runs go concurrently, each scenario in its own room and with its own clients: ``--parallel`` runs
of the in-process adapters at once, and beside them ``--browsers`` runs of ``livekit-js`` (one
Chromium page each).

How a scenario works
--------------------
Every scenario runs in a fresh room on the shared server. The *client under test* is driven
through an adapter (:class:`~lkproto.conformance.adapters.Client`: ``connect``, ``publish_data``,
``send_text``, ``perform_rpc``, ``register_rpc``, ``set_metadata``, ``simulate``,
``publish_tone``, ...); its counterpart is always **lkproto itself**
(:class:`~lkproto.conformance.adapters.PeerClient`, the known-good peer), whose ``room`` is a full
``lkproto.rtc.Room``. The peer can advertise another ``client_protocol`` (to force RPC v1 or
classic streams), record every data packet it sends and receives (:class:`WireTap` via
``RoomOptions.trace``) and inject raw ``DataPacket``\\ s built with :mod:`lkproto.wire.pb` through
``peer.room.engine.send_data`` (malformed streams, RPC requests with a bad version).

Adapters: ``lkproto`` (``lkproto.rtc``), ``livekit-python`` (the official SDK, imported lazily:
without it every scenario reports ``unsupported``) and ``livekit-js`` (livekit-client in headless
Chromium through ``tests/interop/browser/harness.py``, loaded by path when present, one shared page
reset between scenarios; without Node/Chromium/the bundle every scenario reports ``unsupported``
with the reason), ``livekit-go`` and ``livekit-node`` (server-sdk-go and @livekit/rtc-node, each
in a child process driven over JSON lines, :mod:`lkproto.conformance.process_adapters`; built
or installed into the lkproto cache on first use). What an adapter cannot do raises
:class:`Unsupported`.

Adding a scenario
-----------------
Put an ``async def`` in the right module of :mod:`lkproto.conformance.scenarios` (``joins``,
``state``, ``data``, ``rpc``, ``streams``, ``reconnect``, ``media``)::

    from lkproto.conformance import Context, scenario
    from lkproto.conformance.scenarios._util import check

    @scenario("data.reliable.topic", needs={"data"}, timeout=30)
    async def reliable_topic(ctx: Context) -> None:
        \"\"\"A reliable packet keeps its topic (PROTOCOL-MAP §4 topic).\"\"\"
        client, peer = await ctx.pair()          # lkproto peer + client under test, both ACTIVE
        await client.publish_data(b"x", topic="t")
        await ctx.until(lambda: peer.received, "the packet at the peer")
        check(peer.received[0].topic == "t", f"topic {peer.received[0].topic!r}")

Rules: the name is dotted and unique; the docstring (required) says which protocol rule is checked
and cites the PROTOCOL-MAP section; ``needs`` lists adapter capabilities
(:data:`~lkproto.conformance.adapters.CAPABILITIES`), missing ones make the result
``unsupported`` before the scenario starts; returning means pass, ``AssertionError`` (use
``check``) means fail with its message, :class:`Unsupported` means unsupported, a timeout fails
with the step it was at (``ctx.step``, set by ``ctx.until``/``ctx.bounded``); every wait is bounded
and scaled by ``LKPROTO_TEST_TIME_SCALE``. Everything a scenario connects is disconnected
afterwards.
"""

from __future__ import annotations

from lkproto.conformance import scenarios
from lkproto.conformance._context import Context, ServerTarget
from lkproto.conformance._registry import REGISTRY, Result, Scenario, Unsupported, scenario, select
from lkproto.conformance.runner import markdown_table, run_catalogue, run_one
from lkproto.conformance.scenarios._util import WireTap, check

__all__ = [
    "REGISTRY",
    "Context",
    "Result",
    "Scenario",
    "ServerTarget",
    "Unsupported",
    "WireTap",
    "check",
    "markdown_table",
    "run_catalogue",
    "run_one",
    "scenario",
    "scenarios",
    "select",
]
