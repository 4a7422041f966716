"""A scenario's ``[mesh] cluster`` and ``[mesh] env``: a short run on a three-node cluster
started as ``jetmesh up --cluster 3`` starts it (every stream at 3 replicas, asked of
JetStream as the admin while the mesh is up, by the scenario's audit), every request
answered and nothing left running; a run whose processes get the OTLP variables from
``[mesh] env`` exports their spans; a cluster without embedded servers, and a fault on a
cluster's server, are refused."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from pydantic import ValidationError

from jetmesh import ConfigError
from jetmesh.embedded import wait_gone
from jetmesh.load import AuditFigure, AuditRun, Fleet, MeshSpec, load_scenario, run_load
from jetmesh.logins import admin_login
from jetmesh.settings import MeshSettings
from tests.harness.otlp import OtlpReceiver

SCENARIO = """
name = "{name}"
agent = "echo"
seconds = 2
warmup_s = 0
timeout_s = 20

[payload]
template = '{{"text": "hello {{n}}", "id": "{{uuid}}"}}'

[arrival]
model = "constant"
rate = 10

[mesh]
processes = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
embedded = true
{mesh}
"""

CLUSTER = """cluster = 3

[mesh.settings]
step_ledger = true

[audit]
check = "tests.load.test_cluster_scenario:replicas"
"""


async def replicas(run: AuditRun) -> list[AuditFigure]:
    """Each stream's replicas and the cluster's size, asked of JetStream as the admin."""
    s = run.settings
    assert s is not None
    nc = await nats.connect(s.nats_url.split(","), **admin_login(s).nats_options())
    try:
        js = nc.jetstream()
        streams = (s.tasks_stream, s.events_stream, s.dlq_stream, f"KV_{s.registry_bucket}")
        figures = []
        for stream in streams:
            info = await js.stream_info(stream)
            figures.append(
                AuditFigure(name=stream, value=info.config.num_replicas or 1, least=3, most=3)
            )
        figures.append(AuditFigure(name="nodes", value=len(s.nats_url.split(",")), least=3))
        return figures
    finally:
        await nc.close()


def scenario_file(tmp_path: Path, name: str, mesh: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, mesh=mesh))
    return path


async def test_a_cluster_run_has_every_stream_at_three_replicas(tmp_path: Path) -> None:
    fleets: list[Fleet] = []
    scenario = load_scenario(scenario_file(tmp_path, "echo-on-a-cluster", CLUSTER))
    report = await run_load(scenario, on_launch=fleets.append)
    (fleet,) = fleets
    assert report.sent == 20
    assert (report.completed, report.errors, report.lost) == (20, 0, 0)
    figures = {f.name: (f.value, f.ok) for f in report.audit}
    assert figures == {
        "MESH_TASKS": (3, True),
        "MESH_EVENTS": (3, True),
        "MESH_DLQ": (3, True),
        "KV_MESH_KEYS": (3, True),
        "nodes": (3, True),
    }
    assert report.verdict == "pass"
    assert fleet.settings.stream_replicas == 3
    assert fleet.settings.redis_url.startswith("redis+sentinel://")
    assert fleet.settings.redis_wait_replicas == 1  # as jetmesh up --cluster 3
    started = fleet.all_pids()
    assert len(started) == 1 + 3 + 2 + 3  # echo, nats-1..3, redis-1..2, sentinel-1..3
    assert wait_gone(started, timeout=5.0) == []


async def test_mesh_env_reaches_the_processes(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        env = "".join(f'{name} = "{value}"\n' for name, value in receiver.env().items())
        path = scenario_file(tmp_path, "echo-traced", f"\n[mesh.env]\n{env}")
        report = await run_load(load_scenario(path))
        assert (report.completed, report.lost) == (20, 0)
        spans = receiver.wait_for(lambda spans: len(spans) >= 20)
    # the agent's own spans (this process, the caller, exported none: no OTEL_* here)
    assert {span.service for span in spans} == {"echo"}


async def test_a_cluster_needs_embedded_servers_and_refuses_server_faults(
    tmp_path: Path,
) -> None:
    argv = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
    with pytest.raises(ValidationError, match="cluster needs embedded"):
        MeshSpec(processes=argv, cluster=3)
    settings = MeshSettings(state_dir=tmp_path)
    fleet = Fleet(settings=settings, log_dir=tmp_path, targets={}, embedded=True, cluster=3)
    with pytest.raises(ConfigError, match="started a cluster"):
        await fleet.restart_server("nats", down_s=0.1)
    with pytest.raises(ConfigError, match="started a cluster"):
        await fleet.pause("nats", seconds=0.1)
