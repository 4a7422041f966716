"""Working memory on a real redis-server: versions, compare-and-set, fencing, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import MemoryConflict, MemoryTooLarge, MeshSettings, WorkingMemory
from jetmesh.embedded import RedisServer
from jetmesh.envelope import new_id
from jetmesh.memory.functions import CAS, fcall

pytestmark = pytest.mark.integration


class Draft(msgspec.Struct, frozen=True):
    text: str
    round: int = 0


@pytest.fixture
async def redis(settings: MeshSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def memory(
    redis: Redis, settings: MeshSettings, workflow: str, agent: str = "writer", **kwargs: int
) -> WorkingMemory:
    return WorkingMemory(redis, settings.subject_prefix, workflow, agent, **kwargs)


async def test_values_round_trip_typed_with_versions(redis: Redis, settings: MeshSettings) -> None:
    mem = memory(redis, settings, new_id())
    assert await mem.get("draft", Draft) is None
    assert (await mem.get_versioned("draft", Draft)).version == 0
    assert await mem.set("draft", Draft("one")) == 1
    assert await mem.set("draft", Draft("two", 1)) == 2
    assert await mem.get_versioned("draft", Draft) == (Draft("two", 1), 2)


async def test_memory_is_namespaced_per_workflow_and_agent(
    redis: Redis, settings: MeshSettings
) -> None:
    workflow = new_id()
    await memory(redis, settings, workflow, "a").set("k", Draft("a"))
    assert await memory(redis, settings, workflow, "b").get("k", Draft) is None
    assert await memory(redis, settings, new_id(), "a").get("k", Draft) is None


async def test_a_stale_writer_cannot_overwrite_newer_memory(
    redis: Redis, settings: MeshSettings
) -> None:
    workflow = new_id()
    fresh, stale = memory(redis, settings, workflow), memory(redis, settings, workflow)
    await fresh.set("draft", Draft("v1"))
    _, seen = await stale.get_versioned("draft", Draft)  # the stale replica reads v1 ...
    await fresh.set("draft", Draft("v2"), expected_version=seen)  # ... the new owner writes
    with pytest.raises(MemoryConflict) as conflict:
        await stale.set("draft", Draft("lost update"), expected_version=seen)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert await fresh.get("draft", Draft) == Draft("v2")


async def test_create_only_when_absent(redis: Redis, settings: MeshSettings) -> None:
    mem = memory(redis, settings, new_id())
    assert await mem.set("lock", Draft("first"), expected_version=0) == 1
    with pytest.raises(MemoryConflict):
        await mem.set("lock", Draft("second"), expected_version=0)


async def test_concurrent_updates_from_many_replicas_lose_nothing(
    redis: Redis, settings: MeshSettings
) -> None:
    workflow = new_id()
    replicas = [memory(redis, settings, workflow) for _ in range(8)]

    async def bump(mem: WorkingMemory, times: int) -> None:
        for _ in range(times):
            await mem.update("count", int, lambda n: (n or 0) + 1, retries=200)

    await asyncio.gather(*(bump(m, 25) for m in replicas))
    value, version = await replicas[0].get_versioned("count", int)
    assert value == 200
    assert version == 200


async def test_update_gives_up_after_its_retries(redis: Redis, settings: MeshSettings) -> None:
    mem = memory(redis, settings, new_id())
    rival = memory(redis, settings, mem.workflow)
    await mem.set("n", 0)
    read = mem.get_versioned

    async def read_then_rival_writes(name: str, tp: type[int]):  # type: ignore[no-untyped-def]
        current = await read(name, tp)
        await rival.set("n", -1)  # every read is stale by the time the write comes
        return current

    changes = 0

    def change(n: int | None) -> int:
        nonlocal changes
        changes += 1
        return (n or 0) + 1

    mem.get_versioned = read_then_rival_writes  # type: ignore[method-assign]
    with pytest.raises(MemoryConflict):
        await mem.update("n", int, change, retries=3)
    assert changes == 3
    assert await rival.get("n", int) == -1


async def test_size_limit_and_ttl(redis: Redis, settings: MeshSettings) -> None:
    mem = memory(redis, settings, new_id(), max_value_bytes=100, ttl_s=30)
    with pytest.raises(MemoryTooLarge, match="limit 100"):
        await mem.set("big", "x" * 200)
    assert await mem.get("big", str) is None
    await mem.set("small", "x")
    assert 0 < await redis.ttl(mem.key("small")) <= 30
    await mem.set("short", "x", ttl_s=1)
    assert await redis.ttl(mem.key("short")) == 1


async def test_memory_survives_a_redis_restart(
    fresh_redis_server: RedisServer, settings: MeshSettings
) -> None:
    client = Redis.from_url(fresh_redis_server.url)
    mem = memory(client, settings, new_id())
    try:
        version = await mem.set("draft", Draft("kept"))
        await client.aclose()
        fresh_redis_server.stop()  # AOF on: every acknowledged write is in the log
        fresh_redis_server.start()
        client = Redis.from_url(fresh_redis_server.url)
        mem = memory(client, settings, mem.workflow)
        assert await mem.get_versioned("draft", Draft) == (Draft("kept"), version)
    finally:
        await client.aclose()


async def test_a_write_sent_again_after_a_broken_connection_is_recognised(
    redis: Redis, settings: MeshSettings
) -> None:
    """The client retries a command whose connection broke; if Redis had already run it,
    the retry must not count as a conflict (update() would then apply its change twice)."""
    mem = memory(redis, settings, new_id())
    key, data = mem.key("count"), b"1"
    first = await fcall(redis, CAS, [key], ["0", data, 60, "write-1"])
    again = await fcall(redis, CAS, [key], ["0", data, 60, "write-1"])
    assert [int(x) for x in first] == [1, 1]
    assert [int(x) for x in again] == [1, 1], "its own write: done, not a conflict"
    other = await fcall(redis, CAS, [key], ["0", b"2", 60, "write-2"])
    assert [int(x) for x in other] == [0, 1], "another writer with a stale version: conflict"
    assert await mem.get("count", int) == 1
