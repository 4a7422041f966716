"""A local cluster as ``jetmesh up --cluster 3`` runs it: three nats-servers in one JetStream
cluster with every stream at 3 replicas, Redis primary + replica + three Sentinels, the
same users and permissions as one node; and a mesh on it that goes on when the tasks
stream's leader or the Redis primary is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from jetmesh.bus.connection import connect
from jetmesh.bus.streams import through_elections
from jetmesh.cli.servers import up_servers
from jetmesh.embedded import EmbeddedStack, ServerState
from jetmesh.embedded.pids import pid_alive, read_pid_file
from jetmesh.logins import admin_login
from jetmesh.memory import keys
from jetmesh.memory.connection import connect as connect_redis
from jetmesh.memory.redis_url import SentinelTarget
from jetmesh.runtime.ledger import StepLedger
from jetmesh.shutout import shut_out
from tests.harness.agents import Plan, Report, counter, planner
from tests.harness.secured import SecuredMesh

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(180)]

STREAMS = ("MESH_TASKS", "MESH_EVENTS", "MESH_DLQ", "MESH_TASKS_ADVISORIES", "KV_MESH_KEYS")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredMesh]:
    mesh = SecuredMesh(tmp_path_factory.mktemp("cluster"), nodes=3)
    await asyncio.to_thread(mesh.up)
    try:
        yield mesh
    finally:
        await mesh.aclose()
        await asyncio.to_thread(mesh.down)


@pytest.fixture
async def served(cluster: SecuredMesh) -> AsyncIterator[SecuredMesh]:
    """planner -> counter replicas on the cluster, drained after the test."""
    await cluster.start_replicas(counter, planner)
    try:
        yield cluster
    finally:
        await cluster.aclose()
        cluster.replicas.clear()
        cluster.clients.clear()


async def stream_peers(mesh: SecuredMesh) -> dict[str, tuple[int, str | None, list[bool]]]:
    """Each stream's replicas setting, leader, and whether each other peer is current."""
    s = mesh.settings
    nc = await connect(s.nats_url, "test/peers", **admin_login(s).nats_options())
    try:
        js = nc.jetstream()
        out = {}
        for name in STREAMS:
            info = await through_elections(lambda: js.stream_info(name))  # noqa: B023
            assert info.cluster is not None
            out[name] = (
                info.config.num_replicas,
                info.cluster.leader,
                [bool(r.current) for r in info.cluster.replicas or []],
            )
        return out
    finally:
        await nc.close()


