"""The agent under test in the hop benchmark: returns what it gets."""

from __future__ import annotations

import msgspec

from jetmesh import Agent

agent = Agent("echo", description="benchmark echo")


class Blob(msgspec.Struct, frozen=True):
    """The benchmark payload."""

    __mesh_type__ = "bench.Blob/1"

    data: str


@agent.handler
async def echo(blob: Blob) -> Blob:
    return blob
