"""Resume, full reconnect and server restarts of ``lkproto.rtc.Room`` (PROTOCOL-MAP §10).

The official Python SDK is the other participant and, for the order of the lifecycle events,
the reference: both SDKs go through the same scenarios and must emit the same sequence.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.asyncio.signal import SignalTransport
from lkproto.core.reconnect import ReconnectPolicy
from lkproto.errors import LkError
from lkproto.rtc import events as ev
from lkproto.testing import LocalServer, scaled
from lkproto.testing.server import free_tcp_port, free_udp_port
from lkproto.wire import pb
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    RECONNECT_TIMEOUT_S,
    ROSTER_TIMEOUT_S,
    EventRecorder,
    connect_official,
    connect_ours,
    disconnect_all,
    lifecycle,
    room_service,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.interop

RECORDED = (
    "connected",
    "connection_state_changed",
    "reconnecting",
    "reconnected",
    "disconnected",
    "participant_connected",
    "participant_disconnected",
    "participant_metadata_changed",
)
CONNECTED = int(rtc.ConnectionState.CONN_CONNECTED)
RECONNECTING = int(rtc.ConnectionState.CONN_RECONNECTING)
DISCONNECTED = int(rtc.ConnectionState.CONN_DISCONNECTED)
# What livekit.rtc 1.2.1 emits for a resume and for a full reconnect alike (observed below in
# test_lifecycle_order_matches_the_official_sdk; Rust SDK room handle_restarting/handle_restarted).
RECOVERED = [
    ("connection_state_changed", (RECONNECTING,)),
    ("reconnecting", ()),
    ("connection_state_changed", (CONNECTED,)),
    ("reconnected", ()),
]
# A quiet period after a recovery, to catch a second reconnect cycle or stray events.
SETTLE_S = 1.0


def ended_with(reason: rtc.DisconnectReason) -> list[tuple[str, tuple[int, ...]]]:
    return [("connection_state_changed", (DISCONNECTED,)), ("disconnected", (int(reason),))]


async def started(*recorders: EventRecorder) -> None:
    """Wait for each recorder's initial ``connection_state_changed(CONNECTED)``, then forget
    everything recorded so far. The official SDK delivers that event after ``connect()`` has
    returned, so clearing right away could leave it to pollute the next observation."""
    for recorder in recorders:
        await recorder.wait("connection_state_changed", lambda state: int(state) == CONNECTED)
        recorder.clear()


async def settled(recorder: EventRecorder, *names: str) -> None:
    """Wait for the first of ``names`` to be recorded, then a quiet :data:`SETTLE_S`."""
    await wait_for(
        lambda: any(n in names for n in recorder.names()),
        RECONNECT_TIMEOUT_S,
        f"one of {names}; recorded {recorder.names()}",
    )
    await asyncio.sleep(scaled(SETTLE_S))


async def two_in_a_room(
    server: LocalServer, prefix: str, *, policy: ReconnectPolicy | None = None
) -> tuple[rtc.Room, lrtc.Room, EventRecorder, EventRecorder]:
    """Us (``lk``) and the official SDK (``sdk``), both allowed to update their metadata,
    each seeing the other."""
    room_name = unique_room(prefix)
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec, theirs_rec = EventRecorder(ours, RECORDED), EventRecorder(theirs, RECORDED)
    try:
        await connect_ours(
            server,
            "lk",
            room_name,
            room=ours,
            can_update_own_metadata=True,
            reconnect_policy=policy,
        )
        await connect_official(server, "sdk", room_name, room=theirs, can_update_own_metadata=True)
        await wait_for(lambda: "sdk" in ours.remote_participants, what="we see sdk")
        await wait_for(lambda: "lk" in theirs.remote_participants, what="sdk sees us")
        await started(ours_rec, theirs_rec)
    except BaseException:
        await disconnect_all(ours, theirs)
        raise
    return ours, theirs, ours_rec, theirs_rec


async def metadata_flows_both_ways(ours: rtc.Room, theirs: lrtc.Room, tag: str) -> None:
    """Signalling works in both directions: each side's metadata update reaches the other."""
    await asyncio.wait_for(
        theirs.local_participant.set_metadata(f"sdk-{tag}"), scaled(CONNECT_TIMEOUT_S)
    )
    await wait_for(
        lambda: (
            "sdk" in ours.remote_participants
            and ours.remote_participants["sdk"].metadata == f"sdk-{tag}"
        ),
        what=f"sdk's metadata sdk-{tag} reaches us",
    )
    await asyncio.wait_for(
        ours.local_participant.set_metadata(f"lk-{tag}"), scaled(CONNECT_TIMEOUT_S)
    )
    await wait_for(
        lambda: (
            "lk" in theirs.remote_participants
            and theirs.remote_participants["lk"].metadata == f"lk-{tag}"
        ),
        what=f"our metadata lk-{tag} reaches sdk",
    )


