"""The CLI's identities: the ``cli`` ingress that mints caller tokens and sends tasks
(publish, signal, approve, deny, the task of ``dlq redrive``), and the operator (dlq,
events, replay, keys revoke).

On servers that enforce the policy (``jetmesh up``) the ingress connects as the ``cli``
role (or another ingress role of the policy, ``dlq redrive --ingress``), and operator
commands as the ``admin`` user, signing as the ``admin`` identity (issued by the root here
on first use). On open servers both are the ``cli`` ingress.
"""

from __future__ import annotations

from ..addresses import Subjects
from ..client import MeshClient
from ..identity.keystore import KeyStore
from ..logins import admin_login
from ..policy.servers import ADMIN
from ..settings import MeshSettings

CLI_IDENTITY = "cli"


def cli_client(s: MeshSettings, name: str = CLI_IDENTITY) -> MeshClient:
    """A mesh client for the CLI as the ingress ``name`` (its identity is issued on first
    use in development; on servers that enforce the policy, it connects as that role)."""
    store = KeyStore(s.resolved_keys_dir)
    identity = store.ensure(
        name, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, ingress=True
    )
    return MeshClient(s, identity, roots=store.roots())


def admin_client(s: MeshSettings) -> MeshClient:
    """A mesh client for operator commands: as the admin where the servers enforce the
    policy, else the ``cli`` ingress.

    Raises:
        ConfigError: no admin identity and no root key to issue one.
    """
    credentials = admin_login(s)
    if credentials.user is None:
        return cli_client(s)
    store = KeyStore(s.resolved_keys_dir)
    identity = store.ensure(ADMIN, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s)
    return MeshClient(s, identity, roots=store.roots(), login=credentials)
