"""Streaming partial results on real servers: ``ctx.stream`` in a handler, the caller's
``ctx.call(..., stream=True)`` and an ingress's :func:`stream_request`, chunks stored in the
workflow's log and read back from any index, a redelivered task that streams again, and
chunks forged by another role."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jetmesh import Agent, Context, MeshClient, Oversized
from jetmesh import events as ev
from jetmesh.runtime.model_steps import FROM_JOURNAL
from jetmesh.runtime.streaming import Chunk, read_chunks, stream_request
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ask/1"

    text: str


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Answer/1"

    text: str
    streamed: int


class Relayed(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Relayed/1"

    chunks: list[str]
    indexes: list[int]
    answer: str


class Writers:
    """A ``writer`` that streams its words, a ``relay`` that calls it streaming, and a
    ``flaky`` writer that fails after two chunks on its first attempt."""

    def __init__(self) -> None:
        self.writer = Agent("writer")
        self.relay = Agent("relay")
        self.flaky = Agent("flaky")
        self.tasks: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.sent: list[bool] = []

        @self.writer.handler
        async def write(ask: Ask, ctx: Context) -> Answer:
            self.tasks.append(ctx.task.id)
            self.started.set()
            words = ask.text.split()
            for word in words[:1]:
                await ctx.stream(word)
            await self.release.wait()
            for word in words[1:]:
                await ctx.stream(word)
            return Answer(ask.text.upper(), len(words))

        @self.relay.handler
        async def relay(ask: Ask, ctx: Context) -> Relayed:
            call = ctx.call("writer", ask, returns=Answer, stream=True)
            got = [chunk async for chunk in call]
            answer = await call.result()
            return Relayed([c.value for c in got], [c.index for c in got], answer.text)

        @self.flaky.handler
        async def flaky(ask: Ask, ctx: Context) -> Answer:
            run = f"r{ctx.attempt}"
            for word in ask.text.split():
                self.sent.append(await ctx.stream(f"{word}-{run}"))
                if ctx.attempt == 1 and len(self.sent) == 2:
                    raise RuntimeError("crashed mid-stream")
            return Answer(run, len(ask.text.split()))


@pytest.fixture
def writers() -> Writers:
    return Writers()


async def writer_ended(mesh: Mesh, workflow: str) -> None:
    """Until the writer's ``completed`` event is stored: its chunks are stored by then
    (the reply comes before it)."""
    await mesh.wait_events(
        workflow, lambda log: any(e.event.agent == "writer" for e in kinds(log, "completed"))
    )


async def collect(call: object) -> list[Chunk]:
    return [chunk async for chunk in call]  # type: ignore[attr-defined]


async def test_chunks_arrive_in_order_once_then_the_typed_result(
    mesh: Mesh, writers: Writers
) -> None:
    await mesh.start_replicas(writers.writer)
    ingress = await mesh.ingress()
    call = stream_request(
        ingress, "writer", Ask("one two three four"), token=mesh.token(), returns=Answer
    )
    chunks = await collect(call)
    assert [(c.index, c.value, c.type) for c in chunks] == [
        (0, "one", "str"),
        (1, "two", "str"),
        (2, "three", "str"),
        (3, "four", "str"),
    ]
    assert await call.result() == Answer("ONE TWO THREE FOUR", 4)
    assert call.feed.dropped == 0
    await writer_ended(mesh, call.workflow)
    stored = await read_chunks(ingress, call.workflow, step="writer", agent="writer")
    assert [(c.index, c.value) for c in stored] == [(c.index, c.value) for c in chunks]


async def test_a_reader_resumes_after_the_last_index_it_saw(mesh: Mesh, writers: Writers) -> None:
    await mesh.start_replicas(writers.writer)
    ingress = await mesh.ingress()
    call = stream_request(ingress, "writer", Ask("a b c d e"), token=mesh.token(), returns=Answer)
    await call.result()
    await ingress.flush_events()
    await writer_ended(mesh, call.workflow)
    later = await read_chunks(ingress, call.workflow, step="writer", agent="writer", after=2)
    assert [(c.index, c.value) for c in later] == [(3, "d"), (4, "e")]
    none = await read_chunks(ingress, call.workflow, step="writer", agent="writer", after=4)
    assert none == []


async def test_a_handler_takes_a_streamed_call_then_its_result(
    mesh: Mesh, writers: Writers
) -> None:
    await mesh.start_replicas(writers.writer)
    await mesh.start_replicas(writers.relay)
    await mesh.ingress()
    relayed = await (await mesh.ingress()).request(
        "relay", Ask("x y z"), token=mesh.token(), returns=Relayed
    )
    assert relayed == Relayed(["x", "y", "z"], [0, 1, 2], "X Y Z")


async def test_a_caller_that_does_not_stream_gets_its_reply(mesh: Mesh, writers: Writers) -> None:
    """The chunks sent to a caller that takes none are dropped, not dead-lettered."""
    await mesh.start_replicas(writers.writer)
    ingress = await mesh.ingress()
    answer = await ingress.request("writer", Ask("p q"), token=mesh.token(), returns=Answer)
    assert answer == Answer("P Q", 2)
    assert await mesh.dead_letters("cli") == []


async def test_a_redelivered_task_does_not_store_or_send_a_chunk_twice(mesh: Mesh) -> None:
    """The first attempt streams two chunks and fails; the second streams four: indexes 0
    and 1 are the first run's (skipped by the re-run), 2 and 3 the re-run's."""
    mesh.configure(retry_backoff_s=(0.05,))
    writers = Writers()
    await mesh.start_replicas(writers.flaky)
    ingress = await mesh.ingress()
    call = stream_request(ingress, "flaky", Ask("a b c d"), token=mesh.token(), returns=Answer)
    chunks = await collect(call)
    assert [(c.index, c.value) for c in chunks] == [
        (0, "a-r1"),
        (1, "b-r1"),
        (2, "c-r2"),
        (3, "d-r2"),
    ]
    assert await call.result() == Answer("r2", 4)  # the result is the re-run's
    assert writers.sent == [True, True, False, False, True, True]
    logged = await mesh.wait_events(
        call.workflow, lambda log: len(kinds(log, ev.CHUNK)) >= 4 and bool(kinds(log, "completed"))
    )
    stored = kinds(logged, ev.CHUNK)
    assert sorted(int(e.event.key) for e in stored) == [0, 1, 2, 3]  # each stored once
    assert [e.event.attempt for e in stored] == [1, 1, 2, 2]


async def test_a_chunk_forged_by_another_role_is_dropped_and_dead_lettered(
    mesh: Mesh, writers: Writers
) -> None:
    writers.release.clear()
    await mesh.start_replicas(writers.writer)
    ingress = await mesh.ingress()
    call = stream_request(ingress, "writer", Ask("real words"), token=mesh.token(), returns=Answer)
    first = await anext(aiter(call))
    assert (first.index, first.value) == (0, "real")
    task = writers.tasks[0]
    intruder = MeshClient(mesh.settings, mesh.identity("intruder"), roots=mesh.roots)
    await intruder.start()
    try:
        forged = ev.Event(
            kind=ev.CHUNK,
            agent="intruder",
            at=0.0,
            task=task,
            step="writer",
            key="1",
            body=ev.EventPayload(type="str", value=msgspec.Raw(b'"forged"')),
        )
        live = intruder.envelope(
            kind="reply",
            workflow=call.workflow,
            to="cli",
            body=forged,
            caller=mesh.token(),
            parent=task,
            step="writer",
            type_=ev.EVENT_TYPE,
        )
        await intruder.send_reply(live, ingress.reply_subject)
        await intruder.emit(call.workflow, forged, caller=mesh.token(), parent=task)
        await intruder.flush_events()
        letters = await mesh.wait_dead_letters("cli", "forged-reply")
        assert len(letters) == 1
        assert "signed by intruder" in letters[0].detail
    finally:
        await intruder.close()
    writers.release.set()
    rest = await collect(call)
    assert [(c.index, c.value) for c in rest] == [(1, "words")]
    await call.result()
    await writer_ended(mesh, call.workflow)
    stored = await read_chunks(ingress, call.workflow, step="writer", agent="writer")
    assert [c.value for c in stored] == ["real", "words"]  # the forged one is not read


async def test_a_streamed_model_call_is_not_streamed_again_from_the_journal(mesh: Mesh) -> None:
    """The model's output streams word by word; the task fails after it and runs again:
    the reply comes from the journal, its chunks are not sent again, and the chunk after
    it keeps its index."""
    mesh.configure(retry_backoff_s=(0.05,))
    agent = Agent("author")
    details: list[str] = []

    @agent.handler
    async def author(ask: Ask, ctx: Context) -> Answer:
        reply = await ctx.model.complete(f"task: plan\n{ask.text}", stream=True)
        if ctx.attempt == 1:
            raise RuntimeError("after the model")
        await ctx.stream("done")
        details.append(reply.text)
        return Answer(reply.text, 0)

    await mesh.start_replicas(agent)
    ingress = await mesh.ingress()
    call = stream_request(
        ingress, "author", Ask("How do we ship it?"), token=mesh.token(), returns=Answer
    )
    chunks = await collect(call)
    answer = await call.result()
    assert "".join(c.value for c in chunks[:-1]) == answer.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].value == "done"
    assert {c.step for c in chunks[:-1]} == {"author/model.1"}
    logged = await mesh.wait_events(
        call.workflow, lambda log: len(kinds(log, ev.MODEL)) >= 2 and bool(kinds(log, "completed"))
    )
    assert [e.event.detail for e in kinds(logged, ev.MODEL)] == ["", FROM_JOURNAL]
    stored = sorted(int(e.event.key) for e in kinds(logged, ev.CHUNK))
    assert stored == list(range(len(chunks)))


async def test_a_call_answered_from_the_journal_yields_the_stored_chunks(mesh: Mesh) -> None:
    """The caller fails after its streamed call and runs again: the call's reply comes from
    its journal, and its chunks from the log, as the callee stored them."""
    mesh.configure(retry_backoff_s=(0.05,))
    writers = Writers()
    relay = Agent("relay")
    seen: list[tuple[int, list[tuple[int, str]]]] = []

    @relay.handler
    async def again(ask: Ask, ctx: Context) -> Relayed:
        call = ctx.call("writer", ask, returns=Answer, stream=True)
        got = [chunk async for chunk in call]
        seen.append((ctx.attempt, [(c.index, c.value) for c in got]))
        answer = await call.result()
        if ctx.attempt == 1:
            await ctx.mesh.flush_events()
            raise RuntimeError("after the call")
        return Relayed([c.value for c in got], [c.index for c in got], answer.text)

    await mesh.start_replicas(writers.writer)
    await mesh.start_replicas(relay)
    ingress = await mesh.ingress()
    relayed = await ingress.request("relay", Ask("m n"), token=mesh.token(), returns=Relayed)
    assert relayed == Relayed(["m", "n"], [0, 1], "M N")
    assert seen == [(1, [(0, "m"), (1, "n")]), (2, [(0, "m"), (1, "n")])]
    assert len(writers.tasks) == 1  # the writer ran once


async def test_a_chunk_too_big_for_an_event_is_refused(mesh: Mesh) -> None:
    mesh.configure(max_payload_bytes=4096)
    agent = Agent("big")
    refused: list[str] = []

    @agent.handler
    async def big(ask: Ask, ctx: Context) -> Answer:
        try:
            await ctx.stream("x" * 8192)
        except Oversized as exc:
            refused.append(exc.reason)
        await ctx.stream("small")
        return Answer("ok", 1)

    await mesh.start_replicas(agent)
    ingress = await mesh.ingress()
    call = stream_request(ingress, "big", Ask("-"), token=mesh.token(), returns=Answer)
    chunks = await collect(call)
    assert refused == ["oversized"]
    assert [(c.index, c.value) for c in chunks] == [(0, "small")]  # the refused one took none
    assert await call.result() == Answer("ok", 1)
