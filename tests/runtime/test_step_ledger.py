"""The step ledger on real servers: a step runs once however often it is sent, a re-run
handler gets completed calls from the journal, and ctx.once runs an effect at most once."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, CallFailed, Context, Retry
from jetmesh.envelope import new_id
from jetmesh.memory import keys
from jetmesh.runtime.ledger import Recorded, StepLedger
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration


class Job(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Job/1"

    n: int
    nap: float = 0.0


class Done(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Done/1"

    n: int
    runs: int


def counting_worker(runs: list[int]) -> Agent:
    agent = Agent("worker")

    @agent.handler
    async def work(job: Job) -> Done:
        runs.append(job.n)
        await asyncio.sleep(job.nap)
        return Done(job.n, len(runs))

    return agent


async def send_step(mesh: Mesh, workflow: str, step: str, job: Job) -> Done:
    """Send ``job`` as a new task message for ``step`` (as a re-run caller would)."""
    client = await mesh.ingress()
    return await client.call(
        "worker", job, returns=Done, workflow=workflow, caller=mesh.token(), step=step, timeout=15.0
    )


async def test_a_step_sent_again_is_answered_from_its_result(mesh: Mesh) -> None:
    runs: list[int] = []
    await mesh.start_replicas(counting_worker(runs))
    workflow = new_id()
    first = await send_step(mesh, workflow, "w/worker.1", Job(7))
    again = await send_step(mesh, workflow, "w/worker.1", Job(7))
    other = await send_step(mesh, workflow, "w/worker.2", Job(8))
    assert first == again == Done(7, 1)
    assert other == Done(8, 2)
    assert runs == [7, 8]
    logged = await mesh.wait_events(workflow, lambda got: len(kinds(got, "completed")) == 3)
    (again_event,) = [
        e for e in kinds(logged, "completed") if "step already done" in e.event.detail
    ]
    # the answer sent again is logged with its body: a caller's reply is its callee's
    # `completed`, and a callee killed after replying writes it when answering again
    assert again_event.event.body is not None
    assert msgspec.json.decode(again_event.event.body.value, type=Done) == Done(7, 1)


async def test_duplicates_in_flight_wait_for_the_running_step(mesh: Mesh) -> None:
    runs: list[int] = []
    await mesh.start_replicas(counting_worker(runs), count=3)
    workflow = new_id()
    await mesh.ingress()  # started once, before the concurrent sends
    answers = await asyncio.gather(
        *(send_step(mesh, workflow, "w/worker.1", Job(1, nap=0.4)) for _ in range(4))
    )
    assert answers == [Done(1, 1)] * 4
    assert runs == [1]


async def test_a_rerun_handler_gets_completed_calls_from_the_journal(mesh: Mesh) -> None:
    runs: list[int] = []
    await mesh.start_replicas(counting_worker(runs))
    planner = Agent("planner")
    attempts: list[int] = []

    @planner.handler
    async def plan(job: Job, ctx: Context) -> Done:
        attempts.append(ctx.attempt)
        done = await ctx.call("worker", job, returns=Done)
        if ctx.attempt == 1:
            raise Retry(delay=0.05, reason="crash after the call")
        return done

    await mesh.start_replicas(planner)
    client = await mesh.ingress()
    workflow = new_id()
    result = await client.request(
        "planner", Job(5), token=mesh.token(), returns=Done, workflow=workflow
    )
    assert result == Done(5, 1)
    assert attempts == [1, 2]
    assert runs == [5], "the call was not sent again"
    logged = await mesh.wait_events(
        workflow,
        lambda got: len(kinds(got, "reply")) == 1 and bool(kinds(got, "completed")),
    )
    # the first run's answer is in the worker's `completed` event, not in a `reply` of its own
    assert [e.event.detail for e in kinds(logged, "reply")] == ["from the journal"]
    assert [e.event.agent for e in kinds(logged, "completed")].count("worker") == 1
    assert len(kinds(logged, "call")) == 1


async def test_a_steps_first_run_does_not_look_its_calls_up_in_the_journal(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of a step is journaled before its first claim, so its first run sends its
    calls without a journal lookup each; a run after it (here a retry) looks them up."""
    looked_up: list[str] = []
    journaled = StepLedger.journaled

    async def spied(self: StepLedger, workflow: str, agent: str, step: str) -> Recorded | None:
        looked_up.append(f"{agent} {step}")
        return await journaled(self, workflow, agent, step)

    monkeypatch.setattr(StepLedger, "journaled", spied)
    runs: list[int] = []
    await mesh.start_replicas(counting_worker(runs))
    planner = Agent("planner")
    seen: list[tuple[int, int]] = []

    @planner.handler
    async def plan(job: Job, ctx: Context) -> Done:
        await ctx.call("worker", job, returns=Done)
        done = await ctx.call("worker", Job(job.n + 1), returns=Done)
        seen.append((ctx.attempt, len(looked_up)))
        if ctx.attempt == 1:
            raise Retry(delay=0.05, reason="run again")
        return done

    await mesh.start_replicas(planner)
    client = await mesh.ingress()
    result = await client.request(
        "planner", Job(5), token=mesh.token(), returns=Done, workflow=new_id()
    )
    assert result == Done(6, 2)
    assert seen == [(1, 0), (2, 2)], "looked up on the retry only"
    assert looked_up == ["planner planner/worker.1", "planner planner/worker.2"]
    assert runs == [5, 6], "the retry took both replies from the journal"


async def test_once_runs_an_effect_at_most_once(mesh: Mesh) -> None:
    effects: list[str] = []
    agent = Agent("payer")

    @agent.handler
    async def pay(job: Job, ctx: Context) -> Done:
        async def charge() -> int:
            effects.append(f"charge {job.n}")
            return 100 + job.n

        receipt = await ctx.once("charge", charge, returns=int)
        if ctx.attempt < 3:
            raise Retry(delay=0.05, reason="fails after the effect")
        return Done(receipt, ctx.attempt)

    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    result = await client.request("payer", Job(1), token=mesh.token(), returns=Done)
    assert result == Done(101, 3)
    await mesh.settled("payer")  # no delivery left that could run it again
    assert effects == ["charge 1"]


async def test_once_drops_the_claim_of_a_failed_effect_and_refuses_one_in_doubt(
    mesh: Mesh,
) -> None:
    mesh.configure(max_deliver=3, retry_backoff_s=(0.05,))
    effects: list[int] = []
    agent = Agent("payer")

    @agent.handler
    async def pay(job: Job, ctx: Context) -> Done:
        async def flaky() -> int:
            effects.append(ctx.attempt)
            if ctx.attempt == 1:
                raise RuntimeError("gateway down")
            return ctx.attempt

        return Done(await ctx.once("charge", flaky, returns=int), ctx.attempt)

    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    mesh_settings = mesh.settings
    assert await client.request("payer", Job(1), token=mesh.token(), returns=Done) == Done(2, 2)
    assert effects == [1, 2]

    # a claim left by a run that died mid-effect: the effect is in doubt, never re-run
    workflow = new_id()
    redis = Redis.from_url(mesh_settings.redis_url)
    try:
        await redis.set(
            keys.once(mesh_settings.subject_prefix, workflow, "payer", "payer", "charge"),
            b'{"state":"running","holder":"dead#1"}',
        )
    finally:
        await redis.aclose()
    with pytest.raises(CallFailed, match="EffectInDoubt"):
        await client.request(
            "payer", Job(2), token=mesh.token(), returns=Done, workflow=workflow, timeout=20.0
        )
    assert effects == [1, 2], "the effect in doubt was not run again"
