"""The deadline rule and redelivery, with the default timeouts (AckWait 10 s, call timeout
30 s): a recorded step is answered from its record whatever the deadline; a step that
started is resumed by redelivery, even after its caller's deadline; only a first delivery
after the deadline, of a step nobody started, is refused (``deadline-passed``)."""

from __future__ import annotations

import asyncio
import signal
import time

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import MeshTimeout, WorkingMemory
from jetmesh.envelope import new_id
from jetmesh.memory import keys
from jetmesh.processes import AgentProcess
from jetmesh.runtime.ledger import StepLedger
from tests.harness.agents import Done, Job
from tests.harness.mesh import Echo, EchoAgent, Mesh, kinds

pytestmark = [pytest.mark.integration]

SLOW = "tests.harness.redelivery_agents:slow"


async def _publish(mesh: Mesh, sealed_task) -> asyncio.Future:
    reply = mesh.expect_reply(sealed_task.envelope)
    await (await mesh.ingress()).js.publish(
        mesh.subjects.task(sealed_task.envelope.to), sealed_task.data, headers=sealed_task.headers
    )
    return reply


async def test_a_recorded_step_is_answered_from_its_record_after_the_deadline(
    mesh: Mesh, echo: EchoAgent
) -> None:
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    token, workflow = mesh.token(), new_id()
    first = mesh.seal(Echo("hi"), token=token, workflow=workflow)
    assert (await asyncio.wait_for(await _publish(mesh, first), 10)).kind == "reply"
    # the same step again (a lost ack's redelivery, a re-sent call), after its deadline
    late = mesh.seal(Echo("hi"), token=token, workflow=workflow, deadline=time.time() - 5)
    again = await asyncio.wait_for(await _publish(mesh, late), 10)
    assert again.kind == "reply"
    assert msgspec.json.decode(again.body, type=Echo) == Echo("HI")
    assert echo.seen == ["hi"], "the handler did not run again"
    logged = await mesh.wait_events(
        workflow, lambda got: any("step already done" in e.event.detail for e in got)
    )
    assert [e.event.task for e in kinds(logged, "completed")] == [
        first.envelope.id,
        late.envelope.id,
    ]
    assert kinds(logged, "failed") == []
    assert await mesh.dead_letters("echo") == []


async def test_a_first_delivery_after_the_deadline_is_refused_as_not_started(
    mesh: Mesh, echo: EchoAgent
) -> None:
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    late = mesh.seal(Echo("hi"), token=mesh.token(), deadline=time.time() - 5)
    error = await asyncio.wait_for(await _publish(mesh, late), 10)
    assert error.kind == "error"
    (dead,) = await mesh.wait_dead_letters("echo", "deadline-passed")
    assert dead.detail.startswith("first delivered 5."), dead.detail
    assert "the step had not started and has no result, so it was not run" in dead.detail
    assert echo.seen == []


async def test_a_late_step_refused_is_refused_again_when_sent_again(
    mesh: Mesh, echo: EchoAgent
) -> None:
    """A refused first claim takes back its begun mark: the same step sent again after
    its deadline (another task) has still not started, and is refused too."""
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    token, workflow = mesh.token(), new_id()
    for _ in range(2):
        late = mesh.seal(Echo("hi"), token=token, workflow=workflow, deadline=time.time() - 5)
        assert (await asyncio.wait_for(await _publish(mesh, late), 10)).kind == "error"
    dead = await mesh.wait_dead_letters("echo", "deadline-passed", count=2)
    assert [d.reason for d in dead] == ["deadline-passed"] * 2
    assert echo.seen == []
    prefix = mesh.settings.subject_prefix
    async with Redis.from_url(mesh.settings.redis_url) as redis:
        assert await redis.exists(keys.begun(prefix, workflow, "echo", "echo")) == 0


async def test_a_step_begun_by_a_delivery_that_died_runs_when_sent_again_late(
    mesh: Mesh, echo: EchoAgent
) -> None:
    """A step an earlier claim began (its delivery died: the lease expired, no result)
    has started: the same step sent again after its deadline is resumed, not refused."""
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    token, workflow = mesh.token(), new_id()
    async with Redis.from_url(mesh.settings.redis_url) as redis:
        ledger = StepLedger(redis, mesh.settings.subject_prefix, ttl_s=60)
        died = await ledger.claim(workflow, "echo", "echo", "gone:1:1", lease_ms=1)
        assert (died.taken, died.first) == (True, True)
        await asyncio.sleep(0.05)  # its lease expires, no result recorded
        late = mesh.seal(Echo("hi"), token=token, workflow=workflow, deadline=time.time() - 5)
        reply = await asyncio.wait_for(await _publish(mesh, late), 10)
    assert reply.kind == "reply"
    assert msgspec.json.decode(reply.body, type=Echo) == Echo("HI")
    assert echo.seen == ["hi"]
    assert await mesh.dead_letters("echo") == []


