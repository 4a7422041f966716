"""``jetmesh up``, ``down`` and ``status``: the embedded nats-server and redis-server."""

from __future__ import annotations

from ..embedded import EmbeddedStack, StackStatus
from ..identity.keystore import KeyStore
from .common import console, settings


def _print(status: StackStatus) -> None:
    for server in (status.nats, status.redis):
        pid = f" pid {server.pid}" if server.pid else ""
        console.print(f"{server.name:<6} {server.state.value:<8} {server.url}{pid}")


def up() -> None:
    """Start nats-server (JetStream) and redis-server in the state directory, or reuse
    servers already answering at the configured URLs; create the root key if missing."""
    s = settings()
    _print(EmbeddedStack(s).up())
    root = KeyStore(s.resolved_keys_dir).init_root()
    console.print(f"root   key      {root.kid} ({s.resolved_keys_dir})")


def down() -> None:
    """Stop the servers that `jetmesh up` started (servers it reused are left running)."""
    _print(EmbeddedStack(settings()).down())


def status() -> None:
    """Show whether the servers are running."""
    _print(EmbeddedStack(settings()).status())
