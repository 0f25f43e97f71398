"""The data-channel labels of the LiveKit protocol (PROTOCOL-MAP §3 Data channels).

A client creates ``_reliable`` (ordered, retransmitted) and ``_lossy`` (unordered, no
retransmits) on the peer connection it publishes from; the server opens the same labels (and
``_data_track`` for data tracks, §12) on the one it sends from. Every layer names a channel by
these constants, never by a string literal, so the three labels have one definition.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DATA_CHANNEL_LABELS", "DATA_TRACK_LABEL", "LOSSY_LABEL", "RELIABLE_LABEL"]

RELIABLE_LABEL: Final = "_reliable"
"""Ordered and reliable: user packets, data streams, RPC, chat (PROTOCOL-MAP §3)."""

LOSSY_LABEL: Final = "_lossy"
"""Unordered, ``maxRetransmits=0``: lossy user packets (PROTOCOL-MAP §3)."""

DATA_TRACK_LABEL: Final = "_data_track"
"""Unordered, ``maxRetransmits=0``: data track frames (PROTOCOL-MAP §3, §12)."""

DATA_CHANNEL_LABELS: Final = (RELIABLE_LABEL, LOSSY_LABEL, DATA_TRACK_LABEL)
"""Every label, in the order §3 lists them."""
