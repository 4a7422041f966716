"""``ctx.model.complete(..., stream=True)`` on the mesh with an HTTP provider (the local fake
API): the provider's deltas go to the caller as the task's chunks, the reply is journaled
and accounted as without streaming, and a re-run from the journal neither asks nor streams
again."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.runtime.model_steps import FROM_JOURNAL
from jetmesh.runtime.streaming import stream_request
from tests.harness.mesh import Mesh, kinds
from tests.models.fake_server import ANTHROPIC_PATH, OPENAI_PATH, FakeModelServer, stream_words

pytestmark = pytest.mark.integration


class Prompt(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Prompt/1"

    text: str


class Said(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.ModelSaid/1"

    text: str
    model: str


def speaker(*, fail_first: bool = False) -> Agent:
    agent = Agent("speaker")

    @agent.handler
    async def speak(prompt: Prompt, ctx: Context) -> Said:
        reply = await ctx.model.complete(prompt.text, stream=True)
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("after the model's stream")
        return Said(reply.text, reply.model)

    return agent


@pytest.mark.parametrize(
    ("provider", "path", "model"),
    [
        ("openai", OPENAI_PATH, "gpt-4o-mini-2024-07-18"),
        ("anthropic", ANTHROPIC_PATH, "gpt-4o-mini-20241022"),
    ],
)
async def test_an_http_model_streams_to_the_caller_and_is_asked_once(
    mesh: Mesh, model_server: FakeModelServer, provider: str, path: str, model: str
) -> None:
    base = model_server.openai_url if provider == "openai" else model_server.url
    mesh.configure(
        model_provider=provider,
        model_base_url=base,
        model_api_key="sk-test",
        model_name="gpt-4o-mini",
        retry_backoff_s=(0.05,),
    )
    await mesh.start_replicas(speaker(fail_first=True))
    client = await mesh.ingress()
    call = stream_request(
        client, "speaker", Prompt("stream me please"), token=mesh.token(), returns=Said
    )
    chunks = [chunk async for chunk in call]
    said = await call.result()
    assert said == Said("echo: stream me please", model)
    assert [c.value for c in chunks] == stream_words("echo: stream me please")
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert {c.step for c in chunks} == {"speaker/model.1"}
    assert model_server.count(path) == 1, "the re-run took the reply from the journal"
    assert model_server.requests[0].body["stream"] is True

    logged = await mesh.wait_events(
        call.workflow, lambda got: len(kinds(got, ev.MODEL)) == 2 and bool(kinds(got, "completed"))
    )
    first, again = [e.event for e in kinds(logged, ev.MODEL)]
    assert (first.tokens_in, first.tokens_out) == (3, 4)  # from the stream's usage
    assert again.detail == FROM_JOURNAL
    assert sorted(int(e.event.key) for e in kinds(logged, ev.CHUNK)) == [0, 1, 2, 3]
