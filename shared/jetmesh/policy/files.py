"""Policy files as read from disk, before they are validated: a file and the files it
includes, in the order they are laid.

A file may name others with ``include`` (paths relative to it)::

    include = ["../support/policy.toml", "../research/policy.toml"]

Each included file comes before the file that includes it, each once (a file included
twice, along two paths, is read once); a file that includes itself, directly or not, is a
:class:`~jetmesh.PolicyError`. How the files' roles are laid over each other and over the
library's is :func:`jetmesh.policy.model.load_policy`'s.

Example:
    >>> [str(f.path) for f in read_files(Path("services/demo/policy.toml"))]  # doctest: +SKIP
    ['services/support/policy.toml', 'services/research/policy.toml', 'services/demo/policy.toml']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import PolicyError

INCLUDE = "include"
"""The field naming the files a policy file includes."""


@dataclass(frozen=True)
class PolicyFile:
    """One policy file's parsed TOML (without ``include``), and where it came from."""

    path: Path
    data: dict[str, Any]


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML of ``path``.

    Raises:
        PolicyError: the file is missing or not TOML.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(path, [f"{path}: not valid TOML: {exc}"]) from None


def read_files(path: Path) -> list[PolicyFile]:
    """``path`` and every file it includes, included files first, each once.

    Raises:
        PolicyError: a file is missing or not TOML, ``include`` is not a list of paths, or
            a file includes itself (directly or through others).
    """
    done: dict[Path, PolicyFile] = {}
    _read(path, done, ())
    return list(done.values())


def _read(path: Path, done: dict[Path, PolicyFile], along: tuple[Path, ...]) -> None:
    key = path.resolve()
    if key in along:
        chain = " -> ".join(str(p) for p in (*along, key))
        raise PolicyError(path, [f"{path}: {INCLUDE}: includes itself ({chain})"])
    if key in done:
        return
    data = read_toml(path)
    included = data.pop(INCLUDE, [])
    if not isinstance(included, list) or not all(isinstance(i, str) for i in included):
        raise PolicyError(path, [f"{path}: {INCLUDE}: not a list of file paths"])
    for name in included:
        _read(path.parent / name, done, (*along, key))
    done[key] = PolicyFile(path, data)
