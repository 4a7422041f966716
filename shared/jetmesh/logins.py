"""Who a process is on the servers: its nats-server user (an nkey) and its Redis ACL user.

``jetmesh up`` (:meth:`jetmesh.policy.servers.ServerAuth.generate`) keeps each role's
secrets in the keys directory::

    nats/<role>.nk       the role's nkey seed; nats/admin.nk for the admin
    redis/<role>.pass    the role's Redis password; redis/default.pass for the admin

A process connects as its role when that role's seed is there: with the seed, its own
inbox prefix (``_INBOX.<role>``, the only inboxes its user may subscribe to) and, for
Redis, as user ``<role>``. Without the files it connects as the servers' default user, as
on open development servers (``jetmesh up --open``) and in the open test harness.

Example:
    >>> creds = role_login(settings, "billing")                  # doctest: +SKIP
    >>> nc = await nats.connect(settings.nats_url, **creds.nats_options())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .policy.derive import inbox_prefix
from .policy.servers import ADMIN, REDIS_ADMIN
from .settings import MeshSettings

__all__ = [
    "OPEN",
    "ServerLogin",
    "admin_login",
    "nats_seed_file",
    "redis_password_file",
    "role_login",
]

DEFAULT_INBOX_PREFIX = "_INBOX"


def nats_seed_file(keys_dir: Path, user: str) -> Path:
    """Where ``user``'s nkey seed is kept."""
    return keys_dir / "nats" / f"{user}.nk"


def redis_password_file(keys_dir: Path, user: str) -> Path:
    """Where ``user``'s Redis password is kept."""
    return keys_dir / "redis" / f"{user}.pass"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class ServerLogin:
    """How one process authenticates to nats-server and Redis."""

    user: str | None
    """The NATS user (a role, or ``admin``); None: the server's default (open) user."""
    nats_seed: str | None
    inbox_prefix: str
    redis_user: str | None
    """The Redis ACL user; None: Redis's ``default`` user as the URL says."""
    redis_password: str | None

    @property
    def is_role(self) -> bool:
        """Connected as an agent role or an ingress: it may not declare streams, consumers
        or the registry, only use what the admin made (``jetmesh up``)."""
        return self.user is not None and self.user != ADMIN

    def nats_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        if self.nats_seed is None:
            return {}
        return {"nkeys_seed_str": self.nats_seed, "inbox_prefix": self.inbox_prefix}

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.asyncio.Redis.from_url`` (the URL must carry no
        user or password: redis-py lets the URL's win)."""
        if self.redis_password is None:
            return {}
        return {"username": self.redis_user, "password": self.redis_password}


OPEN = ServerLogin(None, None, DEFAULT_INBOX_PREFIX, None, None)
"""The servers' default user: no nkey, no Redis user."""


def role_login(settings: MeshSettings, role: str) -> ServerLogin:
    """``role``'s credentials from the keys directory, or :data:`OPEN` if it has none."""
    keys_dir = settings.resolved_keys_dir
    seed = _read(nats_seed_file(keys_dir, role))
    if seed is None:
        return OPEN
    password = _read(redis_password_file(keys_dir, role))
    return ServerLogin(role, seed, inbox_prefix(role), role if password else None, password)


def admin_login(settings: MeshSettings) -> ServerLogin:
    """The admin's credentials (NATS ``admin``, Redis ``default``), or :data:`OPEN`."""
    keys_dir = settings.resolved_keys_dir
    seed = _read(nats_seed_file(keys_dir, ADMIN))
    if seed is None:
        return OPEN
    password = _read(redis_password_file(keys_dir, REDIS_ADMIN))
    return ServerLogin(
        ADMIN, seed, DEFAULT_INBOX_PREFIX, REDIS_ADMIN if password else None, password
    )
