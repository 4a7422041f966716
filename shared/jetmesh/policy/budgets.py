"""Budgets in the policy file: how many model tokens, or US dollars, a caller or a tenant
may spend per window.

::

    [budgets.tenant.acme]
    tokens = 100000
    cost_usd = 5.0
    per = "day"

    [budgets.caller."alice@example.com"]
    tokens = 20000
    per = "hour"

A model call that would pass one of the budgets that apply to its verified caller (its
subject and its tenant) is refused before the provider is asked
(:mod:`jetmesh.runtime.budgets`). Windows are fixed and aligned to Unix time: ``"day"`` is
the UTC day, ``"hour"`` the clock hour; a number is a window of that many seconds.

Example:
    >>> Budget(tokens=1000, per="hour").seconds
    3600
    >>> Budget(cost_usd=5.0).window(86400 * 3 + 5)
    (3, 'day 1970-01-04T00:00:00Z')
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

PERIODS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
"""The named windows, in seconds."""

BUDGET_SCOPES = ("caller", "tenant")
"""Whose spending a budget limits: a caller's subject, or a tenant."""


def _period(value: object) -> object:
    """One clear error for a window that is neither a name nor a number of seconds."""
    if value in PERIODS or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"{value!r} is not a window (minute, hour, day, week, or seconds >= 1)")


Period = Annotated[Literal["minute", "hour", "day", "week"] | int, BeforeValidator(_period)]


class Budget(BaseModel):
    """One caller's or tenant's budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(default=None, gt=0)
    """Model tokens (input and output) per window; None: no token limit."""

    cost_usd: float | None = Field(default=None, gt=0)
    """US dollars per window, as the price table counts them; None: no cost limit."""

    per: Period = "day"
    """The window: ``minute``, ``hour``, ``day`` (UTC), ``week`` or a number of seconds."""

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.tokens is None and self.cost_usd is None:
            raise ValueError("a budget sets tokens, cost_usd or both")
        return self

    @property
    def seconds(self) -> int:
        return PERIODS[self.per] if isinstance(self.per, str) else self.per

    def window(self, now: float) -> tuple[int, str]:
        """The window ``now`` (Unix seconds) falls in: its number, and a label for people
        (the window's kind and its start, UTC)."""
        number = int(now // self.seconds)
        start = datetime.fromtimestamp(number * self.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kind = self.per if isinstance(self.per, str) else f"{self.per}s"
        return number, f"{kind} {start}"


class Budgets(BaseModel):
    """The policy's ``[budgets]``: by caller subject and by tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    caller: dict[str, Budget] = Field(default_factory=dict)
    tenant: dict[str, Budget] = Field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.caller or self.tenant)

    def applying(self, subject: str, tenant: str) -> Iterator[tuple[str, str, Budget]]:
        """``(scope, name, budget)`` of each budget that limits a call for the caller
        ``subject`` of ``tenant``."""
        if (budget := self.caller.get(subject)) is not None:
            yield "caller", subject, budget
        if (budget := self.tenant.get(tenant)) is not None:
            yield "tenant", tenant, budget

    def joined(self, more: Budgets, where: str, problems: list[str]) -> Budgets:
        """These budgets and ``more``'s (another file's); a name in both is a problem."""
        merged: dict[str, dict[str, Budget]] = {
            "caller": dict(self.caller),
            "tenant": dict(self.tenant),
        }
        for scope in BUDGET_SCOPES:
            for name, budget in getattr(more, scope).items():
                if merged[scope].setdefault(name, budget) is not budget:
                    problems.append(f"{where}: budgets.{scope}.{name}: already set in another file")
        return Budgets(caller=merged["caller"], tenant=merged["tenant"])
