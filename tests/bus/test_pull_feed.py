"""The continuous pull feed on a real nats-server: what it is owed is counted in total
(the server serves pull requests round robin), and a message beyond capacity waits for a
slot instead of being bounced back, which used up its deliveries in milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from jetmesh.bus import pull
from jetmesh.bus.pull import PullFeed
from jetmesh.embedded import NatsServer
from jetmesh.settings import MeshSettings
from tests.harness.mesh import until

pytestmark = pytest.mark.integration

STREAM, CONSUMER, SUBJECT = "FEED", "worker", "feed.task"


@pytest.fixture
async def nc(nats_server: NatsServer, settings: MeshSettings) -> AsyncIterator[NATS]:
    """A connection, with a stream and consumer of this test's own (named by its prefix)."""
    client = await nats.connect(nats_server.url)
    tag = settings.subject_prefix
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=f"{STREAM}_{tag}", subjects=[f"{tag}.{SUBJECT}"]))
    await js.add_consumer(
        f"{STREAM}_{tag}",
        ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=2.0,
            max_deliver=5,
            filter_subject=f"{tag}.{SUBJECT}",
        ),
    )
    try:
        yield client
    finally:
        await js.delete_stream(f"{STREAM}_{tag}")
        await client.close()


async def test_a_message_beyond_capacity_waits_for_a_slot_and_keeps_its_deliveries(
    nc: NATS, settings: MeshSettings
) -> None:
    tag = settings.subject_prefix
    stream = f"{STREAM}_{tag}"
    js = nc.jetstream()
    got: list[Msg] = []
    feed = PullFeed(nc, stream, CONSUMER, got.append, capacity=1)
    await feed.start()
    try:
        # credit the feed does not know of (as a pull left over from before a reconnect)
        request = json.dumps({"batch": 10, "expires": 30_000_000_000}).encode()
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}", request, feed._inbox)
        await js.publish(f"{tag}.{SUBJECT}", b"1")
        await js.publish(f"{tag}.{SUBJECT}", b"2")
        await until(lambda: len(got) == 1, "the first message handed out")
        await got[0].ack()  # done with, but its slot not yet released
        await asyncio.sleep(2.5)  # the second has arrived; past AckWait, it is kept alive
        info = await js.consumer_info(stream, CONSUMER)
        assert info.delivered.consumer_seq == 2, "each message delivered once, none bounced"
        assert [m.data for m in got] == [b"1"], "never more than capacity handed out"

        feed.release()  # the slot frees: the held message takes it
        assert [m.data for m in got] == [b"1", b"2"]
        assert got[1].metadata.num_delivered == 1
        assert feed.busy == 1
    finally:
        await feed.stop()


async def test_what_is_owed_is_counted_in_total_across_round_robin_requests(
    nc: NATS, settings: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = settings.subject_prefix
    stream = f"{STREAM}_{tag}"
    js = nc.jetstream()
    got: list[Msg] = []
    ended = asyncio.Event()
    feed = PullFeed(nc, stream, CONSUMER, got.append, capacity=4)
    on_status = feed._on_status

    def status(msg: Msg) -> None:
        on_status(msg)
        ended.set()

    feed._on_status = status  # type: ignore[method-assign]
    monkeypatch.setattr(pull, "PULL_EXPIRES_S", 1.0)
    await feed.start()  # the first request: 4 messages, expires in 1 s
    try:
        for n in (1, 2):
            await js.publish(f"{tag}.{SUBJECT}", str(n).encode())
        await until(lambda: len(got) == 2, "two messages handed out")
        monkeypatch.setattr(pull, "PULL_EXPIRES_S", 30.0)
        for msg in got:
            await msg.ack()
            feed.release()  # half the credit free: a second request, for 2
        await until(lambda: feed.requested == 4, "four asked for")
        for _ in range(1000):  # until the server holds the second request
            if (await js.consumer_info(stream, CONSUMER)).num_waiting == 2:
                break
            await asyncio.sleep(0.01)
        for n in (3, 4):  # served one to each request, round robin
            await js.publish(f"{tag}.{SUBJECT}", str(n).encode())
        await until(lambda: len(got) == 4, "four messages handed out")
        async with asyncio.timeout(10):
            await ended.wait()  # the first request expires, one message short
        assert feed.requested == 1, "the second request still owes one"
    finally:
        await feed.stop()
