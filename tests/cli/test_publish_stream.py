"""``jetmesh publish --stream`` prints a role's chunks as they come, then the result;
``jetmesh events`` counts them per step instead of a line each."""

from __future__ import annotations

import re

import msgspec
import pytest

from jetmesh import Agent, Context, Reject
from tests.harness.mesh import Mesh, jetmesh

pytestmark = pytest.mark.integration


class Say(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Say/1"

    text: str


class Said(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Said/1"

    words: int


def speaker() -> Agent:
    agent = Agent("speaker")

    @agent.handler
    async def speak(say: Say, ctx: Context) -> Said:
        words = say.text.split()
        for word in words:
            if word == "stop":
                raise Reject("told to stop")
            await ctx.stream(f"{word} ")
        await ctx.stream({"done": len(words)})
        return Said(len(words))

    return agent


WORKFLOW = re.compile(r"workflow ([0-9A-Z]{26})")


async def test_publish_stream_prints_the_chunks_then_the_result(mesh: Mesh) -> None:
    await mesh.start_replicas(speaker())
    code, out, err = await jetmesh(
        mesh, "publish", "speaker", '{"text": "to be or not"}', "--type", "test.Say/1", "--stream"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "to be or not "
    assert lines[1] == '{"done":4}'
    assert '"words": 4' in out
    assert out.index("to be") < out.index('"words"')
    workflow = WORKFLOW.search(out)
    assert workflow is not None
    code, tree, err = await jetmesh(mesh, "events", workflow.group(1))
    assert code == 0, err
    assert tree.count("streamed 5 chunks") == 1
    assert "chunk:" not in tree


async def test_publish_stream_shows_what_came_before_a_failure(mesh: Mesh) -> None:
    await mesh.start_replicas(speaker())
    code, out, err = await jetmesh(
        mesh, "publish", "speaker", '{"text": "go on stop"}', "--type", "test.Say/1", "--stream"
    )
    assert code != 0
    assert out.startswith("go on ")
    assert "told to stop" in err
    assert WORKFLOW.search(err) is not None
