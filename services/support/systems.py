"""The support desk's outside systems, as the mesh's side effects reach them: the payment
system (refunds) and the people's queue (cases handed to a person).

Both are stand-ins kept in Redis, written the way a real system with idempotency keys
would be: each write stores its result under its idempotency key in the same transaction
(MULTI/EXEC), so a lookup by the key tells for sure whether the write happened. The roles
call them only through ``ctx.once`` (at most once per step) with that lookup as
``reconcile`` (a step whose replica died mid-write is settled, not repeated).

Example:
    >>> desk = Desk("redis://127.0.0.1:6379/0")                             # doctest: +SKIP
    >>> receipt = await ctx.once("refund", lambda: desk.refund(key, "A-1", 40.0, ""),
    ...                          returns=RefundReceipt,
    ...                          reconcile=lambda: desk.find_refund(key))    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib

import msgspec
from redis.asyncio import Redis

from jetmesh import MeshSettings
from jetmesh.credentials import role_credentials
from jetmesh.memory.connection import connect
from subjects.support import Case, Handoff, RefundReceipt

NAMESPACE = "support-desk"
PEOPLE_QUEUE = "support-people"
"""The queue people work from."""
TTL_S = 7 * 24 * 3600


def short_id(prefix: str, key: str) -> str:
    """A readable id derived from an idempotency key (the same key, the same id)."""
    return f"{prefix}-{hashlib.blake2b(key.encode(), digest_size=4).hexdigest().upper()}"


class Desk:
    """The payment system and the people's queue. Connects on first use, to ``url`` or
    the process's ``JETMESH_REDIS_URL`` (as ``role``'s Redis user where the servers enforce
    the policy: the policy grants billing and escalation their keys here)."""

    def __init__(
        self, url: str | None = None, *, namespace: str = NAMESPACE, role: str | None = None
    ) -> None:
        self._url = url
        self._ns = namespace
        self._role = role
        self._redis: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            if self._url is not None:
                self._redis = Redis.from_url(self._url)
            else:  # the process's settings, as its role where the servers enforce the policy
                settings = MeshSettings()
                self._redis = connect(
                    settings.redis_url,
                    retry_s=settings.redis_retry_s,
                    **role_credentials(settings, self._role or "").redis_options(),
                )
        return self._redis

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    # -- payments ----------------------------------------------------------------------------

    async def refund(
        self, key: str, order: str, amount_eur: float, approved_by: str
    ) -> RefundReceipt:
        """Pay ``amount_eur`` back for ``order``, under idempotency key ``key``."""
        receipt = RefundReceipt(
            id=short_id("R", key), order=order, amount_eur=amount_eur, approved_by=approved_by
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("refund", key), msgspec.json.encode(receipt), ex=TTL_S)
            pipe.hincrby(self._key("refund-runs"), key, 1)
            pipe.rpush(self._key("payouts"), msgspec.json.encode(receipt))
            await pipe.execute()
        return receipt

    async def find_refund(self, key: str) -> RefundReceipt | None:
        """The refund made under ``key``, or None if there is none."""
        raw = await self.redis.get(self._key("refund", key))
        return None if raw is None else msgspec.json.decode(raw, type=RefundReceipt)

    async def refund_runs(self, key: str) -> int:
        """How many times a refund was paid under ``key`` (1 at most, if all is well)."""
        raw = await self.redis.hget(self._key("refund-runs"), key)
        return int(raw or 0)

    # -- the people's queue -----------------------------------------------------------------

    async def hand_off(self, key: str, case: Case) -> Handoff:
        """Put ``case`` in the people's queue, under idempotency key ``key``."""
        handoff = Handoff(id=short_id("H", key), queue=PEOPLE_QUEUE)
        entry = msgspec.json.encode({"handoff": handoff, "case": case})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("handoff", key), msgspec.json.encode(handoff), ex=TTL_S)
            pipe.rpush(self._key("queue", PEOPLE_QUEUE), entry)
            await pipe.execute()
        return handoff

    async def find_handoff(self, key: str) -> Handoff | None:
        """The hand-off made under ``key``, or None if there is none."""
        raw = await self.redis.get(self._key("handoff", key))
        return None if raw is None else msgspec.json.decode(raw, type=Handoff)

    async def queued(self) -> list[tuple[Handoff, Case]]:
        """Every case in the people's queue, oldest first."""

        class Entry(msgspec.Struct):
            handoff: Handoff
            case: Case

        raw = await self.redis.lrange(self._key("queue", PEOPLE_QUEUE), 0, -1)
        entries = [msgspec.json.decode(r, type=Entry) for r in raw]
        return [(e.handoff, e.case) for e in entries]

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
