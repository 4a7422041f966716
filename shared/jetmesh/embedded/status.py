"""What the servers of an embedded stack are doing: started, reused, running, stopped, or
another program at their port.

Example:
    >>> status = ServerStatus("nats", "nats://127.0.0.1:4222", ServerState.STOPPED)
    >>> status.running, status.owned
    (False, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    FOREIGN = "foreign"
    """``status`` found another program answering at its URL (it does not speak the
    server's protocol); ``up`` refuses to start there."""


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
        return self.state not in (ServerState.STOPPED, ServerState.FOREIGN)

    @property
    def owned(self) -> bool:
        """Whether this stack started it, so ``down`` stops it."""
        return self.pid is not None


@dataclass(frozen=True)
class StackStatus:
    """The servers of the stack.

    Attributes:
        nats: The (first) nats-server.
        redis: The (first) Redis data node: the primary when the stack started.
        servers: Every server, in start order (``nats`` and ``redis`` among them).
    """

    nats: ServerStatus
    redis: ServerStatus
    servers: tuple[ServerStatus, ...] = ()

    @property
    def running(self) -> bool:
        """Whether every server is running."""
        return all(server.running for server in self.servers or (self.nats, self.redis))

    @classmethod
    def of(cls, servers: list[ServerStatus]) -> StackStatus:
        """The status of ``servers`` (nats-servers first, then Redis's)."""
        nats = next(s for s in servers if s.name.startswith("nats"))
        redis = next(s for s in servers if s.name.startswith("redis"))
        return cls(nats, redis, tuple(servers))
