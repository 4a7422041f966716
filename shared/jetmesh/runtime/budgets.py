"""Model budgets at work: a model call that would pass its caller's or tenant's budget
(the policy's ``[budgets]``, :mod:`jetmesh.policy.budgets`) is refused before the
provider is asked, and what each call spends is counted where every replica sees it.

Counting. Each role counts what its own model calls spent in Redis, in keys of its own
(``<prefix>:spend:<role>:<scope>:<window>:<name>``, :func:`jetmesh.memory.keys.spend`: a
hash of ``tokens`` and ``cost_usd``, kept two windows). On servers that enforce the
policy a role's Redis user may write only its own counters and read everyone's
(``%R~<prefix>:spend:*``); the spending of a caller or tenant is the sum over the
policy's agent roles, read at each check. So a compromised role cannot lower or erase
what another role spent: it can only inflate its own counters (spending the budget
faster, which refuses its callers' and tenants' model calls sooner) or skip the check in
its own process (docs/security.md).

Checking. Before a call, for each budget that applies to the verified caller (its
subject, its tenant), the window's spending plus what the call may add must stay within
the budget: its input tokens as estimated from the prompt (words x 4/3) and its
``max_tokens``, and their price when the price table knows the model. A call that would
pass is refused with :class:`~jetmesh.BudgetExceeded` and a ``model`` event with reason
``budget-exceeded``; the task fails without retry. Calls answered from the journal are
neither checked nor counted again.

Example:
    >>> spending = spending_for(policy, mesh, "writer")               # doctest: +SKIP
    >>> refused = await spending.check(caller, request, prices, model)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import events as ev
from .._exceptions import BudgetExceeded
from ..identity.tokens import Caller
from ..memory import keys
from ..models import ModelReply, ModelRequest, PriceTable
from ..models.text import estimate_tokens
from ..policy.budgets import Budget
from ..policy.model import Policy
from ..settings import MeshSettings

log = logging.getLogger("jetmesh.budgets")


def now() -> float:
    """The clock budgets' windows are counted by (Unix seconds)."""
    return time.time()


class _EventContext(Protocol):
    @property
    def caller(self) -> Caller: ...

    async def emit_event(self, kind: str, **fields: Any) -> None: ...


def window_token(budget: Budget, at: float) -> str:
    """The window part of a counter's key: ``<seconds>s<number>``."""
    number, _ = budget.window(at)
    return f"{budget.seconds}s{number}"


@dataclass(frozen=True)
class Spending:
    """One role's view of the budgets: checks a call against them, counts what it spent.

    Args:
        redis: the role's Redis connection.
        prefix: the subject prefix (the first part of every key).
        role: the role whose counters this process writes.
        policy: the policy with the budgets and the roles whose counters add up.
        clock: Unix seconds (tests pass their own).
    """

    redis: Redis
    prefix: str
    role: str
    policy: Policy
    clock: Callable[[], float] | None = None
    """None: :func:`now`."""

    async def used(self, scope: str, name: str, budget: Budget, at: float) -> tuple[int, float]:
        """Tokens and US dollars spent for ``name`` in ``budget``'s window at ``at``, summed
        over every agent role's counters."""
        window = window_token(budget, at)
        pipe = self.redis.pipeline(transaction=False)
        for role in self.policy.agents:
            pipe.hmget(keys.spend(self.prefix, role, scope, window, name), "tokens", "cost_usd")
        tokens, cost = 0, 0.0
        for found_tokens, found_cost in await pipe.execute():
            tokens += int(found_tokens or 0)
            cost += float(found_cost or 0.0)
        return tokens, cost

    async def check(
        self, caller: Caller, request: ModelRequest, prices: PriceTable, model: str
    ) -> BudgetExceeded | None:
        """The refusal of ``request`` (to ``model``) for ``caller``, if it would pass a
        budget (returned, not raised: the caller records it first)."""
        at = (self.clock or now)()
        tokens_in = estimate_tokens(request.system) + sum(
            estimate_tokens(m.content) for m in request.messages
        )
        tokens = tokens_in + request.max_tokens
        cost = prices.cost(model, tokens_in, request.max_tokens) or 0.0
        for scope, name, budget in self.policy.budgets.applying(caller.subject, caller.tenant):
            used_tokens, used_cost = await self.used(scope, name, budget, at)
            _, label = budget.window(at)
            if budget.tokens is not None and used_tokens + tokens > budget.tokens:
                return BudgetExceeded(
                    scope, name, "tokens", used_tokens, budget.tokens, label, asked=tokens
                )
            if budget.cost_usd is not None and used_cost + cost > budget.cost_usd:
                return BudgetExceeded(
                    scope, name, "cost_usd", used_cost, budget.cost_usd, label, asked=cost
                )
        return None

    async def count(self, caller: Caller, reply: ModelReply, cost: float | None) -> None:
        """Add what a call spent to this role's counters of each budget that applies. A
        Redis failure is logged, not raised: the provider was asked and paid already, and
        the ``model`` event records the call whatever happens here."""
        at = (self.clock or now)()
        tokens = reply.input_tokens + reply.output_tokens
        try:
            pipe = self.redis.pipeline(transaction=False)
            for scope, name, budget in self.policy.budgets.applying(caller.subject, caller.tenant):
                key = keys.spend(self.prefix, self.role, scope, window_token(budget, at), name)
                pipe.hincrby(key, "tokens", tokens)
                if cost:
                    pipe.hincrbyfloat(key, "cost_usd", cost)
                pipe.expire(key, 2 * budget.seconds)
            await pipe.execute()
        except RedisError as exc:
            log.warning("model spending of %s not counted: %s", caller.subject, exc)


class _Connected(Protocol):
    @property
    def redis(self) -> Redis: ...

    @property
    def settings(self) -> MeshSettings: ...


def spending_for(policy: Policy | None, mesh: _Connected, role: str) -> Spending | None:
    """The budgets' check for ``role``'s model calls on ``mesh``'s Redis; None (and no
    Redis connection opened) when the policy sets no budget."""
    if policy is None or not policy.budgets:
        return None
    return Spending(mesh.redis, mesh.settings.subject_prefix, role, policy)


async def check_budget(
    ctx: _EventContext,
    spending: Spending | None,
    request: ModelRequest,
    prices: PriceTable,
    *,
    provider: str,
    model: str,
    step: str,
    digest: str,
) -> None:
    """Go on only if the model call ``step`` stays within its caller's budgets; otherwise
    record a ``model`` event with reason ``budget-exceeded`` and raise.

    Raises:
        BudgetExceeded: the call would pass a budget.
    """
    if spending is None:
        return
    refused = await spending.check(ctx.caller, request, prices, model)
    if refused is None:
        return
    await ctx.emit_event(
        ev.MODEL,
        target=provider,
        callee_step=step,
        model=model,
        digest=digest,
        reason=refused.reason,
        detail=refused.detail,
    )
    raise refused
