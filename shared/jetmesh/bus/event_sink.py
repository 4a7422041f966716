"""Publishing events without holding up the work they describe.

Events go to JetStream asynchronously: the handler does not wait for the stream's ack,
but the sink does. An event whose ack fails or does not come in time is published again
with the same ``Nats-Msg-Id``, so the stream stores it once. ``flush`` waits for every
outstanding event; replicas flush before they exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from nats.js import JetStreamContext

log = logging.getLogger("jetmesh.events")

ACK_TIMEOUT_S = 5.0
SWEEP_INTERVAL_S = 0.5
MAX_ATTEMPTS = 20


@dataclass
class _Pending:
    subject: str
    data: bytes
    headers: dict[str, str]
    deadline: float
    attempts: int = 1
    future: asyncio.Future[object] | None = field(default=None, repr=False)


class EventSink:
    """Asynchronous, acknowledged, retried publishing of event messages."""

    def __init__(self, js: JetStreamContext, *, max_pending: int = 4000) -> None:
        self._js = js
        self._pending: dict[str, _Pending] = {}
        self._room = asyncio.Semaphore(max_pending)
        self._sweeper: asyncio.Task[None] | None = None
        self.dropped = 0

    async def publish(
        self, msg_id: str, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        """Send one event; returns once it is on the wire (not yet acknowledged)."""
        await self._room.acquire()
        entry = _Pending(subject, data, headers, time.monotonic() + ACK_TIMEOUT_S)
        self._pending[msg_id] = entry
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="jetmesh-event-sweeper")
        await self._send(msg_id, entry)

    async def _send(self, msg_id: str, entry: _Pending) -> None:
        try:
            future = await self._js.publish_async(entry.subject, entry.data, headers=entry.headers)
        except Exception as exc:  # disconnected: the sweeper tries again
            log.debug("event %s not sent: %s", msg_id, exc)
            entry.future = None
            return
        entry.future = future
        future.add_done_callback(lambda f: self._settled(msg_id, f))

    def _settled(self, msg_id: str, future: asyncio.Future[object]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the sweeper re-sends it
        if self._pending.pop(msg_id, None) is not None:
            self._room.release()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            await self._resend_overdue()

    async def _resend_overdue(self) -> None:
        now = time.monotonic()
        for msg_id, entry in list(self._pending.items()):
            future = entry.future
            failed = future is None or (future.done() and future.exception() is not None)
            if not failed and entry.deadline > now:
                continue
            if future is not None and not future.done():
                future.cancel()
            if entry.attempts >= MAX_ATTEMPTS:
                log.error(
                    "event %s on %s dropped after %d attempts",
                    msg_id,
                    entry.subject,
                    entry.attempts,
                )
                self.dropped += 1
                del self._pending[msg_id]
                self._room.release()
                continue
            entry.attempts += 1
            entry.deadline = now + ACK_TIMEOUT_S
            await self._send(msg_id, entry)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event is acknowledged; False if some are still pending."""
        end = time.monotonic() + timeout
        while self._pending and time.monotonic() < end:
            await asyncio.sleep(0.01)
            if any(e.future is None or e.future.done() for e in self._pending.values()):
                await self._resend_overdue()
        return not self._pending

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the sweeper. Idempotent."""
        done = await self.flush(timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        return done
