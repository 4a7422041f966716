"""Orchestrator-worker: a fan-out to N workers with a concurrency limit, a deadline per call
and an on_failure rule for a failed or silent worker; the results combined by the orchestrator."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jetmesh import Agent, Context, MeshClient, MeshError, MeshTimeout
from jetmesh import events as ev
from jetmesh.envelope import new_id
from jetmesh.patterns import fan_out
from jetmesh.replay import SAME, history, rerun
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration


class Job(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Job/1"

    n: int
    fail: bool = False
    hang: bool = False


class Done(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Done/1"

    n: int


class Plan(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Plan/1"

    jobs: list[Job]
    on_failure: str = "fail-fast"
    limit: int | None = None
    timeout: float | None = None


class Summary(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Summary/1"

    done: list[int]
    failed: list[tuple[str, str, str]] = []
    """(step, reason, error type) of each failed call."""
    error: str = ""
    """With fail-fast: the error that ended the fan-out."""


class Workers:
    """A ``worker`` role that can fail, hang until released, and counts how many of its
    handlers run at once. With ``pairs``, each job waits until another runs beside it, so
    the peak shows the limit without depending on timing."""

    def __init__(self, *, pairs: bool = False) -> None:
        self.agent = Agent("worker", concurrency=16)
        self.release = asyncio.Event()
        self.active = 0
        self.peak = 0
        self._changed = asyncio.Condition()

        @self.agent.handler
        async def work(job: Job, ctx: Context) -> Done:
            if job.fail:
                raise RuntimeError(f"job {job.n} cannot be done")
            if job.hang:
                await self.release.wait()
            async with self._changed:
                self.active += 1
                self.peak = max(self.peak, self.active)
                self._changed.notify_all()
                if pairs:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.active >= 2), 10)
            async with self._changed:
                self.active -= 1
            return Done(job.n)


orchestrator = Agent("orchestrator", description="fans jobs out to workers")


@orchestrator.handler
async def orchestrate(plan: Plan, ctx: Context) -> Summary:
    on_failure = "partial" if plan.on_failure == "partial" else "fail-fast"
    try:
        done = await fan_out(
            ctx,
            "worker",
            plan.jobs,
            returns=Done,
            limit=plan.limit,
            timeout=plan.timeout,
            on_failure=on_failure,
        )
    except MeshError as exc:
        return Summary([], error=f"{type(exc).__name__}: {getattr(exc, 'reason', '')}")
    failed = [(f.step, f.reason, type(f.error).__name__) for f in done.failed]
    return Summary([d.n for d in done.values], failed)


async def start(mesh: Mesh, workers: Workers) -> MeshClient:
    mesh.configure(max_deliver=2, retry_backoff_s=(0.05,))
    await mesh.start_replicas(orchestrator)
    await mesh.start_replicas(workers.agent)
    return await mesh.ingress()


async def run(mesh: Mesh, client: MeshClient, plan: Plan) -> tuple[str, Summary]:
    workflow = new_id()
    summary = await client.request(
        "orchestrator", plan, token=mesh.token(), returns=Summary, workflow=workflow
    )
    return workflow, summary


async def test_every_worker_succeeds(mesh: Mesh) -> None:
    client = await start(mesh, Workers())
    workflow, summary = await run(mesh, client, Plan([Job(n) for n in range(1, 6)]))
    assert summary == Summary([1, 2, 3, 4, 5])
    (root,) = await mesh.tree(workflow, hops=6)
    steps = [c.step for c in root.children[0].children]
    assert sorted(steps) == [f"orchestrator/worker.{n}" for n in range(1, 6)]
    logged = await mesh.events(workflow)
    assert [e.event.detail for e in kinds(logged, "fan-in")] == ["5 of 5 ok"]


async def test_a_failing_worker_fails_fast_or_leaves_the_others(mesh: Mesh) -> None:
    client = await start(mesh, Workers())
    jobs = [Job(1), Job(2, fail=True), Job(3)]
    _, fast = await run(mesh, client, Plan(jobs))
    assert fast == Summary([], error="CallFailed: max-deliveries")

    _, partial = await run(mesh, client, Plan(jobs, on_failure="partial"))
    assert partial == Summary([1, 3], [("orchestrator/worker.2", "max-deliveries", "CallFailed")])


async def test_a_silent_worker_is_a_typed_timeout_in_its_slot(mesh: Mesh) -> None:
    workers = Workers()
    client = await start(mesh, workers)
    # 3 s a slot: the answering workers well inside it on a loaded machine (0.5 s was not, once)
    plan = Plan([Job(1), Job(2, hang=True), Job(3)], on_failure="partial", timeout=3.0)
    try:
        workflow, summary = await run(mesh, client, plan)
    finally:
        workers.release.set()
    assert summary == Summary([1, 3], [("orchestrator/worker.2", "timeout", "MeshTimeout")])
    assert issubclass(MeshTimeout, TimeoutError)
    # The log says the call went unanswered; the answered calls' results are their
    # callees' `completed` events, not a `reply` of the orchestrator's.
    replies = [e.event for e in kinds(await mesh.events(workflow), "reply")]
    assert [(e.callee_step, e.reason, e.body) for e in replies] == [
        ("orchestrator/worker.2", ev.TIMED_OUT, None)
    ]

    # A re-run answers the silent call from the history as it ended: a timeout.
    await mesh.tree(workflow, hops=4)
    recorded = await history(client, workflow)
    report = await rerun(recorded, [orchestrator], redis=client.redis, settings=mesh.settings)
    (again,) = [t for t in report.tasks if t.step == "orchestrator"]
    assert (again.status, again.divergences, again.calls) == (SAME, [], 3)


async def test_the_concurrency_limit_holds(mesh: Mesh) -> None:
    workers = Workers(pairs=True)
    client = await start(mesh, workers)
    _, summary = await run(mesh, client, Plan([Job(n) for n in range(6)], limit=2))
    assert summary.done == list(range(6))
    assert workers.peak == 2, "two at a time, never more"
