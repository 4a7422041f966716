"""Redis's refusals of a command, as jetmesh errors.

On servers started by ``jetmesh up`` each agent role connects to Redis as its own user,
limited to its key patterns (see docs/security.md). A handler that reaches for another
role's memory gets ``NOPERM`` from Redis; the memory classes raise it as
:class:`~jetmesh.MemoryDenied`, which fails the step for good with a ``denied`` event.

Redis also has a memory limit (``maxmemory`` with ``noeviction``: nothing jetmesh keeps is
dropped to make room); over it, Redis answers a write ``OOM``, raised as
:class:`~jetmesh.MemoryFull`: the step fails and is retried later, when keys have expired
or the limit was raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import NoPermissionError, OutOfMemoryError

from .._exceptions import MemoryDenied, MemoryFull


@contextlib.contextmanager
def refused(key: str, what: str) -> Iterator[None]:
    """Turn Redis's refusal of ``what`` on ``key`` into a jetmesh error.

    Raises:
        MemoryDenied: Redis answered ``NOPERM`` (the key is outside this role's user).
        MemoryFull: Redis answered ``OOM`` (it is at its ``maxmemory``).
    """
    try:
        yield
    except NoPermissionError as exc:
        raise MemoryDenied(key, f"{what} {key}: {exc}") from None
    except OutOfMemoryError as exc:
        raise MemoryFull(key, f"{what} {key}: {exc}") from None
