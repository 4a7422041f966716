"""Every Redis server behind a URL, for what each keeps on its own: its users.

Redis replicates data, not users: ``ACL SETUSER`` on the primary leaves its replica as it
was, and after a failover the replica is the primary. The admin's user changes (a role shut
out, let in again) are made on every data node a URL leads to, and on its Sentinels, which
have users of their own (:mod:`jetmesh.embedded.sentinel`).

Example:
    >>> for node in await data_nodes(settings.redis_url, **admin):   # doctest: +SKIP
    ...     await node.acl_setuser(...)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .connection import CONNECT_TIMEOUT_S, connect
from .redis_url import SentinelTarget, is_sentinel_url

__all__ = ["data_nodes", "sentinel_view", "sentinels"]


def _client(host: str, port: int, db: int, auth: dict[str, Any]) -> Redis:
    return Redis(host=host, port=port, db=db, socket_connect_timeout=CONNECT_TIMEOUT_S, **auth)


def sentinels(url: str, **auth: Any) -> list[Redis]:
    """A client for each Sentinel a ``redis+sentinel://`` URL lists (none for another)."""
    if not is_sentinel_url(url):
        return []
    target = SentinelTarget.parse(url)
    return [_client(host, port, 0, auth) for host, port in target.sentinels]


async def data_nodes(url: str, **auth: Any) -> list[Redis]:
    """A client for every data node behind ``url``: the server itself, or the primary and
    each replica the first Sentinel that answers knows of. Close each.

    Raises:
        redis.exceptions.ConnectionError: no Sentinel answered.
    """
    if not is_sentinel_url(url):
        return [connect(url, retry_s=0, **auth)]
    target = SentinelTarget.parse(url)
    primary, replicas = await sentinel_view(url, **auth)
    return [_client(h, p, target.db, auth) for h, p in (primary, *replicas)]


async def sentinel_view(url: str, **auth: Any) -> tuple[tuple[str, int], list[tuple[str, int]]]:
    """(host, port) of the primary and of each replica, as the first Sentinel of a
    ``redis+sentinel://`` URL that answers knows them.

    Raises:
        redis.exceptions.ConnectionError: no Sentinel answered.
    """
    target = SentinelTarget.parse(url)
    for host, port in target.sentinels:
        sentinel = _client(host, port, 0, auth)
        try:
            primary = await sentinel.sentinel_get_master_addr_by_name(target.service)
            replicas = await sentinel.sentinel_slaves(target.service)
        except RedisError:
            continue
        finally:
            await sentinel.aclose()
        if not isinstance(primary, tuple):
            continue
        name, number = primary
        first = (name.decode() if isinstance(name, bytes) else str(name), int(number))
        return first, [(str(r["ip"]), int(r["port"])) for r in replicas]
    raise RedisConnectionError(f"no Sentinel of {urlsplit(target.url()).netloc} answered")
