"""The step ledger: what makes a handler safe to run again after a crash.

Three records in Redis, keyed by the role, the workflow and the deterministic step key
(see :mod:`jetmesh.memory.keys`), each in keys only that role's Redis user may write:

- **journal** (caller side): the reply to each ``ctx.call`` and each ``ctx.model`` call. A
  handler that runs again after its replica died gets completed calls back from the
  journal instead of sending them again (or paying for the model call again). The journal
  is the caller's own (``<prefix>:journal:<caller>:...``): a reply in it is taken without
  asking the callee, so no other role may write it.
- **result** (worker side): the outcome of a handled step. A task for a step already done
  (a redelivery after a late ack, or the same call sent again by a re-run whose journal
  write was lost) gets the stored reply, and the handler does not run twice.
- **lease** (worker side): the replica running a step now. A duplicate arriving while the
  step runs waits for its result instead of running it alongside.

A result's run may still have events on their way to the stream when it is recorded (its
replica could die with them): those are written beside the result, in a key that lives
only as long as they may be sent again (``carried_ttl_s``, the mesh's
``max_message_age_s``), so the result kept for days stays as small as the reply itself.

The records are written before the reply or ack they stand for, so a crash between the two
leaves the record, never the effect without it. Side effects (``ctx.once``) and waits keep
their claims and start times the same way, in the role's own keys. What must be atomic
runs as a function of the mesh's Redis library (:mod:`jetmesh.memory.functions`), sent in
the same pipeline as other tasks' ledger commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, TypeVar, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._exceptions import EffectInDoubt, MemoryFull, NotProvisioned
from ..envelope import Envelope, encode
from ..memory import keys
from ..memory.batching import CommandBatcher
from ..memory.effect_claims import DONE, RUNNING, EffectClaim, decode_claim
from ..memory.functions import CLAIM_STEP, FINISH, TAKE_OVER, fcall, with_library
from ..memory.refused import refused
from ..telemetry import metrics

T = TypeVar("T")

UNAVAILABLE: tuple[type[Exception], ...] = (RedisError, MemoryFull, NotProvisioned)
"""Why the ledger may fail for a while, after which a task goes back to run again later:
Redis unreachable past the retries, at its memory limit, or without the mesh's functions
(a server restarted without persistence, until the admin step loads them again)."""


class CarriedEvent(msgspec.Struct, frozen=True):
    """A signed event of a run that was still on its way to the stream when the run's
    result was recorded: the message as published, sent again as it is."""

    id: str
    """Its ``Nats-Msg-Id``: the stream keeps one copy within its duplicate window."""
    subject: str
    data: msgspec.Raw
    """The signed envelope, JSON, kept as it is (the signature is over these bytes)."""
    headers: dict[str, str]
    at: float
    """When it was carried (Unix seconds): past ``max_message_age_s`` it is not sent again
    (the stream would no longer know it for a duplicate, nor a reader take it for fresh)."""


class Recorded(msgspec.Struct, frozen=True, omit_defaults=True):
    """A reply as recorded: enough to answer again, or to decode again."""

    kind: str
    """``reply`` or ``error``."""
    type: str
    body: msgspec.Raw
    digest: str = ""
    """For a model call: the request's digest (a re-run asking another request is not
    answered from the journal)."""
    events: tuple[CarriedEvent, ...] = ()
    """For a step's result: the run's events not yet stored when it was recorded, sent
    again when the step is answered from the record (its replica may have died with
    them). Stored in a key of their own (:meth:`StepLedger.finish`); a record written
    before that holds them here, and is read the same."""

    @classmethod
    def of(cls, reply: Envelope) -> Recorded:
        return cls(kind=reply.kind, type=reply.type, body=reply.body)

    def as_envelope(self, task: Envelope) -> Envelope:
        """The recorded reply as an envelope answering ``task`` (for decoding)."""
        return Envelope(
            id=task.id,
            kind="error" if self.kind == "error" else "reply",
            workflow=task.workflow,
            sender=task.to,
            to=task.sender,
            created=task.created,
            type=self.type,
            parent=task.id,
            step=task.step,
            body=self.body,
        )


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s error seen (its caller may have failed before awaiting it)."""
    if not future.cancelled():
        future.exception()


def _refused(key: str, what: str, agent: str) -> AbstractContextManager[None]:
    """:func:`~jetmesh.memory.refused.refused`, its Redis errors counted as ``agent``'s
    ledger errors in the metrics."""
    return refused(key, what, role=agent, count=metrics.ledger_error)


_recorded = msgspec.json.Decoder(Recorded)
_carried = msgspec.json.Decoder(tuple[CarriedEvent, ...])


