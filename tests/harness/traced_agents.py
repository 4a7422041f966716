"""Two agents for the trace tests, run as ``jetmesh run tests.harness.traced_agents:desk``
and ``...:clerk`` (from the repository root): the ``desk`` asks the model, then files the
question with the ``clerk`` twice, once for a secret file its caller may not read (the
clerk's scope check refuses it; the desk goes on without it)."""

from __future__ import annotations

import msgspec

from jetmesh import Agent, CallFailed, Context

SECRET_SCOPE = "files:secret"


class Question(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Question/1"

    text: str


class Filing(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Filing/1"

    text: str
    secret: bool = False


class Filed(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Filed/1"

    number: int


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Answer/1"

    label: str
    filed: int
    secret_refused: str


desk = Agent("desk", description="asks the model, files with the clerk")


@desk.handler
async def answer(question: Question, ctx: Context) -> Answer:
    reply = await ctx.model.complete(
        question.text, system="task: classify\nlabels: billing, technical, product"
    )
    filed = await ctx.call("clerk", Filing(question.text), returns=Filed)
    try:
        await ctx.call("clerk", Filing(question.text, secret=True), returns=Filed)
        refused = ""
    except CallFailed as exc:
        refused = exc.reason
    return Answer(reply.text.splitlines()[0], filed.number, refused)


clerk = Agent("clerk", description="files a question; a secret file needs files:secret")


@clerk.handler
async def file(filing: Filing, ctx: Context) -> Filed:
    if filing.secret:
        await ctx.require_scope(SECRET_SCOPE, what="a secret file")
    return Filed(len(filing.text))
