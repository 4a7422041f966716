"""A task kept by the replica that takes its last delivery, for the max-deliveries path.

When a task runs out of deliveries without a handler failing cleanly (its replicas crashed
or stalled past AckWait), JetStream announces it with an advisory that names only its
stream sequence. A role may not read the tasks stream by sequence (that would let it read
every role's tasks), so the replica that starts a task's **last** delivery keeps the
task's bytes, its signature headers and when it was stored, in a Redis key of its own role
(``<prefix>:last:<agent>:<stream seq>``, see :mod:`jetmesh.memory.keys`), with a TTL as
long as the advisories are kept. The replica that handles the advisory reads it there,
dead-letters the task and deletes the key; a last delivery that ends (acked or
terminated) deletes it too. Earlier deliveries cost nothing.

Example:
    >>> kept = LastDeliveries(redis, "mesh", "billing", ttl_s=604800)  # doctest: +SKIP
    >>> await kept.keep(msg, stream_seq=42, stored_at=1.7e9)            # doctest: +SKIP
    >>> task = await kept.read(42)                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..dead_letters import KEPT_HEADERS, header_text
from ..identity.verifier import MSG_ID_HEADER
from ..memory import keys

log = logging.getLogger("jetmesh.runtime")


class KeptTask(msgspec.Struct, frozen=True):
    """A task as its last delivery brought it."""

    subject: str
    data: bytes
    headers: dict[str, str]
    """Its signature headers, trace context and ``Nats-Msg-Id``."""
    stored_at: float
    """When the tasks stream stored it (Unix time)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(KeptTask)


class LastDeliveries:
    """The last deliveries of one role's tasks, kept in that role's Redis keys."""

    def __init__(self, redis: Redis, prefix: str, agent: str, *, ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._agent = agent
        self._ttl_ms = max(1, int(ttl_s * 1000))

    def key(self, stream_seq: int) -> str:
        return keys.last_delivery(self._prefix, self._agent, stream_seq)

    async def keep(self, msg: Msg, *, stream_seq: int, stored_at: float) -> bool:
        """Keep ``msg`` (a task's last delivery); False when Redis did not take it (the
        advisory's handler then dead-letters a record naming the sequence instead)."""
        given = {name: header_text(value) for name, value in (msg.headers or {}).items()}
        headers = {n: given[n] for n in (*KEPT_HEADERS, MSG_ID_HEADER) if n in given}
        kept = KeptTask(msg.subject, msg.data, headers, stored_at)
        try:
            await self._redis.set(self.key(stream_seq), _encoder.encode(kept), px=self._ttl_ms)
        except RedisError as exc:
            log.warning("last delivery of task seq %d not kept: %s", stream_seq, exc)
            return False
        return True

    async def read(self, stream_seq: int) -> KeptTask | None:
        """The task kept for ``stream_seq``, or None (never kept, expired, unreadable).

        Raises:
            RedisError: Redis did not answer.
        """
        raw = await self._redis.get(self.key(stream_seq))
        if not isinstance(raw, bytes):  # absent (or a client decoding responses)
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            log.error("kept last delivery of task seq %d is unreadable", stream_seq)
            return None

    async def forget(self, stream_seq: int) -> None:
        """Delete what was kept for ``stream_seq`` (best effort: it expires anyway)."""
        with contextlib.suppress(RedisError):
            await self._redis.delete(self.key(stream_seq))

    @contextlib.asynccontextmanager
    async def during(self, msg: Msg, *, stream_seq: int, stored_at: float) -> AsyncIterator[None]:
        """Keep ``msg`` while its last delivery is handled; forget it when the handling
        returns (the delivery was acked or terminated, or sent back after a Redis error),
        keep it when it raises (cancelled by a drain: the advisory will need it)."""
        await self.keep(msg, stream_seq=stream_seq, stored_at=stored_at)
        yield
        await self.forget(stream_seq)
