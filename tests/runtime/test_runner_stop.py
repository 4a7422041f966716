"""``jetmesh run`` stops on SIGTERM even while it is still waiting for its servers; the
runner embedded without signal handlers stops on its own event."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from jetmesh import KeyStore, MeshSettings
from jetmesh.embedded import free_port
from jetmesh.processes import settings_env
from jetmesh.runtime.runner import serve
from tests.harness.agents import counter
from tests.harness.mesh import REPO_ROOT


def test_sigterm_while_the_servers_are_away_stops_the_process(tmp_path: Path) -> None:
    settings = MeshSettings(
        state_dir=tmp_path / "state",
        nats_url=f"nats://127.0.0.1:{free_port()}",  # nothing listens there
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    KeyStore(settings.resolved_keys_dir).init_root()
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jetmesh.cli",
                "run",
                "tests.harness.agents:counter",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        # importing, then reconnecting to a server that is not there: once it says so
        # (a fixed 2 s was not enough once, on two loaded cores: SIGTERM came mid-import)
        deadline = time.monotonic() + 30.0
        while b"Connection refused" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        assert b"Connection refused" in log.read_bytes(), log.read_text()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        printed = proc.stdout.read()
        proc.stdout.close()
    assert b"ready:" not in printed
    assert code == 0, log.read_text()[-2000:]
    assert b"SIGTERM: draining" in log.read_bytes(), "the signal is logged as it comes"


async def test_serve_without_signal_handlers_stops_on_its_event(tmp_path: Path) -> None:
    """A process that handles its own signals embeds the runner with
    ``handle_signals=False``: none is installed, and it returns once its ``stop`` event is
    set (here while the servers are still away)."""
    settings = MeshSettings(
        state_dir=tmp_path / "state",
        nats_url=f"nats://127.0.0.1:{free_port()}",  # nothing listens there
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    KeyStore(settings.resolved_keys_dir).init_root()
    before = signal.getsignal(signal.SIGTERM)
    stop = asyncio.Event()
    running = asyncio.create_task(serve([counter], settings, handle_signals=False, stop=stop))
    await asyncio.sleep(0.5)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, timeout=10)
