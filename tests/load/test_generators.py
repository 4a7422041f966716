"""Several generator processes: two real ones against the echo agent send the asked count
between them and their merged histogram counts every completion; each process's share of
the scenario; the suggestion of ``--processes auto``."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hdrh.histogram import HdrHistogram

from jetmesh import ConfigError
from jetmesh.load import LoadReport, Scenario, Window, markdown, read_report
from jetmesh.load.echo import agent as echo_agent
from jetmesh.load.generators import (
    GeneratorRun,
    merge_generators,
    parse_part,
    parse_processes,
    part_of,
    suggested_processes,
)
from jetmesh.load.scenario import (
    ClosedArrival,
    ConstantArrival,
    PoissonArrival,
    RampArrival,
    StepsArrival,
)
from tests.harness.mesh import Mesh, jetmesh

SCENARIO = """
name = "two-generators"
agent = "echo"
seconds = 1.5

[payload]
template = '{"text": "hello {n}"}'

[arrival]
model = "constant"
rate = 40

[slo]
p99_ms = 5000
no_loss = true
"""


async def test_two_processes_send_the_asked_count_and_merge_their_histograms(
    mesh: Mesh, tmp_path: Path
) -> None:
    await mesh.start_replicas(echo_agent)
    scenario = tmp_path / "two.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    code, stdout, err = await jetmesh(
        mesh, "load", "run", str(scenario), "--out", str(out), "--processes", "2"
    )
    assert code == 0, err
    assert "2 generator processes" in stdout
    report = read_report(out / "report.json")
    assert report.generators == 2
    assert (report.sent, report.completed, report.errors, report.lost) == (60, 60, 0, 0)
    assert report.arrival == "2 x constant 20/s"
    assert report.asked_rate == pytest.approx(40.0)
    histogram = HdrHistogram.decode(report.histogram)
    assert histogram.get_total_count() == report.completed
    assert sum(w.sent for w in report.timeline) == 60
    assert report.verdict == "pass"


def scenario(arrival: dict[str, object]) -> Scenario:
    return Scenario.model_validate(
        {"name": "s", "agent": "echo", "payload": {"template": "{}"}, "arrival": arrival}
    )


def test_each_process_gets_its_share_of_the_rate() -> None:
    constant = [part_of(scenario({"model": "constant", "rate": 300}), i, 3) for i in range(3)]
    assert [s.arrival for s, _ in constant] == [ConstantArrival(model="constant", rate=100)] * 3
    assert [d for _, d in constant] == pytest.approx([0, 1 / 300, 2 / 300])  # interleaved

    poisson = [
        part_of(scenario({"model": "poisson", "rate": 90, "seed": 7}), i, 3)[0] for i in (0, 2)
    ]
    assert [p.arrival for p in poisson] == [
        PoissonArrival(model="poisson", rate=30, seed=7),
        PoissonArrival(model="poisson", rate=30, seed=9),
    ]
    ramp, _ = part_of(scenario({"model": "ramp", "from": 10, "to": 50}), 1, 2)
    assert ramp.arrival == RampArrival(model="ramp", **{"from": 5, "to": 25})
    steps, _ = part_of(scenario({"model": "steps", "steps": [[100, 2], [40, 1]]}), 0, 4)
    assert steps.arrival == StepsArrival(model="steps", steps=[(25, 2), (10, 1)])

    closed = {"model": "closed", "concurrency": 5, "expected_interval_ms": 10}
    parts = [part_of(scenario(closed), i, 2)[0].arrival for i in range(2)]
    assert parts == [
        ClosedArrival(model="closed", concurrency=3, expected_interval_ms=20),
        ClosedArrival(model="closed", concurrency=2, expected_interval_ms=20),
    ]
    with pytest.raises(ConfigError, match="concurrency of at least 8"):
        part_of(scenario(closed), 0, 8)


def test_the_options() -> None:
    assert parse_processes("4") == 4
    assert parse_processes("auto") is None
    for wrong in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match="--processes"):
            parse_processes(wrong)
    assert parse_part("1/2") == (1, 2)
    for wrong in ("2/2", "1", "a/b"):
        with pytest.raises(ConfigError, match="--part"):
            parse_part(wrong)


REPORT = LoadReport(
    scenario="s",
    target="nats echo",
    started_at=0.0,
    seconds=10.0,
    warmup_s=0.0,
    arrival="constant 5000/s",
    asked_rate=5000.0,
    achieved_rate=2000.0,
    saturated=True,
    sent=20000,
    completed=20000,
    errors=0,
    lost=0,
    duplicated=0,
    dead_lettered=0,
    latency_ms={"p50": 1.0, "p99": 2.0},
    timeline=[Window(t=0, sent=1, completed=1, errors=0, p50_ms=1, p99_ms=2)],
)


def test_auto_suggests_enough_processes_for_the_rate_with_headroom() -> None:
    assert suggested_processes(REPORT) == 4  # 1.5 x 5000 / 2000, rounded up
    keeping_up = msgspec.structs.replace(REPORT, achieved_rate=5000.0)
    assert suggested_processes(keeping_up) == 2  # on rate but late: at least two
    assert suggested_processes(msgspec.structs.replace(REPORT, saturated=False)) == 1


def test_a_process_without_a_report_fails_the_merge() -> None:
    runs = [GeneratorRun(0, 0, REPORT, ""), GeneratorRun(1, 2, None, "scenario: bad\n")]
    with pytest.raises(ValueError, match="process 1: exit 2: scenario: bad"):
        merge_generators(runs)
    lagging = msgspec.structs.replace(REPORT, lag_p99_ms=80.0)
    merged = merge_generators([GeneratorRun(0, 1, REPORT, ""), GeneratorRun(1, 1, lagging, "")])
    assert (merged.generators, merged.sent, merged.saturated) == (2, 40000, True)
    assert merged.lag_p99_ms == 80.0  # the process furthest behind


def test_the_markdown_report_names_the_generator_processes() -> None:
    assert "Generator processes" not in markdown(REPORT)
    two = msgspec.structs.replace(REPORT, generators=2)
    assert "| Generator processes | 2 |" in markdown(two)
