"""The one positive-duration rule (lkproto.core.durations) and the options that use it."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from lkproto.core import agent, reliable, rpc, signal, streams
from lkproto.core.durations import optional_positive_seconds, positive_seconds
from lkproto.errors import LocalProtocolError

REFUSED = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "1", None]


@pytest.mark.parametrize("value", [1, 0.001, 2.5, 10**9])
def test_positive_numbers_pass_as_float(value: float) -> None:
    result = positive_seconds("t", value)
    assert result == float(value)
    assert type(result) is float


@pytest.mark.parametrize("value", REFUSED)
def test_everything_else_is_local_misuse_naming_the_option(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="the_option must be a positive number"):
        positive_seconds("the_option", value)  # type: ignore[arg-type]


def test_optional_lets_none_through_and_checks_the_rest() -> None:
    assert optional_positive_seconds("t", None) is None
    assert optional_positive_seconds("t", 3) == 3.0
    with pytest.raises(LocalProtocolError, match="t must be"):
        optional_positive_seconds("t", 0)


# Every user of the rule refuses the same values with the same message shape.


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True])
def test_every_machine_applies_the_same_rule(value: float) -> None:
    makers: list[Callable[[], object]] = [
        lambda: signal.SignalSession(join_timeout_s=value),
        lambda: signal.SignalSession(request_timeout_s=value),
        lambda: rpc.RpcClient(max_round_trip_latency_s=value),
        lambda: streams.StreamReceiver(handler_for=lambda t, x: True, stream_timeout_s=value),
        lambda: agent.AgentTracker(agent_connect_timeout_s=value),
        lambda: reliable.ReliableReceiver(state_ttl_s=value),
    ]
    for make in makers:
        with pytest.raises(LocalProtocolError, match="must be a positive number of seconds"):
            make()


def test_stream_receiver_keeps_none_as_no_timeout() -> None:
    receiver = streams.StreamReceiver(handler_for=lambda t, x: True, stream_timeout_s=None)
    assert receiver.get_timer() is None
