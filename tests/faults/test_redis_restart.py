"""redis-server goes away mid-load and comes back (AOF, appendfsync always): workflows pause
and continue, and no acknowledged memory update or step record is lost."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from jetmesh import KeyStore, MeshClient, MeshSettings, Replica, Subjects
from jetmesh.embedded import RedisServer
from loadtest.tally import TALLY, send_load, tally_agent, wait_all_ran

pytestmark = [pytest.mark.integration, pytest.mark.fault]

LOAD = 400


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_workflows_continue_when_redis_server_restarts_mid_load(
    fresh_settings: MeshSettings, fresh_redis_server: RedisServer, how: str
) -> None:
    settings = fresh_settings
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(settings.subject_prefix)
    keys.issue(TALLY, subjects=subjects, ttl_s=600)
    cli = keys.issue("cli", subjects=subjects, ttl_s=600, ingress=True)
    replicas = [
        Replica(tally_agent(), settings, keys.identity(TALLY), roots=keys.roots()) for _ in range(2)
    ]
    for replica in replicas:
        await replica.start()
    try:
        async with MeshClient(settings, cli, roots=keys.roots()) as client:
            load = asyncio.create_task(send_load(client, client.mint_token("alice"), LOAD))
            for _ in range(1000):  # under way: a quarter handled
                if sum(r.handled for r in replicas) >= LOAD // 4:
                    break
                await asyncio.sleep(0.01)
            handled_before = sum(r.handled for r in replicas)
            assert LOAD // 4 <= handled_before < LOAD, "the restart falls in the middle"
            if how == "kill":
                fresh_redis_server.kill()
            else:
                fresh_redis_server.stop()
            await asyncio.sleep(1.0)
            during = sum(r.handled for r in replicas)
            await asyncio.to_thread(fresh_redis_server.start)

            sent = await load
            redis = Redis.from_url(settings.redis_url)
            try:
                runs = await wait_all_ran(redis, settings, [workflow for workflow, _ in sent])
            finally:
                await redis.aclose()
            assert during - handled_before < 64, "without Redis, steps wait (no unrecorded work)"
            assert runs.count(0) == 0, f"{runs.count(0)} tasks never ran (or lost their update)"
            assert [r for r in runs if r != 1] == [], "a handler ran twice"
            assert sum(r.handled for r in replicas) == LOAD
            dlq = await client.js.stream_info(settings.dlq_stream)
            assert dlq.state.messages == 0
    finally:
        for replica in replicas:
            await replica.drain()
