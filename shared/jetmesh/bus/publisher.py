"""Publishing to JetStream with acknowledgements, awaited or in the background.

Every message is published with a reply subject under one private inbox of this client;
the stream's ack arrives there. :meth:`StreamPublisher.publish` waits for it (tasks: the
caller must know the task is stored). :meth:`StreamPublisher.publish_later` does not hold
up the caller (events): an event whose ack reports an error or does not come in time is
published again with the same ``Nats-Msg-Id``, so the stream stores it once, and ``flush``
waits for every outstanding one; clients flush before they close.

One inbox subscription and a small JSON decode per ack, instead of a request (inbox,
future and timer) per message.

Group commit (:mod:`jetmesh.bus.group_commit`): messages for subjects under one of
``batch_prefixes`` queue per stream and go, while the server is busy, as one JetStream
atomic batch, stored with one fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._exceptions import PublishFailed
from .acks import Pending, PubAck, decode_ack
from .group_commit import SENDS_IN_FLIGHT, Group, GroupCommit, Hold, Queued

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
MAX_ATTEMPTS = 150
"""A message of :meth:`StreamPublisher.publish_later` the stream did not store goes again
after a backoff (:class:`jetmesh.bus.acks.Pending`, up to a second between tries, checked
every SWEEP_INTERVAL_S): MAX_ATTEMPTS failed tries span about two and a half minutes, far
longer than a cluster's election or a server's restart, before it is dropped (logged)."""
MAX_PENDING = 10_000


class StreamPublisher(GroupCommit):
    """Acknowledged publishing to JetStream streams over one connection."""

    def __init__(
        self,
        nc: NATS,
        *,
        max_pending: int = MAX_PENDING,
        batch_prefixes: tuple[str, ...] = (),
        sends_in_flight: int = SENDS_IN_FLIGHT,
    ) -> None:
        """
        Args:
            nc: The connection.
            max_pending: Messages of :meth:`publish_later` not yet stored, at most (one
                more waits).
            batch_prefixes: Subjects starting with one of them go through its group
                commit; all of a prefix's subjects must be in one stream that allows
                atomic publish. Empty: every message alone.
            sends_in_flight: Each group commit's sends unacknowledged at most.
        """
        self._nc = nc
        self._pending: dict[str, Pending] = {}
        self._room = asyncio.Semaphore(max_pending)
        self._prefix = ""
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._by_token: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[PubAck | None]] = {}
        self.dropped = 0
        self._groups = [
            Group(prefix, asyncio.Semaphore(sends_in_flight)) for prefix in batch_prefixes
        ]
        self._holding: dict[str, Hold] = {}
        self._batches: dict[str, list[Queued]] = {}
        self._watched: dict[str, asyncio.Future[None]] = {}
        self.batches = 0
        self.refused_batches = 0
        self._expiring: deque[tuple[float, asyncio.Future[PubAck | None], str, str]] = deque()
        """Awaited publishes' acks by when they are due (ACK_TIMEOUT_S after each was
        made, so in order): the sweeper gives each one not come by then None. One timer
        for all, where a timeout each cost the hop's caller about 2% of its CPU."""

    async def start(self) -> None:
        inbox = self._nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await self._nc.subscribe(inbox + ".*", cb=self._on_ack)
        self._sweeper = asyncio.create_task(self._sweep(), name="jetmesh-event-sweeper")
        for group in self._groups:
            group.task = asyncio.create_task(self._commit(group), name="jetmesh-group-commit")

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
        that retries on its own schedule, as dead-lettering does). A message of a group
        commit goes first with its group; if its batch is refused, again alone.

        Raises:
            PublishFailed: the stream answered with an error, or no stream took ``subject``
                for ``no_stream_s``.
        """
        no_stream_since: float | None = None
        group = self._group_of(subject)
        while True:
            if group is not None:
                ack = await self._through_group(group, subject, data, headers)
                group = None  # from now on alone
            else:
                ack = await self._publish_once(subject, data, headers)
            if ack is None:  # no ack in time, or its batch refused: send it again
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
    ) -> PubAck | None:
        """One publish and its ack; None if the ack did not come within ACK_TIMEOUT_S."""
        self._counter += 1
        token = f"w{self._counter}"
        future: asyncio.Future[PubAck | None] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            return await self._expect_ack(future, subject, "sending it again")
        finally:
            self._waiters.pop(token, None)

    def _ack_deadline(self) -> float:
        return time.monotonic() + ACK_TIMEOUT_S

    def _expect_ack(
        self, future: asyncio.Future[PubAck | None], subject: str, then: str
    ) -> asyncio.Future[PubAck | None]:
        """``future``, given None by the sweeper (logged with what happens ``then``) if its
        ack has not come within ACK_TIMEOUT_S (None also: its batch refused)."""
        self._expiring.append((time.monotonic() + ACK_TIMEOUT_S, future, subject, then))
        return future

    def _expire_waiters(self, now: float) -> None:
        """Give every awaited publish whose ack is overdue None (see :meth:`_expect_ack`)."""
        expiring = self._expiring
        while expiring and expiring[0][0] <= now:
            _, future, subject, then = expiring.popleft()
            if not future.done():
                log.warning(
                    "no ack for a publish on %s in %.0f s: %s", subject, ACK_TIMEOUT_S, then
                )
                future.set_result(None)

    async def publish_later(
        self, msg_id: str, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        """Send one message without waiting for its ack (it is retried until stored); one
        under a batch prefix goes through its group commit."""
        await self._room.acquire()
        entry = Pending(subject, data, headers, time.monotonic() + ACK_TIMEOUT_S)
        self._pending[msg_id] = entry
        group = self._group_of(subject)
        if group is not None:
            entry.queued = True
            group.queue.append(Queued(subject, data, headers, msg_id=msg_id))
            group.wake.set()
            return
        await self._send(msg_id, entry)

    async def _send(self, msg_id: str, entry: Pending, *, hold: Hold | None = None) -> None:
        """Publish ``entry`` alone; with ``hold``, its ack is one its committer's send waits
        for."""
        self._counter += 1
        token = str(self._counter)
        self._by_token[token] = msg_id
        entry.failed = entry.queued = False
        entry.deadline = time.monotonic() + ACK_TIMEOUT_S
        if hold is not None:
            self._holding[token] = hold
        try:
            await self._nc.publish(
                entry.subject, entry.data, reply=self._prefix + token, headers=entry.headers
            )
        except Exception as exc:  # disconnected: the sweeper tries again
            log.debug("event %s not sent: %s", msg_id, exc)
            entry.mark_failed()
            self._release(token)

    # -- acks --------------------------------------------------------------------------------

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        self._release(token)
        waiter = self._waiters.pop(token, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(decode_ack(msg))
            return
        batch = self._batches.pop(token, None)
        if batch is not None:
            await self._on_batch_ack(batch, decode_ack(msg))
            return
        msg_id = self._by_token.pop(token, None)
        if msg_id is None:
            return
        entry = self._pending.get(msg_id)
        if entry is None:
            return
        ack = decode_ack(msg)
        if ack.error is not None or not ack.stream:
            entry.mark_failed()  # includes "no responders": no stream (yet)
            return
        self._settled(msg_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            await self._resend_overdue()

    async def _resend_overdue(self) -> None:
        now = time.monotonic()
        self._expire_waiters(now)
        for token in [t for t, hold in self._holding.items() if hold.deadline <= now]:
            self._batches.pop(token, None)  # its messages are overdue too: sent alone
            self._release(token)
        for msg_id, entry in list(self._pending.items()):
            if entry.queued or entry.deadline > now:  # not sent yet, or its time not come
                continue
            if entry.attempts >= MAX_ATTEMPTS:
                log.error(
                    "event %s on %s dropped after %d attempts",
                    msg_id,
                    entry.subject,
                    entry.attempts,
                )
                self.dropped += 1
                self._settled(msg_id)
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

    def on_their_way(self, msg_ids: Iterable[str]) -> list[tuple[str, Pending]]:
        """Those of ``msg_ids`` (of :meth:`publish_later`) not stored yet, with what was
        published: to be kept elsewhere, in case this process dies with them."""
        return [(m, entry) for m in msg_ids if (entry := self._pending.get(m)) is not None]

    async def stored(self, msg_ids: Iterable[str], timeout: float) -> bool:
        """Wait until none of ``msg_ids`` (of :meth:`publish_later`) is pending: each stored,
        or given up on after :data:`MAX_ATTEMPTS` (logged); False if some still are at
        ``timeout``. Those already stored cost nothing."""
        waits = []
        for msg_id in msg_ids:
            if msg_id in self._pending:
                watcher = self._watched.get(msg_id)
                if watcher is None:
                    watcher = self._watched[msg_id] = asyncio.get_running_loop().create_future()
                waits.append(watcher)
        if not waits:
            return True
        _, not_yet = await asyncio.wait(waits, timeout=timeout)
        return not not_yet

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event is stored; False if some are still pending at timeout,
        or at once when the connection is closed (nothing more can be sent)."""
        end = time.monotonic() + timeout
        while self._pending and time.monotonic() < end and not self._nc.is_closed:
            await asyncio.sleep(0.01)
            if any(e.failed for e in self._pending.values()):
                await self._resend_overdue()
        return not self._pending

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the sweeper, the committers and the ack subscription.
        Idempotent."""
        done = await self.flush(timeout) if self._sub is not None else True
        tasks = [self._sweeper, *(group.task for group in self._groups)]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = None
        for group in self._groups:
            group.task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        return done
