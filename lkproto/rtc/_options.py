"""The one policy for options lkproto cannot apply as the official SDK does (STYLE rule 12).

An option of the official ``livekit.rtc`` is either honoured, or refused at the earliest point with
:class:`~lkproto.errors.UnsupportedFeatureError` naming it, or, only where the official SDK itself
treats the option as a hint that may have no effect, accepted with one warning per process (and
listed in the README's options table). :func:`refuse` and :func:`warn_once` are those two outcomes,
so every refusal and every hint reads and logs the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from lkproto.errors import UnsupportedFeatureError

__all__ = ["check_loop", "refuse", "warn_once"]

_log = logging.getLogger("lkproto.rtc")

# Features already warned about; module state on purpose: "one warning" means once per process,
# not once per Room (an agent worker creates a room per job).
_warned: set[str] = set()


def refuse(feature: str, reason: str) -> NoReturn:
    """Raise :class:`~lkproto.errors.UnsupportedFeatureError` for ``feature``.

    Args:
        feature: the option as the caller wrote it, e.g. ``"RoomOptions.e2ee"``.
        reason: what is missing, or what to use instead.
    """
    raise UnsupportedFeatureError(feature, reason)


def check_loop(feature: str, loop: asyncio.AbstractEventLoop | None) -> None:
    """Honour an official ``loop`` argument: lkproto runs on the loop that calls it, so a given
    loop must be that one (checked when a loop is running; None always passes).

    Raises:
        lkproto.errors.UnsupportedFeatureError: ``loop`` is not the running loop.
    """
    if loop is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return  # constructed outside a loop: it is the one it will run on
    if loop is not running:
        refuse(feature, "lkproto delivers on the event loop it runs on; pass that loop or None")


def warn_once(feature: str, behaviour: str) -> bool:
    """Log one warning per process that the hint ``feature`` is accepted but not applied.

    Args:
        feature: the option, e.g. ``"RoomOptions.dynacast"``.
        behaviour: what lkproto does instead.

    Returns:
        True when this call logged the warning (the first for ``feature``).
    """
    if feature in _warned:
        return False
    _warned.add(feature)
    _log.warning("%s is a hint lkproto does not apply: %s", feature, behaviour)
    return True
