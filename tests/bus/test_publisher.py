"""Acknowledged publishing survives a nats-server that dies with the message unread: the
publish is sent again with the same ``Nats-Msg-Id`` until the stream stores it, once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from nats.js.api import StreamConfig

from jetmesh.bus.connection import connect
from jetmesh.bus.group_commit import MIN_BATCH, SENDS_IN_FLIGHT
from jetmesh.bus.publisher import ACK_TIMEOUT_S, StreamPublisher
from jetmesh.embedded import NatsServer
from jetmesh.processes import all_threads_stopped

pytestmark = pytest.mark.integration

STREAM, SUBJECT = "PUBLISHED", "published.task"


async def test_a_publish_lost_with_its_server_is_sent_again_and_stored_once(
    fresh_nats_server: NatsServer,
) -> None:
    """The server is stopped (SIGSTOP), the task is written to its socket, the server is
    killed with the bytes unread and started again: the publish is sent again after
    ACK_TIMEOUT_S and returns once stored; the stream holds it once."""
    nc = await connect(fresh_nats_server.url, "publisher-test")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], duplicate_window=120))
    publisher = StreamPublisher(nc)
    await publisher.start()
    try:
        pid = fresh_nats_server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        sending = asyncio.create_task(
            publisher.publish(SUBJECT, b"task", {"Nats-Msg-Id": "task-1"})
        )
        await asyncio.sleep(0.3)  # written to the socket; the stopped server reads nothing
        fresh_nats_server.kill()
        await asyncio.to_thread(fresh_nats_server.start)
        async with asyncio.timeout(ACK_TIMEOUT_S * 4):
            await sending
        info = await js.stream_info(STREAM)
        assert info.state.messages == 1
        await publisher.publish(SUBJECT, b"task", {"Nats-Msg-Id": "task-1"})  # again: once
        assert (await js.stream_info(STREAM)).state.messages == 1
    finally:
        await publisher.close(timeout=1)
        await nc.close()


async def _publish_events(
    url: str, *, allow_atomic: bool, count: int, stored_first: int = 0
) -> tuple[int, int, int]:
    """``count`` events through the group commit (the first ``stored_first`` of them
    stored one by one before); the stream's messages, the atomic batches stored and
    those refused."""
    nc = await connect(url, "group-commit-test")
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="GROUPED", subjects=["grouped.>"], allow_atomic=allow_atomic)
    )
    publisher = StreamPublisher(nc, batch_prefixes=("grouped.",))
    await publisher.start()
    try:
        for n in range(stored_first):
            await publisher.publish(f"grouped.{n}", b"event", {"Nats-Msg-Id": f"e{n}"})
        for n in range(count):
            await publisher.publish_later(
                f"e{n}", f"grouped.{n}", b"event", {"Nats-Msg-Id": f"e{n}"}
            )
        assert await publisher.flush(timeout=20)
        assert publisher.pending == 0
        info = await js.stream_info("GROUPED")
        return info.state.messages, publisher.batches, publisher.refused_batches
    finally:
        await publisher.close(timeout=1)
        await js.delete_stream("GROUPED")
        await nc.close()


async def test_events_that_queue_are_stored_as_atomic_batches(
    fresh_nats_server: NatsServer,
) -> None:
    stored, batches, refused = await _publish_events(
        fresh_nats_server.url, allow_atomic=True, count=2000
    )
    assert (stored, refused) == (2000, 0)
    assert 0 < batches < 2000 / MIN_BATCH  # most went in batches, each of several


async def test_a_few_publishes_at_once_go_together_not_each_after_the_last_ack(
    fresh_nats_server: NatsServer,
) -> None:
    """A caller's fan-out of three tasks from an idle process: with the server stopped
    (SIGSTOP), all three are written before any ack comes; continued, each is stored once
    and every publish returns."""
    nc = await connect(fresh_nats_server.url, "group-commit-few")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="FEW", subjects=["few.>"], allow_atomic=True))
    publisher = StreamPublisher(nc, batch_prefixes=("few.",))
    await publisher.start()
    pid = fresh_nats_server.pid
    assert pid is not None
    try:
        sent_before = nc.stats["out_msgs"]
        os.kill(pid, signal.SIGSTOP)
        try:
            assert await asyncio.to_thread(all_threads_stopped, pid, 5.0)
            fan_out = [
                asyncio.create_task(publisher.publish(f"few.{n}", b"task", {"Nats-Msg-Id": str(n)}))
                for n in range(3)
            ]
            await asyncio.sleep(0.3)
            assert nc.stats["out_msgs"] - sent_before == 3  # was 1: the others waited
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(5):
            await asyncio.gather(*fan_out)
        assert (await js.stream_info("FEW")).state.messages == 3
        assert publisher.batches == 0  # each alone: fewer than MIN_BATCH
    finally:
        await publisher.close(timeout=1)
        await nc.close()


async def test_without_atomic_publish_every_event_is_still_stored_one_by_one(
    fresh_nats_server: NatsServer,
) -> None:
    stored, batches, refused = await _publish_events(
        fresh_nats_server.url, allow_atomic=False, count=500
    )
    assert (stored, batches) == (500, 0)
    assert 1 <= refused <= SENDS_IN_FLIGHT  # the first batches; then each event alone


async def test_a_batch_holding_a_stored_message_is_sent_again_one_by_one_and_stored_once(
    fresh_nats_server: NatsServer,
) -> None:
    """The stream refuses an atomic batch with a message id it already has (as after a
    commit whose ack was lost): each message goes again alone, the stored one counted
    as a duplicate, so every event is in the stream once."""
    stored, _, refused = await _publish_events(
        fresh_nats_server.url, allow_atomic=True, count=600, stored_first=300
    )
    assert stored == 600
    assert refused >= 1


async def test_awaited_publishes_that_queue_share_atomic_batches_and_each_learns_it_is_stored(
    fresh_nats_server: NatsServer,
) -> None:
    """400 publishes awaited at once (a caller's tasks): each returns once stored, most
    went in batches, and a publish whose id the stream had (a caller asking again) still
    returns as stored."""
    nc = await connect(fresh_nats_server.url, "group-commit-test")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="TASKS", subjects=["tasks.>"], allow_atomic=True))
    publisher = StreamPublisher(nc, batch_prefixes=("tasks.",))
    await publisher.start()
    try:
        await publisher.publish("tasks.0", b"task", {"Nats-Msg-Id": "t0"})
        await asyncio.gather(
            *(
                publisher.publish(f"tasks.{n}", b"task", {"Nats-Msg-Id": f"t{n}"})
                for n in range(400)
            )
        )
        assert (await js.stream_info("TASKS")).state.messages == 400
        assert publisher.batches > 0
        assert publisher.refused_batches >= 1  # the batch holding t0, then each alone
    finally:
        await publisher.close(timeout=1)
        await nc.close()


async def test_what_a_group_commit_had_in_flight_goes_again_when_the_connection_is_back(
    fresh_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch written to a stopped server's socket is lost with it (killed unread); on
    reconnecting, the publisher sends each of its messages again at once (with the ack
    timeout made an hour here, nothing else would), and each is stored once."""
    monkeypatch.setattr("jetmesh.bus.publisher.ACK_TIMEOUT_S", 3600.0)
    publisher: StreamPublisher | None = None

    async def reconnected() -> None:
        assert publisher is not None
        await publisher.reconnected()

    nc = await connect(fresh_nats_server.url, "group-commit-test", on_reconnect=[reconnected])
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="GROUPED", subjects=["grouped.>"], allow_atomic=True))
    publisher = StreamPublisher(nc, batch_prefixes=("grouped.",))
    await publisher.start()
    try:
        pid = fresh_nats_server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        for n in range(200):
            await publisher.publish_later(f"e{n}", f"grouped.{n}", b"e", {"Nats-Msg-Id": f"e{n}"})
        task = asyncio.create_task(publisher.publish("grouped.t", b"t", {"Nats-Msg-Id": "t"}))
        await asyncio.sleep(0.3)  # written to the socket; the stopped server reads nothing
        fresh_nats_server.kill()
        await asyncio.to_thread(fresh_nats_server.start)
        assert await publisher.flush(timeout=30)
        async with asyncio.timeout(30):
            await task
        assert (await js.stream_info("GROUPED")).state.messages == 201
    finally:
        await publisher.close(timeout=1)
        await nc.close()


