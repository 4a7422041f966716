"""Agents of the redelivery tests, importable by ``jetmesh run`` child processes as
``tests.harness.redelivery_agents:<name>`` (run from the repository root).

Each records in the workflow's memory how often its handler began (``runs_<job>``) and
which process began it last (``pid_<job>``), so a test can kill the right process and
count the runs that really happened.
"""

from __future__ import annotations

import asyncio
import os

from jetmesh import Agent, Context
from tests.harness.agents import Done, Job

slow = Agent("slow", description="records each run, then works for job.sleep_s")


@slow.handler
async def work(job: Job, ctx: Context) -> Done:
    # the pid first: a test that sees the run counted reads the pid of that run
    await ctx.memory.update(f"pid_{job.id}", int, lambda _: os.getpid())
    await ctx.memory.update(f"runs_{job.id}", int, lambda n: (n or 0) + 1)
    await asyncio.sleep(job.sleep_s)  # the test kills this process here
    return Done(job.id, str(os.getpid()), ctx.attempt)
