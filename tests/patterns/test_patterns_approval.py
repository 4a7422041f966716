"""Human approval: an irreversible step waits for ``jetmesh approve`` or ``jetmesh deny``;
on timeout it escalates to a role, or raises ``ApprovalTimeout`` when it has none."""

from __future__ import annotations

import asyncio
import signal

import msgspec
import pytest

from jetmesh import Agent, ApprovalTimeout, Context, MeshClient
from jetmesh.envelope import new_id
from jetmesh.patterns import ApprovalRequest, Verdict, approval_signal, require_approval
from jetmesh.replay import SAME, history, rerun
from tests.harness.mesh import Mesh, jetmesh, kinds

pytestmark = pytest.mark.integration

STEP = "refunder/approval.1"


class Refund(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Refund/1"

    amount: int
    customer: str
    timeout_s: float = 30.0
    escalate: bool = False


class Outcome(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.RefundOutcome/1"

    status: str
    by: str = ""
    note: str = ""
    escalated: bool = False
    refunds: int = 0


refunder = Agent("refunder", description="refunds once a person approves")
finance_lead = Agent("finance-lead", description="decides approvals nobody answered")
escalations: list[ApprovalRequest] = []


@refunder.handler
async def refund(req: Refund, ctx: Context) -> Outcome:
    try:
        decision = await require_approval(
            ctx,
            f"refund {req.amount} EUR to {req.customer}",
            timeout=req.timeout_s,
            escalate_to="finance-lead" if req.escalate else None,
        )
    except ApprovalTimeout as exc:
        return Outcome("timeout", note=f"{exc.step}: {exc}")
    if not decision.approved:
        return Outcome("denied", decision.by, decision.note, decision.escalated)

    async def pay() -> int:
        return await ctx.memory.update("refunds", int, lambda n: (n or 0) + 1)

    paid = await ctx.once("refund", pay, returns=int)
    return Outcome("refunded", decision.by, decision.note, decision.escalated, paid)


@finance_lead.handler
async def decide(req: ApprovalRequest) -> Verdict:
    escalations.append(req)
    return Verdict(approved=False, note="over 100 EUR needs a ticket")


async def start(mesh: Mesh) -> MeshClient:
    escalations.clear()
    await mesh.start_replicas(refunder)
    await mesh.start_replicas(finance_lead)
    return await mesh.ingress()


def ask(mesh: Mesh, client: MeshClient, req: Refund, workflow: str) -> asyncio.Task[Outcome]:
    return asyncio.create_task(
        client.request(
            "refunder",
            req,
            token=mesh.token("alice"),
            returns=Outcome,
            workflow=workflow,
            timeout=60,
        )
    )


async def requested(mesh: Mesh, workflow: str) -> str:
    """The step of the workflow's approval request, once it is recorded."""
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "approval-requested")))
    (asked,) = kinds(logged, "approval-requested")
    assert asked.event.key == approval_signal(asked.event.callee_step)
    return asked.event.callee_step


async def test_approved_from_the_command_line(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = ask(mesh, client, Refund(120, "alice"), workflow)
    step = await requested(mesh, workflow)
    assert step == STEP
    logged = await mesh.events(workflow)
    (asked,) = kinds(logged, "approval-requested")
    assert asked.event.detail == f"refund 120 EUR to alice (jetmesh approve|deny {workflow} {STEP})"

    code, _, err = await jetmesh(mesh, "approve", workflow, "refunder/approval.9", "--as", "bob")
    assert code == 1
    assert f"no approval was requested at step refunder/approval.9 of workflow {workflow}" in err
    assert not outcome.done()

    code, out, err = await jetmesh(
        mesh, "approve", workflow, STEP, "--as", "bob", "--note", "customer is right"
    )
    assert code == 0, err
    assert f"approved step {STEP} of workflow {workflow} as bob" in out
    assert await outcome == Outcome("refunded", "bob", "customer is right", refunds=1)

    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "approval-granted")))
    (granted,) = kinds(logged, "approval-granted")
    assert granted.event.detail == "by bob: customer is right"
    code, _, err = await jetmesh(mesh, "deny", workflow, STEP, "--as", "eve")
    assert code == 1
    assert "is approved already (by bob: customer is right)" in err


