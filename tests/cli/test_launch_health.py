"""``jetmesh launch PACKAGE --health-port-base N``: the i-th process it starts serves its
health endpoints on port N + i, printed beside it; all close when launch is stopped."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetmesh import KeyStore, MeshSettings
from jetmesh.embedded import free_port
from jetmesh.processes import settings_env
from services.research import ROLES
from tests.harness.mesh import REPO_ROOT

pytestmark = pytest.mark.integration


async def status_of(port: int, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def free_run(count: int) -> int:
    """A port from which ``count`` ports in a row are free."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and all(free_port_at(base + i) for i in range(count)):
            return base
    raise AssertionError("no run of free ports")


def free_port_at(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_launch(settings: MeshSettings, base: int, out: Path) -> subprocess.Popen[bytes]:
    """``jetmesh launch services.research --health-port-base <base>``, output to ``out``."""
    with out.open("wb") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jetmesh.cli",
                "launch",
                "services.research",
                "--health-port-base",
                str(base),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            start_new_session=True,
        )


@pytest.mark.timeout(120)
async def test_launch_gives_each_process_a_health_port(
    settings: MeshSettings, tmp_path: Path
) -> None:
    KeyStore(settings.resolved_keys_dir).init_root()  # identities issued on the spot
    base = free_run(len(ROLES))
    out = tmp_path / "launch.out"
    launch = start_launch(settings, base, out)
    try:
        give_up = time.monotonic() + 60
        while "processes running" not in out.read_text() and time.monotonic() < give_up:
            assert launch.poll() is None, out.read_text()
            await asyncio.sleep(0.2)
        printed = out.read_text()
        ports = {
            name: int(port)
            for name, port in re.findall(
                r"^(\w+) +pid \d+ .* health http://127.0.0.1:(\d+)$", printed, re.M
            )
        }
        assert ports == {role: base + i for i, role in enumerate(ROLES)}, printed
        for role, port in ports.items():
            assert await status_of(port, "/readyz") == (
                200,
                {"status": "ready", "replicas": {role: "running"}},
            )
        launch.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(launch.wait, 60) == 0, out.read_text()
        for port in ports.values():
            with pytest.raises(ConnectionRefusedError):
                await status_of(port, "/healthz")
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait(5)


def test_a_base_whose_ports_run_past_65535_is_refused(
    settings: MeshSettings, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jetmesh.cli",
            "launch",
            "services.research",
            "--health-port-base",
            "65534",
        ],
        capture_output=True,
        text=True,
        env=settings_env(settings),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"leaves no room for {len(ROLES)} processes' ports" in done.stderr
