"""The admin's part in Redis: the mesh's function library and the memory limit.

:func:`provision_redis` is run by the admin step (:func:`jetmesh.provision.provision`,
``jetmesh up``, ``jetmesh admin provision``) as Redis's ``default`` user:

1. it loads the function library the roles call (:mod:`jetmesh.memory.functions`) unless
   Redis has this version or a newer one;
2. on a server with no memory limit it sets ``maxmemory`` (``redis_max_memory_bytes``)
   with ``maxmemory-policy noeviction``: past the limit a write is refused (``OOM``, raised
   as :class:`~jetmesh.MemoryFull`) and nothing is evicted, since an evicted ledger record
   would let a step or a side effect run twice. A server with a limit of its own keeps it;
   an evicting policy on it is reported, not changed.

Redis has no per-user memory or rate limits: the limit is the whole server's, shared by
every role (docs/security.md).

Example:
    >>> done = await provision_redis(admin_redis, settings)            # doctest: +SKIP
    >>> done.library, done.max_memory, done.policy                     # doctest: +SKIP
    ('loaded', 1073741824, 'noeviction')
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..settings import MeshSettings
from .functions import load_library

NO_EVICTION = "noeviction"


@dataclass(frozen=True)
class RedisProvisioned:
    """What :func:`provision_redis` found and did."""

    library: str
    """``loaded`` (it was missing or older) or ``kept``."""
    max_memory: int
    """The server's ``maxmemory`` now, in bytes; 0: none (unknown where CONFIG is refused)."""
    policy: str
    """The server's ``maxmemory-policy`` now ("" where CONFIG is refused)."""
    notes: tuple[str, ...] = ()
    """What is not as jetmesh wants it, for the operator."""


async def _config(redis: Redis, name: str) -> str:
    found = await redis.config_get(name)
    value = found.get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


async def provision_redis(redis: Redis, settings: MeshSettings) -> RedisProvisioned:
    """Load the mesh's functions and set the memory limit (see the module's docstring).

    Args:
        redis: a connection as Redis's ``default`` (admin) user.
        settings: ``redis_max_memory_bytes`` (0: leave the server's limit alone).

    Raises:
        redis.exceptions.RedisError: Redis is unreachable or refused to load the library.
    """
    library = await load_library(redis)
    try:
        max_memory = int(await _config(redis, "maxmemory") or 0)
        policy = await _config(redis, "maxmemory-policy")
    except ResponseError as exc:  # a managed server without CONFIG
        return RedisProvisioned(library, 0, "", (f"memory limit not checked: {exc}",))
    notes: list[str] = []
    if max_memory == 0 and settings.redis_max_memory_bytes > 0:
        try:
            await redis.config_set("maxmemory-policy", NO_EVICTION)
            await redis.config_set("maxmemory", settings.redis_max_memory_bytes)
        except ResponseError as exc:
            notes.append(f"memory limit not set: {exc}")
        else:
            max_memory, policy = settings.redis_max_memory_bytes, NO_EVICTION
    if max_memory == 0:
        notes.append("Redis has no memory limit (maxmemory)")
    if policy != NO_EVICTION:
        notes.append(
            f"maxmemory-policy is {policy}, not {NO_EVICTION}: Redis may evict ledger "
            "records, and a step or a side effect could then run twice"
        )
    return RedisProvisioned(library, max_memory, policy, tuple(notes))