async def _started_on(redis: Redis, mesh: Mesh, workflow: str, job: int) -> int:
    """The pid of the process that began ``job`` (waits for its first run)."""
    memory = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "slow")
    for _ in range(200):
        if await memory.get(f"runs_{job}", int) == 1:
            pid = await memory.get(f"pid_{job}", int)
            assert pid is not None
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the handler never began")


def _kill(procs: list[AgentProcess], pid: int) -> None:
    (doomed,) = [p for p in procs if p.pid == pid]
    assert doomed.proc is not None
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(5)
    assert doomed.proc.returncode == -signal.SIGKILL


async def test_a_killed_worker_is_resumed_by_redelivery_before_its_callers_deadline(
    mesh: Mesh, agent_processes
) -> None:
    """Default settings: the caller waits call_timeout_s (30 s); the worker running its
    task is SIGKILLed; the task comes back after AckWait (10 s) to the other process, which
    answers the caller's same call. No dead letter, no timeout."""
    assert (mesh.settings.ack_wait_s, mesh.settings.call_timeout_s) == (10.0, 30.0)
    mesh.identity("slow")
    procs = await agent_processes(SLOW, 2)
    client = await mesh.ingress()
    workflow = new_id()
    redis = Redis.from_url(mesh.settings.redis_url)
    try:
        began = time.monotonic()
        call = asyncio.create_task(
            client.request(
                "slow", Job(1, sleep_s=3.0), token=mesh.token(), returns=Done, workflow=workflow
            )
        )
        _kill(procs, await _started_on(redis, mesh, workflow, 1))
        done = await call  # the default timeout: call_timeout_s
        took = time.monotonic() - began
        (survivor,) = [p for p in procs if p.proc is not None and p.proc.poll() is None]
        assert done == Done(1, str(survivor.pid), 2), "answered by the redelivery"
        assert took < mesh.settings.call_timeout_s
        assert took > mesh.settings.ack_wait_s * 2 / 3, "it came back after AckWait"
        memory = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "slow")
        assert await memory.get("runs_1", int) == 2
        logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "completed")))
        assert [e.event.attempt for e in kinds(logged, "completed")] == [2]
        assert kinds(logged, "failed") == []
        assert await mesh.dead_letters("slow") == []
    finally:
        await redis.aclose()


async def test_a_started_task_redelivered_after_its_deadline_is_resumed_and_recorded(
    mesh: Mesh, agent_processes
) -> None:
    """A caller with a 3 s deadline (shorter than AckWait) gives up; the task, started
    before the deadline, is redelivered after it, resumed, and its result recorded: the
    same call sent again is answered from the record without a third run."""
    mesh.identity("slow")
    procs = await agent_processes(SLOW, 2)
    client = await mesh.ingress()
    token, workflow = mesh.token(), new_id()
    redis = Redis.from_url(mesh.settings.redis_url)
    memory = WorkingMemory(redis, mesh.settings.subject_prefix, workflow, "slow")
    job = Job(1, sleep_s=1.0)
    try:
        call = asyncio.create_task(
            client.call_envelope(
                "slow", job, workflow=workflow, caller=token, step="slow", timeout=3.0
            )
        )
        _kill(procs, await _started_on(redis, mesh, workflow, 1))
        with pytest.raises(MeshTimeout):
            await call
        logged = await mesh.wait_events(
            workflow, lambda got: bool(kinds(got, "completed")), timeout=20.0
        )
        (completed,) = kinds(logged, "completed")
        assert completed.event.attempt == 2, "resumed by its redelivery"
        assert kinds(logged, "failed") == []
        assert await mesh.dead_letters("slow") == []
        assert await memory.get("runs_1", int) == 2

        again = await client.call_envelope(
            "slow", job, workflow=workflow, caller=token, step="slow", timeout=10.0
        )
        assert again.kind == "reply"
        assert msgspec.json.decode(again.body, type=Done).attempt == 2, "the recorded reply"
        assert await memory.get("runs_1", int) == 2, "answered from the record, not run again"
    finally:
        await redis.aclose()
