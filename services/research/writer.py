"""writer: drafts the report from the findings with ``ctx.model`` (``task: report``), and
revises it with the reviewer's critique: the sources it asks for, the points it misses."""

from __future__ import annotations

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from services.research.corpus import distinct, labels, sources_of
from services.research.researcher import strip_method
from services.research.reviewer import missing_points
from services.research.wire import ReportDraft, WriteRequest


def sources_section(req: WriteRequest) -> str:
    named = labels(req.findings)
    lines = [f"[{named[s.id]}] {s.title} (corpus: {s.id})" for s in sources_of(req.findings)]
    return "## Sources\n" + "\n".join(lines)


def build() -> Agent:
    """The ``writer`` role."""
    agent = Agent("writer", description="drafts and revises the report")

    @agent.handler
    async def write(req: WriteRequest, ctx: Context) -> ReportDraft:
        if req.round > 1 and req.previous:
            return ReportDraft(text=revise(req))
        findings = "\n".join(f"finding: {f.text}" for f in distinct(req.findings))
        reply = await ctx.model.complete(
            findings,
            system=f"task: report\ntitle: Report: {req.question}\nquestion: {req.question}",
            max_tokens=1200,
        )
        text = strip_method(reply.text)
        if req.gaps:
            text += "\n\n## Not covered\n" + "\n".join(f"- {gap}" for gap in req.gaps)
        return ReportDraft(text=text)

    return agent


def revise(req: WriteRequest) -> str:
    """The previous draft with what the critique says it lacks."""
    text = req.previous
    points = missing_points(req.critique)
    if any("source" in p.lower() for p in points) and "## Sources" not in text:
        text += "\n\n" + sources_section(req)
    others = [p for p in points if "source" not in p.lower()]
    if others:
        text += "\n\n## Open points\n" + "\n".join(f"- {p}" for p in others)
    return text


agent = build()

if __name__ == "__main__":
    run_forever([agent])
