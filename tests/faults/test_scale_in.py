"""Scale-in under load: a role runs as three ``jetmesh run`` processes on servers that
enforce its policy (started as ``jetmesh up`` starts them); while a bounded load of tasks
runs, two of the processes get SIGTERM, as Kubernetes or an autoscaler scaling in would.

Every task is answered, none is lost, no handler ran twice for one task (each run adds one
to its workflow's ``runs``, as :mod:`loadtest.tally` counts), the tasks the two had in
flight are finished by their drain, and both exit 0 within ``drain_timeout_s``; the third
takes the rest of the load. Nothing is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, Context, MeshClient
from jetmesh.envelope import new_id
from jetmesh.logins import admin_login
from jetmesh.memory.connection import without_userinfo
from jetmesh.policy import parse_policy
from jetmesh.processes import AgentProcess
from loadtest.tally import TALLY, Tally, runs_of
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(180)]

TASKS = 240
IN_FLIGHT = 48
"""Tasks asked at once: twice what the three processes run at once, so each is full."""
PAUSE_S = 0.25
"""A handler's mean pause; task ``n`` pauses from half of it to one and a half times it
(:func:`pause_for`), so that the processes' tasks do not end in step."""
CONCURRENCY = 8
DRAIN_TIMEOUT_S = 10.0
POLICY = {"roles": {"cli": {"ingress": True, "calls": [TALLY]}, TALLY: {}}}


class Stepped(msgspec.Struct, frozen=True):
    """Who answered task ``n``, and when its handler ended."""

    __mesh_type__ = "test.Stepped/1"

    n: int
    pid: int
    finished: float


agent = Agent(TALLY, concurrency=CONCURRENCY, description="a step of work, counted")
"""For the processes: ``jetmesh run tests.faults.test_scale_in:agent``."""


def pause_for(n: int) -> float:
    return PAUSE_S * (0.5 + (n % 5) / 4)


@agent.handler
async def step(msg: Tally, ctx: Context) -> Stepped:
    await asyncio.sleep(pause_for(msg.n))
    await ctx.memory.update("runs", int, lambda n: (n or 0) + 1)
    return Stepped(msg.n, os.getpid(), time.time())


@pytest.fixture
async def enforced(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Servers of this test that enforce :data:`POLICY`; AckWait 3 s (what a process
    drained without acking would wait for), drain timeout 10 s."""
    mesh = SecuredMesh(tmp_path / "state", parse_policy(POLICY))
    mesh.settings = mesh.settings.model_copy(
        update={"ack_wait_s": 3.0, "drain_timeout_s": DRAIN_TIMEOUT_S}
    )
    await asyncio.to_thread(mesh.up)
    try:
        yield mesh
    finally:
        try:
            await mesh.aclose()
        finally:
            await asyncio.to_thread(mesh.down)


async def terminate(proc: AgentProcess) -> tuple[int | None, float]:
    """SIGTERM; its exit code (None: still running after ``drain_timeout_s``) and how long
    it took."""
    assert proc.proc is not None
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(proc.proc.wait, DRAIN_TIMEOUT_S)
    except Exception:  # subprocess.TimeoutExpired: the assertion says so
        return None, time.monotonic() - started
    return code, time.monotonic() - started


async def test_two_of_three_processes_scaled_in_under_load(
    enforced: SecuredMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the processes import this module
    procs = [
        AgentProcess(
            ["tests.faults.test_scale_in:agent"],
            enforced.settings,
            log_file=tmp_path / "logs" / f"tally{i}.log",
        )
        for i in range(3)
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        client: MeshClient = await enforced.ingress()
        token = client.mint_token("alice")
        room = asyncio.Semaphore(IN_FLIGHT)
        answered: dict[str, Stepped] = {}
        a_quarter = asyncio.Event()

        async def one(n: int) -> None:
            workflow = new_id()
            async with room:
                answered[workflow] = await client.request(
                    TALLY, Tally(n), token=token, returns=Stepped, workflow=workflow, timeout=60
                )
            if len(answered) >= TASKS // 4:
                a_quarter.set()

        load = asyncio.gather(*(one(n) for n in range(TASKS)))
        await a_quarter.wait()
        await asyncio.sleep(PAUSE_S / 2)  # not just as tasks end: while they run
        assert len(answered) < TASKS // 2, "the scale-in falls in the middle of the load"
        leaving, staying = procs[:2], procs[2]
        sigterm_at = time.time()
        exits = await asyncio.gather(*(terminate(p) for p in leaving))
        await load

        # every task answered, each by one run of its handler
        assert sorted(s.n for s in answered.values()) == list(range(TASKS))
        redis = Redis.from_url(
            without_userinfo(enforced.settings.redis_url),
            **admin_login(enforced.settings).redis_options(),
        )
        try:
            runs = await runs_of(redis, enforced.settings, list(answered))
        finally:
            await redis.aclose()
        assert [n for n in runs if n != 1] == [], "a task lost (0) or run twice (2+)"

        # the leaving processes drained: what they ran at SIGTERM finished, then exit 0
        for (code, took), proc in zip(exits, leaving, strict=True):
            assert code == 0, proc.log_file.read_text()[-2000:]
            assert took < DRAIN_TIMEOUT_S
            theirs = [s for s in answered.values() if s.pid == proc.pid]
            assert any(s.finished > sigterm_at for s in theirs), "in flight at SIGTERM"
        assert any(
            s.pid == staying.pid and s.finished > sigterm_at + 1.0 for s in answered.values()
        ), "the staying process took the rest"
        assert {s.pid for s in answered.values()} == {p.pid for p in procs}
    finally:
        with ThreadPoolExecutor() as pool:
            codes = list(pool.map(lambda p: p.stop(timeout=DRAIN_TIMEOUT_S), procs))
    assert codes == [0, 0, 0]
    assert all(p.proc is not None and p.proc.poll() is not None for p in procs), "left running"
