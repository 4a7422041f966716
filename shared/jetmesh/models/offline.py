"""The offline deterministic provider: keyword rules, a hashed bag-of-words embedding and
text templates. It is not a language model and does not pretend to be one.

It is the default provider (``JETMESH_MODEL_PROVIDER=offline``), so the demo meshes and the
tests run with no network and no key, and the same request always gets the same reply. Its
replies name it (provider ``offline-deterministic``, model
``offline-deterministic/templates-v1``), and each reply's text ends with a ``method:`` line
saying which rule produced it. It costs nothing.

A prompt steers it with ``key: value`` lines (in the system prompt or the user turn):
``task:`` picks the rule, and each rule reads its own keys. The conventions are in
docs/models.md; in short:

==============  ===========================================================================
``task``        what it reads
==============  ===========================================================================
``classify``    ``labels: a, b, c``; optional ``keywords <label>: w1, w2``,
                ``label <label>: description``, ``default: <label>``; the text to classify
``draft``       the question; ``snippet <id>: text`` lines; optional ``customer:``, ``team:``,
                ``max_snippets:``, ``require: <point>``
``score``       ``criterion: <text>`` lines (or ``rubric: a; b``); ``draft: <text>`` or the
                text; optional ``threshold:`` (0.7)
``plan``        the question; optional ``max_items:`` (4)
``summarise``   the text; optional ``max_sentences:`` (3)
``report``      ``finding: <text>`` lines; optional ``title:``, ``question:``
``rank``        the query; ``doc <id>: text`` (or ``snippet``) lines; optional ``top:`` (3)
==============  ===========================================================================

Without ``task:``, the rule is inferred from the keys present (``labels`` -> classify,
``criterion`` -> score, ``snippet`` -> draft, ``doc`` -> rank, ``finding`` -> report).

Token counts are estimates (words x 4/3, rounded up), and ``max_tokens`` cuts the output
by the same estimate; ``temperature`` is ignored.

Example:
    >>> import asyncio
    >>> provider = OfflineProvider()
    >>> reply = asyncio.run(provider.complete(build_request(
    ...     "I was charged twice for my subscription",
    ...     system="task: classify\\nlabels: billing, technical, product")))
    >>> reply.text.splitlines()[0], reply.model
    ('billing', 'offline-deterministic/templates-v1')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from . import templates
from .base import END_TURN, MAX_TOKENS, STOP_SEQUENCE, ModelReply, ModelRequest, build_request
from .text import TOKENS_PER_WORD, estimate_tokens

PROVIDER: Final = "offline-deterministic"
MODEL: Final = "offline-deterministic/templates-v1"

SINGLE_KEYS: Final = frozenset(
    {"task", "labels", "default", "threshold", "max_sentences", "max_items", "max_snippets",
     "top", "title", "customer", "team", "rubric", "method"}
)  # fmt: skip
"""Keys with one value (the last one given wins). ``method`` lines, which the provider's
own replies end with, are read and ignored, so one reply can be fed into the next prompt."""
REPEATED_KEYS: Final = frozenset(
    {"criterion", "snippet", "doc", "finding", "require", "keywords", "label", "question",
     "draft", "text"}
)  # fmt: skip
"""Keys that may be given many times (each value kept, in order)."""
ID_KEYS: Final = frozenset({"snippet", "doc", "keywords", "label"})
"""Keys followed by an id or a label before the colon: ``snippet KB-1: ...``."""
BLOCK_KEYS: Final = frozenset({"snippet", "doc", "finding", "question", "draft", "text"})
"""Keys whose value goes on over the following lines, up to the next key or blank line
(``draft`` and ``text`` also over blank lines)."""

_LINE = re.compile(r"^\s*(?:[-*]\s+)?([A-Za-z_]+)(?:[ \t]+([^\s:]{1,64}))?[ \t]*:[ \t]?(.*)$")
_TASK_ALIASES: Final = {
    "classification": "classify", "route": "classify", "triage": "classify",
    "answer": "draft", "write": "draft", "critique": "score", "critic": "score",
    "grade": "score", "summarize": "summarise", "summary": "summarise",
    "retrieve": "rank", "search": "rank", "decompose": "plan",
}  # fmt: skip
_INFERRED: Final = (
    ("labels", "classify"),
    ("criterion", "score"),
    ("rubric", "score"),
    ("snippet", "draft"),
    ("doc", "rank"),
    ("finding", "report"),
)


@dataclass
class Prompt:
    """What the conventions found in a request."""

    task: str = ""
    single: dict[str, str] = field(default_factory=dict)
    items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Repeated keys: (id, value) in order ("" when the key takes no id)."""
    free: str = ""
    """The last user turn's lines that are not ``key: value`` lines."""

    def get(self, key: str, default: str = "") -> str:
        return self.single.get(key, default)

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.single[key])
        except (KeyError, ValueError):
            return default

    def values(self, key: str) -> list[str]:
        return [value for _, value in self.items.get(key, [])]

    def pairs(self, key: str) -> list[tuple[str, str]]:
        return list(self.items.get(key, []))

    @property
    def text(self) -> str:
        """The subject of the request: the free text, else ``text:`` or ``question:``."""
        return self.free or "\n".join(self.values("text") or self.values("question"))


