"""billing and technical: draft an answer from the knowledge base. Same code, two roles."""

from __future__ import annotations

from jetmesh import Agent, Context
from subjects.helpdesk import Answer, KbHits, KbQuery, Ticket


def team_agent(team: str) -> Agent:
    agent = Agent(team, description=f"drafts {team} answers")

    @agent.handler
    async def answer(ticket: Ticket, ctx: Context) -> Answer:
        hits = await ctx.call("kb", KbQuery(team=team, text=ticket.text), returns=KbHits)
        if not hits.articles:
            text = f"Thanks {ticket.customer}, a {team} specialist will get back to you."
        else:
            text = f"Hi {ticket.customer}, " + " ".join(a.body for a in hits.articles)
        return Answer(ticket.id, team, text, [a.id for a in hits.articles])

    return agent
