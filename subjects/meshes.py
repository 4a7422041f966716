"""The meshes that exist, as the catalogue gathers them: every package under ``services/``
that declares a contract, that is a ``wire`` module beside its ``ROLES``.

A mesh's types are the classes of its ``wire`` module that name themselves on the wire
(``__mesh_type__``), in the order they are defined; its roles are the ``agent`` of each
module its ``ROLES`` names, with the type its handler accepts and the type it returns, and
the agent's description. A mesh added under ``services/`` is in the catalogue at the next
``python -m subjects.generate``; nothing here names one.

Example:
    >>> [mesh.name for mesh in meshes()]  # doctest: +SKIP
    ['research', 'support']
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import Any

from jetmesh import Agent

PACKAGE = "services"
"""Where the meshes are: one package each."""


@dataclass(frozen=True)
class MeshRole:
    """One role of a mesh: the agent, what it accepts and what it returns."""

    agent: str
    accepts: type[Any]
    returns: type[Any]
    description: str


@dataclass(frozen=True)
class MeshContract:
    """What one mesh puts on the wire: its types and its roles."""

    name: str
    types: tuple[type[Any], ...]
    roles: tuple[MeshRole, ...]


def meshes(package: str = PACKAGE) -> list[MeshContract]:
    """Every mesh under ``package`` with a ``wire`` module and ``ROLES``, by name.

    Raises:
        TypeError: a role's module has no ``agent``, or its agent has not one handler.
    """
    found = []
    root = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        name = f"{package}.{info.name}"
        if not info.ispkg or importlib.util.find_spec(f"{name}.wire") is None:
            continue
        roles = getattr(importlib.import_module(name), "ROLES", ())
        if roles:
            found.append(_contract(name, tuple(roles)))
    return found


def _contract(name: str, roles: tuple[str, ...]) -> MeshContract:
    wire = importlib.import_module(f"{name}.wire")
    types = tuple(
        value
        for value in vars(wire).values()
        if isinstance(value, type)
        and value.__module__ == wire.__name__
        and isinstance(value.__dict__.get("__mesh_type__"), str)
    )
    return MeshContract(
        name=name.rsplit(".", 1)[1],
        types=types,
        roles=tuple(_role(f"{name}.{role}") for role in roles),
    )


def _role(module: str) -> MeshRole:
    agent = getattr(importlib.import_module(module), "agent", None)
    if not isinstance(agent, Agent) or len(agent.handlers) != 1:
        raise TypeError(f"{module}.agent is not an Agent with one handler")
    (handler,) = agent.handlers.values()
    return MeshRole(
        agent=agent.name,
        accepts=handler.input_type,
        returns=handler.output_type,
        description=agent.description,
    )
