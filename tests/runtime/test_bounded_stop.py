"""Stopping always ends: a replica whose steps before closing do not return is closed
anyway, and a connection whose flush and drain do not return is closed without them."""

from __future__ import annotations

import asyncio
import time

import pytest

from jetmesh import mesh_connection
from jetmesh.runtime import replica as replica_module
from jetmesh.runtime.replica import ReplicaState
from tests.harness.mesh import EchoAgent, Mesh

pytestmark = [pytest.mark.integration]


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_a_replica_whose_stop_hangs_is_closed_within_its_bound(
    mesh: Mesh, echo: EchoAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica_module, "STOP_GRACE_S", 0.5)
    (replica,) = await mesh.start_replicas(echo.agent)
    monkeypatch.setattr(replica._feed, "stop", _forever)  # a step that never returns
    began = time.monotonic()
    await asyncio.wait_for(replica.drain(timeout=0.2), 10)
    assert time.monotonic() - began < 3.0, "2 x 0.2 s + 0.5 s, then closing"
    assert replica.state is ReplicaState.STOPPED
    assert replica.mesh.nc.is_closed


async def test_a_connection_whose_drain_hangs_is_closed_without_it(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mesh_connection, "CLOSE_GRACE_S", 0.3)
    mesh.configure(drain_timeout_s=0.2)
    client = await mesh.ingress()
    monkeypatch.setattr(client.nc, "drain", _forever)
    began = time.monotonic()
    await asyncio.wait_for(client.close(), 10)
    assert time.monotonic() - began < 3.0, "0.2 s + 0.3 s, then closed"
    assert client.nc.is_closed
