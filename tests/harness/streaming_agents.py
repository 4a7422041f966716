"""Agents of the streaming fault tests, importable by ``jetmesh run`` child processes as
``tests.harness.streaming_agents:<name>`` (run from the repository root)."""

from __future__ import annotations

import asyncio
import os

import msgspec

from jetmesh import Agent, Context


class Story(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Story/1"

    words: list[str]
    pause_after: int
    """On its first attempt, the handler streams this many words, records its pid in the
    workflow's memory (``paused``) and waits to be killed."""


class Told(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Told/1"

    attempt: int
    words: int


teller = Agent("teller", description="streams a story word by word, each marked @attempt")


@teller.handler
async def tell(story: Story, ctx: Context) -> Told:
    for i, word in enumerate(story.words):
        await ctx.stream(f"{word}@{ctx.attempt}")
        if ctx.attempt == 1 and i + 1 == story.pause_after:
            await ctx.memory.update("paused", int, lambda _: os.getpid())
            await asyncio.sleep(60)  # the test kills this process here
    return Told(ctx.attempt, len(story.words))
