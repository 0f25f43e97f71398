"""Test kit: a real livekit-server on loopback, and the helpers lkproto's own suite uses.

Everything here needs only the standard library, so it imports without the ``rtc`` extra.

- :class:`LocalServer` starts a pinned livekit-server bound to 127.0.0.1.
- :func:`ensure_livekit_server` builds and caches that server with ``go install``.
- :func:`scaled` stretches test timings by ``$LKPROTO_TEST_TIME_SCALE``.
- :class:`LocalCluster` runs two (or more) livekit-server nodes sharing a private Redis, with
  rooms pinned to a node and node kills (:mod:`lkproto.testing.cluster`).
- :class:`FaultLab` runs the server and client workers in a network namespace and impairs the
  traffic there (loss, outages, rate limits, server kills); see :mod:`lkproto.testing.faults`.
- :class:`SignalPeer` (needs the ``rtc`` extra, imported on first use) is an in-memory signal
  server an Engine or a Room can connect to without a network
  (:mod:`lkproto.testing.signal_peer`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError
from lkproto.testing.cluster import LocalCluster
from lkproto.testing.faults import FaultLab, Impairment
from lkproto.testing.install import (
    DEFAULT_LIVEKIT_SERVER_VERSION,
    binary_path,
    default_cache_dir,
    ensure_livekit_server,
    server_version,
)
from lkproto.testing.server import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    LocalServer,
    deep_merge,
    scrubbed_env,
    server_config,
)

if TYPE_CHECKING:
    from lkproto.testing.signal_peer import SignalConnection, SignalPeer

__all__ = [
    "DEFAULT_LIVEKIT_SERVER_VERSION",
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "TIME_SCALE_ENV",
    "FaultLab",
    "Impairment",
    "LocalCluster",
    "LocalServer",
    "SignalConnection",
    "SignalPeer",
    "binary_path",
    "deep_merge",
    "default_cache_dir",
    "ensure_livekit_server",
    "scaled",
    "scrubbed_env",
    "server_config",
    "server_version",
    "time_scale",
]

TIME_SCALE_ENV: Final = "LKPROTO_TEST_TIME_SCALE"
"""Environment variable multiplying every timeout and wait in tests (e.g. ``3`` on slow CI)."""


def time_scale() -> float:
    """Return the factor from ``$LKPROTO_TEST_TIME_SCALE`` (1.0 when unset or empty).

    Raises:
        LocalProtocolError: the variable is not a positive number.
    """
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise LocalProtocolError(f"${TIME_SCALE_ENV} must be a number, got {raw!r}") from None
    # A factor of durations: the same positive, finite rule as every duration.
    return positive_seconds(f"${TIME_SCALE_ENV}", factor)


def scaled(seconds: float) -> float:
    """Stretch a test duration by :func:`time_scale`.

    Args:
        seconds: the duration on a normal machine.

    Returns:
        ``seconds * time_scale()``.
    """
    return seconds * time_scale()


def __getattr__(name: str) -> Any:
    # The signal peer needs aiortc (the rtc extra); the rest of the kit only the standard library.
    if name in ("SignalPeer", "SignalConnection"):
        from lkproto.testing import signal_peer

        return getattr(signal_peer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