async def test_denied_from_the_command_line(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = ask(mesh, client, Refund(5000, "mallory"), workflow)
    step = await requested(mesh, workflow)
    code, out, err = await jetmesh(
        mesh, "deny", workflow, step, "--as", "carol", "--reason", "looks like fraud"
    )
    assert code == 0, err
    assert f"denied step {step} of workflow {workflow} as carol" in out
    assert await outcome == Outcome("denied", "carol", "looks like fraud")
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "approval-denied")))
    (denied,) = kinds(logged, "approval-denied")
    assert denied.event.detail == "by carol: looks like fraud"
    assert not kinds(logged, "effect"), "nothing irreversible happened"


async def test_a_timeout_escalates_with_the_whole_context(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = await ask(mesh, client, Refund(300, "dave", timeout_s=0.5, escalate=True), workflow)
    assert outcome == Outcome(
        "denied", "finance-lead", "over 100 EUR needs a ticket", escalated=True
    )
    assert escalations == [
        ApprovalRequest(
            workflow=workflow,
            step=STEP,
            agent="refunder",
            action="refund 300 EUR to dave",
            caller="alice",
            waited_s=0.5,
        )
    ]
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "approval-denied")))
    (escalated,) = kinds(logged, "approval-escalated")
    assert escalated.event.target == "finance-lead"
    (denied,) = kinds(logged, "approval-denied")
    assert denied.event.detail == "by finance-lead: over 100 EUR needs a ticket"

    # A re-run: the wait timed out in the history, so it does again, and escalates the same.
    await mesh.tree(workflow, hops=2)
    recorded = await history(client, workflow)
    report = await rerun(recorded, [refunder], redis=client.redis, settings=mesh.settings)
    (again,) = [t for t in report.tasks if t.step == "refunder"]
    assert (again.status, again.divergences, again.calls) == (SAME, [], 1)


async def test_a_timeout_without_escalation_is_an_approval_timeout(mesh: Mesh) -> None:
    client = await start(mesh)
    workflow = new_id()
    outcome = await ask(mesh, client, Refund(10, "erin", timeout_s=0.3), workflow)
    assert outcome == Outcome(
        "timeout", note=f"{STEP}: no decision on 'refund 10 EUR to erin' (step {STEP}) within 0.3 s"
    )
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "approval-timed-out")))
    assert [e.event.callee_step for e in kinds(logged, "approval-timed-out")] == [STEP]
    assert escalations == []


@pytest.mark.fault
async def test_an_approval_survives_the_death_of_its_replica(mesh: Mesh, agent_processes) -> None:
    """SIGKILL while the step waits: another process asks for the same approval step, and
    the decision sent to it goes through, once."""
    mesh.configure(ack_wait_s=1.5)
    mesh.identity("refunder")
    target = "tests.patterns.test_patterns_approval:refunder"
    (doomed,) = await agent_processes(target, 1)
    client = await mesh.ingress()
    workflow = new_id()
    outcome = ask(mesh, client, Refund(120, "alice", timeout_s=120), workflow)
    assert await requested(mesh, workflow) == STEP
    assert doomed.proc is not None
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(5)
    await agent_processes(target, 1)
    logged = await mesh.wait_events(
        workflow, lambda got: len(kinds(got, "waiting")) == 2, timeout=20.0
    )
    asked = kinds(logged, "approval-requested")
    assert [e.event.callee_step for e in asked] == [STEP, STEP], "the same step, asked again"
    assert asked[0].event.instance != asked[1].event.instance
    await client.signal(
        workflow, approval_signal(STEP), Verdict(approved=True), token=mesh.token("bob")
    )
    assert await outcome == Outcome("refunded", "bob", refunds=1)
