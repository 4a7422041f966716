"""``jetmesh up``, ``down`` and ``status``: the embedded nats-server and redis-server."""

from __future__ import annotations

import asyncio

import typer

from ..embedded import EmbeddedStack, StackStatus
from ..identity.keystore import KeyStore
from ..policy import Policy, PolicyError, mesh_policy
from ..provision import Up, bring_up
from ..settings import MeshSettings
from .admin import print_provisioned
from .common import console, err_console, settings
from .render import markup


def up_servers(settings: MeshSettings, policy: Policy | None) -> Up:
    """:func:`~jetmesh.provision.bring_up` on an event loop of its own: ``jetmesh up``,
    for callers without one (this command, the demo, test fixtures).

    Raises:
        ServerStartError, ConfigError: as :func:`~jetmesh.provision.bring_up`.
    """
    return asyncio.run(bring_up(settings, policy))


def _print(status: StackStatus) -> None:
    for server in (status.nats, status.redis):
        pid = f" pid {server.pid}" if server.pid else ""
        console.print(f"{server.name:<6} {server.state.value:<8} {server.url}{pid}")


def up(
    open_: bool = typer.Option(
        False,
        "--open",
        help="start servers without users (any client may do anything): development only",
    ),
) -> None:
    """Start nats-server (JetStream) and redis-server in the state directory, enforcing
    the policy (JETMESH_POLICY_FILE, else the library's own roles): a NATS user and a Redis user
    per role, then the admin step (streams, consumers, registry, certificates). Servers
    already answering at the configured URLs are reused."""
    s = settings()
    policy = None
    if not open_:
        try:
            policy = mesh_policy(s.policy_file)
        except PolicyError as exc:
            for problem in exc.problems:
                err_console.print(
                    f"[red]error:[/red] {markup(problem)}", highlight=False, soft_wrap=True
                )
            raise typer.Exit(1) from None
    done = up_servers(s, policy)
    _print(done.status)
    root = KeyStore(s.resolved_keys_dir).root()
    console.print(f"root   key      {root.kid} ({s.resolved_keys_dir})")
    if done.provisioned is None:
        console.print("open   servers without users: every client may do anything")
        return
    source = s.policy_file or "the library's roles alone (cli, toolgate)"
    assert policy is not None
    console.print(
        f"policy {source}: {len(policy.roles)} roles, each a NATS user "
        f"({s.resolved_keys_dir / 'nats'}) and, for agents, a Redis user "
        f"({s.resolved_keys_dir / 'redis'})",
        highlight=False,
        soft_wrap=True,
    )
    if done.status.nats.state.value == "reused" or done.status.redis.state.value == "reused":
        console.print(
            "note   a reused server keeps the users it was started with; "
            "`jetmesh down` then `jetmesh up` to start it with these",
            highlight=False,
        )
    print_provisioned(done.provisioned, s)


def down() -> None:
    """Stop the servers that `jetmesh up` started (servers it reused are left running)."""
    _print(EmbeddedStack(settings()).down())


def status() -> None:
    """Show whether the servers are running."""
    _print(EmbeddedStack(settings()).status())
