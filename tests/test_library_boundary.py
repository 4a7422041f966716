"""The library stands alone: every module of jetmesh imports, and the command line starts,
in a process where importing ``services`` or ``subjects`` fails, as in an install of
jetmesh alone (import-check reads the same boundary from the source, deferred imports
included)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ALONE = """
import importlib, pkgutil, sys

class Outside:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("services", "subjects"):
            raise ImportError(f"{name}: outside the library")
        return None

sys.meta_path.insert(0, Outside())
import jetmesh
names = [m.name for m in pkgutil.walk_packages(jetmesh.__path__, "jetmesh.")]
for name in names:
    if not name.endswith(".__main__"):
        importlib.import_module(name)
print(len(names), "modules")
"""


def run_alone(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_every_module_imports_without_services_or_subjects() -> None:
    done = run_alone(ALONE)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) > 100


@pytest.mark.parametrize("command", [["--help"], ["launch", "--help"], ["policy", "--help"]])
def test_the_command_line_starts_without_services_or_subjects(command: list[str]) -> None:
    code = ALONE.split("import jetmesh")[0] + "from jetmesh.cli import main\nmain()\n"
    done = run_alone(code, *command)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
