"""The limits that keep a runaway plan off the bus: how deep calls may nest, and how many
calls one task may make.

A call is checked where it is made, before anything is sent (``ctx.call``,
``ctx.gather``), and a task is checked again where it arrives, for publishers that do not
check (a replica refuses it as ``plan-too-deep``). The depth of a step key is its number
of nested calls: ``triage`` is 0, ``triage/billing.1`` is 1, ``triage/billing.1/kb.1`` is 2.

Example:
    >>> depth("triage/billing.1/kb.1")
    2
    >>> refused = PlanLimits(max_call_depth=1).check("triage/billing.1/kb.1", "kb", 1)
    >>> refused.reason, refused.limit
    ('plan-too-deep', 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from .._exceptions import (
    BodyRejected,
    BudgetExceeded,
    CallerInvalid,
    CallFailed,
    ExpiredToken,
    FanOutExceeded,
    InvalidToken,
    MemoryDenied,
    PlanLimitExceeded,
    PlanTooDeep,
    ScopeDenied,
)
from ..policy.model import policy_of
from ..settings import MeshSettings

_DEFAULTS = MeshSettings.model_fields
TOKEN_REFUSALS = frozenset({InvalidToken.code, ExpiredToken.code, CallerInvalid.code})
"""Reasons that say a task's caller token no longer verifies (expired, forged, refused by
the tool gateway's second check)."""

PLAN_REASONS = (
    frozenset(
        {
            PlanTooDeep.code,
            FanOutExceeded.code,
            ScopeDenied.reason,
            MemoryDenied.reason,
            BodyRejected.code,
            BudgetExceeded.reason,
        }
    )
    | TOKEN_REFUSALS
)
"""Reasons that refuse a plan: a task that fails with one, or whose call failed with one,
is not retried (the same plan, for the same caller, would be refused again: the same body
rejected by the callee's schema, the same budget spent, the same caller token that no
longer verifies)."""


def depth(step: str) -> int:
    """How many nested calls led to the task of ``step``."""
    return step.count("/")


@dataclass(frozen=True)
class PlanLimits:
    """``max_call_depth`` and ``max_fan_out`` of :class:`~jetmesh.MeshSettings`."""

    max_call_depth: int = _DEFAULTS["max_call_depth"].default
    max_fan_out: int = _DEFAULTS["max_fan_out"].default

    @classmethod
    def of(cls, settings: MeshSettings) -> PlanLimits:
        """The settings' limits; with a policy file, ``max_call_depth`` is at most the
        policy's ``max_delegation_depth``."""
        depth = settings.max_call_depth
        if (policy := policy_of(settings.policy_file)) is not None:
            depth = min(depth, policy.max_delegation_depth)
        return cls(depth, settings.max_fan_out)

    def check(self, callee: str, agent: str, calls: int) -> PlanLimitExceeded | None:
        """The refusal of a call to ``agent`` that would be the task's ``calls``-th and have
        the step key ``callee``, if it breaks a limit (returned, not raised: the caller
        records it first)."""
        if calls > self.max_fan_out:
            return FanOutExceeded(
                f"call {calls} to {agent} ({callee}) is one more than max_fan_out "
                f"{self.max_fan_out}",
                step=callee,
                limit=self.max_fan_out,
            )
        if depth(callee) > self.max_call_depth:
            return PlanTooDeep(
                f"a call to {agent} at {callee} would nest {depth(callee)} calls deep "
                f"(max_call_depth {self.max_call_depth})",
                step=callee,
                limit=self.max_call_depth,
            )
        return None

    def check_arrival(self, step: str) -> PlanTooDeep | None:
        """The refusal of a task that arrives at ``step``, if it is nested too deep."""
        if depth(step) <= self.max_call_depth:
            return None
        return PlanTooDeep(
            f"task at {step} is nested {depth(step)} calls deep (max_call_depth "
            f"{self.max_call_depth})",
            step=step,
            limit=self.max_call_depth,
        )


def plan_refusal(exc: BaseException) -> tuple[str, str, str] | None:
    """``(reason, error type, detail)`` when ``exc`` refuses the plan: a limit broken
    here, or a call that failed because one was broken, or a scope denied, further down
    (its detail passed on as it is, not wrapped once per level). None for any other
    error."""
    if isinstance(exc, PlanLimitExceeded | BodyRejected | BudgetExceeded):
        return exc.reason, type(exc).__name__, exc.detail
    if isinstance(exc, CallFailed) and exc.reason in PLAN_REASONS:
        return exc.reason, exc.error_type, exc.message
    return None
