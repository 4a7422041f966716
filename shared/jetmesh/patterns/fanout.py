"""Orchestrator-worker: one task fans work out to N workers in parallel and combines what
comes back.

The messages are plain calls: one task per item on ``<prefix>.agent.<worker>.task``, each
with its own step key (``<step>/<worker>.<n>``), journaled like any call, and one reply
each. At most ``limit`` are in flight at once; each has its own deadline; ``on_failure``
says what a failure does (see :meth:`~jetmesh.runtime.context_base.ContextBase.gather`).
Two events frame the fan-out in the workflow's log: ``fan-out`` (how many, to whom, how
at once) and ``fan-in`` (how many succeeded, and why the others failed).

An orchestrator whose workers are orchestrators is the hierarchical pattern: the same
calls one level down, held in bounds by ``max_call_depth`` and ``max_fan_out``.

Example:
    >>> done = await fan_out(ctx, "researcher", topics, returns=Finding,   # doctest: +SKIP
    ...                      limit=4, timeout=30, on_failure="partial")
    >>> report = combine(done.values)                                      # doctest: +SKIP
    >>> [(f.step, f.reason) for f in done.failed]                          # doctest: +SKIP
    [('research/researcher.3', 'timeout')]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._exceptions import MeshError, PlanLimitExceeded
from ..runtime.context_base import ContextBase
from ..runtime.gathering import Failed, Ok, OnFailure, Outcome

R = TypeVar("R")

FAN_OUT = "fan-out"
"""Event: a fan-out began (``target``: the worker role; ``detail``: how many, how at once)."""
FAN_IN = "fan-in"
"""Event: every call of a fan-out ended (``detail``: how many succeeded, the failures)."""


@dataclass(frozen=True)
class FanIn(Generic[R]):
    """What came back from a fan-out, one outcome per item, in the order of the items."""

    outcomes: list[Outcome[R]]

    @property
    def values(self) -> list[R]:
        """The replies of the calls that succeeded, in order."""
        return [o.value for o in self.outcomes if isinstance(o, Ok)]

    @property
    def failed(self) -> list[Failed]:
        """The calls that failed, each with its typed error."""
        return [o for o in self.outcomes if isinstance(o, Failed)]

    @property
    def complete(self) -> bool:
        """Every call succeeded."""
        return not self.failed


async def fan_out(
    ctx: ContextBase,
    worker: str,
    items: Iterable[Any],
    *,
    returns: type[R],
    limit: int | None = None,
    timeout: float | None = None,
    on_failure: OnFailure = "fail-fast",
) -> FanIn[R]:
    """Send each of ``items`` to ``worker`` and wait for their replies as ``returns``.

    Args:
        ctx: the handler's context.
        worker: the worker role (any process that serves ``<prefix>.agent.<worker>.task``).
        items: the task bodies, one call each.
        returns: the type of a worker's reply.
        limit: calls in flight at once (default: the replica's ``concurrency``).
        timeout: the deadline of each call, in seconds (default ``call_timeout_s``).
        on_failure: ``"fail-fast"`` raises the first failure and cancels the waits still
            running; ``"partial"`` waits for every call and reports each failure in
            :attr:`FanIn.failed` with its typed error (``CallFailed``, ``MeshTimeout``).

    Raises:
        ValueError: an unknown ``on_failure``.
        FanOutExceeded: the items would take the task past ``max_fan_out`` calls; none is
            sent.
        PlanTooDeep: the workers would be nested deeper than ``max_call_depth``; none is
            sent.
        MeshError: with ``"fail-fast"``, the first call's failure.
    """
    if on_failure not in ("fail-fast", "partial"):
        raise ValueError(f"unknown on_failure {on_failure!r}: 'fail-fast' or 'partial'")
    calls = [ctx.call(worker, item, returns=returns) for item in items]
    if not any(c.refused for c in calls):  # (a refused plan is recorded by gather)
        shape = [
            f"at most {limit} at once" if limit else "",
            f"{timeout:g} s each" if timeout else "",
        ]
        await ctx.emit_event(
            FAN_OUT,
            target=worker,
            detail=", ".join([f"{len(calls)} to {worker}", *filter(None, shape), on_failure]),
        )
    try:
        if on_failure == "partial":
            outcomes = await ctx.gather(calls, limit=limit, timeout=timeout, on_failure="partial")
        else:
            values = await ctx.gather(calls, limit=limit, timeout=timeout)
            outcomes = [Ok(v, c.agent, c.step) for v, c in zip(values, calls, strict=True)]
    except PlanLimitExceeded:
        raise
    except MeshError as exc:
        await ctx.emit_event(FAN_IN, target=worker, detail=f"failed fast: {Failed(exc).reason}")
        raise
    done = FanIn(outcomes)
    failures = ", ".join(f"{f.step}: {f.reason}" for f in done.failed)
    await ctx.emit_event(
        FAN_IN,
        target=worker,
        detail=f"{len(done.values)} of {len(calls)} ok"
        + (f"; failed {failures}" if failures else ""),
    )
    return done