async def test_an_event_no_stream_takes_yet_is_tried_again_with_backoff_not_dropped(
    fresh_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stream answers for 4.5 s (JetStream electing a leader, a stream not made yet):
    with eight tries at most, a try every sweep would have dropped the event within 4 s;
    spaced out, they span longer, and the event is stored once the stream is there."""
    monkeypatch.setattr("jetmesh.bus.publisher.MAX_ATTEMPTS", 8)
    nc = await connect(fresh_nats_server.url, "backoff-test")
    js = nc.jetstream()
    publisher = StreamPublisher(nc)
    await publisher.start()
    try:
        await publisher.publish_later("late-1", "late.x", b"event", {"Nats-Msg-Id": "late-1"})
        await asyncio.sleep(4.5)
        assert publisher.pending == 1
        await js.add_stream(StreamConfig(name="LATE", subjects=["late.>"]))
        assert await publisher.flush(timeout=15)
        assert publisher.dropped == 0
        assert (await js.stream_info("LATE")).state.messages == 1
    finally:
        await publisher.close(timeout=1)
        await nc.close()


async def test_a_flush_on_a_closed_connection_gives_up_at_once(
    fresh_nats_server: NatsServer,
) -> None:
    """An event no stream took is still pending when the connection closes (a replica
    whose connection died, closing): nothing more can be sent, so the flush returns False
    at once instead of waiting its whole timeout (an hour here)."""
    nc = await connect(fresh_nats_server.url, "closed-flush-test")
    publisher = StreamPublisher(nc)
    await publisher.start()
    await publisher.publish_later("lost-1", "nowhere.x", b"event", {"Nats-Msg-Id": "lost-1"})
    await nc.close()
    assert await asyncio.wait_for(publisher.flush(timeout=3600), 30) is False
    assert publisher.pending == 1
    await publisher.close(timeout=3600)


@pytest.mark.parametrize("grouped", [True, False], ids=["group-commit", "alone"])
async def test_stored_waits_for_the_events_named_and_no_others(
    fresh_nats_server: NatsServer, grouped: bool
) -> None:
    """``stored`` returns False while the server is stopped (SIGSTOP) with the event unread,
    True once it is stored; events already stored, or never sent, cost no wait."""
    nc = await connect(fresh_nats_server.url, "stored-test")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="WAITED", subjects=["waited.>"], allow_atomic=True))
    publisher = StreamPublisher(nc, batch_prefixes=("waited.",) if grouped else ())
    await publisher.start()
    pid = fresh_nats_server.pid
    assert pid is not None
    try:
        await publisher.publish_later("e0", "waited.0", b"event", {"Nats-Msg-Id": "e0"})
        assert await publisher.stored(["e0"], timeout=5)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert await asyncio.to_thread(all_threads_stopped, pid, 5.0)  # not a moment later
            await publisher.publish_later("e1", "waited.1", b"event", {"Nats-Msg-Id": "e1"})
            assert not await publisher.stored(["e0", "e1"], timeout=0.3)
            async with asyncio.timeout(0.1):  # stored already, or never sent: at once
                assert await publisher.stored(["e0", "unknown"], timeout=5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await publisher.stored(["e0", "e1"], timeout=5)
        assert publisher.pending == 0
        assert (await js.stream_info("WAITED")).state.messages == 2
    finally:
        await publisher.close(timeout=1)
        await nc.close()
