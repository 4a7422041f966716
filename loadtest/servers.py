"""Throwaway servers for a benchmark run, from the library's embedded module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from jetmesh.embedded import (
    SYNC_INTERVAL,
    NatsCluster,
    NatsServer,
    RedisServer,
    free_cluster_ports,
    scratch_dir,
)

ROUTE_OFFSET = 2000


@contextmanager
def nats_server(timeout: float = 10.0, *, sync_interval: str = SYNC_INTERVAL) -> Iterator[str]:
    """A nats-server with JetStream in a temporary directory for the ``with`` block,
    configured as embedded (``sync_interval: always`` unless told otherwise).

    Yields:
        The server's URL, ``nats://127.0.0.1:<port>``.
    """
    with scratch_dir("loadtest-nats-") as tmp:
        server = NatsServer(data_dir=tmp, sync_interval=sync_interval)
        server.start(timeout=timeout)
        try:
            yield server.url
        finally:
            server.stop(timeout=timeout)


@contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """A redis-server (AOF on, as embedded) in a temporary directory for the block.

    Yields:
        The server's URL, ``redis://127.0.0.1:<port>/0``.
    """
    with scratch_dir("loadtest-redis-") as tmp:
        server = RedisServer(data_dir=tmp)
        server.start(timeout=timeout)
        try:
            yield server.url
        finally:
            server.stop(timeout=timeout)


@contextmanager
def nats_cluster(
    nodes: int = 3, timeout: float = 10.0, *, sync_interval: str = SYNC_INTERVAL
) -> Iterator[str]:
    """A JetStream cluster of ``nodes`` nats-servers on loopback for the block, configured
    as ``jetmesh up --cluster`` configures it.

    Yields:
        The nodes' URLs, comma separated (``JETMESH_NATS_URL``).
    """
    base, _ = free_cluster_ports(nodes)
    ports = [base + i for i in range(nodes)]
    with scratch_dir("loadtest-cluster-") as tmp:
        servers = [
            NatsServer(
                port,
                data_dir=tmp / f"nats-{i}",
                sync_interval=sync_interval,
                server_name=f"nats-{i}",
                cluster=NatsCluster(
                    name="bench",
                    port=port + ROUTE_OFFSET,
                    routes=tuple(f"127.0.0.1:{p + ROUTE_OFFSET}" for p in ports if p != port),
                    password="bench-routes",
                ),
            )
            for i, port in enumerate(ports, 1)
        ]
        try:
            for server in servers:
                server.start(timeout=timeout)
            yield ",".join(server.url for server in servers)
        finally:
            for server in servers:
                server.stop(timeout=timeout)


@contextmanager
def redis_pair(timeout: float = 10.0) -> Iterator[str]:
    """A redis-server and a replica of it (AOF on, as embedded) for the block, the
    replica in sync before it is given.

    Yields:
        The primary's URL.
    """
    with scratch_dir("loadtest-redis-pair-") as tmp:
        primary = RedisServer(data_dir=tmp / "primary")
        primary.start(timeout=timeout)
        replica = RedisServer(data_dir=tmp / "replica", replica_of=(primary.host, primary.port))
        try:
            replica.start(timeout=timeout)
            _await_in_sync(replica.port, timeout)
            yield primary.url
        finally:
            replica.stop(timeout=timeout)
            primary.stop(timeout=timeout)


def _await_in_sync(port: int, timeout: float) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=1.0)
    deadline = time.monotonic() + timeout
    try:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica on {port} did not catch up in {timeout:g} s")
            time.sleep(0.05)
    finally:
        client.close()
