"""Every secret a deployment needs, written from the policy with no server running.

``jetmesh admin secrets --out DIR`` lays them out so that each process is given its own
directory and nothing else (a compose secret, a Kubernetes Secret)::

    DIR/<role>/                a role's keys directory (its JETMESH_KEYS_DIR):
        <role>.key, <role>.cert    its private key and its certificate, issued from the
                                   policy (subjects, scopes, ingress) by the root key
        roots/<kid>.pub            the trusted root public keys
        nats/<role>.nk             its nats-server nkey seed
        redis/<role>.pass          its Redis password (an ingress has no Redis user)
    DIR/admin/                 the admin step's keys directory (``jetmesh admin provision``):
        root.key, roots/<kid>.pub  the root key, which issues every certificate
        admin.key, admin.cert      the operator commands' identity
        nats/admin.nk              the NATS admin user's seed
        redis/default.pass         the Redis admin's (``default``) password
        and every role's key, certificate, seed and password: the admin step re-issues a
        role's certificate for the key the role holds, and switches a shut-out Redis user
        on again with its password (the root key could make any of them anyway)
    DIR/servers/nats-users.conf    the accounts and users nats-server includes
    DIR/servers/redis-users.acl    the Redis ACL file: every role's user and ``default``
    DIR/tools.toml             with ``tools``: stand-in credentials of the tool gateway
                               (kept when present: put real ones there)

Files are ``0600``, directories ``0700``. ``DIR/admin`` is the source: a role's directory is
a copy of its part, written again on every run. Running it again keeps every key, seed and
password, and renews a certificate only when it is close to expiry or no longer says what
the policy says (:func:`jetmesh.provision.issue_from_policy`).

Example:
    >>> written = write_deploy_secrets(Path("compose/secrets"), policy, settings)  # doctest: +SKIP
    >>> written.role_dir("billing")                                              # doctest: +SKIP
    PosixPath('compose/secrets/billing')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import ConfigError
from .addresses import Subjects
from .identity.keys import private_directory, write_secret
from .identity.keystore import KeyStore
from .logins import nats_seed_file, redis_password_file
from .policy.model import Policy
from .policy.servers import ADMIN, ServerAuth, ensure_private
from .provision import issue_from_policy
from .settings import MeshSettings
from .toolgate.secrets_file import write_secrets

__all__ = ["SERVERS", "TOOLS_FILE", "DeploySecrets", "write_deploy_secrets"]

SERVERS = "servers"
"""The directory of the servers' generated users (not a role's: no role may be named so)."""

TOOLS_FILE = "tools.toml"
"""The tool gateway's credentials file, beside the directories."""


@dataclass(frozen=True)
class DeploySecrets:
    """Where :func:`write_deploy_secrets` wrote a deployment's secrets."""

    out: Path
    roles: tuple[str, ...]
    """Every role of the policy (agents and ingresses), sorted; each has its directory."""
    renewed: tuple[str, ...]
    """Roles whose certificate this run issued (new, renewed, or changed by the policy)."""
    tools_file: Path | None = None
    """The tool gateway's credentials file, when asked for."""

    @property
    def admin_dir(self) -> Path:
        return self.out / ADMIN

    @property
    def nats_users(self) -> Path:
        return self.out / SERVERS / "nats-users.conf"

    @property
    def redis_acl(self) -> Path:
        return self.out / SERVERS / "redis-users.acl"

    def role_dir(self, role: str) -> Path:
        return self.out / role


def write_deploy_secrets(
    out: Path, policy: Policy, settings: MeshSettings, *, tools: Sequence[str] = ()
) -> DeploySecrets:
    """Write (or bring up to date) every secret of ``policy``'s deployment under ``out``.

    Args:
        out: the directory (made ``0700``).
        policy: the validated policy.
        settings: subject prefix, stream and bucket names, certificate lifetime.
        tools: tools that need a credential: a stand-in for each is written to
            ``out/tools.toml`` when that file does not exist.

    Raises:
        ConfigError: a role is named ``servers`` or ``admin``, or a directory under ``out``
            belongs to another user.
    """
    for reserved in (SERVERS, ADMIN):
        if reserved in policy.roles:
            raise ConfigError(f"role name {reserved!r} is reserved in a deployment's secrets")
    private_directory(out)
    admin_dir = out / ADMIN
    store = KeyStore(admin_dir)
    store.init_root()
    auth = ServerAuth.generate(policy, settings, keys_dir=admin_dir)
    store.ensure(ADMIN, subjects=Subjects(settings.subject_prefix), ttl_s=settings.cert_ttl_s)
    renewed: list[str] = []
    roles = tuple(sorted(policy.roles))
    for role in roles:
        before = _read(admin_dir / f"{role}.cert")
        identity = issue_from_policy(store, policy, role, settings)
        if identity.certificate != before:
            renewed.append(role)
        _copy_role(admin_dir, out / role, role)
    written = DeploySecrets(out, roles, tuple(renewed))
    private_directory(out / SERVERS)
    auth.write_nats_config(written.nats_users)
    auth.write_redis_acl_file(written.redis_acl)
    if tools:
        tools_file = out / TOOLS_FILE
        if not tools_file.exists():
            write_secrets(tools_file, tools)
        written = DeploySecrets(out, roles, tuple(renewed), tools_file)
    _tighten(out)
    return written


def _tighten(out: Path) -> None:
    """Every directory under ``out`` ``0700`` and every file ``0600`` (the key store
    writes certificates and root public keys readable by all: here they go to one process)."""
    for path in sorted(out.rglob("*")):
        if not path.is_symlink():
            ensure_private(path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _copy_role(admin_dir: Path, role_dir: Path, role: str) -> None:
    """``role``'s part of the admin directory, copied into its own directory."""
    files = [
        Path(f"{role}.key"),
        Path(f"{role}.cert"),
        *(p.relative_to(admin_dir) for p in sorted((admin_dir / "roots").glob("*.pub"))),
        nats_seed_file(Path(), role),
        redis_password_file(Path(), role),
    ]
    private_directory(role_dir)
    for name in files:
        source = admin_dir / name
        if source.exists():  # an ingress has no Redis password
            write_secret(role_dir / name, source.read_text())
    wanted = {role_dir / n for n in files if (admin_dir / n).exists()}
    for stale in (role_dir / "roots").glob("*.pub"):  # a root no longer trusted
        if stale not in wanted:
            stale.unlink()
