"""fanout: sends a request's ``parts`` to the ``fanout_worker`` role in parallel
(:func:`~jetmesh.patterns.fan_out`, fail-fast: a failed part fails the request) and
answers with the parts' texts, in order.

Serve it with ``jetmesh run jetmesh.load.shapes.fanout:agent`` beside
``jetmesh.load.shapes.fanout_worker:agent``; the shipped ``fan-out`` scenario sends to it.
"""

from __future__ import annotations

from ...patterns import fan_out
from ...runtime import Agent
from ...runtime.context import Context
from .fanout_worker import ROLE as WORKER
from .wire import FanOutRequest, Gathered, Part, PartDone

__all__ = ["agent"]

agent = Agent("fanout", description="fans each request out to its parts and gathers them")


@agent.handler
async def fan(req: FanOutRequest, ctx: Context) -> Gathered:
    """Each part's answer, in the order of the parts."""
    parts = [Part(text=req.text, index=n, of=req.parts) for n in range(1, req.parts + 1)]
    done = await fan_out(ctx, WORKER, parts, returns=PartDone)
    return Gathered(parts=[p.text for p in done.values])
