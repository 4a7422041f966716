"""The floor: bare nats-py request/reply between this process and a responder process,
measured on a real nats-server; a scenario's ``[floor]`` measured by ``run_load`` on the
servers it starts, kept in the report and shown with the run's ratio to it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import nats
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


async def test_the_durable_floor_stores_each_hop_and_deletes_its_streams(
    nats_server: NatsServer,
) -> None:
    floor = await measure_floor(
        nats_server.url, Floor(kind="durable", requests=300, warmup=50, concurrency=16)
    )
    assert (floor.kind, floor.requests, floor.errors) == ("durable", 300, 0)
    assert floor.stored == 2 * (300 + 50)  # each answered task and its event
    assert floor.rate > 0
    assert 0 < floor.p50_ms <= floor.p99_ms
    nc = await nats.connect(nats_server.url)
    try:
        names = await nc.jetstream().streams_info()
        assert not [s.config.name for s in names if (s.config.name or "").startswith("FLOOR_")]
    finally:
        await nc.close()


def test_a_floor_of_each_kind_at_most(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    both = SCENARIO.replace("[floor]", "[[floor]]") + '\n[[floor]]\nkind = "durable"\n'
    path.write_text(both)
    assert [f.kind for f in load_scenario(path).floors] == ["request", "durable"]
    path.write_text(both.replace('kind = "durable"', 'kind = "request"'))
    with pytest.raises(ConfigError, match="one \\[\\[floor\\]\\] table of each kind"):
        load_scenario(path)
    path.write_text(SCENARIO.replace("warmup = 100", 'kind = "stored"'))
    with pytest.raises(ConfigError, match=r"floor\.kind"):
        load_scenario(path)


async def test_a_run_with_both_floors_reports_both_and_both_ratios(tmp_path: Path) -> None:
    path = tmp_path / "both.toml"
    text = SCENARIO.replace("[floor]", "[[floor]]").replace("requests = 1500", "requests = 500")
    path.write_text(text + '\n[[floor]]\nkind = "durable"\nrequests = 300\nwarmup = 30\n')
    report = await run_load(load_scenario(path))
    assert report.lost == 0
    request, durable = report.floor, report.durable_floor
    assert request is not None
    assert durable is not None
    assert (request.kind, durable.kind) == ("request", "durable")
    assert (durable.errors, durable.stored) == (0, 2 * (300 + 30))
    ratio = floor_ratio(report, "durable")
    assert ratio == pytest.approx(report.completed / report.seconds / durable.rate)
    assert floor_ratio(report) == pytest.approx(report.completed / report.seconds / request.rate)

    page = markdown(report)
    assert f"**{ratio:.3f} of the durable floor**" in page
    console = Console(width=120, record=True)
    console.print(summary(report))
    assert "ratio to the durable floor" in console.export_text()
    lines = table([report]).splitlines()
    assert [line.split()[0] for line in lines[3:6]] == ["floor", "durable-floor", "floor-hop"]
    assert f"median ratio floor-hop/durable-floor: {ratio:.3f}" in lines

    written = tmp_path / "out" / "report.json"
    write_report(written, report)
    assert read_report(written).durable_floor == durable
