"""fanout_worker: the worker of the fan-out shape; answers a part with its number and
the request's text, ``part 2 of 3: hello``.

Serve it with ``jetmesh run jetmesh.load.shapes.fanout_worker:agent``.
"""

from __future__ import annotations

from ...runtime import Agent
from .wire import Part, PartDone

__all__ = ["ROLE", "agent", "part_text"]

ROLE = "fanout_worker"

agent = Agent(ROLE, description="answers one part of a fan-out")


def part_text(part: Part) -> str:
    """What the worker answers for ``part``."""
    return f"part {part.index} of {part.of}: {part.text}"


@agent.handler
async def work(part: Part) -> PartDone:
    """The part, answered."""
    return PartDone(index=part.index, text=part_text(part))
