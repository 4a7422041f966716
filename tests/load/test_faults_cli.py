"""``jetmesh load run`` with a ``[mesh]`` and ``[[faults]]``: it launches its own servers
and an echo replica, pauses the replica mid-run, answers every request, lists the fault in
its summary and report, and leaves nothing running. And the faults' schedule: a fault not
due before the run ends is recorded as not done."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from jetmesh import ConfigError
from jetmesh.embedded import pid_alive
from jetmesh.load import (
    Fleet,
    MeshSpec,
    Scenario,
    driver,
    load_scenario,
    play_faults,
    read_report,
    run_load,
)
from jetmesh.load.faults import KillFault
from jetmesh.settings import MeshSettings

SCENARIO = """
name = "paused-echo"
agent = "echo"
seconds = 3
timeout_s = 15

[payload]
template = '{"n": {n}}'

[arrival]
model = "constant"
rate = 20

[mesh]
processes = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
embedded = true

[[faults]]
at = 1
kind = "pause"
target = "echo"
seconds = 0.5

[slo]
no_loss = true
"""


async def test_the_command_launches_pauses_and_stops_its_mesh(tmp_path: Path) -> None:
    path = tmp_path / "paused.toml"
    path.write_text(SCENARIO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "jetmesh.cli", "load", "run", str(path), "--out", str(tmp_path / "out")),
        env={**os.environ, "JETMESH_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "pause echo: done" in out.decode()
    report = read_report(tmp_path / "out" / "report.json")
    assert (report.sent, report.completed, report.lost) == (60, 60, 0)
    (fault,) = report.faults
    assert (fault.kind, fault.target, fault.done) == ("pause", "echo", True)
    assert "| pause | echo | done |" in (tmp_path / "out" / "report.md").read_text()
    match = re.search(r"pid (\d+) stopped", fault.detail)
    assert match is not None
    assert not pid_alive(int(match.group(1)))
    # the launched processes' logs are kept next to the report
    (log,) = (tmp_path / "out" / "logs").glob("echo*.log")
    assert "echo replica" in log.read_text()


class StrikeRecorder(Fleet):
    """A fleet that launches nothing and records the kills asked of it."""

    async def kill(
        self, role: str, *, restart: bool = False, pick: random.Random | None = None
    ) -> str:
        return f"{role} killed"


async def test_a_fault_not_due_before_the_run_ends_is_recorded_not_done(tmp_path: Path) -> None:
    fleet = StrikeRecorder(settings=MeshSettings(), log_dir=tmp_path, targets={"echo": []})
    faults = [
        KillFault(at=3600, kind="kill", role="late"),
        KillFault(at=0, kind="kill", role="echo"),
    ]
    async with play_faults(faults, fleet) as records:
        await asyncio.sleep(0.05)
    assert [(r.target, r.done, r.detail) for r in records] == [
        ("echo", True, "echo killed"),
        ("late", False, "not due before the run ended"),
    ]


def test_a_mesh_is_a_package_or_jetmesh_run_lines() -> None:
    assert MeshSpec(launch="services.support").replicas == 1
    for wrong in (
        {},
        {"launch": "services.support", "processes": [["jetmesh", "run", "a.b:agent"]]},
        {"processes": [["python", "-m", "a.b"]]},
    ):
        with pytest.raises(ValidationError):
            MeshSpec.model_validate(wrong)


async def test_dead_letters_are_counted_on_the_stream_of_the_runs_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a type the echo has no handler for: each task is dead-lettered, each caller told so
    scenario = Scenario.model_validate(
        {
            "name": "dead-letters",
            "agent": "echo",
            "seconds": 1,
            "timeout_s": 10,
            "payload": {"template": '{"n": {n}}', "type": "nobody.Thing/1"},
            "arrival": {"model": "constant", "rate": 5},
            "mesh": {
                "processes": [["jetmesh", "run", "jetmesh.load.echo:agent"]],
                "embedded": True,
            },
        }
    )
    # the errors' reasons are not read: the count is the stream's
    monkeypatch.setattr(driver, "_dead_lettered", lambda _failure: False)
    report = await run_load(scenario)
    assert (report.sent, report.completed, report.errors, report.lost) == (5, 0, 5, 0)
    assert report.dead_lettered == 5


async def test_a_fault_on_a_role_the_mesh_does_not_launch_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(SCENARIO.replace('target = "echo"', 'target = "triage"'))
    fleets: list[Fleet] = []
    with pytest.raises(ConfigError, match="'triage', which the mesh does not launch"):
        await run_load(load_scenario(path), on_launch=fleets.append)
    assert fleets == []
