"""A continuous pull consumer: keeps credit with the server so tasks stream in.

``fetch()`` in nats-py asks and waits, one batch at a time; under load that leaves the
replica idle between batches. :class:`PullFeed` instead keeps up to ``capacity`` messages
requested at all times (pull requests on a private inbox, with an expiry), topping up when
half the credit is used, and hands every message to a callback as it arrives. Credit is
given back when the handler finishes (:meth:`release`), so a replica never runs more than
``capacity`` tasks: backpressure reaches the stream, never drops.

The server serves the waiting pull requests of all clients round robin, so which of this
client's requests a message answers is unknown; what is still owed is counted as a total
(asked, minus received, minus what each ended request reports undelivered in its
``Nats-Pending-Messages`` status header).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("jetmesh.bus")

PULL_EXPIRES_S = 5.0
CHECK_INTERVAL_S = 0.5
STATUS_HEADER = "Status"
PENDING_HEADER = "Nats-Pending-Messages"


class PullFeed:
    """Streams messages of one durable consumer to ``on_message``, at most ``capacity``
    unfinished at a time."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        on_message: Callable[[Msg], None],
        *,
        capacity: int,
        api_prefix: str = "$JS.API",
    ) -> None:
        self._nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._on_message = on_message
        self.capacity = capacity
        self.busy = 0
        """Messages handed out and not yet released."""
        self._pulls: collections.deque[tuple[float, int]] = collections.deque()
        """Outstanding pull requests, oldest first: (deadline, batch)."""
        self._owed = 0
        """Messages the outstanding requests may still bring, in total."""
        self._held: collections.deque[Msg] = collections.deque()
        """Messages that came beyond ``capacity``, waiting for a free slot."""
        self._inbox = ""
        self._sub: Subscription | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._paused = False

    @property
    def requested(self) -> int:
        return self._owed

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._receive)
        self._ticker = asyncio.create_task(self._tick(), name="pull-ticker")
        await self._top_up()

    async def _receive(self, msg: Msg) -> None:
        if not msg.data and msg.headers and STATUS_HEADER in msg.headers:
            self._on_status(msg)
            await self._top_up()
            return
        self._owed = max(self._owed - 1, 0)
        if self._paused:  # draining: give it straight back for another replica
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        if self.busy >= self.capacity:
            # More arrived than asked for (pulls renewed after a reconnect while the old
            # ones were still served): keep it, alive, until a slot frees. A nak would send
            # it straight back here when no other replica is asking, and use up its
            # deliveries in milliseconds.
            self._held.append(msg)
            return
        self.busy += 1
        self._on_message(msg)

    def _on_status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(STATUS_HEADER, "")
        if status not in ("404", "408", "409") or not self._pulls:
            return
        pending = headers.get(PENDING_HEADER, "")
        if pending.isdigit():  # a request ended (expired) with this many undelivered
            self._pulls.popleft()  # (requests expire in the order they were made)
            self._owed = max(self._owed - int(pending), 0)
        else:  # a request refused as it arrived: the last one made
            _, batch = self._pulls.pop()
            self._owed = max(self._owed - batch, 0)
        if status == "409":
            log.debug("pull refused: %s", headers.get("Description", ""))

    def release(self) -> None:
        """A message handed out is finished; its credit may be requested again."""
        if self._held and not self._paused:
            self._on_message(self._held.popleft())  # the slot goes to a held message
            return
        self.busy -= 1
        if not self._paused and self.capacity - self.busy - self.requested >= self.capacity // 2:
            asyncio.get_running_loop().create_task(self._top_up())

    async def _top_up(self) -> None:
        if self._paused or self._sub is None:
            return
        want = self.capacity - self.busy - self.requested
        if want <= 0 or (self._pulls and want < self.capacity // 2):
            return
        expires = time.monotonic() + PULL_EXPIRES_S
        self._pulls.append((expires, want))
        self._owed += want
        request = {"batch": want, "expires": int(PULL_EXPIRES_S * 1e9)}
        try:
            await self._nc.publish(
                self._next_subject, msgspec.json.encode(request), reply=self._inbox
            )
        except Exception as exc:  # disconnected: the ticker asks again
            log.debug("pull request failed: %s", exc)
            self._pulls.pop()
            self._owed -= want

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            now = time.monotonic()
            while self._pulls and self._pulls[0][0] < now - 1.0:
                self._pulls.popleft()  # served in full, or expired without a status
            if not self._pulls:
                self._owed = 0  # every request is over
            for msg in self._held:
                with contextlib.suppress(Exception):
                    await msg.in_progress()
            await self._top_up()

    async def renew(self) -> None:
        """Forget outstanding pull requests and ask again: after a reconnect the server
        may no longer hold them (it restarted, or this client's connection changed)."""
        self._pulls.clear()
        self._owed = 0
        await self._top_up()

    async def stop(self, grace_s: float = 0.2) -> None:
        """Stop asking for messages; nak those still arriving for ``grace_s``, then
        unsubscribe. Idempotent."""
        self._paused = True
        while self._held:
            with contextlib.suppress(Exception):
                await self._held.popleft().nak()
        if self._sub is not None and self._pulls:
            await asyncio.sleep(grace_s)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
