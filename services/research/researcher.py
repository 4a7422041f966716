"""researcher: answers one sub-question from the shipped corpus. ``ctx.model`` ranks the
documents (``task: rank``), then summarises the sentences of the best ones that speak to
the sub-question (``task: summarise``)."""

from __future__ import annotations

import re

from jetmesh import Agent, Context
from jetmesh.cli import run_forever
from services.research.corpus import documents, words
from services.research.settings import ResearchSettings
from services.research.wire import Finding, Source, SubQuestion

_RANKED = re.compile(r"^(\S+)\s+([0-9.]+)\s*$")


def strip_method(text: str) -> str:
    """A reply without the offline provider's closing ``method:`` line."""
    lines = text.rstrip().splitlines()
    while lines and lines[-1].startswith("method:"):
        lines.pop()
    return "\n".join(lines).strip()


FRAMING = frozenset(
    {
        "background", "known", "comparison", "compare", "differ", "evidence", "sources",
        "measurements", "bear", "risks", "limits", "open", "problems", "mechanism", "work",
        "practice", "what", "which", "about", "does",
    }
)  # fmt: skip
"""Words of the plan's framing ("Background: what is known about ..."), not its topic."""
FOCUS_SENTENCES = 4


def topic(question: str) -> str:
    """``question`` without the words of the plan's framing: what to look for."""
    kept = [w for w in question.split() if w.lower().strip("?:,.;") not in FRAMING]
    return " ".join(kept) or question


def focus(question: str, sentences: list[str]) -> list[str]:
    """The sentences that share the most topic words with ``question``, in their order."""
    asked = words(question) - FRAMING
    scored = [(len(words(s) & asked), -n, s) for n, s in enumerate(sentences)]
    best = sorted((x for x in scored if x[0] > 0), reverse=True)[:FOCUS_SENTENCES]
    return [s for _, _, s in sorted(best, key=lambda x: -x[1])] or sentences[:FOCUS_SENTENCES]


def build(settings: ResearchSettings | None = None) -> Agent:
    """The ``researcher`` role."""
    config = settings or ResearchSettings()
    agent = Agent(
        "researcher", scopes=["corpus:read"], description="answers a sub-question from the corpus"
    )

    @agent.handler
    async def research(sub: SubQuestion, ctx: Context) -> Finding:
        docs = documents()
        listing = "\n".join(f"doc {d.id}: {d.title}. {d.text}" for d in docs.values())
        ranked = await ctx.model.complete(
            f"{topic(sub.text)}\n\n{listing}",
            system=f"task: rank\ntop: {config.docs_per_question}\n"
            "Answer one '<id> <score>' line per document.",
            max_tokens=16 * config.docs_per_question,
        )
        chosen = [
            docs[m.group(1)]
            for m in map(_RANKED.match, ranked.text.splitlines())
            if m and m.group(1) in docs
        ][: config.docs_per_question]
        if not chosen:
            return Finding(
                index=sub.index, subquestion=sub.text, text="The corpus has nothing on this."
            )
        text = " ".join(focus(sub.text, [s for d in chosen for s in d.sentences]))
        summary = await ctx.model.complete(
            text, system="task: summarise\nmax_sentences: 2", max_tokens=160
        )
        return Finding(
            index=sub.index,
            subquestion=sub.text,
            text=strip_method(summary.text),
            sources=[Source(id=d.id, title=d.title) for d in chosen],
        )

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
