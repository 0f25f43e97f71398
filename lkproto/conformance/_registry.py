"""The scenario registry: :func:`scenario` records each check in :data:`REGISTRY`."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from lkproto.conformance._context import Context

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "REGISTRY",
    "Outcome",
    "Result",
    "Scenario",
    "ScenarioFn",
    "Unsupported",
    "scenario",
    "select",
]

DEFAULT_TIMEOUT_S: Final = 45.0
"""Budget of one scenario (before ``LKPROTO_TEST_TIME_SCALE``) unless it names its own."""

Outcome = Literal["pass", "fail", "unsupported"]
ScenarioFn = Callable[["Context"], Awaitable[None]]


class Unsupported(Exception):
    """Raised by a scenario (or an adapter) when the client under test cannot do what the
    scenario needs; the result is ``unsupported`` with this message as the reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One registered check.

    Attributes:
        name: dotted name, e.g. ``data.reliable.topic``; unique.
        doc: the docstring: which protocol rule it checks (and the PROTOCOL-MAP section).
        needs: adapter capabilities the client under test must have (else ``unsupported``).
        timeout_s: budget before scaling.
        fn: ``async def fn(ctx: Context) -> None``; returns = pass, ``AssertionError`` = fail,
            :class:`Unsupported` = unsupported, anything else = fail with the exception.
    """

    name: str
    doc: str
    needs: frozenset[str]
    timeout_s: float
    fn: ScenarioFn


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The outcome of one scenario for one client (one row of the JSON report)."""

    scenario: str
    client: str
    result: Outcome
    reason: str
    seconds: float
    server: str = ""
    """The server release the run was against (``"v1.13.5"``); empty when unknown."""
    started: float | None = None
    """Seconds from the start of the whole run to the start of this one (lane wall times)."""

    def to_json(self) -> dict[str, object]:
        """The report object ``{"scenario", "client", "result", "reason", "seconds"}``, plus
        ``"server"`` and ``"started"`` when known (readers of the five keys are unaffected)."""
        row: dict[str, object] = {
            "scenario": self.scenario,
            "client": self.client,
            "result": self.result,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
        }
        if self.server:
            row["server"] = self.server
        if self.started is not None:
            row["started"] = round(self.started, 2)
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, object]) -> Result:
        """Read one row written by :meth:`to_json` (or by a runner without the optional keys).

        Raises:
            ValueError: a required key is missing or has the wrong type.
        """
        try:
            outcome = row["result"]
            if outcome not in ("pass", "fail", "unsupported"):
                raise ValueError(f"unknown result {outcome!r}")
            seconds = row["seconds"]
            started = row.get("started")
            if not isinstance(seconds, int | float) or not (
                started is None or isinstance(started, int | float)
            ):
                raise ValueError("seconds/started must be numbers")
            return cls(
                scenario=str(row["scenario"]),
                client=str(row["client"]),
                result=outcome,
                reason=str(row.get("reason", "")),
                seconds=float(seconds),
                server=str(row.get("server", "")),
                started=None if started is None else float(started),
            )
        except KeyError as exc:
            raise ValueError(f"report row lacks {exc.args[0]!r}: {row!r}") from None


REGISTRY: dict[str, Scenario] = {}
"""Every registered scenario by name, in registration order."""


def scenario(
    name: str, *, needs: Iterable[str] = (), timeout: float = DEFAULT_TIMEOUT_S
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register ``async def check(ctx)`` as the scenario ``name``.

    Args:
        name: dotted name (``group.feature.detail``), unique in the catalogue.
        needs: capabilities of the client adapter the scenario uses (see
            :data:`lkproto.conformance.adapters.CAPABILITIES`).
        timeout: seconds (before scaling) after which the scenario fails.

    Raises:
        ValueError: the name is taken, or the function has no docstring.
    """

    def register(fn: ScenarioFn) -> ScenarioFn:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} is registered twice")
        doc = inspect.cleandoc(fn.__doc__ or "")
        if not doc:
            raise ValueError(f"scenario {name!r} needs a docstring naming the rule it checks")
        REGISTRY[name] = Scenario(
            name=name, doc=doc, needs=frozenset(needs), timeout_s=timeout, fn=fn
        )
        return fn

    return register


def select(patterns: Iterable[str] | None = None) -> list[Scenario]:
    """Registered scenarios whose name matches any glob in ``patterns`` (all when empty)."""
    wanted = list(patterns or ())
    return [
        s
        for s in REGISTRY.values()
        if not wanted or any(fnmatch.fnmatchcase(s.name, p) for p in wanted)
    ]