# -- the official order ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT, RECOVERED, id="signal"),
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_NODE_FAILURE, RECOVERED, id="node-failure"),
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_MIGRATION, RECOVERED, id="migration"),
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT, RECOVERED, id="full"),
        pytest.param(
            rtc.SimulateScenarioKind.SIMULATE_SERVER_LEAVE,
            ended_with(rtc.DisconnectReason.SERVER_SHUTDOWN),
            id="server-leave",
        ),
    ],
)
async def test_lifecycle_order_matches_the_official_sdk(
    livekit_server: LocalServer,
    scenario: rtc.SimulateScenarioKind,
    expected: list[tuple[str, tuple[int, ...]]],
) -> None:
    """Both SDKs, each alone in a room, go through the same scenario at the same time."""
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec, theirs_rec = EventRecorder(ours, RECORDED), EventRecorder(theirs, RECORDED)
    try:
        await connect_ours(livekit_server, "lk", unique_room("order-lk"), room=ours)
        await connect_official(livekit_server, "sdk", unique_room("order-sdk"), room=theirs)
        await started(ours_rec, theirs_rec)
        await asyncio.gather(
            asyncio.wait_for(ours.simulate_scenario(scenario), scaled(CONNECT_TIMEOUT_S)),
            asyncio.wait_for(
                theirs.simulate_scenario(lrtc.SimulateScenarioKind.ValueType(int(scenario))),
                scaled(CONNECT_TIMEOUT_S),
            ),
        )
        await asyncio.gather(
            settled(ours_rec, "reconnected", "disconnected"),
            settled(theirs_rec, "reconnected", "disconnected"),
        )
        assert lifecycle(theirs_rec) == expected
        assert lifecycle(ours_rec) == expected
    finally:
        await disconnect_all(ours, theirs)


# -- resume ----------------------------------------------------------------------------------


async def test_signal_reconnect_resumes_the_session(livekit_server: LocalServer) -> None:
    ours, theirs, ours_rec, theirs_rec = await two_in_a_room(livekit_server, "resume")
    try:
        sid = ours.local_participant.sid
        peer_sid = ours.remote_participants["sdk"].sid
        peer = ours.remote_participants["sdk"]
        me = ours.local_participant

        await asyncio.wait_for(
            ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT),
            scaled(CONNECT_TIMEOUT_S),
        )
        await settled(ours_rec, "reconnected", "disconnected")

        assert lifecycle(ours_rec) == RECOVERED
        assert ours.connection_state == rtc.ConnectionState.CONN_CONNECTED
        # Same session: same SID, same objects, nobody came or went on either side.
        assert ours.local_participant is me
        assert me.sid == sid
        assert set(ours.remote_participants) == {"sdk"}
        assert ours.remote_participants["sdk"] is peer
        assert peer.sid == peer_sid
        assert "participant_connected" not in ours_rec.names()
        assert "participant_disconnected" not in ours_rec.names()
        assert theirs.remote_participants["lk"].sid == sid
        assert "participant_disconnected" not in theirs_rec.names()

        # Updates made after the resume flow both ways.
        await metadata_flows_both_ways(ours, theirs, "after-resume")
        assert ours_rec.args_of("participant_metadata_changed") == [
            (peer, "", "sdk-after-resume"),
            (me, "", "lk-after-resume"),
        ]
    finally:
        await disconnect_all(ours, theirs)


