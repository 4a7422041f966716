"""orchestrator: plans sub-questions with ``ctx.model`` (``task: plan``), fans them out to
researchers (``fan_out``: a concurrency limit, a deadline each, partial results), then
has the writer draft and the reviewer criticise until the score reaches the threshold
(``refine``), and answers the report with its sources, its gaps and why the loop stopped."""

from __future__ import annotations

import re

from jetmesh import Agent, Context, Failed
from jetmesh.cli import run_forever
from jetmesh.patterns import Review, Round, fan_out, refine
from services.research.corpus import sources_of
from services.research.settings import ResearchSettings
from services.research.wire import (
    CritiqueRequest,
    Finding,
    Question,
    Report,
    ReportDraft,
    SubQuestion,
    WriteRequest,
)

_ITEM = re.compile(r"^\s*\d+[.)]\s+(.+?)\s*$")
PLAN_KEY = "plan"
"""Working-memory key of the sub-questions."""


def plan_items(text: str) -> list[str]:
    """The numbered lines of a plan."""
    return [m.group(1) for m in map(_ITEM.match, text.splitlines()) if m]


def build(settings: ResearchSettings | None = None) -> Agent:
    """The ``orchestrator`` role."""
    config = settings or ResearchSettings()
    agent = Agent(
        "orchestrator",
        description="plans sub-questions, fans out, refines the report with the reviewer",
    )

    @agent.handler
    async def answer(q: Question, ctx: Context) -> Report:
        plan = await ctx.model.complete(
            q.text, system=f"task: plan\nmax_items: {q.max_subquestions}", max_tokens=400
        )
        subs = plan_items(plan.text)[: q.max_subquestions] or [q.text]
        await ctx.memory.set(PLAN_KEY, subs)
        done = await fan_out(
            ctx,
            "researcher",
            [SubQuestion(question=q.text, index=n, text=t) for n, t in enumerate(subs, 1)],
            returns=Finding,
            limit=config.fan_out_limit,
            timeout=config.research_timeout_s,
            on_failure="partial",
        )
        findings = done.values
        gaps = [
            f"{sub} (not researched: {slot.reason})"
            for sub, slot in zip(subs, done.outcomes, strict=True)
            if isinstance(slot, Failed)
        ]
        if not findings:
            return Report(
                question=q.text,
                text="No sub-question could be researched.",
                sources=[],
                subquestions=subs,
                gaps=gaps,
                partial=True,
                stopped="no-findings",
            )

        async def produce(previous: Round[ReportDraft] | None) -> ReportDraft:
            request = WriteRequest(
                question=q.text,
                findings=findings,
                gaps=gaps,
                round=previous.number + 1 if previous else 1,
                previous=previous.draft.text if previous else "",
                critique=previous.critique if previous else "",
            )
            return await ctx.call(
                "writer", request, returns=ReportDraft, timeout=config.call_timeout_s
            )

        async def review(draft: ReportDraft, number: int) -> Review:
            request = CritiqueRequest(
                question=q.text,
                findings=findings,
                draft=draft.text,
                round=number,
                threshold=config.threshold,
            )
            return await ctx.call(
                "reviewer", request, returns=Review, timeout=config.call_timeout_s
            )

        refined = await refine(
            ctx,
            producer=produce,
            critic=review,
            threshold=config.threshold,
            max_rounds=config.max_rounds,
        )
        return Report(
            question=q.text,
            text=refined.draft.text,
            sources=sources_of(findings),
            subquestions=subs,
            gaps=gaps,
            partial=bool(gaps),
            rounds=len(refined.rounds),
            score=refined.score,
            stopped=refined.stopped,
        )

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
