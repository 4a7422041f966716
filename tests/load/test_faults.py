"""Faults on a schedule: a run that launches its own echo mesh (embedded servers in a
temporary state directory, two replicas), kills a replica mid-run and starts another,
restarts nats-server mid-run, and leaves nothing running. A scenario with faults and no
mesh is refused."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from jetmesh import ConfigError
from jetmesh.embedded import pid_alive, wait_gone
from jetmesh.load import (
    FaultRecord,
    Fleet,
    load_scenario,
    markdown,
    plots,
    read_report,
    run_load,
    write_report,
)
from tests.load.test_report_render import make_report

SCENARIO = """
name = "echo-under-faults"
agent = "echo"
seconds = 6
timeout_s = 15

[payload]
template = '{{"text": "hello {{n}}", "id": "{{uuid}}"}}'

[arrival]
model = "constant"
rate = 50

[mesh]
processes = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
replicas = 2
embedded = true

[[faults]]
at = 2
{fault}
"""

KILL = 'kind = "kill"\nrole = "echo"\nrestart = true'
RESTART_NATS = 'kind = "restart-server"\nserver = "nats"\ndown_s = 0.5'


def scenario_file(tmp_path: Path, fault: str) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(SCENARIO.format(fault=fault))
    return path


async def test_a_killed_replica_is_replaced_and_no_request_is_lost(tmp_path: Path) -> None:
    fleets: list[Fleet] = []
    report = await run_load(load_scenario(scenario_file(tmp_path, KILL)), on_launch=fleets.append)
    (fleet,) = fleets
    assert report.sent == 300
    assert (report.completed, report.errors, report.lost) == (300, 0, 0)
    assert report.dead_lettered == 0
    (fault,) = report.faults
    assert (fault.kind, fault.target, fault.done) == ("kill", "echo", True)
    assert 1.5 <= fault.at <= 4.0
    assert "echo#1" in fault.detail
    assert "echo#3 ready" in fault.detail
    started = fleet.all_pids()
    assert len(started) == 3 + 2  # three echo processes over the run, nats and redis
    assert wait_gone(started, timeout=5.0) == []
    path = tmp_path / "out" / "report.json"
    write_report(path, report)
    assert read_report(path).faults == report.faults


async def test_a_restarted_nats_server_leaves_counts_that_add_up(tmp_path: Path) -> None:
    fleets: list[Fleet] = []
    path = scenario_file(tmp_path, RESTART_NATS)
    report = await run_load(load_scenario(path), on_launch=fleets.append)
    assert report.sent == 300
    assert report.sent == report.completed + report.errors + report.lost
    assert report.completed > 0
    (fault,) = report.faults
    assert (fault.kind, fault.target, fault.done) == ("restart-server", "nats", True)
    assert "down 0.5 s" in fault.detail
    started = fleets[0].all_pids()
    assert len(started) == 2 + 2 + 1  # two echo processes, redis, nats twice
    assert not [pid for pid in started if pid_alive(pid)]


def test_faults_without_a_launched_mesh_are_refused(tmp_path: Path) -> None:
    text = SCENARIO.format(fault=KILL)
    no_mesh = text.replace("[mesh]", "[unused]").split("[unused]")[0] + (
        '[[faults]]\nat = 2\nkind = "kill"\nrole = "echo"\n'
    )
    path = tmp_path / "no-mesh.toml"
    path.write_text(no_mesh)
    with pytest.raises(ConfigError, match="faults need a launched mesh"):
        load_scenario(path)


def test_a_server_fault_needs_the_runs_own_servers(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        SCENARIO.format(fault=RESTART_NATS).replace("embedded = true", "embedded = false")
    )
    with pytest.raises(ConfigError, match=r"mesh\.embedded = true"):
        load_scenario(path)


def test_the_markdown_lists_the_faults_and_the_plots_mark_them(tmp_path: Path) -> None:
    report = msgspec.structs.replace(
        make_report(),
        faults=[
            FaultRecord(at=2.0, kind="kill", target="echo", done=True, detail="echo#1 killed"),
            FaultRecord(at=9.0, kind="pause", target="nats", done=False, detail="not due"),
        ],
    )
    page = markdown(report)
    assert "## Faults" in page
    assert "| 2.0 | kill | echo | done | echo#1 killed |" in page
    assert "| 9.0 | pause | nats | NOT DONE | not due |" in page
    assert "## Faults" not in markdown(make_report())
    without = {p.name: p.read_bytes() for p in plots(make_report(), tmp_path / "a")}
    marked = {p.name: p.read_bytes() for p in plots(report, tmp_path / "b")}
    assert without.keys() == marked.keys()
    assert without["latency_over_time.png"] != marked["latency_over_time.png"]
