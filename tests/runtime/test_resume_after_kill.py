"""SIGKILL a replica in the middle of a handler: the task goes to another replica, the
handler runs again, the completed call comes from the journal and nothing runs twice."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from jetmesh import WorkingMemory
from jetmesh.envelope import new_id
from tests.harness.agents import Plan, Report
from tests.harness.mesh import Mesh, kinds

pytestmark = [pytest.mark.integration, pytest.mark.fault]


async def test_a_killed_handler_resumes_on_another_replica(mesh: Mesh, agent_processes) -> None:
    mesh.configure(ack_wait_s=2.0)
    mesh.identity("planner")
    mesh.identity("counter")
    await agent_processes("tests.harness.agents:counter", 1)
    (doomed,) = await agent_processes("tests.harness.agents:planner", 1)
    client = await mesh.ingress()
    workflow = new_id()
    request = asyncio.create_task(
        client.request(
            "planner",
            Plan(pause_s=3.0),
            token=mesh.token(),
            returns=Report,
            workflow=workflow,
            timeout=30.0,
        )
    )
    redis = Redis.from_url(mesh.settings.redis_url)
    runs = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "counter")
    # The first call's reply in the planner's journal: the handler now sleeps. (The
    # callee's count comes earlier, before its reply has reached the planner: a kill then
    # would leave nothing journaled.)
    pattern = f"{mesh.settings.subject_prefix}:journal:planner:{workflow}:*"

    async def journaled() -> list[bytes]:
        return [k for k in await redis.keys(pattern) if not k.endswith(b"#begun")]

    try:
        for _ in range(200):
            if await journaled():
                break
            await asyncio.sleep(0.05)
        assert len(await journaled()) == 1, "the first call's reply journaled"
        assert await runs.get("runs_1", int) == 1
        assert doomed.proc is not None
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(5)
        assert doomed.proc.returncode == -signal.SIGKILL
        await agent_processes("tests.harness.agents:planner", 1)

        report = await request
        assert report == Report([1, 2], 2), "answered by the re-run, on its second delivery"
        assert await runs.get("runs_1", int) == 1, "the completed call was not sent again"
        assert await runs.get("runs_2", int) == 1
        logged = await mesh.wait_events(workflow, lambda got: len(kinds(got, "reply")) == 1)
        assert [e.event.detail for e in kinds(logged, "reply")] == ["from the journal"]
    finally:
        await redis.aclose()
