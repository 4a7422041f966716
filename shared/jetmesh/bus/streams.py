"""Declaring streams, consumers and the key registry, idempotently, or binding to them.

A declaration that matches what exists is a no-op, one that differs updates the stream in
place. Consumers are durable pull consumers named after the agent role, filtered to the
role's task subject, shared by all replicas. On servers that enforce the policy only the
admin declares (:mod:`jetmesh.provision`); a role binds to what is there
(:func:`bind_registry`, :func:`bind_consumers`) and is told to run the admin step when
something is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from .._exceptions import NotProvisioned
from ..addresses import Subjects
from ..settings import MeshSettings

DLQ_MAX_AGE_S = 30 * 24 * 3600.0
ADVISORIES_MAX_AGE_S = 7 * 24 * 3600.0

T = TypeVar("T")

JETSTREAM_READY_S = 30.0
"""How long the admin step waits for JetStream to answer: a new cluster's nodes elect a
leader first (seconds)."""

PROVISION_HINT = "run `jetmesh up` (or `jetmesh admin provision` as the admin)"


def advisories_stream(settings: MeshSettings) -> str:
    """The stream that keeps the max-deliveries advisories of the tasks stream."""
    return f"{settings.tasks_stream}_ADVISORIES"


def max_deliveries_subject(settings: MeshSettings, agent: str) -> str:
    """Where JetStream announces that a task of ``agent`` ran out of deliveries."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{settings.tasks_stream}.{agent}"


def stream_configs(settings: MeshSettings) -> list[StreamConfig]:
    """The streams of a mesh: tasks, events, max-deliveries advisories and dead letters.

    The advisories are core NATS messages: kept in a stream, a task that runs out of
    deliveries while no replica of its role is connected is still dead-lettered later.

    Every stream is bounded in bytes, messages and message size (settings), and says what
    happens when it is full (docs/durability.md):

    - tasks: a new task is refused (``DiscardNew``): a task the stream acknowledged is
      never dropped for another; the caller is slowed down instead (``PublishFailed``).
    - events: the oldest events go (``DiscardOld``): a role that floods its events cannot
      stop the audit trail, signals and approvals of every workflow (they travel as
      events); what it can do is push out history older than the flood, which the flood
      itself, signed by its sender, then shows.
    - advisories: the oldest go (``DiscardOld``): they are handled within seconds.
    - dead letters: a new one is refused (``DiscardNew``), and per role (one subject each)
      past ``dlq_max_msgs_per_role``: a role's flood of its own dead letters leaves room for
      the others'; no dead letter is dropped before an operator deals with it.
    """
    subjects = Subjects(settings.subject_prefix)
    replicas = settings.stream_replicas
    tasks_replicas = settings.tasks_replicas or replicas
    common = {
        "retention": RetentionPolicy.LIMITS,
        "storage": StorageType.FILE,
        "duplicate_window": settings.duplicate_window_s,
        "max_msg_size": settings.message_limit_bytes,
    }
    return [
        StreamConfig(
            name=settings.tasks_stream,
            subjects=[subjects.all_tasks],
            max_age=settings.tasks_max_age_s,
            max_bytes=settings.tasks_max_bytes,
            max_msgs=settings.tasks_max_msgs,
            discard=DiscardPolicy.NEW,
            description="jetmesh tasks, one subject per agent role",
            allow_atomic=True,  # group commit: tasks as atomic batches (bus.publisher)
            num_replicas=tasks_replicas,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=settings.events_stream,
            subjects=[subjects.all_events],
            max_age=settings.events_max_age_s,
            max_bytes=settings.events_max_bytes,
            max_msgs=settings.events_max_msgs,
            discard=DiscardPolicy.OLD,
            description="jetmesh workflow events: the audit trail",
            allow_direct=True,  # read by direct gets: a role may not create consumers
            allow_atomic=True,  # group commit, as for tasks
            num_replicas=settings.events_replicas or replicas,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=advisories_stream(settings),
            subjects=[max_deliveries_subject(settings, "*")],
            max_age=ADVISORIES_MAX_AGE_S,
            max_bytes=settings.advisories_max_bytes,
            max_msgs=settings.advisories_max_msgs,
            discard=DiscardPolicy.OLD,
            description="JetStream's max-deliveries advisories of jetmesh tasks, kept until "
            "a replica of the role has dead-lettered the task",
            num_replicas=tasks_replicas,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=settings.dlq_stream,
            subjects=[subjects.all_dlq],
            max_age=DLQ_MAX_AGE_S,
            max_bytes=settings.dlq_max_bytes,
            max_msgs=settings.dlq_max_msgs,
            max_msgs_per_subject=settings.dlq_max_msgs_per_role,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            description="jetmesh dead letters with their reasons",
            num_replicas=settings.dlq_replicas or replicas,
            **{**common, "max_msg_size": settings.server_max_payload_bytes},  # type: ignore[arg-type]
        ),
    ]


