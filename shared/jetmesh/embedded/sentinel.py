"""An embedded Redis Sentinel (``redis-server --sentinel``, the same binary): it watches the
primary, and with the other Sentinels promotes a replica when the primary is gone.

A Sentinel rewrites its own configuration file as it learns (the current primary after a
failover, the other Sentinels, the replicas), so the file is kept across restarts: each
start rewrites only the lines jetmesh owns (address, users, how it authenticates) and keeps
what the Sentinel learnt, or starts from ``primary`` the first time.

With an admin password, nobody may use the Sentinel without a password: its ``default``
user is the admin, as on the data nodes (the Sentinels use it among themselves and with
the data nodes; the admin step asks as it), and each role's user may only ask where
the primary and its replicas are (``SENTINEL MASTERS``, ``GET-MASTER-ADDR-BY-NAME``,
``SENTINELS``, ``REPLICAS``): not start a failover, nor change what is watched.

Example:
    >>> from pathlib import Path
    >>> sentinel = RedisSentinel(                                       # doctest: +SKIP
    ...     data_dir=Path("/tmp/s1"), primary=("127.0.0.1", 6379))
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from jetmesh.embedded.binaries import redis_server_binary
from jetmesh.embedded.process import ServerProcess, write_private
from jetmesh.embedded.redis import conf_quoted
from jetmesh.memory.redis_url import DEFAULT_SERVICE

DOWN_AFTER_MS = 1000
"""How long the primary may not answer before a Sentinel thinks it is down."""
FAILOVER_TIMEOUT_MS = 10_000
"""How long one failover may take before another Sentinel tries again."""

ROLE_COMMANDS = (
    "+ping",
    "+auth",
    "+hello",
    "+client|setinfo",
    "+client|setname",
    "+sentinel|masters",
    "+sentinel|get-master-addr-by-name",
    "+sentinel|sentinels",
    "+sentinel|replicas",
    "+sentinel|slaves",
)
"""What a role's user may ask a Sentinel: where the primary and its replicas are."""

_OWNED = (
    "port ",
    "bind ",
    "dir ",
    "user ",
    "protected-mode ",
    "sentinel auth-user ",
    "sentinel auth-pass ",
    "sentinel sentinel-user ",
    "sentinel sentinel-pass ",
    "sentinel down-after-milliseconds ",
    "sentinel failover-timeout ",
    "sentinel resolve-hostnames ",
)


def _acl_password(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def role_user_rules(password: str) -> list[str]:
    """A role's user on a Sentinel (``ACL SETUSER <role> ...``): on, with ``password``, and
    allowed only to ask where the primary and its replicas are."""
    return ["on", _acl_password(password), "resetchannels", "-@all", *ROLE_COMMANDS]


class RedisSentinel(ServerProcess):
    """A Sentinel watching the primary ``service``.

    Args:
        port: Sentinel port; None picks a free one.
        data_dir: Directory for its configuration file and log.
        primary: ``(host, port)`` of the primary at the first start.
        service: The name the primary is known by (``redis+sentinel://.../<service>``).
        quorum: How many Sentinels must agree the primary is down.
        admin_password: The ``default`` (admin) user's password, on the data nodes (the
            Sentinel authenticates to them with it) and on the Sentinels. None: open data
            nodes and an open Sentinel (development only).
        users: Each role's Redis password: its user here may only ask where the primary is.
        host: Address to listen on.
    """

    name = "sentinel"

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path,
        primary: tuple[str, int],
        service: str = DEFAULT_SERVICE,
        quorum: int = 2,
        admin_password: str | None = None,
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
    ) -> None:
        super().__init__(port, data_dir=data_dir, host=host, log_file=log_file)
        self.primary = primary
        self.service = service
        self.quorum = quorum
        self.admin_password = admin_password
        self.users = dict(users or {})

    @property
    def url(self) -> str:
        """``redis://host:port`` (a Sentinel, not a data node)."""
        return f"redis://{self.address}"

    @property
    def config_file(self) -> Path:
        """The Sentinel's configuration, which it rewrites as it learns."""
        return self.data_dir / "sentinel.conf"

    def owned_lines(self) -> tuple[list[str], list[str]]:
        """The lines jetmesh writes on every start: the Sentinel's own, and those about
        the primary (after its ``sentinel monitor`` line)."""
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            f"dir {conf_quoted(str(self.data_dir.resolve()))}",
        ]
        service = self.service
        per_primary = [
            f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}",
        ]
        if self.admin_password is None:
            return [*lines, "protected-mode no"], per_primary
        secret = _acl_password(self.admin_password)
        lines += [
            f"user default on {secret} ~* &* +@all",
            *(
                f"user {role} " + " ".join(role_user_rules(password))
                for role, password in sorted(self.users.items())
                if role != "default"
            ),
            "sentinel sentinel-user default",
            f"sentinel sentinel-pass {conf_quoted(self.admin_password)}",
        ]
        per_primary += [
            f"sentinel auth-user {service} default",
            f"sentinel auth-pass {service} {conf_quoted(self.admin_password)}",
        ]
        return lines, per_primary

    def config_text(self) -> str:
        """This start's configuration: jetmesh's lines, then what the Sentinel learnt
        before (its current primary first, since the per-primary lines name it)."""
        learnt: list[str] = []
        if self.config_file.exists():
            for line in self.config_file.read_text().splitlines():
                if line.strip() and not line.startswith("#") and not line.startswith(_OWNED):
                    learnt.append(line)
        monitor = [line for line in learnt if line.startswith("sentinel monitor ")]
        if not monitor:
            host, port = self.primary
            monitor = [f"sentinel monitor {self.service} {host} {port} {self.quorum}"]
        rest = [line for line in learnt if not line.startswith("sentinel monitor ")]
        lines, per_primary = self.owned_lines()
        return "\n".join([*lines, *monitor, *per_primary, *rest]) + "\n"

    def prepare(self) -> None:
        """Create the data directory and write the configuration (0600: it holds the
        admin's password).

        Raises:
            OSError: If the file cannot be written.
        """
        super().prepare()
        write_private(self.config_file, self.config_text())

    def command(self) -> list[str]:
        """Return ``redis-server <config> --sentinel``.

        Raises:
            FileNotFoundError: If redis-server is not installed.
        """
        return [redis_server_binary(), str(self.config_file.resolve()), "--sentinel"]
