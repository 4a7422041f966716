"""The provider a process builds from its settings, and the request it sends."""

from __future__ import annotations

import pytest

from jetmesh import ConfigError, MeshSettings, Message, ModelMessage
from jetmesh.models import (
    AnthropicProvider,
    ModelProvider,
    OfflineProvider,
    OpenAIProvider,
    build_request,
    provider_from,
    request_digest,
)
from jetmesh.models.base import changed_parts


async def test_offline_is_the_default() -> None:
    provider = provider_from(MeshSettings())
    assert isinstance(provider, OfflineProvider)
    assert isinstance(provider, ModelProvider)
    await provider.aclose()


async def test_openai_and_anthropic_from_settings() -> None:
    openai = provider_from(
        MeshSettings(
            model_provider="openai",
            model_name="llama3.1:8b",
            model_base_url="http://127.0.0.1:9/v1",
        )
    )
    anthropic = provider_from(
        MeshSettings(model_provider="anthropic", model_name="claude-3-5-haiku", model_api_key="k")
    )
    assert isinstance(openai, OpenAIProvider)
    assert (openai.name, openai.model) == ("openai", "llama3.1:8b")
    assert isinstance(anthropic, AnthropicProvider)
    await openai.aclose()
    await anthropic.aclose()


def test_a_cloud_provider_needs_a_model_name_and_anthropic_a_key() -> None:
    with pytest.raises(ConfigError, match="JETMESH_MODEL_NAME"):
        provider_from(MeshSettings(model_provider="openai"))
    with pytest.raises(ConfigError, match="JETMESH_MODEL_API_KEY"):
        provider_from(MeshSettings(model_provider="anthropic", model_name="m"))


def test_the_key_is_never_shown() -> None:
    settings = MeshSettings(model_api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in str(settings.model_dump())


def test_build_request_folds_system_turns_and_takes_conversation_messages() -> None:
    request = build_request(
        [Message("system", "rules"), Message("user", "hi"), ModelMessage("assistant", "yo")],
        system="first",
    )
    assert request.system == "first\n\nrules"
    assert request.messages == (ModelMessage("user", "hi"), ModelMessage("assistant", "yo"))
    with pytest.raises(ValueError, match="at least one"):
        build_request([Message("system", "only rules")])


def test_the_digest_follows_every_part_of_the_request() -> None:
    base = request_digest(build_request("hi"))
    assert base == request_digest(build_request("hi"))
    assert base != request_digest(build_request("hi!"))
    assert base != request_digest(build_request("hi", system="s"))
    assert base != request_digest(build_request("hi", max_tokens=5))
    assert base != request_digest(build_request("hi", model="other"))


def test_the_digest_tells_which_part_changed() -> None:
    base = request_digest(build_request("hi", system="s"))
    assert changed_parts(base, base) == []
    assert changed_parts(base, request_digest(build_request("hi", system="t"))) == ["system prompt"]
    assert changed_parts(base, request_digest(build_request("ho", system="s"))) == ["messages"]
    assert changed_parts(base, request_digest(build_request("hi", system="s", stop=["x"]))) == [
        "options"
    ]
    assert changed_parts("old-style", base) == ["system prompt", "messages", "options"]
