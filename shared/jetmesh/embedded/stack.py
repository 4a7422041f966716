"""The embedded stack: detached nats-server and redis-server processes under ``state_dir``.

By default one of each. Several URLs in ``nats_url`` make a JetStream cluster of that many
nodes (routes on each client port + :data:`ROUTE_PORT_OFFSET`, as 4222 and 6222); a
``redis+sentinel://`` ``redis_url`` makes a primary, a replica and the Sentinels it lists
(the data nodes on the first two Sentinels' ports - :data:`SENTINEL_PORT_OFFSET`, as 26379
and 6379). ``jetmesh up --cluster 3`` writes such settings.

Example:
    >>> from pathlib import Path
    >>> from jetmesh.settings import MeshSettings
    >>> stack = EmbeddedStack(MeshSettings(state_dir=Path(".jetmesh")))  # doctest: +SKIP
    >>> stack.up().nats.state  # doctest: +SKIP
    <ServerState.STARTED: 'started'>
    >>> stack.down().running  # doctest: +SKIP
    False
"""

from __future__ import annotations

import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jetmesh._exceptions import ServerStartError
from jetmesh.embedded.endpoint import Endpoint
from jetmesh.embedded.nats import NatsCluster, NatsServer
from jetmesh.embedded.pids import (
    pid_alive,
    pid_command,
    read_pid_file,
    terminate_pid,
    write_pid_file,
)
from jetmesh.embedded.ports import free_block, host_port, port_open, wait_for_port
from jetmesh.embedded.probe import Protocol, speaks
from jetmesh.embedded.process import ServerProcess, write_private
from jetmesh.embedded.redis import RedisServer
from jetmesh.embedded.sentinel import RedisSentinel
from jetmesh.embedded.status import ServerState, ServerStatus, StackStatus
from jetmesh.memory.redis_url import SentinelTarget, is_sentinel_url
from jetmesh.settings import MeshSettings

if TYPE_CHECKING:
    from jetmesh.policy.servers import ServerAuth

_BINARIES = {"nats": "nats-server", "redis": "redis-server", "sentinel": "redis-server"}

ROUTE_PORT_OFFSET = 2000
"""A cluster node's route port is its client port plus this (4222 -> 6222)."""
SENTINEL_PORT_OFFSET = 20000
"""The data nodes listen this far below the first two Sentinels (26379 -> 6379)."""
CLUSTER_NAME = "jetmesh"


@dataclass(frozen=True)
class _Member:
    """One server of the stack: ``name`` is its status name, pid file and data directory."""

    name: str
    kind: str
    """``nats``, ``redis`` (a data node) or ``sentinel``."""
    endpoint: Endpoint
    index: int = 0
    """Its place among the servers of its kind (the first data node starts as primary)."""

    @property
    def protocol(self) -> Protocol:
        """What it speaks (a Sentinel speaks Redis's protocol)."""
        return "nats" if self.kind == "nats" else "redis"


def free_cluster_ports(nodes: int) -> tuple[int, int]:
    """Ports for a local cluster nobody listens on: (the first nats-server's client port,
    the Redis primary's port), with the ports derived from them free too (the other
    nodes', the routes', the replica's, the Sentinels'). For tests and harnesses.

    Raises:
        OSError: no free block found.
    """
    nats = free_block([*range(nodes), *(ROUTE_PORT_OFFSET + i for i in range(nodes))], 20000, 28000)
    redis = free_block([0, 1, *(SENTINEL_PORT_OFFSET + i for i in range(3))], 11000, 19000)
    return nats, redis


