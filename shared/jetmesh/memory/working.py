"""Working memory of a workflow, in Redis, one role's (namespaced per agent), versioned.

A role's memory of a workflow is read and written by that role's replicas only: on servers
that enforce the policy its Redis user's key patterns hold no other role's keys, and another
role's :class:`WorkingMemory` raises :class:`~jetmesh.MemoryDenied` on a read as on a write.
State other roles need is asked of its owner (docs/memory.md, "Sharing state between
roles").

Each value is a hash ``{v: version, d: JSON, w: write id}``. Writes are compare-and-set on
the version (``jetmesh_cas``, a function of the mesh's Redis library: atomic in Redis), so
two replicas cannot lose each other's updates: the second writer gets
:class:`MemoryConflict` (or :meth:`WorkingMemory.update` retries it), and a replica that
lost its lease and still holds an old version cannot overwrite newer memory (fencing by
version). The write id makes a write sent again after its connection broke (see
:mod:`jetmesh.memory.connection`) count once.

Example:
    >>> await ctx.memory.set("draft", Draft(text="..."))              # doctest: +SKIP
    >>> draft = await ctx.memory.get("draft", Draft)                  # doctest: +SKIP
    >>> await ctx.memory.update("count", int, lambda n: (n or 0) + 1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
from redis.asyncio import Redis

from .._exceptions import MemoryConflict, MemoryTooLarge
from ..envelope import encode
from ..ids import new_id
from . import keys
from .batching import shared_batcher
from .functions import CAS, with_library
from .refused import refused

T = TypeVar("T")

DEFAULT_TTL_S = 7 * 24 * 3600
DEFAULT_MAX_VALUE_BYTES = 512 * 1024
UPDATE_RETRIES = 8


class Versioned(NamedTuple, Generic[T]):
    value: T | None
    version: int
    """0 when the key does not exist."""


class WorkingMemory:
    """One role's memory of one workflow (readable and writable by that role only)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        workflow: str,
        agent: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self._redis = redis
        self._batch = shared_batcher(redis)
        """Reads and writes go in the client's shared pipelines: those of the tasks of one
        loop turn together, without redis-py's bookkeeping around each command."""
        self._prefix = prefix
        self.workflow = workflow
        self.agent = agent
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes

    def key(self, name: str) -> str:
        return keys.memory(self._prefix, self.workflow, self.agent, name)

    async def get(self, name: str, tp: type[T]) -> T | None:
        """The value under ``name`` decoded as ``tp``, or None."""
        return (await self.get_versioned(name, tp)).value

    async def get_versioned(self, name: str, tp: type[T]) -> Versioned[T]:
        """The value and its version (0 and None when absent)."""
        with refused(self.key(name), "read", role=self.agent):
            raw_version, data = await self._batch.execute("HMGET", self.key(name), "v", "d")
        if raw_version is None or data is None:
            return Versioned(None, 0)
        return Versioned(msgspec.json.decode(data, type=tp), int(raw_version))

    async def set(
        self,
        name: str,
        value: Any,
        *,
        expected_version: int | None = None,
        ttl_s: int | None = None,
    ) -> int:
        """Write ``value``; returns the new version.

        Args:
            name: the key within this agent's memory of the workflow.
            value: anything msgspec encodes.
            expected_version: write only if the stored version is this (0: only if absent).
            ttl_s: expiry in seconds (default the memory's ``ttl_s``).

        Raises:
            MemoryConflict: the stored version is not ``expected_version``.
            MemoryTooLarge: the encoded value is over ``max_value_bytes``.
            MemoryDenied: the key is outside this role's Redis user (another role's).
            MemoryFull: Redis is at its memory limit.
            NotProvisioned: Redis has no jetmesh function library (run ``jetmesh up``).
        """
        data = encode(value)
        if len(data) > self.max_value_bytes:
            raise MemoryTooLarge(
                f"{self.key(name)}: {len(data)} bytes > limit {self.max_value_bytes}"
            )
        expected = "" if expected_version is None else str(expected_version)
        args = [expected, data, ttl_s if ttl_s is not None else self.ttl_s, new_id()]
        with refused(self.key(name), "write", role=self.agent):
            ok, version = await with_library(
                self._redis, lambda: self._batch.fcall(CAS, [self.key(name)], args)
            )
        if not ok:
            raise MemoryConflict(self.key(name), expected_version or 0, int(version))
        return int(version)

    async def update(
        self,
        name: str,
        tp: type[T],
        change: Callable[[T | None], Any],
        *,
        retries: int = UPDATE_RETRIES,
    ) -> int:
        """Read, apply ``change`` to the value, write back if nobody wrote meanwhile;
        retried up to ``retries`` times on a conflict. Returns the new version.

        Raises:
            MemoryConflict: still conflicting after ``retries`` attempts.
        """
        for attempt in range(retries):
            current = await self.get_versioned(name, tp)
            try:
                return await self.set(name, change(current.value), expected_version=current.version)
            except MemoryConflict:
                if attempt == retries - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def delete(self, name: str) -> None:
        with refused(self.key(name), "delete", role=self.agent):
            await self._redis.delete(self.key(name))
