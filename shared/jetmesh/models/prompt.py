"""The ``key: value`` conventions of a prompt to the offline provider, parsed.

:func:`parse` reads a request's system prompt and user turns into a :class:`Prompt`:
``task:`` picks the rule (:mod:`jetmesh.models.templates`), and each rule reads its own
keys (see :mod:`jetmesh.models.offline` and docs/models.md).

Example:
    >>> from jetmesh.models.base import build_request
    >>> prompt = parse(build_request("refund?", system="task: triage"))
    >>> prompt.task, prompt.text
    ('classify', 'refund?')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from .base import ModelRequest

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
