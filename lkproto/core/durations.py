"""The one rule for durations and deadlines given to lkproto.

Every timeout, interval or deadline a caller passes (``RoomOptions.connect_timeout``, RPC response
timeouts, stream timeouts, the agent connect deadline, ...) is checked here, so all of them accept
and refuse the same values: a real number of seconds (``int`` or ``float``, not ``bool``), finite
and strictly positive. Refusal is local misuse: :class:`~lkproto.errors.LocalProtocolError`, raised
before anything is sent.
"""

from __future__ import annotations

import math

from lkproto.errors import LocalProtocolError

__all__ = ["optional_positive_seconds", "positive_seconds"]


def positive_seconds(name: str, value: float) -> float:
    """Return ``value`` as a float after checking it is a positive, finite number of seconds.

    Args:
        name: the option's name, quoted in the error.
        value: the caller's value.

    Raises:
        LocalProtocolError: not an ``int``/``float`` (``bool`` is refused), NaN, infinite, or <= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise LocalProtocolError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def optional_positive_seconds(name: str, value: float | None) -> float | None:
    """As :func:`positive_seconds`, but ``None`` (meaning "no limit" or "the default") passes."""
    return None if value is None else positive_seconds(name, value)
