"""Redis's refusals of a command, as jetmesh errors.

On servers started by ``jetmesh up`` each agent role connects to Redis as its own user,
limited to its key patterns (see docs/security.md). A handler that reaches for another
role's memory gets ``NOPERM`` from Redis; the memory classes raise it as
:class:`~jetmesh.MemoryDenied`, which fails the step for good with a ``denied`` event.

Every Redis error met inside :func:`refused` is counted in the process's metrics, as a
memory or a ledger error of the role (:mod:`jetmesh.telemetry.metrics`).

Redis also has a memory limit (``maxmemory`` with ``noeviction``: nothing jetmesh keeps is
dropped to make room); over it, Redis answers a write ``OOM``, raised as
:class:`~jetmesh.MemoryFull`: the step fails and is retried later, when keys have expired
or the limit was raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from redis.exceptions import NoPermissionError, OutOfMemoryError, RedisError

from .._exceptions import MemoryDenied, MemoryFull, NotProvisioned
from ..telemetry import metrics


@contextlib.contextmanager
def refused(
    key: str,
    what: str,
    *,
    role: str = "",
    count: Callable[[str, str], None] = metrics.memory_error,
) -> Iterator[None]:
    """Turn Redis's refusal of ``what`` on ``key`` into a jetmesh error; every Redis error
    is counted by ``count`` (``role``, the error's type).

    Raises:
        MemoryDenied: Redis answered ``NOPERM`` (the key is outside this role's user).
        MemoryFull: Redis answered ``OOM`` (it is at its ``maxmemory``).
    """
    try:
        yield
    except NoPermissionError as exc:
        count(role, "MemoryDenied")
        raise MemoryDenied(key, f"{what} {key}: {exc}") from None
    except OutOfMemoryError as exc:
        count(role, "MemoryFull")
        raise MemoryFull(key, f"{what} {key}: {exc}") from None
    except (RedisError, NotProvisioned) as exc:
        count(role, type(exc).__name__)
        raise
