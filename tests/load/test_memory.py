"""Resident memory sampled per window, and the soak's verdict: a child process that
allocates 50 MB grows and fails it, an idle one stays flat and passes; where /proc is
missing nothing is measured; the driver fills each window's memory."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from jetmesh import ConfigError
from jetmesh.load import Scenario, Window, read_report, run_scenario
from jetmesh.load.echo import agent as echo_agent
from jetmesh.load.memory import (
    RssWatch,
    embedded_pids,
    proc_rss_mb,
    sample_every,
    soak_slos,
    watch_pids,
)
from tests.harness.mesh import Mesh, jetmesh

GROWING = """
import sys, time
held = []
print("ready", flush=True)
for _ in range(10):
    held.append(b"x" * (5 * 1024 * 1024))  # 50 MB in all, written so it is resident
    time.sleep(0.1)
time.sleep(30)
"""

FLAT = """
import time
print("ready", flush=True)
time.sleep(30)
"""


async def windows_of(code: str, seconds: float, window_s: float) -> list[Window]:
    """Start a child running ``code``, sample its RSS every ``window_s`` for ``seconds``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
        watch = RssWatch({"child": proc.pid})
        samples: list[tuple[float, dict[str, float]]] = []
        loop = asyncio.get_running_loop()
        sampler = asyncio.create_task(
            sample_every(
                watch.sample,
                lambda t, rss: samples.append((t, rss)),
                start=loop.time(),
                window_s=window_s,
                clock=loop.time,
            )
        )
        await asyncio.sleep(seconds)
        sampler.cancel()
    finally:
        proc.kill()
        await proc.wait()
    return [
        Window(t=t, sent=0, completed=1, errors=0, p50_ms=1.0, p99_ms=2.0, rss_mb=rss)
        for t, rss in samples
    ]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
async def test_a_child_that_allocates_50_mb_fails_the_soak_and_an_idle_one_passes() -> None:
    growing = await windows_of(GROWING, seconds=1.8, window_s=0.1)
    assert len(growing) >= 12
    assert [w.t for w in growing[:3]] == pytest.approx([0.0, 0.1, 0.2])
    grew = growing[-1].rss_mb["child"] - growing[0].rss_mb["child"]
    assert grew >= 40  # MiB: the 50 MB shows
    (rss, drift) = soak_slos(growing)
    assert rss.name == "rss growth child"
    assert rss.value > 20
    assert not rss.ok
    assert drift.name == "p99 drift"
    assert drift.ok

    flat = await windows_of(FLAT, seconds=1.2, window_s=0.1)
    (rss, _) = soak_slos(flat)
    assert rss.ok, rss
    assert abs(rss.value) < 5


def test_p99_drift_compares_the_last_third_with_the_first() -> None:
    def window(p99: float, completed: int = 10) -> Window:
        return Window(t=0, sent=10, completed=completed, errors=0, p50_ms=1, p99_ms=p99)

    steady = [window(10), window(11), window(10), window(12), window(10), window(11)]
    assert soak_slos(steady)[-1].ok
    rising = [window(10), window(10), window(12), window(14), window(20), window(22)]
    (drift,) = soak_slos(rising)
    assert (drift.value, drift.ok) == (110.0, False)
    idle_start = [window(0, completed=0), window(9), window(9)]
    assert soak_slos(idle_start)[-1].value == 0.0  # nothing to compare in the first third
    assert soak_slos(steady[:2]) == []


def test_without_proc_nothing_is_measured_and_an_injected_reader_is_used() -> None:
    blind = RssWatch({"generator": os.getpid()}, reader=None)
    if not Path("/proc/self/status").exists():
        assert not blind.measured
    injected = RssWatch({"a": 1, "gone": 2}, reader={1: 12.34}.get)
    assert injected.measured
    assert injected.sample() == {"a": 12.3}
    assert "a (pid 1)" in injected.describe()


def test_the_not_linux_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import jetmesh.load.memory as memory

    monkeypatch.setattr(memory, "_PROC", tmp_path / "no-proc")
    watch = RssWatch({"generator": os.getpid()})
    assert not watch.measured
    assert watch.sample() == {}
    assert watch.describe() == "memory: not measured (no /proc on this system)"
    assert proc_rss_mb(os.getpid()) is None


def test_watch_pid_options_and_pid_files(tmp_path: Path) -> None:
    assert watch_pids(["nats=12", "echo = 34"]) == {"nats": 12, "echo": 34}
    for wrong in ("nats", "nats=x", "=12", "nats=0"):
        with pytest.raises(ConfigError, match="NAME=PID"):
            watch_pids([wrong])
    (tmp_path / "nats.pid").write_text("101\n")
    (tmp_path / "redis.pid").write_text("202\n")
    (tmp_path / "broken.pid").write_text("not a pid")
    assert embedded_pids(tmp_path) == {"nats": 101, "redis": 202}
    assert embedded_pids(tmp_path / "missing") == {}


async def test_the_driver_fills_each_window_with_memory() -> None:
    scenario = Scenario.model_validate(
        {
            "name": "memory",
            "agent": "none",
            "payload": {"template": "{}"},
            "arrival": {"model": "constant", "rate": 20},
            "seconds": 2,
        }
    )
    readings = iter(range(100))

    async def send(body: bytes) -> None:
        await asyncio.sleep(0.001)

    report = await run_scenario(scenario, send, memory=lambda: {"generator": float(next(readings))})
    assert [w.rss_mb for w in report.timeline] == [{"generator": 0.0}, {"generator": 1.0}]


SOAK = """
name = "cli-soak"
agent = "echo"
seconds = 3

[payload]
template = '{"text": "hello {n}"}'

[arrival]
model = "constant"
rate = 20
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
async def test_a_soak_run_samples_the_generator_and_a_watched_process(
    mesh: Mesh, tmp_path: Path
) -> None:
    await mesh.start_replicas(echo_agent)
    scenario = tmp_path / "soak.toml"
    scenario.write_text(SOAK)
    out = tmp_path / "out"
    watched = f"tester={os.getpid()}"
    code, stdout, err = await jetmesh(
        mesh, "load", "run", str(scenario), "--out", str(out), "--soak", "--watch-pid", watched
    )
    assert code in (0, 1), err  # 1: three windows judge flatness by noise; not asserted
    assert "memory: generator (pid" in stdout
    report = read_report(out / "report.json")
    assert [set(w.rss_mb) for w in report.timeline] == [{"generator", "tester"}] * 3
    assert all(w.rss_mb["tester"] > 1 for w in report.timeline)
    names = [s.name for s in report.slos]
    assert names == ["rss growth generator", "rss growth tester", "p99 drift"]
    assert "rss growth tester" in (out / "report.md").read_text()

    code, _, err = await jetmesh(mesh, "load", "run", str(scenario), "--soak", "--watch-pid", "x")
    assert code == 2
    assert "NAME=PID" in err
