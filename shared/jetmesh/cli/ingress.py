"""The CLI's own identity: an ingress named ``cli`` that mints caller tokens."""

from __future__ import annotations

from ..client import MeshClient
from ..identity.keystore import KeyStore
from ..settings import MeshSettings
from ..subjects import Subjects

CLI_IDENTITY = "cli"


def cli_client(s: MeshSettings) -> MeshClient:
    """A mesh client for the CLI (its identity is issued on first use in development)."""
    store = KeyStore(s.resolved_keys_dir)
    identity = store.ensure(
        CLI_IDENTITY, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, ingress=True
    )
    return MeshClient(s, identity, roots=store.roots())
