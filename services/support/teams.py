"""What billing, technical and product share: look the ticket up in the knowledge base,
draft an answer with ``ctx.model`` (``task: draft``) in a critic loop (``refine`` with the
``critic`` role), and hand the case to ``escalation`` when no draft satisfies the critic.

Example:
    >>> agent = team_agent("technical", SupportSettings())                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from jetmesh import Agent, Context
from jetmesh.patterns import Draft, Refined, Round, critic_role, refine
from services.support.critic import critique_points
from services.support.settings import SupportSettings
from services.support.wire import Case, CaseRound, KbHits, KbQuery, Resolution

_METHOD = "method:"


def answer_text(reply: str) -> str:
    """A model's draft without the offline provider's closing ``method:`` line."""
    lines = reply.rstrip().splitlines()
    while lines and lines[-1].startswith(_METHOD):
        lines.pop()
    return "\n".join(lines).strip()


def sources(hits: KbHits, text: str) -> list[str]:
    """The articles a draft uses: their text, or their id, appears in it."""
    return [a.id for a in hits.articles if a.body in text or a.id in text]


def rounds_of(done: Refined[Draft]) -> list[CaseRound]:
    return [
        CaseRound(round=r.number, draft=r.draft.text, score=r.score, critique=r.critique)
        for r in done.rounds
    ]


async def draft_answer(
    ctx: Context, case: Case, team: str, settings: SupportSettings, *, notes: Sequence[str] = ()
) -> tuple[KbHits, Refined[Draft]]:
    """Ask the knowledge base, then draft and refine until the critic is satisfied or the
    rounds run out. ``notes`` are points the answer must make (a refund's outcome)."""
    ticket = case.ticket
    hits = await ctx.call(
        "kb",
        KbQuery(team=team, text=ticket.text, limit=settings.kb_limit),
        returns=KbHits,
        timeout=settings.call_timeout_s,
    )
    snippets = "\n".join(f"snippet {a.id}: {a.body}" for a in hits.articles)
    required: list[str] = []

    async def produce(previous: Round[Draft] | None) -> Draft:
        if previous is not None:
            required.extend(p for p in critique_points(previous.critique) if p not in required)
        system = "\n".join(
            [
                "task: draft",
                f"customer: {ticket.customer}",
                f"team: {team}",
                "max_snippets: 1",
                *(f"require: {point}" for point in required),
            ]
        )
        reply = await ctx.model.complete(
            f"{ticket.text}\n\n{snippets}".strip(), system=system, max_tokens=400
        )
        text = answer_text(reply.text)
        if notes:
            text = f"{text}\n\n" + "\n".join(notes)
        return Draft(text=text)

    done = await refine(
        ctx,
        producer=produce,
        critic=critic_role(
            ctx, "critic", ticket.text, settings.critic_threshold, timeout=settings.call_timeout_s
        ),
        threshold=settings.critic_threshold,
        max_rounds=settings.max_rounds,
    )
    return hits, done


async def escalate(
    ctx: Context,
    case: Case,
    team: str,
    rounds: list[CaseRound],
    reason: str,
    settings: SupportSettings,
) -> Resolution:
    """Hand the case, with everything known about it, to ``escalation``."""
    return await ctx.call(
        "escalation",
        msgspec.structs.replace(case, rounds=rounds, reason=reason, team=team),
        returns=Resolution,
        timeout=settings.call_timeout_s,
    )


async def resolve(
    ctx: Context, case: Case, team: str, settings: SupportSettings, *, notes: Sequence[str] = ()
) -> Resolution:
    """Answer the case from the knowledge base, or escalate it when the critic approves no
    draft. ``notes`` are sentences the answer must carry (a refund's outcome)."""
    hits, done = await draft_answer(ctx, case, team, settings, notes=notes)
    rounds = rounds_of(done)
    if done.stopped == "max-rounds":
        why = (
            f"the critic approved none of {len(rounds)} draft(s) "
            f"(best score {done.best.score:.2f} < {settings.critic_threshold:.2f})"
        )
        if hits.refused:
            why += f"; knowledge base refused: {hits.refused}"
        return await escalate(ctx, case, team, rounds, why, settings)
    return Resolution(
        ticket_id=case.ticket.id,
        status="answered",
        team=team,
        text=done.draft.text,
        sources=sources(hits, done.draft.text),
        rounds=len(rounds),
        score=done.score,
    )


def team_agent(team: str, settings: SupportSettings) -> Agent:
    """A team role that answers cases from its part of the knowledge base."""
    agent = Agent(team, description=f"drafts a {team} answer in a critic loop")

    @agent.handler
    async def answer(case: Case, ctx: Context) -> Resolution:
        return await resolve(ctx, case, team, settings)

    return agent
