"""Agents for the trace tests, run as ``jetmesh run tests.harness.traced_agents:desk``,
``...:clerk`` and ``...:toolgate`` (from the repository root, with :data:`POLICY` as the
policy file): the ``desk`` asks the model, looks the question up with the ``lookup`` tool
through the tool gateway, then files it with the ``clerk`` twice: the first filing is
delivered twice (the clerk asks for a retry), the second is for a secret file its caller
may not read (the clerk's scope check refuses it; the desk goes on without it)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from jetmesh import (
    Agent,
    CallFailed,
    Context,
    Credentials,
    MeshSettings,
    Retry,
    ToolCall,
    Toolgate,
    ToolRegistry,
)
from jetmesh.policy import load_policy

SECRET_SCOPE = "files:secret"

POLICY = """
[roles.cli]
ingress = true
calls = ["desk"]

[roles.desk]
calls = ["clerk", "toolgate"]
tools.lookup = {}

[roles.clerk]

[roles.toolgate]
"""


class Question(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Question/1"

    text: str


class Filing(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Filing/1"

    text: str
    secret: bool = False
    retry: bool = False
    """Ask for a second delivery (``Retry``) on the first."""


class Filed(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Filed/1"

    number: int


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Answer/1"

    label: str
    filed: int
    secret_refused: str
    words: int


desk = Agent("desk", description="asks the model, files with the clerk")


@desk.handler
async def answer(question: Question, ctx: Context) -> Answer:
    reply = await ctx.model.complete(
        question.text, system="task: classify\nlabels: billing, technical, product"
    )
    found = await ctx.tool("lookup", {"q": question.text}, returns=dict)
    filed = await ctx.call("clerk", Filing(question.text, retry=True), returns=Filed)
    try:
        await ctx.call("clerk", Filing(question.text, secret=True), returns=Filed)
        refused = ""
    except CallFailed as exc:
        refused = exc.reason
    return Answer(reply.text.splitlines()[0], filed.number, refused, found["words"])


clerk = Agent("clerk", description="files a question; a secret file needs files:secret")


@clerk.handler
async def file(filing: Filing, ctx: Context) -> Filed:
    if filing.retry and ctx.attempt == 1:
        raise Retry(0.1, "the filing cabinet is busy")
    if filing.secret:
        await ctx.require_scope(SECRET_SCOPE, what="a secret file")
    return Filed(len(filing.text))


async def lookup(call: ToolCall) -> dict[str, int]:
    return {"words": len(str(call.args["q"]).split())}


def __getattr__(name: str) -> Any:
    """``toolgate``: the tool gateway with ``lookup``, built when ``jetmesh run`` asks for
    it (it reads the policy file the settings name)."""
    if name != "toolgate":
        raise AttributeError(name)
    settings = MeshSettings()
    assert settings.policy_file is not None, "the test gives the gateway a policy file"
    tools = ToolRegistry()
    tools.add("lookup", lookup, needs_credential=False)
    return Toolgate(load_policy(settings.policy_file), tools, Credentials(None)).agent()


class Stall(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Stall/1"


staller = Agent("staller", description="never finishes: its test kills each of its processes")


@staller.handler
async def stall(_: Stall, ctx: Context) -> Stall:
    await asyncio.Event().wait()
    return Stall()
