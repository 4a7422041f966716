"""The research-report mesh on real servers, every role a replica: a question becomes a
report with its sources after a critic loop; a researcher that fails leaves a gap the
partial report names."""

from __future__ import annotations

import pytest

from jetmesh import Agent, Context
from jetmesh.envelope import new_id
from jetmesh.memory import WorkingMemory
from services.research import orchestrator, researcher, reviewer, writer
from services.research.settings import ResearchSettings
from services.research.wire import Finding, Question, Report, SubQuestion
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration

QUESTION = Question(text="How do NATS JetStream and Kafka compare for agent messaging?")
CONFIG = ResearchSettings(research_timeout_s=20.0, call_timeout_s=20.0)


async def ask(mesh: Mesh, workflow: str) -> Report:
    client = await mesh.ingress()
    return await client.request(
        "orchestrator",
        QUESTION,
        token=mesh.token("alice", scopes=["corpus:read"]),
        returns=Report,
        workflow=workflow,
        timeout=40,
    )


async def start(mesh: Mesh, researcher_agent: Agent) -> None:
    for agent in (orchestrator.build(CONFIG), researcher_agent, writer.build(), reviewer.build()):
        await mesh.start_replicas(agent)


async def test_a_question_becomes_a_report_with_its_sources(mesh: Mesh) -> None:
    await start(mesh, researcher.build(CONFIG))
    workflow = new_id()
    report = await ask(mesh, workflow)
    assert len(report.subquestions) == QUESTION.max_subquestions
    assert (report.partial, report.gaps, report.stopped) == (False, [], "threshold")
    assert report.rounds == 2, "the reviewer asked for the sources once"
    assert report.score >= CONFIG.threshold
    ids = [s.id for s in report.sources]
    assert {"nats-jetstream", "kafka"} <= set(ids)
    assert report.text.startswith(f"# Report: {QUESTION.text}")
    assert "## Findings" in report.text
    assert "## Sources" in report.text
    for n, source in enumerate(report.sources, 1):
        assert f"[S{n}] {source.title} (corpus: {source.id})" in report.text
    client = await mesh.ingress()
    plan = await WorkingMemory(
        client.redis, mesh.settings.subject_prefix, workflow, "orchestrator"
    ).get("plan", list[str])
    assert plan == report.subquestions

    (accepted,) = await mesh.tree(workflow, hops=1 + 4 + 4)
    (hop,) = accepted.children
    assert hop.agent == "orchestrator"
    assert [c.agent for c in hop.children] == ["researcher"] * 4 + ["writer", "reviewer"] * 2
    assert all(c.caller == "alice" and c.verified for c in hop.children)
    (fan_out,) = kinds(hop.events, "fan-out")
    assert fan_out.event.detail == "4 to researcher, at most 2 at once, 20 s each, partial"
    (fan_in,) = kinds(hop.events, "fan-in")
    assert fan_in.event.detail == "4 of 4 ok"
    assert [e.event.reason for e in kinds(hop.events, "refined")] == ["threshold"]
    assert all(c.usage.calls == 2 for c in hop.children[:4]), "rank, then summarise"


async def test_a_researcher_that_fails_leaves_a_gap_the_report_names(mesh: Mesh) -> None:
    mesh.configure(max_deliver=2, retry_backoff_s=(0.1,))
    real = researcher.build(CONFIG)
    (handler,) = real.handlers.values()
    flaky = Agent("researcher")

    @flaky.handler
    async def research(sub: SubQuestion, ctx: Context) -> Finding:
        if sub.index == 2:
            raise RuntimeError("the corpus index is unavailable")
        result: Finding = await handler(sub, ctx)
        return result

    await start(mesh, flaky)
    workflow = new_id()
    report = await ask(mesh, workflow)
    assert report.partial
    (gap,) = report.gaps
    assert gap == f"{report.subquestions[1]} (not researched: max-deliveries)"
    assert "## Not covered" in report.text
    assert f"- {gap}" in report.text
    assert report.stopped == "threshold"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "fan-in")))
    (fan_in,) = kinds(logged, "fan-in")
    assert fan_in.event.detail == "3 of 4 ok; failed orchestrator/researcher.3: max-deliveries"