async def await_all_current(mesh: SecuredMesh, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        peers = await stream_peers(mesh)
        if all(
            n == 3 and leader and current == [True, True] for n, leader, current in peers.values()
        ):
            return
        assert time.monotonic() < deadline, f"streams not back to 3 current peers: {peers}"
        await asyncio.sleep(0.5)


def kill(mesh: SecuredMesh, server: str) -> int:
    pid = read_pid_file(EmbeddedStack(mesh.settings).pid_file(server))
    assert pid is not None, server
    assert pid_alive(pid), server
    os.kill(pid, signal.SIGKILL)
    return pid


async def plan(mesh: SecuredMesh, timeout: float = 40.0) -> Report:
    cli = await mesh.ingress()
    return await cli.request(
        "planner", Plan(pause_s=0), token=cli.mint_token("alice"), returns=Report, timeout=timeout
    )


def sentinel(mesh: SecuredMesh, role: str | None) -> aioredis.Redis:
    """The first Sentinel, as ``role`` with its Redis password (None: as nobody)."""
    host, port = SentinelTarget.parse(mesh.settings.redis_url).sentinels[0]
    if role is None:
        return aioredis.Redis(host=host, port=port)
    name = "default" if role == "admin" else role
    password = (mesh.settings.resolved_keys_dir / "redis" / f"{name}.pass").read_text().strip()
    return aioredis.Redis(host=host, port=port, username=name, password=password)


async def primary(mesh: SecuredMesh) -> tuple[str, int]:
    client = sentinel(mesh, "admin")
    try:
        found = await client.sentinel_get_master_addr_by_name("jetmesh")
    finally:
        await client.aclose()
    host, port = found
    return (host.decode() if isinstance(host, bytes) else host), int(port)


def data_node(mesh: SecuredMesh, port: int) -> str:
    status = EmbeddedStack(mesh.settings).status()
    (name,) = [s.name for s in status.servers if s.name.startswith("redis") and f":{port}" in s.url]
    return name


async def test_every_server_runs_and_every_stream_has_three_current_peers(
    cluster: SecuredMesh,
) -> None:
    status = EmbeddedStack(cluster.settings).status()
    assert [s.name for s in status.servers] == [
        "nats-1", "nats-2", "nats-3", "redis-1", "redis-2",
        "sentinel-1", "sentinel-2", "sentinel-3",
    ]  # fmt: skip
    assert all(s.state is ServerState.RUNNING and s.owned for s in status.servers)
    await await_all_current(cluster)
    config = (cluster.settings.state_dir / "nats-1" / "nats.conf").read_text()
    assert 'server_name: "nats-1"' in config
    assert "nats-route://route:" in config
    assert (cluster.settings.state_dir / "nats-1" / "nats.conf").stat().st_mode & 0o077 == 0


async def test_a_role_may_only_ask_the_sentinels_where_the_primary_is(
    cluster: SecuredMesh,
) -> None:
    kb = sentinel(cluster, "counter")
    try:
        host, port = await kb.sentinel_get_master_addr_by_name("jetmesh")
        assert (host.decode(), port) == await primary(cluster)
        for command in (
            ("SENTINEL", "FAILOVER", "jetmesh"),
            ("SENTINEL", "SET", "jetmesh", "quorum", "1"),
            ("SENTINEL", "REMOVE", "jetmesh"),
            ("SENTINEL", "MONITOR", "other", "127.0.0.1", "1", "1"),
            ("SENTINEL", "CONFIG", "SET", "resolve-hostnames", "yes"),
            ("ACL", "LIST"),
        ):
            with pytest.raises(NoPermissionError):
                await kb.execute_command(*command)
    finally:
        await kb.aclose()
    nobody = sentinel(cluster, None)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await nobody.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "jetmesh")
    finally:
        await nobody.aclose()


async def test_a_workflow_goes_on_when_the_tasks_stream_leader_is_killed(
    served: SecuredMesh,
) -> None:
    assert (await plan(served)).parts == [1, 2]
    leader = (await stream_peers(served))["MESH_TASKS"][1]
    assert leader is not None
    killed = kill(served, leader)
    assert (await plan(served)).parts == [1, 2]  # a new leader, elected by the other two
    assert not pid_alive(killed)
    await asyncio.to_thread(up_servers, served.settings, served.policy)  # `jetmesh up` again
    await await_all_current(served)
    assert (await stream_peers(served))["MESH_TASKS"][0] == 3


async def test_memory_goes_on_when_the_redis_primary_is_killed(served: SecuredMesh) -> None:
    assert (await plan(served)).parts == [1, 2]  # counter writes working memory
    old = await primary(served)
    old_node = data_node(served, old[1])
    kill(served, old_node)
    assert (await plan(served)).parts == [1, 2]  # retried through the failover
    new = await primary(served)
    assert new != old
    # `jetmesh up` starts the killed node again, as a replica of the primary the
    # Sentinels name now.
    status = await asyncio.to_thread(up_servers, served.settings, served.policy)
    assert {s.name: s.state for s in status.status.servers}[old_node] is ServerState.STARTED
    password = (served.settings.resolved_keys_dir / "redis" / "default.pass").read_text().strip()
    node = aioredis.Redis(port=old[1], username="default", password=password)
    try:
        deadline = time.monotonic() + 20
        while (role := (await node.info("replication"))["role"]) != "slave":
            assert time.monotonic() < deadline, role
            await asyncio.sleep(0.2)
    finally:
        await node.aclose()
    assert await primary(served) == new


