"""triage: the router. ``ctx.model`` classifies the ticket (``task: classify``) as
billing, technical or product; ``route`` forwards the case to that team, or to
escalation when no class fits, and records a ``routed`` event. A ticket that asks for a
refund goes to billing without asking the model."""

from __future__ import annotations

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from jetmesh.patterns import Classification, Routes, classify_with_model, route
from services.support.settings import SupportSettings
from services.support.wire import Case, Resolution, RouteDecision, Ticket

ROUTES = Routes(
    {"billing": "billing", "technical": "technical", "product": "product"},
    fallback="escalation",
)
"""Class -> team; an unknown class goes to a person through escalation."""
MEMORY_KEY = "route"
"""Working-memory key of the decision (a :class:`RouteDecision`)."""


def build(settings: SupportSettings | None = None) -> Agent:
    """The ``triage`` role."""
    config = settings or SupportSettings()
    agent = Agent(
        "triage",
        description="classifies a ticket (ctx.model) and routes it to a team, or to escalation",
    )

    @agent.handler
    async def triage(ticket: Ticket, ctx: Context) -> Resolution:
        if ticket.refund is not None:
            decided = Classification("billing", "rule: the ticket asks for a refund")
        else:
            decided = await classify_with_model(ctx, ticket.text, ROUTES.labels)
        targets, fallback = ROUTES.pick(decided.label)
        decision = RouteDecision(
            label=decided.label, target=targets[0], reason=decided.reason, fallback=fallback
        )
        await ctx.memory.set(MEMORY_KEY, decision)
        routed = await route(
            ctx,
            Case(ticket=ticket, route=decision),
            ROUTES,
            returns=Resolution,
            classify=lambda _: decided,
            timeout=config.approval_timeout_s + 4 * config.call_timeout_s,
        )
        return routed.result

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
