"""Fixtures of the integration tests: an in-process mesh on the session servers.

``mesh`` owns everything a test starts (replicas, the ingress client, raw connections) and
stops it at teardown; see :mod:`tests.harness.mesh` for what it offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jetmesh import MeshSettings
from jetmesh.processes import AgentProcess
from tests.harness.mesh import REPO_ROOT, AgentProcesses, EchoAgent, Mesh
from tests.harness.secured import SecuredMesh


@pytest.fixture
async def mesh(settings: MeshSettings) -> AsyncIterator[Mesh]:
    """A mesh on this test's isolated settings; ``mesh.configure(...)`` changes them first."""
    built = Mesh(settings)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """A mesh of this test's own on servers that enforce a small policy
    (:mod:`tests.harness.secured`), started as `jetmesh up` starts them."""
    built = await asyncio.to_thread(SecuredMesh(tmp_path / "state").up)
    try:
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


@pytest.fixture
def echo() -> EchoAgent:
    """A fresh ``echo`` agent that records what its handler ran for."""
    return EchoAgent("echo")


@pytest.fixture
def agent_processes(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AgentProcesses]:
    """Start ``jetmesh run <target>`` processes on the mesh's settings; all are stopped
    (SIGTERM, then SIGKILL) at teardown. They run from the repository root, so that
    ``tests.harness.agents`` imports."""
    monkeypatch.chdir(REPO_ROOT)
    started: list[AgentProcess] = []

    async def start(target: str, count: int) -> list[AgentProcess]:
        first = len(started)
        procs = [
            AgentProcess([target], mesh.settings, log_file=tmp_path / "logs" / f"agent{i}.log")
            for i in range(first, first + count)
        ]
        started.extend(procs)
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        return procs

    try:
        yield start
    finally:
        with ThreadPoolExecutor() as pool:  # each drains for a moment: stop them together
            list(pool.map(lambda proc: proc.stop(timeout=10.0), started))
