"""A SIGTERM stops a command as Ctrl-C does: its cleanups run, so the servers and agent
processes it started are stopped (``jetmesh.processes.terminated_as_interrupted``; a plain
SIGTERM would end the process at once and leave them running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jetmesh.embedded import wait_gone
from jetmesh.embedded.pids import pid_command, stat_fields
from jetmesh.processes import interruptible, terminated_as_interrupted

ROOT = Path(__file__).resolve().parents[2]

MAIN = """
import asyncio, pathlib, sys
from jetmesh.cli.common import run_async
from jetmesh.processes import interruptible

async def main() -> None:
    try:
        print("ready", flush=True)
        await asyncio.sleep(60)
    finally:
        pathlib.Path(sys.argv[1]).write_text("cleaned up")
"""
"""A program's main task: "ready", then a minute's wait whose cleanup leaves a marker."""

PROGRAM = MAIN + "run_async(main())\n"

SCENARIO = """
name = "terminated"
agent = "echo"
seconds = 120
warmup_s = 0

[payload]
template = '{"text": "hello"}'

[arrival]
model = "constant"
rate = 20

[mesh]
processes = [["jetmesh", "run", "jetmesh.load.echo:agent"]]
embedded = true
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_a_sigterm_runs_the_cleanups_of_a_command(tmp_path: Path, sigint: str) -> None:
    """With SIGINT ignored (a background job of a shell), asyncio's runner does not handle
    it, and the SIGTERM is raised as KeyboardInterrupt in the loop instead: the same end."""
    marker = tmp_path / "marker"
    with subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(marker)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint == "ignored" else None,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert marker.read_text() == "cleaned up", err
    assert proc.returncode not in (0, -signal.SIGTERM)


INTERRUPTIBLE = (
    MAIN
    + """
with interruptible():
    asyncio.run(main())
print("not reached")
"""
)


def test_an_interruptible_program_given_sigterm_cleans_up_and_exits_130(tmp_path: Path) -> None:
    """What the loadtest programs do: their cleanups, then "interrupted" and the exit
    status a shell expects of an interrupted program, no traceback."""
    marker = tmp_path / "marker"
    with subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, str(marker)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert marker.read_text() == "cleaned up", err
    assert (proc.returncode, out, err) == (130, "", "interrupted\n")


def test_interruptible_lets_other_errors_through() -> None:
    with pytest.raises(ValueError, match="not an interruption"), interruptible():
        raise ValueError("not an interruption")


def test_the_sigterm_handler_before_the_block_is_restored_after_it() -> None:
    def mine(signum: int, frame: object) -> None:
        """A handler of the embedding program's."""

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with terminated_as_interrupted():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def _children() -> dict[int, list[int]]:
    """Each process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _descendants(pid: int) -> dict[int, str]:
    """``pid``'s descendants and their command lines."""
    children, found, todo = _children(), {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = pid_command(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_load_run_given_sigterm_stops_its_servers_and_agents(tmp_path: Path) -> None:
    scenario = tmp_path / "terminated.toml"
    scenario.write_text(textwrap.dedent(SCENARIO))
    command = [sys.executable, "-m", "jetmesh.cli", "load", "run", str(scenario)]
    with subprocess.Popen(
        [*command, "--out", str(tmp_path / "out"), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        started: dict[int, str] = {}
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                started = _descendants(proc.pid)
                if any("jetmesh.load.echo" in line for line in started.values()):
                    break
                time.sleep(0.2)
        finally:  # told to stop whatever happened, as the test's subject
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    left = {pid: started[pid] for pid in wait_gone(list(started), timeout=5.0)}
    for pid in left:  # not to leave them to the next test
        os.kill(pid, signal.SIGKILL)
    names = "\n".join(started.values())
    assert "nats-server" in names, names
    assert "redis-server" in names, names
    assert "jetmesh.load.echo" in names, names
    assert left == {}, err
    assert proc.returncode not in (0, -signal.SIGTERM), err
