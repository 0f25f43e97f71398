"""Reconnect policy delays and the recovery decision table (lkproto.core.reconnect)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkproto import errors
from lkproto.core.reconnect import (
    ABANDONED_ATTEMPT_LEAVE_REASON,
    ATTEMPT_ICE_WINDOW_S,
    DEFAULT_RECONNECT_DELAYS_S,
    LEAVE_ACTION_RECOVERY,
    REJOIN_FRESH_S,
    REJOIN_HOLD_S,
    REJOIN_JOINING_BYTES,
    TRANSPORT_SILENCE_S,
    UNREACHABLE_RETRIES,
    UNREACHABLE_RETRY_S,
    ReconnectPolicy,
    Recovery,
    RejoinHold,
    choose_recovery,
    rejoined,
    transport_stalled,
)
from lkproto.wire import pb

# -- policy ---------------------------------------------------------------------------------------


def test_default_delays_match_js_default_reconnect_policy() -> None:
    # JS DefaultReconnectPolicy: [0, 300, 2*2*300, 3*3*300, 4*4*300, 7000 x5] ms
    assert DEFAULT_RECONNECT_DELAYS_S == (0.0, 0.3, 1.2, 2.7, 4.8, 7.0, 7.0, 7.0, 7.0, 7.0)
    policy = ReconnectPolicy()
    assert policy.attempts == 10
    assert [policy.next_delay(i, random=0.0) for i in range(10)] == list(DEFAULT_RECONNECT_DELAYS_S)
    assert policy.next_delay(10, random=0.0) is None
    assert policy.next_delay(1000, random=0.5) is None


def test_jitter_starts_at_the_third_attempt_and_stays_below_one_second() -> None:
    policy = ReconnectPolicy()
    r = 0.999_999
    assert policy.next_delay(0, random=r) == 0.0
    assert policy.next_delay(1, random=r) == 0.3
    for attempt in range(2, 10):
        base = DEFAULT_RECONNECT_DELAYS_S[attempt]
        low = policy.next_delay(attempt, random=0.0)
        high = policy.next_delay(attempt, random=r)
        assert low == base
        assert high is not None
        assert base <= high < base + 1.0
    assert policy.next_delay(4, random=0.5) == pytest.approx(5.3)


def test_custom_policy_reuses_last_delay_up_to_max_attempts() -> None:
    policy = ReconnectPolicy([1, 2], max_attempts=4, jitter_s=0.5, jitter_from_attempt=1)
    assert policy.delays_s == (1.0, 2.0)
    assert [policy.next_delay(i, random=0.5) for i in range(5)] == [1.0, 2.25, 2.25, 2.25, None]
    assert ReconnectPolicy(max_attempts=0).next_delay(0, random=0.0) is None
    assert ReconnectPolicy(jitter_s=0).next_delay(5, random=0.9) == 7.0


def test_policy_is_immutable() -> None:
    policy = ReconnectPolicy()
    with pytest.raises(AttributeError):
        policy.jitter_s = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delays_s": []},
        {"delays_s": [0.1, -1.0]},
        {"delays_s": [math.inf]},
        {"delays_s": [math.nan]},
        {"jitter_s": -0.1},
        {"jitter_s": math.nan},
        {"max_attempts": -1},
        {"jitter_from_attempt": -1},
    ],
)
def test_bad_policy_is_misuse(kwargs: dict[str, object]) -> None:
    with pytest.raises(errors.LocalProtocolError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("attempt", "random"), [(-1, 0.0), (0, -0.1), (0, 1.0), (0, math.nan)])
def test_bad_next_delay_arguments_are_misuse(attempt: int, random: float) -> None:
    with pytest.raises(errors.LocalProtocolError):
        ReconnectPolicy().next_delay(attempt, random=random)


# -- recovery decision ----------------------------------------------------------------------------


def test_leave_action_table() -> None:
    assert dict(LEAVE_ACTION_RECOVERY) == {
        pb.LeaveRequest.DISCONNECT: Recovery.GIVE_UP,
        pb.LeaveRequest.RESUME: Recovery.RESUME,
        pb.LeaveRequest.RECONNECT: Recovery.FULL_RECONNECT,
    }


HEALTHY = {"signal_ok": True, "peer_ok": True}
LOST_SIGNAL = {"signal_ok": False, "peer_ok": True}
FAILED_PEER = {"signal_ok": True, "peer_ok": False}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (HEALTHY, Recovery.NONE),
        # §10 Resume: a lost socket or a failed PC is resumed (the resume ICE-restarts the PCs;
        # the server itself asks for RESUME on transport failure)
        (LOST_SIGNAL, Recovery.RESUME),
        (FAILED_PEER, Recovery.RESUME),
        ({"signal_ok": False, "peer_ok": False}, Recovery.RESUME),
        # server LeaveRequest (§1): DISCONNECT ends it, RECONNECT means full, RESUME means resume
        (HEALTHY | {"leave_action": pb.LeaveRequest.DISCONNECT}, Recovery.GIVE_UP),
        (HEALTHY | {"leave_action": pb.LeaveRequest.RECONNECT}, Recovery.FULL_RECONNECT),
        (HEALTHY | {"leave_action": pb.LeaveRequest.RESUME}, Recovery.RESUME),
        (LOST_SIGNAL | {"leave_action": pb.LeaveRequest.DISCONNECT}, Recovery.GIVE_UP),
        # DISCONNECT wins over everything
        (
            LOST_SIGNAL
            | {
                "leave_action": pb.LeaveRequest.DISCONNECT,
                "resume_refused": True,
                "resume_disabled": True,
            },
            Recovery.GIVE_UP,
        ),
        # a refused resume (leave as first frame) means full reconnect
        (LOST_SIGNAL | {"resume_refused": True}, Recovery.FULL_RECONNECT),
        (
            LOST_SIGNAL | {"resume_refused": True, "leave_action": pb.LeaveRequest.RESUME},
            Recovery.FULL_RECONNECT,
        ),
        # resume disabled by the server, or PCs that cannot be restarted: full reconnect
        (LOST_SIGNAL | {"resume_disabled": True}, Recovery.FULL_RECONNECT),
        (FAILED_PEER | {"peer_resumable": False}, Recovery.FULL_RECONNECT),
        (
            HEALTHY | {"leave_action": pb.LeaveRequest.RESUME, "resume_disabled": True},
            Recovery.FULL_RECONNECT,
        ),
        # nothing broken: those settings alone do not trigger anything
        (HEALTHY | {"resume_disabled": True, "peer_resumable": False}, Recovery.NONE),
        # unknown (future) leave actions are ignored like JS's switch does
        (HEALTHY | {"leave_action": 42}, Recovery.NONE),
        (LOST_SIGNAL | {"leave_action": 42}, Recovery.RESUME),
    ],
)
def test_choose_recovery(kwargs: dict[str, object], expected: Recovery) -> None:
    assert choose_recovery(**kwargs) is expected  # type: ignore[arg-type]


# -- the recovery machine -------------------------------------------------------------------------

from lkproto.core.reconnect import (  # noqa: E402
    AnyRecoveryEvent,
    AttemptDue,
    GaveUp,
    Recovered,
    Recoverer,
    RecoveryCause,
    RecoveryStarted,
    RecoveryState,
    recovery_for,
)


def _drain(r: Recoverer) -> list[AnyRecoveryEvent]:
    out = []
    while (ev := r.next_event()) is not None:
        out.append(ev)
    return out


def _recoverer(delays: tuple[float, ...] = (0.0, 1.0), **kw: bool) -> Recoverer:
    return Recoverer(ReconnectPolicy(delays, jitter_s=0), random=lambda: 0.0, **kw)


@pytest.mark.parametrize(
    ("cause", "action", "resume_supported", "expected"),
    [
        (RecoveryCause.SIGNAL_LOST, None, True, Recovery.RESUME),
        (RecoveryCause.SIGNAL_LOST, None, False, Recovery.FULL_RECONNECT),
        (RecoveryCause.PEER_FAILED, None, True, Recovery.FULL_RECONNECT),
        # the server sends leave{RESUME} when its side of our transport failed; the resume it
        # expects ICE-restarts, which aiortc cannot: a full reconnect (issue 15, 20 s outage)
        (RecoveryCause.LEAVE, pb.LeaveRequest.RESUME, True, Recovery.FULL_RECONNECT),
        (RecoveryCause.LEAVE, pb.LeaveRequest.RESUME, False, Recovery.FULL_RECONNECT),
        (RecoveryCause.LEAVE, pb.LeaveRequest.RECONNECT, True, Recovery.FULL_RECONNECT),
        (RecoveryCause.LEAVE, pb.LeaveRequest.DISCONNECT, True, Recovery.GIVE_UP),
        (RecoveryCause.LEAVE, 99, True, Recovery.RESUME),
        (RecoveryCause.RESUME_REFUSED, None, True, Recovery.FULL_RECONNECT),
        (RecoveryCause.FULL_REQUESTED, None, True, Recovery.FULL_RECONNECT),
    ],
)
def test_every_cause_has_one_recovery(
    cause: RecoveryCause, action: int | None, resume_supported: bool, expected: Recovery
) -> None:
    assert recovery_for(cause, leave_action=action, resume_supported=resume_supported) is expected


def test_signal_loss_resumes_after_the_first_delay() -> None:
    r = _recoverer()
    assert r.trouble(RecoveryCause.SIGNAL_LOST, 10.0) is Recovery.RESUME
    assert _drain(r) == [RecoveryStarted(full=False)]
    assert r.state is RecoveryState.WAITING
    assert r.get_timer() == 10.0
    r.handle_timer(10.0)
    assert _drain(r) == [AttemptDue(number=1)]
    assert r.attempt_kind(peer_usable=True) is Recovery.RESUME
    r.attempt_succeeded(10.5)
    assert _drain(r) == [Recovered(full=False, attempts=1)]
    assert r.state.value == "idle"
    assert r.get_timer() is None


def test_refused_resume_escalates_to_full_at_once_and_never_back() -> None:
    r = _recoverer((0.0, 1.0, 2.0))
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.0)
    r.handle_timer(0.0)
    r.attempt_failed(0.1, cause=RecoveryCause.RESUME_REFUSED)
    assert r.plan is Recovery.FULL_RECONNECT
    # The server answered: the full reconnect is due now, not after the policy's 1 s.
    assert r.get_timer() == 0.1
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.1)  # a weaker cause does not downgrade
    r.handle_timer(0.1)
    assert r.attempt_kind(peer_usable=True) is Recovery.FULL_RECONNECT
    # A failed full reconnect waits for the policy's next delay again.
    r.attempt_failed(0.3)
    assert r.get_timer() == 2.3
    r.handle_timer(2.3)
    r.attempt_succeeded(2.5)
    assert _drain(r)[-1] == Recovered(full=True, attempts=3)


def test_an_immediate_full_reconnect_still_counts_against_the_attempts() -> None:
    r = _recoverer((0.0,))
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.0)
    r.handle_timer(0.0)
    r.attempt_failed(0.1, cause=RecoveryCause.RESUME_REFUSED)
    assert r.state is RecoveryState.IDLE
    assert isinstance(_drain(r)[-1], GaveUp)


def test_a_refusal_during_a_full_reconnect_keeps_the_policy_delay() -> None:
    r = _recoverer((0.0, 1.0, 2.0))
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    r.handle_timer(0.0)
    r.attempt_failed(0.1, cause=RecoveryCause.RESUME_REFUSED)
    assert r.get_timer() == 1.1  # the plan did not change: no shortcut


def test_server_leave_resume_starts_a_full_reconnect() -> None:
    r = _recoverer()
    r.trouble(RecoveryCause.LEAVE, 0.0, leave_action=pb.LeaveRequest.RESUME)
    assert _drain(r) == [RecoveryStarted(full=True)]


def test_unusable_peer_makes_the_attempt_full() -> None:
    r = _recoverer()
    r.trouble(RecoveryCause.LEAVE, 0.0, leave_action=pb.LeaveRequest.RESUME)
    r.handle_timer(0.0)
    assert r.attempt_kind(peer_usable=False) is Recovery.FULL_RECONNECT


def test_gives_up_when_attempts_run_out_or_join_is_refused_or_server_disconnects() -> None:
    r = _recoverer((0.0, 1.0))
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    assert _drain(r) == [RecoveryStarted(full=True)]
    r.handle_timer(0.0)
    r.attempt_failed(0.0)
    r.handle_timer(0.5)
    assert _drain(r) == [AttemptDue(number=1)]
    r.handle_timer(1.0)
    r.attempt_failed(1.0)
    events = _drain(r)
    assert events[0] == AttemptDue(number=2)
    assert isinstance(events[1], GaveUp)
    assert r.state is RecoveryState.IDLE

    r.trouble(RecoveryCause.SIGNAL_LOST, 5.0)
    r.handle_timer(5.0)
    r.attempt_failed(5.0, status=401)
    assert isinstance(_drain(r)[-1], GaveUp)

    assert r.trouble(RecoveryCause.LEAVE, 6.0, leave_action=pb.LeaveRequest.DISCONNECT) is (
        Recovery.GIVE_UP
    )
    assert [type(e) for e in _drain(r)] == [GaveUp]  # no RecoveryStarted before giving up


def test_misuse_raises_and_cancel_is_silent() -> None:
    r = _recoverer()
    with pytest.raises(errors.LocalProtocolError):
        r.attempt_kind(peer_usable=True)
    with pytest.raises(errors.LocalProtocolError):
        r.attempt_succeeded(0.0)
    with pytest.raises(errors.LocalProtocolError):
        r.attempt_failed(0.0)
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.0)
    _drain(r)
    r.cancel()
    assert _drain(r) == []
    assert r.get_timer() is None
    assert r.state is RecoveryState.IDLE


def test_without_resume_support_every_attempt_is_full() -> None:
    r = _recoverer(resume_supported=False)
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.0)
    assert _drain(r) == [RecoveryStarted(full=True)]


_STRENGTH = {Recovery.NONE: 0, Recovery.RESUME: 1, Recovery.FULL_RECONNECT: 2}


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("trouble"), st.sampled_from(list(RecoveryCause)), st.integers(0, 3)),
            st.tuples(st.just("tick"), st.none(), st.none()),
            st.tuples(st.just("ok"), st.none(), st.none()),
            st.tuples(st.just("fail"), st.sampled_from([None, *RecoveryCause]), st.none()),
            st.tuples(st.just("kind"), st.booleans(), st.none()),
        ),
        max_size=50,
    )
)
def test_any_sequence_escalates_only_and_bounds_attempts(steps: list[tuple[Any, Any, Any]]) -> None:
    policy = ReconnectPolicy((0.0, 0.5, 1.0), jitter_s=0)
    r = Recoverer(policy, random=lambda: 0.0)
    now = 0.0
    attempts = 0
    for action, arg, extra in steps:
        now += 0.3
        before = r.plan
        try:
            if action == "trouble":
                r.trouble(arg, now, leave_action=extra)
            elif action == "tick":
                r.handle_timer(now)
            elif action == "ok":
                r.attempt_succeeded(now)
            elif action == "fail":
                r.attempt_failed(now, cause=arg)
            else:
                r.attempt_kind(peer_usable=arg)
        except errors.LocalProtocolError:
            assert r.state is not RecoveryState.ATTEMPTING
        for event in _drain(r):
            if isinstance(event, RecoveryStarted):
                attempts = 0
            elif isinstance(event, AttemptDue):
                attempts += 1
                assert event.number == attempts <= policy.attempts
        if r.state is not RecoveryState.IDLE and before is not Recovery.NONE:
            assert _STRENGTH[r.plan] >= _STRENGTH[before]  # never downgraded mid-recovery
        if r.state is RecoveryState.IDLE:
            assert r.plan is Recovery.NONE
            assert r.get_timer() is None


# -- dead-transport rule (issue 15 floor) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("last_heard", "now", "stalled"),
    [
        (100.0, 100.0 + TRANSPORT_SILENCE_S, True),  # silent for the whole window
        (100.0, 100.0 + TRANSPORT_SILENCE_S - 0.01, False),  # not yet
        (None, 1000.0, False),  # not connected yet
    ],
)
def test_transport_stalled(last_heard: float | None, now: float, stalled: bool) -> None:
    assert (
        transport_stalled(now=now, last_heard=last_heard, silence_s=TRANSPORT_SILENCE_S) is stalled
    )


def test_a_five_second_outage_is_not_a_dead_transport() -> None:
    # The 5 s UDP outage fault test recovers without any reconnect; keep it so. An idle
    # livekit-server connection brings a datagram every 2 s at most (measured), so 8 s of
    # silence is no idle room either.
    assert TRANSPORT_SILENCE_S > 2.0 * 3


def test_an_unreachable_server_is_retried_quickly_then_by_the_policy() -> None:
    r = _recoverer((0.0, 3.0, 6.0))
    r.trouble(RecoveryCause.SIGNAL_LOST, 0.0)
    now = 0.0
    for n in range(UNREACHABLE_RETRIES):
        r.handle_timer(now)
        assert _drain(r)[-1] == AttemptDue(number=n + 1)
        r.attempt_failed(now, unreachable=True)
        assert r.get_timer() == now + UNREACHABLE_RETRY_S  # not the policy's 3 s
        now += UNREACHABLE_RETRY_S
    # Past the quick retries, the policy's schedule (its first failure: 3 s).
    r.handle_timer(now)
    r.attempt_failed(now, unreachable=True)
    assert r.get_timer() == now + 3.0
    # A refusal by a server that is up is not "unreachable": the full reconnect comes at once.
    r.handle_timer(now + 3.0)
    r.attempt_failed(now + 3.0, cause=RecoveryCause.RESUME_REFUSED, unreachable=True)
    assert r.get_timer() == now + 3.0
    assert r.plan is Recovery.FULL_RECONNECT


def test_every_attempt_but_the_policys_last_has_the_ice_window() -> None:
    r = _recoverer((0.0, 1.0, 2.0))
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    windows = []
    for now in (0.0, 10.0, 20.0):
        r.handle_timer(now)
        assert isinstance(_drain(r)[-1], AttemptDue)
        windows.append(r.ice_window())
        r.attempt_failed(now)
    assert windows == [ATTEMPT_ICE_WINDOW_S, ATTEMPT_ICE_WINDOW_S, None]
    assert isinstance(_drain(r)[-1], GaveUp)
    with pytest.raises(errors.LocalProtocolError):
        r.ice_window()  # no attempt running


def test_the_ice_window_is_shorter_than_the_connect_timeout_and_outlasts_pions_own_checks() -> None:
    # pion (livekit-server's side) checks a new pair for 8 ticks of 200 ms, then only answers
    # ours, resent every second (_seam.ICE_CHECK_RESEND_S): a working path connects well
    # within the window, and the window ends before the engine's 15 s connect timeout.
    assert 8 * 0.2 + 2 * 1.0 <= ATTEMPT_ICE_WINDOW_S < 15.0


def test_quick_unreachable_retries_do_not_use_up_the_full_connect_timeout_attempt() -> None:
    r = _recoverer((0.0, 1.0))
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    r.handle_timer(0.0)
    r.attempt_failed(0.0, unreachable=True)
    r.handle_timer(UNREACHABLE_RETRY_S)
    assert r.ice_window() == ATTEMPT_ICE_WINDOW_S  # still the first of two counted attempts


def _windowed_recoverer(delays: tuple[float, ...], window: float | None) -> Recoverer:
    return Recoverer(
        ReconnectPolicy(delays, jitter_s=0),
        random=lambda: 0.0,
        ice_window_s=window,
        attempt_timeout_s=15.0,
    )


def test_three_windows_in_a_row_make_one_of_the_policys_attempts() -> None:
    r = _windowed_recoverer((0.0, 1.0, 2.0), ATTEMPT_ICE_WINDOW_S)
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    now, dues, timers = 0.0, [], []
    for _ in range(3):
        r.handle_timer(now)
        dues.append(_drain(r)[-1])
        assert r.ice_window() == ATTEMPT_ICE_WINDOW_S
        now += ATTEMPT_ICE_WINDOW_S
        r.attempt_failed(now, ice_window=True)
        timers.append(r.get_timer())
    # Windows 1 and 2 are retried at once, on new sockets; the third ends the policy's first
    # attempt, and the second comes after the policy's second delay (1 s).
    assert dues == [AttemptDue(number=1), AttemptDue(number=2), AttemptDue(number=3)]
    assert timers == [5.0, 10.0, 16.0]
    # A failure of another kind counts at once and starts a new run of windows.
    r.handle_timer(16.0)
    assert _drain(r)[-1] == AttemptDue(number=4)
    r.attempt_failed(16.5, ice_window=True)
    r.handle_timer(16.5)
    r.attempt_failed(17.0)  # e.g. the signal failed
    assert r.get_timer() == 17.0 + 2.0  # counted: the policy's third delay
    r.handle_timer(19.0)
    assert _drain(r)[-1] == AttemptDue(number=6)
    assert r.ice_window() is None  # the policy's last attempt keeps the whole connect timeout


@pytest.mark.parametrize("delays", [(0.0, 1.0), (0.0, 0.3, 1.2, 2.7, 4.8) + (7.0,) * 5])
def test_a_recovery_whose_windows_all_fail_gives_up_when_one_without_windows_would(
    delays: tuple[float, ...],
) -> None:
    # The outage a recovery outlasts is the one it outlasted before the window: every policy
    # attempt bounded by the 15 s connect timeout becomes three 5 s windows back to back.
    def gave_up_at(window: float | None) -> float:
        r = _windowed_recoverer(delays, window)
        r.trouble(RecoveryCause.PEER_FAILED, 0.0)
        now = 0.0
        while True:
            timer = r.get_timer()
            if timer is None:
                assert isinstance(_drain(r)[-1], GaveUp)
                return now
            now = timer
            r.handle_timer(now)
            bound = r.ice_window()
            now += 15.0 if bound is None else bound
            r.attempt_failed(now, ice_window=bound is not None)

    assert gave_up_at(ATTEMPT_ICE_WINDOW_S) == pytest.approx(gave_up_at(None))
    assert gave_up_at(None) == pytest.approx(sum(delays) + 15.0 * len(delays))


def test_without_the_connect_timeout_every_window_counts() -> None:
    r = Recoverer(ReconnectPolicy((0.0, 1.0), jitter_s=0), random=lambda: 0.0)
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    r.handle_timer(0.0)
    r.attempt_failed(5.0, ice_window=True)
    assert r.get_timer() == 6.0  # the policy's second attempt, after its 1 s delay


@pytest.mark.parametrize("window", [None, 2.5])
def test_the_ice_window_can_be_set_or_turned_off(window: float | None) -> None:
    r = Recoverer(ReconnectPolicy((0.0, 1.0), jitter_s=0), random=lambda: 0.0, ice_window_s=window)
    r.trouble(RecoveryCause.PEER_FAILED, 0.0)
    r.handle_timer(0.0)
    assert r.ice_window() == window


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
@pytest.mark.parametrize("name", ["ice_window_s", "attempt_timeout_s"])
def test_a_bad_ice_window_or_attempt_timeout_is_misuse(bad: float, name: str) -> None:
    with pytest.raises(errors.LocalProtocolError):
        Recoverer(
            ReconnectPolicy(),
            random=lambda: 0.0,
            ice_window_s=bad if name == "ice_window_s" else ATTEMPT_ICE_WINDOW_S,
            attempt_timeout_s=bad if name == "attempt_timeout_s" else 15.0,
        )


# -- the hold after a full reconnect ---------------------------------------------------------------

_ACTIVE, _JOINED = pb.ParticipantInfo.ACTIVE, pb.ParticipantInfo.JOINED
_OUR_JOIN_MS = 1_796_611_600_957  # our new session's joined_at_ms (the server's clock)


def _info(sid: str, state: int = _JOINED, *, joined_ms: int = 0) -> pb.ParticipantInfo:
    return pb.ParticipantInfo(
        identity=sid[:2],
        sid=sid,
        state=state,  # type: ignore[arg-type]
        joined_at_ms=joined_ms,
    )


_US = _info("tx-new", _JOINED, joined_ms=_OUR_JOIN_MS)


@pytest.mark.parametrize(
    ("info", "back", "back_if_joining_counts"),
    [
        # Not in the room (the room moved to another node, or not rejoined yet).
        (None, False, False),
        # Established: the server writes our packets to it at once.
        (_info("rx-new", _ACTIVE), True, True),
        (_info("rx-old", _ACTIVE), True, True),  # the same session (only we reconnected)
        (_info("rx-old", _JOINED), False, False),  # the same session, never established
        (_info("rx-new", pb.ParticipantInfo.DISCONNECTED), False, False),
        # A new session still joining: held and replayed by the server, as far as its 100 kB
        # cache reaches (a 170 kB resend did not fit: 240 of 500 lost), so only for small ones.
        (_info("rx-new", _JOINED, joined_ms=_OUR_JOIN_MS + 156), False, True),
        (_info("rx-new", _JOINED, joined_ms=_OUR_JOIN_MS - 1_000), False, True),
        (_info("rx-new", pb.ParticipantInfo.JOINING, joined_ms=_OUR_JOIN_MS), False, True),
        (_info("rx-new", _JOINED), False, True),  # a server without join times
        # Joined 15 s before us and still not established: its attempt made during the outage,
        # which its client has given up (the fresh-clone CI failure: 25 of 500 lost to it).
        (_info("rx-new", _JOINED, joined_ms=_OUR_JOIN_MS - 15_000), False, False),
        (
            _info("rx-new", _JOINED, joined_ms=_OUR_JOIN_MS - int(REJOIN_FRESH_S * 1000) - 1),
            False,
            False,
        ),
    ],
)
def test_rejoined(
    info: pb.ParticipantInfo | None, back: bool, back_if_joining_counts: bool
) -> None:
    assert rejoined(info, before_sid="rx-old", own=_US) is back
    assert rejoined(info, before_sid="rx-old", own=_US, joining_counts=True) is (
        back_if_joining_counts
    )


def test_rejoined_falls_back_to_the_join_time_in_seconds() -> None:
    ours = pb.ParticipantInfo(sid="tx-new", joined_at=1_000)
    stuck = pb.ParticipantInfo(sid="rx-new", state=_JOINED, joined_at=985)
    fresh = pb.ParticipantInfo(sid="rx-new", state=_JOINED, joined_at=1_000)
    assert not rejoined(stuck, before_sid="rx-old", own=ours, joining_counts=True)
    assert rejoined(fresh, before_sid="rx-old", own=ours, joining_counts=True)
    assert rejoined(stuck, before_sid="rx-old", own=None, joining_counts=True)  # ours unknown


def test_rejoin_hold_alone_in_the_room_is_released_at_once() -> None:
    hold = RejoinHold({}, now=5.0)
    assert hold.check({}, _US)
    assert (hold.released_by, hold.get_timer()) == ("ready", None)


def test_rejoin_hold_waits_for_an_established_session() -> None:
    # The 15 s outage, replayed: the sender's JoinResponse lists the receiver's join attempt from
    # the outage (JOINED for 15 s); its next session joins just after ours and is announced
    # JOINED, then ACTIVE in the server's next batch. Only ACTIVE releases the ~170 kB resend.
    hold = RejoinHold({"rx": "rx-old"}, now=40.96, held_bytes=170_000)
    stuck = _info("rx-attempt", _JOINED, joined_ms=_OUR_JOIN_MS - 15_143)
    assert not hold.check({"rx": stuck}, _US)
    assert hold.waiting_for({"rx": stuck}, _US) == ["rx"]
    assert hold.get_timer() == 40.96 + REJOIN_HOLD_S
    assert not hold.check({"rx": _info("rx-live", _JOINED, joined_ms=_OUR_JOIN_MS + 156)}, _US)
    assert hold.check({"rx": _info("rx-live", _ACTIVE, joined_ms=_OUR_JOIN_MS + 156)}, _US)
    assert hold.released_by == "ready"
    assert hold.check({}, _US)  # released stays released


@pytest.mark.parametrize(
    ("room_changed", "held_bytes", "released"),
    [
        (True, 0, True),  # a server restart: little to resend, the replay covers it
        (True, REJOIN_JOINING_BYTES, True),
        (True, REJOIN_JOINING_BYTES + 1, False),  # the room moved with a large resend
        (False, 0, False),  # the same room: the session may be an attempt of the outage
    ],
)
def test_rejoin_hold_lets_a_small_resend_go_to_a_joining_receiver_in_a_new_room(
    room_changed: bool, held_bytes: int, released: bool
) -> None:
    hold = RejoinHold({"rx": "rx-old"}, now=0.0, room_changed=room_changed, held_bytes=held_bytes)
    joining = _info("rx-new", _JOINED, joined_ms=_OUR_JOIN_MS + 40)
    assert hold.check({"rx": joining}, _US) is released


def test_rejoin_hold_waits_for_every_earlier_participant() -> None:
    hold = RejoinHold({"a": "a-old", "b": "b-old"}, now=0.0)
    a_back = {"a": _info("a-new", _ACTIVE)}
    assert not hold.check(a_back, _US)
    assert hold.waiting_for(a_back, _US) == ["b"]
    # A newcomer is not waited for, and does not stand in for b.
    assert not hold.check({**a_back, "c": _info("c-new", _ACTIVE)}, _US)
    assert hold.check({**a_back, "b": _info("b-old", _ACTIVE)}, _US)


@pytest.mark.parametrize(
    ("reason", "released"),
    [
        (pb.CLIENT_INITIATED, True),  # it said goodbye
        (pb.PARTICIPANT_REMOVED, True),  # removed through the API
        (pb.DUPLICATE_IDENTITY, False),  # replaced by its own next session
        (pb.JOIN_FAILURE, False),  # a join attempt that did not come up
        (pb.CONNECTION_TIMEOUT, False),
        (pb.SIGNAL_CLOSE, False),
        (pb.UNKNOWN_REASON, False),  # how some server releases show a USER_UNAVAILABLE leave
        (ABANDONED_ATTEMPT_LEAVE_REASON, False),  # the goodbye of a failed reconnect attempt
    ],
)
def test_rejoin_hold_stops_waiting_only_for_who_left_for_good(reason: int, released: bool) -> None:
    hold = RejoinHold({"rx": "rx-old"}, now=0.0)
    hold.participant_left("rx", reason)
    assert hold.check({}, _US) is released


def test_a_failed_attempt_leaves_with_a_reason_the_server_keeps() -> None:
    # livekit-server shows every client leave reason but these two as CLIENT_INITIATED, which
    # the other participants' holds take for "left for good" (core/reconnect.py comment).
    assert ABANDONED_ATTEMPT_LEAVE_REASON in (pb.USER_UNAVAILABLE, pb.USER_REJECTED)


def test_rejoin_hold_is_bounded() -> None:
    hold = RejoinHold({"rx": "rx-old"}, now=10.0, bound_s=20.0)
    hold.handle_timer(29.9)
    assert not hold.released
    hold.handle_timer(30.0)
    assert (hold.released_by, hold.get_timer()) == ("deadline", None)
    hold.release("disconnect")  # the first reason stays
    assert hold.released_by == "deadline"


def test_rejoin_hold_can_be_released_by_the_driver() -> None:
    hold = RejoinHold({"rx": "rx-old"}, now=0.0)
    hold.release("disconnect")
    assert (hold.released, hold.released_by, hold.get_timer()) == (True, "disconnect", None)


def test_rejoin_hold_bound_covers_a_hung_attempt_and_the_update_batching() -> None:
    # A receiver whose attempt made during the outage hangs for the default connect timeout
    # (15 s) rejoins next, and a non-publisher is announced in the server's 3 s batches.
    assert REJOIN_HOLD_S >= 15.0 + 3.0
    assert dict(RejoinHold({"a": "a1"}, now=0.0).before) == {"a": "a1"}


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_rejoin_hold_rejects_bad_durations(bad: float) -> None:
    with pytest.raises(errors.LocalProtocolError):
        RejoinHold({}, now=0.0, bound_s=bad)
    with pytest.raises(errors.LocalProtocolError):
        RejoinHold({}, now=0.0, fresh_s=bad)
