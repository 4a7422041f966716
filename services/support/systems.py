"""The support desk's outside systems, as the mesh's side effects reach them: the payment
system (refunds) and the people's queue (cases handed to a person).

Both are stand-ins kept in Redis, written the way a real system with idempotency keys
would be: each write stores its result under its idempotency key in the same transaction
(MULTI/EXEC), so a lookup by the key tells for sure whether the write happened. Only the
tool gateway writes them (:mod:`services.support.tools`), with the request's
idempotency key; on servers that enforce the policy it connects as the ``toolgate`` Redis
user, whose keys include ``support-desk:*``. People read their queue as the admin.

Example:
    >>> desk = Desk(settings.redis_url, role="toolgate", settings=settings)  # doctest: +SKIP
    >>> await desk.refund(key, "A-1", 40.0, approved_by="")                  # doctest: +SKIP
    >>> people = Desk(settings.redis_url, login=admin_login(settings))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib

import msgspec
from redis.asyncio import Redis

from jetmesh import MeshSettings
from jetmesh.logins import OPEN, ServerLogin, role_login
from jetmesh.memory.connection import connect
from services.support.wire import Case, Handoff, RefundReceipt

NAMESPACE = "support-desk"
PEOPLE_QUEUE = "support-people"
"""The queue people work from."""
TTL_S = 7 * 24 * 3600


def short_id(prefix: str, key: str) -> str:
    """A readable id derived from an idempotency key (the same key, the same id)."""
    return f"{prefix}-{hashlib.blake2b(key.encode(), digest_size=4).hexdigest().upper()}"


class Desk:
    """The payment system and the people's queue, connected on first use.

    Args:
        url: the Redis URL; default ``settings.redis_url``.
        namespace: the prefix of every key (tests use their own).
        role: connect as this role's Redis user when the keys directory holds its password
            (servers that enforce the policy), else as the URL says.
        settings: where the keys directory is, the retry window, the default URL; default
            the process's ``JETMESH_*`` settings.
        login: who to connect as, instead of ``role``'s (for example
            :func:`~jetmesh.logins.admin_login` to read the people's queue).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = NAMESPACE,
        role: str | None = None,
        settings: MeshSettings | None = None,
        login: ServerLogin | None = None,
    ) -> None:
        self._url = url
        self._ns = namespace
        self._role = role
        self._settings = settings
        self._login = login
        self._redis: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            settings = self._settings or MeshSettings()
            login = self._login
            if login is None:
                login = OPEN if self._role is None else role_login(settings, self._role)
            self._redis = connect(
                self._url or settings.redis_url,
                retry_s=settings.redis_retry_s,
                **login.redis_options(),
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
