"""The small corpus shipped with the mesh (``corpus/<id>.md``: a ``# Title`` line, then
the text), and the labels a report gives its sources.

Example:
    >>> documents()["kafka"].title
    'Apache Kafka'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from services.research.wire import Finding, Source

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def sentences(self) -> list[str]:
        return [s.strip() for s in _SENTENCE_END.split(self.text) if s.strip()]


@cache
def documents() -> dict[str, Document]:
    """Every document of the corpus, by id (its file name without ``.md``)."""
    found: dict[str, Document] = {}
    folder = resources.files("services.research") / "corpus"
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".md"):
            continue
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        title = lines[0].lstrip("# ").strip()
        text = " ".join(line.strip() for line in lines[1:] if line.strip())
        found[path.name.removesuffix(".md")] = Document(path.name.removesuffix(".md"), title, text)
    return found


def words(text: str) -> set[str]:
    """Lower-case words of four letters or more (a rough filter of content words)."""
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 4}


def distinct(findings: list[Finding]) -> list[Finding]:
    """The findings without repeats (two sub-questions answered from the same sentences)."""
    seen: set[str] = set()
    kept = []
    for finding in findings:
        if finding.text not in seen:
            seen.add(finding.text)
            kept.append(finding)
    return kept


def sources_of(findings: list[Finding]) -> list[Source]:
    """The distinct sources of the findings, in order of first use."""
    seen: dict[str, Source] = {}
    for finding in findings:
        for source in finding.sources:
            seen.setdefault(source.id, source)
    return list(seen.values())


def labels(findings: list[Finding]) -> dict[str, str]:
    """Each source's label in a report: ``S1``, ``S2``, ... in order of first use."""
    return {s.id: f"S{n}" for n, s in enumerate(sources_of(findings), start=1)}
