"""``jetmesh load``: a run against the echo agent writes report.json and exits by its
verdict; a wrong scenario exits 2; compare exits by whether B is worse."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from jetmesh.cli.app import app
from jetmesh.load import LoadReport, Window, read_report, write_report
from jetmesh.load.echo import agent as echo_agent
from tests.harness.mesh import Mesh, jetmesh

SCENARIO = """
name = "cli-hop"
agent = "echo"
seconds = 1.5

[payload]
template = '{{"text": "hello {{n}}"}}'

[arrival]
model = "constant"
rate = 40

[slo]
p99_ms = {p99_ms}
no_loss = true
"""

REPORT = LoadReport(
    scenario="hop",
    target="nats echo",
    started_at=1_800_000_000.0,
    seconds=2.0,
    warmup_s=0.0,
    arrival="constant 50/s",
    asked_rate=50.0,
    achieved_rate=50.0,
    saturated=False,
    sent=100,
    completed=100,
    errors=0,
    lost=0,
    duplicated=0,
    dead_lettered=0,
    latency_ms={"p50": 2.0, "p90": 3.0, "p99": 5.0, "p99.9": 6.0, "max": 6.0, "mean": 2.2},
    timeline=[
        Window(t=float(t), sent=50, completed=50, errors=0, p50_ms=2, p99_ms=5) for t in (0, 1)
    ],
)


async def test_a_run_writes_its_report_and_exits_by_its_verdict(mesh: Mesh, tmp_path: Path) -> None:
    await mesh.start_replicas(echo_agent)
    passing = tmp_path / "pass.toml"
    passing.write_text(SCENARIO.format(p99_ms=5000))
    code, out, err = await jetmesh(mesh, "load", "run", str(passing), "--out", str(tmp_path / "a"))
    assert code == 0, err
    report = read_report(tmp_path / "a" / "report.json")
    assert (report.sent, report.completed, report.verdict) == (60, 60, "pass")
    assert " ms  rate " in out  # the line a second
    assert "cli-hop: PASS" in out

    failing = tmp_path / "fail.toml"
    failing.write_text(SCENARIO.format(p99_ms=0.001))
    code, out, _ = await jetmesh(
        mesh,
        "load",
        "run",
        str(failing),
        "--out",
        str(tmp_path / "b"),
        "--quiet",
        "--seconds",
        "1",
    )
    assert code == 1
    report = read_report(tmp_path / "b" / "report.json")
    assert report.verdict == "fail"
    assert report.sent == 40
    assert " ms  rate " not in out  # --quiet: no line a second
    assert "cli-hop: FAIL" in out


def test_a_wrong_scenario_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SCENARIO.format(p99_ms=-1))
    result = CliRunner().invoke(app, ["load", "run", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "slo.p99_ms" in result.output
    assert not (tmp_path / "report.json").exists()


def test_a_scenario_that_cannot_run_exits_2_before_anything_starts(tmp_path: Path) -> None:
    """A fault on a role the mesh does not launch, and an audit that cannot be imported,
    are found before the servers start (the run would otherwise fail after its load)."""
    mesh = '[mesh]\nprocesses = [["jetmesh", "run", "jetmesh.load.echo:agent"]]\n'
    cases = {
        "fault": mesh + '[[faults]]\nat = 1\nkind = "kill"\nrole = "writer"\n',
        "audit": '[audit]\ncheck = "no_such_module_here:count"\n',
    }
    for name, tail in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(SCENARIO.format(p99_ms=100) + tail)
        out = tmp_path / name
        result = CliRunner().invoke(app, ["load", "run", str(path), "--out", str(out)])
        assert result.exit_code == 2, (name, result.output)
        assert ("'writer'" if name == "fault" else "no_such_module_here") in result.output
        assert not out.exists()


def test_compare_a_run_with_itself_is_not_worse(tmp_path: Path) -> None:
    fixture = tmp_path / "report.json"
    write_report(fixture, REPORT)
    result = CliRunner().invoke(app, ["load", "compare", str(fixture), str(fixture)])
    assert result.exit_code == 0, result.output
    missing = CliRunner().invoke(app, ["load", "compare", str(fixture), str(tmp_path / "no")])
    assert missing.exit_code == 2
