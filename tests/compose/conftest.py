"""What the compose tests share: compose/compose.yaml as data, the secrets it mounts written
by ``jetmesh admin secrets``, and processes started from its files on loopback, each
stopped at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jetmesh.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DEMO_POLICY = ROOT / "services" / "demo" / "policy.toml"


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def write_secrets(out: Path, *args: str) -> Path:
    """``jetmesh admin secrets --out OUT`` for the demo's policy, as compose.yaml says to."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JETMESH_")}
    env["JETMESH_STATE_DIR"] = str(out.parent / "unused-state")
    argv = ["admin", "secrets", "--out", str(out), "--policy", str(DEMO_POLICY), *args]
    result = CliRunner().invoke(app, argv, env=env)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def deploy_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's secrets, written once for the module."""
    out = tmp_path_factory.mktemp("compose") / "secrets"
    return write_secrets(out, "--tool", "refund", "--tool", "handoff")


class Processes:
    """Server processes of one test, started with a log file each; all stopped at the end
    (SIGTERM, then SIGKILL), whatever the test did."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self, *procs: subprocess.Popen[bytes]) -> None:
        """SIGTERM to each process group, SIGKILL to those still there after 10 s."""
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        self.stop(*self.started)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path / "logs")
    try:
        yield started
    finally:
        started.stop_all()
