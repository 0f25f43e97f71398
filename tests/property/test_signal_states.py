"""SignalSession under arbitrary input sequences (h2-style states x inputs sweep).

Invariants: nothing but a *documented* LocalProtocolError escapes; the state only moves along
SIGNAL_TRANSITIONS edges; outputs are well formed; deadlines are never in the past after
handle_timer(now); frames are only produced while a socket is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lkproto.core.signal import (
    SIGNAL_IGNORED,
    SIGNAL_TRANSITIONS,
    ProtocolViolated,
    SignalEvent,
    SignalInput,
    SignalSession,
    SignalState,
)
from lkproto.errors import LocalProtocolError
from lkproto.wire import pb
from tests._support.pbstrategies import messages

EDGES = {(src, dst) for (src, _), dst in SIGNAL_TRANSITIONS.items()}


def _frame(**fields: object) -> bytes:
    return pb.SignalResponse(**fields).SerializeToString()  # type: ignore[arg-type]


_join = st.builds(
    lambda interval, timeout: _frame(
        join=pb.JoinResponse(
            participant=pb.ParticipantInfo(sid="PA_x"),
            ping_interval=interval,
            ping_timeout=timeout,
        )
    ),
    st.sampled_from([0, 1, 5, -2]),
    st.sampled_from([0, 3, 15, -1]),
)
_RECONNECT = _frame(reconnect=pb.ReconnectResponse(last_message_seq=3))
_reconnect = st.just(_RECONNECT)
_leave = st.builds(
    lambda reason, action: _frame(leave=pb.LeaveRequest(reason=reason, action=action)),
    st.integers(0, 20),
    st.sampled_from([0, 1, 2, 9]),
)
_pong = st.builds(
    lambda ts: _frame(pong_resp=pb.Pong(last_ping_timestamp=ts)),
    st.integers(-(2**40), 2**40),
)
_request_response = st.builds(
    lambda rid, reason: _frame(request_response=pb.RequestResponse(request_id=rid, reason=reason)),
    st.integers(0, 6),
    st.integers(0, 12),
)
_any_response = messages(pb.SignalResponse.DESCRIPTOR, depth=2).map(lambda m: m.SerializeToString())
_unknown = st.just(bytes([0xC2, 0x0C, 0x01, 0x00]))  # field 200, length-delimited
FRAMES: st.SearchStrategy[bytes | str] = st.one_of(
    _join,
    _reconnect,
    _leave,
    _pong,
    _request_response,
    _any_response,
    _unknown,
    st.binary(max_size=24),
    st.text(max_size=8),
)

_any_request = messages(pb.SignalRequest.DESCRIPTOR, depth=1)


@dataclass
class Model:
    """What the test knows independently of the session (for the misuse oracle)."""

    session: SignalSession = field(default_factory=SignalSession)
    now: float = 0.0


def _local(model: Model, input_: SignalInput) -> bool:
    """True if the table says this local input is misuse (must raise)."""
    key = (model.session.state, input_)
    return key not in SIGNAL_TRANSITIONS and key not in SIGNAL_IGNORED


Step = Callable[[Model], bool]  # runs one input; returns whether LocalProtocolError is expected


def _open(resume: bool) -> Step:
    def step(m: Model) -> bool:
        misuse = _local(m, SignalInput.OPEN_RESUME if resume else SignalInput.OPEN)
        misuse = misuse or (resume and m.session.join_response is None)
        m.session.connection_opened(m.now, resume=resume)
        return misuse

    return step


def _receive(data: bytes | str) -> Step:
    def step(m: Model) -> bool:
        misuse = m.session.state is SignalState.IDLE
        m.session.receive_data(data, m.now)
        return misuse

    return step


def _lost(m: Model) -> bool:
    m.session.connection_lost(m.now, "gone")
    return False


def _advance(dt: float, fire: bool) -> Step:
    def step(m: Model) -> bool:
        m.now += dt
        if fire:
            m.session.handle_timer(m.now)
        return False

    return step


def _fire_next(m: Model) -> bool:
    deadline = m.session.get_timer()
    if deadline is not None and deadline > m.now:
        m.now = deadline
    m.session.handle_timer(m.now)
    return False


def _send(call: Callable[[SignalSession, float], object]) -> Step:
    def step(m: Model) -> bool:
        misuse = _local(m, SignalInput.SEND)
        call(m.session, m.now)
        return misuse

    return step


def _send_generic(request: Message) -> Step:
    # _any_request draws from SignalRequest's descriptor, whose class is pb.SignalRequest
    assert isinstance(request, pb.SignalRequest)

    def step(m: Model) -> bool:
        kind = request.WhichOneof("message")
        if kind == "leave":
            misuse = _local(m, SignalInput.CLIENT_LEAVE)
        else:
            misuse = _local(m, SignalInput.SEND) or kind is None
        m.session.send(request, m.now)
        return misuse

    return step


def _leave_step(m: Model) -> bool:
    m.session.send_leave(m.now, reason=pb.USER_UNAVAILABLE)
    return _local(m, SignalInput.CLIENT_LEAVE)


def _flush(m: Model) -> bool:
    misuse = _local(m, SignalInput.FLUSH)
    m.session.flush_queued(m.now)
    return misuse


STEPS: st.SearchStrategy[Step] = st.one_of(
    st.builds(_open, st.booleans()),
    FRAMES.map(_receive),
    FRAMES.map(_receive),
    st.just(_lost),
    st.builds(_advance, st.floats(0, 20, allow_nan=False, allow_infinity=False), st.booleans()),
    st.just(_fire_next),
    st.just(_fire_next),
    st.just(_send(lambda s, now: s.send_offer("o", 1, now))),
    st.just(_send(lambda s, now: s.send_answer("a", 2, now))),
    st.just(_send(lambda s, now: s.send_trickle("{}", pb.PUBLISHER, now, final=True))),
    st.just(_send(lambda s, now: s.update_metadata(now, name="n", attributes={"a": ""}))),
    st.just(_send(lambda s, now: s.send_sync_state(pb.SyncState(), now))),
    st.just(_send(lambda s, now: s.send_simulate(pb.SimulateScenario(node_failure=True), now))),
    _any_request.map(_send_generic),
    st.just(_leave_step),
    st.just(_flush),
)


def _check_outputs(m: Model, before: SignalState) -> None:
    session = m.session
    requests = session.requests_to_send()
    for request, data in requests:
        assert isinstance(request, pb.SignalRequest)
        assert data == request.SerializeToString()
        assert request.WhichOneof("message") is not None
        if request.WhichOneof("message") == "ping_req":
            assert before is SignalState.CONNECTED
    if requests:
        # Frames only go to an open socket (a leave may close the session in the same call).
        assert before in (SignalState.CONNECTING, SignalState.CONNECTED)
    while (event := session.next_event()) is not None:
        assert isinstance(event, SignalEvent)
        if isinstance(event, ProtocolViolated):
            assert before in (SignalState.CONNECTING, SignalState.CONNECTED)


_JOIN_5_15 = _frame(join=pb.JoinResponse(ping_interval=5, ping_timeout=15))
# Prefixes that put the session somewhere interesting before the random part starts.
PREFIXES: st.SearchStrategy[list[Step]] = st.sampled_from(
    [
        [],
        [_open(False)],
        [_open(False), _receive(_JOIN_5_15)],
        [_open(False), _receive(_JOIN_5_15), _lost],
        [_open(False), _receive(_JOIN_5_15), _lost, _open(True)],
        [_open(False), _receive(_JOIN_5_15), _lost, _open(True), _receive(_RECONNECT)],
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=PREFIXES, steps=st.lists(STEPS, max_size=40))
def test_random_inputs_respect_the_table(prefix: list[Step], steps: list[Step]) -> None:
    m = Model()
    for step in [*prefix, *steps]:
        before = m.session.state
        try:
            expected_misuse = step(m)
        except LocalProtocolError:
            # Nothing changes on misuse, and only documented misuse may raise.
            assert m.session.state is before
            continue
        assert not expected_misuse, f"misuse went unnoticed in {before}"
        after = m.session.state
        assert isinstance(after, SignalState)
        event(f"{before.name}->{after.name}")
        assert after is before or (before, after) in EDGES, (before, after)
        if after is SignalState.CLOSED:
            assert m.session.get_timer() is None
            assert m.session.queued_count == 0
            assert m.session.pending_request_ids == frozenset()
        _check_outputs(m, before)


@settings(max_examples=300, deadline=None)
@given(
    prefix=PREFIXES,
    steps=st.lists(STEPS, max_size=30),
    gaps=st.lists(st.floats(0, 50, allow_nan=False, allow_infinity=False), min_size=1),
)
def test_timer_is_never_in_the_past_after_handle_timer(
    prefix: list[Step], steps: list[Step], gaps: list[float]
) -> None:
    m = Model()
    for i, step in enumerate([*prefix, *steps]):
        with contextlib.suppress(LocalProtocolError):
            step(m)
        m.session.requests_to_send()
        while m.session.next_event() is not None:
            pass
        m.now += gaps[i % len(gaps)]
        m.session.handle_timer(m.now)
        timer = m.session.get_timer()
        assert timer is None or timer > m.now


# ---------------------------------------------------------------- exhaustive states x inputs


def _session_in(state: SignalState) -> SignalSession:
    s = SignalSession()
    if state is SignalState.IDLE:
        return s
    s.connection_opened(0.0)
    if state is SignalState.CONNECTING:
        return s
    s.receive_data(_frame(join=pb.JoinResponse(ping_interval=5, ping_timeout=15)), 0.0)
    if state is SignalState.CONNECTED:
        return s
    if state is SignalState.DISCONNECTED:
        s.connection_lost(1.0, "gone")
        return s
    s.send_leave(1.0)
    return s


_LOCAL_CALLS: dict[SignalInput, Callable[[SignalSession], object]] = {
    SignalInput.OPEN: lambda s: s.connection_opened(2.0),
    SignalInput.OPEN_RESUME: lambda s: s.connection_opened(2.0, resume=True),
    SignalInput.LOST: lambda s: s.connection_lost(2.0, "x"),
    SignalInput.CLIENT_LEAVE: lambda s: s.send_leave(2.0),
    SignalInput.SEND: lambda s: s.update_metadata(2.0, name="x"),
    SignalInput.FLUSH: lambda s: s.flush_queued(2.0),
}
_REMOTE_FRAMES: dict[SignalInput, bytes] = {
    SignalInput.JOIN: _frame(join=pb.JoinResponse()),
    SignalInput.RESUMED: _frame(reconnect=pb.ReconnectResponse()),
    SignalInput.LEAVE_DISCONNECT: _frame(leave=pb.LeaveRequest()),
    SignalInput.LEAVE_RETRY: _frame(leave=pb.LeaveRequest(action=pb.LeaveRequest.RESUME)),
    SignalInput.MESSAGE: _frame(refresh_token="t"),
}


@pytest.mark.parametrize("state", list(SignalState))
@pytest.mark.parametrize("input_", list(_LOCAL_CALLS))
def test_every_local_input_in_every_state(state: SignalState, input_: SignalInput) -> None:
    s = _session_in(state)
    assert s.state is state
    key = (state, input_)
    if key in SIGNAL_TRANSITIONS:
        _LOCAL_CALLS[input_](s)
        assert s.state is SIGNAL_TRANSITIONS[key]
    elif key in SIGNAL_IGNORED:
        _LOCAL_CALLS[input_](s)
        assert s.state is state
    else:
        with pytest.raises(LocalProtocolError):
            _LOCAL_CALLS[input_](s)
        assert s.state is state


@pytest.mark.parametrize("state", list(SignalState))
@pytest.mark.parametrize("input_", list(_REMOTE_FRAMES))
def test_every_remote_input_in_every_state(state: SignalState, input_: SignalInput) -> None:
    s = _session_in(state)
    while s.next_event() is not None:
        pass
    if state is SignalState.IDLE:
        with pytest.raises(LocalProtocolError):
            s.receive_data(_REMOTE_FRAMES[input_], 2.0)
        return
    s.receive_data(_REMOTE_FRAMES[input_], 2.0)
    events = []
    while (ev := s.next_event()) is not None:
        events.append(ev)
    key = (state, input_)
    # A fresh connection refuses a ReconnectResponse (first-frame guard).
    guarded = key == (SignalState.CONNECTING, SignalInput.RESUMED)
    if state in (SignalState.DISCONNECTED, SignalState.CLOSED):
        assert events == []
        assert s.state is state
    elif key in SIGNAL_TRANSITIONS and not guarded:
        assert s.state is SIGNAL_TRANSITIONS[key]
        assert not any(isinstance(e, ProtocolViolated) for e in events)
    else:
        assert s.state is state
        assert [type(e) for e in events] == [ProtocolViolated]


@pytest.mark.parametrize("state", [SignalState.CONNECTING, SignalState.CONNECTED])
@pytest.mark.parametrize("input_", [SignalInput.JOIN_TIMEOUT, SignalInput.PING_TIMEOUT])
def test_timeouts_follow_the_table(state: SignalState, input_: SignalInput) -> None:
    s = _session_in(state)
    s.handle_timer(10_000.0)
    key = (state, input_)
    fired = (state, input_) in {
        (SignalState.CONNECTING, SignalInput.JOIN_TIMEOUT),
        (SignalState.CONNECTED, SignalInput.PING_TIMEOUT),
    }
    if fired:
        assert s.state is SIGNAL_TRANSITIONS[key]
    else:
        assert key not in SIGNAL_TRANSITIONS
