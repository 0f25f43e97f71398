"""String-keyed events with the official SDK's calling convention.

``room.on("participant_connected")(handler)`` or ``room.on("participant_connected", handler)``.
A handler may accept fewer positional arguments than the event carries; extra ones are dropped,
exactly like ``livekit.rtc.EventEmitter``. Handlers must be plain functions (wrap coroutines in
``asyncio.create_task``), and an exception in one handler is logged, not propagated.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["EventEmitter"]

_log = logging.getLogger("lkproto.rtc")

T = TypeVar("T", bound=str)
_Handler = Callable[..., object]


def _arity(callback: _Handler) -> int | None:
    """Positional parameters the callback takes, or None when it takes *args."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _check_sync(callback: _Handler) -> None:
    if inspect.iscoroutinefunction(callback):
        raise ValueError(
            "Cannot register an async callback with `.on()`. "
            "Use `asyncio.create_task` within your synchronous callback instead."
        )


class EventEmitter(Generic[T]):
    """Minimal emitter compatible with ``livekit.rtc.EventEmitter``."""

    def __init__(self) -> None:
        self._events: dict[T, dict[_Handler, int | None]] = {}

    def emit(self, event: T, *args: Any) -> None:
        """Call every handler of ``event`` with as many of ``args`` as it accepts."""
        for callback, arity in list(self._events.get(event, {}).items()):
            try:
                callback(*(args if arity is None else args[:arity]))
            except Exception:
                _log.exception("handler for %r failed", event)

    def on(self, event: T, callback: _Handler | None = None) -> Callable[..., Any]:
        """Register ``callback`` for ``event``; without a callback, return a decorator.

        Raises:
            ValueError: the callback is a coroutine function (as in the official SDK).
        """
        if callback is not None:
            _check_sync(callback)
            self._events.setdefault(event, {})[callback] = _arity(callback)
            return callback

        def decorator(cb: _Handler) -> _Handler:
            self.on(event, cb)
            return cb

        return decorator

    def once(self, event: T, callback: _Handler | None = None) -> Callable[..., Any]:
        """Like :meth:`on`, but the handler runs at most once."""
        if callback is None:

            def decorator(cb: _Handler) -> _Handler:
                self.once(event, cb)
                return cb

            return decorator

        _check_sync(callback)
        arity = _arity(callback)

        def once_wrapper(*args: Any) -> None:
            self.off(event, once_wrapper)
            callback(*(args if arity is None else args[:arity]))

        return self.on(event, once_wrapper)

    def off(self, event: T, callback: _Handler) -> None:
        """Remove a handler (no error if it was not registered)."""
        handlers = self._events.get(event)
        if handlers is not None:
            handlers.pop(callback, None)
