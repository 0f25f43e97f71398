"""``import lkproto.rtc`` loads no WebRTC stack; a data-only client never loads PyAV or numpy
(issue 18).

aiortc and what it pulls in (aioice, dnspython, pyOpenSSL, cryptography, pylibsrtp) load with the
first peer connection, websockets with the first signal connection, PyAV and numpy with the first
media use. Each check runs in a fresh interpreter, since this test process has long imported them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lkproto.asyncio import _lazy_av
from tests.conftest import scaled

HEAVY = ("av", "numpy")
"""Modules a data-only client must never load."""

NOT_AT_IMPORT: tuple[str, ...] = (
    *HEAVY,
    "aiortc",
    "aioice",
    "dns",
    "OpenSSL",
    "cryptography",
    "pylibsrtp",
    "google_crc32c",
    "websockets",
)
"""Top-level packages ``import lkproto.rtc`` must not load: they load on first connect."""

DEFERRED_LKPROTO: tuple[str, ...] = (
    "lkproto.asyncio.engine",
    "lkproto.asyncio.peer",
    "lkproto.asyncio.signal",
    "lkproto.asyncio.tap",
    "lkproto.asyncio.data_track",
    "lkproto.asyncio.publish",
    "lkproto.core.signal",
    "lkproto.core.roster",
    "lkproto.core.negotiation",
    "lkproto.core.publish",
    "lkproto.core.simulcast",
    "lkproto.core.data_track",
    "lkproto.wire.tap",
    "lkproto.rtc.events",
    "lkproto.rtc.stats",
)
"""lkproto's own modules that only a connected room uses (the engine, its drivers, the core
machines and the typed events it dispatches): ``import lkproto.rtc`` and ``Room()`` leave them
to the first connect."""


def _run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_import_lkproto_rtc_loads_no_webrtc_stack_pyav_or_numpy() -> None:
    result = _run(
        f"""
        import json, sys
        from lkproto import rtc
        # The names a data-only client touches before connecting.
        rtc.Room, rtc.RoomOptions, rtc.DataPacket, rtc.ByteStreamReader, rtc.RpcInvocationData
        room = rtc.Room()
        print(json.dumps({{
            "loaded": sorted(
                {{m.split(".")[0] for m in sys.modules}} & set({NOT_AT_IMPORT!r})
            ),
            "stand_ins_left": sorted(m for m in sys.modules if m == "av" or m.startswith("av.")),
            "lkproto_deferred": sorted(set(sys.modules) & set({DEFERRED_LKPROTO!r})),
        }}))
        """
    )
    assert result == {"loaded": [], "stand_ins_left": [], "lkproto_deferred": []}


def test_deferred_modules_load_on_first_use_and_keep_one_connection_state() -> None:
    result = _run(
        """
        import json, sys
        from lkproto import rtc
        from lkproto.rtc import room
        before = "lkproto.asyncio.engine" in sys.modules
        engine_class = room.en.Engine  # what Room.connect reads first
        from lkproto.asyncio import engine
        print(json.dumps({
            "before": before,
            "after": "lkproto.asyncio.engine" in sys.modules,
            "same_class": engine_class is engine.Engine,
            "same_state": rtc.ConnectionState is engine.ConnectionState,
            "rpc_data": rtc.RpcInvocationData.__module__,
            "events_before": "lkproto.rtc.events" in sys.modules,
            "events": rtc.events.Connected.__module__,
            "events_listed": "events" in dir(rtc),
        }))
        """
    )
    assert result == {
        "before": False,
        "after": True,
        "same_class": True,
        "same_state": True,
        "rpc_data": "lkproto.asyncio.rpc",
        "events_before": False,
        "events": "lkproto.rtc.events",
        "events_listed": True,
    }


def test_first_peer_connection_loads_aiortc_without_pyav() -> None:
    result = _run(
        """
        import asyncio, json, sys
        from lkproto.asyncio import peer

        async def main():
            before = "aiortc" in sys.modules
            pc = peer.PeerConnection(peer.PeerOptions(ice_addresses=("127.0.0.1",)))
            await pc.close()
            return before

        before = asyncio.run(main())
        print(json.dumps({
            "before": before,
            "after": "aiortc" in sys.modules,
            "av": "av" in sys.modules,
            "numpy": "numpy" in sys.modules,
        }))
        """
    )
    assert result == {"before": False, "after": True, "av": False, "numpy": False}


def test_e2ee_driver_module_loads_aiortc_without_pyav() -> None:
    # The room imports it at connect when E2EE is on, before any peer connection exists.
    result = _run(
        """
        import json, sys
        import lkproto.asyncio.e2ee
        print(json.dumps({"aiortc": "aiortc" in sys.modules, "av": "av" in sys.modules}))
        """
    )
    assert result == {"aiortc": True, "av": False}


def test_media_names_load_pyav_on_first_use_and_aiortc_sees_the_real_classes() -> None:
    result = _run(
        """
        import json, sys
        from lkproto import rtc
        from lkproto.asyncio._lazy_av import import_aiortc
        import_aiortc()  # what the first peer connection does
        import aiortc.rtp, aiortc.mediastreams
        frame = rtc.AudioFrame.create(48_000, 1, 480)  # PCM only: no PyAV yet
        before = "av" in sys.modules
        rtc.AudioSource(48_000, 1)  # the media drivers
        import av
        real = av.AudioFrame(format="s16", layout="mono", samples=480)
        print(json.dumps({
            "before": before,
            "after": "av" in sys.modules,
            "real_module": type(sys.modules["av"]).__name__,
            "frame": type(frame).__name__,
            "isinstance": isinstance(real, aiortc.rtp.AudioFrame),
            "not_instance": isinstance(frame, aiortc.mediastreams.VideoFrame),
            "classmethod": (
                aiortc.mediastreams.VideoFrame.from_ndarray is av.VideoFrame.from_ndarray
            ),
            "constructed": type(aiortc.rtp.AudioFrame(format="s16", layout="mono", samples=4))
                is av.AudioFrame,
            "in_rtc_namespace": "AudioFrame" in dir(rtc),
        }))
        """
    )
    assert result == {
        "before": False,
        "after": True,
        "real_module": "module",
        "frame": "AudioFrame",
        "isinstance": True,
        "not_instance": False,
        "classmethod": True,
        "constructed": True,
        "in_rtc_namespace": True,
    }


def test_agents_without_preconnect_audio_load_no_media_or_webrtc_stack() -> None:
    result = _run(
        f"""
        import json, sys
        from lkproto import agents
        agents.AgentSession, agents.PreconnectBuffer, agents.decode_preconnect_audio
        print(json.dumps({{
            "loaded": sorted(
                {{m.split(".")[0] for m in sys.modules}} & set({NOT_AT_IMPORT!r})
            ),
        }}))
        """
    )
    assert result == {"loaded": []}


def test_unknown_rtc_names_still_raise_attribute_error() -> None:
    from lkproto import rtc

    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = rtc.NoSuchThing


def test_nothing_is_deferred_when_pyav_is_already_imported() -> None:
    result = _run(
        """
        import json, sys
        import av
        import lkproto.rtc, aiortc.rtp
        print(json.dumps({"same": aiortc.rtp.AudioFrame is av.AudioFrame}))
        """
    )
    assert result == {"same": True}


def test_import_aiortc_does_nothing_once_aiortc_is_imported() -> None:
    import aiortc  # noqa: F401
    import av  # noqa: F401

    before = set(sys.modules)
    _lazy_av.import_aiortc()
    assert set(sys.modules) == before
    assert _lazy_av.real_av_loaded()


def test_a_data_only_session_never_loads_pyav_or_numpy() -> None:
    """Join through the in-memory SignalPeer (real aiortc, loopback ICE, DTLS, SCTP), send a
    reliable packet and receive one, leave: neither PyAV nor numpy may be imported."""
    result = _run(
        f"""
        import asyncio, json, sys
        from lkproto import rtc
        from lkproto.asyncio import engine as en
        from lkproto.testing import SignalPeer
        from lkproto.wire import encode_data_packet, pb

        async def main():
            peer = SignalPeer()
            received = asyncio.Queue()
            engine = en.Engine(received.put_nowait)
            options = en.EngineOptions(
                transport_factory=peer.connect,
                ice_addresses=("127.0.0.1",),
                connect_timeout_s={scaled(20)!r},
            )
            bound = {scaled(30)!r}
            try:
                await asyncio.wait_for(engine.connect("ws://test", "token", options), bound)
                packet = pb.DataPacket(user=pb.UserPacket(payload=b"to-server"))
                await engine.send_data(packet, reliable=True)
                back = pb.DataPacket(user=pb.UserPacket(payload=b"to-client"))
                peer.peer_connection.send("_reliable", encode_data_packet(back))
                async with asyncio.timeout(bound):
                    while not isinstance(event := await received.get(), en.DataReceived):
                        pass
                    while not peer.data_packets:
                        await asyncio.sleep(0.01)
                got = event.packet.user.payload.decode()
                sent = [p.user.payload.decode() for _, p in peer.data_packets]
            finally:
                await engine.disconnect()
                await peer.close()
            return sent, got

        sent, got = asyncio.run(main())
        print(json.dumps({{
            "sent": sent,
            "got": got,
            "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
        }}))
        """
    )
    assert result == {"sent": ["to-server"], "got": "to-client", "heavy": []}


def test_an_aiortc_that_needs_another_pyav_module_falls_back_to_a_normal_import() -> None:
    # The module is loaded from its file so that lkproto.asyncio's own import of aiortc does not
    # run first; the stand-ins lack av.frame, which aiortc 1.16.0 imports at load time.
    result = _run(
        f"""
        import importlib.util, json, logging, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        spec = importlib.util.spec_from_file_location("lazy_av_copy", {_lazy_av.__file__!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.import_aiortc(("av", "av.packet"))
        import aiortc.rtp, av
        print(json.dumps({{
            "real_av": mod.real_av_loaded(),
            "aiortc_has_real_class": aiortc.rtp.AudioFrame is av.AudioFrame,
        }}))
        """
    )
    assert result == {"real_av": True, "aiortc_has_real_class": True}
