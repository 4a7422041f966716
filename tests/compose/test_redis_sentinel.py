"""compose/redis/*.conf run as compose runs them (each service's own entrypoint, its
secrets and its configuration file), on loopback: the replica copies the primary as the
admin user, three Sentinels watch the primary, see the replica and each other, and both
servers know every role's user.

Only what a container's network gives each server is rewritten for loopback: the service
names it is reached at, its port, and its data directory (a volume in compose)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from jetmesh.embedded import free_port
from jetmesh.embedded.binaries import redis_server_binary
from jetmesh.embedded.sentinel import ROLE_COMMANDS
from tests.compose.conftest import COMPOSE_DIR, Processes, load_compose

pytestmark = pytest.mark.integration

WAIT_S = 30.0
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """``probe()``'s first answer that is not None (errors while a server starts are
    retried), within :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (RedisConnectionError, ResponseError) as exc:
            found, last = None, exc
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {WAIT_S} s: {what} (last error: {last})")


class Loopback:
    """compose's Redis services as processes: ports, data directories and conf files."""

    def __init__(self, tmp: Path, secrets: Path, processes: Processes) -> None:
        self.compose: dict[str, Any] = load_compose()
        self.tmp = tmp
        self.secrets = secrets
        self.processes = processes
        self.ports = {name: free_port() for name in self.redis_services()}
        self.bin = tmp / "bin"  # redis-server on the PATH, as in the image
        self.bin.mkdir()
        (self.bin / "redis-server").symlink_to(redis_server_binary())

    def redis_services(self) -> list[str]:
        return [n for n in self.compose["services"] if n.startswith(("redis-", "sentinel-"))]

    def rewrite(self, text: str) -> str:
        """The configuration with loopback names and ports for the service names."""
        for name in ("redis-primary", "redis-replica"):
            text = text.replace(f"{name} 6379", f"127.0.0.1 {self.ports[name]}")
            text = text.replace(f"replica-announce-ip {name}", "replica-announce-ip 127.0.0.1")
        return text.replace("bind * -::*", "bind 127.0.0.1").replace("dir /data\n", "")

    def start(self, service: str) -> subprocess.Popen[bytes]:
        """Run ``service``'s entrypoint with its mounts where compose puts them (its data
        directory kept from a run before, as a volume is)."""
        spec = self.compose["services"][service]
        data = self.tmp / service / "data"
        data.mkdir(parents=True, exist_ok=True)
        paths = {"/data": str(data)}
        scripts: dict[str, Path] = {}
        for volume in spec["volumes"]:
            source, target = volume.split(":")[:2]
            if source.endswith(".sh"):
                scripts[target] = COMPOSE_DIR / source
            elif source.startswith("./"):
                copy = self.tmp / service / Path(target).name
                copy.write_text(f"dir {data}\n{self.config(service, COMPOSE_DIR / source)}")
                paths[target] = str(copy)
        for secret in spec["secrets"]:
            name = secret if isinstance(secret, str) else secret["source"]
            file = self.compose["secrets"][name]["file"].removeprefix("./secrets/")
            paths[f"/run/secrets/{name}"] = str(self.secrets / file)
        entrypoint = spec["entrypoint"]
        if entrypoint[:2] == ["sh", "-c"]:
            script = entrypoint[2].replace("$$", "$")  # compose's escape of a literal $
        else:
            assert entrypoint[0] == "sh", entrypoint
            script = scripts[entrypoint[1]].read_text()
        # every container path at once (a host path put in is not rewritten again)
        pattern = "|".join(re.escape(t) for t in sorted(paths, key=len, reverse=True))
        script = re.sub(pattern, lambda m: shlex.quote(paths[m.group(0)]), script)
        env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}
        return self.processes.start(service, ["sh", "-c", script], env)

    def config(self, service: str, source: Path) -> str:
        """``source`` with loopback names and this service's port."""
        conf = self.rewrite(source.read_text())
        port = self.ports[service]
        conf = conf.replace("\nport 26379\n", f"\nport {port}\n")
        conf = conf.replace("\nport 6379\n", f"\nport {port}\n")
        assert f"\nport {port}\n" in conf, f"{source} names its port"
        return conf

    def client(self, service: str, user: str | None = None) -> Redis:
        password = None
        if user is not None:
            folder = "admin" if user == "default" else user
            password = (self.secrets / folder / "redis" / f"{user}.pass").read_text().strip()
        return Redis(
            host="127.0.0.1",
            port=self.ports[service],
            username=user,
            password=password,
            decode_responses=True,
        )


