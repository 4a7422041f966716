"""The step ledger's command batcher writes its pipelines itself, on connections of its
own: the replies must come back as redis-py's pipeline gives them, each to its caller, and
a connection that broke or was left mid-exchange must never hand one caller another's
reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jetmesh.embedded import RedisServer
from jetmesh.envelope import new_id
from jetmesh.memory import WorkingMemory, functions
from jetmesh.memory.batching import CommandBatcher, shared_batcher
from jetmesh.memory.connection import connect

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url, retry_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_replies_come_back_in_order_parsed_as_redis_py_parses_them(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    key, missing = f"batcher:{new_id()}", f"batcher:{new_id()}"
    set_, get, gone, wrong, hmget = (
        batcher.execute("SET", key, "v", "EX", 60),
        batcher.execute("GET", key),
        batcher.execute("GET", missing),
        batcher.execute("HGET", key, "field"),  # a string is not a hash: this one fails
        batcher.execute("HMGET", missing, "a", "b"),
    )
    assert await set_ is True  # SET's "OK" through the client's response callback
    assert await get == b"v"
    assert await gone is None
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await wrong
    assert await hmget == [None, None]
    async with redis.pipeline(transaction=False) as pipe:  # the same, through redis-py
        pipe.set(key, "v", ex=60).get(key).get(missing).hmget(missing, ["a", "b"])
        assert await pipe.execute() == [True, b"v", None, [None, None]]


async def test_values_of_every_type_the_mesh_sends_are_stored_as_redis_py_stores_them(
    redis: Redis,
) -> None:
    batcher = CommandBatcher(redis)
    values: list[str | bytes | int | float] = ["plain", "ünïcødé", b"\x00\xffbytes", -3, 0.1 + 0.2]
    keys = [f"batcher:{new_id()}" for _ in values]
    stored = await asyncio.gather(
        *(
            batcher.execute("SET", key, value, "EX", 60)
            for key, value in zip(keys, values, strict=True)
        )
    )
    assert stored == [True] * len(values)
    for key, value in zip(keys, values, strict=True):
        mirror = f"{key}:redis-py"
        await redis.set(mirror, value, ex=60)
        assert await redis.get(key) == await redis.get(mirror)


async def test_a_value_that_cannot_be_sent_fails_its_batch_and_the_next_batch_goes(
    redis: Redis,
) -> None:
    batcher = CommandBatcher(redis)
    key = f"batcher:{new_id()}"
    bad = batcher.execute("SET", key, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await bad
    assert await batcher.execute("SET", key, "after", "EX", 60) is True
    assert await redis.get(key) == b"after"


async def test_a_killed_connection_is_reconnected_and_the_batch_answered(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    key = f"batcher:{new_id()}"
    assert await batcher.execute("SET", key, "1", "EX", 60) is True
    killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed >= 1  # the batcher's connection among them
    assert await batcher.execute("INCR", key) == 2
    assert await batcher.execute("GET", key) == b"2"


async def test_a_pipeline_cut_short_leaves_no_reply_for_the_next(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    key = f"batcher:{new_id()}"
    await batcher.execute("SET", key, "first", "EX", 60)
    # A pipeline cancelled while its reply is on its way (the blocking pop holds it for
    # a moment): its connection must not serve the next pipeline with that reply unread.
    blocked = batcher.execute("BLPOP", f"batcher:{new_id()}", 0.3)
    await asyncio.sleep(0.05)
    for task in list(batcher._tasks):
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await asyncio.sleep(0.4)  # BLPOP's nil reply has arrived by now, on the old socket
    assert await batcher.execute("GET", key) == b"first"
    assert await batcher.execute("ECHO", "second") == b"second"


async def test_the_batchers_connections_close_with_the_client(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, retry_s=0)
    batcher = CommandBatcher(client)
    replies = await asyncio.gather(*(batcher.execute("PING") for _ in range(3)))
    assert replies == [True] * 3
    connection = batcher._idle[0]
    assert connection.is_connected
    await client.aclose()
    assert not connection.is_connected  # closed with the pool: no unclosed socket left


async def test_a_reply_that_does_not_come_in_time_disconnects_and_the_next_batch_goes(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url, socket_timeout=0.2)  # no retries
    try:
        batcher = CommandBatcher(client)
        key = f"batcher:{new_id()}"
        blocked = batcher.execute("BLPOP", key, 2)  # the server answers after 2 s
        with pytest.raises(RedisTimeoutError):
            await blocked
        (connection,) = batcher._idle
        assert not connection.is_connected, "never half-read: disconnected"
        await client.rpush(key, "late")  # what BLPOP would have taken stays for the next
        assert await batcher.execute("LPOP", key) == b"late"
    finally:
        await client.aclose()


async def test_with_replicas_asked_for_a_pipeline_waits_and_says_when_none_had_it(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """``wait_replicas``: each pipeline ends in WAIT; a server without replicas answers 0
    after the timeout, which is logged, and the callers still get their replies (the
    effect claims' own pipeline too)."""
    batcher = CommandBatcher(redis, wait_replicas=1, wait_timeout_ms=50)
    key = f"batcher:{new_id()}"
    with caplog.at_level("WARNING", logger="jetmesh.memory"):
        assert await batcher.execute("SET", key, "v", "EX", 60) is True
        assert await batcher.pipeline([("SET", key, "w", "NX"), ("GET", key)]) == [None, b"v"]
    warned = [r.getMessage() for r in caplog.records if "replicas had" in r.getMessage()]
    assert (
        warned
        == [
            "0 of 1 Redis replicas had the ledger's writes after 50 ms: a failover "
            "now could lose them"
        ]
        * 2
    )


async def test_working_memory_of_concurrent_tasks_shares_the_clients_pipelines(
    redis: Redis, redis_server: RedisServer
) -> None:
    """Every WorkingMemory on one client sends through that client's one batcher, so the
    reads and writes of tasks in the same loop turn go as one pipeline on one connection;
    another client has its own."""
    await functions.load_library(redis)  # as `jetmesh up` has (CAS is one of its functions)
    batcher = shared_batcher(redis)
    memories = [WorkingMemory(redis, "batcher", new_id(), "agent") for _ in range(8)]
    assert all(m._batch is batcher for m in memories)
    await asyncio.gather(*(m.update("n", int, lambda n: (n or 0) + 1) for m in memories))
    assert len(batcher._idle) == 1  # eight tasks' HMGETs, then CASes, one pipeline each
    assert [await m.get("n", int) for m in memories] == [1] * 8
    other = connect(redis_server.url, retry_s=0)
    try:
        assert shared_batcher(other) is not batcher
    finally:
        await other.aclose()
