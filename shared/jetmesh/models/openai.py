"""The OpenAI-compatible provider: Chat Completions over HTTP.

Speaks ``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``, which
OpenAI, vLLM, Ollama (``http://127.0.0.1:11434/v1``), LiteLLM proxies and most gateways
accept. Sends ``model``, ``messages`` (the system prompt first, as a ``system`` message),
``max_tokens``, and ``temperature`` and ``stop`` when set; reads
``choices[0].message.content``, ``choices[0].finish_reason`` and
``usage.prompt_tokens``/``usage.completion_tokens``.

Streamed (:meth:`OpenAIProvider.stream`), it sends ``stream: true`` and
``stream_options.include_usage``, and reads ``choices[0].delta.content`` of each
``data:`` event until ``data: [DONE]``, the usage from the last chunk.

Example:
    >>> provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-...")  # doctest: +SKIP
    >>> reply = await provider.complete(build_request("Say hi"))        # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any, Final

import httpx
import msgspec

from .._exceptions import ModelError, ModelUnavailable
from ._http import JsonPoster, decode
from .base import END_TURN, MAX_TOKENS, ModelReply, ModelRequest, OnText

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"

_STOP_REASONS: Final = {"stop": END_TURN, "length": MAX_TOKENS}


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str = ""
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    content: str | None = None


class _DeltaChoice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    index: int = 0
    finish_reason: str | None = None


class _Error(msgspec.Struct):
    message: str = ""
    type: str = ""


class _StreamChunk(msgspec.Struct):
    choices: list[_DeltaChoice] = msgspec.field(default_factory=list)
    model: str = ""
    usage: _Usage | None = None
    error: _Error | None = None


DONE: Final = "[DONE]"
"""The ``data:`` of the event that ends a stream."""


class OpenAIProvider:
    """Chat Completions of an OpenAI-compatible server."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str = "",
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        name: str = "openai",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            model: the model asked when a request names none.
            api_key: sent as ``Authorization: Bearer``; "" sends no header (local servers).
            base_url: up to and including ``/v1``.
            timeout_s: one try's deadline.
            max_retries: tries after the first on connection errors, timeouts, 429, 5xx.
            backoff_s: the first wait between tries when the server names none (doubles).
            name: the provider's name in replies and events.
            transport: an httpx transport (tests).
        """
        self._name = name
        self._model = model
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = JsonPoster(
            name,
            base_url,
            headers,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            transport=transport,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ModelRequest) -> ModelReply:
        """See :meth:`jetmesh.models.ModelProvider.complete`."""
        model = request.model or self._model
        data = await self._http.post("/chat/completions", payload(request, model))
        answer: _Completion = decode(self._name, data, _Completion)
        if not answer.choices:
            raise ModelError(self._name, "the answer has no choices", status=200)
        choice = answer.choices[0]
        usage = answer.usage or _Usage()
        reason = choice.finish_reason or ""
        return ModelReply(
            text=choice.message.content or "",
            model=answer.model or model,
            provider=self._name,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            stop_reason=_STOP_REASONS.get(reason, reason),
        )

    async def stream(self, request: ModelRequest, on_text: OnText) -> ModelReply:
        """See :meth:`jetmesh.models.base.StreamingProvider.stream`."""
        model = request.model or self._model
        body = payload(request, model) | {"stream": True, "stream_options": {"include_usage": True}}
        texts: list[str] = []
        answered, reason, usage, done = "", "", _Usage(), False
        async with aclosing(self._http.stream("/chat/completions", body)) as events:
            async for event in events:
                if event.data.strip() == DONE:
                    done = True
                    break
                chunk: _StreamChunk = decode(self._name, event.data.encode(), _StreamChunk)
                if chunk.error is not None:
                    said = f"{chunk.error.type}: {chunk.error.message}".strip(": ")
                    raise ModelError(self._name, said or "an error event", status=200)
                answered = chunk.model or answered
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        texts.append(choice.delta.content)
                        await on_text(choice.delta.content)
                    reason = choice.finish_reason or reason
        if not done:
            raise ModelUnavailable(self._name, f"the stream ended before {DONE}", status=200)
        return ModelReply(
            text="".join(texts),
            model=answered or model,
            provider=self._name,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            stop_reason=_STOP_REASONS.get(reason, reason),
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def payload(request: ModelRequest, model: str) -> dict[str, Any]:
    """The Chat Completions request body."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": request.max_tokens}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop"] = list(request.stop)
    return body
