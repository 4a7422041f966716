"""The floor: bare nats-py request/reply between this process and a responder process,
measured on a real nats-server; a scenario's ``[floor]`` measured by ``run_load`` on the
servers it starts, kept in the report and shown with the run's ratio to it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from jetmesh import ConfigError
from jetmesh.cli.load import summary
from jetmesh.embedded import NatsServer
from jetmesh.load import (
    Floor,
    floor_ratio,
    load_scenario,
    markdown,
    measure_floor,
    read_report,
    run_load,
    write_report,
)
from loadtest.bench import table

SCENARIO = """
name = "floor-hop"
agent = "echo"
seconds = 2
timeout_s = 10

[payload]
template = '{"text": "hello {n}"}'

[arrival]
model = "closed"
concurrency = 8

[mesh]
processes = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
embedded = true

[floor]
requests = 1500
concurrency = 16
payload_bytes = 100
warmup = 100
"""


async def test_the_floor_is_measured_on_a_real_server(nats_server: NatsServer) -> None:
    floor = await measure_floor(nats_server.url, Floor(requests=2000, warmup=200))
    assert floor.requests == 2000
    assert floor.errors == 0
    assert floor.rate > 0
    assert 0 < floor.seconds < 30
    assert 0 < floor.p50_ms <= floor.p99_ms <= floor.p999_ms
    assert (floor.concurrency, floor.payload_bytes) == (64, 256)


async def test_a_server_that_is_not_there_fails_the_floor() -> None:
    with pytest.raises(RuntimeError, match="responder did not start"):
        await measure_floor("nats://127.0.0.1:9", Floor(requests=10, warmup=0))


def test_the_floor_section_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace("concurrency = 16", "concurrency = 0"))
    with pytest.raises(ConfigError, match=r"floor\.concurrency"):
        load_scenario(path)
    defaults = Floor()
    assert (defaults.concurrency, defaults.payload_bytes) == (64, 256)


async def test_a_run_with_a_floor_reports_it_and_its_ratio(tmp_path: Path) -> None:
    path = tmp_path / "floor.toml"
    path.write_text(SCENARIO)
    report = await run_load(load_scenario(path))
    assert report.completed > 0
    assert report.lost == 0
    floor = report.floor
    assert floor is not None
    assert (floor.requests, floor.errors, floor.concurrency, floor.payload_bytes) == (
        1500,
        0,
        16,
        100,
    )
    assert floor.rate > 0
    assert floor.p50_ms <= floor.p99_ms
    ratio = floor_ratio(report)
    assert ratio is not None
    assert ratio == pytest.approx(report.completed / report.seconds / floor.rate)
    assert 0 < ratio < 1  # a signed, stored hop is slower than a bare request/reply

    page = markdown(report)
    assert "## Floor" in page
    assert f"**{ratio:.3f} of the floor**" in page
    console = Console(width=120, record=True)
    console.print(summary(report))
    shown = console.export_text()
    assert "ratio to the floor" in shown
    assert f"{ratio:.3f}" in shown
    lines = table([report]).splitlines()
    assert lines[3].startswith("floor ")
    assert lines[4].startswith("floor-hop ")
    assert lines[-1] == f"median ratio floor-hop/floor: {ratio:.3f}"

    written = tmp_path / "out" / "report.json"
    write_report(written, report)
    assert read_report(written).floor == floor
    old = json.loads(written.read_text())
    del old["floor"]  # a report written before floors existed
    written.write_text(json.dumps(old))
    assert read_report(written).floor is None
    assert floor_ratio(msgspec.structs.replace(report, floor=None)) is None