class Claimed(NamedTuple):
    """What a claim of a step found."""

    taken: bool
    """This holder has the step's lease."""
    result: Recorded | None
    """The step's recorded result (then nothing is taken: the handler must not run)."""
    first: bool
    """No claim of the step was ever taken before this one: nothing of it is journaled, so
    its calls need not be looked up in the journal."""


class StepLedger:
    """Journal, results and leases of one mesh (one subject prefix)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl_s: int,
        carried_ttl_s: int | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        """
        Args:
            ttl_s: how long the records live (``MeshSettings.memory_ttl_s``).
            carried_ttl_s: how long a result's carried events live (the mesh's
                ``max_message_age_s``, past which they are not sent again); ``ttl_s`` by
                default.
            wait_replicas: how many Redis replicas must have each write before the step
                goes on (``MeshSettings.redis_wait_replicas``; 0: none).
        """
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s
        self._carried_ttl = min(ttl_s, carried_ttl_s or ttl_s)
        self._batch = CommandBatcher(
            redis, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms
        )

    # -- caller side -----------------------------------------------------------------------

    async def journaled(self, workflow: str, agent: str, step: str) -> Recorded | None:
        """The reply ``agent`` journaled for its call ``step``, or None (a GET sent in the
        same pipeline as other tasks' ledger commands)."""
        key = keys.journal(self._prefix, workflow, agent, step)
        with _refused(key, "read", agent):
            raw = await self._batch.execute("GET", key)
        return None if raw is None else _recorded.decode(raw)

    async def journal(self, workflow: str, agent: str, step: str, record: Recorded) -> None:
        """Journal the reply ``agent`` got for its call ``step`` (batched as :meth:`claim`).

        Raises:
            MemoryFull: Redis is at its memory limit.
        """
        key = keys.journal(self._prefix, workflow, agent, step)
        with _refused(key, "journal", agent):
            await self._batch.execute("SET", key, encode(record), "EX", self._ttl)

    # -- worker side -----------------------------------------------------------------------

    async def claim(
        self, workflow: str, agent: str, step: str, holder: str, lease_ms: int
    ) -> Claimed:
        """Take the step's lease unless the step has a result, and mark the step begun
        (kept twice the ledger's time to live: longer than any journal entry of the
        step). One function call, sent in the same pipeline as other tasks' ledger
        commands.

        Raises:
            MemoryFull: Redis is at its memory limit.
            NotProvisioned: Redis has no jetmesh function library (run ``jetmesh up``).
        """
        result = keys.result(self._prefix, workflow, agent, step)
        lease = keys.lease(self._prefix, workflow, agent, step)
        begun = keys.begun(self._prefix, workflow, agent, step)
        with _refused(lease, "claim", agent):
            taken, raw, first = await with_library(
                self._redis,
                lambda: self._batch.fcall(
                    CLAIM_STEP, [result, lease, begun], [holder, lease_ms, 2 * self._ttl]
                ),
            )
        if raw is None:
            return Claimed(bool(taken), None, bool(first))
        events = keys.result_events(self._prefix, workflow, agent, step)
        return Claimed(bool(taken), await self._with_carried(raw, events, agent), bool(first))

    async def _with_carried(self, raw: bytes, key: str, agent: str) -> Recorded:
        """The recorded result ``raw`` with the events carried beside it in ``key`` (still
        there if recorded less than ``carried_ttl_s`` ago): read only to answer from the
        record."""
        recorded = _recorded.decode(raw)
        with _refused(key, "read", agent):
            carried = await self._batch.execute("GET", key)
        if carried is None:
            return recorded
        events = recorded.events + _carried.decode(carried)
        return msgspec.structs.replace(recorded, events=events)

    async def finish(self, workflow: str, agent: str, step: str, record: Recorded) -> None:
        """Store the step's result and give up its lease (one function call, batched). The
        events it carries go in a key of their own, written first in the same batch (a
        crash between the two leaves events without a result, which expire), living
        ``carried_ttl_s``.

        Raises:
            MemoryFull: Redis is at its memory limit.
            NotProvisioned: Redis has no jetmesh function library (run ``jetmesh up``).
        """
        result = keys.result(self._prefix, workflow, agent, step)
        lease = keys.lease(self._prefix, workflow, agent, step)
        with _refused(result, "record", agent):
            if not record.events:
                await self._finish(result, lease, encode(record))
                return
            events = keys.result_events(self._prefix, workflow, agent, step)
            stored = self._batch.execute(
                "SET", events, encode(record.events), "EX", self._carried_ttl
            )  # queued now: before the result, in the same pipeline
            stored.add_done_callback(_retrieved)
            await self._finish(result, lease, encode(msgspec.structs.replace(record, events=())))
            await stored

    async def _finish(self, result: str, lease: str, record_bytes: bytes) -> None:
        await with_library(
            self._redis,
            lambda: self._batch.fcall(FINISH, [result, lease], [record_bytes, self._ttl]),
        )

    async def release(
        self, workflow: str, agent: str, step: str, holder: str, *, unmark: bool = False
    ) -> None:
        """Give up the lease without a result (the handler failed; a retry may run);
        ``unmark``: the claim's begun mark too (the step's first claim did not run it)."""
        key = keys.lease(self._prefix, workflow, agent, step)
        if await self._redis.get(key) == holder.encode():
            mark = [keys.begun(self._prefix, workflow, agent, step)] if unmark else []
            await self._redis.delete(*mark, key)

    async def renew(self, leases: list[tuple[str, str, str]], lease_ms: int) -> None:
        """Extend the leases of steps still running (workflow, agent, step)."""
        if not leases:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for workflow, agent, step in leases:
                pipe.pexpire(keys.lease(self._prefix, workflow, agent, step), lease_ms)
            await pipe.execute()

    async def wait_started(
        self, workflow: str, agent: str, step: str, name: str, now: float
    ) -> float:
        """When ``agent``'s step first began waiting for signal ``name``: ``now`` on the
        first wait, the recorded time on a re-run (so a crash does not restart its
        timeout)."""
        key = keys.wait(self._prefix, workflow, agent, step, name)
        with _refused(key, "record the wait of", agent):
            await self._redis.set(key, repr(now), nx=True, ex=self._ttl)
            recorded = await self._redis.get(key)
        return float(recorded) if recorded is not None else now

    # -- side effects ----------------------------------------------------------------------

    async def once(
        self,
        workflow: str,
        agent: str,
        step: str,
        key: str,
        effect: Callable[[], Awaitable[T]],
        returns: type[T],
        *,
        holder: str,
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """See :meth:`jetmesh.Context.once`; ``agent`` is the role whose step runs it (its
        own key holds the claim).

        Raises:
            EffectInDoubt: claimed by a run that did not finish, and no ``reconcile``.
            MemoryFull: Redis is at its memory limit.
        """
        redis_key = keys.once(self._prefix, workflow, agent, step, key)
        claim = encode(EffectClaim(state=RUNNING, holder=holder))
        done, found = await self._claim_effect(agent, redis_key, claim, returns, holder, reconcile)
        if done:
            return cast(T, found)
        try:
            result = await effect()
        except Exception:
            with _refused(redis_key, "drop the claim of", agent):  # it failed: a retry may run it
                await self._redis.delete(redis_key)
            raise  # (cancelled mid-effect keeps the claim: that is in doubt)
        await self._done(agent, redis_key, result, holder)
        return result

    async def _claim_effect(
        self,
        agent: str,
        redis_key: str,
        claim: bytes,
        returns: type[T],
        holder: str,
        reconcile: Callable[[], Awaitable[T | None]] | None,
    ) -> tuple[bool, T | None]:
        """Claim the effect: ``(True, result)`` when it is done already, ``(False, None)``
        when the claim is ours and the effect is to run."""
        while True:
            with _refused(redis_key, "claim the effect", agent):
                taken, raw = await self._replicated(
                    ("SET", redis_key, claim, "NX", "EX", self._ttl), ("GET", redis_key)
                )
                if taken:
                    return False, None
            if raw is None:  # the claim was dropped meanwhile: claim again
                continue
            recorded = decode_claim(raw)
            if recorded.state == DONE:
                return True, msgspec.json.decode(recorded.result, type=returns)
            if recorded.holder == holder:  # our own claim: a SET sent again after its
                return False, None  # connection broke, whose first try had gone through
            if reconcile is None:
                raise EffectInDoubt(
                    f"{redis_key} was claimed by {recorded.holder} and never finished: "
                    "it may or may not have happened"
                )
            found = await reconcile()
            if found is not None:  # it happened: record it as done
                await self._done(agent, redis_key, found, holder)
                return True, found
            with _refused(redis_key, "take over the effect", agent):
                if await fcall(self._redis, TAKE_OVER, [redis_key], [raw, claim, self._ttl]):
                    return False, None  # it did not happen: the claim is ours, run it

    async def _done(self, agent: str, redis_key: str, result: object, holder: str) -> None:
        done = EffectClaim(state=DONE, holder=holder, result=msgspec.Raw(encode(result)))
        with _refused(redis_key, "record the effect", agent):
            await self._batch.execute("SET", redis_key, encode(done), "EX", self._ttl)

    async def _replicated(self, *commands: tuple[Any, ...]) -> list[Any]:
        """``commands`` in one pipeline, on the replicas too when asked; the first error
        raised."""
        replies = await self._batch.pipeline(list(commands))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
