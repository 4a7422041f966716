"""A mesh on servers that enforce a policy, started by the code `jetmesh up` runs
(:func:`jetmesh.cli.servers.up_servers`): every role a NATS user and a Redis user, the admin
step done, every client connected as its role.

Example:
    >>> client = await secured.ingress()                                   # doctest: +SKIP
    >>> await secured.start_replicas(counter, planner)                     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from jetmesh import Agent, KeyStore, MeshClient, MeshSettings, Replica
from jetmesh.cli.servers import cluster_settings, up_servers
from jetmesh.embedded import EmbeddedStack, free_port
from jetmesh.embedded.stack import free_cluster_ports
from jetmesh.policy import Policy, parse_policy

POLICY = {
    "roles": {
        "cli": {"ingress": True, "calls": ["planner", "approver"]},
        "planner": {"calls": ["counter"]},
        "counter": {},
        "approver": {},
    }
}
"""cli -> planner -> counter (journal, working memory), cli -> approver (signals)."""


class SecuredMesh:
    """Servers of one test that enforce :data:`POLICY`, and the clients it starts."""

    def __init__(self, state_dir: Path, policy: Policy | None = None, *, nodes: int = 1) -> None:
        """With ``nodes`` > 1, a local cluster as ``jetmesh up --cluster nodes`` runs it."""
        self.policy = policy or parse_policy(POLICY)
        if nodes > 1:
            nats, redis = free_cluster_ports(nodes)
            base = MeshSettings(
                state_dir=state_dir,
                nats_url=f"nats://127.0.0.1:{nats}",
                redis_url=f"redis://127.0.0.1:{redis}/0",
            )
            self.settings = cluster_settings(base, nodes)
        else:
            self.settings = MeshSettings(
                state_dir=state_dir,
                nats_url=f"nats://127.0.0.1:{free_port()}",
                redis_url=f"redis://127.0.0.1:{free_port()}/0",
            )
        self.keys = KeyStore(self.settings.resolved_keys_dir)
        self.replicas: list[Replica] = []
        self.clients: list[MeshClient] = []

    def up(self) -> SecuredMesh:
        """Start the servers and run the admin step; servers started are stopped again if
        the step fails (nothing is left running for a fixture that never yields)."""
        try:
            up_servers(self.settings, self.policy)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        EmbeddedStack(self.settings).down()

    async def ingress(self) -> MeshClient:
        """The ``cli`` ingress, connected as its role."""
        client = MeshClient(self.settings, self.keys.identity("cli"), roots=self.keys.roots())
        self.clients.append(client)
        return await client.start()

    async def start_replicas(self, *agents: Agent) -> list[Replica]:
        """A replica of each agent, with its provisioned identity, connected as its role."""
        started = []
        for agent in agents:
            replica = Replica(
                agent, self.settings, self.keys.identity(agent.name), roots=self.keys.roots()
            )
            self.replicas.append(replica)
            await replica.start()
            started.append(replica)
        return started

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.drain(timeout=5.0)
        for client in self.clients:
            await client.close()
