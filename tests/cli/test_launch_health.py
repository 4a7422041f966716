"""``jetmesh launch PACKAGE --health-port-base N``: the i-th process it starts serves its
health endpoints on port N + i, printed beside it; all close when launch is stopped. With
``--processes N`` the roles are dealt into N processes, each role its own replica."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetmesh import KeyStore, MeshSettings
from jetmesh.cli import MeshPackage
from jetmesh.embedded.ports import free_block
from jetmesh.processes import pack, settings_env
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
    """A port from which ``count`` ports in a row are free, below the kernel's ephemeral
    range (where free_port's picks and outgoing connections take theirs) and apart from the
    embedded stacks' blocks, each claimed as free_port claims its ports."""
    return free_block(list(range(count)), 29000, 32000)


def start_launch(
    settings: MeshSettings, base: int, out: Path, *options: str
) -> subprocess.Popen[bytes]:
    """``jetmesh launch services.research --health-port-base <base> [options]``, output to
    ``out``."""
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
                *options,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            start_new_session=True,
        )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [None, 2], ids=["a process per role", "two processes"])
async def test_launch_gives_each_process_a_health_port(
    settings: MeshSettings, tmp_path: Path, processes: int | None
) -> None:
    KeyStore(settings.resolved_keys_dir).init_root()  # identities issued on the spot
    groups = [(role,) for role in ROLES] if processes is None else pack(ROLES, processes)
    base = free_run(len(groups))
    out = tmp_path / "launch.out"
    options = () if processes is None else ("--processes", str(processes))
    launch = start_launch(settings, base, out, *options)
    try:
        give_up = time.monotonic() + 60
        while "processes running" not in out.read_text() and time.monotonic() < give_up:
            assert launch.poll() is None, out.read_text()
            await asyncio.sleep(0.2)
        printed = out.read_text()
        ports = {
            name: int(port)
            for name, port in re.findall(
                r"^([\w+]+) +pid \d+ .* health http://127.0.0.1:(\d+)$", printed, re.M
            )
        }
        names = ["+".join(roles) for roles in groups]
        assert ports == {name: base + i for i, name in enumerate(names)}, printed
        assert f"{len(groups)} processes running" in printed
        for roles, port in zip(groups, ports.values(), strict=True):
            assert await status_of(port, "/readyz") == (
                200,
                {"status": "ready", "replicas": dict.fromkeys(roles, "running")},
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


def test_roles_are_dealt_into_processes_and_the_others_stay_alone() -> None:
    support = MeshPackage.of("services.support")
    assert support.packed() == {name: [t] for name, t in support.targets.items()}
    packed = support.packed(2)
    assert packed == {
        "triage+technical+kb+escalation": [
            f"services.support.{role}:agent" for role in ("triage", "technical", "kb", "escalation")
        ],
        "billing+product+critic": [
            f"services.support.{role}:agent" for role in ("billing", "product", "critic")
        ],
        "toolgate": ["services.support.toolgate:agent"],  # the tool credentials: alone
    }
    assert list(support.packed(99)) == [*support.roles, "toolgate"]  # one role a process
    assert pack(["a", "b", "c"], 1) == [("a", "b", "c")]
    with pytest.raises(ValueError, match="at least 1"):
        support.packed(0)