STREAM_NAME_IN_USE = 10058
"""JetStream's error code for a stream that exists with another configuration."""
NO_SUITABLE_PEERS = 10005
"""JetStream's error code for a replicated stream the cluster cannot place: too few nodes,
or a new cluster whose nodes do not all know each other yet."""


async def ensure_stream(
    js: JetStreamContext, config: StreamConfig, *, timeout: float = JETSTREAM_READY_S
) -> None:
    """Create ``config`` or update the existing stream of that name to match it; a placement
    the cluster refuses is asked again for up to ``timeout`` seconds (:func:`placed`).

    Raises:
        BadRequestError: any other refusal at once (a subject another stream holds, a bad
            limit, ...); a placement still refused after ``timeout``.
    """
    try:
        await placed(lambda: js.add_stream(config), timeout)
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
        await js.update_stream(config)


async def placed(call: Callable[[], Awaitable[T]], timeout: float = JETSTREAM_READY_S) -> T:
    """``call()`` (making a stream or a bucket), asked again while the cluster refuses to
    place it, for up to ``timeout`` seconds: a cluster that has just elected its leader may
    not know every node yet ("no suitable peers for placement").

    Raises:
        BadRequestError: any other refusal at once; a placement still refused after
            ``timeout``.
    """
    return await _asked_again(call, timeout, _not_placed_yet)


def _not_placed_yet(exc: Exception) -> bool:
    return isinstance(exc, BadRequestError) and exc.err_code == NO_SUITABLE_PEERS


UNAVAILABLE: tuple[type[Exception], ...] = (
    NatsTimeoutError,
    NoRespondersError,
    ServiceUnavailableError,
    TimeoutError,
)
"""What a JetStream request raises while a stream, a consumer or the cluster's metadata
has no leader (a node died: its peers elect another within seconds)."""


async def through_elections(
    call: Callable[[], Awaitable[T]], timeout: float = JETSTREAM_READY_S
) -> T:
    """``call()``, asked again while JetStream is between leaders (:data:`UNAVAILABLE`),
    for up to ``timeout`` seconds; any other error at once.

    Raises:
        the last :data:`UNAVAILABLE` error once ``timeout`` has passed.
    """
    return await _asked_again(call, timeout, lambda exc: isinstance(exc, UNAVAILABLE))


async def _asked_again(
    call: Callable[[], Awaitable[T]], timeout: float, again: Callable[[Exception], bool]
) -> T:
    """``call()``, asked again every 0.25 s while it raises what ``again`` accepts, for up
    to ``timeout`` seconds; any other error, or the last one after ``timeout``, raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception as exc:
            if not again(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.25)


async def await_jetstream(js: JetStreamContext, timeout: float = JETSTREAM_READY_S) -> None:
    """Wait until JetStream answers account requests: at once on a running server; on a
    new cluster, once its nodes have elected a leader.

    Raises:
        TimeoutError: no answer within ``timeout`` (the last error is chained).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.account_info()
            return
        except (NatsError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"JetStream did not answer in {timeout:g} s: {exc}") from exc
            await asyncio.sleep(0.2)


async def ensure_streams(js: JetStreamContext, settings: MeshSettings) -> None:
    for config in stream_configs(settings):
        await ensure_stream(js, config)


def consumer_config(settings: MeshSettings, agent: str) -> ConsumerConfig:
    """The durable pull consumer all replicas of ``agent`` share."""
    return ConsumerConfig(
        durable_name=agent,
        name=agent,
        description=f"tasks of {agent}, shared by its replicas",
        filter_subject=Subjects(settings.subject_prefix).task(agent),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=settings.max_ack_pending,
        max_waiting=512,
    )


