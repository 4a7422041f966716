"""Conversation memory on a real redis-server: append, window, trim, bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from jetmesh import Conversation, MemoryTooLarge, MeshSettings, Message
from jetmesh.envelope import new_id

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(settings: MeshSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def convo(redis: Redis, settings: MeshSettings, **kwargs: int) -> Conversation:
    return Conversation(redis, settings.subject_prefix, new_id(), "writer", "support", **kwargs)


async def test_append_and_read_a_window_oldest_first(redis: Redis, settings: MeshSettings) -> None:
    c = convo(redis, settings)
    assert await c.window(5) == []
    assert await c.append(Message("user", "hi"), Message("assistant", "hello")) == 2
    assert await c.append(Message("user", "refund?")) == 3
    assert [m.content for m in await c.window(2)] == ["hello", "refund?"]
    assert [m.role for m in await c.window(10)] == ["user", "assistant", "user"]


async def test_length_is_bounded_and_trim_keeps_the_newest(
    redis: Redis, settings: MeshSettings
) -> None:
    c = convo(redis, settings, max_messages=3)
    for i in range(5):
        await c.append(Message("user", f"m{i}"))
    assert [m.content for m in await c.window(10)] == ["m2", "m3", "m4"]
    await c.trim(1)
    assert [m.content for m in await c.window(10)] == ["m4"]
    await c.trim(0)
    assert await c.window(10) == []


async def test_oversized_message_is_refused_and_nothing_is_appended(
    redis: Redis, settings: MeshSettings
) -> None:
    c = convo(redis, settings, max_message_bytes=64)
    await c.append(Message("user", "short"))
    with pytest.raises(MemoryTooLarge):
        await c.append(Message("user", "ok"), Message("user", "x" * 100))
    assert [m.content for m in await c.window(10)] == ["short"]
    assert await redis.ttl(c.key) > 0
