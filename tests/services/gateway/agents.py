"""The agents behind the gateway in its tests: ``echo`` (exposed) and ``other`` (not)."""

from __future__ import annotations

import asyncio

import msgspec

from jetmesh import Agent, Context, Reject


class Shout(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Shout/1"

    text: str
    pause_s: float = 0.0
    words: bool = False
    """Stream the text word by word (``ctx.stream``) before answering."""


class Shouted(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Shouted/1"

    text: str
    caller: str
    tenant: str
    scopes: list[str]


def echo_agent() -> Agent:
    """Upper-cases ``text`` after ``pause_s``, naming its verified caller (with ``words``,
    streaming each upper-cased word first); ``text`` "no" is refused with the typed error
    ``said-no``."""
    agent = Agent("echo", description="shouts back")

    @agent.handler
    async def shout(msg: Shout, ctx: Context) -> Shouted:
        if msg.pause_s:
            await asyncio.sleep(msg.pause_s)
        if msg.text == "no":
            raise Reject("said-no")
        if msg.words:
            for word in msg.text.split():
                await ctx.stream(word.upper())
        caller = ctx.caller
        return Shouted(msg.text.upper(), caller.subject, caller.tenant, sorted(caller.scopes))

    return agent


def other_agent() -> Agent:
    agent = Agent("other", description="not exposed by the gateway")

    @agent.handler
    async def shout(msg: Shout, ctx: Context) -> Shout:
        return msg

    return agent
