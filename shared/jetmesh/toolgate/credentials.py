"""Tool credentials, held by the tool gateway only, looked up for each call.

Two sources, asked in this order on every call:

1. A secrets file (TOML, or JSON by its ``.json`` suffix) mapping tool names to
   credentials: ``refund = "sk-live-..."``. It is read again whenever its modification
   time, size or inode changes, so a rotation (write the new file, or rename a new one
   over it) takes effect on the next call, with no restart of the gateway or any agent.
   A file that cannot be read or parsed keeps the last good contents (logged, without
   them) until it can.
2. The environment: ``JETMESH_TOOL_<TOOL>_CREDENTIAL`` (the tool's name upper-cased,
   ``-`` as ``_``), read at each call.

A :class:`Credential` never shows its value in ``repr`` or ``str``: events and logs carry
its :attr:`~Credential.fingerprint` instead.

Example:
    >>> creds = Credentials(Path("secrets.toml"))                  # doctest: +SKIP
    >>> creds.get("refund").fingerprint                            # doctest: +SKIP
    'sha256:3b1f09ac'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("jetmesh.toolgate")

ENV_TEMPLATE = "JETMESH_TOOL_{}_CREDENTIAL"


def env_name(tool: str) -> str:
    """The environment variable holding ``tool``'s credential."""
    return ENV_TEMPLATE.format(tool.upper().replace("-", "_"))


class Credential:
    """A secret for one tool call. ``reveal()`` gives the value; nothing else does."""

    __slots__ = ("_value", "fingerprint", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source
        """Where it came from: ``file <path>`` or ``env <name>`` (never the value)."""
        self.fingerprint = "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]
        """A short fingerprint to record instead of the value."""

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Credential({self.fingerprint} from {self.source})"

    __str__ = __repr__


class Credentials:
    """The gateway's credentials: a secrets file re-read when it changes, then the
    environment."""

    def __init__(self, secrets_file: Path | None, env: Mapping[str, str] | None = None) -> None:
        self.secrets_file = secrets_file
        self._env = env if env is not None else os.environ
        self._seen: tuple[int, int, int] | None = None
        self._secrets: dict[str, str] = {}
        self._warned_mode = False

    def get(self, tool: str) -> Credential | None:
        """The credential for ``tool`` now, or None if neither source has one."""
        secrets = self._current()
        if tool in secrets:
            return Credential(secrets[tool], f"file {self.secrets_file}")
        name = env_name(tool)
        value = self._env.get(name)
        return Credential(value, f"env {name}") if value else None

    def _current(self) -> dict[str, str]:
        path = self.secrets_file
        if path is None:
            return {}
        try:
            st = path.stat()
        except OSError as exc:
            if self._seen is not None:
                log.warning(
                    "secrets file %s unreadable (%s): keeping the last", self.secrets_file, exc
                )
            return self._secrets
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen != self._seen:
            self._load(seen, st.st_mode)
        return self._secrets

    def _load(self, seen: tuple[int, int, int], mode: int) -> None:
        path = self.secrets_file
        assert path is not None
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and not self._warned_mode:
            log.warning("secrets file %s is readable by others: chmod 600 it", path)
            self._warned_mode = True
        try:
            text = path.read_text(encoding="utf-8")
            data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError too
            log.warning(
                "secrets file %s not read (%s): keeping the last",
                path,
                type(exc).__name__,
            )
            return
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            log.warning('secrets file %s is not a table of tool = "credential"', path)
            return
        self._secrets = dict(data)
        self._seen = seen
        log.info("secrets file %s loaded: %d tool(s)", path, len(data))
