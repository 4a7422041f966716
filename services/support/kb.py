"""kb: the knowledge base. Ranks a team's articles against a ticket with ``ctx.model``
(``task: rank``) and answers the best ones. Scope ``kb:read`` (the caller's and its own)."""

from __future__ import annotations

import re

import msgspec

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from services.support.knowledge import articles
from services.support.scopes import KB_READ, permitted, refusal
from services.support.wire import Article, KbHits, KbQuery

_RANKED = re.compile(r"^(\S+)\s+([0-9.]+)\s*$")


def build() -> Agent:
    """The ``kb`` role."""
    agent = Agent(
        "kb", scopes=[KB_READ], description="ranks knowledge-base articles (scope kb:read)"
    )

    @agent.handler
    async def lookup(query: KbQuery, ctx: Context) -> KbHits:
        if not permitted(ctx, agent, KB_READ):
            why = refusal(ctx, agent, KB_READ)
            await ctx.emit("scope-refused", why)
            return KbHits(articles=[], refused=why)
        known = {a.id: a for a in articles(query.team)}
        if not known:
            return KbHits(articles=[])
        docs = "\n".join(f"doc {a.id}: {a.title}. {a.body}" for a in known.values())
        reply = await ctx.model.complete(
            f"{query.text}\n\n{docs}",
            system=f"task: rank\ntop: {query.limit}\nAnswer one '<id> <score>' line per document.",
            max_tokens=16 * query.limit,
        )
        hits: list[Article] = []
        for line in reply.text.splitlines():
            found = _RANKED.match(line.strip())
            if found and found.group(1) in known and len(hits) < query.limit:
                score = float(found.group(2))
                hits.append(msgspec.structs.replace(known[found.group(1)], score=score))
        return KbHits(articles=hits)

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
