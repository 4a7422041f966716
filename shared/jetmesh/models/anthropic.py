"""The Anthropic provider: the Messages API over HTTP.

Speaks ``POST {base_url}/v1/messages`` with ``x-api-key`` and
``anthropic-version: 2023-06-01``. Sends ``model``, ``max_tokens``, ``messages``, the
system prompt as the top-level ``system``, and ``temperature`` and ``stop_sequences`` when
set; reads the ``text`` blocks of ``content``, ``stop_reason`` and
``usage.input_tokens``/``usage.output_tokens``.

Streamed (:meth:`AnthropicProvider.stream`), it sends ``stream: true`` and reads the
events ``message_start`` (model, input tokens), ``content_block_delta`` (``text_delta``
pieces), ``message_delta`` (stop reason, output tokens) and ``message_stop``; an
``error`` event fails the call.

Example:
    >>> provider = AnthropicProvider(model="claude-3-5-haiku-latest", api_key="...")
    ...                                                               # doctest: +SKIP
    >>> reply = await provider.complete(build_request("Say hi"))        # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any, Final

import httpx
import msgspec

from .._exceptions import ModelError, ModelUnavailable
from ._http import JsonPoster, decode
from .base import ModelReply, ModelRequest, OnText

DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
API_VERSION: Final = "2023-06-01"


class _Block(msgspec.Struct):
    type: str
    text: str = ""


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _Message(msgspec.Struct):
    content: list[_Block]
    model: str = ""
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Started(msgspec.Struct):
    model: str = ""
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    type: str = ""
    text: str = ""
    stop_reason: str | None = None


class _Error(msgspec.Struct):
    type: str = ""
    message: str = ""


class _StreamEvent(msgspec.Struct):
    type: str
    message: _Started | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | None = None


class AnthropicProvider:
    """Messages of the Anthropic API (or a server that speaks it)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            model: the model asked when a request names none.
            api_key: sent as ``x-api-key``.
            base_url: the API's root, without ``/v1``.
            timeout_s: one try's deadline.
            max_retries: tries after the first on connection errors, timeouts, 429, 5xx
                (529 "overloaded" included).
            backoff_s: the first wait between tries when the server names none (doubles).
            transport: an httpx transport (tests).
        """
        self._model = model
        base = base_url.rstrip("/")
        base = base.removesuffix("/v1")
        headers = {"x-api-key": api_key, "anthropic-version": API_VERSION}
        self._http = JsonPoster(
            "anthropic",
            base,
            headers,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            transport=transport,
        )

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ModelRequest) -> ModelReply:
        """See :meth:`jetmesh.models.ModelProvider.complete`."""
        model = request.model or self._model
        data = await self._http.post("/v1/messages", payload(request, model))
        answer: _Message = decode(self.name, data, _Message)
        texts = [block.text for block in answer.content if block.type == "text"]
        if not texts and answer.stop_reason not in ("max_tokens", "tool_use"):
            raise ModelError(self.name, "the answer has no text block", status=200)
        usage = answer.usage or _Usage()
        return ModelReply(
            text="".join(texts),
            model=answer.model or model,
            provider=self.name,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            stop_reason=answer.stop_reason or "",
        )

    async def stream(self, request: ModelRequest, on_text: OnText) -> ModelReply:
        """See :meth:`jetmesh.models.base.StreamingProvider.stream`."""
        model = request.model or self._model
        body = payload(request, model) | {"stream": True}
        texts: list[str] = []
        started, reason, tokens_in, tokens_out = _Started(), "", 0, 0
        async with aclosing(self._http.stream("/v1/messages", body)) as events:
            async for event in events:
                data: _StreamEvent = decode(self.name, event.data.encode(), _StreamEvent)
                if data.type == "error":
                    error = data.error or _Error()
                    said = f"{error.type}: {error.message}".strip(": ")
                    raise ModelError(self.name, said or "an error event", status=200)
                if data.type == "message_start" and data.message is not None:
                    started = data.message
                    tokens_in = started.usage.input_tokens if started.usage else 0
                elif data.type == "content_block_delta" and data.delta is not None:
                    if data.delta.type == "text_delta" and data.delta.text:
                        texts.append(data.delta.text)
                        await on_text(data.delta.text)
                elif data.type == "message_delta":
                    reason = (data.delta.stop_reason if data.delta else None) or reason
                    if data.usage is not None:
                        tokens_out = data.usage.output_tokens
                        tokens_in = data.usage.input_tokens or tokens_in
                elif data.type == "message_stop":
                    break
            else:
                raise ModelUnavailable(
                    self.name, "the stream ended before message_stop", status=200
                )
        return ModelReply(
            text="".join(texts),
            model=started.model or model,
            provider=self.name,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            stop_reason=reason,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def payload(request: ModelRequest, model: str) -> dict[str, Any]:
    """The Messages request body."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    return body
