"""A scenario's ``[audit]``: read from the file, the function found and run, its figures
judged against their bounds, and what a broken audit function gives."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from jetmesh import ConfigError
from jetmesh.load import (
    AuditFigure,
    AuditRun,
    LoadReport,
    load_scenario,
    markdown,
    run_audit,
    with_audit,
)

SCENARIO = """
name = "audited"
agent = "echo"
[payload]
template = '{"text": "x"}'
[arrival]
model = "constant"
rate = 10
[audit]
check = "fake_audit_module:count"
[audit.options]
expected = 3
"""


@pytest.fixture
def audit_module():
    module = types.ModuleType("fake_audit_module")

    async def count(run: AuditRun) -> list[AuditFigure]:
        expected = float(run.options["expected"])  # type: ignore[arg-type]
        return [
            AuditFigure(name="ran", value=3, least=expected),
            AuditFigure(name="ran twice", value=run.report.duplicated, most=0, detail="ids"),
        ]

    async def boom(run: AuditRun) -> list[AuditFigure]:
        raise RuntimeError("redis went away")

    async def wrong(run: AuditRun) -> list[AuditFigure]:
        return {"ran": 3}  # type: ignore[return-value]

    def not_async(run: AuditRun) -> list[AuditFigure]:
        return []

    for f in (count, boom, wrong, not_async):
        setattr(module, f.__name__, f)
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def _report(duplicated: int = 0) -> LoadReport:
    return LoadReport(
        scenario="audited",
        target="nats echo",
        started_at=0.0,
        seconds=1.0,
        warmup_s=0.0,
        arrival="constant 10/s",
        asked_rate=10.0,
        achieved_rate=10.0,
        saturated=False,
        sent=10,
        completed=10,
        errors=0,
        lost=0,
        duplicated=duplicated,
        dead_lettered=0,
        latency_ms={"p50": 1.0, "p99": 2.0},
        timeline=[],
    )


def _run(tmp_path: Path, duplicated: int = 0, check: str = "count") -> AuditRun:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace(":count", f":{check}"))
    scenario = load_scenario(path)
    assert scenario.audit is not None
    return AuditRun(
        scenario=scenario,
        report=_report(duplicated),
        settings=None,
        options=scenario.audit.options,
    )


async def test_figures_within_their_bounds_pass(tmp_path: Path, audit_module) -> None:
    run = _run(tmp_path)
    assert run.scenario.audit is not None
    figures = await run_audit(run.scenario.audit, run)
    assert [(f.name, f.value, f.ok) for f in figures] == [("ran", 3, True), ("ran twice", 0, True)]
    report = with_audit(run.report, figures)
    assert report.verdict == "pass"
    page = markdown(report)
    assert "## Audit" in page
    assert "| ran twice | 0 | <= 0 | pass | ids |" in page


async def test_a_figure_out_of_bounds_fails_the_run(tmp_path: Path, audit_module) -> None:
    run = _run(tmp_path, duplicated=2)
    assert run.scenario.audit is not None
    report = with_audit(run.report, await run_audit(run.scenario.audit, run))
    assert report.verdict == "fail"
    assert [f.name for f in report.audit if not f.ok] == ["ran twice"]
    assert "| ran twice | 2 | <= 0 | **FAIL** | ids |" in markdown(report)


@pytest.mark.parametrize(
    ("check", "said"),
    [("boom", "raised RuntimeError: redis went away"), ("wrong", "did not return a list")],
)
async def test_an_audit_that_breaks_is_a_failing_figure(
    tmp_path: Path, audit_module, check: str, said: str
) -> None:
    run = _run(tmp_path, check=check)
    assert run.scenario.audit is not None
    (figure,) = await run_audit(run.scenario.audit, run)
    assert (figure.name, figure.ok) == ("audit failed", False)
    assert said in figure.detail


@pytest.mark.parametrize(
    ("check", "said"),
    [
        ("fake_audit_module:not_async", "is not an async function"),
        ("fake_audit_module:missing", "has no 'missing'"),
        ("no_such_module_here:count", "cannot import no_such_module_here"),
    ],
)
async def test_an_audit_that_cannot_be_found_is_a_config_error(
    tmp_path: Path, audit_module, check: str, said: str
) -> None:
    run = _run(tmp_path)
    assert run.scenario.audit is not None
    spec = run.scenario.audit.model_copy(update={"check": check})
    with pytest.raises(ConfigError, match=said):
        await run_audit(spec, run)


def test_a_malformed_check_is_refused_when_read(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace("fake_audit_module:count", "not a function name"))
    with pytest.raises(ConfigError, match=r"audit\.check"):
        load_scenario(path)


def test_figure_bounds() -> None:
    assert AuditFigure(name="x", value=5, least=3, most=5).ok
    assert not AuditFigure(name="x", value=6, least=3, most=5).ok
    assert not AuditFigure(name="x", value=2, least=3).ok
    assert AuditFigure(name="x", value=1e9).ok


def test_mesh_settings_are_validated_as_settings() -> None:
    from jetmesh.load.fleet import _with_overrides
    from jetmesh.settings import MeshSettings

    tuned = _with_overrides(
        MeshSettings(), {"ack_wait_s": 2, "call_timeout_s": 10, "retry_backoff_s": [0.2, 0.5]}
    )
    assert (tuned.ack_wait_s, tuned.call_timeout_s) == (2.0, 10.0)
    assert tuned.retry_backoff_s == (0.2, 0.5)
    with pytest.raises(ConfigError, match="not settings: nope"):
        _with_overrides(MeshSettings(), {"nope": 1})
    with pytest.raises(ConfigError, match=r"mesh\.settings"):
        _with_overrides(MeshSettings(), {"ack_wait_s": "soon"})
