"""An agent process started by a supervisor drains and exits when the supervisor is killed
outright (``jetmesh run --parent-pid``, set by ``AgentProcess``): SIGKILL leaves the
supervisor no chance to stop its children, and each is in a session of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jetmesh import MeshSettings
from jetmesh.embedded import pid_alive, wait_gone
from jetmesh.processes import AgentProcess, settings_env
from jetmesh.runtime.parent import PARENT_CHECK_S, stop_when_orphaned
from tests.harness.agents import WORKER
from tests.harness.mesh import REPO_ROOT, Mesh

pytestmark = pytest.mark.integration

SUPERVISOR = """
import pathlib, sys, time
from jetmesh import MeshSettings
from jetmesh.processes import AgentProcess

log = pathlib.Path(sys.argv[1])
child = AgentProcess(["tests.harness.agents:agent"], MeshSettings(), log_file=log).start()
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_a_child_drains_and_exits_when_its_supervisor_is_sigkilled(
    mesh: Mesh, tmp_path: Path
) -> None:
    mesh.identity(WORKER)  # issued here, as a mesh's keys are before its processes start
    log = tmp_path / "worker.log"
    supervisor = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", SUPERVISOR, str(log)],
        stdout=subprocess.PIPE,
        env=settings_env(mesh.settings),
        cwd=REPO_ROOT,
        text=True,
    )
    child = 0
    try:
        assert supervisor.stdout is not None
        child = int(await asyncio.to_thread(supervisor.stdout.readline))
        await asyncio.sleep(2.5 * PARENT_CHECK_S)  # it looked for its parent and found it
        assert pid_alive(child), log.read_text()

        supervisor.send_signal(signal.SIGKILL)
        await asyncio.to_thread(supervisor.wait, 10)
        left = await asyncio.to_thread(wait_gone, [child], timeout=30.0)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        if supervisor.stdout is not None:
            supervisor.stdout.close()
    if left:  # not to leave it running for the next test
        os.kill(child, signal.SIGKILL)
    text = log.read_text()
    assert left == [], text
    assert f"(pid {supervisor.pid}) is gone: draining" in text, text
    assert "stopped after" in text, text  # drained, not killed


async def test_the_watch_sets_stop_once_the_parent_is_not_the_parent() -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(stop_when_orphaned(os.getpid(), stop, interval=0.01), 5.0)
    assert stop.is_set()  # this process's parent is not this process


async def test_the_watch_leaves_stop_alone_while_the_parent_lives() -> None:
    stop = asyncio.Event()
    watching = asyncio.create_task(stop_when_orphaned(os.getppid(), stop, interval=0.01))
    await asyncio.sleep(0.1)
    assert not stop.is_set()
    assert not watching.done()
    stop.set()  # stopped for another reason: the watch ends too
    await asyncio.wait_for(watching, 5.0)


def test_agent_processes_are_started_with_their_parent_named(tmp_path: Path) -> None:
    proc = AgentProcess(["x:agent"], MeshSettings(), log_file=tmp_path / "unused.log")
    assert proc.command()[-2:] == ["--parent-pid", str(os.getpid())]
