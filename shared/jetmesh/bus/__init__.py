"""The bus: NATS connection, JetStream streams and consumers, the key registry, events.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> nc = await connect(settings.nats_url, "kb")                  # doctest: +SKIP
    >>> consumer = await ensure_consumer(nc.jetstream(), settings, "kb")    # doctest: +SKIP
"""

from .connection import connect
from .delivery import Delivery, delivery_of
from .direct import Stored, read_from
from .publisher import StreamPublisher
from .pull import PullFeed
from .streams import (
    TaskConsumer,
    bind_registry,
    ensure_consumer,
    ensure_registry,
    stream_configs,
    through_elections,
)
from .tracing import TRACEPARENT_HEADER, trace_id_of, traceparent

__all__ = [
    "TRACEPARENT_HEADER",
    "Delivery",
    "PullFeed",
    "Stored",
    "StreamPublisher",
    "TaskConsumer",
    "bind_registry",
    "connect",
    "delivery_of",
    "ensure_consumer",
    "ensure_registry",
    "read_from",
    "stream_configs",
    "through_elections",
    "trace_id_of",
    "traceparent",
]
