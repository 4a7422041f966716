"""Acknowledged publishing survives a nats-server that dies with the message unread: the
publish is sent again with the same ``Nats-Msg-Id`` until the stream stores it, once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from nats.js.api import StreamConfig

from jetmesh.bus.connection import connect
from jetmesh.bus.publisher import ACK_TIMEOUT_S, StreamPublisher
from jetmesh.embedded import NatsServer

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