async def test_an_effects_claim_is_on_the_replica_before_the_effect_runs(
    cluster: SecuredMesh, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``redis_wait_replicas`` (``jetmesh up --cluster`` sets 1) the ledger's writes
    end in WAIT: an effect runs once its claim is on the replica, so a failover cannot lose
    the claim and let the effect run again; a frozen replica is waited for up to the
    timeout, then the step goes on and says so."""
    s = cluster.settings
    assert s.redis_wait_replicas == 1
    admin = admin_login(s).redis_options()
    redis = connect_redis(s.redis_url, retry_s=5.0, **admin)
    ledger = StepLedger(redis, s.subject_prefix, ttl_s=60, wait_replicas=1, wait_timeout_ms=300)
    _, primary_port = await primary(cluster)
    (replica_node,) = [
        x.name
        for x in EmbeddedStack(s).status().servers
        if x.name.startswith("redis-") and not x.url.endswith(f":{primary_port}")
    ]
    replica_port = int(
        next(x.url for x in EmbeddedStack(s).status().servers if x.name == replica_node)
        .rsplit(":", 1)[1]
        .split("/")[0]
    )
    replica = aioredis.Redis(port=replica_port, username="default", password=admin["password"])
    on_replica: list[bytes | None] = []
    deadline = time.monotonic() + 20
    while (await replica.info("replication")).get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never caught up with the primary"
        await asyncio.sleep(0.1)

    async def effect() -> int:
        on_replica.append(
            await replica.get(keys.once(s.subject_prefix, "wf", "counter", "s1", "pay"))
        )
        return 1

    try:
        assert await ledger.once("wf", "counter", "s1", "pay", effect, int, holder="h") == 1
        assert on_replica[0] is not None
        assert b"running" in on_replica[0]

        async def nothing() -> int:
            return 2

        kill_signal = signal.SIGSTOP
        os.kill(read_pid_file(EmbeddedStack(s).pid_file(replica_node)) or 0, kill_signal)
        try:
            with caplog.at_level("WARNING", logger="jetmesh.memory"):
                assert (
                    await ledger.once("wf", "counter", "s2", "pay", nothing, int, holder="h") == 2
                )
        finally:
            os.kill(read_pid_file(EmbeddedStack(s).pid_file(replica_node)) or 0, signal.SIGCONT)
        assert "0 of 1 Redis replicas had the ledger's writes after 300 ms" in caplog.text
    finally:
        await replica.aclose()
        await redis.aclose()


async def test_a_role_shut_out_is_refused_by_every_redis_node_and_sentinel(
    cluster: SecuredMesh,
) -> None:
    """Redis does not replicate its users: a shut-out made on the primary alone would let
    the role back in on the replica it promotes. ``jetmesh keys revoke``'s shut-out turns
    the user off on every data node and every Sentinel."""
    s = cluster.settings
    old = (s.resolved_keys_dir / "redis" / "approver.pass").read_text().strip()
    done = await shut_out(s, cluster.policy, "approver")
    assert "off on 2 servers and 3 Sentinels" in done.redis, done.redis
    assert "old nkey refused by 3 nodes" in done.nats, done.nats
    ports = [
        int(x.url.rsplit(":", 1)[1].split("/")[0])
        for x in EmbeddedStack(s).status().servers
        if not x.name.startswith("nats")
    ]
    assert len(ports) == 5
    for port in ports:
        node = aioredis.Redis(port=port, username="approver", password=old)
        try:
            with pytest.raises((AuthenticationError, ResponseError)):
                await node.ping()
        finally:
            await node.aclose()


async def test_a_workflow_goes_on_without_a_sentinel_and_the_redis_replica(
    served: SecuredMesh,
) -> None:
    """Any one node of each: with the first Sentinel a process would ask and the replica
    SIGKILLed, processes ask the next Sentinel and the primary goes on alone (the ledger's
    WAIT gives up after its timeout, logged); `jetmesh up` brings both back."""
    _, primary_port = await primary(served)
    (replica,) = [
        x.name
        for x in EmbeddedStack(served.settings).status().servers
        if x.name.startswith("redis-") and not x.url.endswith(f":{primary_port}")
    ]
    for server in ("sentinel-1", replica):
        kill(served, server)
    assert (await plan(served)).parts == [1, 2]
    status = await asyncio.to_thread(up_servers, served.settings, served.policy)
    started = {s.name for s in status.status.servers if s.state is ServerState.STARTED}
    assert started == {"sentinel-1", replica}
