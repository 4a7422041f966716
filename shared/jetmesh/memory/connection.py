"""The Redis connection of a jetmesh process: retried through a server restart.

A command that fails because the connection broke is sent again (with backoff, for up to
``retry_s``) instead of failing the task, so a restart of redis-server pauses the mesh
rather than dead-lettering its work. A command may have run just before its connection
broke and be sent again: every write jetmesh makes is safe to repeat (working-memory writes
carry a write id, ledger claims and effect claims a holder that recognises itself).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from .redis_url import SentinelTarget, is_sentinel_url

__all__ = ["connect", "retry_policy"]

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 0.5
CONNECT_TIMEOUT_S = 2.0


def retry_policy(retry_s: float) -> Retry:
    """Exponential backoff from 50 ms, capped at 0.5 s, for about ``retry_s`` seconds."""
    ramp = 4  # 0.05 + 0.1 + 0.2 + 0.4 s before the cap
    retries = ramp + max(0, math.ceil((retry_s - 0.75) / BACKOFF_CAP_S)) if retry_s > 0 else 0
    return Retry(
        ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S),
        retries,
        supported_errors=(ConnectionError, TimeoutError),
    )


def without_userinfo(url: str) -> str:
    """``url`` without a user or password (redis-py lets the URL's win over arguments)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def connect(
    url: str, *, retry_s: float, username: str | None = None, password: str | None = None
) -> Redis:
    """A client for ``url`` that retries commands through outages of up to ``retry_s``;
    as ``username`` with ``password`` when given (an ACL user: a role, or the admin).

    ``url`` may name Sentinels (``redis+sentinel://``, :mod:`.redis_url`): the client asks
    them for the primary, and again after a failover (a command in flight then is retried,
    like one through a restart); the same user authenticates to the Sentinels.
    """
    if is_sentinel_url(url):
        return _through_sentinels(
            SentinelTarget.parse(url), retry_s=retry_s, username=username, password=password
        )
    auth: dict[str, Any] = {}
    if password is not None:
        url = without_userinfo(url)
        auth = {"username": username, "password": password}
    return Redis.from_url(
        url,
        retry=retry_policy(retry_s),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        **auth,
    )


def _through_sentinels(
    target: SentinelTarget, *, retry_s: float, username: str | None, password: str | None
) -> Redis:
    if password is None:
        username, password = target.username, target.password
    auth: dict[str, Any] = {"username": username, "password": password} if password else {}
    # (redis-py 8 types Sentinel.__init__; earlier releases do not)
    sentinels = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        list(target.sentinels),
        sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT_S, **auth},
    )
    options: dict[str, Any] = {
        "db": target.db,
        "retry": retry_policy(retry_s),
        "retry_on_error": [ConnectionError, TimeoutError],
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        **auth,
    }
    primary = sentinels.master_for(target.service, redis_class=_ThroughSentinels, **options)
    assert isinstance(primary, _ThroughSentinels)
    primary.sentinel_clients = list(sentinels.sentinels)
    return primary


class _ThroughSentinels(Redis):
    """The primary's client, which closes its connections to the Sentinels with its own."""

    sentinel_clients: list[Redis] = []

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for client in self.sentinel_clients:
            await client.aclose()
