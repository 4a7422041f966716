"""Faults on a schedule: a run that launches its own echo mesh (embedded servers in a
temporary state directory, two replicas), kills a replica mid-run and starts another,
restarts nats-server mid-run, and leaves nothing running. A scenario with faults and no
mesh is refused."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import msgspec
import pytest
from pydantic import ValidationError

from jetmesh import ConfigError
from jetmesh.embedded import pid_alive, wait_gone
from jetmesh.load import (
    FaultRecord,
    Fleet,
    load_scenario,
    markdown,
    play_faults,
    plots,
    read_report,
    run_load,
    write_report,
)
from jetmesh.load.faults import KillFault
from jetmesh.settings import MeshSettings
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


class KillRecorder(Fleet):
    """A fleet that launches nothing and says which kills were asked of it."""

    async def kill(
        self, role: str, *, restart: bool = False, pick: random.Random | None = None
    ) -> str:
        replicas = [f"{role}#{n}" for n in (1, 2, 3)]
        which = pick.choice(replicas) if pick is not None else role
        return f"{which} killed" + (", another started" if restart else "")


def repeated_kill(**fields: object) -> KillFault:
    return KillFault.model_validate({"at": 1, "kind": "kill", "role": "echo", **fields})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"times": 3}, "needs every_s"),
        ({"every_s": 2}, "every_s needs times > 1"),
        ({"times": 3, "every_s": [5, 2]}, "low <= high"),
        ({"times": 3, "every_s": 0}, "greater than 0"),
        ({"times": 3, "every_s": [0, 2]}, "greater than 0"),
        ({"times": 0, "every_s": 2}, "greater than or equal to 1"),
        ({"times": 3, "every_s": 2, "roles": ["echo"]}, "Extra inputs"),
    ],
)
def test_a_repeated_kill_is_validated(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        repeated_kill(**fields)


def test_a_repeated_kill_strikes_on_a_schedule_its_seed_fixes() -> None:
    assert repeated_kill().schedule() == [1.0]
    assert repeated_kill(times=4, every_s=2.5).schedule() == [1.0, 3.5, 6.0, 8.5]
    drawn = repeated_kill(times=50, every_s=[2, 5], seed=7).schedule()
    assert drawn == repeated_kill(times=50, every_s=[2, 5], seed=7).schedule()
    assert drawn != repeated_kill(times=50, every_s=[2, 5], seed=8).schedule()
    gaps = [b - a for a, b in itertools.pairwise(drawn)]
    assert len(drawn) == 50
    assert drawn[0] == 1.0
    assert all(2 - 1e-6 <= gap <= 5 + 1e-6 for gap in gaps)
    assert max(gaps) - min(gaps) > 1  # drawn, not fixed


def test_a_scenario_reads_a_repeated_kill(tmp_path: Path) -> None:
    fault = 'kind = "kill"\nrole = "echo"\nrestart = true\ntimes = 5\nevery_s = [1, 2]\nseed = 3'
    (read,) = load_scenario(scenario_file(tmp_path, fault)).faults
    assert isinstance(read, KillFault)
    assert (read.times, read.every_s, read.seed, read.restart) == (5, (1.0, 2.0), 3, True)


async def test_each_strike_of_a_repeated_kill_is_a_record_and_the_late_ones_not_done(
    tmp_path: Path,
) -> None:
    fleet = KillRecorder(settings=MeshSettings(), log_dir=tmp_path, targets={"echo": []})
    kills = [KillFault(at=0, kind="kill", role="echo", times=20, every_s=0.1, restart=True)]
    async with play_faults(kills, fleet) as records:
        await asyncio.sleep(0.25)
    assert len(records) == 20
    done = [r for r in records if r.done]
    assert [r.detail for r in done] == [
        f"strike {n}/20: echo killed, another started" for n in (1, 2, 3)
    ]
    assert [r.at for r in records[3:]] == [round(n * 0.1, 3) for n in range(3, 20)]
    assert {r.detail for r in records[3:]} == {"not due before the run ended"}
    assert [r.at for r in records] == sorted(r.at for r in records)


async def _strikes(tmp_path: Path, **fields: object) -> list[str]:
    fleet = KillRecorder(settings=MeshSettings(), log_dir=tmp_path, targets={"echo": []})
    kill = repeated_kill(at=0, times=12, every_s=0.01, **fields)
    async with play_faults([kill], fleet) as records:
        await asyncio.sleep(0.3)
    return [r.detail.split(": ", 1)[1] for r in records if r.done]


async def test_a_kill_of_a_random_replica_draws_it_from_the_seed(tmp_path: Path) -> None:
    drawn = await _strikes(tmp_path, replica="random", seed=7)
    assert len(drawn) == 12
    assert len(set(drawn)) > 1  # not always the same replica
    assert drawn == await _strikes(tmp_path, replica="random", seed=7)
    assert drawn != await _strikes(tmp_path, replica="random", seed=8)
    assert set(await _strikes(tmp_path)) == {"echo killed"}  # the oldest, by default
