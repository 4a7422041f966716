"""A lost ack after completion: the worker recorded its step, answered its caller and
acked, and nats-server is SIGKILLed before it kept the ack. The task is delivered again
after the restart, after its caller's deadline: it is answered from the record (no
``deadline-passed`` dead letter, no ``failed`` event) and its handler does not run again.
Default timeouts (AckWait 10 s); the caller's own call has a 2 s deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jetmesh import MeshClient, MeshSettings, WorkingMemory
from jetmesh.bus.streams import through_elections
from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.envelope import new_id
from tests.conftest import isolated_settings
from tests.harness.agents import Done, Job
from tests.harness.mesh import Mesh, kinds

pytestmark = [pytest.mark.integration, pytest.mark.fault]

SLOW = "tests.harness.redelivery_agents:slow"


@pytest.fixture
def settings(
    fresh_nats_server: NatsServer, fresh_redis_server: RedisServer, tmp_path: Path
) -> MeshSettings:
    """The mesh on servers of this test's own (it kills nats-server)."""
    return isolated_settings(fresh_nats_server.url, fresh_redis_server.url, tmp_path)


async def test_a_lost_ack_is_answered_from_the_record_after_the_deadline(
    mesh: Mesh, agent_processes, fresh_nats_server: NatsServer
) -> None:
    assert mesh.settings.ack_wait_s == 10.0
    mesh.identity("slow")
    await agent_processes(SLOW, 1)
    client = await mesh.ingress()
    redis = Redis.from_url(mesh.settings.redis_url)
    try:
        workflow, answered = await lose_an_ack(mesh, client, fresh_nats_server)
        logged = await mesh.wait_events(
            workflow,
            lambda got: any("step already done" in e.event.detail for e in got),
            timeout=25.0,
        )
        again = [e for e in kinds(logged, "completed") if "step already done" in e.event.detail]
        assert again, "the task was not delivered again"
        assert time.monotonic() - answered > 2.0, "delivered again after the deadline"
        assert again[0].event.attempt == 2
        assert kinds(logged, "failed") == []
        assert await mesh.dead_letters("slow") == []
        memory = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "slow")
        assert await memory.get("runs_1", int) == 1, "the handler ran once"
    finally:
        await redis.aclose()


async def lose_an_ack(
    mesh: Mesh, client: MeshClient, server: NatsServer, tries: int = 5
) -> tuple[str, float]:
    """A workflow whose one task was answered (attempt 1) and acked, and whose ack
    nats-server lost: SIGKILLed once it has taken the ack, before it wrote the consumer's
    state (at most every 100 ms; a busy machine can be slower than that, and the ack is
    then on disk: the next try). Returns the workflow and when it was answered."""
    stream = mesh.settings.tasks_stream
    for _ in range(tries):
        workflow = new_id()
        done = await client.request(
            "slow", Job(1), token=mesh.token(), returns=Done, workflow=workflow, timeout=2.0
        )
        assert done.attempt == 1
        await mesh.settled("slow", timeout=5.0, poll_s=0)  # as soon as the ack is taken
        server.kill()  # the ack is taken; the consumer's state not yet written
        answered = time.monotonic()
        await asyncio.to_thread(server.start)
        info = await through_elections(lambda: client.js.consumer_info(stream, "slow"))
        if info.num_ack_pending == 1:  # delivered, and its ack lost with the server
            return workflow, answered
    raise AssertionError(f"nats-server kept the ack in each of {tries} tries")
