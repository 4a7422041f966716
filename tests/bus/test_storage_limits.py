"""Storage is bounded: every stream (bytes, messages, message size, what goes when full),
the message size on the server, and Redis's memory (``maxmemory``, ``noeviction``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from jetmesh import MemoryFull, MeshSettings, PublishFailed, WorkingMemory
from jetmesh.bus.connection import connect as connect_nats
from jetmesh.bus.streams import advisories_stream, ensure_streams
from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.envelope import new_id
from jetmesh.logins import admin_login, role_login
from jetmesh.memory import keys
from jetmesh.memory.connection import connect as connect_redis
from jetmesh.memory.functions import load_library
from jetmesh.runtime.ledger import Recorded, StepLedger
from tests.conftest import isolated_settings
from tests.harness.mesh import Echo, EchoAgent, Mesh, until
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


async def test_jetmesh_up_bounds_every_stream_the_message_size_and_redis(
    secured: SecuredMesh,
) -> None:
    s = secured.settings
    nc = await connect_nats(s.nats_url, "admin", **admin_login(s).nats_options())
    try:
        assert nc.max_payload == s.server_max_payload_bytes, "the server's own limit"
        js = nc.jetstream()
        expected = {
            s.tasks_stream: (s.tasks_max_bytes, s.tasks_max_msgs, DiscardPolicy.NEW),
            s.events_stream: (s.events_max_bytes, s.events_max_msgs, DiscardPolicy.OLD),
            s.dlq_stream: (s.dlq_max_bytes, s.dlq_max_msgs, DiscardPolicy.NEW),
            advisories_stream(s): (
                s.advisories_max_bytes,
                s.advisories_max_msgs,
                DiscardPolicy.OLD,
            ),
        }
        for name, (max_bytes, max_msgs, discard) in expected.items():
            config = (await js.stream_info(name)).config
            assert (config.max_bytes, config.max_msgs, config.discard) == (
                max_bytes,
                max_msgs,
                discard,
            ), name
            assert config.max_msg_size is not None
            assert 0 < config.max_msg_size <= s.server_max_payload_bytes, name
        dlq = (await js.stream_info(s.dlq_stream)).config
        assert dlq.max_msgs_per_subject == s.dlq_max_msgs_per_role
        assert dlq.discard_new_per_subject is True
    finally:
        await nc.close()

    admin = connect_redis(s.redis_url, retry_s=0, **admin_login(s).redis_options())
    counter = connect_redis(s.redis_url, retry_s=0, **role_login(s, "counter").redis_options())
    try:
        assert await admin.config_get("maxmemory") == {"maxmemory": str(s.redis_max_memory_bytes)}
        assert await admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        own = keys.journal(s.subject_prefix, new_id(), "counter", "s")
        with pytest.raises(ResponseError, match="proto-max-bulk-len"):
            await counter.setrange(own, 200 * MIB, b"x")  # one command, a 200 MiB string
        assert await counter.exists(own) == 0
    finally:
        await admin.aclose()
        await counter.aclose()


@pytest.fixture
async def js_of(settings: MeshSettings) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(settings.nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_an_existing_stream_with_other_limits_is_updated(
    settings: MeshSettings, js_of: nats.js.JetStreamContext
) -> None:
    subjects = [f"{settings.subject_prefix}.event.>"]
    await js_of.add_stream(StreamConfig(name=settings.events_stream, subjects=subjects))
    before = (await js_of.stream_info(settings.events_stream)).config
    assert before.max_bytes in (None, -1)
    await ensure_streams(js_of, settings)
    after = (await js_of.stream_info(settings.events_stream)).config
    assert after.max_bytes == settings.events_max_bytes
    assert after.max_msgs == settings.events_max_msgs
    assert after.discard == DiscardPolicy.OLD


async def test_full_streams_refuse_or_drop_as_stated(
    settings: MeshSettings, js_of: nats.js.JetStreamContext
) -> None:
    limited = settings.model_copy(
        update={"events_max_msgs": 5, "tasks_max_msgs": 3, "dlq_max_msgs_per_role": 2}
    )
    await ensure_streams(js_of, limited)
    p = limited.subject_prefix

    for n in range(8):  # events: the oldest go, the newest are kept
        await js_of.publish(f"{p}.event.wf{n}.started", b"%d" % n)
    state = (await js_of.stream_info(limited.events_stream)).state
    assert (state.messages, state.first_seq, state.last_seq) == (5, 4, 8)

    for n in range(3):  # tasks: a stored task is never dropped for a new one
        await js_of.publish(f"{p}.agent.a.task", b"%d" % n)
    with pytest.raises(APIError, match="maximum messages exceeded"):
        await js_of.publish(f"{p}.agent.b.task", b"3")
    state = (await js_of.stream_info(limited.tasks_stream)).state
    assert (state.messages, state.first_seq) == (3, 1)

    for n in range(2):  # dead letters: per role
        await js_of.publish(f"{p}.dlq.kb", b"%d" % n)
    with pytest.raises(APIError, match="maximum messages per subject exceeded"):
        await js_of.publish(f"{p}.dlq.kb", b"2")
    await js_of.publish(f"{p}.dlq.billing", b"0")  # another role's still go in
    assert (await js_of.stream_info(limited.dlq_stream)).state.messages == 3

    too_big = b"x" * (limited.message_limit_bytes + 1)
    with pytest.raises(APIError, match="message size exceeds maximum allowed"):
        await js_of.publish(f"{p}.event.wf.started", too_big)


async def test_a_full_tasks_stream_is_backpressure_for_the_caller(mesh: Mesh) -> None:
    mesh.configure(tasks_max_msgs=2)
    client = await mesh.ingress()  # declares the streams with the limit; no replica runs
    for _ in range(2):
        await client.send_task(
            client.envelope(
                kind="task", workflow=new_id(), to="echo", body=Echo("x"), caller=mesh.token()
            )
        )
    with pytest.raises(PublishFailed, match="maximum messages exceeded"):
        await client.send_task(
            client.envelope(
                kind="task", workflow=new_id(), to="echo", body=Echo("y"), caller=mesh.token()
            )
        )


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with a 4 MiB memory limit."""
    with RedisServer(data_dir=tmp_path / "small-redis", maxmemory=4 * MIB) as server:
        yield server


