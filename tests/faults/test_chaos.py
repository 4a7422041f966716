"""Chaos, short: the shipped chaos scenario (``loadtest/scenarios/chaos.toml``: research-
shaped workflows, every role two ``jetmesh run`` processes, AckWait 2 s) for 10 s at 10
workflows a second while each role's replicas are SIGKILLed twice (and each replaced).
Every workflow completes with the expected report, nothing is dead-lettered, every side
effect ran exactly once (the scenario's audit, counted in Redis by workflow and step), and
nothing the run started outlives it.

The full run is ``make chaos`` (60 s at 20 a second, 32 kills).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jetmesh.embedded import wait_gone
from jetmesh.load import Fleet, load_scenario, run_load
from jetmesh.load.faults import KillFault
from tests.harness.mesh import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.fault]

SCENARIO = REPO_ROOT / "loadtest" / "scenarios" / "chaos.toml"
ROLES = ("orchestrator", "researcher", "writer", "critic")
STEPS = 8
"""Tasks (and effects) per workflow: the orchestrator, 3 researchers, 2 x (writer, critic)."""


def twice_each_role() -> list[KillFault]:
    """Each role's replicas killed at 1-4 s and again 4 s later, each one replaced."""
    return [
        KillFault(at=1 + i, kind="kill", role=role, restart=True, times=2, every_s=4)
        for i, role in enumerate(ROLES)
    ]


def logs_tail(logs: Path, lines: int = 6) -> str:
    """The last ``lines`` of each process's log, for a failure's message."""
    return "\n".join(
        f"{log.name}: {line}"
        for log in sorted(logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()[-lines:]
    )


@pytest.mark.timeout(120)
async def test_research_workflows_survive_repeated_sigkills(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the agent processes import loadtest.research_mesh
    scenario = load_scenario(SCENARIO, seconds=10, rate=10)
    scenario = scenario.model_copy(update={"faults": twice_each_role()})
    fleets: list[Fleet] = []
    report = await run_load(scenario, on_launch=fleets.append, log_dir=tmp_path / "logs")
    figures = {f.name: f for f in report.audit}
    summary = "\n".join(f"{f.name} {f.value:g} {f.detail}" for f in report.audit)
    counts = (report.sent, report.completed, report.errors, report.lost)

    assert counts == (100, 100, 0, 0), f"{summary}\n{logs_tail(tmp_path / 'logs')}"
    assert report.dead_lettered == 0
    kills = [f for f in report.faults if f.kind == "kill"]
    assert len(kills) == 8
    assert all(f.done for f in kills), [f.detail for f in kills]
    assert figures["agent processes killed"].value == 8
    assert figures["answers right"].value == 100, summary
    assert figures["effects expected"].value == 100 * STEPS
    assert figures["effects ran"].value >= 100 * STEPS
    for name in ("answers wrong", "effects duplicated", "effects missing", "effects unexpected"):
        assert figures[name].value == 0, summary
    assert all(f.ok for f in report.audit), summary
    assert report.verdict == "pass"
    (fleet,) = fleets
    started = fleet.all_pids()
    assert len(started) == 2 * len(ROLES) + 8 + 2  # the replicas, a replacement per kill, servers
    assert wait_gone(started, timeout=5.0) == []
