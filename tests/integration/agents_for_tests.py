"""Agents for integration tests, importable by ``jetmesh run`` child processes as
``tests.integration.agents_for_tests:agent`` (run from the repository root).

A worker answers each :class:`Job` with :class:`Done`, naming who handled it: ``by`` is the
process id for the process-level ``agent``, or a label for in-process replicas.
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from jetmesh import Agent, Context

WORKER = "worker"


class Job(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Job/1"

    id: int
    sleep_s: float = 0.0


class Done(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Done/1"

    id: int
    by: str
    attempt: int


def worker_agent(by: str | None = None, *, concurrency: int = 8) -> Agent:
    """A ``worker`` that sleeps ``job.sleep_s`` and answers as ``by`` (default: its pid)."""
    agent = Agent(WORKER, concurrency=concurrency, description="test worker")

    @agent.handler
    async def work(job: Job, ctx: Context) -> Done:
        if job.sleep_s:
            await asyncio.sleep(job.sleep_s)
        return Done(job.id, by or str(os.getpid()), ctx.attempt)

    return agent


agent = worker_agent()
