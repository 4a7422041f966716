"""``python -m services.gateway``: a real uvicorn process on a free loopback port, its
settings from a TOML file and the environment, on servers that enforce the policy."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jetmesh.embedded import free_port
from jetmesh.processes import settings_env
from services.gateway.settings import CONFIG_ENV, key_hash
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh
from tests.services.gateway.conftest import ALICE_KEY, auth

pytestmark = pytest.mark.integration


@pytest.fixture
def process(enforced: SecuredMesh, tmp_path: Path) -> Iterator[str]:
    """The gateway process; its base URL. Stopped (SIGTERM, then SIGKILL) at teardown."""
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
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        said = (tmp_path / "gateway.log").read_text()
        # uvicorn stops gracefully, then re-raises SIGTERM so the exit status tells it
        assert proc.returncode in (0, -signal.SIGTERM), said
        assert "Application shutdown complete." in said


async def ready(http: httpx.AsyncClient) -> None:
    """Wait until the process answers /readyz (it connects to the mesh first)."""
    for _ in range(300):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway process never became ready")


async def test_the_gateway_process_serves_tasks_and_their_events(process: str) -> None:
    async with httpx.AsyncClient(base_url=process, timeout=30) as http:
        await ready(http)
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
