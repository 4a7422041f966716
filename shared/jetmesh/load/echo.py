"""An echo agent for load runs: it answers each task with its body, as it came.

Serve it with ``jetmesh run jetmesh.load.echo:agent``; the shipped ``single-hop`` scenario
sends to it (role ``echo``).
"""

from __future__ import annotations

import msgspec

from ..runtime import Agent

__all__ = ["agent"]

agent = Agent("echo", description="returns each task's body (jetmesh load's single hop)")


@agent.handler
async def echo(body: msgspec.Raw) -> msgspec.Raw:
    """The body, unchanged."""
    return body