def _members(settings: MeshSettings) -> list[_Member]:
    """The servers ``settings`` name, in the order they start.

    Raises:
        ValueError: a malformed URL, or Sentinels on ports too low to derive the data
            nodes' ports from.
    """
    nats = Endpoint.parse_all(settings.nats_url, default_port=4222)
    members = (
        [_Member("nats", "nats", nats[0])]
        if len(nats) == 1
        else [_Member(f"nats-{i}", "nats", ep, i - 1) for i, ep in enumerate(nats, 1)]
    )
    if not is_sentinel_url(settings.redis_url):
        return [
            *members,
            _Member("redis", "redis", Endpoint.parse(settings.redis_url, default_port=6379)),
        ]
    target = SentinelTarget.parse(settings.redis_url)
    sentinels = [_sentinel_endpoint(host, port) for host, port in target.sentinels]
    for i, sentinel in enumerate(sentinels[:2], 1):
        if sentinel.port <= SENTINEL_PORT_OFFSET:
            raise ValueError(
                f"Sentinel port {sentinel.port} leaves no port for data node {i} "
                f"({SENTINEL_PORT_OFFSET} below it)"
            )
        data = _sentinel_endpoint(sentinel.host, sentinel.port - SENTINEL_PORT_OFFSET)
        members.append(_Member(f"redis-{i}", "redis", data, i - 1))
    members += [
        _Member(f"sentinel-{i}", "sentinel", ep, i - 1) for i, ep in enumerate(sentinels, 1)
    ]
    return members


def _sentinel_endpoint(host: str, port: int) -> Endpoint:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Endpoint(f"redis://{address}", "redis", host, port, None, 1)


