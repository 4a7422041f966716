"""The model provider and price table a process builds from its settings."""

from __future__ import annotations

from .._exceptions import ConfigError
from ..settings import MeshSettings
from . import anthropic, openai
from .anthropic import AnthropicProvider
from .base import ModelProvider
from .offline import OfflineProvider
from .openai import OpenAIProvider
from .pricing import PriceTable


def provider_from(settings: MeshSettings) -> ModelProvider:
    """The provider ``settings`` name (``JETMESH_MODEL_*``). Builds no connection yet.

    Raises:
        ConfigError: ``openai`` or ``anthropic`` without a model name, or ``anthropic``
            without a key.
    """
    kind = settings.model_provider
    if kind == "offline":
        return OfflineProvider()
    if not settings.model_name:
        raise ConfigError(f"JETMESH_MODEL_NAME is required with JETMESH_MODEL_PROVIDER={kind}")
    key = settings.model_api_key.get_secret_value() if settings.model_api_key else ""
    if kind == "openai":
        return OpenAIProvider(
            model=settings.model_name,
            api_key=key,
            base_url=settings.model_base_url or openai.DEFAULT_BASE_URL,
            timeout_s=settings.model_timeout_s,
            max_retries=settings.model_max_retries,
        )
    if not key:
        raise ConfigError("JETMESH_MODEL_API_KEY is required with JETMESH_MODEL_PROVIDER=anthropic")
    return AnthropicProvider(
        model=settings.model_name,
        api_key=key,
        base_url=settings.model_base_url or anthropic.DEFAULT_BASE_URL,
        timeout_s=settings.model_timeout_s,
        max_retries=settings.model_max_retries,
    )


def prices_from(settings: MeshSettings) -> PriceTable:
    """The shipped price table, with ``JETMESH_MODEL_PRICES_FILE`` over it.

    Raises:
        ConfigError: the prices file cannot be read or is malformed.
    """
    return PriceTable.load(settings.model_prices_file)
