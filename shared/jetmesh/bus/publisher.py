"""Publishing to JetStream with acknowledgements, awaited or in the background.

Every message is published with a reply subject under one private inbox of this client;
the stream's ack arrives there. :meth:`StreamPublisher.publish` waits for it (tasks: the
caller must know the task is stored). :meth:`StreamPublisher.publish_later` does not hold
up the caller (events): an event whose ack reports an error or does not come in time is
published again with the same ``Nats-Msg-Id``, so the stream stores it once, and ``flush``
waits for every outstanding one; clients flush before they close.

One inbox subscription and a small JSON decode per ack, instead of a request (inbox,
future and timer) per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._exceptions import PublishFailed

log = logging.getLogger("jetmesh.events")

ACK_TIMEOUT_S = 5.0
"""A publish whose ack does not come in this time is sent again (same ``Nats-Msg-Id``)."""
NO_STREAM_S = 15.0
"""How long "no responders" is asked again before a publish fails: JetStream may still be
starting after a restart, or, in a cluster, the stream's peers electing a new leader after
its node died (nats-server's election timeouts are 4-9 s); a subject no stream takes
fails after this."""
NO_STREAM_RETRY_S = 0.1
SWEEP_INTERVAL_S = 0.5
MAX_ATTEMPTS = 20
MAX_PENDING = 10_000


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)


@dataclass(slots=True)
class _Pending:
    subject: str
    data: bytes
    headers: dict[str, str]
    deadline: float
    attempts: int = 1
    failed: bool = False


class StreamPublisher:
    """Acknowledged publishing to JetStream streams over one connection."""

    def __init__(self, nc: NATS, *, max_pending: int = MAX_PENDING) -> None:
        self._nc = nc
        self._pending: dict[str, _Pending] = {}
        self._room = asyncio.Semaphore(max_pending)
        self._prefix = ""
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._by_token: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[_PubAck]] = {}
        self.dropped = 0

    async def start(self) -> None:
        inbox = self._nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await self._nc.subscribe(inbox + ".*", cb=self._on_ack)
        self._sweeper = asyncio.create_task(self._sweep(), name="jetmesh-event-sweeper")

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        no_stream_s: float = NO_STREAM_S,
    ) -> None:
        """Publish and wait until the stream has stored the message (or had it already:
        a duplicate ``Nats-Msg-Id`` counts as stored). Bound it with ``asyncio.timeout``.

        A message whose ack does not come within :data:`ACK_TIMEOUT_S` (nats-server died
        before storing it, or the connection dropped with it unsent) is published again
        with the same headers, so the same ``Nats-Msg-Id``: the stream stores it once.
        "No responders" (no stream takes ``subject``, or JetStream is still starting after
        a restart) is asked again for up to ``no_stream_s`` (0: fail at once, for a caller
        that retries on its own schedule, as dead-lettering does).

        Raises:
            PublishFailed: the stream answered with an error, or no stream took ``subject``
                for ``no_stream_s``.
        """
        no_stream_since: float | None = None
        while True:
            ack = await self._publish_once(subject, data, headers)
            if ack is None:  # no ack in time: send it again
                continue
            if ack.error is not None:
                raise PublishFailed(f"{subject}: {ack.error}")
            if ack.stream:
                return
            now = time.monotonic()
            no_stream_since = no_stream_since if no_stream_since is not None else now
            if now - no_stream_since >= no_stream_s:
                raise PublishFailed(f"{subject}: no stream answered")
            await asyncio.sleep(NO_STREAM_RETRY_S)

    async def _publish_once(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> _PubAck | None:
        """One publish and its ack; None if the ack did not come within ACK_TIMEOUT_S."""
        self._counter += 1
        token = f"w{self._counter}"
        future: asyncio.Future[_PubAck] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            async with asyncio.timeout(ACK_TIMEOUT_S):
                return await future
        except TimeoutError:
            log.warning(
                "no ack for a publish on %s in %.0f s: sending it again", subject, ACK_TIMEOUT_S
            )
            return None
        finally:
            self._waiters.pop(token, None)

    async def publish_later(
        self, msg_id: str, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        """Send one message without waiting for its ack (it is retried until stored)."""
        await self._room.acquire()
        entry = _Pending(subject, data, headers, time.monotonic() + ACK_TIMEOUT_S)
        self._pending[msg_id] = entry
        await self._send(msg_id, entry)

    async def _send(self, msg_id: str, entry: _Pending) -> None:
        self._counter += 1
        token = str(self._counter)
        self._by_token[token] = msg_id
        entry.failed = False
        try:
            await self._nc.publish(
                entry.subject, entry.data, reply=self._prefix + token, headers=entry.headers
            )
        except Exception as exc:  # disconnected: the sweeper tries again
            log.debug("event %s not sent: %s", msg_id, exc)
            entry.failed = True

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        waiter = self._waiters.get(token)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(self._decode_ack(msg))
            return
        msg_id = self._by_token.pop(token, None)
        if msg_id is None:
            return
        entry = self._pending.get(msg_id)
        if entry is None:
            return
        ack = self._decode_ack(msg)
        if ack.error is not None or not ack.stream:
            entry.failed = True  # includes "no responders": no stream (yet)
            return
        del self._pending[msg_id]
        self._room.release()

    @staticmethod
    def _decode_ack(msg: Msg) -> _PubAck:
        """The stream's ack; an empty one (a "no responders" status) has no stream."""
        try:
            return _ack_decoder.decode(msg.data) if msg.data else _PubAck()
        except msgspec.DecodeError:
            return _PubAck(error={"description": "unreadable ack"})

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            await self._resend_overdue()

    async def _resend_overdue(self) -> None:
        now = time.monotonic()
        for msg_id, entry in list(self._pending.items()):
            if not entry.failed and entry.deadline > now:
                continue
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
        if len(self._by_token) > 4 * len(self._pending) + 1024:  # forget tokens of resends
            live = set(self._pending)
            self._by_token = {t: m for t, m in self._by_token.items() if m in live}

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event is stored; False if some are still pending at timeout."""
        end = time.monotonic() + timeout
        while self._pending and time.monotonic() < end:
            await asyncio.sleep(0.01)
            if any(e.failed for e in self._pending.values()):
                await self._resend_overdue()
        return not self._pending

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the sweeper and the ack subscription. Idempotent."""
        done = await self.flush(timeout) if self._sub is not None else True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        return done
