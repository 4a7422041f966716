"""redis-server goes away mid-load and comes back (AOF, appendfsync always): workflows pause
and continue, and no acknowledged memory update or step record is lost."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from jetmesh import MeshSettings
from jetmesh.embedded import RedisServer
from loadtest.tally import wait_all_ran
from tests.faults.tally_mesh import tally_mesh
from tests.harness.mesh import until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

LOAD = 400


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_workflows_continue_when_redis_server_restarts_mid_load(
    fresh_settings: MeshSettings, fresh_redis_server: RedisServer, how: str
) -> None:
    settings = fresh_settings
    async with tally_mesh(settings) as mesh:
        load = await mesh.load_under_way(LOAD)
        handled_before = mesh.handled
        if how == "kill":
            fresh_redis_server.kill()
        else:
            fresh_redis_server.stop()
        await asyncio.sleep(1.0)
        during = mesh.handled
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
        await until(lambda: mesh.handled >= LOAD, "every task acked")
        assert mesh.handled == LOAD
        dlq = await mesh.client.js.stream_info(settings.dlq_stream)
        assert dlq.state.messages == 0
