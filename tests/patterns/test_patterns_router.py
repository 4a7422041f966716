"""Router: a task classified (by ``ctx.model`` or a function), forwarded to the role of its
class with the workflow, caller and causality kept; an unknown class to the fallback; a
class with several roles to all of them, their replies merged; each decision an event."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, Context, MeshClient, Reject
from jetmesh.envelope import new_id
from jetmesh.patterns import Classification, Routes, route
from jetmesh.replay import SAME, history, rerun
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration


class Ticket(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ticket/1"

    text: str
    label: str = ""
    """When set, the router's classify function answers it (the model is not asked)."""


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Answer/1"

    team: str
    text: str
    caller: str = ""
    parent_agent: str = ""


ROUTES = Routes(
    {"billing": "billing", "technical": "technical", "outage": ("technical", "status")},
    fallback="human",
)


def merge(replies: dict[str, Answer]) -> Answer:
    return Answer("+".join(replies), " | ".join(a.text for a in replies.values()))


def by_label(ticket: Ticket) -> Classification:
    return Classification(ticket.label, "label given with the ticket")


triage = Agent("triage", description="routes tickets")


@triage.handler
async def route_ticket(ticket: Ticket, ctx: Context) -> Answer:
    classify = by_label if ticket.label else None
    routed = await route(
        ctx, ticket, ROUTES, returns=Answer, classify=classify, text=ticket.text, merge=merge
    )
    return routed.result


def team(name: str, *, fails: bool = False) -> Agent:
    agent = Agent(name, description=f"answers {name} tickets")

    @agent.handler
    async def answer(ticket: Ticket, ctx: Context) -> Answer:
        if fails:
            raise Reject(f"{name} is closed today")
        return Answer(name, f"{name} on {ticket.text!r}", ctx.caller.subject, ctx.task.sender)

    return agent


async def start(mesh: Mesh, *, status_fails: bool = False) -> MeshClient:
    for agent in (
        triage,
        team("billing"),
        team("technical"),
        team("status", fails=status_fails),
        team("human"),
    ):
        await mesh.start_replicas(agent)
    return await mesh.ingress()


async def ask(mesh: Mesh, client: MeshClient, ticket: Ticket) -> tuple[str, Answer]:
    workflow = new_id()
    answer = await client.request(
        "triage", ticket, token=mesh.token("alice"), returns=Answer, workflow=workflow
    )
    return workflow, answer


async def test_a_known_class_goes_to_its_role_with_the_caller_kept(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow, answer = await ask(mesh, client, Ticket("I was charged twice for my subscription"))
    assert answer.team == "billing"
    assert (answer.caller, answer.parent_agent) == ("alice", "triage"), "caller and sender kept"

    (root,) = await mesh.tree(workflow, hops=2)
    (router,) = root.children
    assert [(c.agent, c.step) for c in router.children] == [("billing", "triage/billing.2")]
    assert router.children[0].caller == "alice"
    logged = await mesh.events(workflow)
    (routed,) = kinds(logged, "routed")
    assert (routed.event.key, routed.event.target, routed.event.reason) == (
        "billing",
        "billing",
        "table",
    )
    assert "keyword rules (charged, subscription, twice)" in routed.event.detail
    assert [e.event.callee_step for e in kinds(logged, "model")] == ["triage/model.1"]


async def test_an_unknown_class_goes_to_the_fallback(mesh: Mesh) -> None:
    client = await start(mesh)
    _, by_model = await ask(mesh, client, Ticket("Where do I send fan mail about your logo?"))
    assert by_model.team == "human", "the model found no label: unknown, the fallback"

    workflow, by_function = await ask(mesh, client, Ticket("chargeback!", label="fraud"))
    assert by_function.team == "human"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "routed")))
    (routed,) = kinds(logged, "routed")
    assert (routed.event.key, routed.event.target, routed.event.reason) == (
        "fraud",
        "human",
        "fallback",
    )
    assert routed.event.detail == (
        "fraud -> human: unknown class, fallback; label given with the ticket"
    )
    assert not kinds(logged, "model"), "a classify function was given: no model call"


async def test_a_class_with_several_roles_is_sent_to_all_and_merged(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow, answer = await ask(mesh, client, Ticket("Outage in the EU region since noon"))
    assert answer.team == "technical+status"
    assert answer.text.count("on 'Outage in the EU region since noon'") == 2
    (root,) = await mesh.tree(workflow, hops=3)
    assert sorted(c.agent for c in root.children[0].children) == ["status", "technical"]

    # A re-run with the same code: the model's class, the calls and the merge are the same.
    recorded = await history(client, workflow)
    report = await rerun(
        recorded,
        [triage, team("technical"), team("status")],
        redis=client.redis,
        settings=mesh.settings,
    )
    assert [(t.step, t.status, t.divergences) for t in report.tasks] == [
        ("triage", SAME, []),
        ("triage/technical.2", SAME, []),
        ("triage/status.3", SAME, []),
    ]


async def test_a_failed_role_of_several_leaves_the_others_merged(mesh: Mesh) -> None:
    client = await start(mesh, status_fails=True)
    _, answer = await ask(mesh, client, Ticket("Is there an outage right now?"))
    assert answer.team == "technical", "status failed; the merge had technical's reply"
