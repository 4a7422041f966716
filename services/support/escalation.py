"""escalation: hands a case nobody in the mesh could resolve to a person, with its full
context (the ticket, the route, every draft and critique, why), through the tool gateway
(``ctx.tool("handoff", ...)``): the gateway holds the queue's credential and runs the
hand-off once per step, however often the task runs. Scope ``handoff:write``."""

from __future__ import annotations

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from services.support.scopes import HANDOFF_WRITE, permitted, refusal
from services.support.wire import Case, Handoff, Resolution

HANDOFF = "handoff"
"""The tool that puts a case in the people's queue."""


def reason_of(case: Case) -> str:
    if case.reason:
        return case.reason
    if case.route.fallback:
        return f"no team handles tickets of class {case.route.label!r}"
    return "unresolved"


def build() -> Agent:
    """The ``escalation`` role."""
    agent = Agent(
        "escalation",
        scopes=[HANDOFF_WRITE],
        description="hands an unresolved case to a person with its full context",
    )

    @agent.handler
    async def escalate(case: Case, ctx: Context) -> Resolution:
        ticket, why = case.ticket, reason_of(case)
        if not permitted(ctx, agent, HANDOFF_WRITE):
            refused = refusal(ctx, agent, HANDOFF_WRITE)
            await ctx.emit("scope-refused", refused)
            return Resolution(
                ticket_id=ticket.id,
                status="escalated",
                team=case.team or "escalation",
                text="",
                note=f"{why}; not handed off: {refused}",
            )
        handoff = await ctx.tool(HANDOFF, case, returns=Handoff)
        drafts = f", {len(case.rounds)} draft(s) and critiques" if case.rounds else ""
        await ctx.emit(
            "handed-off",
            f"{handoff.id} to {handoff.queue}: {why} (with the ticket, route{drafts})",
        )
        text = (
            f"Hi {ticket.customer},\n\nThanks for your message. A person from our support "
            f"team has your case ({handoff.id}) with everything we know so far, and will "
            "reply to you directly."
        )
        return Resolution(
            ticket_id=ticket.id,
            status="escalated",
            team=case.team or "escalation",
            text=text,
            rounds=len(case.rounds),
            score=max((r.score for r in case.rounds), default=0.0),
            handoff=handoff,
            note=why,
        )

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
