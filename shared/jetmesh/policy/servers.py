"""Server configuration generated from the policy: NATS users and Redis ACL users per role.

NATS: one account with JetStream, one nkey user per role, whose publish and subscribe
allow-lists are the role's derived subjects (:mod:`jetmesh.policy.derive`); everything else
is denied, so an agent cannot publish to another role's task subject, create or delete a
stream or consumer, or fetch from another role's consumer. An ``admin`` user (no limits)
declares the streams, the consumers (with their filter subjects) and the registry.

Redis: one ACL user per agent role limited to its key patterns and to reading, writing,
transactions and calling the mesh's functions (no scripts of its own); ``default`` is the
admin, with a password, and loads those functions (:mod:`jetmesh.provision`).

Secrets live under ``<keys dir>``, each file ``0600``, and are kept across runs::

    nats/<role>.nk       the role's nkey seed (``SU...``); nats/admin.nk for the admin
    redis/<role>.pass    the role's Redis password; redis/default.pass for the admin

Example:
    >>> servers = ServerAuth.generate(policy, settings)  # doctest: +SKIP
    >>> NatsServer(data_dir=d, config_extra=servers.nats_config())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import nkeys

from ..identity.keys import write_atomically, write_secret
from ..settings import MeshSettings
from .derive import RolePermissions, all_permissions
from .model import Policy

RESPONSES = '{max: 1, expires: "10s"}'
"""A replica may answer each request it received once, within 10 s (live discovery)."""

ACCOUNT = "MESH"
"""The NATS account every jetmesh user belongs to (JetStream enabled)."""

ADMIN = "admin"
"""The NATS admin user: declares streams, consumers and the registry."""

REDIS_ADMIN = "default"
"""The Redis admin user (Redis's own ``default``), with a password."""

REDIS_COMMANDS = (
    "-@all",
    "+@read",
    "+@write",
    "+@transaction",
    "+@connection",
    "-@scripting",
    "+fcall",
    "+fcall_ro",
    "-@admin",
    "-@dangerous",
    "-scan",
    "-randomkey",
)
"""What an agent role's Redis user may run: reads, writes, MULTI/WATCH, and calls of the
functions the admin loaded (``FCALL``: the mesh's library, :mod:`jetmesh.memory.functions`;
Redis checks their keys and the commands inside against the same key patterns). Never a
script of its own (``EVAL``, ``SCRIPT *``, ``FUNCTION *``: ``@write`` includes ``FUNCTION
LOAD`` and ``FLUSH``, so all of ``@scripting`` is taken away after it), administration, the
dangerous commands (CONFIG, FLUSHALL, KEYS, ...), pub/sub, or listing key names (SCAN)."""


def _write_secret(path: Path, text: str) -> None:
    """A seed or a password: ``0600`` in a ``0700`` directory, made before the file."""
    write_secret(path, text + "\n")


def _write_private(path: Path, text: str) -> None:
    """A generated configuration: ``0600``, in whatever directory the caller chose."""
    write_atomically(path, text + "\n", mode=0o600)


def _user_seed(path: Path) -> str:
    """The nkey user seed at ``path``, created when missing."""
    if path.exists():
        kept = path.read_text().strip()
        nkeys.from_seed(bytearray(kept.encode()))  # refuses a damaged file
        return kept
    seed: str = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    _write_secret(path, seed)
    return seed


def _password(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    _write_secret(path, password)
    return password


@dataclass(frozen=True)
class NatsUser:
    """One NATS user: its nkey and where its seed is."""

    name: str
    seed_file: Path
    public_key: str
    permissions: RolePermissions | None
    """None for the admin (no limits)."""

    @property
    def seed(self) -> str:
        return self.seed_file.read_text().strip()


@dataclass(frozen=True)
class RedisUser:
    """One Redis ACL user: its name, password file and rules (without the password)."""

    name: str
    password_file: Path
    rules: tuple[str, ...]

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def acl_line(self) -> str:
        """The user as an ACL file line, the password stored as its SHA-256."""
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        return " ".join(["user", self.name, "reset", "on", f"#{digest}", *self.rules])

    def setuser_args(self) -> list[str]:
        """Arguments of ``ACL SETUSER`` that create or reset this user on a running server."""
        return [self.name, "reset", "on", f">{self.password}", *self.rules]


def redis_rules(permissions: RolePermissions) -> tuple[str, ...]:
    """ACL rules of an agent role: its key patterns, those it may only read (``%R~``), and
    :data:`REDIS_COMMANDS`."""
    return (
        "resetkeys",
        *(f"~{pattern}" for pattern in permissions.redis_keys),
        *(f"%R~{pattern}" for pattern in permissions.redis_reads),
        "resetchannels",
        *REDIS_COMMANDS,
    )


def _conf_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


@dataclass(frozen=True)
class ServerAuth:
    """The users of both servers for one policy, with their secrets on disk."""

    nats_users: tuple[NatsUser, ...]
    redis_users: tuple[RedisUser, ...]

    @classmethod
    def generate(
        cls, policy: Policy, settings: MeshSettings, keys_dir: Path | None = None
    ) -> ServerAuth:
        """Derive every role's users, creating seeds and passwords that do not exist yet.

        Args:
            policy: the validated policy.
            settings: subject prefix, stream and bucket names.
            keys_dir: where secrets live; defaults to ``settings.resolved_keys_dir``.
        """
        base = keys_dir if keys_dir is not None else settings.resolved_keys_dir
        nats_dir, redis_dir = base / "nats", base / "redis"
        perms = all_permissions(policy, settings)
        names = {p.name for p in perms}
        for reserved in (ADMIN, REDIS_ADMIN):
            if reserved in names:
                raise ValueError(f"role name {reserved!r} is reserved for the admin user")
        nats_users = [_nats_user(ADMIN, nats_dir / f"{ADMIN}.nk", None)]
        nats_users += [_nats_user(p.name, nats_dir / f"{p.name}.nk", p) for p in perms]
        admin_pass = redis_dir / f"{REDIS_ADMIN}.pass"
        _password(admin_pass)
        redis_users = [RedisUser(REDIS_ADMIN, admin_pass, ("~*", "&*", "+@all"))]
        for directory in (nats_dir, redis_dir):
            ensure_private(directory)
        for p in perms:
            if p.ingress:
                continue
            path = redis_dir / f"{p.name}.pass"
            _password(path)
            redis_users.append(RedisUser(p.name, path, redis_rules(p)))
        return cls(tuple(nats_users), tuple(redis_users))

    def nats_user(self, name: str) -> NatsUser:
        for user in self.nats_users:
            if user.name == name:
                return user
        raise KeyError(name)

    def redis_user(self, name: str) -> RedisUser:
        for user in self.redis_users:
            if user.name == name:
                return user
        raise KeyError(name)

    def nats_config(self) -> str:
        """The ``accounts`` block for nats-server's configuration: one account with
        JetStream, the admin without limits, each role limited to its subjects."""
        lines = [
            "# Generated by jetmesh from the policy; edits are lost.",
            "accounts {",
            f"  {ACCOUNT} {{",
            "    jetstream: enabled",
            "    users: [",
        ]
        for user in self.nats_users:
            lines.append(f"      # {user.name}")
            if user.permissions is None:
                lines.append(f"      {{nkey: {user.public_key}}}")
                continue
            p = user.permissions
            lines += [
                f"      {{nkey: {user.public_key}, permissions: {{",
                f"        publish: {{allow: {_conf_list(p.publish)}}}",
                f"        subscribe: {{allow: {_conf_list(p.subscribe)}}}",
                *([f"        allow_responses: {RESPONSES}"] if p.responds else []),
                "      }}",
            ]
        lines += ["    ]", "  }", "}", ""]
        return "\n".join(lines)

    def redis_acl_file(self) -> str:
        """An ACL file (``aclfile``) with every user, passwords as SHA-256 hashes."""
        return "".join(user.acl_line() + "\n" for user in self.redis_users)

    def write_redis_acl_file(self, path: Path) -> Path:
        """Write :meth:`redis_acl_file` to ``path`` (``0600``); returns ``path``."""
        _write_private(path, self.redis_acl_file().rstrip("\n"))
        return path

    def write_nats_config(self, path: Path) -> Path:
        """Write :meth:`nats_config` to ``path`` (``0600``), to ``include`` from a
        nats-server configuration; returns ``path``."""
        _write_private(path, self.nats_config())
        return path


def _nats_user(name: str, seed_file: Path, permissions: RolePermissions | None) -> NatsUser:
    seed = _user_seed(seed_file)
    public: str = nkeys.from_seed(bytearray(seed.encode())).public_key.decode()
    return NatsUser(name, seed_file, public, permissions)


def ensure_private(path: Path) -> None:
    """Make ``path`` readable by its owner only (a secrets directory or file)."""
    os.chmod(path, 0o700 if path.is_dir() else 0o600)
