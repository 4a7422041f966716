"""Calls made but not yet sent, and ``ctx.gather``: many calls at once, with a concurrency
limit, a deadline per call and a rule for partial failure (``on_failure``).

``ctx.call(...)`` returns a :class:`PendingCall`: its step key is taken when it is made
(so calls passed to ``gather`` are numbered in argument order) and it is sent when it is
awaited. A call that would break the plan's limits is made refused: awaiting it records
the refusal and raises it, and ``gather`` raises it before sending any of its calls.

Policies, in the manner of ``asyncio.TaskGroup`` and ``asyncio.gather``:

- ``"fail-fast"`` (the default): the results in order; the first failure cancels the
  calls still running and is raised itself (not wrapped in an exception group).
- ``"partial"``: one :data:`Outcome` per call, in order: :class:`Ok` with the value, or
  :class:`Failed` with the typed error (``CallFailed``, ``MeshTimeout``, ...) of a call
  that failed, so the caller can combine what succeeded. Errors that are not mesh errors
  (a bug in the handler's own code) still fail fast.

Example:
    >>> outcomes = await ctx.gather(                                   # doctest: +SKIP
    ...     [ctx.call("worker", job, returns=Done) for job in jobs],
    ...     limit=4, timeout=2.0, on_failure="partial",
    ... )
    >>> done = [o.value for o in outcomes if isinstance(o, Ok)]         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from .._exceptions import (
    CallFailed,
    HandlerControl,
    MeshError,
    MeshTimeout,
    ModelError,
    PlanLimitExceeded,
    RejectedMessage,
)

T = TypeVar("T")

OnFailure: TypeAlias = Literal["fail-fast", "partial"]
"""What ``gather`` does when a call fails: raise it (``fail-fast``) or report it in its
slot (``partial``)."""


class PendingCall(Generic[T]):
    """A call to an agent: numbered when made, sent when awaited (once).

    Attributes:
        agent: the agent called.
        step: the call's step key (``<task step>/<agent>.<n>``).
        timeout: its deadline in seconds (None: ``call_timeout_s``); ``gather`` sets it
            for calls made without one.
        refused: why the call will not be sent, when it breaks the plan's limits.
    """

    __slots__ = ("_awaited", "_start", "agent", "refused", "step", "timeout")

    def __init__(
        self,
        agent: str,
        step: str,
        start: Callable[[float | None], Awaitable[T]],
        *,
        timeout: float | None = None,
        refused: PlanLimitExceeded | None = None,
    ) -> None:
        self.agent = agent
        self.step = step
        self.timeout = timeout
        self.refused = refused
        self._start = start
        self._awaited = False

    def __await__(self) -> Generator[Any, None, T]:
        if self._awaited:
            raise RuntimeError(f"the call {self.step} was awaited already")
        self._awaited = True
        return self._start(self.timeout).__await__()

    def __repr__(self) -> str:
        state = f" refused: {self.refused.reason}" if self.refused else ""
        return f"<PendingCall {self.step} -> {self.agent}{state}>"


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """A call of a ``partial`` gather that succeeded."""

    value: T
    agent: str = ""
    """The agent called ("" for an awaitable that is not a ``ctx.call``)."""
    step: str = ""
    """The call's step key ("" likewise)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """A call of a ``partial`` gather that failed, with its typed error."""

    error: MeshError
    """``CallFailed`` (the agent answered with an error), ``MeshTimeout`` (no reply within
    the call's deadline), ``SchemaViolation`` (a reply that is not the expected type), or
    another mesh error of the awaitable."""
    agent: str = ""
    step: str = ""

    @property
    def reason(self) -> str:
        """A stable code: ``timeout``, the error reply's reason (``max-deliveries``, ...),
        a refusal's code, or the error's class name."""
        error = self.error
        if isinstance(error, MeshTimeout):
            return "timeout"
        if isinstance(error, CallFailed):
            return error.reason or "call-failed"
        if isinstance(error, RejectedMessage):
            return error.reason
        if isinstance(error, ModelError):
            return error.code
        return type(error).__name__


Outcome: TypeAlias = Ok[T] | Failed
"""One slot of a ``partial`` gather: ``Ok[T]`` or ``Failed``."""


async def gather(
    calls: Iterable[Awaitable[T]], *, limit: int, timeout: float | None, on_failure: OnFailure
) -> list[T] | list[Outcome[T]]:
    """``ctx.gather``'s work (see :meth:`~jetmesh.runtime.context_base.ContextBase.gather`)."""
    if limit < 1:
        raise ValueError(f"gather limit must be at least 1, not {limit}")
    if on_failure not in ("fail-fast", "partial"):
        raise ValueError(f"unknown on_failure {on_failure!r}: 'fail-fast' or 'partial'")
    items = list(calls)
    refused = next((c for c in items if isinstance(c, PendingCall) and c.refused), None)
    if refused is not None:  # the plan breaks a limit: send none of it
        for item in items:
            if inspect.iscoroutine(item):
                item.close()
        await refused
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Awaitable[T]) -> T:
        async with semaphore:
            return await _within(item, timeout)

    async def slot(item: Awaitable[T]) -> Outcome[T]:
        agent, step = (item.agent, item.step) if isinstance(item, PendingCall) else ("", "")
        try:
            return Ok(await one(item), agent, step)
        except HandlerControl:
            raise
        except MeshError as exc:
            return Failed(exc, agent, step)

    if on_failure == "partial":
        return await _all([slot(item) for item in items])
    return await _all([one(item) for item in items])


async def _within(item: Awaitable[T], timeout: float | None) -> T:
    """Await ``item`` within ``timeout`` (a call's own deadline, when it has one, wins)."""
    if isinstance(item, PendingCall):
        call: PendingCall[T] = item
        if call.timeout is None:
            call.timeout = timeout
        return await call
    if timeout is None:
        return await item
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            return await item
    except TimeoutError:
        if timer.expired():
            raise MeshTimeout(f"not done within {timeout:g}s") from None
        raise


async def _all(coros: list[Awaitable[T]]) -> list[T]:
    """Run all at once; the first failure cancels the rest and is raised itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(c)) for c in coros]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
