"""The support mesh's settings: ``JETMESH_SUPPORT_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REFUND_LIMIT_EUR = 100.0
DEFAULT_APPROVAL_TIMEOUT_S = 4 * 3600.0


class SupportSettings(BaseSettings):
    """How the support roles decide; validated when built."""

    model_config = SettingsConfigDict(env_prefix="JETMESH_SUPPORT_", frozen=True)

    refund_limit_eur: Annotated[float, Field(ge=0)] = DEFAULT_REFUND_LIMIT_EUR
    """A refund above this needs a person's approval (``jetmesh approve``)."""
    approval_timeout_s: Annotated[float, Field(gt=0)] = DEFAULT_APPROVAL_TIMEOUT_S
    """How long a refund waits for a person before the case goes to escalation."""
    critic_threshold: Annotated[float, Field(gt=0, le=1)] = 0.6
    """The critic's score a draft must reach."""
    max_rounds: Annotated[int, Field(ge=1, le=10)] = 3
    """Drafts at most; a case whose drafts never reach the threshold goes to escalation."""
    kb_limit: Annotated[int, Field(ge=1, le=10)] = 3
    """Articles a team asks the knowledge base for."""
    call_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Deadline of the calls between roles."""
