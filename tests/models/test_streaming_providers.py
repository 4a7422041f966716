"""Streamed model output: the offline provider word by word, the OpenAI-compatible and
Anthropic providers over server-sent events from a local server in their real formats."""

from __future__ import annotations

from typing import Any

import pytest

from jetmesh import ModelError, ModelUnavailable
from jetmesh.models import AnthropicProvider, OfflineProvider, OpenAIProvider, build_request
from jetmesh.models.base import ModelReply, ModelRequest, stream_complete
from tests.models.fake_server import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    SSE,
    FakeModelServer,
    stream_words,
)

FAST = {"backoff_s": 0.01, "timeout_s": 5.0}


def openai(server: FakeModelServer) -> OpenAIProvider:
    return OpenAIProvider(
        model="gpt-4o-mini", api_key="sk-test", base_url=server.openai_url, **FAST
    )


def anthropic(server: FakeModelServer) -> AnthropicProvider:
    return AnthropicProvider(
        model="claude-3-5-haiku", api_key="sk-test", base_url=server.url, **FAST
    )


class Pieces:
    """Collects what a provider hands on."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str) -> None:
        self.seen.append(text)


async def streamed(provider: Any, request: ModelRequest) -> tuple[ModelReply, list[str]]:
    pieces = Pieces()
    try:
        reply = await provider.stream(request, pieces)
    finally:
        await provider.aclose()
    return reply, pieces.seen


async def test_openai_streams_the_deltas_and_reads_usage(model_server: FakeModelServer) -> None:
    request = build_request("tell me a story", max_tokens=40)
    reply, pieces = await streamed(openai(model_server), request)
    assert pieces == stream_words("echo: tell me a story")
    assert reply.text == "echo: tell me a story"
    assert (reply.model, reply.provider, reply.stop_reason) == (
        "gpt-4o-mini-2024-07-18",
        "openai",
        "end_turn",
    )
    assert (reply.input_tokens, reply.output_tokens) == (4, 5)  # from the usage chunk
    (seen,) = model_server.requests
    assert seen.path == OPENAI_PATH
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert seen.headers["accept"] == SSE


async def test_anthropic_streams_text_deltas(model_server: FakeModelServer) -> None:
    request = build_request("hello there", system="be brief")
    reply, pieces = await streamed(anthropic(model_server), request)
    assert pieces == stream_words("echo: hello there")
    assert reply.text == "echo: hello there"
    assert (reply.model, reply.stop_reason) == ("claude-3-5-haiku-20241022", "end_turn")
    assert (reply.input_tokens, reply.output_tokens) == (4, 3)
    (seen,) = model_server.requests
    assert seen.path == ANTHROPIC_PATH
    assert seen.body["stream"] is True


async def test_a_stream_is_retried_until_it_begins(model_server: FakeModelServer) -> None:
    model_server.then(429, headers={"retry-after": "0"}).then(500)
    reply, pieces = await streamed(openai(model_server), build_request("again"))
    assert "".join(pieces) == reply.text == "echo: again"
    assert model_server.count(OPENAI_PATH) == 3


async def test_a_refused_stream_is_not_retried(model_server: FakeModelServer) -> None:
    model_server.then(400)
    with pytest.raises(ModelError):
        await streamed(anthropic(model_server), build_request("x"))
    assert model_server.count() == 1


async def test_a_stream_cut_short_fails_after_what_it_handed_on(
    model_server: FakeModelServer,
) -> None:
    cut = b'data: {"choices":[{"index":0,"delta":{"content":"half"}}],"model":"m"}\n\n'
    model_server.then(200, cut, headers={"content-type": SSE})
    with pytest.raises(ModelUnavailable, match=r"\[DONE\]") as caught:
        await streamed(openai(model_server), build_request("x"))
    assert caught.value.status == 200
    assert model_server.count() == 1  # begun: not asked again


async def test_an_anthropic_stream_cut_short_fails(model_server: FakeModelServer) -> None:
    start = b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n'
    model_server.then(200, start, headers={"content-type": SSE})
    with pytest.raises(ModelUnavailable, match="message_stop"):
        await streamed(anthropic(model_server), build_request("x"))


async def test_an_error_event_mid_stream_fails_the_call(model_server: FakeModelServer) -> None:
    events = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    model_server.then(200, events, headers={"content-type": SSE})
    with pytest.raises(ModelError, match="overloaded_error: Overloaded"):
        await streamed(anthropic(model_server), build_request("x"))


async def test_an_unreadable_event_is_a_model_error(model_server: FakeModelServer) -> None:
    model_server.then(200, b"data: {not json\n\n", headers={"content-type": SSE})
    with pytest.raises(ModelError, match="unreadable answer"):
        await streamed(openai(model_server), build_request("x"))


async def test_offline_streams_word_by_word_the_same_each_time() -> None:
    request = build_request("task: plan\nHow do we ship the release?")
    whole = await OfflineProvider().complete(request)
    first = await streamed(OfflineProvider(), request)
    second = await streamed(OfflineProvider(), request)
    assert first == second
    reply, pieces = first
    assert reply == whole
    assert "".join(pieces) == whole.text
    assert len(pieces) == len(whole.text.split())


async def test_a_provider_that_cannot_stream_hands_on_its_reply_whole() -> None:
    class Plain:
        name = "plain"
        model = "m"

        async def complete(self, request: ModelRequest) -> ModelReply:
            return ModelReply(
                text="all at once",
                model="m",
                provider="plain",
                input_tokens=1,
                output_tokens=3,
                stop_reason="end_turn",
            )

        async def aclose(self) -> None:
            return None

    pieces = Pieces()
    reply = await stream_complete(Plain(), build_request("x"), pieces)
    assert pieces.seen == ["all at once"]
    assert reply.text == "all at once"
