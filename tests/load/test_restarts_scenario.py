"""The restart scenario (``loadtest/scenarios/restarts.toml``, ``make restarts``) in short:
the same file, 8 s at 100 tasks a second, nats-server and then redis-server SIGKILLed and
started again once each. Every request is answered, and the audit finds every task the
stream acknowledged run exactly once, nothing lost and no dead letter."""

from __future__ import annotations

from pathlib import Path

from jetmesh.embedded import pid_alive
from jetmesh.load import (
    AuditRun,
    Fleet,
    RestartServerFault,
    Scenario,
    load_scenario,
    run_audit,
    run_load,
)
from tests.load.test_report_render import make_report

SCENARIO = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios" / "restarts.toml"


def trimmed() -> Scenario:
    """The scenario with fewer seconds and tasks, and its first two faults (a nats-server
    and a redis-server restart) moved into them."""
    scenario = load_scenario(SCENARIO, seconds=8, rate=100)
    first, second = scenario.faults[:2]
    faults = [first.model_copy(update={"at": 2.0}), second.model_copy(update={"at": 5.0})]
    return scenario.model_copy(update={"faults": faults})


def test_the_scenario_restarts_both_servers_in_turn_and_is_audited() -> None:
    scenario = load_scenario(SCENARIO)
    servers = [f.server for f in scenario.faults if isinstance(f, RestartServerFault)]
    assert servers == ["nats", "redis"] * 3
    assert scenario.seconds * scenario.arrival.rate == 20_000  # type: ignore[union-attr]
    assert scenario.audit is not None
    assert scenario.audit.check == "loadtest.restarts_audit:audit"
    assert scenario.slo.no_loss


async def test_every_acknowledged_task_runs_once_through_two_server_restarts() -> None:
    fleets: list[Fleet] = []
    report = await run_load(trimmed(), on_launch=fleets.append)
    assert report.sent == 800
    assert (report.completed, report.errors, report.lost) == (800, 0, 0)
    assert [(f.target, f.done) for f in report.faults] == [("nats", True), ("redis", True)]
    figures = {f.name: f for f in report.audit}
    assert list(figures) == [
        "tasks acknowledged",
        "handlers ran",
        "ran twice or more",
        "lost",
        "redelivered",
        "dead letters",
    ]
    assert figures["tasks acknowledged"].value == 800
    assert figures["handlers ran"].value == 800
    assert figures["ran twice or more"].value == 0
    assert figures["lost"].value == 0
    assert figures["dead letters"].value == 0
    assert all(f.ok for f in report.audit)
    assert report.verdict == "pass"
    assert not [pid for pid in fleets[0].all_pids() if pid_alive(pid)]


async def test_the_audit_refuses_servers_the_run_did_not_start() -> None:
    scenario = load_scenario(SCENARIO)
    assert scenario.audit is not None
    run = AuditRun(scenario=scenario, report=make_report(), settings=None, embedded=False)
    (figure,) = await run_audit(scenario.audit, run)
    assert figure.name == "audit failed"
    assert not figure.ok
    assert "needs the run's own servers" in figure.detail
