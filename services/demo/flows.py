"""What the demo sends: support tickets (one per route, an unknown class, one the
critic never approves, refunds under and over the limit, a person approving and denying
through the same code as ``jetmesh approve``), and one research question."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rich.console import Console

from jetmesh import MeshClient
from jetmesh.cli import decide, markup
from jetmesh.envelope import new_id
from jetmesh.event_log import read_events
from jetmesh.patterns import APPROVAL_REQUESTED, Verdict
from services.research.wire import Question, Report
from services.support.systems import Desk
from services.support.wire import RefundAsk, Resolution, Ticket

SCOPES = ["kb:read", "refund:write", "handoff:write"]
"""What the support portal's ingress grants a customer's token."""

TICKETS = [
    Ticket(
        id="T-1001",
        customer="alice",
        text="I was charged twice for my subscription this month. When will I get my money back?",
    ),
    Ticket(id="T-1002", customer="dave", text="The app crashes when I open settings"),
    Ticket(
        id="T-1003",
        customer="erin",
        text="Do you have a dark mode? Can I export my reports to CSV?",
    ),
    Ticket(
        id="T-1004",
        customer="frank",
        text="My parrot keeps whistling the national anthem, what should I do?",
    ),
    Ticket(
        id="T-1005",
        customer="grace",
        text="Can I pay my invoices in bitcoin from a hardware wallet?",
    ),
    Ticket(
        id="T-1006",
        customer="heidi",
        text="Order A-1180 arrived broken, please refund it.",
        refund=RefundAsk(order="A-1180", amount_eur=35.0),
    ),
]
"""Answered in turn: billing, technical, product, an unknown class, one the critic never
approves, a refund under the limit."""

APPROVALS = [
    (
        Ticket(
            id="T-1007",
            customer="ivan",
            text="Order A-2291 arrived broken, please refund it.",
            refund=RefundAsk(order="A-2291", amount_eur=240.0),
        ),
        "bob",
        Verdict(approved=True, note="photo of the damage checked"),
    ),
    (
        Ticket(
            id="T-1008",
            customer="judy",
            text="Order A-3307 arrived broken, please refund it.",
            refund=RefundAsk(order="A-3307", amount_eur=900.0),
        ),
        "carol",
        Verdict(approved=False, note="third refund this month; call the customer first"),
    ),
]
"""Refunds over the limit, and the person who decides each."""

QUESTION = Question(text="How do NATS JetStream and Kafka compare for agent messaging?")


@dataclass
class Ran:
    """The workflows the demo ran, in order, with a label each."""

    workflows: list[tuple[str, str]] = field(default_factory=list)


def _line(console: Console, ticket: Ticket, got: Resolution, took_ms: float) -> None:
    how = [f"{got.rounds} draft(s), score {got.score:.2f}" if got.rounds else ""]
    how.append(f"sources {', '.join(got.sources)}" if got.sources else "")
    if got.refund is not None:
        how.append(f"refund {got.refund.id} {got.refund.amount_eur:.2f} EUR")
    if got.handoff is not None:
        how.append(f"hand-off {got.handoff.id}")
    if got.note:
        how.append(got.note)
    console.print(
        f"{ticket.id} [bold]{markup(f'{got.team:<10}')}[/bold] {markup(f'{got.status:<13}')} "
        f"{took_ms:7.1f} ms  " + markup("; ".join(h for h in how if h)),
        soft_wrap=True,
    )
    first = " ".join(got.text.split())[:110]
    if first:
        console.print(f"       [dim]{markup(first)}[/dim]", soft_wrap=True)


async def support(mesh: MeshClient, console: Console, ran: Ran, timeout: float = 60.0) -> None:
    """Send the tickets, play the people who decide the refunds over the limit."""
    for ticket in TICKETS:
        workflow = new_id()
        started = time.perf_counter()
        got = await mesh.request(
            "triage",
            ticket,
            token=mesh.mint_token(ticket.customer, tenant="acme", scopes=SCOPES),
            returns=Resolution,
            workflow=workflow,
            timeout=timeout,
        )
        _line(console, ticket, got, (time.perf_counter() - started) * 1000)
        ran.workflows.append((workflow, f"{ticket.id} ({got.team}, {got.status})"))
    for ticket, person, verdict in APPROVALS:
        workflow = new_id()
        started = time.perf_counter()
        pending = asyncio.create_task(
            mesh.request(
                "triage",
                ticket,
                token=mesh.mint_token(ticket.customer, tenant="acme", scopes=SCOPES),
                returns=Resolution,
                workflow=workflow,
                timeout=timeout,
            )
        )
        step, asked = await _approval_requested(mesh, workflow, timeout)
        console.print(
            f"{ticket.id} [yellow]waits[/yellow] for a person: {markup(asked)}", soft_wrap=True
        )
        word = "approve" if verdict.approved else "deny"
        token = mesh.mint_token(person, tenant="acme", scopes=["refund:approve"])
        told: list[str] = []
        problem = await decide(mesh, workflow, step, verdict, token, told)
        console.print(
            f"person   {person}: jetmesh {word} {workflow} {step} --as {person}"
            + (f"  [red]{markup(problem)}[/red]" if problem else ""),
            soft_wrap=True,
        )
        for line in told:
            console.print(f"         {markup(line)}", soft_wrap=True, highlight=False)
        got = await pending
        _line(console, ticket, got, (time.perf_counter() - started) * 1000)
        ran.workflows.append((workflow, f"{ticket.id} ({got.team}, {got.status})"))


async def _approval_requested(mesh: MeshClient, workflow: str, timeout: float) -> tuple[str, str]:
    """The step and the text of the workflow's approval request, once it is logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in await read_events(mesh, workflow, timeout=0.5):
            if item.event.kind == APPROVAL_REQUESTED:
                return item.event.callee_step, item.event.detail
        await asyncio.sleep(0.05)
    raise TimeoutError(f"workflow {workflow} asked for no approval within {timeout:g} s")


async def handoffs(desk: Desk, console: Console) -> None:
    """The cases escalation put in the people's queue, with the context each carries."""
    for handoff, case in await desk.queued():
        drafts = f", {len(case.rounds)} draft(s) with critiques" if case.rounds else ""
        console.print(
            markup(
                f"queue    {handoff.id} {case.ticket.id} ({case.ticket.customer}): "
                f"{case.reason or 'class ' + repr(case.route.label) + ' has no team'}; "
                f"route {case.route.label} -> {case.route.target}{drafts}"
            ),
            soft_wrap=True,
        )


async def research(mesh: MeshClient, console: Console, ran: Ran, timeout: float = 60.0) -> None:
    """Ask the research question; print the report."""
    workflow = new_id()
    started = time.perf_counter()
    report = await mesh.request(
        "orchestrator",
        QUESTION,
        token=mesh.mint_token("alice", tenant="acme", scopes=["corpus:read"]),
        returns=Report,
        workflow=workflow,
        timeout=timeout,
    )
    took = (time.perf_counter() - started) * 1000
    console.print(
        f"question [bold]{QUESTION.text}[/bold] in {took:.1f} ms: {len(report.subquestions)} "
        f"sub-questions, {len(report.sources)} sources, {report.rounds} draft(s), "
        f"score {report.score:.2f}, stopped: {report.stopped}"
        + (f", partial: {markup('; '.join(report.gaps))}" if report.partial else ""),
        soft_wrap=True,
    )
    for line in report.text.splitlines():
        console.print(
            f"  [dim]{markup(line)}[/dim]" if line else "", soft_wrap=True, highlight=False
        )
    ran.workflows.append((workflow, "research report"))
