"""The base of lkproto's public enums: an ``IntEnum`` that also answers protobuf's helpers.

The official ``livekit.rtc`` enums are protobuf enum wrappers, so code written for it calls
``TrackSource.Name(x)``, ``TrackSource.Value("SOURCE_CAMERA")``, ``.keys()``, ``.values()`` and
``.items()``. lkproto's enums are ``IntEnum`` (typed members, ``match``-able) with the same
names and numbers; deriving from :class:`ProtoEnum` adds those five class methods with the
protobuf behaviour: an unknown number or name raises ``ValueError``.
"""

from __future__ import annotations

import enum
from typing import Self

__all__ = ["ProtoEnum"]


class ProtoEnum(enum.IntEnum):
    """``IntEnum`` plus the protobuf enum wrapper's ``Name``, ``Value``, ``keys``, ``values``,
    ``items``."""

    @classmethod
    def Name(cls, number: int) -> str:
        """The member name of ``number``.

        Raises:
            ValueError: no member has that number (as protobuf's ``Name``).
        """
        try:
            return cls(number).name
        except ValueError:
            raise ValueError(
                f"enum {cls.__name__} has no name defined for value {number!r}"
            ) from None

    @classmethod
    def Value(cls, name: str) -> Self:
        """The member called ``name``.

        Raises:
            ValueError: no member has that name (as protobuf's ``Value``).
        """
        member = cls.__members__.get(name)
        if member is None:
            raise ValueError(f"enum {cls.__name__} has no value defined for name {name!r}")
        return member

    @classmethod
    def keys(cls) -> list[str]:
        """Member names in definition order."""
        return list(cls.__members__)

    @classmethod
    def values(cls) -> list[Self]:
        """Members in definition order."""
        return list(cls.__members__.values())

    @classmethod
    def items(cls) -> list[tuple[str, Self]]:
        """``(name, member)`` pairs in definition order."""
        return list(cls.__members__.items())
