"""The Redis connection of a jetmesh process: retried through a server restart.

A command that fails because the connection broke is sent again (with backoff, for up to
``retry_s``) instead of failing the task, so a restart of redis-server pauses the mesh
rather than dead-lettering its work. A command may have run just before its connection
broke and be sent again: every write jetmesh makes is safe to repeat (working-memory writes
carry a write id, ledger claims and effect claims a holder that recognises itself).
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 0.5


def retry_policy(retry_s: float) -> Retry:
    """Exponential backoff from 50 ms, capped at 0.5 s, for about ``retry_s`` seconds."""
    ramp = 4  # 0.05 + 0.1 + 0.2 + 0.4 s before the cap
    retries = ramp + max(0, math.ceil((retry_s - 0.75) / BACKOFF_CAP_S)) if retry_s > 0 else 0
    return Retry(
        ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S),
        retries,
        supported_errors=(ConnectionError, TimeoutError),
    )


def connect(url: str, *, retry_s: float) -> Redis:
    """A client for ``url`` that retries commands through outages of up to ``retry_s``."""
    return Redis.from_url(
        url,
        retry=retry_policy(retry_s),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_connect_timeout=2.0,
    )
