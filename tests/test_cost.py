"""Model costs added up from the event log: by role, caller, tenant and model, equal to what
the calls returned; forged events not credited; read from a point in time on."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from jetmesh import Agent, Context, Event, EventPayload
from jetmesh.cost import CostReport, GroupBy, cost_report, first_after, model_subject, tally
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent
from jetmesh.models import PriceTable
from jetmesh.runtime.model_steps import FROM_JOURNAL
from tests.harness.mesh import WAIT_S, Mesh

pytestmark = pytest.mark.integration

MODEL = "offline-deterministic/templates-v1"
PRICES = f'[models."{MODEL}"]\ninput = 1000\noutput = 2000\n'
"""Dollars per million tokens: a tenth of a cent a token in, two tenths out."""


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ask/1"

    text: str


class Used(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Used/1"

    tokens: list[tuple[int, int]]
    """Each call's tokens in and out, as its reply counted them."""


def asker(name: str, calls: int) -> Agent:
    """``name`` asks the model ``calls`` times and returns the tokens the replies counted."""
    agent = Agent(name)

    @agent.handler
    async def ask(msg: Ask, ctx: Context) -> Used:
        tokens = []
        for n in range(calls):
            reply = await ctx.model.complete(f"{msg.text} {n}", system="task: summarize")
            tokens.append((reply.input_tokens, reply.output_tokens))
        return Used(tokens)

    return agent


def priced(mesh: Mesh, tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    mesh.configure(model_prices_file=path)
    return PriceTable.load(path)


async def settled_report(mesh: Mesh, by: GroupBy, calls: int, **kw: object) -> CostReport:
    """The report once ``calls`` calls are stored (events are published asynchronously)."""
    client = await mesh.ingress()
    deadline = time.monotonic() + WAIT_S
    while True:
        report = await cost_report(client, by=by, **kw)
        if report.total.calls >= calls or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.05)


async def test_totals_by_role_caller_tenant_and_model_equal_what_the_calls_used(
    mesh: Mesh, tmp_path: Path
) -> None:
    prices = priced(mesh, tmp_path)
    await mesh.start_replicas(asker("classify", calls=1))
    await mesh.start_replicas(asker("summarize", calls=2))
    client = await mesh.ingress()
    since = time.time() - 1
    sent = [
        ("classify", "alice", "acme", "I was charged twice"),
        ("classify", "alice", "acme", "the app crashes on start"),
        ("summarize", "bob", "globex", "a long thread about invoices and refunds"),
        ("classify", "bob", "globex", "where is my order"),
    ]
    want: dict[str, Counter[str]] = {g: Counter() for g in ("role", "caller", "tenant", "model")}
    cost: dict[str, defaultdict[str, float]] = {g: defaultdict(float) for g in want}
    for role, caller, tenant, words in sent:
        used = await client.request(
            role, Ask(words), token=mesh.token(caller, tenant=tenant), returns=Used
        )
        costs = [prices.cost(MODEL, t_in, t_out) or 0.0 for t_in, t_out in used.tokens]
        assert len(costs) == (2 if role == "summarize" else 1)
        assert all(c > 0 for c in costs)
        for group, key in (
            ("role", role),
            ("caller", caller),
            ("tenant", tenant),
            ("model", MODEL),
        ):
            want[group][key] += len(costs)
            cost[group][key] += sum(costs)

    for group in ("role", "caller", "tenant", "model"):
        report = await settled_report(mesh, group, 5, since=since)
        assert {line.key: line.calls for line in report.lines} == dict(want[group])
        for line in report.lines:
            assert line.cost_usd == pytest.approx(cost[group][line.key]), (group, line.key)
        assert report.total.calls == 5
        assert report.total.cost_usd == pytest.approx(sum(cost["model"].values()))
        assert report.not_counted == 0
        costs = [line.cost_usd for line in report.lines]
        assert costs == sorted(costs, reverse=True), "the largest cost first"


