"""The development stack: one detached nats-server and one redis-server under ``state_dir``.

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
import signal
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from jetmesh._exceptions import ServerStartError
from jetmesh.embedded.endpoint import Endpoint
from jetmesh.embedded.nats import NatsServer
from jetmesh.embedded.pids import (
    pid_alive,
    pid_command,
    read_pid_file,
    terminate_pid,
    write_pid_file,
)
from jetmesh.embedded.ports import port_open, wait_for_port
from jetmesh.embedded.process import ServerProcess
from jetmesh.embedded.redis import RedisServer
from jetmesh.settings import MeshSettings

if TYPE_CHECKING:
    from jetmesh.policy.servers import ServerAuth

_BINARIES = {"nats": "nats-server", "redis": "redis-server"}


class ServerState(StrEnum):
    """What a stack server is doing."""

    STARTED = "started"
    """``up`` started it just now."""
    REUSED = "reused"
    """``up`` found it already running and left it alone."""
    RUNNING = "running"
    """``status`` found it running."""
    STOPPED = "stopped"
    """Nothing answers and no process of this stack is alive."""


@dataclass(frozen=True)
class ServerStatus:
    """One server of the stack.

    Attributes:
        name: ``nats`` or ``redis``.
        url: The configured URL.
        state: What it is doing.
        pid: Its process id if this stack started it (its pid file), else None.
    """

    name: str
    url: str
    state: ServerState
    pid: int | None = None

    @property
    def running(self) -> bool:
        """Whether it is running, whoever started it."""
        return self.state is not ServerState.STOPPED

    @property
    def owned(self) -> bool:
        """Whether this stack started it, so ``down`` stops it."""
        return self.pid is not None


@dataclass(frozen=True)
class StackStatus:
    """Both servers of the stack."""

    nats: ServerStatus
    redis: ServerStatus

    @property
    def running(self) -> bool:
        """Whether both servers are running."""
        return self.nats.running and self.redis.running


class EmbeddedStack:
    """Detached servers at the host and port of ``settings.nats_url`` and ``settings.redis_url``.

    Data lives in ``<state_dir>/nats`` and ``<state_dir>/redis``; the pids of started servers in
    ``<state_dir>/nats.pid`` and ``<state_dir>/redis.pid``. A server already answering at its
    URL is reused, and ``down`` stops only servers whose pid file this stack wrote.

    Args:
        settings: Supplies the URLs and ``state_dir``.
        timeout: Seconds to wait for a server to start or stop.
        auth: The users generated from the policy: nats-server starts with them (its
            ``accounts`` block) and redis-server with their ACL file
            (``<state_dir>/redis-users.acl``, the admin's password for ``default``), so
            the servers enforce each role's permissions. None: open servers, for
            development only. Servers reused as they run keep whatever they run with.

    Raises:
        ValueError: If a URL has no host or a malformed port.
    """

    def __init__(
        self, settings: MeshSettings, *, timeout: float = 10.0, auth: ServerAuth | None = None
    ) -> None:
        self.state_dir = Path(settings.state_dir)
        self._redis_maxmemory = settings.redis_max_memory_bytes
        self._redis_max_bulk = settings.redis_max_bulk_bytes
        self._nats_max_payload = settings.server_max_payload_bytes
        self.timeout = timeout
        self.auth = auth
        self._endpoints = {
            "nats": Endpoint.parse(settings.nats_url, default_port=4222),
            "redis": Endpoint.parse(settings.redis_url, default_port=6379),
        }

    def pid_file(self, name: str) -> Path:
        """Return the pid file of server ``name`` (``nats`` or ``redis``).

        Args:
            name: The server name.
        """
        return self.state_dir / f"{name}.pid"

    def up(self) -> StackStatus:
        """Start whichever server is not already running; idempotent.

        Raises:
            ValueError: If a URL is not a single loopback ``nats://`` or ``redis://`` URL.
            ServerStartError: If a server does not come up; one started by this call is stopped.
        """
        for name, endpoint in self._endpoints.items():
            endpoint.require_local(name)
        nats = self._up_one("nats")
        try:
            redis = self._up_one("redis")
        except BaseException:
            if nats.state is ServerState.STARTED:
                self._down_one("nats")
            raise
        return StackStatus(nats=nats, redis=redis)

    def down(self) -> StackStatus:
        """Stop the servers this stack started and remove their pid files; idempotent."""
        for name in self._endpoints:
            self._down_one(name)
        return self.status()

    def status(self) -> StackStatus:
        """Report both servers without changing anything."""
        return StackStatus(nats=self._status_one("nats"), redis=self._status_one("redis"))

    def reload_nats(self) -> int | None:
        """Make the nats-server this stack started run with :attr:`auth`'s users now.

        Its configuration file is written again, as ``up`` writes it, and the server is sent
        SIGHUP, on which nats-server reloads it: users added or removed and permissions
        changed take effect, and the connections of a user that is gone are closed. The
        reload itself runs in the server after this returns (milliseconds).

        Returns:
            The pid signalled, or None when no nats-server of this stack runs (one reused at
            the URL, or none): nothing was changed.

        Raises:
            ValueError: If this stack has no users (``auth`` None): the server would reload
                without any.
            OSError: If the configuration cannot be written.
        """
        if self.auth is None:
            raise ValueError("reload_nats needs the users (auth) to run the server with")
        pid = self._owned_pid("nats")
        if pid is None:
            return None
        self._nats_server().write_config()
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return None
        return pid

    def _owned_pid(self, name: str) -> int | None:
        pid = read_pid_file(self.pid_file(name))
        if pid is None or not pid_alive(pid) or _BINARIES[name] not in pid_command(pid):
            return None
        return pid

    def _status_one(self, name: str) -> ServerStatus:
        endpoint = self._endpoints[name]
        pid = self._owned_pid(name)
        running = pid is not None or port_open(endpoint.host, endpoint.port)
        state = ServerState.RUNNING if running else ServerState.STOPPED
        return ServerStatus(name, endpoint.url, state, pid)

    def _up_one(self, name: str) -> ServerStatus:
        endpoint = self._endpoints[name]
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
            return ServerStatus(name, endpoint.url, ServerState.REUSED)
        pid = self._server(name).start_detached(self.timeout)
        write_pid_file(self.pid_file(name), pid)
        return ServerStatus(name, endpoint.url, ServerState.STARTED, pid)

    def _down_one(self, name: str) -> None:
        pid = self._owned_pid(name)
        if pid is not None:
            terminate_pid(pid, self.timeout)
        self.pid_file(name).unlink(missing_ok=True)

    def _host(self, name: str) -> str:
        host = self._endpoints[name].host
        return "127.0.0.1" if host.lower() == "localhost" else host

    def _nats_server(self) -> NatsServer:
        extra = self.auth.nats_config() if self.auth is not None else ""
        port = self._endpoints["nats"].port
        return NatsServer(
            port,
            data_dir=self.state_dir / "nats",
            host=self._host("nats"),
            config_extra=extra,
            max_payload=self._nats_max_payload,
        )

    def _server(self, name: str) -> ServerProcess:
        if name == "nats":
            return self._nats_server()
        endpoint = self._endpoints[name]
        data_dir = self.state_dir / name
        host = self._host(name)
        if self.auth is None:
            return RedisServer(
                endpoint.port,
                data_dir=data_dir,
                host=host,
                password=endpoint.password,
                maxmemory=self._redis_maxmemory,
                max_bulk_bytes=self._redis_max_bulk,
            )
        acl = self.auth.write_redis_acl_file(self.state_dir / "redis-users.acl")
        admin = self.auth.redis_user("default").password
        return RedisServer(
            endpoint.port,
            data_dir=data_dir,
            host=host,
            password=admin,
            aclfile=acl,
            maxmemory=self._redis_maxmemory,
            max_bulk_bytes=self._redis_max_bulk,
        )
