"""Consumer lag: how far a role's durable consumer is behind its tasks, read from the
JetStream consumer info (``num_pending``: stored tasks not yet delivered;
``num_ack_pending``: delivered, not yet acknowledged).

A replica reads its own role's consumer every :data:`LAG_INTERVAL_S` in the background,
off the path of a task, and keeps the last reading. The service API's STATS answer
(:mod:`jetmesh.runtime.discovery`) and the OpenTelemetry observable gauge
``jetmesh.consumer.lag`` (attribute ``jetmesh.role``) show that reading. A role's NATS user
may read its own consumers' info and no other's (``$JS.API.CONSUMER.INFO.<stream>.<role>``,
:mod:`jetmesh.policy.derive`). The figures are informational: nothing decides on them.

Example:
    >>> watch = LagWatch(nc.jetstream(), "MESH_TASKS", "kb")     # doctest: +SKIP
    >>> await watch.start()                                       # doctest: +SKIP
    >>> watch.last                                                # doctest: +SKIP
    Lag(pending=0, ack_pending=0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from nats.js.client import JetStreamContext
from opentelemetry import metrics

log = logging.getLogger("jetmesh.lag")

LAG_INTERVAL_S = 2.0
"""How often a replica reads its role's consumer info."""

GAUGE_NAME = "jetmesh.consumer.lag"
"""The observable gauge of the messages not yet delivered to a role's consumer."""


@dataclass(frozen=True)
class Lag:
    """One reading of a consumer's info."""

    pending: int
    """Stored messages not yet delivered (``num_pending``)."""
    ack_pending: int
    """Delivered, not yet acknowledged (``num_ack_pending``)."""


class LagWatch:
    """Reads one consumer's lag every ``interval_s`` from :meth:`start` to :meth:`stop`.

    A failed read (no permission, the server away) leaves :attr:`last` as it was, or
    None until one succeeds, and is logged at debug level.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        consumer: str,
        *,
        interval_s: float = LAG_INTERVAL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.js = js
        self.stream = stream
        self.consumer = consumer
        self.interval_s = interval_s
        self.last: Lag | None = None
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> Lag | None:
        """Read the consumer's info now; the reading, or None if it failed."""
        try:
            info = await self.js.consumer_info(self.stream, self.consumer, timeout=2.0)
        except Exception as exc:  # informational: a failed read never hurts the replica
            log.debug("consumer info of %s/%s not read: %s", self.stream, self.consumer, exc)
            return None
        self.last = Lag(pending=info.num_pending or 0, ack_pending=info.num_ack_pending or 0)
        return self.last

    async def _loop(self) -> None:
        while True:
            await self.read()
            await asyncio.sleep(self.interval_s)

    async def start(self) -> None:
        """Read now and every ``interval_s`` from now on. Idempotent."""
        if self._task is not None:
            return
        _gauge()
        _watches.add(self)
        self._task = asyncio.create_task(self._loop(), name=f"lag {self.consumer}")

    async def stop(self) -> None:
        """Stop reading (the gauge no longer reports this consumer). Idempotent."""
        _watches.discard(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


_watches: weakref.WeakSet[LagWatch] = weakref.WeakSet()
"""The running watches of this process, which the gauge's callback reads."""

_gauge_made = False


def observations() -> dict[str, int]:
    """Each watched role's last ``pending`` reading in this process (replicas of one role
    read the same consumer: the larger reading wins)."""
    out: dict[str, int] = {}
    for watch in list(_watches):
        if watch.last is not None:
            out[watch.consumer] = max(out.get(watch.consumer, 0), watch.last.pending)
    return out


def observe(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    """The gauge's callback: one observation per watched role, attribute ``jetmesh.role``."""
    return [metrics.Observation(v, {"jetmesh.role": r}) for r, v in observations().items()]


def _gauge() -> None:
    """Register ``jetmesh.consumer.lag`` once per process, through the global API: the
    provider the process installs (now or later) calls :func:`observe` when it collects."""
    global _gauge_made
    if _gauge_made:
        return
    _gauge_made = True
    metrics.get_meter("jetmesh").create_observable_gauge(
        GAUGE_NAME,
        callbacks=[observe],
        unit="{message}",
        description="Tasks stored for a role's consumer and not yet delivered",
    )
