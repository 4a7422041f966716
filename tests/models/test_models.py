"""ctx.model on real replicas: every call recorded with its tokens and cost, journaled so a
re-run does not ask (or pay) again, and answered from the history by ``jetmesh replay``."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from jetmesh import Agent, Context, ModelError
from jetmesh.envelope import new_id
from jetmesh.event_log import total_usage
from jetmesh.models import PriceTable
from jetmesh.replay import DIVERGED, SAME, history, rerun
from jetmesh.replay.context import EXTRA_MODEL, MISSING_MODEL, PROMPT
from jetmesh.runtime.model_steps import FROM_JOURNAL
from tests.harness.mesh import Mesh, kinds
from tests.models.fake_server import OPENAI_PATH, FakeModelServer

pytestmark = pytest.mark.integration

LABELS = "task: classify\nlabels: billing, technical, product"


class Ticket(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ticket/1"

    text: str


class Label(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Label/1"

    label: str
    model: str


def classifier(system: str = LABELS, *, calls: int = 1, fail_first: bool = False) -> Agent:
    """``classify`` asks the model ``calls`` times; with ``fail_first`` its first delivery
    raises after asking (a crash after the model answered)."""
    agent = Agent("classify")

    @agent.handler
    async def classify(ticket: Ticket, ctx: Context) -> Label:
        reply = None
        for _ in range(calls):
            reply = await ctx.model.complete(ticket.text, system=system, max_tokens=64)
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("crashed after the model answered")
        if reply is None:
            return Label("none", "")
        return Label(reply.text.splitlines()[0], reply.model)

    return agent


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer(key="sk-test") as server:
        yield server


async def test_offline_model_call_is_an_event_with_tokens_and_cost(mesh: Mesh) -> None:
    await mesh.start_replicas(classifier())
    client = await mesh.ingress()
    workflow = new_id()
    label = await client.request(
        "classify",
        Ticket("I was charged twice"),
        token=mesh.token(),
        returns=Label,
        workflow=workflow,
    )
    assert label == Label("billing", "offline-deterministic/templates-v1")

    roots = await mesh.tree(workflow, hops=1)
    (event,) = [e.event for e in kinds(await mesh.events(workflow), "model")]
    assert event.target == "offline-deterministic"
    assert event.model == "offline-deterministic/templates-v1"
    assert event.callee_step == "classify/model.1"
    assert event.step == "classify"
    assert event.tokens_in == 14  # words x 4/3, rounded up: 8 for the system prompt, 6 for the text
    assert event.tokens_out == 12
    assert event.cost_usd == 0.0
    assert event.duration_ms is not None
    assert len(event.digest) == 32
    assert event.body is not None
    assert event.body.type == "mesh.ModelReply/1"
    assert msgspec.json.decode(event.body.value)["text"].startswith("billing\n")
    usage = total_usage(roots)
    assert (usage.calls, usage.tokens_in, usage.tokens_out) == (
        1,
        event.tokens_in,
        event.tokens_out,
    )


async def test_a_rerun_takes_the_reply_from_the_journal_and_pays_once(
    mesh: Mesh, model_server: FakeModelServer
) -> None:
    mesh.configure(
        model_provider="openai",
        model_base_url=model_server.openai_url,
        model_api_key="sk-test",
        model_name="gpt-4o-mini",
        retry_backoff_s=(0.1,),
    )
    await mesh.start_replicas(classifier(fail_first=True))
    client = await mesh.ingress()
    workflow = new_id()
    label = await client.request(
        "classify", Ticket("refund please"), token=mesh.token(), returns=Label, workflow=workflow
    )
    assert label == Label("echo: refund please", "gpt-4o-mini-2024-07-18")
    assert model_server.count(OPENAI_PATH) == 1, "the re-run did not ask the model again"
    sent = model_server.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["messages"][0] == {"role": "system", "content": LABELS}

    roots = await mesh.tree(workflow, hops=1)
    first, again = [e.event for e in kinds(await mesh.events(workflow), "model")]
    assert (first.attempt, again.attempt) == (1, 2)
    assert first.target == "openai"
    assert first.model == "gpt-4o-mini-2024-07-18"
    assert (first.tokens_in, first.tokens_out) == (8, 3)  # the fake server counts words
    expected = PriceTable.default().cost("gpt-4o-mini", 8, 3)
    assert first.cost_usd == pytest.approx(expected)
    assert again.detail == FROM_JOURNAL
    assert again.body == first.body
    usage = total_usage(roots)
    assert usage.calls == 1, "a journaled call is counted once"
    assert usage.cost_usd == pytest.approx(expected)


async def test_a_failed_model_call_is_recorded_and_raised(
    mesh: Mesh, model_server: FakeModelServer
) -> None:
    mesh.configure(
        model_provider="openai",
        model_base_url=model_server.openai_url,
        model_api_key="sk-wrong",
        model_name="gpt-4o-mini",
        max_deliver=1,
    )
    await mesh.start_replicas(classifier())
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(Exception, match="ModelError"):
        await client.request(
            "classify", Ticket("x"), token=mesh.token(), returns=Label, workflow=workflow
        )
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "model")))
    (event,) = [e.event for e in kinds(logged, "model")]
    assert event.reason == ModelError.code
    assert "HTTP 401" in event.detail
    assert "Incorrect API key" in event.detail
    assert event.body is None
    assert event.cost_usd is None


async def test_replay_answers_model_calls_from_the_history(
    mesh: Mesh, model_server: FakeModelServer
) -> None:
    mesh.configure(
        model_provider="openai",
        model_base_url=model_server.openai_url,
        model_api_key="sk-test",
        model_name="gpt-4o-mini",
    )
    await mesh.start_replicas(classifier())
    client = await mesh.ingress()
    workflow = new_id()
    await client.request(
        "classify", Ticket("my app crashes"), token=mesh.token(), returns=Label, workflow=workflow
    )
    await mesh.tree(workflow, hops=1)
    recorded = await history(client, workflow)
    (task,) = list(recorded.tasks())
    (model,) = task.models
    assert (model.step, model.provider, model.model) == (
        "classify/model.1",
        "openai",
        "gpt-4o-mini-2024-07-18",
    )
    assert model.tokens_in == 9  # the fake server counts words

    async def again(agent: Agent) -> tuple[str, list[str]]:
        report = await rerun(recorded, [agent], redis=client.redis, settings=mesh.settings)
        (replayed,) = report.tasks
        return replayed.status, [d.what for d in replayed.divergences]

    report = await rerun(recorded, [classifier()], redis=client.redis, settings=mesh.settings)
    (same,) = report.tasks
    assert (same.status, same.models) == (SAME, 1)
    assert model_server.count() == 1, "the re-run asked no model"

    changed = classifier(system=LABELS + "\ndefault: product")
    report = await rerun(recorded, [changed], redis=client.redis, settings=mesh.settings)
    (replayed,) = report.tasks
    assert replayed.status == DIVERGED
    (divergence,) = replayed.divergences
    assert divergence.what == PROMPT
    assert divergence.step == "classify/model.1"
    assert divergence.detail == "the request's system prompt changed (the recorded reply is used)"
    assert await again(classifier(calls=2)) == (DIVERGED, [EXTRA_MODEL])
    assert await again(classifier(calls=0)) == (DIVERGED, [MISSING_MODEL, "result"])
    assert model_server.count() == 1
