"""EventEmitter: the official SDK's calling convention (lkproto.rtc.event_emitter).

The shared behaviour is checked against both lkproto's emitter and ``livekit.rtc.EventEmitter``
(when the official SDK is installed), so a divergence shows up as a failure on one side only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest

from lkproto.rtc import EventEmitter

Emitter = EventEmitter[str]  # the official one has the same shape; tests use it duck-typed


def _official() -> Emitter:
    rtc = pytest.importorskip("livekit.rtc")
    return cast("Emitter", rtc.EventEmitter[str]())


@pytest.fixture(
    params=[
        pytest.param(EventEmitter[str], id="lkproto"),
        pytest.param(_official, id="official"),
    ]
)
def emitter(request: pytest.FixtureRequest) -> Emitter:
    factory: Callable[[], Emitter] = request.param
    return factory()


# -- shared behaviour (both SDKs) ----------------------------------------------------------------


def test_direct_form_returns_the_callback_and_receives_args(emitter: Emitter) -> None:
    got: list[tuple[object, ...]] = []

    def handler(a: object, b: object) -> None:
        got.append((a, b))

    assert emitter.on("ev", handler) is handler
    emitter.emit("ev", 1, 2)
    assert got == [(1, 2)]


def test_decorator_form_returns_the_function_unchanged(emitter: Emitter) -> None:
    got: list[object] = []

    @emitter.on("ev")
    def handler(a: object) -> None:
        got.append(a)

    assert handler.__name__ == "handler"
    handler("direct")
    emitter.emit("ev", "emitted")
    assert got == ["direct", "emitted"]


@pytest.mark.parametrize(
    ("make_handler", "expected"),
    [
        pytest.param(lambda got: lambda: got.append(()), (), id="no-params"),
        pytest.param(lambda got: lambda a: got.append((a,)), (1,), id="one-param"),
        pytest.param(lambda got: lambda a, b: got.append((a, b)), (1, 2), id="two-params"),
        pytest.param(lambda got: lambda *a: got.append(a), (1, 2, 3), id="varargs"),
        pytest.param(lambda got: lambda a, *r: got.append((a, *r)), (1, 2, 3), id="one+varargs"),
        pytest.param(lambda got: lambda a, b=None: got.append((a, b)), (1, 2), id="default-counts"),
        pytest.param(
            lambda got: lambda a, *, k=0: got.append((a, k)), (1, 0), id="kw-only-ignored"
        ),
        pytest.param(lambda got: lambda a, /: got.append((a,)), (1,), id="positional-only"),
        pytest.param(
            lambda got: lambda a, **kw: got.append((a, kw)), (1, {}), id="var-keyword-ignored"
        ),
    ],
)
def test_extra_args_are_dropped_to_the_handler_arity(
    emitter: Emitter,
    make_handler: Callable[[list[tuple[object, ...]]], Callable[..., None]],
    expected: tuple[object, ...],
) -> None:
    got: list[tuple[object, ...]] = []
    emitter.on("ev", make_handler(got))
    emitter.emit("ev", 1, 2, 3)
    assert got == [expected]


def test_bound_methods_and_partials_count_their_visible_params(emitter: Emitter) -> None:
    got: list[tuple[object, ...]] = []

    class Listener:
        def on_ev(self, a: object) -> None:
            got.append(("method", a))

    def three(tag: str, a: object, b: object) -> None:
        got.append((tag, a, b))

    emitter.on("ev", Listener().on_ev)
    emitter.on("ev", functools.partial(three, "partial"))
    emitter.emit("ev", 1, 2, 3)
    assert got == [("method", 1), ("partial", 1, 2)]


def test_builtin_bound_method_is_trimmed_too(emitter: Emitter) -> None:
    got: list[object] = []
    emitter.on("ev", got.append)
    emitter.emit("ev", 1, 2)
    assert got == [1]


def test_handlers_run_in_registration_order_and_once_each(emitter: Emitter) -> None:
    order: list[str] = []

    def first() -> None:
        order.append("first")

    def second() -> None:
        order.append("second")

    emitter.on("ev", first)
    emitter.on("ev", second)
    emitter.on("ev", first)  # registering twice does not call twice
    emitter.emit("ev")
    assert order == ["first", "second"]


def test_off_removes_and_tolerates_unknown(emitter: Emitter) -> None:
    calls: list[int] = []

    def handler() -> None:
        calls.append(1)

    emitter.off("never-registered", handler)
    emitter.on("ev", handler)
    emitter.off("ev", handler)
    emitter.off("ev", handler)
    emitter.emit("ev")
    emitter.emit("no-handlers-at-all", 1, 2)
    assert calls == []


def test_events_are_independent(emitter: Emitter) -> None:
    got: list[str] = []
    emitter.on("a", lambda: got.append("a"))
    emitter.on("b", lambda: got.append("b"))
    emitter.emit("b")
    assert got == ["b"]


def test_handler_removing_itself_during_emit_does_not_skip_others(emitter: Emitter) -> None:
    got: list[str] = []

    def selfish() -> None:
        got.append("selfish")
        emitter.off("ev", selfish)

    emitter.on("ev", selfish)
    emitter.on("ev", lambda: got.append("other"))
    emitter.emit("ev")
    emitter.emit("ev")
    assert got == ["selfish", "other", "other"]


def test_once_direct_and_decorator(emitter: Emitter) -> None:
    got: list[object] = []

    def direct(*args: object) -> None:
        got.append(("direct", *args))

    emitter.once("ev", direct)

    @emitter.once("ev")
    def decorated(*args: object) -> None:
        got.append(("decorated", *args))

    emitter.emit("ev", 1)
    emitter.emit("ev", 2)
    assert got == [("direct", 1), ("decorated", 1)]
    decorated(3)  # the decorator gives the function back unchanged
    assert got[-1] == ("decorated", 3)


@pytest.mark.parametrize(
    "register",
    [
        pytest.param(lambda em, cb: em.on("ev", cb), id="on-direct"),
        pytest.param(lambda em, cb: em.on("ev")(cb), id="on-decorator"),
    ],
)
def test_async_callback_is_rejected(
    emitter: Emitter, register: Callable[[Emitter, Callable[..., Any]], object]
) -> None:
    async def handler(a: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="async callback"):
        register(emitter, handler)
    emitter.emit("ev", 1)


def test_raising_handler_is_logged_and_the_next_one_still_runs(
    emitter: Emitter, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[object] = []

    def broken(a: object) -> None:
        raise RuntimeError("boom")

    emitter.on("ev", broken)
    emitter.on("ev", got.append)
    with caplog.at_level(logging.ERROR):
        emitter.emit("ev", 1)  # does not raise
    assert got == [1]
    records = [r for r in caplog.records if r.exc_info and "boom" in str(r.exc_info[1])]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR


# -- lkproto only ----------------------------------------------------------------------------------


def test_lkproto_logs_on_its_own_logger(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter[str]()

    def broken() -> None:
        raise RuntimeError("boom")

    em.on("ev", broken)
    with caplog.at_level(logging.ERROR, logger="lkproto.rtc"):
        em.emit("ev")
    assert [r.name for r in caplog.records] == ["lkproto.rtc"]
    assert "'ev'" in caplog.records[0].getMessage()


def test_lkproto_once_trims_args_to_the_handler_arity() -> None:
    # the official ``once`` forwards every arg, so a 1-param handler there gets a TypeError
    em = EventEmitter[str]()
    got: list[object] = []

    def handler(a: object) -> None:
        got.append(a)

    em.once("ev", handler)
    em.emit("ev", 1, 2, 3)
    em.emit("ev", 4)
    assert got == [1]


def test_lkproto_handler_type_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # Deliberate difference: livekit.rtc.EventEmitter re-raises TypeError out of emit() (and so
    # out of its room's event loop task); lkproto treats it like any other handler failure.
    em = EventEmitter[str]()
    got: list[str] = []

    def needs_three(a: object, b: object, c: object) -> None:
        got.append("never")

    em.on("ev", needs_three)
    em.on("ev", lambda: got.append("next"))
    with caplog.at_level(logging.ERROR, logger="lkproto.rtc"):
        em.emit("ev", 1)
    assert got == ["next"]
    assert len(caplog.records) == 1


def test_lkproto_once_handler_can_be_removed_through_its_wrapper() -> None:
    em = EventEmitter[str]()
    got: list[int] = []
    wrapper = em.once("ev", lambda: got.append(1))
    em.off("ev", wrapper)
    em.emit("ev")
    assert got == []


def test_lkproto_once_rejects_async_callback() -> None:
    em = EventEmitter[str]()

    async def handler() -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="async callback"):
        em.once("ev", handler)


def test_lkproto_callable_without_signature_gets_every_arg() -> None:
    # livekit.rtc inspects the signature inside emit() and logs the failure instead of calling
    class Opaque:
        __signature__ = "not a Signature"  # makes inspect.signature() raise TypeError

        def __init__(self) -> None:
            self.got: list[tuple[object, ...]] = []

        def __call__(self, *args: object) -> None:
            self.got.append(args)

    em = EventEmitter[str]()
    handler = Opaque()
    em.on("ev", handler)
    em.emit("ev", 1, 2)
    assert handler.got == [(1, 2)]
