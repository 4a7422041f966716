"""loop_writer: the producer of the critic-loop shape; drafts round ``n`` of a brief as
``draft n: <brief>`` (:class:`~jetmesh.patterns.DraftRequest` in,
:class:`~jetmesh.patterns.Draft` out).

Serve it with ``jetmesh run jetmesh.load.shapes.loop_writer:agent``.
"""

from __future__ import annotations

from ...patterns import Draft, DraftRequest
from ...runtime import Agent

__all__ = ["ROLE", "agent", "draft_text"]

ROLE = "loop_writer"

agent = Agent(ROLE, description="drafts a brief, round after round")


def draft_text(brief: str, number: int) -> str:
    """The draft of round ``number``."""
    return f"draft {number}: {brief}"


@agent.handler
async def write(req: DraftRequest) -> Draft:
    """This round's draft."""
    return Draft(draft_text(req.brief, req.round))
