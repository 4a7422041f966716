"""The HTTP providers against a local server speaking the real OpenAI Chat Completions and
Anthropic Messages wire formats: requests, answers, errors, retries, timeouts."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from jetmesh import ModelError, ModelMessage, ModelUnavailable
from jetmesh.models import AnthropicProvider, ModelProvider, OpenAIProvider, build_request
from tests.models.fake_server import ANTHROPIC_PATH, OPENAI_PATH, FakeModelServer

FAST = {"backoff_s": 0.01, "timeout_s": 5.0}


def openai(server: FakeModelServer, **options: Any) -> OpenAIProvider:
    settings = {"api_key": "sk-test", "base_url": server.openai_url, **FAST, **options}
    return OpenAIProvider(model="gpt-4o-mini", **settings)


def anthropic(server: FakeModelServer, **options: Any) -> AnthropicProvider:
    settings = {"api_key": "sk-test", "base_url": server.url, **FAST, **options}
    return AnthropicProvider(model="claude-3-5-haiku", **settings)


PROVIDERS = [pytest.param(openai, id="openai"), pytest.param(anthropic, id="anthropic")]


async def test_openai_request_and_answer_on_the_wire(model_server: FakeModelServer) -> None:
    provider = openai(model_server)
    request = build_request(
        [
            ModelMessage("user", "hi"),
            ModelMessage("assistant", "hello"),
            ModelMessage("user", "bye"),
        ],
        system="be brief",
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
    )
    try:
        reply = await provider.complete(request)
    finally:
        await provider.aclose()
    (seen,) = model_server.requests
    assert seen.path == OPENAI_PATH
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": ["END"],
    }
    assert reply.text == "echo: bye"
    assert reply.model == "gpt-4o-mini-2024-07-18", (
        "the model that answered, as the server names it"
    )
    assert (reply.provider, reply.stop_reason) == ("openai", "end_turn")
    assert (reply.input_tokens, reply.output_tokens) == (5, 2)


async def test_anthropic_request_and_answer_on_the_wire(model_server: FakeModelServer) -> None:
    provider = anthropic(model_server)
    request = build_request("bye", system="be brief", max_tokens=50, stop=["END"])
    try:
        reply = await provider.complete(request)
    finally:
        await provider.aclose()
    (seen,) = model_server.requests
    assert seen.path == ANTHROPIC_PATH
    assert seen.headers["x-api-key"] == "sk-test"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-3-5-haiku",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "bye"}],
        "system": "be brief",
        "stop_sequences": ["END"],
    }
    assert reply.text == "echo: bye"
    assert reply.model == "claude-3-5-haiku-20241022"
    assert (reply.provider, reply.stop_reason) == ("anthropic", "end_turn")
    assert (reply.input_tokens, reply.output_tokens) == (3, 2)


async def test_a_request_names_its_own_model(model_server: FakeModelServer) -> None:
    provider = openai(model_server)
    try:
        reply = await provider.complete(build_request("x", model="gpt-4.1-nano"))
    finally:
        await provider.aclose()
    assert model_server.requests[0].body["model"] == "gpt-4.1-nano"
    assert reply.model == "gpt-4.1-nano-2024-07-18"


async def test_openai_length_is_max_tokens(model_server: FakeModelServer) -> None:
    answer = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut"},
                     "finish_reason": "length"}],
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }  # fmt: skip
    model_server.then(200, answer)
    provider = openai(model_server)
    try:
        reply = await provider.complete(build_request("x", max_tokens=1))
    finally:
        await provider.aclose()
    assert (reply.text, reply.stop_reason) == ("cut", "max_tokens")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(openai, "invalid_request_error: Incorrect API key provided", id="openai"),
        pytest.param(anthropic, "authentication_error: invalid x-api-key", id="anthropic"),
    ],
)
async def test_a_wrong_key_is_a_model_error_with_the_providers_message(
    model_server: FakeModelServer, make: Any, message: str
) -> None:
    provider: ModelProvider = make(model_server, api_key="sk-wrong")
    try:
        with pytest.raises(ModelError) as caught:
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert not isinstance(caught.value, ModelUnavailable)
    assert caught.value.status == 401
    assert caught.value.provider == provider.name
    assert message in str(caught.value)
    assert model_server.count() == 1, "a 401 is not retried"


@pytest.mark.parametrize("make", PROVIDERS)
async def test_429_waits_as_asked_then_succeeds(model_server: FakeModelServer, make: Any) -> None:
    model_server.then(429, headers={"retry-after": "1"})
    provider: ModelProvider = make(model_server)
    started = time.monotonic()
    try:
        reply = await provider.complete(build_request("again"))
    finally:
        await provider.aclose()
    assert reply.text == "echo: again"
    assert model_server.count() == 2
    assert time.monotonic() - started >= 0.95, "Retry-After was honoured"


async def test_retry_after_ms_wins_over_retry_after(model_server: FakeModelServer) -> None:
    model_server.then(429, headers={"retry-after-ms": "50", "retry-after": "30"})
    provider = openai(model_server)
    started = time.monotonic()
    try:
        await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert time.monotonic() - started < 5


async def test_a_wait_longer_than_allowed_fails_at_once(model_server: FakeModelServer) -> None:
    model_server.then(429, headers={"retry-after": "3600"})
    provider = openai(model_server)
    try:
        with pytest.raises(ModelUnavailable, match="asked to wait 3600 s") as caught:
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert caught.value.status == 429
    assert "rate_limit_exceeded" in str(caught.value) or "Rate limit" in str(caught.value)
    assert model_server.count() == 1


@pytest.mark.parametrize(
    ("make", "status"),
    [
        pytest.param(openai, 500, id="openai-500"),
        pytest.param(openai, 503, id="openai-503"),
        pytest.param(anthropic, 500, id="anthropic-500"),
        pytest.param(anthropic, 529, id="anthropic-529-overloaded"),
    ],
)
async def test_server_errors_are_retried(
    model_server: FakeModelServer, make: Any, status: int
) -> None:
    model_server.then(status).then(status)
    provider: ModelProvider = make(model_server)
    try:
        reply = await provider.complete(build_request("third time"))
    finally:
        await provider.aclose()
    assert reply.text == "echo: third time"
    assert model_server.count() == 3


@pytest.mark.parametrize("make", PROVIDERS)
async def test_retries_are_bounded(model_server: FakeModelServer, make: Any) -> None:
    for _ in range(3):
        model_server.then(500)
    provider: ModelProvider = make(model_server, max_retries=2)
    try:
        with pytest.raises(ModelUnavailable, match=r"\(3 tries\)") as caught:
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert caught.value.status == 500
    assert model_server.count() == 3
    assert "rror" in caught.value.message, "the provider's error message is kept"


@pytest.mark.parametrize("make", PROVIDERS)
async def test_malformed_json_is_a_model_error(model_server: FakeModelServer, make: Any) -> None:
    model_server.then(200, b'{"id": "x", "choices": [{"message": ')
    provider: ModelProvider = make(model_server)
    try:
        with pytest.raises(ModelError, match="unreadable answer") as caught:
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert caught.value.status == 200
    assert model_server.count() == 1


@pytest.mark.parametrize("make", PROVIDERS)
async def test_an_answer_of_another_shape_is_a_model_error(
    model_server: FakeModelServer, make: Any
) -> None:
    model_server.then(200, {"unexpected": True})
    provider: ModelProvider = make(model_server)
    try:
        with pytest.raises(ModelError, match="unreadable answer"):
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()


@pytest.mark.parametrize("make", PROVIDERS)
async def test_a_slow_answer_times_out_and_is_retried(
    model_server: FakeModelServer, make: Any
) -> None:
    # The second try must answer within the timeout on a loaded machine too: 0.3 s was
    # once not enough for it under a full test run on two cores.
    model_server.then(200, delay_s=6.0)
    provider: ModelProvider = make(model_server, timeout_s=1.0, max_retries=1)
    started = time.monotonic()
    try:
        reply = await provider.complete(build_request("slow"))
    finally:
        await provider.aclose()
    assert reply.text == "echo: slow", "the second try answered in time"
    assert model_server.count() == 2
    assert time.monotonic() - started < 5.0, "the slow answer was not waited for"


async def test_timeouts_on_every_try_are_unavailable(model_server: FakeModelServer) -> None:
    model_server.then(200, delay_s=1.0).then(200, delay_s=1.0)
    provider = openai(model_server, timeout_s=0.2, max_retries=1)
    try:
        with pytest.raises(ModelUnavailable, match=r"no answer within 0.2 s \(2 tries\)"):
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_nothing_listening_is_unavailable() -> None:
    provider = OpenAIProvider(
        model="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1, backoff_s=0.01
    )
    try:
        with pytest.raises(ModelUnavailable, match="cannot reach") as caught:
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert caught.value.status == 0


async def test_openai_without_a_key_sends_no_authorization(model_server: FakeModelServer) -> None:
    provider = OpenAIProvider(model="llama3.1:8b", base_url=model_server.openai_url)
    try:
        with pytest.raises(ModelError):  # the fake server wants a key; a local server may not
            await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert "authorization" not in model_server.requests[0].headers


async def test_anthropic_base_url_may_end_in_v1(model_server: FakeModelServer) -> None:
    provider = anthropic(model_server, base_url=model_server.url + "/v1/")
    try:
        await provider.complete(build_request("x"))
    finally:
        await provider.aclose()
    assert model_server.requests[0].path == ANTHROPIC_PATH


async def test_close_is_idempotent(model_server: FakeModelServer) -> None:
    provider = openai(model_server)
    await provider.aclose()
    await provider.aclose()