class EmbeddedStack:
    """Detached servers at the hosts and ports of ``settings.nats_url`` and
    ``settings.redis_url``: one of each, or a cluster (the module's docstring).

    Data lives in ``<state_dir>/<server>`` (``nats``, ``redis``; ``nats-1``..., ``redis-1``,
    ``redis-2``, ``sentinel-1``... for a cluster); the pids of started servers in
    ``<state_dir>/<server>.pid``. A server already answering at its URL is reused, and
    ``down`` stops only servers whose pid file this stack wrote.

    Args:
        settings: Supplies the URLs and ``state_dir``.
        timeout: Seconds to wait for a server to start or stop.
        auth: The users generated from the policy: nats-server starts with them (its
            ``accounts`` block) and redis-server with their ACL file
            (``<state_dir>/redis-users.acl``, the admin's password for ``default``), so
            the servers enforce each role's permissions; Sentinels let each role's user ask
            only where the primary is. None: open servers, for development only. Servers
            reused as they run keep whatever they run with.

    Raises:
        ValueError: If a URL has no host or a malformed port.
    """

    def __init__(
        self, settings: MeshSettings, *, timeout: float = 10.0, auth: ServerAuth | None = None
    ) -> None:
        self.state_dir = Path(settings.state_dir)
        self._keys_dir = settings.resolved_keys_dir
        self._redis_maxmemory = settings.redis_max_memory_bytes
        self._redis_max_bulk = settings.redis_max_bulk_bytes
        self._nats_max_payload = settings.server_max_payload_bytes
        self._sync_interval = settings.nats_sync_interval
        self._service = (
            SentinelTarget.parse(settings.redis_url).service
            if is_sentinel_url(settings.redis_url)
            else ""
        )
        self.timeout = timeout
        self.auth = auth
        self._members = _members(settings)

    @property
    def clustered(self) -> bool:
        """Whether this stack is a NATS cluster."""
        return sum(1 for m in self._members if m.kind == "nats") > 1

    def pid_file(self, name: str) -> Path:
        """Return the pid file of server ``name`` (``nats``, ``redis``, ``nats-2``, ...).

        Args:
            name: The server name.
        """
        return self.state_dir / f"{name}.pid"

    def up(self) -> StackStatus:
        """Start whichever server is not already running; idempotent. (A new cluster's
        JetStream answers once it has elected a leader: the admin step waits for that.)

        Raises:
            ValueError: If a URL is not a loopback ``nats://`` or ``redis://`` URL.
            ServerStartError: If a server does not come up; those started by this call
                are stopped.
        """
        for member in self._members:
            member.endpoint.require_local("nats" if member.kind == "nats" else "redis")
        started: list[ServerStatus] = []
        try:
            for member in self._members:
                started.append(self._up_one(member))
        except BaseException:
            for status in started:
                if status.state is ServerState.STARTED:
                    self._down_one(status.name)
            raise
        return StackStatus.of(started)

    def down(self) -> StackStatus:
        """Stop the servers this stack started and remove their pid files; idempotent.
        Servers of another topology started in the same state directory (a cluster, when
        the settings now name one server) are stopped too."""
        known = {m.name for m in self._members}
        others = sorted(
            p.stem
            for p in self.state_dir.glob("*.pid")
            if p.stem not in known and p.stem.split("-")[0] in _BINARIES
        )
        for member in reversed(self._members):
            self._down_one(member.name)
        for name in others:
            self._down_one(name)
        return self.status()

    def status(self) -> StackStatus:
        """Report every server without changing anything."""
        return StackStatus.of([self._status_one(m) for m in self._members])

    def reload_nats(self) -> int | None:
        """Make the nats-servers this stack started run with :attr:`auth`'s users now.

        Each one's configuration file is written again, as ``up`` writes it, and the server
        is sent SIGHUP, on which nats-server reloads it: users added or removed and
        permissions changed take effect, and the connections of a user that is gone are
        closed. The reload itself runs in the server after this returns (milliseconds).

        Returns:
            The first pid signalled, or None when no nats-server of this stack runs (one
            reused at the URL, or none): nothing was changed.

        Raises:
            ValueError: If this stack has no users (``auth`` None): the server would reload
                without any.
            OSError: If a configuration cannot be written.
        """
        if self.auth is None:
            raise ValueError("reload_nats needs the users (auth) to run the server with")
        signalled: list[int] = []
        for member in self._members:
            pid = self._owned_pid(member.name) if member.kind == "nats" else None
            if pid is None:
                continue
            self._nats_server(member).write_config()
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                continue
            signalled.append(pid)
        return signalled[0] if signalled else None

    def _kind(self, name: str) -> str:
        return name.split("-")[0]

    def _owned_pid(self, name: str) -> int | None:
        pid = read_pid_file(self.pid_file(name))
        binary = _BINARIES.get(self._kind(name), "")
        if pid is None or not pid_alive(pid) or binary not in pid_command(pid):
            return None
        return pid

    def _status_one(self, member: _Member) -> ServerStatus:
        endpoint = member.endpoint
        pid = self._owned_pid(member.name)
        if pid is not None:
            state = ServerState.RUNNING
        elif port_open(endpoint.host, endpoint.port):
            state = ServerState.FOREIGN if self._foreign(member) else ServerState.RUNNING
        else:
            state = ServerState.STOPPED
        return ServerStatus(member.name, endpoint.url, state, pid)

    def _foreign(self, member: _Member) -> bool:
        """Whether what answers at ``member``'s port does not speak its protocol."""
        endpoint = member.endpoint
        return not speaks(endpoint.host, endpoint.port, member.protocol, timeout=self.timeout)

    def _up_one(self, member: _Member) -> ServerStatus:
        name, endpoint = member.name, member.endpoint
        pid = self._owned_pid(name)
        if pid is not None:
            try:
                wait_for_port(endpoint.host, endpoint.port, timeout=self.timeout)
            except TimeoutError as exc:
                raise ServerStartError(
                    f"{name} (pid {pid}, from {self.pid_file(name)}) is alive but does not "
                    f"answer at {endpoint.url}; run down, then up"
                ) from exc
            return ServerStatus(name, endpoint.url, ServerState.REUSED, pid)
        self.pid_file(name).unlink(missing_ok=True)
        if port_open(endpoint.host, endpoint.port):
            if self._foreign(member):
                raise ServerStartError(
                    f"{name}: something that does not speak {member.protocol} answers at "
                    f"{endpoint.url} (another program took the port); stop it, or "
                    f"configure another port"
                )
            return ServerStatus(name, endpoint.url, ServerState.REUSED)
        pid = self._server(member).start_detached(self.timeout)
        write_pid_file(self.pid_file(name), pid)
        return ServerStatus(name, endpoint.url, ServerState.STARTED, pid)

    def _down_one(self, name: str) -> None:
        pid = self._owned_pid(name)
        if pid is not None:
            terminate_pid(pid, self.timeout)
        self.pid_file(name).unlink(missing_ok=True)

    def _host(self, member: _Member) -> str:
        host = member.endpoint.host
        return "127.0.0.1" if host.lower() == "localhost" else host

    def _route_password(self) -> str:
        """The cluster routes' shared secret, made once (``<keys dir>/nats/routes.pass``)."""
        path = self._keys_dir / "nats" / "routes.pass"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _nats_server(self, member: _Member) -> NatsServer:
        extra = self.auth.nats_config() if self.auth is not None else ""
        cluster = None
        if self.clustered:
            nodes = [m for m in self._members if m.kind == "nats"]
            cluster = NatsCluster(
                name=CLUSTER_NAME,
                port=member.endpoint.port + ROUTE_PORT_OFFSET,
                routes=tuple(
                    host_port(self._host(n), n.endpoint.port + ROUTE_PORT_OFFSET)
                    for n in nodes
                    if n is not member
                ),
                password=self._route_password(),
            )
        return NatsServer(
            member.endpoint.port,
            data_dir=self.state_dir / member.name,
            host=self._host(member),
            config_extra=extra,
            max_payload=self._nats_max_payload,
            sync_interval=self._sync_interval,
            server_name=member.name if cluster is not None else None,
            cluster=cluster,
        )

    def _admin_password(self) -> str | None:
        return self.auth.redis_user("default").password if self.auth is not None else None

    def _primary(self) -> _Member:
        return next(m for m in self._members if m.kind == "redis")

    def _server(self, member: _Member) -> ServerProcess:
        if member.kind == "nats":
            return self._nats_server(member)
        if member.kind == "sentinel":
            return self._sentinel(member)
        endpoint = member.endpoint
        data_dir = self.state_dir / member.name
        host = self._host(member)
        replica_of = self._replica_of(member)
        if self.auth is None:
            return RedisServer(
                endpoint.port,
                data_dir=data_dir,
                host=host,
                password=endpoint.password,
                maxmemory=self._redis_maxmemory,
                max_bulk_bytes=self._redis_max_bulk,
                replica_of=replica_of,
            )
        acl = self.auth.write_redis_acl_file(self.state_dir / "redis-users.acl")
        admin = self._admin_password()
        return RedisServer(
            endpoint.port,
            data_dir=data_dir,
            host=host,
            password=admin,
            aclfile=acl,
            maxmemory=self._redis_maxmemory,
            max_bulk_bytes=self._redis_max_bulk,
            replica_of=replica_of,
            primary_password=admin if self._service else None,
        )

    def _replica_of(self, member: _Member) -> tuple[str, int] | None:
        """Where a data node starts replicating from: the primary the Sentinels name (after
        a failover, maybe not the first node), else the first node; None for a primary."""
        if not self._service:
            return None
        current = self._asked_primary()
        if current is None:
            primary = self._primary()
            current = (self._host(primary), primary.endpoint.port)
        return None if current == (self._host(member), member.endpoint.port) else current

    def _asked_primary(self) -> tuple[str, int] | None:
        """The primary as the first Sentinel that answers names it, or None."""
        import redis  # the synchronous client: up runs outside an event loop

        for member in self._members:
            if member.kind != "sentinel" or not port_open(
                member.endpoint.host, member.endpoint.port
            ):
                continue
            client = redis.Redis(
                host=member.endpoint.host,
                port=member.endpoint.port,
                password=self._admin_password(),
                socket_timeout=1.0,
            )
            try:
                found = client.sentinel_get_master_addr_by_name(self._service)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if isinstance(found, tuple):
                host, port = found
                return (host.decode() if isinstance(host, bytes) else host), int(port)
        return None

    def _sentinel(self, member: _Member) -> RedisSentinel:
        primary = self._primary()
        sentinels = sum(1 for m in self._members if m.kind == "sentinel")
        users = {u.name: u.password for u in self.auth.redis_users} if self.auth is not None else {}
        return RedisSentinel(
            member.endpoint.port,
            data_dir=self.state_dir / member.name,
            host=self._host(member),
            primary=(self._host(primary), primary.endpoint.port),
            service=self._service,
            quorum=sentinels // 2 + 1,
            admin_password=self._admin_password(),
            users=users,
        )
