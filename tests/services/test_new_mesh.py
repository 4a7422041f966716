"""docs/your-mesh.md builds a mesh from the page alone: its files (the code blocks tagged
with a file name) written into an empty folder, run on servers that enforce the mesh's
policy with the page's commands, answer the page's task with the page's reply, and need
nothing outside the mesh's folder."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from jetmesh.embedded import free_port
from tests.harness.mesh import REPO_ROOT

pytestmark = pytest.mark.integration

PAGE = REPO_ROOT / "docs" / "your-mesh.md"
WIRING = ("shared", "services", "subjects", "compose", "pyproject.toml", "Makefile")
"""Where a mesh would be wired in, were it not self-contained: none of it names the mesh."""
BLOCK = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str | None, str]]:
    """The page's code blocks: language, file name (when tagged) and text."""
    return [(lang, name, text) for lang, name, text in BLOCK.findall(PAGE.read_text())]


def command(line: str) -> list[str]:
    """A line of the page's shell block as this environment runs it."""
    words = shlex.split(line)
    if words[0] == "jetmesh":
        return [sys.executable, "-m", "jetmesh.cli", *words[1:]]
    assert words[0] == "python", line
    return [sys.executable, *words[1:]]


def run(line: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command(line), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_page_builds_a_mesh_that_answers_on_enforced_servers(tmp_path: Path) -> None:
    files = {name: text for _, name, text in blocks() if name}
    (package,) = {Path(name).parts[0] for name in files}
    assert {f"{package}/__init__.py", f"{package}/__main__.py", f"{package}/policy.toml"} <= set(
        files
    )
    work = tmp_path / "work"
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (shell,) = [text.splitlines() for lang, name, text in blocks() if lang == "sh"]
    (expected,) = [text for lang, name, text in blocks() if lang == "text"]

    policy = work / package / "policy.toml"
    assert shell[0] == f"export JETMESH_POLICY_FILE=$PWD/{package}/policy.toml"
    assert shell[1:] == [
        "jetmesh up",
        f"python -m {package} &",
        shell[3],
        "kill %1",
        "jetmesh down",
    ]
    env = {
        **os.environ,
        "JETMESH_POLICY_FILE": str(policy),
        "JETMESH_STATE_DIR": str(tmp_path / "state"),
        "JETMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "JETMESH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "PYTHONPATH": "",
    }
    up = run("jetmesh up", work, env)
    assert f"policy {policy}: 4 roles" in up, up  # cli, toolgate, and the mesh's two
    mesh = subprocess.Popen(
        command(f"python -m {package}"),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert mesh.stdout is not None
        started = [mesh.stdout.readline()]
        while started[-1] and "running" not in started[-1]:
            started.append(mesh.stdout.readline())
        assert started[-1].startswith(f"{package}: 2 processes running"), started
        replied = run(shell[3], work, env)
        reply, workflow = replied.rsplit("\n", 2)[:2]
        assert msgspec.json.decode(reply) == msgspec.json.decode(expected)
        assert workflow.startswith("workflow ")
    finally:
        mesh.send_signal(signal.SIGTERM)
        stopped = mesh.wait(timeout=30)
        if mesh.stdout is not None:
            mesh.stdout.close()
        run("jetmesh down", work, env)
    assert stopped == 0
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*.*")) == sorted(
        [*files, *(p.relative_to(work).as_posix() for p in work.rglob("__pycache__/*"))]
    ), "the mesh wrote nothing outside its folder"
    outside = subprocess.run(
        ["git", "grep", "-lw", package, "--", *WIRING],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert outside.stdout == "", f"the project names the new mesh: {outside.stdout}"
