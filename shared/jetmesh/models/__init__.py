"""Model providers behind ``ctx.model``: one interface, three providers.

- :class:`~jetmesh.models.openai.OpenAIProvider`: OpenAI-compatible Chat Completions
  (OpenAI, vLLM, Ollama, LiteLLM proxies).
- :class:`~jetmesh.models.anthropic.AnthropicProvider`: the Anthropic Messages API.
- :class:`~jetmesh.models.offline.OfflineProvider`: deterministic keyword rules, a hashed
  bag-of-words embedding and templates; the default, with no network and no cost.

A replica builds one provider from its settings (:func:`provider_from`) and prices each
call with :class:`PriceTable`. See docs/models.md. The offline provider names its model
:data:`OFFLINE_MODEL`.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> import asyncio
    >>> reply = asyncio.run(OfflineProvider().complete(build_request("task: plan\\nWhy?")))
    >>> reply.provider
    'offline-deterministic'
"""

from .anthropic import AnthropicProvider
from .base import (
    MODEL_REPLY_TYPE,
    ModelMessage,
    ModelProvider,
    ModelReply,
    ModelRequest,
    build_request,
    request_digest,
)
from .factory import prices_from, provider_from
from .offline import MODEL as OFFLINE_MODEL
from .offline import OfflineProvider
from .openai import OpenAIProvider
from .pricing import Price, PriceTable

__all__ = [
    "MODEL_REPLY_TYPE",
    "OFFLINE_MODEL",
    "AnthropicProvider",
    "ModelMessage",
    "ModelProvider",
    "ModelReply",
    "ModelRequest",
    "OfflineProvider",
    "OpenAIProvider",
    "Price",
    "PriceTable",
    "build_request",
    "prices_from",
    "provider_from",
    "request_digest",
]
