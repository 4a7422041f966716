"""The rules and templates behind each ``task`` of the offline provider.

Each function takes the parsed :class:`~jetmesh.models.prompt.Prompt` and returns the
reply's text, ending with a ``method:`` line that names the rule used and the model. No
rule understands language: they count shared word stems, compare hashed bag-of-words
vectors (:mod:`jetmesh.models.text`) and fill templates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Final

from .prompt import Prompt
from .text import content_stems, sentences, similarity, stem, words

LEXICON: Final[dict[str, str]] = {
    "billing": "refund charge charged invoice payment pay paid bill billing price pricing "
    "subscription plan card receipt twice overcharged discount coupon renewal tax money",
    "technical": "error crash crashes bug broken fail failed failure login password install "
    "update upgrade app slow timeout api sync loading freeze reset connect connection outage "
    "exception",
    "product": "feature request roadmap suggestion idea wish integration export import "
    "dark mode support supported improve add would like missing option",
    "account": "account profile email username delete close deactivate gdpr data personal",
    "shipping": "shipping ship delivery deliver delivered package tracking parcel arrive late",
    "security": "security breach phishing hacked suspicious vulnerability 2fa mfa leaked",
    "sales": "quote demo enterprise license seats trial purchase buy sales contract",
}
"""Built-in keywords of common labels, used when a prompt's labels include them (a prompt
adds its own with ``keywords <label>: ...``)."""

_RUBRIC_VERBS = (
    "mention mentions mentioned include includes including address addresses state states "
    "say says explain explains give gives provide provides contain contains cite cites use "
    "uses answer answers draft response reply clearly"
)
RUBRIC_VERBS: Final = frozenset(_RUBRIC_VERBS.split())
"""Words of a rubric criterion that say how, not what: left out of its coverage."""

_QUESTION_LEAD = re.compile(
    r"^(?:what|which|how|why|when|where|who|is|are|does|do|can|should|could|would|will)\b"
    r"(?:\s+(?:is|are|does|do|the|a|an|of|about|to))*\s*",
    re.IGNORECASE,
)
_ASPECT = re.compile(
    r"^(?:the\s+)?(?:trade-?offs|differences|pros and cons|benefits|advantages|drawbacks|"
    r"risks)\s+(?:of|between)\s+",
    re.IGNORECASE,
)
_COMPARE = re.compile(r"\b(?:compare|differ|stack up)\b", re.IGNORECASE)
_SCOPE = re.compile(r"\s(?:for|in|on|when|within|under)\s.+$", re.IGNORECASE)
_SPLIT = re.compile(
    r"\s*(?:,|;|\band\b|\bor\b|\bvs\.?|\bversus\b|\bcompared (?:to|with)\b|\bthen\b)\s*",
    re.IGNORECASE,
)


def answer(prompt: Prompt, model: str) -> str:
    """The reply's text for ``prompt``'s task."""
    rule = RULES.get(prompt.task)
    if rule is None:
        named = f"task {prompt.task!r} is not one of its rules" if prompt.task else "no task"
        return (
            f"{model} is not a language model and has no rule for this prompt ({named}). "
            f"Declare one in the system prompt: task: {' | '.join(RULES)} "
            "(see docs/models.md).\n"
            f"method: none ({model})"
        )
    body, method = rule(prompt)
    return f"{body}\nmethod: {method} ({model})"


def _labels(prompt: Prompt) -> list[str]:
    return [x.strip() for x in re.split(r"[,|]", prompt.get("labels")) if x.strip()]


def classify(prompt: Prompt) -> tuple[str, str]:
    """The label whose keywords the text shares most; ties and no match: the most similar
    label description; nothing at all: ``default:`` (else the last label)."""
    labels = _labels(prompt)
    if not labels:
        return "unknown\nconfidence: 0.00", "no labels given"
    text = prompt.text
    stems = set(content_stems(text))
    spoken = {stem(w): w for w in reversed(words(text))}  # a stem's first word in the text
    described = {ident: value for ident, value in prompt.pairs("label")}
    extra: dict[str, list[str]] = {}
    for ident, value in prompt.pairs("keywords"):
        extra.setdefault(ident, []).append(value)
    scored = []
    for order, label in enumerate(labels):
        vocabulary = " ".join(
            [
                label.replace("-", " ").replace("_", " "),
                LEXICON.get(label.lower(), ""),
                *extra.get(label, []),
                described.get(label, ""),
            ]
        )
        hits = sorted(stems & set(content_stems(vocabulary)))
        scored.append((len(hits), similarity(text, vocabulary), -order, label, hits))
    scored.sort(reverse=True)
    count, sim, _, label, hits = scored[0]
    total = sum(s[0] for s in scored)
    if count:
        matched = ", ".join(spoken.get(h, h) for h in hits)
        confidence, method = count / total, f"keyword rules ({matched})"
    elif sim > 0:
        confidence, method = sim, "hashed bag-of-words similarity to the label descriptions"
    else:
        label = prompt.get("default") or labels[-1]
        confidence, method = 0.0, "default label: no rule matched"
    return f"{label}\nconfidence: {confidence:.2f}", method


def _ranked(
    query: str, docs: list[tuple[str, str]], *, keep_unrelated: bool = False
) -> list[tuple[float, int, str, str]]:
    """Documents by score (shared stems' share of the query, plus embedding cosine), best
    first, ties in their given order; those sharing nothing with the query are left out
    unless ``keep_unrelated``."""
    wanted = set(content_stems(query))
    out = []
    for order, (ident, text) in enumerate(docs):
        overlap = len(wanted & set(content_stems(text))) / len(wanted) if wanted else 0.0
        score = round(0.5 * overlap + 0.5 * max(similarity(query, text), 0.0), 2)
        if score > 0 or keep_unrelated:
            out.append((score, -order, ident or f"#{order + 1}", text))
    out.sort(reverse=True)
    return out


def rank(prompt: Prompt) -> tuple[str, str]:
    """``<id> <score>`` lines, best first, at most ``top``."""
    docs = prompt.pairs("doc") or prompt.pairs("snippet")
    top = int(prompt.number("top", 3))
    lines = [f"{ident} {score:.2f}" for score, _, ident, _ in _ranked(prompt.text, docs)[:top]]
    return "\n".join(
        lines
    ) or "(no document matches)", "shared stems and hashed bag-of-words similarity"


def draft(prompt: Prompt) -> tuple[str, str]:
    """A greeting, the given snippets that best match the question (all of them rank, the
    caller chose them), the best for each ``require:`` point, a closing; without snippets,
    a hand-over template."""
    question = prompt.text or "\n".join(prompt.values("question"))
    snippets = prompt.pairs("snippet")
    ranked = _ranked(question, snippets, keep_unrelated=True)
    chosen = ranked[: int(prompt.number("max_snippets", 2))]
    used = {ident for _, _, ident, _ in chosen}
    uncovered = []
    for point in prompt.values("require"):
        best = next((r for r in _ranked(point, snippets) if r[2] not in used), None)
        if best is None:
            uncovered.append(point)
        else:
            chosen.append(best)
            used.add(best[2])
    customer = prompt.get("customer") or "there"
    team = prompt.get("team") or "support"
    if not chosen:
        body = (
            f"Hi {customer},\n\nThanks for your message. No article in our knowledge base "
            f"answers it yet, so a {team} specialist will follow up with you."
        )
        return body, "template: hand-over (no snippet given)"
    parts = [text.strip() for _, _, _, text in chosen]
    body = f"Hi {customer},\n\n" + " ".join(
        p if p.endswith((".", "!", "?")) else p + "." for p in parts
    )
    body += f"\n\nIf anything is unclear, reply here and the {team} team will help."
    sources = ", ".join(ident for _, _, ident, _ in chosen)
    related = sum(1 for item in chosen if item[0] > 0)
    missing = f"; no snippet covers: {'; '.join(uncovered)}" if uncovered else ""
    return body, (
        f"template draft from snippets {sources} ({related} sharing words with the question)"
        f"{missing}"
    )


def score(prompt: Prompt) -> tuple[str, str]:
    """Each criterion's coverage (share of its stems found in the draft, weighted 0.8) plus
    its embedding cosine with the draft (0.2); met at 0.5; the score is their mean."""
    text = "\n".join(prompt.values("draft")) or prompt.text
    criteria = prompt.values("criterion") + [
        c.strip() for c in prompt.get("rubric").split(";") if c.strip()
    ]
    threshold = prompt.number("threshold", 0.7)
    if not criteria:
        return f"score: 0.00\nverdict: revise\nthreshold: {threshold:.2f}", "no criterion given"
    found = set(content_stems(text))
    lines, total = [], 0.0
    for criterion in criteria:
        wanted = set(content_stems(criterion, drop=RUBRIC_VERBS))
        coverage = len(wanted & found) / len(wanted) if wanted else 0.0
        value = round(0.8 * coverage + 0.2 * max(similarity(text, criterion), 0.0), 2)
        total += value
        lines.append(f"{'met' if value >= 0.5 else 'missing'}: {criterion} ({value:.2f})")
    overall = total / len(criteria)
    verdict = "pass" if overall >= threshold else "revise"
    head = [f"score: {overall:.2f}", f"verdict: {verdict}", f"threshold: {threshold:.2f}"]
    return "\n".join(
        head + lines
    ), "rubric word coverage (0.8) and hashed bag-of-words similarity (0.2)"


def _topic(question: str) -> str:
    return _QUESTION_LEAD.sub("", question.strip()).rstrip("?.! ").strip() or question.strip()


def plan(prompt: Prompt) -> tuple[str, str]:
    """Sub-questions from templates: background on each part of the question (split at
    commas, "and", "or", "vs", "compared to"; a closing "for ..."/"in ..." applies to each
    part), a comparison of the first two parts, evidence and risks of the whole."""
    topic = _ASPECT.sub("", _topic(_COMPARE.sub(" ", prompt.text)))
    topic = re.sub(r"\s+", " ", topic).strip()
    parts = [p for p in (_topic(x) for x in _SPLIT.split(topic)) if content_stems(p)]
    scope = ""
    if len(parts) >= 2:
        found = _SCOPE.search(parts[-1])
        if found is not None:
            scope, parts[-1] = " " + found.group(0).strip(), parts[-1][: found.start()].strip()
    items = [f"Background: what is known about {p}{scope}?" for p in parts[:3]] or [
        f"Background: what is known about {topic}?"
    ]
    if len(parts) >= 2:
        items.append(f"Comparison: how do {parts[0]} and {parts[1]} differ{scope}?")
    else:
        items.append(f"Mechanism: how does {topic} work in practice?")
    items += [
        f"Evidence: which sources or measurements bear on {topic}?",
        f"Risks: what are the limits and open problems of {topic}?",
    ]
    items = items[: max(int(prompt.number("max_items", 4)), 1)]
    lines = [f"{n}. {item}" for n, item in enumerate(items, 1)]
    return "\n".join(lines), "question split at conjunctions, sub-questions from templates"


def _extract(text: str, keep: int) -> list[str]:
    """The ``keep`` sentences with the most frequent stems (per stem), in their order."""
    found = sentences(text)
    counts = Counter(content_stems(text))
    scored = []
    for order, sentence in enumerate(found):
        stems = content_stems(sentence)
        weight = sum(counts[s] for s in stems) / (len(stems) ** 0.5) if stems else 0.0
        scored.append((weight, -order, sentence))
    best = sorted(scored, reverse=True)[:keep]
    return [sentence for _, _, sentence in sorted(best, key=lambda s: -s[1])]


def summarise(prompt: Prompt) -> tuple[str, str]:
    keep = max(int(prompt.number("max_sentences", 3)), 1)
    picked = _extract(prompt.text, keep)
    method = f"extractive: the {keep} sentence(s) with the most frequent words"
    return " ".join(picked) or "(nothing to summarise)", method


def report(prompt: Prompt) -> tuple[str, str]:
    """A Markdown report: title, question, a summary of the findings, the findings."""
    findings = prompt.values("finding") or sentences(prompt.free)
    question = "\n".join(prompt.values("question"))
    title = prompt.get("title") or (f"Report: {_topic(question)}" if question else "Report")
    lines = [f"# {title}", ""]
    if question:
        lines += ["## Question", question, ""]
    summary = _extract(" ".join(f if f.endswith((".", "!", "?")) else f + "." for f in findings), 2)
    lines += ["## Summary", " ".join(summary) or "No findings were given.", ""]
    if findings:
        lines += ["## Findings", *(f"{n}. {f}" for n, f in enumerate(findings, 1)), ""]
    return "\n".join(lines).rstrip(), "report template; summary extracted from the findings"


RULES: Final[dict[str, Callable[[Prompt], tuple[str, str]]]] = {
    "classify": classify,
    "draft": draft,
    "score": score,
    "plan": plan,
    "summarise": summarise,
    "report": report,
    "rank": rank,
}
