"""An agent whose tasks end every way a metric counts, for ``jetmesh run`` child processes
(``tests.harness.metered_agents:agent``, run from the repository root).

``metered`` answers a :class:`Job`, asks the model for an :class:`Ask` (returning the tokens
the reply counted), fails every delivery of a :class:`Boom` (retried, then given up on as
out of deliveries), rejects a :class:`Refuse` (``Reject``: failed at once) and asks for a
scope nobody granted it on a :class:`Overreach` (denied).
"""

from __future__ import annotations

import msgspec

from jetmesh import Agent, Context, Reject

METERED = "metered"


class Job(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredJob/1"

    id: int


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredAsk/1"

    text: str


class Boom(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredBoom/1"

    id: int


class Refuse(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredRefuse/1"

    id: int


class Overreach(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredOverreach/1"

    id: int


class Done(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.MeteredDone/1"

    id: int
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0


agent = Agent(METERED, description="tasks that complete, call the model or always fail")


@agent.handler
async def work(job: Job, ctx: Context) -> Done:
    return Done(job.id)


@agent.handler
async def ask(question: Ask, ctx: Context) -> Done:
    reply = await ctx.model.complete(question.text, system="task: summarize")
    return Done(0, reply.model, reply.input_tokens, reply.output_tokens)


@agent.handler
async def boom(job: Boom, ctx: Context) -> Done:
    raise RuntimeError(f"boom {job.id} (attempt {ctx.attempt})")


@agent.handler
async def refuse(job: Refuse, ctx: Context) -> Done:
    raise Reject("not-wanted")


@agent.handler
async def overreach(job: Overreach, ctx: Context) -> Done:
    await ctx.require_scope("payments:write", what=f"job {job.id}")
    return Done(job.id)
