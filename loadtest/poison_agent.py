"""The poison scenarios' agent: it fails on every delivery of a poison item and returns
the others as they came.

A poison item (``{"n": 7, "poison": true}``) makes the handler raise each time it is
delivered: the task is retried with the mesh's backoff until ``max_deliver``, then
dead-lettered, and its caller gets the error. The scenarios ``poison-baseline`` and
``poison`` (loadtest/scenarios/) measure what that costs the other items.

    jetmesh run loadtest.poison_agent:agent
"""

from __future__ import annotations

import msgspec

from jetmesh import Agent

__all__ = ["ROLE", "Item", "agent"]

ROLE = "poison_agent"
"""The agent's role (the module's name, as a load scenario's ``[mesh]`` names its roles)."""


class Item(msgspec.Struct, frozen=True):
    """One item to handle; a poison one cannot be."""

    __mesh_type__ = "bench.Item/1"

    n: int
    poison: bool = False


agent = Agent(ROLE, description="fails on poison items, returns the others")


@agent.handler
async def handle(item: Item) -> Item:
    """The item as it came.

    Raises:
        ValueError: ``item`` is poison (on every delivery).
    """
    if item.poison:
        raise ValueError(f"item {item.n} is poison")
    return item
