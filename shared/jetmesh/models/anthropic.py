"""The Anthropic provider: the Messages API over HTTP.

Speaks ``POST {base_url}/v1/messages`` with ``x-api-key`` and
``anthropic-version: 2023-06-01``. Sends ``model``, ``max_tokens``, ``messages``, the
system prompt as the top-level ``system``, and ``temperature`` and ``stop_sequences`` when
set; reads the ``text`` blocks of ``content``, ``stop_reason`` and
``usage.input_tokens``/``usage.output_tokens``.

Example:
    >>> provider = AnthropicProvider(model="claude-3-5-haiku-latest", api_key="...")
    ...                                                               # doctest: +SKIP
    >>> reply = await provider.complete(build_request("Say hi"))        # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Final

import httpx
import msgspec

from .._exceptions import ModelError
from ._http import JsonPoster, decode
from .base import ModelReply, ModelRequest

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
