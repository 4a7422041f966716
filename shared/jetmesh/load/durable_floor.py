"""The durable floor: the mesh's stored hop done with nats-py alone, the second pace a load
run's speed is measured against (``[[floor]] kind = "durable"``).

Per request, as the mesh stores it but without signing, envelopes or an agent: the
requester publishes the task to a stream of its own (JetStream publish, waits for the ack),
the responder process receives it from a durable pull consumer, publishes an event to a
second stream (waits for the ack), replies on core NATS to the subject the task's
:data:`REPLY_HEADER` names, and acknowledges the task. Both streams are file-stored, keep
every message (limits retention), de-duplicate on ``Nats-Msg-Id`` within the mesh's window
and have the mesh's replicas; how often the server fsyncs is the server's setting, so the
same as the mesh's. :func:`create_streams` makes them before a measurement,
:func:`stored_then_delete` counts what they hold and deletes them after.

:mod:`.floor` runs the responder process (``--serve-durable``) and the closed loop;
this module holds the streams, the responder's loop (:func:`answer_tasks`) and the
requester (:class:`DurableRequester`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

__all__ = [
    "CONSUMER",
    "REPLY_HEADER",
    "DurableRequester",
    "FloorStreams",
    "answer_tasks",
    "create_streams",
    "stored_then_delete",
]

REPLY_HEADER = "Floor-Reply"
"""The task's header naming the core NATS subject the responder replies to."""

MSG_ID_HEADER = "Nats-Msg-Id"
"""JetStream's de-duplication header, set on every stored message as the mesh sets it."""

CONSUMER = "floor"
"""The durable pull consumer of the floor's tasks stream."""

PUBLISH_TIMEOUT_S = 5.0
"""How long a JetStream publish waits for its ack."""

FETCH_TIMEOUT_S = 1.0
"""How long one fetch of the responder waits for a first task."""

ACK_WAIT_S = 30.0
"""The consumer's AckWait: longer than any measurement's task takes."""


@dataclass(frozen=True)
class FloorStreams:
    """The names and subjects of one measurement's two streams."""

    tasks: str
    """The tasks stream, e.g. ``FLOOR_1A2B3C4D5E6F_TASKS``."""
    events: str
    """The events stream."""
    tasks_subject: str
    """The one subject of the tasks stream."""
    events_subject: str
    """The one subject of the events stream."""

    @classmethod
    def fresh(cls) -> FloorStreams:
        """Names no other measurement uses (a random token in each)."""
        token = uuid.uuid4().hex[:12]
        return cls(
            tasks=f"FLOOR_{token.upper()}_TASKS",
            events=f"FLOOR_{token.upper()}_EVENTS",
            tasks_subject=f"jetmesh.floor.{token}.tasks",
            events_subject=f"jetmesh.floor.{token}.events",
        )


async def create_streams(
    js: JetStreamContext,
    streams: FloorStreams,
    *,
    replicas: int = 1,
    duplicate_window_s: float = 120.0,
    max_ack_pending: int = 1024,
) -> None:
    """Create the two streams and the tasks' durable pull consumer.

    Args:
        js: A JetStream context of a login that may create streams (the admin's on servers
            that enforce a policy).
        streams: Their names and subjects.
        replicas: Each stream's replicas (the mesh's tasks stream's).
        duplicate_window_s: The de-duplication window (the mesh's).
        max_ack_pending: Tasks delivered and not yet acknowledged at most (the mesh's).

    Raises:
        nats.js.errors.APIError: the server refused (a name taken, too many replicas).
    """
    for name, subject in (
        (streams.tasks, streams.tasks_subject),
        (streams.events, streams.events_subject),
    ):
        config = StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window_s,
            num_replicas=replicas,
            discard=DiscardPolicy.OLD,
        )
        await js.add_stream(config)
    await js.add_consumer(
        streams.tasks,
        ConsumerConfig(
            durable_name=CONSUMER,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=max_ack_pending,
            max_waiting=512,
        ),
    )


async def stored_then_delete(js: JetStreamContext, streams: FloorStreams) -> int:
    """The messages both streams hold, then both deleted (one not there counts 0).

    Args:
        js: A JetStream context of the login that created them.
        streams: Their names.

    Returns:
        Tasks and events stored, together.
    """
    stored = 0
    for name in (streams.tasks, streams.events):
        with contextlib.suppress(NotFoundError):
            stored += int((await js.stream_info(name)).state.messages)
            await js.delete_stream(name)
    return stored


async def _answer(nc: NATS, js: JetStreamContext, streams: FloorStreams, msg: Msg) -> None:
    """One task: its event stored (acked), the reply, the task acknowledged. A failure
    leaves the requester to time out (it counts the error)."""
    headers = msg.headers or {}
    with contextlib.suppress(Exception):
        event_id = {MSG_ID_HEADER: f"{headers.get(MSG_ID_HEADER, '')}-event"}
        await js.publish(
            streams.events_subject, msg.data, timeout=PUBLISH_TIMEOUT_S, headers=event_id
        )
        await nc.publish(headers[REPLY_HEADER], msg.data)
        await msg.ack()


async def answer_tasks(nc: NATS, streams: FloorStreams, in_flight: int) -> None:
    """The responder's loop: fetch tasks from the durable consumer, at most ``in_flight``
    being answered at a time, until cancelled.

    Args:
        nc: The responder's connection.
        streams: The streams the requester made.
        in_flight: Tasks answered at once at most (the mesh's replica's concurrency).
    """
    js = nc.jetstream()
    feed = await js.pull_subscribe_bind(CONSUMER, streams.tasks)
    answering: set[asyncio.Task[None]] = set()
    try:
        while True:
            free = in_flight - len(answering)
            if free <= 0:
                await asyncio.wait(answering, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await feed.fetch(batch=free, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:
                continue
            for msg in msgs:
                task = asyncio.create_task(_answer(nc, js, streams, msg))
                answering.add(task)
                task.add_done_callback(answering.discard)
    finally:
        for task in list(answering):
            task.cancel()
        await asyncio.gather(*answering, return_exceptions=True)
        with contextlib.suppress(Exception):
            await feed.unsubscribe()


class DurableRequester:
    """The requester's side: each :meth:`send` publishes one task (stored, acked) and waits
    for the responder's reply on core NATS."""

    def __init__(self, nc: NATS, streams: FloorStreams) -> None:
        """Use ``nc`` for ``streams``; :meth:`start` before the first send.

        Args:
            nc: The requester's connection.
            streams: The streams :func:`create_streams` made.
        """
        self._nc = nc
        self._js = nc.jetstream()
        self._streams = streams
        self._inbox = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._numbers = itertools.count()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to the replies (one wildcard inbox)."""
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        await self._nc.flush()

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if waiting is not None and not waiting.done():
            waiting.set_result(msg.data)

    async def send(self, payload: bytes, timeout: float) -> bytes:
        """One durable hop: the task published and acked, then its reply.

        Args:
            payload: The task's data (echoed back).
            timeout: The longest wait for the ack, then for the reply, in seconds.

        Returns:
            The reply's data.

        Raises:
            TimeoutError: no ack or no reply in time.
            nats.js.errors.APIError: the stream refused the task.
        """
        token = f"t{next(self._numbers)}"
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[token] = reply
        try:
            headers = {MSG_ID_HEADER: token, REPLY_HEADER: f"{self._inbox}.{token}"}
            await self._js.publish(
                self._streams.tasks_subject, payload, timeout=timeout, headers=headers
            )
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._waiting.pop(token, None)

    async def stop(self) -> None:
        """Unsubscribe from the replies."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
