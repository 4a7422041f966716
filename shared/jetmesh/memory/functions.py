"""The mesh's Redis functions: one library the admin loads and the roles only call.

Every atomic step a role takes in Redis (claiming a step, recording its result, taking
over an effect in doubt, a compare-and-set of working memory) is a function of the
library ``jetmesh``, called with ``FCALL`` (the admin's removal of a claim in doubt,
``jetmesh dlq settle``, is a WATCH transaction of its own). Roles may not run scripts of their own
(``EVAL``, ``SCRIPT LOAD``, ``FUNCTION LOAD``: a busy loop in one would stall Redis for
every role), so the library is loaded by the admin: the admin step
(:func:`jetmesh.provision.provision`, run by ``jetmesh up`` and ``jetmesh admin
provision``), or on first use by a process connected as Redis's ``default`` user (open
development servers, the test harness, the admin's own tools). A role that finds it
missing gets :class:`~jetmesh.NotProvisioned` naming ``jetmesh up``.

    jetmesh_version()                              the library's version (read only)
    jetmesh_claim(result, lease; holder, ms)       the step ledger's claim of a step
    jetmesh_claim_step(result, lease, begun; holder, ms, ttl s)
                                                   the same, and whether it is the step's
                                                   first claim ever (marked in ``begun``)
    jetmesh_finish(result, lease; record, ttl s)   a step's result, its lease given up
    jetmesh_take_over(once; found, claim, ttl s)   an effect's claim in doubt, taken over
    jetmesh_cas(key; expected, data, ttl s, id)    working memory's compare-and-set

Redis keeps functions in its RDB and AOF files; a server restarted without persistence
has none, and the next admin connection (or the admin step) loads them again. A newer
library replaces an older one (``FUNCTION LOAD REPLACE`` when :data:`VERSION` is above
the loaded ``jetmesh_version``); a function whose arguments or meaning change gets a new
name, so a process of older code finds it missing rather than calling it wrongly.

Example:
    >>> await load_library(admin_redis)                                 # doctest: +SKIP
    'loaded'
    >>> await fcall(redis, CLAIM, [result_key, lease_key], ["r1", 30000])  # doctest: +SKIP
    [1, None]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .._exceptions import NotProvisioned

T = TypeVar("T")

LIBRARY = "jetmesh"
VERSION = 2
"""Raised when a function of the library changes; the admin replaces an older library."""

CLAIM = "jetmesh_claim"
CLAIM_STEP = "jetmesh_claim_step"
FINISH = "jetmesh_finish"
TAKE_OVER = "jetmesh_take_over"
CAS = "jetmesh_cas"
VERSION_FUNCTION = "jetmesh_version"

ADMIN_USER = "default"
"""Redis's own admin user: a connection as it loads the library when it is missing."""

SOURCE = f"""#!lua name={LIBRARY}

-- keys: none -> the library's version
local function version(keys, args)
  return {VERSION}
end

-- keys: result, lease; args: holder -> {{taken, result or false}} when the step has a
-- result or a lease, else nil (free to take); a claim sent again after its connection
-- broke finds its own holder: it is taken
local function done_or_held(keys, args)
  local result = redis.call('GET', keys[1])
  if result then return {{0, result}} end
  local held = redis.call('GET', keys[2])
  if held == args[1] then return {{1, false}} end
  if held then return {{0, false}} end
  return nil
end

-- keys: result, lease; args: holder, lease ms -> {{taken, result or false}}
-- (version 1's claim, kept for processes of older code)
local function claim(keys, args)
  local found = done_or_held(keys, args)
  if found then return found end
  redis.call('SET', keys[2], args[1], 'PX', args[2])
  return {{1, false}}
end

-- keys: result, lease, begun; args: holder, lease ms, begun ttl seconds
-- -> {{taken, result or false, first}}: claim as above; first is 1 only when this claim
-- took the lease and no claim of the step ever had (begun set now, not before)
local function claim_step(keys, args)
  local found = done_or_held(keys, args)
  if found then
    found[3] = 0
    return found
  end
  local first = redis.call('SET', keys[3], '1', 'NX', 'EX', args[3])
  redis.call('SET', keys[2], args[1], 'PX', args[2])
  return {{1, false, first and 1 or 0}}
end

-- keys: result, lease; args: record, ttl seconds
local function finish(keys, args)
  redis.call('SET', keys[1], args[1], 'EX', args[2])
  redis.call('DEL', keys[2])
  return 1
end

-- keys: once; args: the claim found, the new claim, ttl seconds -> 1 if it was replaced
local function take_over(keys, args)
  if redis.call('GET', keys[1]) ~= args[1] then return 0 end
  redis.call('SET', keys[1], args[2], 'EX', args[3])
  return 1
end

-- keys: value; args: expected version ('' = any), data, ttl seconds (0 = none), write id
-- -> {{written, version}}; a write sent again after its connection broke finds its own
-- write id: it did happen
local function cas(keys, args)
  local state = redis.call('HMGET', keys[1], 'v', 'w')
  local cur = tonumber(state[1] or '0')
  if state[2] == args[4] then return {{1, cur}} end
  if args[1] ~= '' and tonumber(args[1]) ~= cur then return {{0, cur}} end
  local nv = cur + 1
  redis.call('HSET', keys[1], 'v', nv, 'd', args[2], 'w', args[4])
  if tonumber(args[3]) > 0 then redis.call('EXPIRE', keys[1], args[3]) end
  return {{1, nv}}
end

redis.register_function{{function_name='{VERSION_FUNCTION}', callback=version,
  flags={{'no-writes', 'allow-stale'}}}}
redis.register_function('{CLAIM}', claim)
redis.register_function('{CLAIM_STEP}', claim_step)
redis.register_function('{FINISH}', finish)
redis.register_function('{TAKE_OVER}', take_over)
redis.register_function('{CAS}', cas)
"""
"""The library's Lua source. Functions that write have no flags: Redis refuses them
(``OOM``) when it is over ``maxmemory``, before they change anything."""