def test_replica_and_sentinels_follow_the_primary(
    deploy_secrets: Path, tmp_path: Path, processes: Processes
) -> None:
    servers = Loopback(tmp_path, deploy_secrets, processes)
    assert servers.redis_services() == [
        "redis-primary",
        "redis-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
    ]
    for service in servers.redis_services():
        servers.start(service)
    primary = servers.client("redis-primary", "default")
    replica = servers.client("redis-replica", "default")

    # the replica copies the primary, authenticated as its admin user
    eventually(lambda: primary.ping() or None, "the primary answers")
    primary.set("compose:check", "replicated")
    assert eventually(lambda: replica.get("compose:check"), "the write on the replica") == (
        "replicated"
    )
    assert replica.info("replication")["master_link_status"] == "up"
    # both acknowledge a write once it is in the append-only file (docs/durability.md)
    for server in (primary, replica):
        assert server.config_get("appendonly") == {"appendonly": "yes"}
        assert server.config_get("appendfsync") == {"appendfsync": "always"}
        assert server.config_get("save") == {"save": ""}
        assert server.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # both servers know the roles' users, from the generated ACL file
    for service in ("redis-primary", "redis-replica"):
        assert servers.client(service, "billing").ping() is True  # its password is taken
        with pytest.raises(NoPermissionError):
            servers.client(service, "billing").get("compose:check")  # not its keys

    primary_port = str(servers.ports["redis-primary"])
    for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3"):
        client = servers.client(sentinel, "default")
        addr = eventually(
            lambda c=client: c.execute_command("SENTINEL", "get-master-addr-by-name", "jetmesh"),
            f"{sentinel} knows the primary",
        )
        assert list(addr) == ["127.0.0.1", primary_port]
        replicas = eventually(
            lambda c=client: (
                [r for r in c.sentinel_slaves("jetmesh") if "s_down" not in r["flags"]] or None
            ),
            f"{sentinel} sees the replica",
        )
        assert [r["port"] for r in replicas] == [servers.ports["redis-replica"]]
        eventually(
            lambda c=client: len(c.sentinel_sentinels("jetmesh")) == 2 or None,
            f"{sentinel} sees the two others",
        )
        master = client.sentinel_master("jetmesh")
        assert master["is_master_down"] is False
        assert "s_down" not in master["flags"], "it authenticates to the primary"

    # a role asks a Sentinel where the primary is, as itself, and may do nothing else
    billing = servers.client("sentinel-2", "billing")
    where = billing.execute_command("SENTINEL", "get-master-addr-by-name", "jetmesh")
    assert list(where) == ["127.0.0.1", primary_port]
    with pytest.raises(NoPermissionError):
        billing.execute_command("SENTINEL", "failover", "jetmesh")
    with pytest.raises(NoPermissionError):
        billing.execute_command("SENTINEL", "set", "jetmesh", "quorum", "1")
    with pytest.raises(AuthenticationError):  # and nobody without a password
        servers.client("sentinel-2").execute_command("SENTINEL", "masters")


def test_a_role_asks_sentinels_what_the_embedded_ones_let_it() -> None:
    script = (COMPOSE_DIR / "redis" / "start-sentinel.sh").read_text()
    found = re.search(r"^role_commands='resetchannels -@all (.*)'$", script, re.M)
    assert found is not None
    assert tuple(found.group(1).split()) == ROLE_COMMANDS


def test_a_replica_without_the_admin_password_is_refused(
    deploy_secrets: Path, tmp_path: Path, processes: Processes
) -> None:
    wrong = tmp_path / "wrong-secrets"
    for part in ("servers", "admin/redis"):
        (wrong / part).mkdir(parents=True)
    (wrong / "servers" / "redis-users.acl").write_text(
        (deploy_secrets / "servers" / "redis-users.acl").read_text()
    )
    (wrong / "admin" / "redis" / "default.pass").write_text("not-the-password\n")
    servers = Loopback(tmp_path, deploy_secrets, processes)
    servers.start("redis-primary")
    servers.secrets = wrong  # the replica's secret: another password
    servers.start("redis-replica")
    eventually(
        lambda: "AUTH" in processes.log("redis-replica") or None,
        "the replica says the primary refused it",
    )
    servers.secrets = deploy_secrets  # the test asks as the real admin
    replica = servers.client("redis-replica", "default")
    assert replica.info("replication")["master_link_status"] == "down"


def test_a_restart_keeps_a_shut_out_role_out_until_the_users_change(
    deploy_secrets: Path, tmp_path: Path, processes: Processes
) -> None:
    servers = Loopback(tmp_path, deploy_secrets, processes)
    running = servers.start("redis-primary")
    admin = servers.client("redis-primary", "default")
    eventually(lambda: admin.ping() or None, "the primary answers")
    admin.acl_setuser("billing", enabled=False)  # as the shut-out step does
    admin.execute_command("ACL", "SAVE")
    processes.stop(running)

    running = servers.start("redis-primary")  # same secrets: the saved users are kept
    eventually(lambda: admin.ping() or None, "the primary answers again")
    assert "off" in admin.acl_getuser("billing")["flags"]
    processes.stop(running)

    # `jetmesh admin secrets` wrote other users (here: one line more): they are taken
    changed = tmp_path / "changed"
    shutil.copytree(deploy_secrets, changed)
    acl = changed / "servers" / "redis-users.acl"
    acl.write_text(acl.read_text() + "user newcomer off\n")
    servers.secrets = changed
    servers.start("redis-primary")
    eventually(lambda: admin.ping() or None, "the primary answers with the new users")
    assert "on" in admin.acl_getuser("billing")["flags"]
    assert admin.acl_getuser("newcomer") is not None
