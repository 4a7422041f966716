"""One compromised role against a running mesh on servers that enforce its policy.

:class:`TargetMesh` starts nats-server and redis-server with the code ``jetmesh up`` runs
(every role a NATS user and a Redis user, the admin step done) for the policy of
:mod:`tests.security.target_agents`, and every agent role as its own ``jetmesh run``
process, connected as its role. The tests act as a person through the ``cli`` ingress and
count effects and audit records as the admin.

:class:`CompromisedRole` is the attacker: a client that holds exactly one role's secrets
(its signing key and certificate, its nkey seed, its Redis password; the mesh root's
public key, which is public), copied into a keys directory of its own, and nothing else.
Everything it does goes through the servers as that role.

Example:
    >>> kb = await target.compromise("kb")                              # doctest: +SKIP
    >>> await kb.publish(subject, kb.mesh.envelope(...))                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import shutil
import tomllib
from pathlib import Path
from typing import Any

from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from jetmesh import Envelope, KeyStore, MeshClient, MeshSettings, WorkingMemory
from jetmesh.cli.ingress import admin_client
from jetmesh.cli.servers import up_servers
from jetmesh.dead_letters import DeadLetter, list_dead_letters
from jetmesh.embedded import EmbeddedStack, free_port
from jetmesh.event_log import LoggedEvent, read_events
from jetmesh.logins import nats_seed_file, redis_password_file
from jetmesh.policy import parse_policy
from jetmesh.processes import AgentProcess
from tests.security import target_agents


class CompromisedRole:
    """A client holding exactly one role's secrets, in a keys directory of its own."""

    def __init__(self, role: str, keys_dir: Path, settings: MeshSettings) -> None:
        self.role = role
        self.keys_dir = keys_dir
        self.settings = settings.model_copy(update={"keys_dir": keys_dir})
        store = KeyStore(keys_dir)
        self.mesh = MeshClient(self.settings, store.identity(role), roots=store.roots())
        self.redis: Redis = Redis.from_url(
            self.settings.redis_url, **self.mesh.login.redis_options()
        )

    @classmethod
    def steal(cls, role: str, source: Path, into: Path, settings: MeshSettings) -> CompromisedRole:
        """Copy ``role``'s secrets (and the root's public key) from the keys directory
        ``source`` into ``into``."""
        into.mkdir(mode=0o700, parents=True)
        wanted = [
            Path(f"{role}.key"),
            Path(f"{role}.cert"),
            nats_seed_file(Path(), role),
            redis_password_file(Path(), role),
            *(p.relative_to(source) for p in (source / "roots").glob("*.pub")),
        ]
        for relative in wanted:
            (into / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(source / relative, into / relative)
        return cls(role, into, settings)

    def held(self) -> list[str]:
        """Every file the attacker holds, relative to its keys directory."""
        return sorted(str(p.relative_to(self.keys_dir)) for p in self.keys_dir.rglob("*.*"))

    async def start(self) -> CompromisedRole:
        await self.mesh.start()
        return self

    async def publish(self, subject: str, envelope: Envelope) -> None:
        """Sign ``envelope`` with the role's key and publish it on ``subject`` (core NATS:
        the server's permissions decide whether it goes anywhere)."""
        data, headers = self.mesh.seal(envelope)
        await self.mesh.nc.publish(subject, data, headers=headers)
        await self.mesh.nc.flush()

    async def store(self, subject: str, envelope: Envelope) -> None:
        """Sign ``envelope`` and publish it to a stream, waiting for the stream's ack."""
        data, headers = self.mesh.seal(envelope)
        await self.mesh.publisher.publish(subject, data, headers)

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.mesh.close()


class TargetMesh:
    """Enforced servers, every role of :mod:`tests.security.target_agents` as a process,
    the ``cli`` ingress (a person's side) and the admin (to count)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.policy = parse_policy(tomllib.loads(target_agents.POLICY))
        self.settings = MeshSettings(
            state_dir=state_dir,
            nats_url=f"nats://127.0.0.1:{free_port()}",
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            call_timeout_s=20.0,
        )
        self.keys = KeyStore(self.settings.resolved_keys_dir)
        self.processes: dict[str, AgentProcess] = {}
        self.cli: MeshClient | None = None
        self.admin: MeshClient | None = None
        self.attackers: list[CompromisedRole] = []

    async def start(self) -> TargetMesh:
        await asyncio.to_thread(up_servers, self.settings, self.policy)
        for role in target_agents.ROLES:
            log = self.state_dir / "logs" / f"{role}.log"
            target = f"tests.security.target_agents:{role}"
            process = AgentProcess([target], self.settings, log_file=log)
            self.processes[role] = await asyncio.to_thread(process.start)
        self.cli = await MeshClient(
            self.settings, self.keys.identity("cli"), roots=self.keys.roots()
        ).start()
        self.admin = await admin_client(self.settings).start()
        return self

    async def compromise(self, role: str) -> CompromisedRole:
        """An attacker with exactly ``role``'s secrets."""
        into = self.state_dir / f"stolen-{role}-{len(self.attackers)}"
        attacker = CompromisedRole.steal(role, self.keys.directory, into, self.settings)
        self.attackers.append(attacker)
        return await attacker.start()

    def token(self, subject: str = "alice", scopes: list[str] | None = None) -> str:
        assert self.cli is not None
        return self.cli.mint_token(
            subject, scopes=target_agents.SCOPES if scopes is None else scopes
        )

    # -- counting, as the admin ---------------------------------------------------------------

    async def events(self, workflow: str) -> list[LoggedEvent]:
        assert self.admin is not None
        return await read_events(self.admin, workflow)

    async def dead_letters(self, agent: str) -> list[DeadLetter]:
        assert self.admin is not None
        s = self.settings
        try:
            return await list_dead_letters(
                self.admin.js, s.dlq_stream, self.admin.subjects.dlq(agent), limit=10_000
            )
        except NotFoundError:
            return []

    async def paid(self, workflow: str) -> float:
        """What ``payments`` paid in ``workflow`` (its working memory, read as the admin)."""
        assert self.admin is not None
        memory = WorkingMemory(self.admin.redis, self.settings.subject_prefix, workflow, "payments")
        return await memory.get(target_agents.PAID, float) or 0.0

    async def acl_log(self, user: str, since: float) -> list[dict[str, Any]]:
        """Redis's record of the commands it refused ``user`` since ``since`` (Unix time)."""
        assert self.admin is not None
        entries = await self.admin.redis.acl_log()
        return [
            e
            for e in entries
            if e.get("username") == user and int(e["timestamp-created"]) >= int(since * 1000)
        ]

    async def aclose(self) -> None:
        for attacker in self.attackers:
            await attacker.aclose()
        for client in (self.cli, self.admin):
            if client is not None:
                await client.close()
        for proc in self.processes.values():
            await asyncio.to_thread(proc.stop)
        await asyncio.to_thread(EmbeddedStack(self.settings).down)
