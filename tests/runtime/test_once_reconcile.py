"""ctx.once with ``reconcile``: a claim left by a run that died mid-effect is settled by
asking the effect's target, instead of failing the step with EffectInDoubt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, Context, EffectInDoubt, MeshSettings
from jetmesh.envelope import new_id
from jetmesh.memory import keys
from jetmesh.runtime.ledger import StepLedger
from tests.harness.mesh import Mesh

pytestmark = pytest.mark.integration

IN_DOUBT = b'{"state":"running","holder":"dead#1"}'
AGENT = "payer"
"""The role whose step runs the effect: its own keys hold the claim."""


class Job(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Job/1"

    n: int


class Done(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Done/1"

    n: int
    runs: int


@pytest.fixture
async def redis(settings: MeshSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


class Target:
    """An effect's target that counts runs and can be asked whether one happened."""

    def __init__(self, happened: int | None = None) -> None:
        self.runs = 0
        self.asked = 0
        self.happened = happened

    async def effect(self) -> int:
        self.runs += 1
        return 42

    async def reconcile(self) -> int | None:
        self.asked += 1
        return self.happened


async def in_doubt(redis: Redis, settings: MeshSettings, workflow: str, step: str) -> None:
    """Leave the claim a run that died mid-effect leaves."""
    await redis.set(keys.once(settings.subject_prefix, workflow, AGENT, step, "fx"), IN_DOUBT)


async def test_reconcile_that_finds_the_effect_records_it_without_running_it(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=60)
    workflow = new_id()
    await in_doubt(redis, settings, workflow, "s")
    target = Target(happened=7)
    once = ledger.once
    got = await once(
        workflow, AGENT, "s", "fx", target.effect, int, holder="b#2", reconcile=target.reconcile
    )
    assert got == 7
    assert (target.runs, target.asked) == (0, 1)
    again = await once(
        workflow, AGENT, "s", "fx", target.effect, int, holder="c#3", reconcile=target.reconcile
    )
    assert again == 7, "recorded as done: later runs get it without asking again"
    assert (target.runs, target.asked) == (0, 1)


async def test_reconcile_that_finds_nothing_takes_the_claim_over_and_runs_the_effect(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=60)
    workflow = new_id()
    await in_doubt(redis, settings, workflow, "s")
    target = Target(happened=None)
    once = ledger.once
    got = await once(
        workflow, AGENT, "s", "fx", target.effect, int, holder="b#2", reconcile=target.reconcile
    )
    assert got == 42
    assert (target.runs, target.asked) == (1, 1)
    again = await once(
        workflow, AGENT, "s", "fx", target.effect, int, holder="c#3", reconcile=target.reconcile
    )
    assert again == 42
    assert (target.runs, target.asked) == (1, 1)


async def test_reconcile_is_not_asked_without_a_claim_in_doubt(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=60)
    workflow = new_id()
    target = Target(happened=7)
    once = ledger.once
    assert (
        await once(
            workflow, AGENT, "s", "fx", target.effect, int, holder="a#1", reconcile=target.reconcile
        )
        == 42
    )
    assert (
        await once(
            workflow, AGENT, "s", "fx", target.effect, int, holder="b#2", reconcile=target.reconcile
        )
        == 42
    )
    assert (target.runs, target.asked) == (1, 0)


async def test_without_reconcile_a_claim_in_doubt_still_raises(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=60)
    workflow = new_id()
    await in_doubt(redis, settings, workflow, "s")
    target = Target()
    with pytest.raises(EffectInDoubt, match="dead#1"):
        await ledger.once(workflow, AGENT, "s", "fx", target.effect, int, holder="b#2")
    assert target.runs == 0


async def test_a_handler_with_reconcile_completes_a_step_left_in_doubt(
    mesh: Mesh, redis: Redis
) -> None:
    """Through a replica: two workflows left in doubt, one whose effect had happened (the
    target has its marker), one whose effect had not; both complete, each effect once."""
    runs: list[str] = []
    agent = Agent(AGENT)

    @agent.handler
    async def pay(job: Job, ctx: Context) -> Done:
        marker = f"{ctx.workflow}:marker"

        async def charge() -> int:
            runs.append(ctx.workflow)
            await redis.set(marker, job.n)
            return job.n

        async def find_charge() -> int | None:
            found = await redis.get(marker)
            return None if found is None else int(found)

        n = await ctx.once("fx", charge, returns=int, reconcile=find_charge)
        return Done(n, len(runs))

    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    happened, not_happened = new_id(), new_id()
    for workflow in (happened, not_happened):
        await in_doubt(redis, mesh.settings, workflow, "payer")
    await redis.set(f"{happened}:marker", 5)
    try:
        first = await client.request(
            "payer", Job(5), token=mesh.token(), returns=Done, workflow=happened
        )
        second = await client.request(
            "payer", Job(6), token=mesh.token(), returns=Done, workflow=not_happened
        )
    finally:
        await redis.delete(f"{happened}:marker", f"{not_happened}:marker")
    assert first == Done(5, 0), "the effect had happened: reconciled, not run again"
    assert second == Done(6, 1), "the effect had not happened: run once"
    assert runs == [not_happened]
