"""The root package's ``jetmesh.__all__``: complete, sorted, and nothing in it missing; every
exception of the tree exported. In the style of httpx's ``tests/test_exported_members.py``.

The rest of the public API (each subpackage's ``__all__``, and the few public modules) is
tested in tests/test_public_api.py.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import jetmesh
from jetmesh import _exceptions

ROOT_MODULES = [
    "jetmesh._exceptions.base",
    "jetmesh._exceptions.calls",
    "jetmesh._exceptions.rejected",
    "jetmesh._exceptions.memory",
    "jetmesh._exceptions.tools",
    "jetmesh.envelope",
    "jetmesh.events",
    "jetmesh.settings",
    "jetmesh.addresses",
    "jetmesh.identity.keystore",
    "jetmesh.identity.tokens",
]
"""Modules whose every public class is meant for users, so the root package exports each."""


def test_all_names_exist() -> None:
    missing = [name for name in jetmesh.__all__ if not hasattr(jetmesh, name)]
    assert not missing, f"jetmesh.__all__ names missing from the package: {missing}"


def test_all_is_sorted_and_unique() -> None:
    assert jetmesh.__all__ == sorted(set(jetmesh.__all__))


def test_every_public_member_is_exported() -> None:
    members = {
        name
        for name, value in vars(jetmesh).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    unexported = members - set(jetmesh.__all__)
    assert not unexported, f"import these in jetmesh/__init__.py's __all__: {sorted(unexported)}"


def test_exported_objects_come_from_jetmesh() -> None:
    for name in jetmesh.__all__:
        value = getattr(jetmesh, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("jetmesh."), name


def test_every_exception_in_the_tree_is_exported() -> None:
    exceptions = {
        name
        for name, value in vars(_exceptions).items()
        if inspect.isclass(value) and issubclass(value, jetmesh.MeshError)
    }
    assert "MeshError" in exceptions
    assert len(exceptions) > 15
    missing = sorted(exceptions - set(jetmesh.__all__))
    assert not missing, f"exceptions not exported from jetmesh: {missing}"
    for name in exceptions:
        assert getattr(jetmesh, name) is getattr(_exceptions, name)


def test_every_exception_is_documented_in_the_tree() -> None:
    doc = _exceptions.__doc__ or ""
    for name, value in vars(_exceptions).items():
        if inspect.isclass(value) and issubclass(value, jetmesh.MeshError):
            assert f" {name} " in doc or f" {name}\n" in doc, f"{name} missing from the tree"


def _all_submodules() -> list[types.ModuleType]:
    modules = [jetmesh]
    for info in pkgutil.walk_packages(jetmesh.__path__, "jetmesh."):
        if info.name.endswith(".__main__"):
            continue  # running it is its only purpose
        modules.append(importlib.import_module(info.name))
    return modules


def test_every_mesh_error_anywhere_is_exported() -> None:
    _all_submodules()
    found: set[type[BaseException]] = set()
    pending: list[type[BaseException]] = [jetmesh.MeshError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    stray = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in found
        if cls.__module__.startswith("jetmesh") and getattr(jetmesh, cls.__name__, None) is not cls
    )
    assert not stray, f"MeshError subclasses not exported from jetmesh: {stray}"


@pytest.mark.parametrize("module_name", ROOT_MODULES)
def test_public_classes_of_user_facing_modules_are_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    classes = {
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__ == module_name and not name.startswith("_")
    }
    assert classes, f"{module_name} defines no public class"
    missing = sorted(
        name for name in classes if getattr(jetmesh, name, None) is not vars(module)[name]
    )
    assert not missing, f"{module_name} classes not exported from jetmesh: {missing}"
