"""Group commit: several messages for one stream stored with one fsync.

Messages for subjects under one of ``batch_prefixes`` (each prefix one
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

import abc
import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS

from .acks import Pending, PubAck

log = logging.getLogger("jetmesh.events")

SENDS_IN_FLIGHT = 1
"""Group commit: the committer's sends (a message alone, or a batch) unacknowledged at
most; what comes meanwhile queues and goes as one batch. One: a stream stores its
messages one after the other anyway, and the fewer batches, the larger (measured: 1 gave
the signed hop 1.07-1.21 of the durable floor where 4 gave 0.92-0.98)."""
MIN_BATCH = 16
"""Fewer queued messages than this go each alone, all at once (one send, its slot freed by
the last ack): an atomic batch costs the server about five synced writes of its own (its
staging store, made and removed for the batch) besides the one fsync of the stream it
shares. Counted in fsyncs, a batch pays from six messages; counted in the server's CPU,
which is what runs out when the cores are busy, from more (measured: 16 instead of 6
took a fifth off nats-server's CPU per workflow in the flows, and the signed hop at 64 in
flight, whose queues are longer, went no slower; docs/durability.md#group-commit)."""
MAX_BATCH = 256
"""The most messages in one atomic batch (the server's limit is 1,000)."""
ATOMIC_DISABLED = 10174
"""The stream's error code for "atomic publish is disabled"."""
COMMITTER_RETRY_S = 0.1
"""How long a committer whose send failed unexpectedly waits before trying its queue again."""


@dataclass(slots=True)
class Queued:
    """A message waiting for its group's committer: one sent without waiting (its id in
    ``_pending``) or an awaited publish (its ``waiter`` gets the ack, or None: send it
    alone)."""

    subject: str
    data: bytes
    headers: dict[str, str]
    msg_id: str = ""
    waiter: asyncio.Future[PubAck | None] | None = None
    token: str = ""


@dataclass(slots=True)
class Hold:
    """A committer's send unacknowledged: its slot, freed once none of its messages'
    acks is still to come (a batch: one; messages each alone: one per message)."""

    group: Group
    deadline: float
    acks: int = 1

    def settle(self) -> None:
        """One of its acks came (or will not come): the last frees the slot."""
        self.acks -= 1
        if self.acks == 0:
            self.group.slots.release()


@dataclass
class Group:
    """One stream's group commit: its subjects' prefix, queue, slots and committer."""

    prefix: str
    slots: asyncio.Semaphore
    queue: deque[Queued] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    atomic: bool = True
    """Atomic batches in use: until the stream says atomic publish is off."""
    task: asyncio.Task[None] | None = None


class GroupCommit(abc.ABC):
    """The group commits of a :class:`~jetmesh.bus.publisher.StreamPublisher`: one queue
    and committer per stream (``_groups``), sending on the publisher's connection with
    acks to its inbox."""

    _nc: NATS
    _prefix: str
    """The publisher's inbox prefix: an ack's subject is this and its token."""
    _counter: int
    _pending: dict[str, Pending]
    _by_token: dict[str, str]
    """A publish_later message's ack token: its message id."""
    _room: asyncio.Semaphore
    _waiters: dict[str, asyncio.Future[PubAck | None]]
    _groups: list[Group]
    _holding: dict[str, Hold]
    """The committers' messages unacknowledged (an ack's token: the send it is of)."""
    _batches: dict[str, list[Queued]]
    """An atomic batch's commit token: the messages in it."""
    _watched: dict[str, asyncio.Future[None]]
    """publish_later messages someone waits for (``stored``): done when they leave
    ``_pending``."""
    batches: int
    """Atomic batches stored (for tests and benchmarks)."""
    refused_batches: int
    """Atomic batches the stream refused, their messages sent again one by one."""

    @abc.abstractmethod
    def _ack_deadline(self) -> float:
        """When an ack sent now is overdue."""

    @abc.abstractmethod
    def _expect_ack(
        self, future: asyncio.Future[PubAck | None], subject: str, then: str
    ) -> asyncio.Future[PubAck | None]:
        """``future``, given None if its ack has not come in time."""

    @abc.abstractmethod
    async def _send(self, msg_id: str, entry: Pending, *, hold: Hold | None = None) -> None:
        """Publish ``entry`` alone."""

    def _group_of(self, subject: str) -> Group | None:
        """The group commit ``subject`` goes through, if any still batches."""
        for group in self._groups:
            if subject.startswith(group.prefix):
                return group if group.atomic and group.task is not None else None
        return None

    async def _through_group(
        self, group: Group, subject: str, data: bytes, headers: dict[str, str]
    ) -> PubAck | None:
        """Queue an awaited publish for ``group``'s committer; its ack, or None (its batch
        refused, or no ack within ACK_TIMEOUT_S): send it alone."""
        future: asyncio.Future[PubAck | None] = asyncio.get_running_loop().create_future()
        item = Queued(subject, data, headers, waiter=future)
        group.queue.append(item)
        group.wake.set()
        try:
            return await self._expect_ack(future, subject, "sending it alone")
        finally:
            if not future.done():
                future.cancel()  # the committer skips it if it is still queued
            self._waiters.pop(item.token, None)

    def _live(self, item: Queued) -> bool:
        """Still to be sent: its waiter has not given up, or it is still pending."""
        if item.waiter is not None:
            return not item.waiter.done()
        return item.msg_id in self._pending

    async def _commit(self, group: Group) -> None:
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
                await asyncio.sleep(COMMITTER_RETRY_S)

    async def _send_queued(self, group: Group) -> None:
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

    async def _send_few(self, items: list[Queued], group: Group) -> None:
        """Send ``items`` each alone, at once, as one send of ``group``'s: the server
        stores them one after the other either way, and none waits for the ack of the one
        before it (a caller's small fan-out, an idle process's events)."""
        hold = Hold(group, self._ack_deadline(), acks=len(items))
        for item in items:
            await self._send_alone(item, hold)

    async def _send_alone(self, item: Queued, hold: Hold) -> None:
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

    async def _send_each_alone(self, items: list[Queued]) -> None:
        """Each of ``items`` again on its own: a publish_later one sent now, an awaited
        one told to (its waiter gets None)."""
        for item in items:
            if item.waiter is not None:
                if not item.waiter.done():
                    item.waiter.set_result(None)
            elif (entry := self._pending.get(item.msg_id)) is not None:
                await self._send(item.msg_id, entry)

    async def _send_batch(self, items: list[Queued], group: Group) -> None:
        """Publish ``items`` as one atomic batch; its commit's ack answers for all."""
        items = [item for item in items if self._live(item)]  # a waiter may have given up
        if not items:
            group.slots.release()
            return
        self._counter += 1
        token = f"b{self._counter}"
        batch_id = secrets.token_urlsafe(12)  # unguessable: nobody else can join the batch
        deadline = self._ack_deadline()
        self._batches[token] = items
        self._holding[token] = Hold(group, deadline)
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
                    entry.mark_failed()
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

    def _settled(self, msg_id: str) -> None:
        """``msg_id`` is no longer pending (stored, or given up on): its room freed, a wait
        for it woken."""
        if self._pending.pop(msg_id, None) is None:
            return
        self._room.release()
        watcher = self._watched.pop(msg_id, None)
        if watcher is not None and not watcher.done():
            watcher.set_result(None)

    def _release(self, token: str) -> None:
        """``token``'s ack came or will not: one less for its committer's send, if any."""
        hold = self._holding.pop(token, None)
        if hold is not None:
            hold.settle()

    async def _on_batch_ack(self, items: list[Queued], ack: PubAck) -> None:
        if ack.error is None and ack.stream:
            self.batches += 1
            for item in items:
                if item.waiter is not None:
                    if not item.waiter.done():
                        item.waiter.set_result(ack)
                else:
                    self._settled(item.msg_id)
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
