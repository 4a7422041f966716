"""A replica frozen (SIGSTOP) past AckWait, its task redelivered and done elsewhere, then
thawed: it finishes late, the server takes its late ack, and the side effect still
happened once. Idempotency comes from the step key, not from the ack."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from jetmesh import WorkingMemory
from jetmesh.envelope import new_id
from tests.harness.agents import Plan, Report
from tests.harness.mesh import Mesh

pytestmark = [pytest.mark.integration, pytest.mark.fault]


async def test_a_late_replica_does_not_repeat_the_side_effect(mesh: Mesh, agent_processes) -> None:
    mesh.configure(ack_wait_s=1.5)
    mesh.identity("pauser")
    (frozen,) = await agent_processes("tests.harness.agents:pauser", 1)
    client = await mesh.ingress()
    workflow = new_id()
    request = asyncio.create_task(
        client.request(
            "pauser",
            Plan(pause_s=1.0),
            token=mesh.token(),
            returns=Report,
            workflow=workflow,
            timeout=30.0,
        )
    )
    redis = Redis.from_url(mesh.settings.redis_url)
    effects = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "pauser")
    assert frozen.proc is not None
    try:
        await asyncio.sleep(0.5)  # the handler is in its pause
        frozen.proc.send_signal(signal.SIGSTOP)
        (other,) = await agent_processes("tests.harness.agents:pauser", 1)
        report = await request  # redelivered after AckWait, done by the other replica
        assert report.parts == [other.pid]
        assert report.attempt >= 2  # (a redelivery may first go to the frozen one too)
        frozen.proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(2.0)  # the thawed replica finishes its handler, acks late
        assert frozen.proc.poll() is None, "the thawed replica is still serving"
        assert await effects.get("effects", int) == 1
    finally:
        if frozen.proc.poll() is None:
            frozen.proc.send_signal(signal.SIGCONT)
        await redis.aclose()