async def test_a_forged_model_event_is_not_credited_to_the_role_it_names(
    mesh: Mesh, tmp_path: Path
) -> None:
    """kb, a role, writes a model event naming classify (fails verification), and one in
    its own name inside classify's task (credited to kb, who signed it)."""
    priced(mesh, tmp_path)
    await mesh.start_replicas(asker("classify", calls=1))
    (kb,) = await mesh.start_replicas(asker("kb", calls=0))
    client = await mesh.ingress()
    workflow = new_id()
    token = mesh.token("alice", tenant="acme")
    await client.request("classify", Ask("refund"), token=token, returns=Used, workflow=workflow)
    honest = await settled_report(mesh, "role", 1, since=0.0, workflow=workflow)
    (classify,) = honest.lines
    model_event = Event(
        kind="model",
        agent="classify",
        at=time.time(),
        task=new_id(),
        step="classify",
        callee_step="classify/model.9",
        model=MODEL,
        tokens_in=1_000_000,
        tokens_out=1_000_000,
        cost_usd=3000.0,
        body=EventPayload(type="mesh.ModelReply/1", value=msgspec.Raw(b"{}")),
    )
    as_itself = msgspec.structs.replace(model_event, agent="kb", callee_step="kb/model.1")
    await kb.mesh.emit(workflow, model_event, caller=token)
    await kb.mesh.emit(workflow, as_itself, caller=token)
    assert await kb.mesh.flush_events()

    report = await settled_report(mesh, "role", 2, since=0.0, workflow=workflow)
    lines = {line.key: line for line in report.lines}
    assert lines["classify"] == classify, "classify is credited with its own call only"
    assert (lines["kb"].calls, lines["kb"].cost_usd) == (1, 3000.0), "kb pays for what it signed"
    assert report.not_counted == 1
    assert report.total.calls == 2


async def test_only_events_stored_since_the_given_time_are_read(mesh: Mesh) -> None:
    """Sixty model events around a point in time, other events between them: the start is
    found by probing the stream, and only the later thirty are counted (the first thirty
    when the point is the end)."""
    client = await mesh.ingress()
    token = mesh.token("carol", tenant="initech")
    workflow = new_id()

    async def write(first: int) -> None:
        for n in range(first, first + 30):
            for kind in ("started", "model"):
                event = Event(
                    kind=kind,
                    agent="cli",
                    at=time.time(),
                    callee_step=f"cli/model.{n}",
                    model="m",
                    tokens_in=n,
                    tokens_out=1,
                    cost_usd=0.5,
                    body=EventPayload(type="mesh.ModelReply/1", value=msgspec.Raw(b"{}")),
                )
                await client.emit(workflow, event, caller=token)
        assert await client.flush_events()

    await write(0)
    await asyncio.sleep(0.05)  # the stream's clock moves past the first thirty
    mark = time.time()
    await asyncio.sleep(0.05)
    await write(30)

    stream, subject = mesh.settings.events_stream, model_subject(client, workflow)
    after = await first_after(client, stream, subject, mark)
    report = await cost_report(client, by="tenant", since=mark, workflow=workflow)
    assert [(line.key, line.calls) for line in report.lines] == [("initech", 30)]
    assert report.total.tokens_in == sum(range(30, 60))
    assert report.total.cost_usd == pytest.approx(15.0)
    everything = await cost_report(client, by="caller", since=0.0, workflow=workflow)
    assert everything.total.calls == 60
    before = await cost_report(client, by="role", since=0.0, until=mark, workflow=workflow)
    assert before.total.calls == 30, "events stored after until are not read"
    assert after > 0
    assert (await cost_report(client, by="role", since=time.time() + 60)).total.calls == 0


def logged(event: Event, *, verified: bool = True) -> LoggedEvent:
    return LoggedEvent(event, "w", event.agent, verified)


def test_journal_answers_and_failed_calls_add_nothing() -> None:
    base = Event(
        kind="model",
        agent="a",
        at=0.0,
        model="m",
        tokens_in=10,
        tokens_out=5,
        cost_usd=0.25,
        body=EventPayload(type="mesh.ModelReply/1", value=msgspec.Raw(b"{}")),
    )
    report = tally(
        [
            logged(base),
            logged(msgspec.structs.replace(base, detail=FROM_JOURNAL)),
            logged(msgspec.structs.replace(base, body=None, reason="model-error")),
            logged(msgspec.structs.replace(base, cost_usd=None, model="unknown")),
            logged(msgspec.structs.replace(base, kind="completed")),
            logged(base, verified=False),
        ],
        "model",
    )
    assert [(line.key, line.calls, line.unpriced) for line in report.lines] == [
        ("m", 1, 0),
        ("unknown", 1, 1),
    ]
    assert (report.total.calls, report.total.cost_usd) == (2, 0.25)
    assert (report.not_asked, report.not_counted) == (2, 1)
    assert tally([logged(base)], "caller").lines[0].key == "-", "no verified caller"
