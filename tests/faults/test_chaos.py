"""Chaos: 1,000 research-shaped workflows (fan-out to three researchers, then a writer and a
critic loop) while random agent processes are SIGKILLed at least 20 times. Every workflow
completes with the expected report, no acknowledged task is lost, and every side effect
ran exactly once (counted in Redis by workflow and step).

The same run, larger and with a printed report, is ``make chaos`` (loadtest/chaos.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jetmesh import MeshSettings
from loadtest.chaos import ChaosConfig, run_chaos
from loadtest.research_shape import EffectTarget, expected_steps
from tests.harness.mesh import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CONFIG = ChaosConfig(
    workflows=1000,
    kills=24,
    replicas=2,
    in_flight=32,
    ack_wait_s=2.0,  # a killed replica's tasks are redelivered after 2 s
    request_timeout_s=60.0,
    max_seconds=150.0,  # the run stops by itself; what is unfinished then counts as failed
)


@pytest.mark.timeout(240)
async def test_research_workflows_survive_random_sigkills(
    settings: MeshSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the agent processes import loadtest.research_shape
    report = await run_chaos(settings, CONFIG, log_dir=tmp_path / "logs")
    summary = report.format(CONFIG)

    assert report.left_running == 0, "every agent process started was stopped"
    assert report.kills >= 20, summary
    assert report.redelivered > 0, "the kills caught tasks in flight"
    assert report.sent == report.completed == 1000, summary
    assert (report.wrong, dict(report.failed)) == (0, {}), summary
    assert report.dead_letters == 0, summary

    target = EffectTarget(settings.redis_url)
    try:
        counts = await target.counts(report.run)
    finally:
        await target.aclose()
    expected = {
        f"{workflow}:{step}": 1
        for workflow, question in report.sent_workflows
        for step in expected_steps(question)
    }
    assert len(expected) == 8000
    ran_other_than_once = {
        key: counts.get(key, 0) for key in expected.keys() | counts.keys() if counts.get(key) != 1
    }
    assert ran_other_than_once == {}, summary
