"""Model budgets (runtime/budgets.py) on real servers with the offline provider and a price
table: calls within a tenant's token budget or a caller's cost budget pass; the call that
would pass it is refused with BudgetExceeded, a signed ``model`` event with reason
``budget-exceeded`` and no retry; another tenant is unaffected; the next window starts
from nothing. The spending is counted in the role's own Redis keys and summed over roles."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest

from jetmesh import Agent, BudgetExceeded, CallFailed, Context, PolicyError
from jetmesh.identity.tokens import Caller
from jetmesh.memory import keys
from jetmesh.models import PriceTable
from jetmesh.models.base import build_request
from jetmesh.models.offline import MODEL, OfflineProvider
from jetmesh.policy import load_policy
from jetmesh.policy.budgets import Budget
from jetmesh.runtime import budgets
from jetmesh.runtime.budgets import Spending, window_token
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration

TEXT = "one two three"
MAX_TOKENS = 20
PRICE = 0.001
"""US dollars per token, input and output, in the test's price table."""
T0 = 1_800_000_000.0 + 1800
"""Half past an hour."""


class Prompt(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Prompt/1"

    text: str


class Used(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Used/1"

    tokens: int


def writer() -> Agent:
    agent = Agent("writer")

    @agent.handler
    async def write(prompt: Prompt, ctx: Context) -> Used:
        reply = await ctx.model.complete(prompt.text, max_tokens=MAX_TOKENS)
        return Used(reply.input_tokens + reply.output_tokens)

    return agent


async def one_call_uses() -> int:
    reply = await OfflineProvider().complete(build_request(TEXT, max_tokens=MAX_TOKENS))
    return reply.input_tokens + reply.output_tokens


def asked() -> int:
    """What a call may add, as the check counts it: the estimated input and max_tokens."""
    return math.ceil(len(TEXT.split()) * 4 / 3) + MAX_TOKENS


def write_policy(path: Path, tenant_tokens: int, caller_cost: float) -> Path:
    path.write_text(
        f"""
[roles.cli]
calls = ["writer"]

[roles.writer]
description = "one model call per task"

[budgets.tenant.acme]
tokens = {tenant_tokens}
per = "hour"

[budgets.caller.bob]
cost_usd = {caller_cost}
per = "hour"
"""
    )
    return path


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [T0]
    monkeypatch.setattr(budgets, "now", lambda: now[0])
    return now


async def budgeted(mesh: Mesh, tmp_path: Path) -> int:
    """A writer on a policy whose budgets let exactly two calls through; returns a call's
    tokens."""
    used = await one_call_uses()
    prices = tmp_path / "prices.toml"
    prices.write_text(f'[models."{MODEL}"]\ninput = {PRICE * 1e6}\noutput = {PRICE * 1e6}\n')
    policy = write_policy(
        tmp_path / "policy.toml",
        tenant_tokens=2 * used + asked() - 1,
        caller_cost=round((2 * used + asked()) * PRICE - PRICE / 2, 6),
    )
    mesh.configure(policy_file=policy, model_prices_file=prices)
    await mesh.start_replicas(writer())
    await mesh.ingress()
    return used


async def test_the_call_that_would_pass_a_tenants_budget_is_refused(
    mesh: Mesh, tmp_path: Path, clock: list[float]
) -> None:
    used = await budgeted(mesh, tmp_path)
    client = await mesh.ingress()
    alice = mesh.token("alice", tenant="acme")
    for _ in range(2):
        assert await client.request("writer", Prompt(TEXT), token=alice, returns=Used) == Used(used)
    workflow = "wf-over"
    with pytest.raises(CallFailed) as failure:
        await client.request("writer", Prompt(TEXT), token=alice, returns=Used, workflow=workflow)
    assert failure.value.reason == "budget-exceeded"
    assert failure.value.error_type == "BudgetExceeded"
    assert f"the tenant acme has used {2 * used} of its {2 * used + asked() - 1} tokens" in str(
        failure.value
    )
    logged = await mesh.wait_events(workflow, lambda e: bool(kinds(e, "failed")))
    (refused,) = kinds(logged, "model")
    assert refused.verified
    assert refused.signer == "writer"
    assert refused.event.reason == "budget-exceeded"
    assert refused.event.tokens_in is None, "the provider was not asked"
    assert not kinds(logged, "retried"), "refused for the window: no retry"
    (failed,) = kinds(logged, "failed")
    assert failed.event.reason == "budget-exceeded"

    globex = mesh.token("carol", tenant="globex")
    assert await client.request("writer", Prompt(TEXT), token=globex, returns=Used) == Used(used)

    clock[0] += 3600  # the next hour: the window starts from nothing
    assert await client.request("writer", Prompt(TEXT), token=alice, returns=Used) == Used(used)


async def test_the_call_that_would_pass_a_callers_cost_budget_is_refused(
    mesh: Mesh, tmp_path: Path, clock: list[float]
) -> None:
    used = await budgeted(mesh, tmp_path)
    client = await mesh.ingress()
    bob = mesh.token("bob", tenant="initech")
    for _ in range(2):
        await client.request("writer", Prompt(TEXT), token=bob, returns=Used)
    with pytest.raises(CallFailed) as failure:
        await client.request("writer", Prompt(TEXT), token=bob, returns=Used)
    assert failure.value.reason == "budget-exceeded"
    assert "the caller bob has used" in str(failure.value)
    assert "cost_usd" in str(failure.value)
    dave = mesh.token("dave", tenant="initech")
    assert await client.request("writer", Prompt(TEXT), token=dave, returns=Used) == Used(used)

    settings = mesh.settings
    budget = Budget(cost_usd=1.0, per="hour")
    key = keys.spend(settings.subject_prefix, "writer", "caller", window_token(budget, T0), "bob")
    stored = await mesh.replicas[0].mesh.redis.hgetall(key)
    assert int(stored[b"tokens"]) == 2 * used
    assert float(stored[b"cost_usd"]) == pytest.approx(2 * used * PRICE)


async def test_spending_is_summed_over_every_roles_counters(mesh: Mesh, tmp_path: Path) -> None:
    """What another role spent for the tenant counts too; each role writes its own key."""
    policy = load_policy(write_policy(tmp_path / "p.toml", tenant_tokens=1000, caller_cost=1.0))
    redis = (await mesh.ingress()).redis
    prefix = mesh.settings.subject_prefix
    budget = policy.budgets.tenant["acme"]
    window = window_token(budget, T0)
    await redis.hset(keys.spend(prefix, "toolgate", "tenant", window, "acme"), "tokens", 600)
    writer_view = Spending(redis, prefix, "writer", policy, clock=lambda: T0)
    assert await writer_view.used("tenant", "acme", budget, T0) == (600, 0.0)
    alice = Caller("alice", "acme", frozenset(), T0 + 60, "t1", "cli")
    small = build_request(TEXT, max_tokens=MAX_TOKENS)
    assert await writer_view.check(alice, small, PriceTable.default(), MODEL) is None
    large = build_request(TEXT, max_tokens=400)
    refused = await writer_view.check(alice, large, PriceTable.default(), MODEL)
    assert isinstance(refused, BudgetExceeded)
    assert (refused.scope, refused.name, refused.limit) == ("tenant", "acme", "tokens")
    assert (refused.used, refused.allowed, refused.asked) == (600, 1000, asked() - MAX_TOKENS + 400)
    assert await writer_view.check(alice, large, PriceTable.default(), MODEL) is not None
    later = Spending(redis, prefix, "writer", policy, clock=lambda: T0 + 3600)
    assert await later.check(alice, large, PriceTable.default(), MODEL) is None, "a new window"


def test_a_budget_sets_a_limit_and_names_in_two_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a budget sets tokens, cost_usd or both"):
        Budget(per="day")
    for wrong in ("fortnight", 0, True):
        with pytest.raises(ValueError, match="is not a window"):
            Budget(tokens=1, per=wrong)  # type: ignore[arg-type]
    assert Budget(tokens=1, per=600).window(1200.5) == (2, "600s 1970-01-01T00:20:00Z")
    first = tmp_path / "a.toml"
    second = tmp_path / "b.toml"
    second.write_text("[roles.other]\n\n[budgets.tenant.acme]\ntokens = 5\n")
    first.write_text(
        'include = ["b.toml"]\n\n[roles.writer]\n\n[budgets.tenant.acme]\ntokens = 10\n'
    )
    with pytest.raises(PolicyError, match=r"budgets\.tenant\.acme: already set"):
        load_policy(first)
