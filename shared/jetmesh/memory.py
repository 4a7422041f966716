"""Working memory of a workflow, in Redis, namespaced per agent.

Keys: ``<prefix>:wf:<workflow>:<agent>:<key>``, JSON values typed with msgspec, with a TTL.

Example:
    >>> await ctx.memory.set("draft", Draft(text="..."))      # doctest: +SKIP
    >>> draft = await ctx.memory.get("draft", Draft)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis

from .envelope import encode
from .subjects import check_token

T = TypeVar("T")

DEFAULT_TTL_S = 7 * 24 * 3600


def memory_key(prefix: str, workflow: str, agent: str, key: str) -> str:
    return f"{prefix}:wf:{workflow}:{agent}:{check_token(key, 'memory key')}"


class WorkingMemory:
    """One agent's view of one workflow's memory."""

    def __init__(self, redis: Redis, prefix: str, workflow: str, agent: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.workflow = workflow
        self.agent = agent

    def _key(self, key: str) -> str:
        return memory_key(self._prefix, self.workflow, self.agent, key)

    async def get(self, key: str, tp: type[T]) -> T | None:
        """The value under ``key`` decoded as ``tp``, or None."""
        raw = await self._redis.get(self._key(key))
        return None if raw is None else msgspec.json.decode(raw, type=tp)

    async def set(self, key: str, value: Any, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        await self._redis.set(self._key(key), encode(value), ex=ttl_s)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key(key))
