"""A re-run of a workflow that streamed (``jetmesh replay --rerun``) streams nothing to
anyone: the log gets no chunk, and a handler that read a streamed call gets the chunks its
callee streamed then, from the history."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.envelope import new_id
from jetmesh.replay import SAME, history, rerun
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration


class Topic(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Topic/1"

    text: str


class Essay(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Essay/1"

    text: str


class Digest(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Digest/1"

    pieces: list[str]
    essay: str


def agents() -> tuple[Agent, Agent]:
    writer, editor = Agent("writer"), Agent("editor")

    @writer.handler
    async def write(topic: Topic, ctx: Context) -> Essay:
        for word in topic.text.split():
            await ctx.stream(word)
        return Essay(topic.text.upper())

    @editor.handler
    async def edit(topic: Topic, ctx: Context) -> Digest:
        call = ctx.call("writer", topic, returns=Essay, stream=True)
        pieces = [chunk.value async for chunk in call]
        return Digest(pieces, (await call.result()).text)

    return writer, editor


async def test_a_rerun_streams_nothing_and_reads_the_recorded_chunks(mesh: Mesh) -> None:
    writer, editor = agents()
    await mesh.start_replicas(writer)
    await mesh.start_replicas(editor)
    client = await mesh.ingress()
    workflow = new_id()
    digest = await client.request(
        "editor", Topic("a b c"), token=mesh.token(), returns=Digest, workflow=workflow
    )
    assert digest == Digest(["a", "b", "c"], "A B C")
    await mesh.tree(workflow, hops=2)
    before = kinds(await mesh.events(workflow), ev.CHUNK)
    assert len(before) == 3

    recorded = await history(client, workflow)
    (write_task,) = [t for t in recorded.tasks() if t.agent == "writer"]
    assert [(c.index, c.value) for c in write_task.chunks] == [(0, "a"), (1, "b"), (2, "c")]

    report = await rerun(recorded, agents(), redis=client.redis, settings=mesh.settings)
    assert [(t.agent, t.status) for t in report.tasks] == [("editor", SAME), ("writer", SAME)]
    await client.flush_events()
    assert len(kinds(await mesh.events(workflow), ev.CHUNK)) == 3  # none added
