"""kb: looks up knowledge-base articles for a team."""

from __future__ import annotations

from jetmesh import Agent, Context, run_forever
from services.helpdesk.knowledge import search
from subjects.helpdesk import KbHits, KbQuery

agent = Agent("kb", scopes=["kb:read"], description="knowledge-base lookup")


@agent.handler
async def lookup(query: KbQuery, ctx: Context) -> KbHits:
    return KbHits(articles=search(query.team, query.text, query.limit))


if __name__ == "__main__":
    run_forever([agent])
