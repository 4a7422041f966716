"""A server started with ``ServerProcess.start`` stops with the process that started it,
even when that process is SIGKILLed (``jetmesh.embedded.guard``); a server its owner
stops or kills leaves no watcher behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jetmesh.embedded import RedisServer, pid_alive, wait_gone
from jetmesh.embedded.guard import WATCH_INTERVAL_S

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc"),
]

OWNER = """
import pathlib, sys, time
from jetmesh.embedded import RedisServer

server = RedisServer(data_dir=pathlib.Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
time.sleep(120)
"""


def test_a_server_stops_when_its_owner_is_sigkilled(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "redis")],
        stdout=subprocess.PIPE,
        text=True,
    )
    server = 0
    try:
        assert owner.stdout is not None
        server = int(owner.stdout.readline())
        assert wait_gone([server], timeout=2.5 * WATCH_INTERVAL_S) == [server]  # it stays
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        left = wait_gone([server], timeout=20.0)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    if left:  # not to leave it to the next test
        os.kill(server, signal.SIGKILL)
    assert left == []


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_a_server_its_owner_ends_leaves_no_watcher(tmp_path: Path, end: str) -> None:
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    try:
        watcher = server._watcher
        assert watcher is not None
        assert pid_alive(watcher.pid)
        getattr(server, end)()
        assert watcher.poll() is not None  # stopped and reaped, not left to its next look
        assert server._watcher is None
    finally:
        server.kill()
