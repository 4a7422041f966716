"""Critic-refiner: a producer's draft scored by a critic, refined with the critique, until
the threshold or max rounds (and the result says which); every round in the workflow's
working memory and in a ``round`` event."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, Context, MeshClient, WorkingMemory
from jetmesh.envelope import new_id
from jetmesh.patterns import (
    Draft,
    DraftRequest,
    Review,
    ReviewRequest,
    Round,
    RoundRecord,
    refine,
)
from jetmesh.replay import SAME, history, rerun
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration

THRESHOLD = 0.8


class Assignment(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Assignment/1"

    brief: str
    critic: str = "critic"
    max_rounds: int = 3


class Outcome(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Outcome/1"

    stopped: str
    score: float
    text: str
    rounds: int


editor = Agent("editor", description="refines a draft with a critic")
writer = Agent("writer", description="drafts, then refines with the critique")
critic = Agent("critic", description="approves the second draft")
harsh = Agent("harsh", description="never approves")


@editor.handler
async def edit(job: Assignment, ctx: Context) -> Outcome:
    done = await refine(
        ctx,
        producer="writer",
        critic=job.critic,
        brief=job.brief,
        threshold=THRESHOLD,
        max_rounds=job.max_rounds,
    )
    return Outcome(done.stopped, done.score, done.draft.text, len(done.rounds))


@writer.handler
async def write(req: DraftRequest) -> Draft:
    if req.round == 1:
        return Draft(f"{req.brief}: first draft")
    return Draft(f"{req.previous} + fixed '{req.critique}' (round {req.round})")


@critic.handler
async def review(req: ReviewRequest) -> Review:
    return Review(0.9, "") if req.round >= 2 else Review(0.4, "cite sources")


@harsh.handler
async def reject_all(req: ReviewRequest) -> Review:
    return Review(0.1 * req.round, f"still weak in round {req.round}")


async def start(mesh: Mesh) -> MeshClient:
    for agent in (editor, writer, critic, harsh):
        await mesh.start_replicas(agent)
    return await mesh.ingress()


async def rounds_in_memory(mesh: Mesh, client: MeshClient, workflow: str) -> list[RoundRecord]:
    memory = WorkingMemory(client.redis, mesh.settings.subject_prefix, workflow, "editor")
    kept = await memory.get("rounds", list[RoundRecord])
    assert kept is not None
    return kept


async def test_the_critic_approves_the_second_round(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = await client.request(
        "editor",
        Assignment("A note on refunds"),
        token=mesh.token(),
        returns=Outcome,
        workflow=workflow,
    )
    assert outcome == Outcome(
        "threshold",
        0.9,
        "A note on refunds: first draft + fixed 'cite sources' (round 2)",
        2,
    )
    kept = await rounds_in_memory(mesh, client, workflow)
    assert [(r.round, r.score, r.critique, r.passed, r.step) for r in kept] == [
        (1, 0.4, "cite sources", False, "editor"),
        (2, 0.9, "", True, "editor"),
    ]
    assert msgspec.json.decode(kept[0].draft, type=Draft).text == "A note on refunds: first draft"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "refined")))
    assert [e.event.detail for e in kinds(logged, "round")] == [
        "round 1: score 0.40 < 0.80; critique: cite sources",
        "round 2: score 0.90 >= 0.80",
    ]
    (end,) = kinds(logged, "refined")
    assert end.event.reason == "threshold"
    (root,) = await mesh.tree(workflow, hops=5)
    calls = sorted(root.children[0].children, key=lambda n: int(n.step.rsplit(".", 1)[1]))
    assert [c.step for c in calls] == [
        "editor/writer.1",
        "editor/critic.2",
        "editor/writer.3",
        "editor/critic.4",
    ]

    # A re-run with the same code: same calls, same result, rounds in scratch memory.
    recorded = await history(client, workflow)
    report = await rerun(recorded, [editor], redis=client.redis, settings=mesh.settings)
    (again,) = [t for t in report.tasks if t.step == "editor"]
    assert (again.status, again.divergences, again.calls) == (SAME, [], 4)
    assert len(await rounds_in_memory(mesh, client, workflow)) == 2, "the real memory untouched"


async def test_a_critic_that_never_approves_stops_at_max_rounds(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = await client.request(
        "editor",
        Assignment("Brief", critic="harsh", max_rounds=3),
        token=mesh.token(),
        returns=Outcome,
        workflow=workflow,
    )
    assert (outcome.stopped, outcome.rounds) == ("max-rounds", 3)
    assert outcome.score == pytest.approx(0.3)
    kept = await rounds_in_memory(mesh, client, workflow)
    assert [(r.round, r.passed) for r in kept] == [(1, False), (2, False), (3, False)]
    assert kept[2].critique == "still weak in round 3"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "refined")))
    (end,) = kinds(logged, "refined")
    assert (end.event.reason, end.event.detail) == (
        "max-rounds",
        "stopped: max-rounds after 3 round(s), score 0.30",
    )


class Sketch(msgspec.Struct, frozen=True):
    lines: list[str]


async def test_producer_and_critic_may_be_callables(mesh: Mesh) -> None:
    """Callables instead of roles: any draft type; the rounds still go to memory."""
    scribe = Agent("scribe")
    seen: list[tuple[int, str]] = []

    @scribe.handler
    async def sketch(job: Assignment, ctx: Context) -> Outcome:
        async def produce(previous: Round[Sketch] | None) -> Sketch:
            lines = previous.draft.lines if previous else []
            return Sketch([*lines, f"line {len(lines) + 1}"])

        async def score(draft: Sketch, number: int) -> Review:
            seen.append((number, draft.lines[-1]))
            return Review(len(draft.lines) / 4, "add a line")

        done = await refine(ctx, producer=produce, critic=score, threshold=0.75, max_rounds=5)
        return Outcome(done.stopped, done.score, ",".join(done.draft.lines), len(done.rounds))

    await mesh.start_replicas(scribe)
    client = await mesh.ingress()
    workflow = new_id()
    outcome = await client.request(
        "scribe", Assignment("x"), token=mesh.token(), returns=Outcome, workflow=workflow
    )
    assert outcome == Outcome("threshold", 0.75, "line 1,line 2,line 3", 3)
    assert seen == [(1, "line 1"), (2, "line 2"), (3, "line 3")]
    memory = WorkingMemory(client.redis, mesh.settings.subject_prefix, workflow, "scribe")
    kept = await memory.get("rounds", list[RoundRecord])
    assert kept is not None
    assert msgspec.json.decode(kept[-1].draft, type=Sketch).lines == ["line 1", "line 2", "line 3"]
