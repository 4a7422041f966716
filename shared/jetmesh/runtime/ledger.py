"""The step ledger: what makes a handler safe to run again after a crash.

Three records in Redis, keyed by the workflow and the deterministic step key
(see :mod:`jetmesh.memory.keys`):

- **journal** (caller side): the reply to each ``ctx.call`` and each ``ctx.model`` call. A
  handler that runs again after its replica died gets completed calls back from the
  journal instead of sending them again (or paying for the model call again).
- **result** (worker side): the outcome of a handled step. A task for a step already done
  (a redelivery after a late ack, or the same call sent again by a re-run whose journal
  write was lost) gets the stored reply, and the handler does not run twice.
- **lease** (worker side): the replica running a step now. A duplicate arriving while the
  step runs waits for its result instead of running it alongside.

The records are written before the reply or ack they stand for, so a crash between the two
leaves the record, never the effect without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from redis.asyncio import Redis

from .._exceptions import EffectInDoubt
from ..envelope import Envelope, encode
from ..memory import keys
from ..memory.batching import CommandBatcher

T = TypeVar("T")


# KEYS: result, lease; ARGV: holder, lease ms -> {taken, result or false}
# (a claim sent again after its connection broke finds its own holder: it is taken)
_CLAIM = """
local result = redis.call('GET', KEYS[1])
if result then return {0, result} end
local held = redis.call('GET', KEYS[2])
if held == ARGV[1] then return {1, false} end
if held then return {0, false} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, false}
"""

# KEYS: result, lease; ARGV: record, ttl seconds
_FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: once; ARGV: the claim found, the new claim, ttl seconds -> 1 if it was replaced
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class Recorded(msgspec.Struct, frozen=True, omit_defaults=True):
    """A reply as recorded: enough to answer again, or to decode again."""

    kind: str
    """``reply`` or ``error``."""
    type: str
    body: msgspec.Raw
    digest: str = ""
    """For a model call: the request's digest (a re-run asking another request is not
    answered from the journal)."""

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


class _Effect(msgspec.Struct, frozen=True):
    state: str
    """``running`` (claimed) or ``done``."""
    holder: str = ""
    result: msgspec.Raw = msgspec.Raw(b"null")


_recorded = msgspec.json.Decoder(Recorded)
_effect = msgspec.json.Decoder(_Effect)


class StepLedger:
    """Journal, results and leases of one mesh (one subject prefix)."""

    def __init__(self, redis: Redis, prefix: str, *, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s
        self._batch = CommandBatcher(redis)

    # -- caller side -----------------------------------------------------------------------

    async def journaled(self, workflow: str, step: str) -> Recorded | None:
        raw = await self._redis.get(keys.journal(self._prefix, workflow, step))
        return None if raw is None else _recorded.decode(raw)

    async def journal(self, workflow: str, step: str, record: Recorded) -> None:
        await self._redis.set(
            keys.journal(self._prefix, workflow, step), encode(record), ex=self._ttl
        )

    # -- worker side -----------------------------------------------------------------------

    async def claim(
        self, workflow: str, agent: str, step: str, holder: str, lease_ms: int
    ) -> tuple[bool, Recorded | None]:
        """Take the step's lease unless the step has a result; returns (taken, result).
        One script, sent in the same pipeline as other tasks' ledger commands."""
        taken, raw = await self._batch.eval(
            _CLAIM,
            [
                keys.result(self._prefix, workflow, agent, step),
                keys.lease(self._prefix, workflow, agent, step),
            ],
            [holder, lease_ms],
        )
        return bool(taken), None if raw is None else _recorded.decode(raw)

    async def finish(self, workflow: str, agent: str, step: str, record: Recorded) -> None:
        """Store the step's result and give up its lease (one script, batched)."""
        await self._batch.eval(
            _FINISH,
            [
                keys.result(self._prefix, workflow, agent, step),
                keys.lease(self._prefix, workflow, agent, step),
            ],
            [encode(record), self._ttl],
        )

    async def release(self, workflow: str, agent: str, step: str, holder: str) -> None:
        """Give up the lease without a result (the handler failed; a retry may run)."""
        key = keys.lease(self._prefix, workflow, agent, step)
        if await self._redis.get(key) == holder.encode():
            await self._redis.delete(key)

    async def renew(self, leases: list[tuple[str, str, str]], lease_ms: int) -> None:
        """Extend the leases of steps still running (workflow, agent, step)."""
        if not leases:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for workflow, agent, step in leases:
                pipe.pexpire(keys.lease(self._prefix, workflow, agent, step), lease_ms)
            await pipe.execute()

    async def wait_started(self, workflow: str, step: str, name: str, now: float) -> float:
        """When this step first began waiting for signal ``name``: ``now`` on the first
        wait, the recorded time on a re-run (so a crash does not restart its timeout)."""
        key = keys.wait(self._prefix, workflow, step, name)
        await self._redis.set(key, repr(now), nx=True, ex=self._ttl)
        recorded = await self._redis.get(key)
        return float(recorded) if recorded is not None else now

    # -- side effects ----------------------------------------------------------------------

    async def once(
        self,
        workflow: str,
        step: str,
        key: str,
        effect: Callable[[], Awaitable[T]],
        returns: type[T],
        *,
        holder: str,
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """See :meth:`jetmesh.Context.once`."""
        redis_key = keys.once(self._prefix, workflow, step, key)
        claim = encode(_Effect(state="running", holder=holder))
        while not await self._redis.set(redis_key, claim, nx=True, ex=self._ttl):
            raw = await self._redis.get(redis_key)
            if raw is None:  # the claim was dropped meanwhile: claim again
                continue
            recorded = _effect.decode(raw)
            if recorded.state == "done":
                return msgspec.json.decode(recorded.result, type=returns)
            if recorded.holder == holder:  # our own claim: a SET sent again after its
                break  # connection broke, whose first try had gone through
            if reconcile is None:
                raise EffectInDoubt(
                    f"{redis_key} was claimed by {recorded.holder} and never finished: "
                    "it may or may not have happened"
                )
            found = await reconcile()
            if found is not None:  # it happened: record it as done
                await self._done(redis_key, found, holder)
                return found
            if await self._redis.eval(_TAKE_OVER, 1, redis_key, raw, claim, self._ttl):
                break  # it did not happen: the claim is ours, run it
        try:
            result = await effect()
        except Exception:
            await self._redis.delete(redis_key)  # it failed: a retry may run it
            raise  # (cancelled mid-effect keeps the claim: that is in doubt)
        await self._done(redis_key, result, holder)
        return result

    async def _done(self, redis_key: str, result: object, holder: str) -> None:
        done = _Effect(state="done", holder=holder, result=msgspec.Raw(encode(result)))
        await self._redis.set(redis_key, encode(done), ex=self._ttl)
