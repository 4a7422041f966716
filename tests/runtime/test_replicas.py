"""Replicas of one role share its work: in-process replicas and real ``jetmesh run``
processes, 300 tasks with 64 in flight, and a replica drained by SIGTERM mid-flight."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from jetmesh import MeshClient
from tests.harness.agents import WORKER, Done, Job, worker_agent
from tests.harness.mesh import AgentProcesses, Mesh, until

pytestmark = pytest.mark.integration

TARGET = "tests.harness.agents:agent"
TASKS = 300
IN_FLIGHT = 64


async def run_jobs(
    client: MeshClient, token: str, jobs: list[Job], in_flight: int
) -> list[tuple[Done, float]]:
    """Send every job with at most ``in_flight`` waiting; each reply with when it came."""
    room = asyncio.Semaphore(in_flight)

    async def one(job: Job) -> tuple[Done, float]:
        async with room:
            done = await client.request(WORKER, job, token=token, returns=Done, timeout=30)
            return done, time.monotonic()

    return await asyncio.gather(*(one(job) for job in jobs))


async def wait_in_flight(mesh: Mesh, client: MeshClient, count: int) -> None:
    """Wait until ``count`` tasks of the worker are delivered and not yet acknowledged."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = await client.js.consumer_info(mesh.settings.tasks_stream, WORKER)
        if info.num_ack_pending >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} tasks never were in flight at once")


def assert_each_once(
    results: list[tuple[Done, float]], count: int, *, first_deliveries: bool = True
) -> Counter[str]:
    """Every reply answers its own request and none is missing (and, unless a replica gave
    tasks back, each was handled on its first delivery); how many each replica handled."""
    assert [done.id for done, _ in results] == list(range(count))
    if first_deliveries:
        assert all(done.attempt == 1 for done, _ in results), "some task was delivered twice"
    return Counter(done.by for done, _ in results)


async def test_in_process_replicas_share_the_work(mesh: Mesh) -> None:
    replicas = []
    for i in range(3):  # one Agent object each, so that replies say which replica ran them
        replicas += await mesh.start_replicas(worker_agent(f"replica{i}"))
    client = await mesh.ingress()
    jobs = [Job(i, sleep_s=0.002) for i in range(TASKS)]
    results = await run_jobs(client, mesh.token(), jobs, IN_FLIGHT)
    by = assert_each_once(results, TASKS)
    assert sorted(by) == ["replica0", "replica1", "replica2"]
    assert all(n > 0 for n in by.values()), by
    await until(lambda: sum(r.handled for r in replicas) >= TASKS, "every task acked")
    assert [r.handled for r in replicas] == [by[f"replica{i}"] for i in range(3)]


async def test_replica_processes_share_the_work(
    mesh: Mesh, agent_processes: AgentProcesses
) -> None:
    mesh.identity(WORKER)  # issued once here, so the processes do not race to issue it
    procs = await agent_processes(TARGET, 3)
    client = await mesh.ingress()
    jobs = [Job(i, sleep_s=0.002) for i in range(TASKS)]
    results = await run_jobs(client, mesh.token(), jobs, IN_FLIGHT)
    by = assert_each_once(results, TASKS)
    assert sorted(by) == sorted(str(p.pid) for p in procs)
    assert all(n > 0 for n in by.values()), by


async def test_sigterm_drains_a_replica_process_without_losing_tasks(
    mesh: Mesh, agent_processes: AgentProcesses
) -> None:
    mesh.identity(WORKER)
    procs = await agent_processes(TARGET, 3)
    victim = procs[0]
    client = await mesh.ingress()
    # 3 replicas x 8 slots = 24 tasks in flight at once; the other 16 wait in the stream.
    jobs = [Job(i, sleep_s=1.5) for i in range(40)]
    sending = asyncio.ensure_future(run_jobs(client, mesh.token(), jobs, len(jobs)))
    await wait_in_flight(mesh, client, 24)
    # Delivered is not yet started: give the replicas a moment to take what the server
    # sent them (a replica told to stop first gives back what it has not started).
    await asyncio.sleep(0.5)
    terminated_at = time.monotonic()
    exit_code = await asyncio.to_thread(victim.stop, 15.0)
    results = await sending
    assert exit_code == 0
    by = assert_each_once(results, len(jobs), first_deliveries=False)
    victims = [when for done, when in results if done.by == str(victim.pid)]
    assert 0 < len(victims) <= 8, "the victim finishes what it holds and takes nothing new"
    assert all(when > terminated_at for when in victims), "it was still working when told"
    assert set(by) <= {str(p.pid) for p in procs}
