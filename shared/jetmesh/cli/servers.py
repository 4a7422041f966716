"""``jetmesh up``, ``down`` and ``status``: the embedded nats-server and redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from .._exceptions import ServerStartError
from ..embedded import EmbeddedStack, Endpoint, StackStatus
from ..embedded.ports import host_port
from ..embedded.stack import SENTINEL_PORT_OFFSET
from ..identity.keystore import KeyStore
from ..memory.redis_url import DEFAULT_SERVICE, SENTINEL_SCHEME
from ..policy import Policy
from ..provision import Up, bring_up
from ..settings import MeshSettings
from .admin import policy_or_exit, print_provisioned
from .common import console, err_console, settings

CLUSTER_ENV = "cluster.env"


def up_servers(settings: MeshSettings, policy: Policy | None) -> Up:
    """:func:`~jetmesh.provision.bring_up` on an event loop of its own: ``jetmesh up``,
    for callers without one (this command, the demo, test fixtures).

    Raises:
        ServerStartError, ConfigError: as :func:`~jetmesh.provision.bring_up`.
    """
    return asyncio.run(bring_up(settings, policy))


def _print(status: StackStatus) -> None:
    width = max(6, *(len(server.name) for server in status.servers))
    for server in status.servers:
        pid = f" pid {server.pid}" if server.pid else ""
        console.print(f"{server.name:<{width}} {server.state.value:<8} {server.url}{pid}")


def cluster_settings(s: MeshSettings, nodes: int) -> MeshSettings:
    """``s`` as a local cluster: ``nodes`` nats-servers on consecutive ports from the
    configured one, a Redis primary and replica watched by three Sentinels (on the Redis
    port + 20000, + 20001, + 20002), streams at 3 replicas (``nodes`` if fewer), the step
    ledger's writes on the Redis replica before a step goes on."""
    nats = Endpoint.parse(s.nats_url, default_port=4222)
    redis = Endpoint.parse(s.redis_url, default_port=6379)
    host = "127.0.0.1" if nats.host == "localhost" else nats.host
    urls = ",".join(f"nats://{host_port(host, nats.port + i)}" for i in range(nodes))
    sentinels = ",".join(
        host_port(redis.host, redis.port + SENTINEL_PORT_OFFSET + i) for i in range(3)
    )
    return s.model_copy(
        update={
            "nats_url": urls,
            "redis_url": f"{SENTINEL_SCHEME}://{sentinels}/{DEFAULT_SERVICE}/0",
            "stream_replicas": min(nodes, 3),
            "redis_wait_replicas": 1,
        }
    )


def _write_cluster_env(s: MeshSettings) -> Path:
    """The settings every process of this cluster needs, as a file to source."""
    path = Path(s.state_dir) / CLUSTER_ENV
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `jetmesh up --cluster`: the settings of every process of this mesh.\n"
        "# set -a; . " + str(path) + "; set +a\n"
        f"JETMESH_NATS_URL={s.nats_url}\n"
        f"JETMESH_REDIS_URL={s.redis_url}\n"
        f"JETMESH_STREAM_REPLICAS={s.stream_replicas}\n"
        f"JETMESH_REDIS_WAIT_REPLICAS={s.redis_wait_replicas}\n"
    )
    return path


def up(
    open_: bool = typer.Option(
        False,
        "--open",
        help="start servers without users (any client may do anything): development only",
    ),
    cluster: int = typer.Option(
        0,
        "--cluster",
        min=0,
        max=7,
        help="run a local cluster of this many nats-servers (3: streams at 3 replicas), "
        "with a Redis primary, a replica and three Sentinels; writes the settings every "
        "process needs to <state dir>/cluster.env",
    ),
) -> None:
    """Start nats-server (JetStream) and redis-server in the state directory, enforcing
    the policy (JETMESH_POLICY_FILE, else the library's own roles): a NATS user and a Redis user
    per role, then the admin step (streams, consumers, registry, certificates). Servers
    already answering at the configured URLs are reused. Several URLs in JETMESH_NATS_URL
    or a redis+sentinel:// JETMESH_REDIS_URL start a cluster (docs/deploy.md)."""
    s = settings()
    if cluster == 1:
        err_console.print("[red]error:[/red] a cluster has at least 2 nodes (3 for R3)")
        raise typer.Exit(2)
    if cluster:
        s = cluster_settings(s, cluster)
    policy = None if open_ else policy_or_exit(s.policy_file)
    try:
        done = up_servers(s, policy)
    except ServerStartError as exc:  # a port taken, a server that would not start
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
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
    if any(server.state.value == "reused" for server in done.status.servers):
        console.print(
            "note   a reused server keeps the users it was started with; "
            "`jetmesh down` then `jetmesh up` to start it with these",
            highlight=False,
        )
    print_provisioned(done.provisioned, s)
    if cluster:
        env = _write_cluster_env(s)
        console.print(
            f"cluster settings in {env}: every process of this mesh needs them "
            f"(set -a; . {env}; set +a)",
            highlight=False,
            soft_wrap=True,
        )


def down() -> None:
    """Stop the servers that `jetmesh up` started (servers it reused are left running),
    a cluster's too."""
    s = settings()
    _print(EmbeddedStack(s).down())
    (Path(s.state_dir) / CLUSTER_ENV).unlink(missing_ok=True)


def status() -> None:
    """Show whether the servers are running."""
    _print(EmbeddedStack(settings()).status())
