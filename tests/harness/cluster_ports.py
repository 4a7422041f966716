"""Free loopback ports for a local cluster, whose ports are derived from a base: NATS nodes
on consecutive client ports with routes :data:`ROUTE_PORT_OFFSET` above, Redis data nodes
:data:`SENTINEL_PORT_OFFSET` below their Sentinels."""

from __future__ import annotations

import random
import socket

from jetmesh.embedded.stack import ROUTE_PORT_OFFSET, SENTINEL_PORT_OFFSET


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(offsets: list[int], low: int, high: int) -> int:
    """A port ``p`` in [low, high) with ``p + offset`` free for every offset."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high)
        if all(_free(base + offset) for offset in offsets):
            return base
    raise RuntimeError(f"no free block of ports {offsets} in [{low}, {high})")


def cluster_bases(nodes: int) -> tuple[int, int]:
    """(first NATS client port, first Redis data node port) of a free local cluster."""
    nats = free_base([*range(nodes), *(ROUTE_PORT_OFFSET + i for i in range(nodes))], 20000, 28000)
    redis = free_base([0, 1, *(SENTINEL_PORT_OFFSET + i for i in range(3))], 11000, 19000)
    return nats, redis