def advisories_consumer_config(settings: MeshSettings, agent: str) -> ConsumerConfig:
    """The durable consumer of ``agent``'s max-deliveries advisories."""
    return ConsumerConfig(
        durable_name=agent,
        name=agent,
        description=f"max-deliveries advisories of {agent}'s tasks",
        filter_subject=max_deliveries_subject(settings, agent),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_waiting=512,
    )


@dataclass(frozen=True)
class TaskConsumer:
    """A role's task consumer as nats-server holds it after the admin step (the consumer
    info of its create-or-update): what a changed ``ack_wait_s``, ``max_deliver`` or
    ``max_ack_pending`` became. Replicas never change it: a new setting takes effect when
    the admin step runs again (``jetmesh admin provision``, ``jetmesh up``)."""

    role: str
    ack_wait_s: float
    """AckWait: how long an unacknowledged delivery waits before it is delivered again."""
    max_deliver: int
    """Deliveries of one task before it is dead-lettered."""
    max_ack_pending: int
    """Tasks in flight for the role across all its replicas."""
    backoff_s: tuple[float, ...] = ()
    """The server's own redelivery delays, if the consumer has any (the library sets none:
    a replica sends a failed task back after ``retry_backoff_s``)."""

    def describe(self) -> str:
        """``AckWait 10 s, max_deliver 5, max_ack_pending 1024`` (and the backoff, if any)."""
        text = (
            f"AckWait {self.ack_wait_s:g} s, max_deliver {self.max_deliver}, "
            f"max_ack_pending {self.max_ack_pending}"
        )
        if self.backoff_s:
            text += f", backoff {', '.join(f'{b:g}' for b in self.backoff_s)} s"
        return text


async def ensure_consumer(js: JetStreamContext, settings: MeshSettings, agent: str) -> TaskConsumer:
    """Create ``agent``'s durable consumers (tasks, advisories), or update existing ones
    to the current settings (AckWait, max deliveries, max ack pending: the server's
    create-or-update). Returns what the tasks consumer holds after it."""
    info = await js.add_consumer(settings.tasks_stream, consumer_config(settings, agent))
    await js.add_consumer(advisories_stream(settings), advisories_consumer_config(settings, agent))
    config = info.config
    return TaskConsumer(
        role=agent,
        ack_wait_s=float(config.ack_wait or 0.0),
        max_deliver=int(config.max_deliver or 0),
        max_ack_pending=int(config.max_ack_pending or 0),
        backoff_s=tuple(float(b) for b in config.backoff or ()),
    )


async def ensure_registry(js: JetStreamContext, settings: MeshSettings) -> KeyValue:
    """The key-value bucket of agent certificates, by key id."""
    try:
        return await js.key_value(settings.registry_bucket)
    except (NotFoundError, BadRequestError):
        config = KeyValueConfig(
            bucket=settings.registry_bucket,
            description="jetmesh agent certificates by key id",
            history=1,
            storage=StorageType.FILE,
            replicas=settings.registry_replicas or settings.stream_replicas,
        )
        return await placed(lambda: js.create_key_value(config))


async def bind_registry(js: JetStreamContext, settings: MeshSettings) -> KeyValue:
    """The registry bucket as the admin made it (no declaration).

    Raises:
        NotProvisioned: there is no such bucket.
    """
    try:
        return await js.key_value(settings.registry_bucket)
    except (NotFoundError, BadRequestError):
        raise NotProvisioned(
            f"no registry bucket {settings.registry_bucket!r} on the server; {PROVISION_HINT}"
        ) from None


async def bind_consumers(js: JetStreamContext, settings: MeshSettings, agent: str) -> None:
    """Check that ``agent``'s consumers (tasks, advisories) exist (no declaration).

    Raises:
        NotProvisioned: a stream or consumer is missing.
    """
    for stream in (settings.tasks_stream, advisories_stream(settings)):
        try:
            await js.consumer_info(stream, agent)
        except NotFoundError:
            raise NotProvisioned(
                f"no consumer {agent!r} on stream {stream!r} (or no such stream); {PROVISION_HINT}"
            ) from None
