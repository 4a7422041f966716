"""The research mesh's settings: ``JETMESH_RESEARCH_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ResearchSettings(BaseSettings):
    """How the orchestrator runs a question; validated when built."""

    model_config = SettingsConfigDict(env_prefix="JETMESH_RESEARCH_", frozen=True)

    fan_out_limit: Annotated[int, Field(ge=1, le=64)] = 2
    """Researchers working for one question at once."""
    research_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Deadline of each researcher's call; one that misses it is a gap in the report."""
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.6
    """The reviewer's score a draft must reach."""
    max_rounds: Annotated[int, Field(ge=1, le=10)] = 3
    """Drafts at most."""
    call_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Deadline of the writer's and the reviewer's calls."""
    docs_per_question: Annotated[int, Field(ge=1, le=10)] = 2
    """Corpus documents a researcher reads for one sub-question."""
