"""An embedded ``nats-server`` with JetStream, configured by a file in its data directory.

Example:
    >>> from pathlib import Path
    >>> with NatsServer(data_dir=Path("/tmp/nats-demo")) as nats:  # doctest: +SKIP
    ...     print(nats.url)
    nats://127.0.0.1:40021
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jetmesh.embedded.binaries import nats_server_binary
from jetmesh.embedded.process import ServerProcess, write_private

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest NATS message the embedded server accepts."""

SYNC_INTERVAL = "always"
"""JetStream fsyncs every write before acknowledging it. The server's default flushes every
two minutes, and an acknowledged message can be lost on power loss in between; see
docs/durability.md for what this costs and what it promises."""


@dataclass(frozen=True)
class NatsCluster:
    """This server's place in a JetStream cluster: its routes to the others.

    Attributes:
        name: The cluster's name, the same on every node.
        port: This node's route port (loopback, like its client port).
        routes: ``host:port`` of every node's route port (its own is ignored by the server).
        password: The routes' shared secret: a server that does not know it cannot join.
    """

    name: str
    port: int
    routes: tuple[str, ...]
    password: str

    def config_text(self, host: str) -> str:
        """The ``cluster`` block of nats-server's configuration."""
        secret = json.dumps(self.password)
        routes = ", ".join(
            json.dumps(f"nats-route://route:{self.password}@{route}") for route in self.routes
        )
        return (
            "cluster {\n"
            f"  name: {json.dumps(self.name)}\n"
            f"  listen: {json.dumps(f'{host}:{self.port}')}\n"
            f"  authorization {{ user: route, password: {secret} }}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )


class NatsServer(ServerProcess):
    """A ``nats-server`` with JetStream storing under ``<data_dir>/jetstream``.

    The config file ``<data_dir>/nats.conf`` is rewritten on every start. HTTP monitoring is
    off unless ``config_extra`` turns it on.

    Args:
        port: Client port; None picks a free one.
        data_dir: Directory for the config, the JetStream store and the log.
        host: Address to listen on.
        config_extra: nats-server config text appended to the generated file.
        log_file: Where output goes; defaults to ``<data_dir>/nats.log``.
        sync_interval: JetStream's ``sync_interval``: ``always`` (the default here) or a
            duration such as ``2m`` (the server's own default).
        max_payload: The largest message (headers and payload) the server accepts from a
            client; ``jetmesh up`` gives ``MeshSettings.server_max_payload_bytes``.
        server_name: The node's name, stable across restarts (JetStream knows its peers
            by it); required in a cluster.
        cluster: Routes to the other nodes of a JetStream cluster; None: a single server.
    """

    name = "nats"

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        config_extra: str = "",
        log_file: Path | None = None,
        sync_interval: str = SYNC_INTERVAL,
        max_payload: int = MAX_PAYLOAD_BYTES,
        server_name: str | None = None,
        cluster: NatsCluster | None = None,
    ) -> None:
        super().__init__(port, data_dir=data_dir, host=host, log_file=log_file)
        if cluster is not None and server_name is None:
            raise ValueError("a cluster node needs a server_name")
        self.config_extra = config_extra
        self.sync_interval = sync_interval
        self.max_payload = max_payload
        self.server_name = server_name
        self.cluster = cluster

    @property
    def url(self) -> str:
        """``nats://host:port``."""
        return f"nats://{self.address}"

    @property
    def config_file(self) -> Path:
        """The generated nats-server config file."""
        return self.data_dir / "nats.conf"

    @property
    def store_dir(self) -> Path:
        """Where JetStream keeps streams and key-value buckets."""
        return self.data_dir / "jetstream"

    def config_text(self) -> str:
        """Return the nats-server configuration this server runs with."""
        name = f"server_name: {json.dumps(self.server_name)}\n" if self.server_name else ""
        cluster = self.cluster.config_text(self.host) if self.cluster is not None else ""
        return (
            "# Written by jetmesh on every start; edits are lost.\n"
            f"{name}"
            f"host: {json.dumps(self.host)}\n"
            f"port: {self.port}\n"
            f"max_payload: {self.max_payload}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            f"  sync_interval: {self.sync_interval}\n"
            "}\n"
            f"{cluster}"
            f"{self.config_extra}\n"
        )

    def prepare(self) -> None:
        """Create the data directories and write the config file.

        Raises:
            OSError: If the files cannot be written.
        """
        super().prepare()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()

    def write_config(self) -> Path:
        """Write :meth:`config_text` to :attr:`config_file`, replacing it whole (a server
        reloading it reads the old file or the new one); returns the file.

        Raises:
            OSError: If the file cannot be written.
        """
        write_private(self.config_file, self.config_text())  # the routes' secret
        return self.config_file

    def command(self) -> list[str]:
        """Return ``nats-server -c <config_file>``.

        Raises:
            FileNotFoundError: If nats-server is not installed.
        """
        return [nats_server_binary(), "-c", str(self.config_file)]
