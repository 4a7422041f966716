"""The public API: the names in ``__all__`` of the packages and modules listed here, and
nothing else. Every other module of jetmesh is internal and may change without notice.

The lists below are the one place that says which packages and modules are public;
docs/ARCHITECTURE.md ("Public API") states them, and a test keeps the two the same. The
meshes (services/), the load tests (loadtest/), the wire contract (subjects/) and the code
samples of README.md and docs/ import jetmesh through them only; tests are white-box and
may import anything.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import jetmesh

ROOT = Path(__file__).resolve().parents[1]

PUBLIC_PACKAGES = [
    "jetmesh",
    "jetmesh.bus",
    "jetmesh.cli",
    "jetmesh.dead_letters",
    "jetmesh.embedded",
    "jetmesh.identity",
    "jetmesh.load",
    "jetmesh.memory",
    "jetmesh.models",
    "jetmesh.patterns",
    "jetmesh.policy",
    "jetmesh.replay",
    "jetmesh.runtime",
    "jetmesh.telemetry",
    "jetmesh.toolgate",
]
"""The root and every subpackage: what a user of each concept needs, in its ``__init__``."""

PUBLIC_MODULES = [
    "jetmesh.envelope",
    "jetmesh.event_log",
    "jetmesh.events",
    "jetmesh.ingress",
    "jetmesh.logins",
    "jetmesh.memory.connection",
    "jetmesh.processes",
    "jetmesh.settings",
]
"""Modules that are a concept of their own, with their own ``__all__``."""

PUBLIC = PUBLIC_PACKAGES + PUBLIC_MODULES

USERS = ("services", "loadtest", "subjects")
"""Folders whose code uses jetmesh as its users do: through the public API only."""

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sort_key(name: str) -> tuple[int, str]:
    """The order of ruff's RUF022: CONSTANTS, then Classes, then the rest, each sorted."""
    if name.isupper():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def exported(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{module_name} has no __all__ list"
    return names


def test_every_subpackage_is_public() -> None:
    """Every subpackage but the private ones (``_exceptions``: its names are the root's)."""
    packages = {
        f"jetmesh.{info.name}"
        for info in pkgutil.iter_modules(jetmesh.__path__)
        if info.ispkg and not info.name.startswith("_")
    }
    assert packages == set(PUBLIC_PACKAGES) - {"jetmesh"}


@pytest.mark.parametrize("module_name", PUBLIC)
def test_all_is_sorted_and_unique(module_name: str) -> None:
    names = exported(module_name)
    assert names, f"{module_name}.__all__ is empty"
    assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
    assert names == sorted(names, key=sort_key), f"{module_name}.__all__ is not sorted"


@pytest.mark.parametrize("module_name", PUBLIC)
def test_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in exported(module_name) if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names missing from it: {missing}"


@pytest.mark.parametrize("package_name", PUBLIC_PACKAGES)
def test_every_public_member_of_a_package_is_exported(package_name: str) -> None:
    package = importlib.import_module(package_name)
    members = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    unexported = sorted(members - set(exported(package_name)))
    assert not unexported, f"add to {package_name}.__all__ or import privately: {unexported}"


@pytest.mark.parametrize("module_name", PUBLIC)
def test_exported_classes_and_functions_are_jetmesh_and_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in exported(module_name):
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("jetmesh."), f"{module_name}.{name}"
            if inspect.isclass(value) and issubclass(value, BaseException):
                continue  # drawn in jetmesh._exceptions' tree (tests/test_exported_members.py)
            assert (value.__doc__ or "").strip(), f"{module_name}.{name} has no docstring"


@pytest.mark.parametrize("package_name", PUBLIC_PACKAGES[1:])
def test_subpackages_say_their_modules_are_internal(package_name: str) -> None:
    doc = importlib.import_module(package_name).__doc__ or ""
    said = "``__all__`` is this package's public API; its modules are internal"
    assert said in " ".join(doc.split()), f"{package_name}'s docstring: {said!r}"


def test_architecture_lists_the_public_api() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert "\n## Public API\n" in text, "docs/ARCHITECTURE.md has no '## Public API' section"
    section = text.split("\n## Public API\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(jetmesh(?:\.[a-z_]+)*)`", section))
    assert named == set(PUBLIC), (
        f"docs/ARCHITECTURE.md's Public API names {sorted(named - set(PUBLIC))} more and "
        f"{sorted(set(PUBLIC) - named)} fewer than tests/test_public_api.py"
    )


def user_sources() -> Iterator[tuple[str, str]]:
    """(where, source) of every .py file of the users and every python sample of the docs."""
    for folder in USERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()
    for path in DOCS:
        blocks = re.findall(r"^```python[^\n]*\n(.*?)^```", path.read_text(), re.S | re.M)
        for number, block in enumerate(blocks, 1):
            yield f"{path.relative_to(ROOT)} (python sample {number})", block


IMPORT_LINE = r"^(?:from [\w.]+ import (?:\([^)]*\)|.*)|import [\w., ]+)$"
"""An import statement that starts a line, parenthesized names included."""


def private_imports(source: str) -> Iterator[str]:
    """Each import of jetmesh in ``source`` that goes around the public API."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree = compile(source, "<source>", "exec", flags=flags)
    except SyntaxError:  # a sample that is not all code: its import statements alone
        statements = re.findall(IMPORT_LINE, source, re.M)
        tree = compile("\n".join(statements), "<source>", "exec", flags=flags)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jetmesh" and alias.name not in PUBLIC:
                    yield f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] != "jetmesh":
                continue
            if node.module not in PUBLIC:
                yield f"from {node.module} import ..."
                continue
            names = exported(node.module)
            for alias in node.names:
                if alias.name not in names and f"{node.module}.{alias.name}" not in PUBLIC:
                    yield f"from {node.module} import {alias.name}"


def test_users_import_jetmesh_through_the_public_api() -> None:
    found = [
        f"{where}: {line}" for where, source in user_sources() for line in private_imports(source)
    ]
    public = ", ".join(PUBLIC)
    assert not found, "import these from the public API (" + public + "):\n" + "\n".join(found)


def test_the_scan_sees_the_users() -> None:
    sources = dict(user_sources())
    assert any(where.startswith("services/") for where in sources)
    assert any(where.startswith("loadtest/") for where in sources)
    assert any("(python sample" in where for where in sources)
    assert list(private_imports("from jetmesh.cli.run import run_forever"))
    assert list(private_imports("from jetmesh.envelope import STEP_RE"))
    assert not list(private_imports("from jetmesh import events as ev\nimport jetmesh"))
