"""The poison scenarios, short: the baseline and the poison run each start their own servers
and poison agent; in the poison run one item in ten fails on every delivery, and its audit
finds every poison item sent in the dead-letter stream and nothing else; ``jetmesh load
compare --limit`` judges the pair by its ratios."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from jetmesh import MeshSettings
from jetmesh.cli.app import app
from jetmesh.load import load_scenario, run_load, write_report
from loadtest.poison_audit import poison_sent

SCENARIOS = Path(__file__).parents[2] / "loadtest" / "scenarios"
SHORT = {"seconds": 2.0, "warmup_s": 0.5, "rate": 50.0}
"""2.5 s at 50/s: 125 items sent, 12 of them poison (one in ten; the warm-up's included)."""


def test_the_shipped_run_sends_twenty_poison_items_a_second() -> None:
    scenario = load_scenario(SCENARIOS / "poison.toml")

    total_s = scenario.warmup_s + scenario.seconds
    assert poison_sent(scenario) == round(20 * total_s)
    assert poison_sent(load_scenario(SCENARIOS / "poison-baseline.toml")) == 0
    assert scenario.mesh is not None
    assert scenario.mesh.settings["max_deliver"] == 4


async def test_every_poison_item_is_dead_lettered_and_compare_judges_the_pair(
    tmp_path: Path,
) -> None:
    settings = MeshSettings()
    baseline_scenario = load_scenario(SCENARIOS / "poison-baseline.toml", **SHORT)
    poison_scenario = load_scenario(SCENARIOS / "poison.toml", **SHORT)

    baseline = await run_load(baseline_scenario, settings)
    poison = await run_load(poison_scenario, settings)

    assert (baseline.sent, baseline.completed, baseline.errors, baseline.lost) == (100, 100, 0, 0)
    assert (baseline.dead_lettered, baseline.audit, baseline.verdict) == (0, [], "pass")
    assert (poison.sent, poison.completed, poison.errors, poison.lost) == (100, 90, 10, 0)
    assert poison.dead_lettered == 12  # the warm-up's two as well
    figures = {f.name: f for f in poison.audit}
    assert set(figures) == {
        "poison items sent",
        "poison items dead-lettered",
        "other items dead-lettered",
    }
    assert figures["poison items sent"].value == 12
    dead = figures["poison items dead-lettered"]
    assert (dead.value, dead.least, dead.most) == (12, 12, 12)
    assert figures["other items dead-lettered"].value == 0
    assert poison.verdict == "pass"

    a, b = tmp_path / "baseline.json", tmp_path / "poison.json"
    write_report(a, baseline)
    write_report(b, poison)
    compare = ["load", "compare", str(a), str(b)]
    held = CliRunner().invoke(app, [*compare, "--limit", "p99=1000"])
    assert held.exit_code == 0, held.output
    assert "Limits: B passes" in held.output
    assert "Overall: **worse**" in held.output  # dead-lettered: the bands say worse
    none_lost = CliRunner().invoke(app, [*compare, "--limit", "p99=1000", "--limit", "lost=1"])
    assert none_lost.exit_code == 0, none_lost.output
    dead_lettered = CliRunner().invoke(app, [*compare, "--limit", "dead-lettered=100"])
    assert dead_lettered.exit_code == 1, dead_lettered.output
    assert "Limits: **B fails** (dead-lettered over 100x A)." in dead_lettered.output
