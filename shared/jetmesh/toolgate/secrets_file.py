"""A secrets file of stand-in tool credentials: one random credential per tool, for a demo
or a benchmark on tools that accept any credential (the gateway reads it like a file of
real ones, :class:`~jetmesh.toolgate.credentials.Credentials`).

Example:
    >>> write_secrets(state_dir / "secrets" / "tools.toml", ["refund"])  # doctest: +SKIP
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

from ..identity.keys import write_secret


def write_secrets(path: Path, tools: Iterable[str]) -> Path:
    """Write a secrets file (``0600`` in a ``0700`` directory, never through a planted file
    or link) with a fresh random credential per tool in ``tools``; returns ``path``."""
    lines = [f'{tool} = "demo-{tool}-{secrets.token_hex(12)}"' for tool in tools]
    write_secret(path, "\n".join(lines) + "\n")
    return path