async def test_resume_while_the_signal_is_down(livekit_server: LocalServer) -> None:
    """The socket is aborted; during the outage the peer changes its metadata and we ask for a
    change of ours: after the resume the server's snapshot brings theirs, and our queued
    request goes out (PROTOCOL-MAP §10 Resume, step 4)."""
    outage_s = scaled(2.0)
    policy = ReconnectPolicy(delays_s=(outage_s, 0.3, 1.2, 2.7), jitter_s=0.0)
    ours, theirs, ours_rec, theirs_rec = await two_in_a_room(
        livekit_server, "resume-down", policy=policy
    )
    try:
        sid = ours.local_participant.sid
        engine = ours.engine
        assert engine is not None
        engine.simulate_signal_loss()
        await wait_for(
            lambda: ours.connection_state == rtc.ConnectionState.CONN_RECONNECTING,
            what="reconnecting",
        )
        await asyncio.wait_for(
            theirs.local_participant.set_metadata("sdk-while-down"), scaled(CONNECT_TIMEOUT_S)
        )
        ours_update = asyncio.create_task(ours.local_participant.set_metadata("lk-while-down"))
        await asyncio.sleep(0.1)
        # The premise: both happened during the outage.
        assert ours.connection_state == rtc.ConnectionState.CONN_RECONNECTING
        assert not ours_update.done()
        assert ours.remote_participants["sdk"].metadata == ""

        await asyncio.wait_for(ours_update, scaled(RECONNECT_TIMEOUT_S))
        await settled(ours_rec, "reconnected", "disconnected")
        assert lifecycle(ours_rec)[: len(RECOVERED)] == RECOVERED
        assert ours.local_participant.sid == sid
        await wait_for(
            lambda: ours.remote_participants["sdk"].metadata == "sdk-while-down",
            what="the peer's outage-time metadata",
        )
        await wait_for(
            lambda: theirs.remote_participants["lk"].metadata == "lk-while-down",
            what="our queued metadata reaches sdk",
        )
        assert lifecycle(ours_rec) == RECOVERED
        assert "participant_disconnected" not in theirs_rec.names()
        await metadata_flows_both_ways(ours, theirs, "after")
    finally:
        await disconnect_all(ours, theirs)


