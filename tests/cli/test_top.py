"""``jetmesh top`` on servers that enforce the policy: the rows of ``jetmesh agents``
surveyed again and again, with each role's handled/s and errors/s between two surveys;
``--iterations`` and ``--once`` stop on their own, Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from jetmesh.cli.agents import Rates
from jetmesh.cli.top import Frame, frames, rates
from jetmesh.processes import AgentProcess, settings_env
from jetmesh.runtime.discovery import STATS_TYPE, Seen
from tests.harness.agents import Plan, Report, counter, planner
from tests.harness.mesh import REPO_ROOT, until
from tests.harness.secured import SecuredMesh


def seen(role: str, instance: str, handled: int, errors: int | None = 0) -> Seen:
    data: dict[str, Any] = {"in_flight": 0, "handled": handled, "errors": errors}
    stats = {"type": STATS_TYPE, "endpoints": [{"name": "h", "data": data}]}
    return Seen(role, instance, stats=stats)


def test_rates_are_the_counts_added_between_two_surveys_per_second() -> None:
    before = [seen("kb", "a", 10, 1), seen("kb", "b", 4, 0), seen("critic", "c", 7)]
    after = [
        seen("kb", "a", 30, 2),
        seen("kb", "b", 4, 0),
        seen("kb", "new", 100, 50),  # not in the survey before: adds nothing yet
        seen("critic", "c", 7),
        seen("writer", "w", 9),  # a role not seen before: no rate
    ]
    assert rates(before, after, 2.0) == {
        "kb": Rates(handled=10.0, errors=0.5),
        "critic": Rates(handled=0.0, errors=0.0),
    }


def test_rates_without_error_counts_and_with_counts_that_went_down() -> None:
    before = [seen("kb", "a", 10, None), seen("kb", "b", 8, 3)]
    after = [seen("kb", "a", 12, None), seen("kb", "b", 2, 1)]
    assert rates(before, after, 1.0) == {"kb": Rates(handled=2.0, errors=None)}
    with pytest.raises(ValueError, match="positive"):
        rates(before, after, 0.0)


def test_a_frame_without_answers_says_so() -> None:
    console = Console(width=120, record=True)
    console.print(Frame([], 0.0, {}, 2.0).render())
    text = console.export_text()
    assert "0 roles, 0 replicas" in text
    assert "no agents answered" in text


@pytest.mark.integration
async def test_two_surveys_show_the_tasks_handled_between_them(secured: SecuredMesh) -> None:
    """Real replicas on enforced servers: a workflow runs between the first survey and
    the second, which shows it per second (the planner's one task, the counter's two)."""
    counting, planning = await secured.start_replicas(counter, planner)
    cli = await secured.ingress()
    shown: list[Frame] = []
    async for frame in frames(secured.settings, interval_s=0.1, iterations=2):
        shown.append(frame)
        if len(shown) == 1:
            assert frame.rates == {}  # nothing to compare with yet
            report = await cli.request(
                "planner", Plan(pause_s=0), token=cli.mint_token("bob"), returns=Report
            )
            assert report.parts == [1, 2]
            # a task counts once acked, a little after its reply (its event stored first)
            await until(lambda: (counting.handled, planning.handled) == (2, 1), "tasks acked")
    second = shown[1]
    assert sorted(s.name for s in second.seen) == ["counter", "planner"]
    counter_rate, planner_rate = second.rates["counter"], second.rates["planner"]
    assert counter_rate.handled > 0
    assert planner_rate.handled > 0
    assert counter_rate.handled == pytest.approx(2 * planner_rate.handled)
    assert counter_rate.errors == planner_rate.errors == 0.0
    console = Console(width=200, record=True)
    console.print(second.render())
    lines = console.export_text().splitlines()
    assert "2 roles, 2 replicas" in lines[0]
    header = lines[1].split()
    assert header[:3] == ["role", "replicas", "version"]
    assert header[6:11] == ["handled", "handled/s", "errors", "errors/s", "lag"]
    row = {line.split()[0]: line.split() for line in lines[2:]}
    # role replicas version instances in-flight handled handled/s errors errors/s lag
    assert row["counter"][5] == "2"
    assert float(row["counter"][6]) > 0


async def top(secured: SecuredMesh, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        "top",
        *args,
        env=settings_env(secured.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.integration
async def test_top_as_a_command_stops_after_its_iterations_or_on_ctrl_c(
    secured: SecuredMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    proc = AgentProcess(
        ["tests.harness.agents:counter"], secured.settings, log_file=tmp_path / "counter.log"
    )
    await asyncio.to_thread(proc.start)
    try:
        cmd = await top(secured, "--iterations", "2", "--interval", "0.2")
        out, err = await asyncio.wait_for(cmd.communicate(), 60)
        assert cmd.returncode == 0, err.decode()
        titles = [line for line in out.decode().splitlines() if line.startswith("jetmesh top")]
        assert len(titles) == 2  # not a terminal: each survey printed after the other
        assert all("every 0.2s  1 role, 1 replica" in t for t in titles)
        assert f":{proc.pid}" in out.decode()

        cmd = await top(secured, "--once")
        out, err = await asyncio.wait_for(cmd.communicate(), 60)
        assert cmd.returncode == 0, err.decode()
        assert out.decode().count("jetmesh top") == 1

        cmd = await top(secured, "--interval", "0.2")  # until Ctrl-C
        assert cmd.stdout is not None
        first = await asyncio.wait_for(cmd.stdout.readline(), 60)
        assert first.decode().startswith("jetmesh top")
        cmd.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(cmd.communicate(), 60)
        assert cmd.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
    finally:
        await asyncio.to_thread(proc.stop, 10.0)
