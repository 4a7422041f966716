"""Publishing to JetStream with acknowledgements, awaited or in the background.

Every message is published with a reply subject under one private inbox of this client;
the stream's ack arrives there. :meth:`StreamPublisher.publish` waits for it (tasks: the
caller must know the task is stored). :meth:`StreamPublisher.publish_later` does not hold
up the caller (events): an event whose ack reports an error or does not come in time is
published again with the same ``Nats-Msg-Id``, so the stream stores it once, and ``flush``
waits for every outstanding one; clients flush before they close.

One inbox subscription and a small JSON decode per ack, instead of a request (inbox,
future and timer) per message.

Group commit: messages for subjects under one of ``batch_prefixes`` (each prefix one
stream's subjects: a mesh's tasks, its events) queue per prefix, awaited or not, and one
committer per prefix sends them with at most :data:`SENDS_IN_FLIGHT` sends
unacknowledged: a few messages each alone (one after the other on the socket, as one
send) while the server keeps up, and what queued while it did not as one JetStream atomic
batch (``Nats-Batch-Id``; nats-server 2.12 and later, a stream with ``allow_atomic``).
With ``sync_interval: always`` nats-server stores a stream's messages one after the other
and fsyncs each one sent alone, but an atomic batch once for the whole batch, after a few
synced writes of the batch's own (docs/durability.md#group-commit): under load, the tasks
of many callers' requests and the events of many handlers share their fsyncs. A batch is
all or nothing; one the stream refuses (a duplicate message id inside it, too many
batches in flight, a stream limit, atomic publish off) is sent again one message at a
time, each with its own answer, as an unacknowledged one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

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
MAX_ATTEMPTS = 150
RETRY_FIRST_S = 0.25
RETRY_MOST_S = 1.0
"""A message of :meth:`StreamPublisher.publish_later` the stream did not store (no stream
answered, an error, a lost connection) goes again after RETRY_FIRST_S, twice that after
the next failure, and so on up to RETRY_MOST_S between tries (checked every
SWEEP_INTERVAL_S): MAX_ATTEMPTS failed tries span about two and a half minutes, far
longer than a cluster's election or a server's restart, before it is dropped (logged)."""
MAX_PENDING = 10_000
SENDS_IN_FLIGHT = 1
"""Group commit: the committer's sends (a message alone, or a batch) unacknowledged at
most; what comes meanwhile queues and goes as one batch. One: a stream stores its
messages one after the other anyway, and the fewer batches, the larger (measured: 1 gave
the signed hop 1.07-1.21 of the durable floor where 4 gave 0.92-0.98)."""
MIN_BATCH = 6
"""Fewer queued messages than this go each alone, all at once (one send, its slot freed by
the last ack): an atomic batch costs the server about five synced writes of its own (its
staging store) besides the one fsync of the stream it shares."""
MAX_BATCH = 256
"""The most messages in one atomic batch (the server's limit is 1,000)."""
ATOMIC_DISABLED = 10174
"""The stream's error code for "atomic publish is disabled"."""


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
    queued: bool = False
    """Waiting for the group commit: not sent yet, not the sweeper's to send."""


@dataclass(slots=True)
class _Queued:
    """A message waiting for its group's committer: one of :meth:`publish_later` (its id
    in ``_pending``) or an awaited :meth:`publish` (its ``waiter`` gets the ack, or None:
    send it alone)."""

    subject: str
    data: bytes
    headers: dict[str, str]
    msg_id: str = ""
    waiter: asyncio.Future[_PubAck | None] | None = None
    token: str = ""


@dataclass(slots=True)
class _Hold:
    """A committer's send unacknowledged: its slot, freed once none of its messages'
    acks is still to come (a batch: one; messages each alone: one per message)."""

    group: _Group
    deadline: float
    acks: int = 1

    def settle(self) -> None:
        """One of its acks came (or will not come): the last frees the slot."""
        self.acks -= 1
        if self.acks == 0:
            self.group.slots.release()


@dataclass
class _Group:
    """One stream's group commit: its subjects' prefix, queue, slots and committer."""

    prefix: str
    slots: asyncio.Semaphore
    queue: deque[_Queued] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    atomic: bool = True
    """Atomic batches in use: until the stream says atomic publish is off."""
    task: asyncio.Task[None] | None = None


class StreamPublisher:
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
        self._pending: dict[str, _Pending] = {}
        self._room = asyncio.Semaphore(max_pending)
        self._prefix = ""
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._by_token: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[_PubAck | None]] = {}
        self.dropped = 0
        self._groups = [
            _Group(prefix, asyncio.Semaphore(sends_in_flight)) for prefix in batch_prefixes
        ]
        self._holding: dict[str, _Hold] = {}
        """The committers' messages unacknowledged (an ack's token: the send it is of)."""
        self._batches: dict[str, list[_Queued]] = {}
        """An atomic batch's commit token: the messages in it."""
        self.batches = 0
        """Atomic batches stored (for tests and benchmarks)."""
        self.refused_batches = 0
        """Atomic batches the stream refused, their messages sent again one by one."""
        self._expiring: deque[tuple[float, asyncio.Future[_PubAck | None], str, str]] = deque()
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

    def _group_of(self, subject: str) -> _Group | None:
        """The group commit ``subject`` goes through, if any still batches."""
        for group in self._groups:
            if subject.startswith(group.prefix):
                return group if group.atomic and group.task is not None else None
        return None

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
    ) -> _PubAck | None:
        """One publish and its ack; None if the ack did not come within ACK_TIMEOUT_S."""
        self._counter += 1
        token = f"w{self._counter}"
        future: asyncio.Future[_PubAck | None] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            return await self._expect_ack(future, subject, "sending it again")
        finally:
            self._waiters.pop(token, None)

    async def _through_group(
        self, group: _Group, subject: str, data: bytes, headers: dict[str, str]
    ) -> _PubAck | None:
        """Queue an awaited publish for ``group``'s committer; its ack, or None (its batch
        refused, or no ack within ACK_TIMEOUT_S): send it alone."""
        future: asyncio.Future[_PubAck | None] = asyncio.get_running_loop().create_future()
        item = _Queued(subject, data, headers, waiter=future)
        group.queue.append(item)
        group.wake.set()
        try:
            return await self._expect_ack(future, subject, "sending it alone")
        finally:
            if not future.done():
                future.cancel()  # the committer skips it if it is still queued
            self._waiters.pop(item.token, None)

    def _expect_ack(
        self, future: asyncio.Future[_PubAck | None], subject: str, then: str
    ) -> asyncio.Future[_PubAck | None]:
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
        entry = _Pending(subject, data, headers, time.monotonic() + ACK_TIMEOUT_S)
        self._pending[msg_id] = entry
        group = self._group_of(subject)
        if group is not None:
            entry.queued = True
            group.queue.append(_Queued(subject, data, headers, msg_id=msg_id))
            group.wake.set()
            return
        await self._send(msg_id, entry)

    async def _send(self, msg_id: str, entry: _Pending, *, hold: _Hold | None = None) -> None:
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
            self._failed(entry)
            self._release(token)

    # -- group commit ----------------------------------------------------------------------

    def _live(self, item: _Queued) -> bool:
        """Still to be sent: its waiter has not given up, or it is still pending."""
        if item.waiter is not None:
            return not item.waiter.done()
        return item.msg_id in self._pending

    async def _commit(self, group: _Group) -> None:
        """Send what queues for ``group``: each alone while fewer than :data:`MIN_BATCH`
        wait, else up to :data:`MAX_BATCH` of them as one atomic batch; never more sends
        unacknowledged than its slots."""
        while True:
            await group.wake.wait()
            group.wake.clear()
            try:
                await self._send_queued(group)
            except Exception:  # never leave the queue without its committer
                log.exception("group commit of %s*: sending what queued failed", group.prefix)
                group.wake.set()
                await asyncio.sleep(NO_STREAM_RETRY_S)

    async def _send_queued(self, group: _Group) -> None:
        """Send ``group``'s queue until it is empty (the body of :meth:`_commit`)."""
        queue = group.queue
        while queue:
            await group.slots.acquire()
            while queue and not self._live(queue[0]):
                queue.popleft()
            if not queue:
                group.slots.release()
                break
            if not group.atomic:  # atomic publish is off: each alone, as it comes
                group.slots.release()
                await self._send_each_alone([queue.popleft() for _ in range(len(queue))])
                break
            if len(queue) < MIN_BATCH:
                await self._send_few([queue.popleft() for _ in range(len(queue))], group)
                continue
            count = min(len(queue), MAX_BATCH)
            await self._send_batch([queue.popleft() for _ in range(count)], group)

    async def _send_few(self, items: list[_Queued], group: _Group) -> None:
        """Send ``items`` each alone, at once, as one send of ``group``'s: the server
        stores them one after the other either way, and none waits for the ack of the one
        before it (a caller's small fan-out, an idle process's events)."""
        hold = _Hold(group, time.monotonic() + ACK_TIMEOUT_S, acks=len(items))
        for item in items:
            await self._send_alone(item, hold)

    async def _send_alone(self, item: _Queued, hold: _Hold) -> None:
        """Send one queued message alone, its ack one of those ``hold`` waits for."""
        if item.waiter is None:
            entry = self._pending.get(item.msg_id)
            if entry is None:
                hold.settle()
                return
            await self._send(item.msg_id, entry, hold=hold)
            return
        if item.waiter.done():  # its publish gave up meanwhile
            hold.settle()
            return
        self._counter += 1
        item.token = token = f"w{self._counter}"
        self._waiters[token] = item.waiter
        self._holding[token] = hold
        try:
            await self._nc.publish(
                item.subject, item.data, reply=self._prefix + token, headers=item.headers
            )
        except Exception as exc:  # disconnected: its publish sends it again
            log.debug("a publish on %s not sent: %s", item.subject, exc)
            self._release(token)
            if not item.waiter.done():
                item.waiter.set_result(None)

    async def _send_each_alone(self, items: list[_Queued]) -> None:
        """Each of ``items`` again on its own: a publish_later one sent now, an awaited
        one told to (its waiter gets None)."""
        for item in items:
            if item.waiter is not None:
                if not item.waiter.done():
                    item.waiter.set_result(None)
            elif (entry := self._pending.get(item.msg_id)) is not None:
                await self._send(item.msg_id, entry)

    async def _send_batch(self, items: list[_Queued], group: _Group) -> None:
        """Publish ``items`` as one atomic batch; its commit's ack answers for all."""
        items = [item for item in items if self._live(item)]  # a waiter may have given up
        if not items:
            group.slots.release()
            return
        self._counter += 1
        token = f"b{self._counter}"
        batch_id = secrets.token_urlsafe(12)  # unguessable: nobody else can join the batch
        deadline = time.monotonic() + ACK_TIMEOUT_S
        self._batches[token] = items
        self._holding[token] = _Hold(group, deadline)
        last = len(items)
        try:
            for n, item in enumerate(items, start=1):
                if (entry := self._pending.get(item.msg_id)) is not None:
                    entry.queued = entry.failed = False
                    entry.deadline = deadline
                headers = {**item.headers, "Nats-Batch-Id": batch_id}
                headers["Nats-Batch-Sequence"] = str(n)
                if n == last:
                    headers["Nats-Batch-Commit"] = "1"
                reply = self._prefix + token if n == last else ""
                await self._nc.publish(item.subject, item.data, reply=reply, headers=headers)
        except Exception as exc:  # disconnected: each one again alone
            log.debug("a batch of %d messages not sent: %s", last, exc)
            self._batches.pop(token, None)
            self._release(token)
            for item in items:
                if (entry := self._pending.get(item.msg_id)) is not None:
                    self._failed(entry)
                elif item.waiter is not None and not item.waiter.done():
                    item.waiter.set_result(None)

    async def reconnected(self) -> None:
        """The connection is back, maybe to another server: what the group commits had
        in flight may have gone with the old socket, so it goes again now, each message
        alone (the same message ids: stored once), instead of after its ack's timeout."""
        for token in list(self._holding):
            self._release(token)
            items = self._batches.pop(token, None)
            waiter = self._waiters.pop(token, None)
            if items is not None:
                await self._send_each_alone(items)
            elif waiter is not None and not waiter.done():
                waiter.set_result(None)
            else:
                msg_id = self._by_token.pop(token, "")
                if (entry := self._pending.get(msg_id)) is not None:
                    await self._send(msg_id, entry)

    def _release(self, token: str) -> None:
        """``token``'s ack came or will not: one less for its committer's send, if any."""
        hold = self._holding.pop(token, None)
        if hold is not None:
            hold.settle()

    async def _on_batch_ack(self, items: list[_Queued], ack: _PubAck) -> None:
        if ack.error is None and ack.stream:
            self.batches += 1
            for item in items:
                if item.waiter is not None:
                    if not item.waiter.done():
                        item.waiter.set_result(ack)
                elif self._pending.pop(item.msg_id, None) is not None:
                    self._room.release()
            return
        self.refused_batches += 1
        if ack.error is not None and ack.error.get("err_code") == ATOMIC_DISABLED:
            for group in self._groups:
                if group.atomic and items[0].subject.startswith(group.prefix):
                    log.warning("%s* do not allow atomic publish: sent one by one", group.prefix)
                    group.atomic = False
                    group.wake.set()
        log.debug("a batch of %d refused (%s): each sent again alone", len(items), ack.error)
        await self._send_each_alone(items)

    # -- acks --------------------------------------------------------------------------------

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        self._release(token)
        waiter = self._waiters.pop(token, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(self._decode_ack(msg))
            return
        batch = self._batches.pop(token, None)
        if batch is not None:
            await self._on_batch_ack(batch, self._decode_ack(msg))
            return
        msg_id = self._by_token.pop(token, None)
        if msg_id is None:
            return
        entry = self._pending.get(msg_id)
        if entry is None:
            return
        ack = self._decode_ack(msg)
        if ack.error is not None or not ack.stream:
            self._failed(entry)  # includes "no responders": no stream (yet)
            return
        del self._pending[msg_id]
        self._room.release()

    @staticmethod
    def _failed(entry: _Pending) -> None:
        """Mark ``entry`` not stored: the sweeper sends it again after its backoff."""
        entry.failed = True
        backoff = min(RETRY_FIRST_S * 2 ** (entry.attempts - 1), RETRY_MOST_S)
        entry.deadline = time.monotonic() + backoff

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