def parse(request: ModelRequest) -> Prompt:
    """Read the ``key: value`` conventions of ``request`` (system prompt and user turns)."""
    prompt = Prompt()
    users = [m.content for m in request.messages if m.role == "user"]
    for index, text in enumerate([request.system, *users]):
        free = _read(text, prompt)
        if index == len(users):  # the last user turn
            prompt.free = free
    task = prompt.get("task").strip().lower()
    task = _TASK_ALIASES.get(task, task)
    if not task:
        task = next((t for key, t in _INFERRED if key in prompt.items or key in prompt.single), "")
    prompt.task = task
    return prompt


def _read(text: str, prompt: Prompt) -> str:
    """Collect the keys of ``text`` into ``prompt``; returns its other lines."""
    free: list[str] = []
    block: list[str] = []  # the lines of the value being continued
    block_key = ""  # its key ("" when no value is being continued)
    for line in text.splitlines():
        key, ident, value = _key_of(line)
        if key in SINGLE_KEYS:
            prompt.single[key] = value
            block_key = ""
        elif key:
            prompt.items.setdefault(key, []).append((ident, value))
            block, block_key = [value], key if key in BLOCK_KEYS else ""
        elif block_key and (line.strip() or block_key in ("draft", "text")):
            block.append(line.strip())
            entries = prompt.items[block_key]
            entries[-1] = (entries[-1][0], "\n".join(block).strip())
        else:
            block_key = ""
            free.append(line)
    return "\n".join(free).strip()


def _key_of(line: str) -> tuple[str, str, str]:
    """(key, id, value) of a ``key: value`` line with a known key, else ("", "", "")."""
    found = _LINE.match(line)
    if found is None:
        return "", "", ""
    key, ident = found.group(1).lower(), found.group(2) or ""
    known = key in SINGLE_KEYS or key in REPEATED_KEYS
    if not known or (ident and key not in ID_KEYS):
        return "", "", ""
    return key, ident, found.group(3).strip()


class OfflineProvider:
    """The deterministic provider: same request, same reply, no network, no cost."""

    name: Final = PROVIDER

    @property
    def model(self) -> str:
        return MODEL

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Answer by the rule the prompt's ``task`` picks (see the module's docstring)."""
        prompt = parse(request)
        text = templates.answer(prompt, MODEL)
        text, stop_reason = _limit(text, request.max_tokens, request.stop)
        spent = estimate_tokens(request.system) + sum(
            estimate_tokens(m.content) for m in request.messages
        )
        return ModelReply(
            text=text,
            model=MODEL,
            provider=PROVIDER,
            input_tokens=spent,
            output_tokens=estimate_tokens(text),
            stop_reason=stop_reason,
        )

    async def aclose(self) -> None:
        return None


def _limit(text: str, max_tokens: int, stop: tuple[str, ...]) -> tuple[str, str]:
    """``text`` cut at the first stop string, then to ``max_tokens`` (by the estimate)."""
    reason = END_TURN
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text, reason = text[: min(cuts)], STOP_SEQUENCE
    allowed = int(max_tokens / TOKENS_PER_WORD)
    pieces = re.findall(r"\S+\s*", text)
    if len(pieces) > allowed:
        text, reason = "".join(pieces[:allowed]).rstrip(), MAX_TOKENS
    return text, reason


__all__ = ["MODEL", "PROVIDER", "OfflineProvider", "Prompt", "build_request", "parse"]