async def fill(redis: Redis) -> list[str]:
    """Write 2 MiB, then lower the limit 1 MiB under what Redis holds: every write is
    refused until the filler is deleted (a limit met exactly flickers by a few bytes as
    client buffers come and go). Returns the filler's keys."""
    filler = [f"filler:{n}" for n in range(32)]
    for key in filler:
        await redis.set(key, b"x" * 64 * 1024)
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", used - MIB)
    with pytest.raises(OutOfMemoryError):
        await redis.set("filler:more", b"x")
    return filler


async def test_a_write_past_maxmemory_is_memory_full_and_nothing_is_evicted(
    small_redis: RedisServer, settings: MeshSettings
) -> None:
    redis = Redis.from_url(small_redis.url)
    try:
        await load_library(redis)
        ledger = StepLedger(redis, settings.subject_prefix, ttl_s=60)
        workflow = new_id()
        kept = Recorded(kind="reply", type="t", body=msgspec.Raw(b"1"))
        await ledger.journal(workflow, "planner", "s", kept)
        filler = await fill(redis)

        memory = WorkingMemory(redis, settings.subject_prefix, workflow, "planner")
        with pytest.raises(MemoryFull, match=r"memory-full: write .*maxmemory"):
            await memory.set("draft", "text")
        with pytest.raises(MemoryFull):
            await ledger.journal(workflow, "planner", "s2", kept)
        with pytest.raises(MemoryFull):
            await ledger.claim(workflow, "planner", "s3", "r1", 5000)

        async def effect() -> int:
            raise AssertionError("not run: its claim could not be written")

        with pytest.raises(MemoryFull):
            await ledger.once(workflow, "planner", "s", "pay", effect, int, holder="r1")
        assert await ledger.journaled(workflow, "planner", "s") is not None, "not evicted"
        assert await redis.exists(*filler) == len(filler), "nothing evicted"
    finally:
        await redis.aclose()


async def test_a_replica_on_a_full_redis_sends_the_task_back_and_completes_later(
    nats_server: NatsServer, small_redis: RedisServer, tmp_path: Path
) -> None:
    mesh = Mesh(isolated_settings(nats_server.url, small_redis.url, tmp_path))
    mesh.configure(retry_backoff_s=(0.3,), max_deliver=20)
    redis = Redis.from_url(small_redis.url)
    try:
        await load_library(redis)
        echo = EchoAgent("echo")
        (replica,) = await mesh.start_replicas(echo.agent)
        client = await mesh.ingress()
        filler = await fill(redis)
        request = client.request(
            "echo", Echo("hello"), token=mesh.token(), returns=Echo, timeout=20
        )
        asked = asyncio.create_task(request)
        await asyncio.sleep(1.5)
        assert not asked.done(), "refused by the ledger: sent back, not answered"
        assert echo.seen == [], "the handler did not run without its lease"
        await redis.delete(*filler)
        assert await asyncio.wait_for(asked, 20) == Echo("HELLO")
        await until(lambda: replica.handled >= 1, "the task acked")
        assert replica.handled == 1
    finally:
        await redis.aclose()
        await mesh.aclose()
