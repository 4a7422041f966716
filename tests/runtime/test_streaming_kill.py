"""SIGKILL a replica in the middle of a stream: the task goes to another replica, whose
handler streams again from the start; the indexes the killed run stored are neither stored
nor sent again, so the caller and the log see each index once."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from jetmesh import WorkingMemory
from jetmesh import events as ev
from jetmesh.runtime.streaming import Chunk, read_chunks, stream_request
from tests.harness.mesh import Mesh, kinds
from tests.harness.streaming_agents import Story, Told

pytestmark = [pytest.mark.integration, pytest.mark.fault]


async def test_a_stream_killed_mid_way_resumes_without_duplicates(
    mesh: Mesh, agent_processes
) -> None:
    mesh.configure(ack_wait_s=2.0)
    mesh.identity("teller")
    (doomed,) = await agent_processes("tests.harness.streaming_agents:teller", 1)
    client = await mesh.ingress()
    call = stream_request(
        client,
        "teller",
        Story(["once", "upon", "a", "time"], pause_after=2),
        token=mesh.token(),
        returns=Told,
        timeout=30.0,
    )

    async def read_all() -> list[Chunk]:
        return [chunk async for chunk in call]

    reading = asyncio.create_task(read_all())
    redis = Redis.from_url(mesh.settings.redis_url)
    memory = WorkingMemory(redis, mesh.settings.subject_prefix, call.workflow, "teller")
    try:
        for _ in range(200):
            if await memory.get("paused", int) is not None:
                break
            await asyncio.sleep(0.05)
        assert doomed.proc is not None
        assert await memory.get("paused", int) == doomed.proc.pid
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(5)
        assert doomed.proc.returncode == -signal.SIGKILL
        await agent_processes("tests.harness.streaming_agents:teller", 1)

        chunks = await reading
        assert [(c.index, c.value) for c in chunks] == [
            (0, "once@1"),
            (1, "upon@1"),
            (2, "a@2"),
            (3, "time@2"),
        ]
        assert await call.result() == Told(2, 4)
        stored = await read_chunks(client, call.workflow, step="teller", agent="teller")
        assert [c.value for c in stored] == ["once@1", "upon@1", "a@2", "time@2"]
        logged = await mesh.wait_events(call.workflow, lambda got: bool(kinds(got, "completed")))
        assert sorted(int(e.event.key) for e in kinds(logged, ev.CHUNK)) == [0, 1, 2, 3]
    finally:
        if not reading.done():
            reading.cancel()
        await redis.aclose()