def is_missing(exc: BaseException) -> bool:
    """Whether Redis answered that a function is not loaded."""
    return isinstance(exc, ResponseError) and "Function not found" in str(exc)


def may_load(redis: Redis) -> bool:
    """Whether ``redis`` is connected as Redis's ``default`` user (the admin, or anyone on
    an open server): the only user that may load the library."""
    username = redis.connection_pool.connection_kwargs.get("username")
    return username is None or username == ADMIN_USER


async def loaded_version(redis: Redis) -> int | None:
    """The version of the library Redis has, or None when it has none."""
    try:
        version = await redis.execute_command(  # type: ignore[no-untyped-call]
            "FCALL_RO", VERSION_FUNCTION, 0
        )
    except ResponseError as exc:
        if is_missing(exc):
            return None
        raise
    return int(version)


async def load_library(redis: Redis) -> Literal["loaded", "kept"]:
    """Load the library unless Redis has this version or a newer one (as the admin).

    Returns:
        ``loaded`` (it was missing or older, and is replaced) or ``kept``.

    Raises:
        redis.exceptions.NoPermissionError: ``redis`` is a role's connection.
    """
    loaded = await loaded_version(redis)
    if loaded is not None and loaded >= VERSION:
        return "kept"
    await redis.execute_command("FUNCTION", "LOAD", "REPLACE", SOURCE)  # type: ignore[no-untyped-call]
    return "loaded"


def not_provisioned() -> NotProvisioned:
    return NotProvisioned(
        f"Redis has no function library {LIBRARY!r} (version {VERSION} or newer) and this "
        "process's Redis user may not load it; run `jetmesh up` (or `jetmesh admin "
        "provision` as the admin)"
    )


async def with_library(redis: Redis, send: Callable[[], Awaitable[T]]) -> T:
    """``send()`` (a call of a library function on ``redis``), sent again once after the
    admin's connection loaded the library it found missing.

    Raises:
        NotProvisioned: the library is missing and ``redis`` is a role's connection, or
            the function is still missing after loading (a newer library without it).
    """
    try:
        return await send()
    except ResponseError as exc:
        if not is_missing(exc):
            raise
    if not may_load(redis):
        raise not_provisioned()
    await load_library(redis)  # (or another task just did)
    try:
        return await send()
    except ResponseError as exc:
        if is_missing(exc):
            raise not_provisioned() from None
        raise


async def fcall(redis: Redis, function: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Call ``function`` of the library with ``keys`` and ``args`` (see :func:`with_library`).

    Raises:
        NotProvisioned: the library is missing and ``redis`` may not load it.
    """

    def send() -> Awaitable[Any]:
        return redis.execute_command(  # type: ignore[no-untyped-call]
            "FCALL", function, len(keys), *keys, *args
        )

    return await with_library(redis, send)
