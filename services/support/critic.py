"""critic: scores a draft answer against the ticket with ``ctx.model`` (``task: score``):
one criterion per question or request in the ticket. Speaks the critic-refiner pattern's
wire types (``mesh.ReviewRequest/1`` -> ``mesh.Review/1``), so a critic in another
language can take its place."""

from __future__ import annotations

import re

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from jetmesh.patterns import Review, ReviewRequest

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_SCORE = re.compile(r"^score:\s*([0-9.]+)", re.MULTILINE)
_MISSING = re.compile(r"^missing:\s*(.+?)(?:\s+\([0-9.]+\))?\s*$", re.MULTILINE)


def asks(ticket: str) -> list[str]:
    """The questions and requests of a ticket: its sentences of three words or more."""
    parts = [p.strip() for p in _SENTENCE_END.split(ticket.strip())]
    kept = [p for p in parts if len(p.split()) >= 3]
    return kept or [ticket.strip()]


def critique_points(critique: str) -> list[str]:
    """The points a critique says the draft misses (one per ``missing:`` line)."""
    return [m.group(1) for m in _MISSING.finditer(critique)]


def build() -> Agent:
    """The ``critic`` role."""
    agent = Agent("critic", description="scores a draft answer against the ticket's questions")

    @agent.handler
    async def review(req: ReviewRequest, ctx: Context) -> Review:
        criteria = "\n".join(f"criterion: {ask}" for ask in asks(req.brief))
        reply = await ctx.model.complete(
            f"draft: {req.draft}",
            system=f"task: score\nthreshold: {req.threshold:.2f}\n{criteria}",
            max_tokens=200,
        )
        found = _SCORE.search(reply.text)
        score = float(found.group(1)) if found else 0.0
        missing = [f"missing: {m.group(1)}" for m in _MISSING.finditer(reply.text)]
        return Review(score=score, critique="\n".join(missing))

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
