"""loop_critic: the critic of the critic-loop shape. It scores round ``n`` as
``n / (n + 1)``, a score that rises round by round, so a threshold of
``round_score(k)`` approves round ``k`` and no earlier one
(:class:`~jetmesh.patterns.ReviewRequest` in, :class:`~jetmesh.patterns.Review` out).

Serve it with ``jetmesh run jetmesh.load.shapes.loop_critic:agent``.
"""

from __future__ import annotations

from ...patterns import Review, ReviewRequest
from ...runtime import Agent

__all__ = ["ROLE", "agent", "round_score"]

ROLE = "loop_critic"

agent = Agent(ROLE, description="scores each round's draft higher than the last")


def round_score(number: int) -> float:
    """The score of round ``number``: ``number / (number + 1)``."""
    return number / (number + 1)


@agent.handler
async def review(req: ReviewRequest) -> Review:
    """The round's score, and a critique until it reaches the threshold."""
    score = round_score(req.round)
    if score >= req.threshold:
        return Review(score)
    return Review(score, f"round {req.round}: {score:.2f} < {req.threshold:.2f}, once more")