async def test_resume_refused_signal_drops_on_resume_without_messages(
    livekit_server: LocalServer,
) -> None:
    """``disconnect_signal_on_resume_no_messages`` (a raw ``pb.SimulateScenario``): the server
    closes the next resume sockets before any message; a later attempt resumes."""
    ours, theirs, ours_rec, _ = await two_in_a_room(livekit_server, "resume-nomsg")
    try:
        sid = ours.local_participant.sid
        await asyncio.wait_for(
            ours.simulate_scenario(
                pb.SimulateScenario(disconnect_signal_on_resume_no_messages=True)
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        engine = ours.engine
        assert engine is not None
        engine.simulate_signal_loss()
        await settled(ours_rec, "reconnected", "disconnected")
        assert lifecycle(ours_rec) == RECOVERED
        assert ours.local_participant.sid == sid
        await metadata_flows_both_ways(ours, theirs, "after")
    finally:
        await disconnect_all(ours, theirs)


async def test_signal_dropped_right_after_resume_recovers(
    livekit_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``disconnect_signal_on_resume``: the server closes the resumed socket right after the
    reconnect response and updates (``S:pkg/rtc/room.go (ResumeParticipant)``). The official
    SDK then reconnects again (a full reconnect); any recovery will do, but signalling must work
    in the end.

    The raw scenario is sent and a request answered before the socket is dropped, so the server
    has certainly armed it. Whether the client reads the close together with the reconnect
    response is a race; the resumed socket is handed over a moment late so that it always does,
    as on a busy client.
    """
    real_open = SignalTransport.open
    hold = {"next_open": False}

    async def open_and_hold(url: str, token: str, **kwargs: Any) -> SignalTransport:
        transport = await real_open(url, token, **kwargs)
        if hold["next_open"]:
            hold["next_open"] = False
            await asyncio.sleep(0.5)  # the server's whole burst, close included, arrives
        return transport

    monkeypatch.setattr(SignalTransport, "open", open_and_hold)
    ours, theirs, ours_rec, _ = await two_in_a_room(livekit_server, "resume-drop")
    try:
        await asyncio.wait_for(
            ours.simulate_scenario(pb.SimulateScenario(disconnect_signal_on_resume=True)),
            scaled(CONNECT_TIMEOUT_S),
        )
        # The server handles signal requests in order: once this is answered, it is armed.
        await asyncio.wait_for(
            ours.local_participant.set_metadata("lk-armed"), scaled(CONNECT_TIMEOUT_S)
        )
        engine = ours.engine
        assert engine is not None
        hold["next_open"] = True
        engine.simulate_signal_loss()
        await settled(ours_rec, "reconnected", "disconnected")
        await wait_for(
            lambda: ours.connection_state == rtc.ConnectionState.CONN_CONNECTED,
            RECONNECT_TIMEOUT_S,
            "connected again",
        )
        # Our own request first: on a dead signal it fails within the 5 s request timeout.
        await asyncio.wait_for(
            ours.local_participant.set_metadata("lk-after"), scaled(CONNECT_TIMEOUT_S)
        )
        await metadata_flows_both_ways(ours, theirs, "after")
    finally:
        await disconnect_all(ours, theirs)


# -- full reconnect --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_NODE_FAILURE, id="node-failure"),
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_MIGRATION, id="migration"),
        pytest.param(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT, id="full"),
    ],
)
async def test_full_reconnect_restores_the_session(
    livekit_server: LocalServer, scenario: rtc.SimulateScenarioKind
) -> None:
    ours, theirs, ours_rec, theirs_rec = await two_in_a_room(livekit_server, "full")
    try:
        old_sid = ours.local_participant.sid
        me = ours.local_participant
        await asyncio.wait_for(ours.simulate_scenario(scenario), scaled(CONNECT_TIMEOUT_S))
        await settled(ours_rec, "reconnected", "disconnected")

        assert lifecycle(ours_rec) == RECOVERED
        assert ours.connection_state == rtc.ConnectionState.CONN_CONNECTED
        new_sid = ours.local_participant.sid
        assert new_sid.startswith("PA_")
        assert new_sid != old_sid
        assert ours.local_participant is me
        # The peer never left: it is still there (lkproto diffs the new JoinResponse against
        # what it held, where the official SDK re-announces everyone, see core/roster.py).
        assert set(ours.remote_participants) == {"sdk"}
        assert ours.remote_participants["sdk"].sid == theirs.local_participant.sid

        # The official SDK saw our old session leave and the new one join.
        (gone,) = await theirs_rec.wait("participant_disconnected", lambda p: p.identity == "lk")
        assert gone.sid == old_sid
        (back,) = await theirs_rec.wait(
            "participant_connected", lambda p: p.identity == "lk" and p.sid == new_sid
        )
        assert theirs.remote_participants["lk"] is back
        await metadata_flows_both_ways(ours, theirs, "after-full")
    finally:
        await disconnect_all(ours, theirs)


async def test_peer_full_reconnect_is_seen_as_leave_and_join(livekit_server: LocalServer) -> None:
    ours, theirs, ours_rec, theirs_rec = await two_in_a_room(livekit_server, "peer-full")
    try:
        old_peer = ours.remote_participants["sdk"]
        old_sid = old_peer.sid
        await asyncio.wait_for(
            theirs.simulate_scenario(lrtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT),
            scaled(CONNECT_TIMEOUT_S),
        )
        await settled(theirs_rec, "reconnected", "disconnected")
        new_sid = theirs.local_participant.sid
        assert new_sid != old_sid
        (new_peer,) = await ours_rec.wait(
            "participant_connected", lambda p: p.identity == "sdk", ROSTER_TIMEOUT_S
        )
        assert new_peer.sid == new_sid
        assert ours.remote_participants["sdk"] is new_peer
        (gone,) = await ours_rec.wait("participant_disconnected", lambda p: p.identity == "sdk")
        assert gone is old_peer
        roster_events = [
            (name, args[0].sid)
            for name, args in ours_rec.events
            if name in ("participant_connected", "participant_disconnected")
        ]
        assert roster_events == [
            ("participant_disconnected", old_sid),
            ("participant_connected", new_sid),
        ]
        assert lifecycle(ours_rec) == []
    finally:
        await disconnect_all(ours, theirs)


async def test_update_pending_across_a_full_reconnect_settles(
    livekit_server: LocalServer,
) -> None:
    """A set_metadata queued while the signal is down, before a resume that the server refuses
    (node failure), must end (succeed, or fail with an LkError) rather than hang."""
    policy = ReconnectPolicy(delays_s=(scaled(1.0), 0.3, 1.2, 2.7), jitter_s=0.0)
    ours, theirs, ours_rec, _ = await two_in_a_room(livekit_server, "full-pending", policy=policy)
    try:
        await asyncio.wait_for(
            ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_NODE_FAILURE),
            scaled(CONNECT_TIMEOUT_S),
        )
        await wait_for(
            lambda: ours.connection_state == rtc.ConnectionState.CONN_RECONNECTING,
            what="reconnecting",
        )
        pending = asyncio.create_task(ours.local_participant.set_metadata("queued"))
        await settled(ours_rec, "reconnected", "disconnected")
        assert lifecycle(ours_rec) == RECOVERED
        # JS rejects a metadata request after 5 s (PROTOCOL-MAP §7); allow twice that.
        done, _ = await asyncio.wait({pending}, timeout=scaled(10.0))
        if not done:
            pending.cancel()
        assert done, "set_metadata issued during the outage never settled"
        exc = pending.exception()
        assert exc is None or isinstance(exc, LkError)
    finally:
        await disconnect_all(ours, theirs)


# -- the server ends the session ------------------------------------------------------------


async def test_server_leave_ends_with_server_shutdown(livekit_server: LocalServer) -> None:
    ours, theirs, ours_rec, theirs_rec = await two_in_a_room(livekit_server, "leave")
    try:
        sid = ours.local_participant.sid
        collecting = asyncio.create_task(_collect(ours))
        await asyncio.sleep(0)
        await asyncio.wait_for(
            ours.simulate_scenario(pb.SimulateScenario(server_leave=True)),
            scaled(CONNECT_TIMEOUT_S),
        )
        typed = await asyncio.wait_for(collecting, scaled(ROSTER_TIMEOUT_S))
        assert typed[-1] == ev.Disconnected(reason=rtc.DisconnectReason.SERVER_SHUTDOWN)
        await settled(ours_rec, "disconnected")
        assert lifecycle(ours_rec) == ended_with(rtc.DisconnectReason.SERVER_SHUTDOWN)
        assert not ours.isconnected()
        (gone,) = await theirs_rec.wait("participant_disconnected", lambda p: p.identity == "lk")
        assert gone.sid == sid
    finally:
        await disconnect_all(ours, theirs)


async def _collect(room: rtc.Room) -> list[ev.RoomEvent]:
    return [event async for event in room.events()]


# -- server restarts -------------------------------------------------------------------------


@pytest.fixture
def restartable_server(livekit_server_binary: Path, tmp_path: Path) -> LocalServer:
    """A private server on fixed ports and a fixed key, so it can be started again as 'the
    same' server."""
    return LocalServer(
        binary=livekit_server_binary,
        port=free_tcp_port(),
        udp_port=free_udp_port(),
        api_key="restart-key",
        api_secret="restart-secret-0123456789abcdef0123456789",
        log_dir=tmp_path,
        ready_timeout=scaled(30.0),
    )


async def test_graceful_server_restart_disconnects_like_the_official_sdk(
    restartable_server: LocalServer,
) -> None:
    """A graceful stop sends ``LeaveRequest{SERVER_SHUTDOWN, DISCONNECT}``: both SDKs end the
    session for good. A fresh room connects again once the server is back on the same ports."""
    server = restartable_server
    await server.astart()
    ours, theirs, again = rtc.Room(), lrtc.Room(), rtc.Room()
    ours_rec, theirs_rec = EventRecorder(ours, RECORDED), EventRecorder(theirs, RECORDED)
    try:
        room_name = unique_room("graceful")
        await connect_ours(server, "lk", room_name, room=ours)
        await connect_official(server, "sdk", room_name, room=theirs)
        await started(ours_rec, theirs_rec)
        port, udp_port = server.port, server.udp_port
        await server.astop()
        await asyncio.gather(settled(ours_rec, "disconnected"), settled(theirs_rec, "disconnected"))
        expected = ended_with(rtc.DisconnectReason.SERVER_SHUTDOWN)
        assert lifecycle(ours_rec) == expected
        # The official SDK is the reference, not the subject: on a loaded machine it sometimes
        # sees the socket close before the leave (its log: "signal client closed ... Resume"),
        # retries and ends disconnected after its attempts (fresh-clone CI, load ~15). What it
        # did is printed; only its ending disconnected is asserted.
        print("official SDK lifecycle:", lifecycle(theirs_rec))
        assert lifecycle(theirs_rec)[-1][0] == expected[-1][0]

        await server.astart()
        assert (server.port, server.udp_port) == (port, udp_port)
        await connect_ours(server, "lk", room_name, room=again)
        assert again.connection_state == rtc.ConnectionState.CONN_CONNECTED
    finally:
        await disconnect_all(ours, theirs, again)
        await server.astop()


async def test_server_crash_and_restart_reconnects(restartable_server: LocalServer) -> None:
    """The server dies without a word (SIGKILL) and comes back on the same ports with no state:
    the resume is refused, the full reconnect joins a new room, and the roster is restored once
    the official SDK is back too."""
    server = restartable_server
    await server.astart()
    ours, theirs = rtc.Room(), lrtc.Room()
    ours_rec, theirs_rec = EventRecorder(ours, RECORDED), EventRecorder(theirs, RECORDED)
    try:
        room_name = unique_room("crash")
        await connect_ours(server, "lk", room_name, room=ours)
        await connect_official(server, "sdk", room_name, room=theirs)
        await wait_for(lambda: "sdk" in ours.remote_participants, what="we see sdk")
        await wait_for(lambda: "lk" in theirs.remote_participants, what="sdk sees us")
        old_room_sid = await asyncio.wait_for(ours.sid, scaled(CONNECT_TIMEOUT_S))
        old_sid = ours.local_participant.sid
        old_peer_sid = ours.remote_participants["sdk"].sid
        await started(ours_rec, theirs_rec)

        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the server process this test started
        await server.astop()  # reaps it
        await server.astart()

        await asyncio.gather(
            settled(ours_rec, "reconnected", "disconnected"),
            settled(theirs_rec, "reconnected", "disconnected"),
        )
        assert lifecycle(ours_rec) == RECOVERED
        assert lifecycle(theirs_rec) == RECOVERED
        assert ours.local_participant.sid != old_sid
        # The restarted server created the room anew.
        (room,) = await room_service(server).list_rooms([room_name])
        assert room.sid != old_room_sid
        assert await asyncio.wait_for(ours.sid, scaled(CONNECT_TIMEOUT_S)) == room.sid

        await wait_for(
            lambda: (
                "sdk" in ours.remote_participants
                and ours.remote_participants["sdk"].sid == theirs.local_participant.sid
            ),
            RECONNECT_TIMEOUT_S,
            "we see the reconnected sdk",
        )
        assert ours.remote_participants["sdk"].sid != old_peer_sid
        await wait_for(
            lambda: (
                "lk" in theirs.remote_participants
                and theirs.remote_participants["lk"].sid == ours.local_participant.sid
            ),
            RECONNECT_TIMEOUT_S,
            "sdk sees us reconnected",
        )
    finally:
        await disconnect_all(ours, theirs)
        await server.astop()
