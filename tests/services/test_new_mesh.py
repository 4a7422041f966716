"""docs/your-mesh.md builds a mesh from the page alone: its files (the code blocks tagged
with a file name) written into an empty folder, run on servers that enforce the mesh's
policy with the page's commands, answer the page's task with the page's reply, and need
nothing outside the mesh's folder. Its last section is typed into one shell, line by line:
a writer SIGKILLed mid-greeting, with the default settings, and the greeting answered
after a new writer starts, as the page's output shows."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
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


KILLED = "A writer killed mid-greeting"
"""The section that kills a writer while it works."""


def blocks(text: str | None = None) -> list[tuple[str, str | None, str]]:
    """The code blocks of ``text`` (default: the page): language, file name (when tagged)
    and text."""
    return [(lang, name, body) for lang, name, body in BLOCK.findall(text or PAGE.read_text())]


def section(title: str) -> str:
    """The text of the page's ``## title`` section, up to the next section."""
    _, found, rest = PAGE.read_text().partition(f"\n## {title}\n")
    assert found, f"docs/your-mesh.md has no section {title!r}"
    return rest.partition("\n## ")[0]


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


def write_mesh(work: Path) -> tuple[str, dict[str, str]]:
    """The page's files written into ``work``: the mesh's package name, and the files."""
    files = {name: text for _, name, text in blocks() if name}
    (package,) = {Path(name).parts[0] for name in files}
    assert {f"{package}/__init__.py", f"{package}/__main__.py", f"{package}/policy.toml"} <= set(
        files
    )
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    return package, files


def mesh_env(tmp_path: Path, policy: Path) -> dict[str, str]:
    """The page's environment: its policy file, and servers of this test's own (state,
    ports) with the default settings otherwise."""
    return {
        **os.environ,
        "JETMESH_POLICY_FILE": str(policy),
        "JETMESH_STATE_DIR": str(tmp_path / "state"),
        "JETMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "JETMESH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "PYTHONPATH": "",
    }


def test_the_page_builds_a_mesh_that_answers_on_enforced_servers(tmp_path: Path) -> None:
    work = tmp_path / "work"
    package, files = write_mesh(work)
    (shell,) = [text.splitlines() for lang, _, text in blocks(section("Run it")) if lang == "sh"]
    (expected,) = [text for lang, _, text in blocks(section("Run it")) if lang == "text"]

    policy = work / package / "policy.toml"
    assert shell[0] == f"export JETMESH_POLICY_FILE=$PWD/{package}/policy.toml"
    assert shell[1:] == [
        "jetmesh up",
        f"python -m {package} &",
        shell[3],
        "kill %1",
        "jetmesh down",
    ]
    env = mesh_env(tmp_path, policy)
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


class Shell:
    """One bash that the page's lines are typed into, one at a time, as a reader would: its
    jobs (``&``, ``%N``) last from line to line. ``jetmesh`` and ``python`` are this
    environment's."""

    MARK = "--- line done:"

    def __init__(self, cwd: Path, env: dict[str, str], errors: Path) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.errors = errors
        self.stderr = errors.open("w")
        self.proc = subprocess.Popen(
            ["bash"],
            cwd=cwd,
            env={**env, "PATH": bin_dir + os.pathsep + env["PATH"]},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def type(self, line: str, timeout: float = 60.0) -> str:
        """Run ``line``; what it printed (and any job's output meanwhile), once it is done."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\necho '{self.MARK}' $?\n")
        self.proc.stdin.flush()
        printed: list[str] = []
        until = time.monotonic() + timeout
        while not (got := self.lines.get(timeout=max(until - time.monotonic(), 0.1))).startswith(
            self.MARK
        ):
            printed.append(got)
        status = int(got.rpartition(" ")[2])
        assert status == 0, f"{line}: exit {status}\n{''.join(printed)}{self.errors.read_text()}"
        return "".join(printed)

    def close(self, last: str) -> None:
        """Type ``last`` (whatever it returns) and end the shell."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{last}\nexit 0\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()


def shown(tree: str) -> list[str]:
    """A workflow tree as the page may show it: ids, durations and spacing left out."""
    tree = re.sub(r"\b[0-9A-Z]{26}\b", "WORKFLOW", tree)
    tree = re.sub(r"\b\d+(\.\d+)? (ms|s)\b", r"N \2", tree)
    return [" ".join(line.split()) for line in tree.strip().splitlines()]


def test_the_page_kills_a_writer_mid_greeting_and_the_greeting_is_answered(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    package, _ = write_mesh(work)
    text = section(KILLED)
    (shell,) = [body.splitlines() for lang, _, body in blocks(text) if lang == "sh"]
    reply_shown, tree_shown = [body for lang, _, body in blocks(text) if lang == "text"]
    # The section's promise: the page's default settings, a SIGKILL mid-work, a new writer.
    assert shell[0] == f"export JETMESH_POLICY_FILE=$PWD/{package}/policy.toml"
    assert "kill -KILL %2" in shell
    assert shell[shell.index("kill -KILL %2") + 1] == f"jetmesh run {package}.writer:agent &"
    assert "JETMESH_ACK_WAIT_S=" not in "\n".join(shell)
    # The kill waits for the writer to have started the greeting, not for a fixed time.
    assert shell[shell.index("kill -KILL %2") - 1].startswith("until grep -q Grace writer.log")

    env = mesh_env(tmp_path, work / package / "policy.toml")
    bash = Shell(work, env, tmp_path / "shell-stderr.txt")
    printed: dict[str, str] = {}
    workflow = ""
    try:
        for line in shell:
            if line.startswith("kill %"):
                break  # the mesh is stopped in `finally`, whatever happened before
            typed = line.replace("WORKFLOW", workflow)
            printed[line] = bash.type(typed)
            if found := re.search(r"^workflow (\S+)$", printed[line], re.MULTILINE):
                workflow = found[1]
    finally:
        bash.close("; ".join(shell[shell.index("kill %1 %4") :]) if "kill %1 %4" in shell else "")
        run("jetmesh down", work, env)

    slow = next(line for line in shell if '"pause_s"' in line)
    (waited,) = [line for line in shell if line.startswith("wait %")]
    reply = re.search(r"^\{$.*?^\}$", printed[waited], re.MULTILINE | re.DOTALL)
    assert reply, printed[waited]
    assert msgspec.json.decode(reply[0]) == msgspec.json.decode(reply_shown)
    assert slow.endswith("&"), "the slow greeting is in flight while the writer is killed"
    tree = shown(printed["jetmesh events WORKFLOW"])
    assert tree == shown(tree_shown), printed["jetmesh events WORKFLOW"]
    assert any(f"{package}.Greeting/1 completed x2" in line for line in tree), tree
