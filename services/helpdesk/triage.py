"""triage: the router. Classifies a ticket by keywords and forwards it to one team."""

from __future__ import annotations

import msgspec

from jetmesh import Agent, Context, run_forever
from services.helpdesk.knowledge import words
from subjects.helpdesk import Answer, Ticket

agent = Agent("triage", description="routes tickets to billing or technical")

BILLING_WORDS = {"refund", "charge", "charged", "invoice", "payment", "bill", "price", "twice"}


class Route(msgspec.Struct, frozen=True):
    """The routing decision, kept in the workflow's working memory."""

    team: str
    rule: str


def classify(ticket: Ticket) -> str:
    """``billing`` when the ticket speaks of money, else ``technical``."""
    return "billing" if words(ticket.text) & BILLING_WORDS else "technical"


@agent.handler
async def route(ticket: Ticket, ctx: Context) -> Answer:
    team = classify(ticket)
    await ctx.memory.set("route", Route(team=team, rule="keyword rules"))
    await ctx.emit("routed", detail=f"{team}: keyword rules")
    return await ctx.call(team, ticket, returns=Answer)


if __name__ == "__main__":
    run_forever([agent])
