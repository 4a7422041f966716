"""A network partition on loopback: one node of a three-node JetStream cluster restarted cut
off from the other two (its route port moved, its routes to a port nobody listens on). The
majority side goes on acknowledging; the cut-off node acknowledges nothing; once restarted
with its routes it catches up, and every node's copy of the stream is the same message by
message (read from each node's files, loadtest/stream_files.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from jetmesh.embedded import NatsCluster, NatsServer, free_cluster_ports, free_port
from jetmesh.embedded.stack import ROUTE_PORT_OFFSET
from loadtest.stream_files import compare_replicas, read_stream

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]

STREAM = "PARTITION"


def nodes(tmp: Path) -> list[NatsServer]:
    base, _ = free_cluster_ports(3)
    ports = [base + i for i in range(3)]
    return [
        NatsServer(
            port,
            data_dir=tmp / f"nats-{i}",
            server_name=f"nats-{i}",
            cluster=NatsCluster(
                name="partition",
                port=port + ROUTE_PORT_OFFSET,
                routes=tuple(f"127.0.0.1:{p + ROUTE_PORT_OFFSET}" for p in ports if p != port),
                password="routes",
            ),
        )
        for i, port in enumerate(ports, 1)
    ]


async def publish(url: str, count: int, *, timeout: float, tag: str = "") -> int:
    """How many of ``count`` publishes through ``url`` were acknowledged."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js, acked = nc.jetstream(), 0
        for i in range(count):
            try:
                await js.publish(STREAM, f"{tag} {i}".encode(), timeout=timeout)
                acked += 1
            except Exception:
                pass
        return acked
    finally:
        await nc.close()


async def until_acked(url: str, within: float) -> None:
    deadline = time.monotonic() + within
    while await publish(url, 1, timeout=1.0) != 1:
        assert time.monotonic() < deadline, f"{url} acknowledged nothing in {within:g} s"
        await asyncio.sleep(0.2)


async def until_current(url: str, within: float) -> None:
    """Until both followers of the stream are current, with nothing left to catch up."""
    nc = await nats.connect(url, connect_timeout=2)
    try:
        deadline = time.monotonic() + within
        while True:
            info = await nc.jetstream().stream_info(STREAM)
            followers = info.cluster.replicas if info.cluster is not None else None
            if (
                followers
                and len(followers) == 2
                and all(r.current and not r.lag for r in followers)
            ):
                return
            assert time.monotonic() < deadline, f"followers not caught up: {followers}"
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def test_a_cut_off_node_acknowledges_nothing_and_catches_up(tmp_path: Path) -> None:
    cluster = nodes(tmp_path)
    try:
        for node in cluster:
            node.start()
        first, _, cut = cluster
        deadline = time.monotonic() + 30
        nc = await nats.connect(first.url, connect_timeout=2)
        try:
            while True:  # the new cluster elects its leaders
                try:
                    await nc.jetstream().add_stream(
                        StreamConfig(name=STREAM, subjects=[STREAM], num_replicas=3)
                    )
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the cluster did not form"
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()
        assert await publish(first.url, 20, timeout=5.0) == 20

        cut.stop()  # back cut off: the others' routes lead nowhere, and its own too
        assert cut.cluster is not None
        nowhere = (f"127.0.0.1:{free_port()}",)  # (a cluster node must name some route)
        cut.cluster = replace(cut.cluster, port=cut.cluster.port + 1, routes=nowhere)
        cut.start()
        await until_acked(first.url, within=30)  # the majority goes on (a new leader if need be)
        assert await publish(first.url, 20, timeout=5.0) == 20
        # no quorum on the cut-off side: nothing acknowledged, nothing stored
        assert await publish(cut.url, 5, timeout=1.0, tag="cut off") == 0

        cut.stop()  # healed: its routes back
        cut.cluster = replace(
            cut.cluster, port=cut.cluster.port - 1, routes=nodes_routes(cluster, cut)
        )
        cut.start()
        await until_acked(cut.url, within=30)
        await until_current(first.url, within=30)
    finally:
        for node in cluster:
            node.stop()
    copies = {n.server_name or "": read_stream(n.store_dir, STREAM) for n in cluster}
    assert compare_replicas(copies) == []
    (stored,) = {len(c) for c in copies.values()}
    assert stored >= 42  # 20 + 20 acknowledged, and one after each heal
    assert not [m for m in copies["nats-1"].values() if m.payload.startswith(b"cut off")]


def nodes_routes(cluster: list[NatsServer], node: NatsServer) -> tuple[str, ...]:
    return tuple(
        f"127.0.0.1:{other.port + ROUTE_PORT_OFFSET}" for other in cluster if other is not node
    )
