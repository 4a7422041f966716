"""Declaring a stream (``ensure_stream``): created, updated in place when it exists with
another configuration, refused at once for anything else; on a cluster whose nodes have
just started, a replicated stream is placed once the nodes know each other, and one the
cluster can never place is refused after the timeout with the server's reason; the key
registry's bucket is placed likewise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from jetmesh import MeshSettings
from jetmesh.bus.streams import NO_SUITABLE_PEERS, await_jetstream, ensure_registry, ensure_stream
from jetmesh.embedded import NatsServer
from loadtest.servers import nats_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
async def cluster() -> AsyncIterator[JetStreamContext]:
    """JetStream on the first of three clustered nodes, just started, once a leader is
    elected: the nodes may not all know each other yet."""
    with nats_cluster(3) as urls:
        nc = await nats.connect(urls.split(",")[0], connect_timeout=2)
        try:
            js = nc.jetstream()
            await await_jetstream(js)
            yield js
        finally:
            await nc.close()


async def test_a_new_cluster_places_a_replicated_stream_and_refuses_one_it_cannot(
    cluster: JetStreamContext,
) -> None:
    js = cluster
    await ensure_stream(js, StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))
    info = await js.stream_info("R3")
    assert info.cluster is not None
    assert info.cluster.replicas is not None
    assert len(info.cluster.replicas) == 2  # a leader and two followers
    started = time.monotonic()
    with pytest.raises(BadRequestError) as refused:
        await ensure_stream(
            js, StreamConfig(name="R5", subjects=["r5.>"], num_replicas=5), timeout=1.0
        )
    assert refused.value.err_code == NO_SUITABLE_PEERS
    assert "no suitable peers" in str(refused.value.description)
    assert time.monotonic() - started >= 1.0  # asked again until the timeout


async def test_a_new_cluster_places_the_replicated_key_registry(
    cluster: JetStreamContext,
) -> None:
    settings = MeshSettings(stream_replicas=3)
    bucket = await ensure_registry(cluster, settings)
    info = await cluster.stream_info(f"KV_{settings.registry_bucket}")
    assert info.config.num_replicas == 3
    await bucket.put("kid", b"certificate")
    entry = await bucket.get("kid")
    assert entry.value == b"certificate"


async def test_an_existing_stream_is_updated_and_any_other_refusal_raised_at_once(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url, connect_timeout=2)
    js = nc.jetstream()
    try:
        await ensure_stream(js, StreamConfig(name="DECLARED", subjects=["declared.>"]))
        await ensure_stream(js, StreamConfig(name="DECLARED", subjects=["declared.>"], max_msgs=10))
        assert (await js.stream_info("DECLARED")).config.max_msgs == 10  # updated in place
        started = time.monotonic()
        with pytest.raises(BadRequestError) as refused:  # its subjects belong to DECLARED
            await ensure_stream(js, StreamConfig(name="OVERLAP", subjects=["declared.x"]))
        assert "overlap" in str(refused.value.description)
        assert time.monotonic() - started < 1.0
    finally:
        await js.delete_stream("DECLARED")
        await nc.close()
