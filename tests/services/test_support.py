"""The customer-support mesh on real servers, every role a replica and the tool gateway
(refunds and hand-offs go through it): each route, an unknown class and drafts the critic
never approves handed to a person with their context, refunds under and over the limit
(approved with an approval bound to the refund, denied, timed out), and a refund paid
once although its task ran twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from jetmesh import Agent, Credentials, MeshClient
from jetmesh.cli.approve import decide
from jetmesh.envelope import new_id
from jetmesh.memory import WorkingMemory
from jetmesh.patterns import Verdict
from jetmesh.toolgate import write_secrets
from services.support import POLICY, TOOL_CREDENTIALS, billing, critic, escalation, kb, triage
from services.support.settings import SupportSettings
from services.support.systems import Desk
from services.support.teams import team_agent
from services.support.toolgate import build as toolgate
from services.support.tools import support_tools
from services.support.wire import RefundAsk, Resolution, RouteDecision, Ticket
from tests.harness.mesh import Mesh, count_tasks, kinds

pytestmark = pytest.mark.integration

SCOPES = ["kb:read", "refund:write", "handoff:write"]
CONFIG = SupportSettings(approval_timeout_s=3.0, call_timeout_s=20.0)


@dataclass
class Support:
    mesh: Mesh
    client: MeshClient
    desk: Desk

    async def ask(self, ticket: Ticket, workflow: str | None = None) -> Resolution:
        return await self.client.request(
            "triage",
            ticket,
            token=self.mesh.token(ticket.customer, scopes=SCOPES),
            returns=Resolution,
            workflow=workflow or new_id(),
            timeout=30,
        )

    async def approval_step(self, workflow: str) -> str:
        logged = await self.mesh.wait_events(
            workflow, lambda got: bool(kinds(got, "approval-requested"))
        )
        (asked,) = kinds(logged, "approval-requested")
        return asked.event.callee_step


def roles(mesh: Mesh, desk: Desk, config: SupportSettings = CONFIG) -> list[Agent]:
    return [
        triage.build(config),
        billing.build(config),
        team_agent("technical", config),
        team_agent("product", config),
        kb.build(),
        critic.build(),
        escalation.build(),
        toolgate(
            mesh.settings,
            tools=support_tools(desk),
            credentials=Credentials(mesh.settings.tool_secrets_file),
        ),
    ]


@pytest.fixture
async def support(mesh: Mesh) -> AsyncIterator[Support]:
    secrets = write_secrets(mesh.settings.state_dir / "secrets" / "tools.toml", TOOL_CREDENTIALS)
    mesh.configure(retry_backoff_s=(0.1,), policy_file=POLICY, tool_secrets_file=secrets)
    desk = Desk(mesh.settings.redis_url, namespace=f"desk-{mesh.settings.subject_prefix}")
    for agent in roles(mesh, desk):
        await mesh.start_replicas(agent)
    try:
        yield Support(mesh, await mesh.ingress(), desk)
    finally:
        await desk.aclose()


async def test_each_team_answers_its_tickets_in_a_critic_loop(support: Support) -> None:
    cases = [
        (
            Ticket(
                id="T-1",
                customer="alice",
                text="I was charged twice for my subscription this month. "
                "When will I get my money back?",
            ),
            "billing",
            2,
            ["B-1", "B-2"],
        ),
        (
            Ticket(id="T-2", customer="dave", text="The app crashes when I open settings"),
            "technical",
            1,
            ["T-2"],
        ),
        (
            Ticket(
                id="T-3", customer="erin", text="Do you have a dark mode? Can I export my reports?"
            ),
            "product",
            2,
            ["P-1", "P-2"],
        ),
    ]
    for ticket, team, rounds, sources in cases:
        workflow = new_id()
        got = await support.ask(ticket, workflow)
        assert (got.status, got.team, got.rounds, sorted(got.sources)) == (
            "answered",
            team,
            rounds,
            sources,
        ), got
        assert got.score >= CONFIG.critic_threshold
        assert got.text.startswith(f"Hi {ticket.customer},")
        assert got.handoff is None
        decision = await WorkingMemory(
            support.client.redis,
            support.mesh.settings.subject_prefix,
            workflow,
            "triage",
        ).get("route", RouteDecision)
        assert decision is not None
        assert (decision.label, decision.target, decision.fallback) == (team, team, False)

        (accepted,) = await support.mesh.tree(workflow, hops=3 + rounds)
        (hop,) = accepted.children
        assert (hop.agent, hop.caller) == ("triage", ticket.customer)
        (routed,) = kinds(hop.events, "routed")
        assert (routed.event.key, routed.event.target, routed.event.reason) == (
            team,
            team,
            "table",
        )
        assert hop.usage.calls == 1, "the model classified the ticket"
        (team_hop,) = hop.children
        assert [c.agent for c in team_hop.children] == ["kb"] + ["critic"] * rounds
        assert all(n.caller == ticket.customer and n.verified for n in team_hop.children)
        assert [e.event.reason for e in kinds(team_hop.events, "refined")] == ["threshold"]
        assert team_hop.usage.calls == rounds, "one draft per round"


async def test_unknown_class_and_unapproved_drafts_reach_a_person_with_full_context(
    support: Support,
) -> None:
    unknown = Ticket(id="T-4", customer="frank", text="My parrot whistles the national anthem")
    unanswerable = Ticket(
        id="T-5", customer="grace", text="Can I pay my invoices in bitcoin from a hardware wallet?"
    )
    first, second = new_id(), new_id()
    got_unknown = await support.ask(unknown, first)
    got_unanswerable = await support.ask(unanswerable, second)
    assert (got_unknown.status, got_unknown.team) == ("escalated", "escalation")
    assert (got_unanswerable.status, got_unanswerable.team) == ("escalated", "billing")
    assert got_unanswerable.rounds == CONFIG.max_rounds
    assert got_unknown.handoff is not None
    assert got_unanswerable.handoff is not None
    assert got_unknown.handoff.id in got_unknown.text

    queued = {case.ticket.id: (handoff, case) for handoff, case in await support.desk.queued()}
    assert set(queued) == {"T-4", "T-5"}
    handoff, case = queued["T-4"]
    assert handoff == got_unknown.handoff
    assert case.ticket == unknown
    assert (case.route.label, case.route.target, case.route.fallback) == (
        "unknown",
        "escalation",
        True,
    )
    assert case.rounds == []
    handoff, case = queued["T-5"]
    assert handoff == got_unanswerable.handoff
    assert case.ticket == unanswerable
    assert (case.route.label, case.team) == ("billing", "billing")
    assert [r.round for r in case.rounds] == list(range(1, CONFIG.max_rounds + 1))
    assert all(
        r.draft.startswith("Hi grace,") and r.critique.startswith("missing: ") for r in case.rounds
    )
    assert case.reason.startswith(f"the critic approved none of {CONFIG.max_rounds} draft(s)")

    (accepted,) = await support.mesh.tree(first, hops=3)
    (hop,) = accepted.children
    (routed,) = kinds(hop.events, "routed")
    assert (routed.event.key, routed.event.reason) == ("unknown", "fallback")
    (esc,) = hop.children
    assert esc.agent == "escalation"
    assert kinds(esc.events, "handed-off")
    (gate,) = esc.children
    assert (gate.agent, gate.caller) == ("toolgate", "frank")
    (ran,) = kinds(gate.events, "tool")
    assert (ran.event.target, ran.event.reason) == ("handoff", "ok")
    assert "credential sha256:" in ran.event.detail


async def test_refunds_under_and_over_the_limit(support: Support) -> None:
    def refund(ident: str, amount: float) -> Ticket:
        return Ticket(
            id=ident,
            customer="ivan",
            text=f"Order A-{ident} arrived broken, please refund it.",
            refund=RefundAsk(order=f"A-{ident}", amount_eur=amount),
        )

    small = await support.ask(refund("1", 35.0))
    assert (small.status, small.note) == ("refunded", "under the approval limit")
    assert small.refund is not None
    assert (small.refund.amount_eur, small.refund.approved_by) == (35.0, "")
    assert f"We refunded 35.00 EUR for order A-1 ({small.refund.id})." in small.text

    async def decided(ticket: Ticket, person: str, verdict: Verdict | None) -> Resolution:
        workflow = new_id()
        pending = asyncio.create_task(support.ask(ticket, workflow))
        step = await support.approval_step(workflow)
        assert step == "triage/billing.1/approval.1"
        if verdict is not None:  # the same code as `jetmesh approve|deny`
            token = support.mesh.token(person, scopes=["refund:approve"])
            told: list[str] = []
            assert await decide(support.client, workflow, step, verdict, token, told) == ""
            assert told[0].startswith("tool refund for billing, args {")
            assert f'"amount_eur":{ticket.refund.amount_eur}' in told[0]  # type: ignore[union-attr]
        return await pending

    approved = await decided(refund("2", 240.0), "bob", Verdict(approved=True, note="photo ok"))
    assert (approved.status, approved.note) == ("refunded", "approved by bob")
    assert approved.refund is not None
    assert (approved.refund.amount_eur, approved.refund.approved_by) == (240.0, "bob")

    denied = await decided(refund("3", 900.0), "carol", Verdict(approved=False, note="fraud?"))
    assert (denied.status, denied.note) == ("refund-denied", "refund denied by carol: fraud?")
    assert denied.refund is None
    assert "Your refund of 900.00 EUR was not approved: fraud?." in denied.text

    timed_out = await decided(refund("4", 500.0), "nobody", None)
    assert timed_out.status == "escalated"
    assert timed_out.refund is None
    assert timed_out.handoff is not None
    ((_, case),) = [q for q in await support.desk.queued() if q[1].ticket.id == "4"]
    assert case.reason == (
        "refund 500.00 EUR to ivan for order A-4: nobody approved or denied it within 3 s"
    )
    payouts = await support.desk.redis.lrange(
        f"desk-{support.mesh.settings.subject_prefix}:payouts", 0, -1
    )
    assert len(payouts) == 2, "only the small refund and the approved one were paid"


async def test_a_refund_is_paid_once_when_its_task_runs_again(
    support: Support, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The billing task fails after the payment (its answer could not be drafted); the
    redelivery runs the handler again and gets the gateway's receipt from the journal."""
    real = billing.resolve
    calls = 0

    async def flaky(*args: object, **kwargs: object) -> Resolution:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("drafting service hiccup")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(billing, "resolve", flaky)
    workflow = new_id()
    ticket = Ticket(
        id="T-9",
        customer="judy",
        text="Order A-9 arrived broken, please refund it.",
        refund=RefundAsk(order="A-9", amount_eur=60.0),
    )
    got = await support.ask(ticket, workflow)
    assert got.status == "refunded"
    assert got.refund is not None
    assert calls == 2
    for role in ("triage", "billing", "toolgate"):  # no delivery left to pay it again
        await support.mesh.settled(role)
    key = f"{workflow}/triage/billing.1/toolgate.1"
    assert await support.desk.refund_runs(key) == 1, "paid once"
    assert await support.desk.find_refund(key) == got.refund

    def replies(logged: list) -> list:  # type: ignore[type-arg]
        return [
            e.event
            for e in kinds(logged, "reply")
            if e.event.agent == "billing" and e.event.callee_step.endswith("/toolgate.1")
        ]

    logged = await support.mesh.wait_events(workflow, lambda got: len(replies(got)) == 1)
    assert [(e.detail, e.attempt) for e in replies(logged)] == [("from the journal", 2)]
    assert [e.event.reason for e in kinds(logged, "tool")] == ["ok"], "the gateway ran it once"
    assert kinds(logged, "retried")
    assert count_tasks(await support.mesh.tree(workflow, hops=4)) >= 4
