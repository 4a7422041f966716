"""Scratch directories (``jetmesh.embedded.scratch``): a run's servers' data, keys and logs, removed
after the run, and what a run killed outright left removed by the next one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jetmesh.embedded.pids import start_time
from jetmesh.embedded.scratch import OWNER_FILE, owner_of, scratch_dir, sweep

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from jetmesh.embedded.scratch import scratch_dir

with scratch_dir("held-", parent=Path(sys.argv[1])) as path:
    (path / "data").write_text("a server's files")
    print(path, flush=True)
    time.sleep(60)
"""


@contextmanager
def _holder(parent: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A process holding a scratch directory under ``parent``, and the directory."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(parent)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            yield proc, Path(proc.stdout.readline().strip())
        finally:
            proc.kill()
            proc.wait(timeout=10)


def test_a_scratch_dir_names_its_owner_and_goes_after_the_block(tmp_path: Path) -> None:
    with scratch_dir("run-", parent=tmp_path) as path:
        assert path.parent == tmp_path
        assert path.name.startswith("run-")
        assert owner_of(path) == os.getpid()
        (path / "nats").mkdir()
    assert not path.exists()
    with pytest.raises(RuntimeError), scratch_dir("run-", parent=tmp_path) as path:
        raise RuntimeError("the run failed")
    assert not path.exists()


def test_what_a_run_killed_outright_left_goes_with_the_next_scratch_dir(
    tmp_path: Path,
) -> None:
    with _holder(tmp_path) as (proc, left):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert (left / "data").exists()  # nothing of the killed run removed it
        assert owner_of(left) is None
        with scratch_dir("next-", parent=tmp_path) as mine:
            assert not left.exists()
            assert mine.exists()


def test_the_sweep_leaves_live_owners_and_directories_it_did_not_make(tmp_path: Path) -> None:
    with _holder(tmp_path) as (proc, held):
        foreign = tmp_path / "pytest-of-someone"
        foreign.mkdir()
        unreadable = tmp_path / "half-written"
        unreadable.mkdir()
        (unreadable / OWNER_FILE).write_text("")
        reused = tmp_path / "reused-pid"
        reused.mkdir()  # its owner's pid now names another process: this one
        (reused / OWNER_FILE).write_text(f"{os.getpid()} 1 {socket.gethostname()}\n")
        elsewhere = tmp_path / "another-host"
        elsewhere.mkdir()  # a container's, sharing the directory: its pids are not ours
        (elsewhere / OWNER_FILE).write_text(f"{os.getpid()} 1 not-{socket.gethostname()}\n")
        assert start_time(os.getpid()) != "1"
        assert owner_of(held) == proc.pid
        assert sweep(tmp_path) == [reused]
        assert held.exists()
        assert (held / "data").exists()
        assert foreign.exists()
        assert unreadable.exists()
        assert elsewhere.exists()
        assert not reused.exists()
