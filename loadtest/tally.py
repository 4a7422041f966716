"""A steady load of tasks for runs that break a server while it goes on (the restart
fault tests, ``make restarts``'s scenario).

Each task starts its own workflow at the ``tally`` agent, whose handler counts its own runs
in the workflow's memory (``runs``). The sender publishes every task until the stream has
stored it, sending the same envelope again after an error (same id: the stream keeps one,
by ``Nats-Msg-Id``), as any publisher must when a server goes away mid-publish. A task is
*acknowledged* once the stream has stored it; the tests check that every acknowledged task
ran, and ran once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from jetmesh import Agent, Context, MeshClient, MeshSettings, WorkingMemory
from jetmesh.ingress import ingress_task

TALLY = "tally"
SEND_TIMEOUT_S = 2.0
SEND_FOR_S = 60.0
"""How long one task is sent again before the test gives up on it."""


class Tally(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Tally/1"

    n: int


def tally_agent(*, pause_s: float = 0.01, concurrency: int = 16) -> Agent:
    """``tally``: pauses (so the load lasts), then adds one to ``runs`` in its memory."""
    agent = Agent(TALLY, concurrency=concurrency, description="counts its own runs")

    @agent.handler
    async def tally(msg: Tally, ctx: Context) -> Tally:
        await asyncio.sleep(pause_s)
        await ctx.memory.update("runs", int, lambda n: (n or 0) + 1)
        return msg

    return agent


agent = tally_agent(concurrency=32)
"""For agent processes: ``jetmesh run loadtest.tally:agent``."""


async def send_until_stored(client: MeshClient, token: str, n: int) -> tuple[str, int]:
    """Send task ``n`` until the stream acknowledges it; (workflow, send attempts)."""
    task = await ingress_task(client, TALLY, Tally(n), token=token)
    attempts, give_up = 0, time.monotonic() + SEND_FOR_S
    while True:
        attempts += 1
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await client.send_task(task)
            return task.workflow, attempts
        except Exception:  # the server is away: the same task again, stored once
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)


async def send_load(
    client: MeshClient, token: str, count: int, *, in_flight: int = 32
) -> list[tuple[str, int]]:
    """Send ``count`` tasks, ``in_flight`` at a time, each until it is stored."""
    room = asyncio.Semaphore(in_flight)

    async def one(n: int) -> tuple[str, int]:
        async with room:
            return await send_until_stored(client, token, n)

    return await asyncio.gather(*(one(n) for n in range(count)))


async def runs_of(redis: Redis, settings: MeshSettings, workflows: Sequence[str]) -> list[int]:
    """How many times the handler ran for each workflow (0: not yet)."""
    async with redis.pipeline(transaction=False) as pipe:
        for workflow in workflows:
            memory = WorkingMemory(redis, settings.subject_prefix, workflow, TALLY)
            pipe.hget(memory.key("runs"), "d")
        raw = await pipe.execute()
    return [0 if r is None else int(r) for r in raw]


async def wait_all_ran(
    redis: Redis, settings: MeshSettings, workflows: Sequence[str], *, timeout: float = 60.0
) -> list[int]:
    """Poll until every workflow's handler has run (or ``timeout``); the run counts."""
    give_up = time.monotonic() + timeout
    while True:
        runs = await runs_of(redis, settings, workflows)
        if all(runs) or time.monotonic() > give_up:
            return runs
        await asyncio.sleep(0.2)
