"""reviewer: the research mesh's critic. Scores a draft with ``ctx.model`` (``task:
score``): one criterion per finding (the report must carry it) and one for citing every
source. The score is the weakest criterion's: a report is as good as its worst gap."""

from __future__ import annotations

import re

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from jetmesh.patterns import Review
from services.research.corpus import distinct, labels
from services.research.wire import CritiqueRequest

_SCORE = re.compile(r"^score:\s*([0-9.]+)", re.MULTILINE)
_CRITERION = re.compile(r"^(met|missing):\s*(.+?)\s+\(([0-9.]+)\)\s*$", re.MULTILINE)


def missing_points(critique: str) -> list[str]:
    """The points a critique says the draft misses (``missing:`` lines)."""
    return [m.group(2) for m in _CRITERION.finditer(critique) if m.group(1) == "missing"]


def build() -> Agent:
    """The ``reviewer`` role."""
    agent = Agent("reviewer", description="scores a report draft against the findings")

    @agent.handler
    async def review(req: CritiqueRequest, ctx: Context) -> Review:
        cited = ", ".join(labels(req.findings).values())
        criteria = [f.text for f in distinct(req.findings)] + [f"cites its sources {cited}"]
        reply = await ctx.model.complete(
            f"draft: {req.draft}",
            system=f"task: score\nthreshold: {req.threshold:.2f}\n"
            + "\n".join(f"criterion: {c}" for c in criteria),
            max_tokens=600,
        )
        values = [float(m.group(3)) for m in _CRITERION.finditer(reply.text)]
        overall = _SCORE.search(reply.text)
        score = min(values) if values else float(overall.group(1)) if overall else 0.0
        missing = [m.group(0) for m in _CRITERION.finditer(reply.text) if m.group(1) == "missing"]
        return Review(score=score, critique="\n".join(missing))

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
