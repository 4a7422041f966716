"""Agents for integration tests, importable by ``jetmesh run`` child processes as
``tests.harness.agents:agent`` (run from the repository root).

A worker answers each :class:`Job` with :class:`Done`, naming who handled it: ``by`` is the
process id for the process-level ``agent``, or a label for in-process replicas.
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from jetmesh import Agent, Context, SignalTimeout

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


class Plan(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Plan/1"

    pause_s: float


class Report(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Report/1"

    parts: list[int]
    attempt: int


counter = Agent("counter", description="counts how often each part really runs")


@counter.handler
async def count(job: Job, ctx: Context) -> Done:
    await ctx.memory.update(f"runs_{job.id}", int, lambda n: (n or 0) + 1)
    return Done(job.id, str(os.getpid()), ctx.attempt)


planner = Agent("planner", description="two calls with a pause between them")


@planner.handler
async def plan(p: Plan, ctx: Context) -> Report:
    first = await ctx.call("counter", Job(1), returns=Done)
    await asyncio.sleep(p.pause_s)  # the test kills this process here
    second = await ctx.call("counter", Job(2), returns=Done)
    return Report([first.id, second.id], ctx.attempt)


pauser = Agent("pauser", description="pauses, then performs one side effect through ctx.once")


@pauser.handler
async def pause_then_effect(p: Plan, ctx: Context) -> Report:
    await asyncio.sleep(p.pause_s)  # the test freezes this process here (SIGSTOP)

    async def effect() -> int:
        await ctx.memory.update("effects", int, lambda n: (n or 0) + 1)
        return os.getpid()

    done_by = await ctx.once("effect", effect, returns=int)
    return Report([done_by], ctx.attempt)


class Approval(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Approval/1"

    ok: bool


class Decision(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Decision/1"

    ok: bool
    by: str


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ask/1"

    timeout_s: float


approver = Agent("approver", description="waits for a person's approval signal")


@approver.handler
async def await_approval(ask: Ask, ctx: Context) -> Decision:
    try:
        got = await ctx.wait_for("approval", returns=Approval, timeout=ask.timeout_s)
    except SignalTimeout:
        return Decision(False, "timeout")
    return Decision(got.value.ok, got.caller)
