"""``python -m services.gateway``: a real uvicorn process on a free loopback port, its
settings from a TOML file and the environment, on servers that enforce the policy."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jetmesh import MeshSettings
from jetmesh.embedded import free_port
from jetmesh.processes import settings_env
from services.gateway.process import stop, until_ready
from services.gateway.settings import CONFIG_ENV, key_hash
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh
from tests.services.gateway.conftest import ALICE_KEY, auth

pytestmark = pytest.mark.integration


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str


@pytest.fixture
def process(enforced: SecuredMesh, tmp_path: Path) -> Iterator[Process]:
    """The gateway process and its base URL. Stopped (SIGTERM, then SIGKILL) at teardown."""
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'port = {port}\nburst = 5\n\n[[api_keys]]\nsha256 = "{key_hash(ALICE_KEY)}"\n'
        'subject = "alice"\ntenant = "acme"\n'
    )
    env = settings_env(enforced.settings) | {CONFIG_ENV: str(config)}
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Process(proc, f"http://127.0.0.1:{port}")
    finally:
        status = stop(proc)
        log.close()
        said = (tmp_path / "gateway.log").read_text()
        # uvicorn stops gracefully, then re-raises SIGTERM so the exit status tells it
        assert status in (0, -signal.SIGTERM), said
        assert "Application shutdown complete." in said


async def test_the_gateway_process_serves_tasks_and_their_events(process: Process) -> None:
    async with httpx.AsyncClient(base_url=process.url, timeout=30) as http:
        await until_ready(http, process.proc)
        r = await http.post(
            "/v1/agents/echo/tasks",
            json={"text": "over http"},
            headers=auth(ALICE_KEY) | {"Prefer": "wait=10"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"]["text"] == "OVER HTTP"
        assert r.json()["result"]["caller"] == "alice"
        workflow = r.json()["workflow"]
        async with http.stream(
            "GET", f"/v1/workflows/{workflow}/events", headers=auth(ALICE_KEY)
        ) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            kinds = [
                line.removeprefix("event: ")
                async for line in events.aiter_lines()
                if line.startswith("event: ")
            ]
        assert kinds[0] == "accepted"
        assert kinds[-1] == "completed"
        r = await http.post("/v1/agents/other/tasks", json={}, headers=auth(ALICE_KEY))
        assert (r.status_code, r.json()["reason"]) == (404, "unknown-agent")
        r = await http.get("/openapi.json")
        assert "/v1/agents/{agent}/tasks" in r.json()["paths"]


@pytest.fixture
def refused(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A gateway process with a configuration it refuses (``burst`` not a number)."""
    config = tmp_path / "gateway.toml"
    config.write_text('port = 1\nburst = "many"\n')
    env = settings_env(MeshSettings(state_dir=tmp_path)) | {CONFIG_ENV: str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        yield proc
    finally:
        assert stop(proc) != 0
        assert b"burst" in proc.stderr.read()
        proc.stderr.close()


async def test_a_process_that_exits_before_it_is_ready_ends_the_wait(
    refused: subprocess.Popen[bytes],
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(ChildProcessError, match="exited"):
            await until_ready(http, refused, timeout_s=60)


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(TimeoutError, match=r"not ready within 0\.2s"):
            await until_ready(http, timeout_s=0.2)


DEAF = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('deaf', flush=True); time.sleep(60)"
)


def test_a_process_that_ignores_sigterm_is_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", DEAF], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"deaf\n"  # SIGTERM is ignored from here on
        assert stop(proc, timeout_s=0.2) == -signal.SIGKILL
        assert stop(proc) == -signal.SIGKILL  # again: nothing more to do
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
