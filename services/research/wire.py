"""Payloads of the research-report mesh (services/research)::

caller --Question--> orchestrator --SubQuestion--> researcher x N   (Finding each)
                                  --WriteRequest--> writer          (ReportDraft)
                                  --CritiqueRequest--> reviewer     (mesh.Review/1)
                     <--Report--
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class Question(msgspec.Struct, frozen=True, kw_only=True):
    """What to research, as it enters the mesh."""

    __mesh_type__ = "research.Question/1"

    text: Text
    max_subquestions: Annotated[int, msgspec.Meta(ge=1, le=8)] = 4


class SubQuestion(msgspec.Struct, frozen=True, kw_only=True):
    """One part of the plan, for a researcher."""

    __mesh_type__ = "research.SubQuestion/1"

    question: str
    """The whole question, for context."""
    index: int
    text: Text


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """A document of the corpus a finding draws on."""

    id: str
    title: str


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """A researcher's answer to one sub-question."""

    __mesh_type__ = "research.Finding/1"

    index: int
    subquestion: str
    text: str
    sources: list[Source] = []


class WriteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To the writer: draft (round 1) or revise the report from the findings."""

    __mesh_type__ = "research.WriteRequest/1"

    question: str
    findings: list[Finding]
    gaps: list[str] = []
    """Sub-questions no researcher answered (a partial report says so)."""
    round: int = 1
    previous: str = ""
    critique: str = ""


class ReportDraft(msgspec.Struct, frozen=True, kw_only=True):
    """The writer's draft, in Markdown."""

    __mesh_type__ = "research.ReportDraft/1"

    text: str


class CritiqueRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To the reviewer: score a draft against the findings; it answers a ``mesh.Review/1``."""

    __mesh_type__ = "research.CritiqueRequest/1"

    question: str
    findings: list[Finding]
    draft: str
    round: int
    threshold: float


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """The orchestrator's answer: the report, its sources, and how it was made."""

    __mesh_type__ = "research.Report/1"

    question: str
    text: str
    """The report, in Markdown."""
    sources: list[Source]
    subquestions: list[str]
    gaps: list[str] = []
    """Sub-questions that could not be researched, with why."""
    partial: bool = False
    rounds: int = 0
    score: float = 0.0
    stopped: Literal["threshold", "max-rounds", "no-findings"] = "threshold"
    """Why the critic loop ended."""
